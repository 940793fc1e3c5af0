"""What each dictionary feature means: its AUROC for every question label the tool has (carry / borrow per digit,
T8/T9/T10 classes, qtype, operand digits), a permutation null, an interval, top questions and per-qtype firing.

A label is binary and lives on a domain of rows: `ADD.SC1` (a carry really leaves digit 1) on the ADD rows,
`SUB.MB1.pair` (D1 < D'1) on the SUB rows, `NEG.NT1=8` on the NEG rows, `qtype=SUB`, `D1=7`, `D'1=7` on all rows.
The null of a label is the best |AUROC - 0.5| over *all* features after shuffling the label, so a match's p-value
already pays for picking the best of many features.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

from arithlens.arith.questions import QType, QuestionBatch

AUROC_MIN = 0.9  # a feature "carries" a label when max(AUROC, 1 - AUROC) reaches this ...
P_MAX = 0.01  # ... with a permutation p-value at most this (needs >= 99 permutations)
FIRE_CROSS = 0.05  # a feature firing on >= 5% of the rows of two qtypes or more is flagged cross-qtype
CARRY = {QType.ADD: "SC", QType.SUB: "MB", QType.NEG: "NB"}  # real carry / borrow out of a digit
TCLASS = {QType.ADD: "ST", QType.SUB: "MT", QType.NEG: "NT"}


def question_labels(batch: QuestionBatch) -> tuple[list[str], np.ndarray, list[str]]:
    """(names, (n, L) bool matrix, domain per label: "all" or a qtype name). Rows outside a label's domain are
    False and are left out when its AUROC is computed."""
    names, columns, domains = [], [], []

    def add(name: str, column: np.ndarray, domain: str) -> None:
        names.append(name)
        columns.append(np.asarray(column, dtype=bool))
        domains.append(domain)

    present = [QType(q) for q in np.unique(batch.qtype)]
    for op in present:
        add(f"qtype={op.name}", batch.qtype == op, "all")
    feats = batch.features
    for k in range(batch.n_digits):
        for op in present:
            if op not in CARRY:
                continue
            rows = batch.qtype == op
            add(f"{op.name}.{CARRY[op]}{k}", rows & (feats.real[CARRY[op]][:, k] == 1), op.name)
            add(f"{op.name}.{CARRY[op]}{k}.pair", rows & (feats.pair[CARRY[op]][:, k] == 1), op.name)
            for case in (8, 9, 10):
                add(f"{op.name}.{TCLASS[op]}{k}={case}", rows & (feats.pair[TCLASS[op]][:, k] == case), op.name)
    for k in range(batch.n_digits):
        for v in range(10):
            add(f"D{k}={v}", batch.digits_a[:, k] == v, "all")
            add(f"D'{k}={v}", batch.digits_b[:, k] == v, "all")
    return names, np.column_stack(columns), domains


def domain_rows(batch: QuestionBatch, domain: str) -> np.ndarray:
    return np.ones(len(batch), bool) if domain == "all" else batch.qtype == QType[domain]


def auroc_table(f: np.ndarray, batch: QuestionBatch, *, permutations: int = 100, seed: int = 0,
                labels: tuple[list[str], np.ndarray, list[str]] | None = None) -> dict:
    """AUROC of every feature (columns of `f` (n, F)) for every label, with a per-label max-over-features
    permutation null and Hanley-McNeil 95% intervals.

    Returns {"labels", "domains", "auroc" (F, L), "lo", "hi" (F, L), "p" (F, L), "positives", "n" (L,)}.
    Labels with no positive or no negative row in their domain get nan."""
    names, y, domains = labels if labels is not None else question_labels(batch)
    n_feat = f.shape[1]
    auc = np.full((n_feat, len(names)), np.nan)
    p = np.full_like(auc, np.nan)
    positives = np.zeros(len(names), np.int64)
    counts = np.zeros(len(names), np.int64)
    rng = np.random.default_rng(seed)
    for domain in sorted(set(domains)):
        rows = domain_rows(batch, domain)
        cols = np.array([j for j, d in enumerate(domains) if d == domain])
        yy = y[rows][:, cols].astype(np.float64)  # (m, l)
        ranks = rankdata(f[rows], axis=0)  # (m, F) average ranks: ties (many zeros) count half
        n1 = yy.sum(0)
        n0 = len(yy) - n1
        ok = (n1 > 0) & (n0 > 0)
        positives[cols], counts[cols] = n1.astype(np.int64), len(yy)

        def area(r: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                return (r.T @ yy - n1 * (n1 + 1) / 2) / (n1 * n0)  # (F, l)

        observed = area(ranks)
        observed[:, ~ok] = 0.5  # no positive or no negative row: no AUROC (nan below)
        exceed = np.zeros(observed.shape)
        for _ in range(permutations):
            null = np.abs(area(ranks[rng.permutation(len(yy))]) - 0.5).max(0)  # (l,) best feature per label
            exceed += null[None, :] >= np.abs(observed - 0.5) - 1e-12
        observed[:, ~ok] = np.nan
        auc[:, cols] = observed
        p[:, cols] = np.where(ok[None, :], (1 + exceed) / (1 + permutations), np.nan) if permutations else np.nan
    lo, hi = hanley_mcneil(auc, positives, counts - positives)
    return {"labels": names, "domains": domains, "auroc": auc, "lo": lo, "hi": hi, "p": p,
            "positives": positives, "n": counts, "permutations": permutations}


def hanley_mcneil(auc: np.ndarray, n1: np.ndarray, n0: np.ndarray, z: float = 1.959964) -> tuple[np.ndarray, np.ndarray]:
    """95% interval of an AUROC from its standard error (Hanley & McNeil 1982), clipped to [0, 1]."""
    a = np.asarray(auc, dtype=np.float64)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0)
    se = np.sqrt(np.maximum(var, 0.0))
    return np.clip(a - z * se, 0, 1), np.clip(a + z * se, 0, 1)


def strength(auc: np.ndarray) -> np.ndarray:
    """max(AUROC, 1 - AUROC): how well a feature separates a label, whichever way it points."""
    return np.maximum(auc, 1 - auc)


def best_feature(table: dict, label: str, live: np.ndarray) -> dict | None:
    """The live feature that separates `label` best, with its AUROC, interval, p-value and direction."""
    j = table["labels"].index(label)
    s = strength(table["auroc"][:, j])
    s = np.where(live & np.isfinite(s), s, -np.inf)
    if not np.isfinite(s).any():
        return None
    i = int(np.argmax(s))
    return match_record(table, i, j)


def match_record(table: dict, i: int, j: int) -> dict:
    a = float(table["auroc"][i, j])
    return {"label": table["labels"][j], "feature": i, "auroc": a, "strength": max(a, 1 - a),
            "ci": [float(table["lo"][i, j]), float(table["hi"][i, j])], "p_value": _num(table["p"][i, j]),
            "fires_on": "positive" if a >= 0.5 else "negative", "positives": int(table["positives"][j]),
            "n": int(table["n"][j]),
            "passes": bool(max(a, 1 - a) >= AUROC_MIN and table["p"][i, j] <= P_MAX)}


def carriers(table: dict, label: str, live: np.ndarray) -> list[int]:
    """Live features that carry `label` (strength >= AUROC_MIN and p <= P_MAX), strongest first."""
    j = table["labels"].index(label)
    s = strength(table["auroc"][:, j])
    ok = live & (s >= AUROC_MIN) & (table["p"][:, j] <= P_MAX)
    return [int(i) for i in np.argsort(-np.where(ok, s, -np.inf), kind="stable")[: int(ok.sum())]]


def firing(f: np.ndarray, batch: QuestionBatch) -> dict[str, np.ndarray]:
    """Per qtype present: the share of its rows on which each feature fires (F,)."""
    return {QType(q).name: (f[batch.qtype == q] > 0).mean(0) for q in np.unique(batch.qtype)}


def feature_cards(f: np.ndarray, batch: QuestionBatch, table: dict, live: np.ndarray, *, top: int = 8,
                  labels_per_feature: int = 5, bins: int = 20) -> list[dict]:
    """One record per live feature for the dashboard: firing per qtype, cross-qtype flag, activation histogram
    (over the rows it fires on), its best labels and its top-activating questions."""
    fire = firing(f, batch)
    s = strength(table["auroc"])
    cards = []
    for i in np.flatnonzero(live):
        col = f[:, i]
        on = col[col > 0]
        counts, edges = np.histogram(on, bins=bins) if len(on) else (np.zeros(bins), np.zeros(bins + 1))
        order = np.argsort(-np.where(np.isfinite(s[i]), s[i], -np.inf), kind="stable")[:labels_per_feature]
        best = [match_record(table, int(i), int(j)) for j in order if np.isfinite(s[i, j])]
        rows = np.argsort(-col, kind="stable")[:top]
        per_qtype = {name: float(v[i]) for name, v in fire.items()}
        cards.append({
            "feature": int(i), "fire_rate": float((col > 0).mean()), "fire_by_qtype": per_qtype,
            "cross_qtype": sum(v >= FIRE_CROSS for v in per_qtype.values()) >= 2,
            "mean_when_on": float(on.mean()) if len(on) else 0.0, "max": float(col.max()),
            "histogram": {"counts": [int(c) for c in counts], "edges": [float(e) for e in edges]},
            "labels": best,
            "top": [{"question": batch.question_string(int(r)), "answer": batch.answer_string(int(r)),
                     "qtype": QType(int(batch.qtype[r])).name, "activation": float(col[r])}
                    for r in rows if col[r] > 0],
        })
    return cards


def _num(x) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


__all__ = ["AUROC_MIN", "P_MAX", "auroc_table", "best_feature", "carriers", "feature_cards", "firing",
           "hanley_mcneil", "question_labels", "strength"]
