"""Statistics helpers of node studies, on synthetic data with known answers."""

import math

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score

from arithlens.analysis import stats


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = stats.wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert stats.wilson(0, 20)[0] == 0.0 and stats.wilson(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)
    assert all(math.isnan(v) for v in stats.wilson(0, 0))
    assert stats.rate(3, 4)["rate"] == 0.75


def test_logistic_probe_finds_the_same_optimum_as_scikit_learn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6)) * [1, 2, 3, 1, 1, 5]
    y = (x @ rng.normal(size=6) + rng.normal(size=400) > 0).astype(int)
    xs = (x - x.mean(0)) / x.std(0)
    ours = stats.LogisticProbe(C=0.5).fit(xs, y)
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=1000).fit(xs, y)
    np.testing.assert_allclose(ours.coef_[0], ref.coef_[0], atol=1e-5)
    assert ours.intercept_[0] == pytest.approx(ref.intercept_[0], abs=1e-5)
    # Many label columns are fitted together and independently.
    both = stats.LogisticProbe(C=0.5).fit(xs, np.column_stack([y, 1 - y]))
    np.testing.assert_allclose(both.coef_[0], -both.coef_[1], atol=1e-5)


def test_probe_is_near_perfect_on_separable_data_and_chance_on_shuffled_labels():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 8))
    y = (x[:, 2] - x[:, 5] > 0).astype(int)
    real = stats.probe_accuracy(x, y, permutations=50, random_state=3)
    assert real.accuracy > 0.97 and real.p_value == pytest.approx(1 / 51)
    assert real.null_accuracies.mean() == pytest.approx(0.5, abs=0.05)
    shuffled = stats.probe_accuracy(x, rng.permutation(y), permutations=50, random_state=3)
    assert abs(shuffled.accuracy - 0.5) < 0.08 and shuffled.p_value > 0.05
    assert real.coef.shape == (8,) and abs(real.coef[2]) > 5 * abs(real.coef[0])


def test_probe_needs_enough_rows_of_each_class():
    y = np.zeros(50, int)
    y[:3] = 1
    result = stats.probe_accuracy(np.random.default_rng(0).normal(size=(50, 2)), y)
    assert math.isnan(result.accuracy) and "only 3 rows" in result.note


def test_probe_accuracy_is_deterministic_for_a_seed():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(200, 4)), rng.integers(0, 2, 200)
    a = stats.probe_accuracy(x, y, permutations=20, random_state=7)
    b = stats.probe_accuracy(x, y, permutations=20, random_state=7)
    assert a.accuracy == b.accuracy and (a.null_accuracies == b.null_accuracies).all()


def test_silhouette_is_positive_for_separated_clusters_and_matches_scikit_learn():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 50)
    x = rng.normal(size=(150, 5)) + 8 * np.eye(5)[labels]
    assert stats.silhouette(x, labels) > 0.7
    assert stats.silhouette(x, labels) == pytest.approx(silhouette_score(x, labels), abs=1e-9)
    mixed = rng.permutation(labels)
    assert stats.silhouette(x, mixed) < 0.05
    assert stats.silhouette(x, mixed) == pytest.approx(silhouette_score(x, mixed), abs=1e-9)
    assert math.isnan(stats.silhouette(x, np.zeros(150)))


def test_pca_matches_scikit_learn_up_to_sign():
    x = np.random.default_rng(0).normal(size=(100, 6)) @ np.diag([5, 3, 2, 1, 0.5, 0.1])
    ours = stats.pca(x, 3)
    ref = PCA(3).fit(x)
    np.testing.assert_allclose(ours.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-8)
    np.testing.assert_allclose(np.abs(ours.scores), np.abs(ref.transform(x)), atol=1e-8)
    assert stats.rank_components(np.column_stack([x[:, :2], np.zeros((100, 3))]), 5).scores.shape == (100, 2)


def test_cosine_of_class_directions_is_significant_only_when_shared():
    rng = np.random.default_rng(0)
    y1, y2, y3 = (rng.integers(0, 2, 300) for _ in range(3))
    axis = np.eye(16)[0]
    x1 = rng.normal(size=(300, 16)) + 3 * y1[:, None] * axis
    x2 = rng.normal(size=(300, 16)) - 3 * y2[:, None] * axis  # the same axis, opposite sign
    x3 = rng.normal(size=(300, 16)) + 3 * y3[:, None] * np.eye(16)[1]  # another axis
    same = stats.direction_cosine_null(x1, y1, x2, y2, permutations=100, random_state=0)
    assert same["cosine"] < -0.9 and same["p_value"] == pytest.approx(1 / 101)
    other = stats.direction_cosine_null(x1, y1, x3, y3, permutations=100, random_state=0)
    assert abs(other["cosine"]) < 0.3 and other["p_value"] > 0.05
    assert other["null_abs_q95"] < 0.6


def test_group_r2_and_lookup_ceiling():
    rng = np.random.default_rng(0)
    pair = rng.integers(0, 10, size=(500, 2))
    table = rng.normal(size=(10, 10, 4))
    x = table[pair[:, 0], pair[:, 1]]
    op = rng.integers(0, 3, 500)
    assert stats.group_r2(x, pair) == pytest.approx(1.0)
    assert stats.group_r2(x, op) < 0.05
    assert stats.group_r2(x, np.column_stack([pair, op])) == pytest.approx(1.0)
    carry = (pair.sum(1) >= 10).astype(int)
    assert stats.lookup_ceiling(pair, carry) == 1.0
    assert stats.lookup_ceiling(np.zeros((500, 1)), carry) == pytest.approx(max(carry.mean(), 1 - carry.mean()))
    assert stats.position_on_axis(x[carry == 1].mean(0), x, carry) == pytest.approx(1.0)
