"""Representation: the node's output per qtype (PCA, silhouettes, probes), shared directions between qtypes, and
the (Dt, D't) grid of mean outputs (operator blindness)."""

from __future__ import annotations

import math

import numpy as np

from arithlens.analysis import stats
from arithlens.analysis.node_study.options import PAIR_RULE, PCA_COMPONENTS, PROBE_COMPONENTS
from arithlens.arith.tricase import CASES


def representation(out_all, sets, ops, t, options, rng_rep, stat_seed):
    """Per-qtype PCA, silhouettes and probes on `per_case` rows per class. Probes (and the shared-direction
    tests) work in whitened coordinates: the top principal components of the pooled outputs, each scaled to
    unit variance, so that a random label split gives a direction near-uniform on the sphere (in raw
    coordinates it would lean on the largest component and every cosine would look 'shared')."""
    rows = {}
    for op in ops:
        picks = []
        for case in CASES:
            idx = np.flatnonzero(sets[op]["case"] == case)
            picks.append(np.sort(rng_rep.choice(idx, size=min(options.per_case, len(idx)), replace=False)))
        rows[op] = np.concatenate(picks)
    pooled = stats.rank_components(np.concatenate([out_all[op][rows[op]] for op in ops]), PROBE_COMPONENTS)
    scale = pooled.scores.std(0)
    result, white, weights = {}, {}, {}
    for op in ops:
        out = out_all[op][rows[op]]
        s = sets[op]
        case, carry, pair = s["case"][rows[op]], s["carry"][rows[op]], s["pair"][rows[op]]
        white[op] = (out - pooled.mean) @ pooled.components.T / scale
        p = stats.pca(out, PCA_COMPONENTS)
        q = s["questions"].select(rows[op])
        keys = np.stack([q.digits_a[:, t], q.digits_b[:, t]], 1)
        probe_carry = stats.probe_accuracy(white[op], carry, permutations=options.permutations,
                                           random_state=stat_seed)
        probe_pair = stats.probe_accuracy(white[op], pair, permutations=options.permutations, random_state=stat_seed)
        weights[op] = (probe_carry.coef, probe_carry.null_coefs)
        result[op.name] = {
            "n": len(out), "evr": p.explained_variance_ratio.tolist(),
            "silhouette_class": stats.silhouette(out, case),
            "silhouette_carry": stats.silhouette(out, carry),
            "probe_carry": probe_carry.to_dict(), "probe_pair": probe_pair.to_dict(),
            "pair_rule": PAIR_RULE[op], "carry_ceiling_from_pair": stats.lookup_ceiling(keys, carry),
            "scores": np.round(p.scores[:, :2], 5).tolist(), "case": case.tolist(), "carry": carry.tolist(),
        }
    return result, rows, white, weights


def shared(out_all, white, sets, rows, weights, ops, options, stat_seed) -> dict:
    """Cosines (whitened coordinates) of class-mean directions and of probe weights between qtypes, with nulls,
    and probe transfer: the carry probe of qtype a (its weight direction, threshold midway between a's class
    means) scored on qtype b's rows."""
    directions, probes, transfer = {}, {}, {}
    data = {op: (white[op], sets[op]["carry"][rows[op]]) for op in ops}
    raw = {op: out_all[op][rows[op]] for op in ops}  # cosine_raw: in d_model space, for reference (no null)
    for i, a in enumerate(ops):
        for b in ops[i + 1:]:
            key = f"{a.name}~{b.name}"
            (xa, ya), (xb, yb) = data[a], data[b]
            directions[key] = stats.direction_cosine_null(xa, ya, xb, yb, permutations=options.permutations,
                                                          random_state=stat_seed)
            directions[key]["cosine_raw"] = stats.cosine(stats.mean_difference(raw[a], ya),
                                                         stats.mean_difference(raw[b], yb))
            (wa, null_a), (wb, null_b) = weights[a], weights[b]
            observed = stats.cosine(wa, wb)
            null = np.array([stats.cosine(wa, v) for v in null_b] + [stats.cosine(v, wb) for v in null_a])
            null = null[np.isfinite(null)]
            probes[key] = {"cosine": observed,
                           "null_abs_q95": float(np.quantile(np.abs(null), 0.95)) if len(null) else math.nan,
                           "p_value": (1 + int((np.abs(null) >= abs(observed)).sum())) / (1 + len(null))
                           if len(null) and np.isfinite(observed) else math.nan}
    for a in ops:
        w = weights[a][0]
        xa, ya = data[a]
        threshold = _midpoint(xa @ w, ya) if np.isfinite(w).all() else math.nan
        transfer[a.name] = {b.name: float(((data[b][0] @ w > threshold) == data[b][1].astype(bool)).mean())
                            if np.isfinite(threshold) else math.nan for b in ops}
    return {"direction_cosines": directions, "probe_cosines": probes, "probe_transfer": transfer}


def _midpoint(score: np.ndarray, y: np.ndarray) -> float:
    y = y.astype(bool)
    if y.all() or not y.any():
        return 0.0
    return float((score[y].mean() + score[~y].mean()) / 2)


def grid(out_all, sets, ops, t) -> dict:
    """Mean output per (Dt, D't) per qtype, projected on the top 2 PCs of all the cell means; R^2 split."""
    cells, grids = [], {}
    for op in ops:
        q = sets[op]["questions"]
        key = q.digits_a[:, t].astype(np.int64) * 10 + q.digits_b[:, t]
        counts = np.bincount(key, minlength=100)
        sums = np.zeros((100, out_all[op].shape[1]))
        np.add.at(sums, key, out_all[op])
        means = np.divide(sums, np.maximum(counts, 1)[:, None])
        grids[op] = (means, counts)
        cells.append(means[counts > 0])
    p = stats.pca(np.concatenate(cells), 2)
    projection = {}
    for op in ops:
        means, counts = grids[op]
        proj = (means - p.mean) @ p.components.T  # (100, 2)
        proj[counts == 0] = np.nan
        projection[op.name] = {"pc0": proj[:, 0].reshape(10, 10).tolist(), "pc1": proj[:, 1].reshape(10, 10).tolist(),
                               "count": counts.reshape(10, 10).tolist()}
    out = np.concatenate([out_all[op] for op in ops])
    pair = np.concatenate([np.stack([sets[op]["questions"].digits_a[:, t], sets[op]["questions"].digits_b[:, t]], 1)
                           for op in ops])
    qtype = np.concatenate([np.full(len(out_all[op]), int(op)) for op in ops])
    r2_pair = stats.group_r2(out, pair)
    r2_cells = stats.group_r2(out, np.column_stack([pair, qtype]))
    return {"digit": t, "rows": "Dt (first operand digit)", "columns": "D't (second operand digit)",
            "evr": p.explained_variance_ratio.tolist(), "projection": projection,
            "r2_pair": r2_pair, "r2_qtype": stats.group_r2(out, qtype), "r2_pair_x_qtype": r2_cells,
            "qtype_beyond_pair": r2_cells - r2_pair, "n": len(out)}

