"""Statistics for node studies: Wilson intervals, PCA, cross-validated logistic probes with a permutation null,
silhouette and k-means purity, class-mean directions with a random-split null, and R^2 of group means.

scikit-learn style: plain arrays in and out, every random choice from a `random_state`, no module state.
The probe is our own batched Newton (IRLS) logistic regression so that the observed labels and all the
permuted label vectors of a permutation test are fitted together in one pass; its objective is
scikit-learn's `LogisticRegression(C=C)` (sum of log-losses + ||w||^2 / (2C), intercept not penalised)
on standardised features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from arithlens.errors import ArithLensError


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion; (nan, nan) when n == 0."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(successes: int, n: int) -> dict:
    """{"k", "n", "rate", "ci": [lo, hi]} with a Wilson interval: the JSON shape of every rate in a study."""
    lo, hi = wilson(int(successes), int(n))
    return {"k": int(successes), "n": int(n), "rate": successes / n if n else math.nan, "ci": [lo, hi]}


# ---------------------------------------------------------------------------------------------------
# PCA


@dataclass(frozen=True)
class PCAResult:
    scores: np.ndarray  # (n, k)
    components: np.ndarray  # (k, d) unit rows
    explained_variance_ratio: np.ndarray  # (k,)
    mean: np.ndarray  # (d,)


def pca(x: np.ndarray, n_components: int) -> PCAResult:
    """Exact PCA (SVD of the centred data, signs fixed as scikit-learn fixes them: deterministic)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ArithLensError(f"PCA needs a (n >= 2, d) array, not shape {x.shape}")
    mean = x.mean(0)
    u, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    # scikit-learn's svd_flip (u-based): the largest |u| entry of each component is positive.
    signs = np.sign(u[np.abs(u).argmax(0), np.arange(u.shape[1])])
    signs[signs == 0] = 1.0
    u, vt = u * signs, vt * signs[:, None]
    k = min(n_components, len(s))
    var = s**2
    total = var.sum()
    evr = var[:k] / total if total > 0 else np.zeros(k)
    return PCAResult((u * s)[:, :k], vt[:k], evr, mean)


def rank_components(x: np.ndarray, max_components: int, tol: float = 1e-6) -> PCAResult:
    """PCA keeping at most `max_components` components, dropping those with variance ratio below `tol`."""
    full = pca(x, max_components)
    keep = max(1, int((full.explained_variance_ratio > tol).sum()))
    return PCAResult(full.scores[:, :keep], full.components[:keep], full.explained_variance_ratio[:keep], full.mean)


# ---------------------------------------------------------------------------------------------------
# Logistic probe


