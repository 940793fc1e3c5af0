"""The node studies' probe fits: `stats.probe_accuracy` with the logistic probe as it was (`OldLogisticProbe`,
a copy kept here) vs `stats.LogisticProbe` now, in one process, alternating, on one BLAS thread (as the node
study runs them).

    PYTHONPATH=src python benchmarks/bench_probes.py [--rounds 2] [--seeds 0,1,2,3] [--n 900] [--d 32]
        [--permutations 100]

Inputs as the node study's: n rows of d whitened components (standard Gaussian), a binary label from a
planted direction (strength per seed: from weak to nearly separable, positives 1/3 or 1/2), 100 permutations,
5 folds + 1 final fit = 6 fits of 101 label columns per call. Prints CPU seconds (this process:
time.process_time) of each way per round and seed, the ratio of the totals, and the largest differences between
the two ways: coefficients (observed and null, input units), accuracies and p-values (must be equal), and how
many predictions of a fit on all rows (observed + permuted labels) differ (must be 0).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from arithlens.analysis import stats
from arithlens.errors import ArithLensError

STRENGTHS = (0.3, 1.0, 2.0, 6.0)  # planted signal of seed % 4: weak, moderate, strong, nearly separable


class OldLogisticProbe:
    """`stats.LogisticProbe` before the probe-fit speedup (full Hessian GEMM, eta recomputed each iteration,
    np.logaddexp loss), verbatim."""

    def __init__(self, C: float = 1.0, max_iter: int = 100, tol: float = 1e-6, standardize: bool = True):
        if C <= 0:
            raise ArithLensError(f"C must be positive, not {C}")
        self.C, self.max_iter, self.tol, self.standardize = C, max_iter, tol, standardize

    def fit(self, x: np.ndarray, y: np.ndarray) -> OldLogisticProbe:
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
        loss = _old_logistic_loss(xs, y, w, penalty)
        outer = (xs[:, :, None] * xs[:, None, :]).reshape(n, d1 * d1)  # row outer products: Hessians in one GEMM
        active = np.arange(len(w))  # columns still moving; converged ones are left alone
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            self.n_iter_ += 1
            wa, ya = w[active], y[:, active]
            p = _old_sigmoid(xs @ wa.T)  # (n, a)
            grad = (xs.T @ (p - ya)).T + wa * penalty  # (a, d+1)
            s = p * (1 - p)  # (n, a)
            hess = (s.T @ outer).reshape(len(active), d1, d1) + np.diag(penalty)[None]  # (a, d+1, d+1)
            step = np.linalg.solve(hess, grad[..., None])[..., 0]  # (a, d+1)
            # Damped Newton: halve the step of any column whose loss went up.
            scale = np.ones(len(active))
            for _ in range(30):
                trial = wa - step * scale[:, None]
                new = _old_logistic_loss(xs, ya, trial, penalty)
                worse = new > loss[active] + 1e-12
                if not worse.any():
                    break
                scale[worse] *= 0.5
            w[active], loss[active] = trial, new
            active = active[np.abs(step * scale[:, None]).max(1) >= self.tol]
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


def _old_sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))


def _old_logistic_loss(xs, y, w, penalty) -> np.ndarray:
    eta = xs @ w.T  # (n, m)
    nll = np.logaddexp(0, eta) - y * eta
    return nll.sum(0) + 0.5 * (w * w * penalty).sum(1)


def problem(seed: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """n x d standard Gaussian rows and a binary label read off a random direction (strength by seed % 4)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    direction = rng.standard_normal(d)
    direction /= np.linalg.norm(direction)
    share = 1 / 3 + (seed % 2) / 6  # positives: 1/3 or 1/2
    score = STRENGTHS[seed % 4] * (x @ direction) + rng.logistic(size=n)
    y = (score > np.quantile(score, 1 - share)).astype(np.int8)
    return x, y


def run(probe_class, x, y, permutations: int) -> tuple[stats.ProbeResult, float]:
    saved = stats.LogisticProbe
    stats.LogisticProbe = probe_class  # probe_accuracy looks the class up in its module
    try:
        start = time.process_time()
        result = stats.probe_accuracy(x, y, permutations=permutations, random_state=7)
        return result, time.process_time() - start
    finally:
        stats.LogisticProbe = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--n", type=int, default=900)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--permutations", type=int, default=100)
    args = parser.parse_args()
    new_class = stats.LogisticProbe
    seeds = [int(s) for s in args.seeds.split(",")]
    totals = {"old": 0.0, "new": 0.0}
    worst = {"coef_abs": 0.0, "coef_rel": 0.0, "accuracy": 0.0, "p_value": 0.0, "predictions": 0}
    with threadpool_limits(limits=1, user_api="blas"):
        for r in range(args.rounds):
            for seed in seeds:
                x, y = problem(seed, args.n, args.d)
                order = ("old", "new") if (r + seed) % 2 == 0 else ("new", "old")
                results, seconds = {}, {}
                for way in order:
                    results[way], seconds[way] = run(OldLogisticProbe if way == "old" else new_class, x, y,
                                                     args.permutations)
                    totals[way] += seconds[way]
                old, new = results["old"], results["new"]
                coef_old = np.vstack([old.coef, old.null_coefs])
                coef_new = np.vstack([new.coef, new.null_coefs])
                diff = np.abs(coef_new - coef_old)
                worst["coef_abs"] = max(worst["coef_abs"], float(diff.max()))
                worst["coef_rel"] = max(worst["coef_rel"], float((diff / np.abs(coef_old).max(1, keepdims=True)).max()))
                acc_old = np.concatenate([[old.accuracy], old.fold_accuracies, old.null_accuracies])
                acc_new = np.concatenate([[new.accuracy], new.fold_accuracies, new.null_accuracies])
                worst["accuracy"] = max(worst["accuracy"], float(np.abs(acc_new - acc_old).max()))
                worst["p_value"] = max(worst["p_value"], abs(new.p_value - old.p_value))
                # held-out predictions of the final fits on all rows (observed + permuted labels)
                rng = np.random.default_rng(seed)
                labels = np.column_stack([y] + [rng.permutation(y) for _ in range(args.permutations)])
                fits = [c().fit(x, labels) for c in (OldLogisticProbe, new_class)]
                worst["predictions"] += int((fits[0].predict(x) != fits[1].predict(x)).sum())
                print(f"round {r} seed {seed} (strength {STRENGTHS[seed % 4]}, accuracy {old.accuracy:.4f}, "
                      f"p {old.p_value:.4f}): old {seconds['old']:.2f} CPU s, new {seconds['new']:.2f} CPU s, "
                      f"ratio {seconds['old'] / seconds['new']:.2f}", flush=True)
    print(f"total: old {totals['old']:.2f} CPU s, new {totals['new']:.2f} CPU s, "
          f"ratio {totals['old'] / totals['new']:.2f}")
    print(f"largest differences: coefficients {worst['coef_abs']:.2e} absolute, {worst['coef_rel']:.2e} relative "
          f"(to each fit's largest); accuracies {worst['accuracy']:.2e}; p-values {worst['p_value']:.2e}; "
          f"predictions differing {worst['predictions']}")
    print(f"load average {os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d %H:%M:%S')}")


if __name__ == "__main__":
    main()
