"""A dictionary's quality as the field reports it: explained variance, MSE, L0, dead and dense features, and the
model's exact accuracy per qtype with the site replaced by its reconstruction (spliced), beside clean and
mean-ablated accuracy (a splice can only be judged against what losing the site costs)."""

from __future__ import annotations

import numpy as np

from arithlens.analysis import stats
from arithlens.analysis.features.activations import Site
from arithlens.interventions import Engine
from arithlens.arith.questions import QType, QuestionBatch

DENSE_MIN = 0.5  # a feature firing on more than half of all questions is "dense"


def reconstruction_stats(x: np.ndarray, x_hat: np.ndarray, f: np.ndarray) -> dict:
    """Explained variance 1 - sum|x - x_hat|^2 / sum|x - mean|^2 (SAELens's), MSE per element, mean L0, and
    the shares of dead (never firing here) and dense (firing on > DENSE_MIN of rows) features."""
    x, x_hat = np.asarray(x, np.float64), np.asarray(x_hat, np.float64)
    resid = ((x - x_hat) ** 2).sum()
    total = ((x - x.mean(0)) ** 2).sum()
    fire = (f > 0).mean(0)
    return {"explained_variance": float(1 - resid / total) if total > 0 else float("nan"),
            "mse": float(((x - x_hat) ** 2).mean()), "l0": float((f > 0).sum(1).mean()),
            "dead": int((fire == 0).sum()), "dead_share": float((fire == 0).mean()),
            "dense": int((fire > DENSE_MIN).sum()), "dense_share": float((fire > DENSE_MIN).mean()),
            "n": int(len(x))}


def exact_by_qtype(wrong: np.ndarray, batch: QuestionBatch) -> dict:
    """Exact accuracy (every answer token right) per qtype present, a Wilson rate each."""
    exact = ~wrong.any(1)
    return {QType(q).name: stats.rate(int(exact[batch.qtype == q].sum()), int((batch.qtype == q).sum()))
            for q in np.unique(batch.qtype)}


def spliced_accuracy(engine: Engine, site: Site, batch: QuestionBatch, x: np.ndarray, x_hat: np.ndarray) -> dict:
    """Exact accuracy per qtype: clean, the site set to its reconstruction, and the site set to its mean."""
    spliced = engine.outcome([site.replace(x_hat)])
    mean = engine.outcome([site.replace(np.broadcast_to(x.astype(np.float64).mean(0), x.shape))])
    return {"clean": exact_by_qtype(engine.clean.wrong, batch), "spliced": exact_by_qtype(spliced.wrong, batch),
            "mean_ablated": exact_by_qtype(mean.wrong, batch)}


__all__ = ["DENSE_MIN", "exact_by_qtype", "reconstruction_stats", "spliced_accuracy"]