class LogisticProbe:
    """L2-regularised logistic regression fitted by Newton's method, for one or many label columns at once.

    `fit(x, y)` with y of shape (n,) or (n, m) in {0, 1}; `coef_` (m, d) and `intercept_` (m,) are in the
    units of the input (standardisation is folded back in). `predict` returns (n,) or (n, m) 0/1.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 100, tol: float = 1e-6, standardize: bool = True):
        if C <= 0:
            raise ArithLensError(f"C must be positive, not {C}")
        self.C, self.max_iter, self.tol, self.standardize = C, max_iter, tol, standardize

    def fit(self, x: np.ndarray, y: np.ndarray) -> LogisticProbe:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self._one = y.ndim == 1
        y = y[:, None] if self._one else y  # (n, m)
        if x.ndim != 2 or len(x) != len(y):
            raise ArithLensError(f"probe needs x (n, d) and y (n[, m]); got {x.shape} and {y.shape}")
        mu = x.mean(0) if self.standardize else np.zeros(x.shape[1])
        sd = x.std(0) if self.standardize else np.ones(x.shape[1])
        sd = np.where(sd > 1e-12, sd, 1.0)
        xs = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])  # (n, d+1), last column the intercept
        n, d1 = xs.shape
        penalty = np.full(d1, 1.0 / self.C)
        penalty[-1] = 1e-10  # the intercept is (almost) free, as in scikit-learn
        w = np.zeros((y.shape[1], d1))  # (m, d+1)
        yx = y.T @ xs  # (m, d+1): sum_i y_i * eta_i = yx . w, the labels' part of every loss
        eta = np.zeros((n, len(w)))  # xs @ w.T of the columns still moving (kept from the line search)
        loss = np.full(len(w), n * math.log(2))  # at w = 0 every row costs log(1 + e^0)
        # The Hessians are symmetric: one GEMM against the upper triangles of the rows' outer products, mirrored.
        outer = _upper_outer(xs)  # (d1 * (d1 + 1) / 2, n)
        upper_i, upper_j = np.triu_indices(d1)
        full = np.zeros((d1, d1), dtype=np.int64)
        full[upper_i, upper_j] = full[upper_j, upper_i] = np.arange(len(upper_i))
        full = full.ravel()  # (d1 * d1,) where each Hessian entry is in the triangle
        active = np.arange(len(w))  # columns still moving; converged ones are left alone
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            self.n_iter_ += 1
            every = len(active) == len(w)  # no copies while every column moves
            wa, ya, yxa = (w, y, yx) if every else (w[active], y[:, active], yx[active])
            p = _sigmoid(eta)  # (n, a)
            if self.n_iter_ > 1:
                s = 1 - p  # (n, a): p * (1 - p), in place (fresh large temporaries cost page faults)
                s *= p
                hess = np.take(s.T @ outer.T, full, axis=1)  # (a, (d+1)^2)
                hess[:, ::d1 + 1] += penalty  # the diagonal
                hess = hess.reshape(len(active), d1, d1)
            p -= ya
            grad = (xs.T @ p).T + wa * penalty  # (a, d+1)
            if self.n_iter_ == 1:  # w = 0: p = 1/2 everywhere, one Hessian for all columns
                step = np.linalg.solve(0.25 * (xs.T @ xs) + np.diag(penalty), grad.T).T  # (a, d+1)
            else:
                step = np.linalg.solve(hess, grad[..., None])[..., 0]  # (a, d+1)
            # Damped Newton: halve the step of any column whose loss went up.
            scale = np.ones(len(active))
            for _ in range(30):
                trial = wa - step * scale[:, None]
                eta = xs @ trial.T
                new = _logistic_loss(eta, yxa, trial, penalty)
                worse = new > loss[active] + 1e-12
                if not worse.any():
                    break
                scale[worse] *= 0.5
            w[active], loss[active] = trial, new
            moving = np.abs(step * scale[:, None]).max(1) >= self.tol
            if not moving.all():
                active, eta = active[moving], eta[:, moving]
            if not len(active):
                break
        self.coef_ = w[:, :-1] / sd  # back to input units
        self.intercept_ = w[:, -1] - self.coef_ @ mu
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(x, dtype=np.float64) @ self.coef_.T + self.intercept_  # (n, m)
        return out[:, 0] if self._one else out

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (self.decision_function(x) > 0).astype(np.int8)


def _upper_outer(xs: np.ndarray) -> np.ndarray:
    """Row i * d1 + j - i * (i + 1) / 2 (j >= i) holds xs[:, i] * xs[:, j]: np.triu_indices order, row-major."""
    n, d1 = xs.shape
    cols = np.ascontiguousarray(xs.T)
    out = np.empty((d1 * (d1 + 1) // 2, n))
    start = 0
    for i in range(d1):
        np.multiply(cols[i:], cols[i], out=out[start:start + d1 - i])
        start += d1 - i
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """0.5 * (1 + tanh(0.5 * z)), in one buffer."""
    p = np.multiply(z, 0.5)
    np.tanh(p, out=p)
    p += 1
    p *= 0.5
    return p


def _logistic_loss(eta, yx, w, penalty) -> np.ndarray:
    """Per column: sum_i log(1 + exp(eta_i)) - y_i * eta_i, plus the penalty ||w||^2 / 2 (weighted), for
    eta = xs @ w.T (n, m) and yx = y.T @ xs (m, d+1).

    log(1 + exp(eta)) = max(eta, 0) + log(1 + exp(-|eta|)), and the sum of the logs is the log of the product
    (one log per column instead of one per row: logs are the slow part), in blocks of 1,000 rows, whose factors
    in (1, 2] cannot overflow."""
    buf = np.maximum(eta, 0)  # one (n, m) buffer for all the steps
    total = buf.sum(0)
    np.abs(eta, out=buf)
    np.negative(buf, out=buf)
    np.exp(buf, out=buf)
    buf += 1
    for start in range(0, len(buf), 1000):
        total += np.log(np.prod(buf[start:start + 1000], axis=0))
    return total - (yx * w).sum(1) + 0.5 * (w * w * penalty).sum(1)


@dataclass(frozen=True)
class ProbeResult:
    """Cross-validated probe accuracy with a permutation null (all computed on the same folds)."""

    accuracy: float  # mean held-out accuracy over the folds
    fold_accuracies: list[float]
    null_accuracies: np.ndarray  # (permutations,)
    p_value: float  # (1 + #null >= observed) / (1 + permutations)
    coef: np.ndarray  # (d,) weights of a probe fitted on all rows (input units)
    null_coefs: np.ndarray  # (permutations, d) the same for each shuffled label vector
    n: int
    positives: int
    note: str = ""
    protocol: str = ""  # how C was chosen, in words
    fold_C: list[float] = field(default_factory=list)  # the C each outer fold used (nested CV)

    @property
    def correct(self) -> int:
        """Held-out predictions that were right (each row is held out once)."""
        return int(round(self.accuracy * self.n)) if not math.isnan(self.accuracy) else 0

    def to_dict(self) -> dict:
        null = self.null_accuracies
        lo, hi = wilson(self.correct, self.n) if not math.isnan(self.accuracy) else (math.nan, math.nan)
        return {
            "accuracy": self.accuracy, "ci": [lo, hi], "fold_accuracies": self.fold_accuracies,
            "p_value": self.p_value,
            "null_mean": float(null.mean()) if len(null) else math.nan,
            "null_q99": float(np.quantile(null, 0.99)) if len(null) else math.nan,
            "permutations": int(len(null)), "n": self.n, "positives": self.positives, "note": self.note,
            "protocol": self.protocol, "fold_C": self.fold_C,
        }


def stratified_folds(y: np.ndarray, n_splits: int, random_state: int) -> np.ndarray:
    """Fold index per row: each class shuffled (seeded) and dealt round-robin, so folds keep class ratios."""
    rng = np.random.default_rng(random_state)
    fold = np.empty(len(y), dtype=np.int64)
    offset = 0
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        fold[rows] = (np.arange(len(rows)) + offset) % n_splits
        offset += len(rows)
    return fold


def _choose_C(x: np.ndarray, labels: np.ndarray, Cs: tuple[float, ...], inner_splits: int,
              random_state: int) -> np.ndarray:
    """Per label column, the C of `Cs` with the best inner cross-validated accuracy (ties: the smaller C, the
    stronger penalty). Inner folds are stratified on the first (observed) column."""
    fold = stratified_folds(labels[:, 0], inner_splits, random_state)
    hits = np.zeros((len(Cs), labels.shape[1]))
    for f in range(inner_splits):
        test = fold == f
        for i, C in enumerate(Cs):
            hits[i] += (LogisticProbe(C=C).fit(x[~test], labels[~test]).predict(x[test]) == labels[test]).sum(0)
    return hits.argmax(0)  # first maximum: Cs are sorted ascending


def probe_accuracy(x: np.ndarray, y: np.ndarray, *, n_splits: int = 5, permutations: int = 100,
                   random_state: int = 0, C: float = 1.0, Cs: tuple[float, ...] | None = None,
                   inner_splits: int = 3) -> ProbeResult:
    """Held-out accuracy of a logistic probe for binary `y`, and the same for `permutations` label shuffles.

    With `Cs`, nested cross-validation: in each outer fold, C is chosen per label column (the shuffles too,
    so the null went through the same selection) by `inner_splits`-fold CV on the training part only."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).astype(np.int8)
    positives = int(y.sum())
    minority = min(positives, len(y) - positives)
    Cs = tuple(sorted(Cs)) if Cs else None
    protocol = (f"logistic probe on standardised features, {n_splits}-fold CV; C chosen from "
                f"{', '.join(f'{c:g}' for c in Cs)} by {inner_splits}-fold CV inside each training fold"
                if Cs else f"logistic probe on standardised features, {n_splits}-fold CV, C = {C:g}")
    if minority < n_splits * (inner_splits if Cs else 1):
        return ProbeResult(math.nan, [], np.zeros(0), math.nan, np.full(x.shape[1], np.nan),
                           np.zeros((0, x.shape[1])), len(y), positives,
                           f"only {minority} rows in the smaller class; too few for {n_splits}-fold CV", protocol)
    rng = np.random.default_rng(random_state)
    labels = np.column_stack([y] + [rng.permutation(y) for _ in range(permutations)])  # (n, 1 + P)
    fold = stratified_folds(y, n_splits, random_state)
    correct = np.zeros(labels.shape[1])
    fold_acc, fold_C = [], []
    for f in range(n_splits):
        test = fold == f
        if Cs is None:
            hits = LogisticProbe(C=C).fit(x[~test], labels[~test]).predict(x[test]) == labels[test]
            fold_C.append(C)
        else:
            choice = _choose_C(x[~test], labels[~test], Cs, inner_splits, random_state + f + 1)
            hits = np.zeros(labels[test].shape, dtype=bool)
            for i, c in enumerate(Cs):
                cols = np.flatnonzero(choice == i)
                if len(cols):
                    hits[:, cols] = LogisticProbe(C=c).fit(x[~test], labels[~test][:, cols]).predict(x[test]) \
                        == labels[test][:, cols]
            fold_C.append(Cs[int(choice[0])])
        correct += hits.sum(0)
        fold_acc.append(float(hits[:, 0].mean()))
    acc = correct / len(y)
    null = acc[1:]
    p = (1 + int((null >= acc[0]).sum())) / (1 + permutations)
    final_C = C if Cs is None else Cs[int(_choose_C(x, labels[:, :1], Cs, inner_splits, random_state)[0])]
    coefs = LogisticProbe(C=final_C).fit(x, labels).coef_  # (1 + P, d)
    return ProbeResult(float(acc[0]), fold_acc, null, p, coefs[0], coefs[1:], len(y), positives, "", protocol,
                       fold_C)


