"""Node-study verdicts judge the geometry per pair of qtypes and say it per pair."""

from __future__ import annotations

from arithlens.analysis.node_study import pair_geometry as _pair_geometry
from arithlens.report.node_text import geometry_text as _geometry_text


def _data(cosines: dict) -> dict:
    return {"shared": {"direction_cosines": {k: {"cosine": c, "p_value": p} for k, (c, p) in cosines.items()}}}


def test_pair_geometry_reads_sign_and_null():
    assert _pair_geometry({"cosine": -0.97, "p_value": 0.001}) == "one axis, opposite signs"
    assert _pair_geometry({"cosine": 0.8, "p_value": 0.001}) == "same axis"
    assert _pair_geometry({"cosine": 0.8, "p_value": 0.2}) == "separate"  # not beyond the null
    assert _pair_geometry({"cosine": 0.1, "p_value": 0.001}) == "separate"
    assert _pair_geometry({"cosine": None, "p_value": None}) == "separate"


def test_mb_and_nb_on_one_axis_sc_separate_is_said_per_pair():
    data = _data({"ADD~SUB": (-0.02, 0.6), "ADD~NEG": (0.04, 0.5), "SUB~NEG": (-0.97, 0.001)})
    geometry = {k: _pair_geometry(v) for k, v in data["shared"]["direction_cosines"].items()}
    assert geometry == {"ADD~SUB": "separate", "ADD~NEG": "separate", "SUB~NEG": "one axis, opposite signs"}
    assert _geometry_text(data, 3, geometry) == (
        "A3.MB and A3.NB on one axis with opposite signs (cos -0.97); A3.SC separate from both (cos -0.02, +0.04)")


def test_all_separate_lists_every_pair():
    data = _data({"SUB~NEG": (0.1, 0.3)})
    geometry = {"SUB~NEG": _pair_geometry(data["shared"]["direction_cosines"]["SUB~NEG"])}
    assert _geometry_text(data, 2, geometry) == "in separate directions (cos A2.MB~A2.NB +0.10)"
