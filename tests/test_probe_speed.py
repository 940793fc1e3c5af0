"""The faster logistic probe fits the same probes as the one it replaced (kept as `OldLogisticProbe` in
benchmarks/bench_probes.py): coefficients within 1e-6 of each fit's largest coefficient, predictions and
permutation-test decisions identical; and its loss is the plain log-loss, also where exp(eta) overflows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from arithlens.analysis import stats

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_probes.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_probes", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _labels(y: np.ndarray, columns: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([y] + [rng.permutation(y) for _ in range(columns - 1)])


def _assert_same_fit(old, new, x: np.ndarray) -> None:
    coef_old, coef_new = np.atleast_2d(old.coef_), np.atleast_2d(new.coef_)
    largest = np.abs(coef_old).max(1, keepdims=True)
    assert (np.abs(coef_new - coef_old) <= 1e-6 * largest).all()
    assert (np.abs(new.intercept_ - old.intercept_) <= 1e-6 * np.maximum(largest[:, 0], 1.0)).all()
    assert np.array_equal(new.predict(x), old.predict(x))


@pytest.mark.parametrize(("seed", "columns", "C"), [(0, 1, 1.0), (1, 101, 1.0), (2, 101, 1.0), (3, 101, 1.0),
                                                    (1, 7, 1e-4), (2, 7, 1e4)])
def test_new_fit_equals_the_old_one(bench, seed, columns, C):
    """Seeds 0-3 run from a weak to a nearly separable planted direction (bench_probes.STRENGTHS); 900 x 32, as
    in the node study. C = 1e-4 and 1e4 are the ends of probe_accuracy's nested-CV grid."""
    x, y = bench.problem(seed, 900, 32)
    labels = y if columns == 1 else _labels(y, columns, seed)
    old = bench.OldLogisticProbe(C=C).fit(x, labels)
    new = stats.LogisticProbe(C=C).fit(x, labels)
    assert new.coef_.shape == old.coef_.shape == (1 if columns == 1 else columns, 32)
    _assert_same_fit(old, new, x)
    fresh, _ = bench.problem(seed + 100, 300, 32)
    assert np.array_equal(new.predict(fresh), old.predict(fresh))
    if columns == 1:
        assert new.predict(x).shape == (900,)


def test_new_fit_equals_the_old_one_on_separable_data(bench):
    """Perfectly separable labels (two coordinates): only the penalty keeps the weights finite."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 8)) * [1, 2, 3, 1, 1, 5, 1, 1]
    y = (x[:, 2] - x[:, 5] > 0).astype(np.int8)
    labels = _labels(y, 11, 5)
    for C, right in ((1.0, 593), (1e4, 600)):  # C = 1 shrinks the weights enough to misplace 7 rows
        old, new = bench.OldLogisticProbe(C=C).fit(x, labels), stats.LogisticProbe(C=C).fit(x, labels)
        _assert_same_fit(old, new, x)
        assert (new.predict(x)[:, 0] == y).sum() == right


def test_probe_accuracy_decisions_are_unchanged(bench, monkeypatch):
    """probe_accuracy with the old probe and the new: the same held-out accuracies, null and p-value."""
    x, y = bench.problem(2, 900, 32)
    new = stats.probe_accuracy(x, y, permutations=100, random_state=7)
    monkeypatch.setattr(stats, "LogisticProbe", bench.OldLogisticProbe)
    old = stats.probe_accuracy(x, y, permutations=100, random_state=7)
    assert new.accuracy == old.accuracy and new.fold_accuracies == old.fold_accuracies
    assert np.array_equal(new.null_accuracies, old.null_accuracies) and new.p_value == old.p_value
    np.testing.assert_allclose(new.coef, old.coef, rtol=0, atol=1e-6 * np.abs(old.coef).max())
    np.testing.assert_allclose(new.null_coefs, old.null_coefs, rtol=0, atol=1e-6 * np.abs(old.null_coefs).max())


def test_loss_is_the_log_loss_even_where_exp_overflows():
    """sum_i log(1 + exp(eta_i)) - y_i eta_i + penalty, against np.logaddexp, with |eta| up to 2,000 and more
    than 1,000 rows (the product of the logs' arguments is taken in blocks of 1,000)."""
    rng = np.random.default_rng(0)
    n, d1, m = 2500, 5, 4
    xs = np.hstack([rng.normal(size=(n, d1 - 1)), np.ones((n, 1))])
    y = rng.integers(0, 2, size=(n, m)).astype(np.float64)
    w = rng.normal(size=(m, d1)) * [[0.1], [1.0], [30.0], [400.0]]
    penalty = np.array([1.0, 1.0, 1.0, 1.0, 1e-10])
    eta = xs @ w.T
    assert np.abs(eta).max() > 1000
    expected = (np.logaddexp(0, eta) - y * eta).sum(0) + 0.5 * (w * w * penalty).sum(1)
    got = stats._logistic_loss(eta, y.T @ xs, w, penalty)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