def variance_share_carrying(coef: np.ndarray, explained_variance_ratio: np.ndarray, mass: float = 0.9) -> dict:
    """Which principal components carry a probe: in whitened PCA coordinates (unit variance each) the weight
    on component i is how much the probe reads it. The fewest components holding `mass` of the squared weight,
    and the share of the variance those components hold (`evr` are the components' variance ratios)."""
    w2 = np.asarray(coef, dtype=np.float64) ** 2
    evr = np.asarray(explained_variance_ratio, dtype=np.float64)
    if w2.sum() <= 0 or len(w2) != len(evr):
        return {"components": [], "weight": math.nan, "variance_share": math.nan}
    order = np.argsort(-w2, kind="stable")
    cum = np.cumsum(w2[order]) / w2.sum()
    k = int(np.searchsorted(cum, mass) + 1)
    top = order[:k]
    return {"components": sorted(int(i) for i in top), "weight": float(cum[k - 1]),
            "variance_share": float(evr[top].sum())}


def lookup_ceiling(keys: np.ndarray, y: np.ndarray) -> float:
    """Best accuracy of any function of `keys` (rows: discrete tuples) at predicting `y`: majority per key."""
    keys = np.asarray(keys)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    ones = np.bincount(inverse, weights=np.asarray(y, dtype=np.float64))
    counts = np.bincount(inverse)
    return float(np.maximum(ones, counts - ones).sum() / len(y))


