"""The probe protocol: nested cross-validation over C, stated in the output, with an interval; and which
components carry a probe."""

from __future__ import annotations

import math

import numpy as np

from arithlens.analysis import stats


def _data(n=240, d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (x[:, 2] + 0.7 * rng.normal(size=n) > 0).astype(np.int8)
    return x, y


def test_nested_cv_states_its_protocol_and_interval():
    x, y = _data()
    r = stats.probe_accuracy(x, y, permutations=10, random_state=1, Cs=(1e-4, 1.0, 1e4))
    d = r.to_dict()
    assert "C chosen from 0.0001, 1, 10000 by 3-fold CV inside each training fold" in d["protocol"]
    assert len(d["fold_C"]) == 5 and set(d["fold_C"]) <= {1e-4, 1.0, 1e4}
    assert 0.7 < r.accuracy < 0.95 and r.p_value < 0.2
    lo, hi = d["ci"]
    assert lo < r.accuracy < hi and hi - lo < 0.15
    again = stats.probe_accuracy(x, y, permutations=10, random_state=1, Cs=(1e-4, 1.0, 1e4))
    assert again.accuracy == r.accuracy and again.fold_C == r.fold_C


def test_nested_cv_never_picks_a_penalty_that_kills_the_signal():
    x, y = _data()
    # C = 1e-4 shrinks every weight to ~0; the inner CV must prefer a C that reads x[:, 2].
    r = stats.probe_accuracy(x, y, permutations=0, random_state=2, Cs=(1e-4, 1.0))
    assert all(c == 1.0 for c in r.fold_C)
    plain = stats.probe_accuracy(x, y, permutations=0, random_state=2)
    assert "C = 1" in plain.protocol and plain.accuracy == r.accuracy


def test_too_few_rows_for_nested_cv_is_a_note_not_a_crash():
    x, y = _data(n=40)
    y[:] = 0
    y[:8] = 1  # 8 positives: enough for 5 folds, not for 5 x 3
    r = stats.probe_accuracy(x, y, permutations=0, Cs=(1.0, 10.0))
    assert math.isnan(r.accuracy) and "too few" in r.note


def test_variance_share_of_the_components_carrying_a_probe():
    evr = np.array([0.6, 0.3, 0.05, 0.03, 0.02])
    share = stats.variance_share_carrying(np.array([0.0, 0.1, 0.0, 3.0, 1.0]), evr)
    assert share["components"] == [3, 4]  # 9 + 1 of 10.01: 0.999 >= 0.9
    assert math.isclose(share["variance_share"], 0.05)
