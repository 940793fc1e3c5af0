"""MIB's scoring of a method from its unit scores: keep the top-k units by |score| at each of MIB's circuit sizes
(0.1% .. 100% of units, k = int(share * units)), measure faithfulness (m(C) - m(empty)) / (m(model) - m(empty))
per qtype, and integrate: CPR (area under f) and CMD (area under |1 - f|), trapezoids on a linear axis."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

from arithlens.results.circuits import MIB_PERCENTAGES, CurveQType, FaithfulnessCurve
from arithlens.analysis.circuits.runner import Ablation, CircuitRunner
from arithlens.analysis.faithfulness import RunScores
from arithlens.errors import ArithLensError


def mib_sizes(n_units: int, percentages: Sequence[float] = MIB_PERCENTAGES) -> tuple[int, ...]:
    """Units kept at each size, rounded down as MIB does (`int(pct * n)`): 330 nodes -> 0, 0, 1, 3, 6, 16, 33,
    66, 165, 330."""
    if any(not 0 < p <= 1 for p in percentages) or list(percentages) != sorted(percentages):
        raise ArithLensError(f"circuit sizes must rise within (0, 1], not {list(percentages)}")
    return tuple(int(p * n_units) for p in percentages)


def ranked_units(units: Sequence[str], scores: Mapping[str, float]) -> list[str]:
    """`units` by |score|, largest first (MIB's `apply_topn` with absolute scores); units without a score count
    as 0 and ties keep the order of `units`, so the ranking is deterministic."""
    unknown = sorted(set(scores) - set(units))
    if unknown:
        raise ArithLensError(f"a score names {unknown[0]!r}, which is not a unit of this model")
    bad = [u for u, s in scores.items() if not math.isfinite(s)]
    if bad:
        raise ArithLensError(f"the score of {bad[0]!r} is {scores[bad[0]]}, not a finite number")
    order = {u: i for i, u in enumerate(units)}
    return sorted(units, key=lambda u: (-abs(scores.get(u, 0.0)), order[u]))


def _curve_row(name: str, mask: np.ndarray, runs: Sequence[RunScores], clean: RunScores,
               empty: RunScores) -> CurveQType:
    def exact(s: RunScores) -> float:
        return float((~s.wrong[mask]).all(1).mean())

    def diff(s: RunScores) -> float:
        return float(s.logit_diff[mask].mean())

    return CurveQType(name, int(mask.sum()), tuple(exact(s) for s in runs), tuple(diff(s) for s in runs),
                      exact(clean), exact(empty), diff(clean), diff(empty))


def faithfulness_curve(runner: CircuitRunner, scores: Mapping[str, float], *, model: str, method: str,
                       ablation: Ablation = Ablation("mean"), unit: str = "node",
                       percentages: Sequence[float] = MIB_PERCENTAGES, seed: int = 0) -> FaithfulnessCurve:
    """The curve of the circuits made of the top-k units by |score| at each size, all runs sharing one set of
    ablation values; per qtype and pooled over every question ("ALL", MIB's average)."""
    t0 = time.perf_counter()
    ranked = ranked_units(runner.units, scores)
    sizes = mib_sizes(len(ranked), percentages)
    clean, empty, *runs = runner.run([None, (), *(ranked[:k] for k in sizes)], ablation)
    everything = np.ones(len(clean.wrong), dtype=bool)
    rows = tuple(_curve_row(name, mask, runs, clean, empty) for name, mask in (*runner.qtypes, ("ALL", everything)))
    return FaithfulnessCurve(model, method, unit, ablation.label, len(ranked), tuple(percentages), sizes, rows, seed,
                             time.perf_counter() - t0)