# ---------------------------------------------------------------------------------------------------
# Clusters


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient of `labels` in Euclidean space (scikit-learn's definition: a row alone in
    its label scores 0); nan with fewer than 2 labels."""
    x = np.asarray(x, dtype=np.float64)
    uniq, inverse = np.unique(np.asarray(labels), return_inverse=True)
    inverse = inverse.ravel()
    if len(uniq) < 2 or len(uniq) >= len(x):
        return math.nan
    sq = (x * x).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0))  # (n, n)
    onehot = np.eye(len(uniq))[inverse]  # (n, L)
    counts = onehot.sum(0)
    sums = dist @ onehot  # (n, L): summed distance to each label
    own = counts[inverse]
    a = sums[np.arange(len(x)), inverse] / np.maximum(own - 1, 1)
    other = sums / counts
    other[np.arange(len(x)), inverse] = np.inf
    b = other.min(1)
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-300), 0.0)
    return float(s.mean())


# ---------------------------------------------------------------------------------------------------
# Directions


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    return float(u @ v / (nu * nv)) if nu > 0 and nv > 0 else math.nan


def mean_difference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """mean(x | y == 1) - mean(x | y == 0): the class-mean direction of a binary label."""
    y = np.asarray(y).astype(bool)
    if y.all() or not y.any():
        return np.full(x.shape[1], np.nan)
    return x[y].mean(0) - x[~y].mean(0)


def direction_cosine_null(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, *,
                          permutations: int = 100, random_state: int = 0) -> dict:
    """Cosine of the two class-mean directions, and its null: the cosine when one side's labels are
    shuffled (random splits of the same sizes), half the draws shuffling each side.

    p_value = (1 + #|null| >= |observed|) / (1 + permutations): small when the directions are aligned
    (or anti-aligned) beyond what random splits of these rows give.
    """
    rng = np.random.default_rng(random_state)
    d1, d2 = mean_difference(x1, y1), mean_difference(x2, y2)
    observed = cosine(d1, d2)
    null = np.empty(permutations)
    for i in range(permutations):
        if i % 2 == 0:
            null[i] = cosine(d1, mean_difference(x2, rng.permutation(y2)))
        else:
            null[i] = cosine(mean_difference(x1, rng.permutation(y1)), d2)
    finite = np.isfinite(null)
    p = (1 + int((np.abs(null[finite]) >= abs(observed)).sum())) / (1 + int(finite.sum())) if np.isfinite(observed) \
        else math.nan
    return {"cosine": observed, "null_abs_q95": float(np.quantile(np.abs(null[finite]), 0.95)) if finite.any()
            else math.nan, "null_abs_mean": float(np.abs(null[finite]).mean()) if finite.any() else math.nan,
            "p_value": p, "permutations": permutations}


def position_on_axis(point: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Where `point` projects on the axis from mean(x | y=0) (0.0) to mean(x | y=1) (1.0)."""
    y = np.asarray(y).astype(bool)
    if y.all() or not y.any():
        return math.nan
    lo, hi = x[~y].mean(0), x[y].mean(0)
    d = hi - lo
    norm2 = float(d @ d)
    return float((point - lo) @ d / norm2) if norm2 > 0 else math.nan


# ---------------------------------------------------------------------------------------------------
# Variance decomposition


def group_r2(x: np.ndarray, groups: np.ndarray) -> float:
    """Share of the total (multivariate) variance of `x` explained by the means of `groups`:
    between-group sum of squares / total sum of squares. `groups` rows may be tuples (2-D)."""
    x = np.asarray(x, dtype=np.float64)
    groups = np.asarray(groups)
    _, inverse = np.unique(groups.reshape(len(groups), -1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    centred = x - x.mean(0)
    total = float((centred**2).sum())
    if total == 0:
        return math.nan
    counts = np.bincount(inverse)
    sums = np.zeros((len(counts), x.shape[1]))
    np.add.at(sums, inverse, centred)
    between = float(((sums**2).sum(1) / counts).sum())
    return between / total
