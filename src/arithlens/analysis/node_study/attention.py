"""Attention (heads): where the node's position looks on a mixed set, and the study digit it picks."""

from __future__ import annotations

import numpy as np

from arithlens.analysis.node_study.options import ATTEND_MIN
from arithlens.arith.questions import QuestionBatch
from arithlens.errors import ArithLensError


def attention(pattern: np.ndarray, mixed: QuestionBatch, ops, layout) -> dict:
    pos = pattern.shape[1] - 1
    per = {op.name: pattern[mixed.qtype == op].mean(0).tolist() for op in ops if (mixed.qtype == op).any()}
    overall = np.mean([per[name] for name in per], axis=0)
    order = np.argsort(-overall, kind="stable")[:4]
    n = layout.n_digits

    def seen(p: int) -> float:  # a query sees positions up to its own
        return float(overall[p]) if p <= pos else 0.0

    digit_mass = [seen(layout.d_pos(j)) + seen(layout.dp_pos(j)) for j in range(n)]
    return {
        "positions": list(range(pos + 1)), "meanings": [layout.meaning(p) for p in range(pos + 1)],
        "per_qtype": per, "mean": overall.tolist(),
        "top": [{"position": int(p), "meaning": layout.meaning(int(p)), "weight": float(overall[p])}
                for p in order if overall[p] >= 0.01],
        "digit_pair_mass": digit_mass,
        "operator": float(overall[layout.opr_pos]) if layout.opr_pos <= pos else 0.0,
    }


def study_digit(digit: int | None, attention: dict | None, k: int | None, n: int) -> tuple[int, str]:
    if digit is not None:
        if not 0 <= digit < n:
            raise ArithLensError(f"--digit {digit} is outside 0..{n - 1}")
        return digit, "given"
    if attention is not None and attention["digit_pair_mass"]:
        mass = attention["digit_pair_mass"]
        j = int(np.argmax(mass))
        if mass[j] >= ATTEND_MIN:
            return j, "attention"
    if k is not None and 1 <= k <= n:
        return k - 1, "carry candidate (k-1)"
    raise ArithLensError("this node neither computes an answer digit nor attends to a digit pair: give --digit")


def candidates(attention: dict | None, k: int | None, t: int, n: int) -> list[dict]:
    mass = attention["digit_pair_mass"] if attention else []
    out = []
    for j in range(n):
        role = ("carry" if k is not None and j == k - 1 else "base" if j == k else "attended")
        m = mass[j] if j < len(mass) else None
        if role == "attended" and (m is None or m < 0.1) and j != t:
            continue
        out.append({"digit": j, "role": role, "attention": m, "study": j == t})
    return sorted(out, key=lambda c: -(c["attention"] or 0.0))

