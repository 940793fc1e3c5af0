"""The shared comparison of results with stored references: floats within a stated tolerance, decisions exactly."""

from __future__ import annotations

from helpers import ABS_TOL, REL_TOL, json_differences, json_layout

STORED = {"verdict": {"polysemantic": False, "roles": ["A1.SC"], "text": "not polysemantic"}, "n": 300,
          "rate": 0.9779435382480445, "scores": [[0.04238, -0.46145]], "p_value": 0.0099, "ci": None}


def test_summation_order_noise_passes():
    noisy = {**STORED, "rate": 0.9779435379946142, "scores": [[0.04237, -0.46146]]}  # the AVX-512 value
    assert json_differences(noisy, STORED) == []


def test_real_changes_and_every_decision_are_caught():
    changes = [("rate", 0.9779435382480445 * (1 + 3 * REL_TOL)), ("scores", [[0.04238 + 3 * ABS_TOL, -0.46145]]),
               ("n", 301), ("p_value", 0.0198), ("ci", [0.1, 0.2]),
               ("verdict", {**STORED["verdict"], "polysemantic": True}),
               ("verdict", {**STORED["verdict"], "roles": ["A1.SC", "A1.MB"]}),
               ("verdict", {**STORED["verdict"], "text": "polysemantic"})]
    for key, value in changes:
        found = json_differences({**STORED, key: value}, STORED)
        assert len(found) == 1 and found[0].startswith(f".{key}"), (key, found)
    assert json_differences({**STORED, "n": 300.0}, STORED) == []  # an int stored as a float is the same number
    assert json_differences({**STORED, "n": True}, {**STORED, "n": 1}) != []  # a bool is not a count
    assert json_differences({**STORED, "extra": 1}, STORED)[0].startswith(".: keys differ")


def test_layout_ignores_float_digits_only():
    assert json_layout('{"a": 0.97794353799, "b": 3, "c": -1.5e-07}') == json_layout('{"a": 0.97794353824, "b": 3, "c": -2e-07}')
    assert json_layout('{"a": 0.9, "b": 3}') != json_layout('{"a": 0.9, "b": 4}')
