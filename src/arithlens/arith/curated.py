"""The predecessor's hand-curated questions per complexity class (data in `data/curated.json`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from arithlens.arith.layout import check_n_digits
from arithlens.arith.questions import QuestionBatch
from arithlens.arith.vocab import MINUS, PLUS

ADD_CLASSES = ("S0", "S1", "S2", "S3", "S4", "S5")
SUB_CLASSES = ("M0", "M1", "M2", "M3")
NEG_CLASSES = ("N1", "N2", "N3", "N4")


@lru_cache(maxsize=1)
def curated_pairs() -> dict[str, list[tuple[int, int]]]:
    """Declared class -> operand pairs, as listed by the predecessor (up to 8-digit operands)."""
    text = resources.files("arithlens.arith").joinpath("data/curated.json").read_text()
    return {k: [tuple(p) for p in v] for k, v in json.loads(text)["classes"].items()}


@dataclass(frozen=True)
class CuratedSet:
    batch: QuestionBatch  # labels: "declared" (the listed class)
    dropped_too_long: int  # listed pairs with an operand >= 10^n
    mismatches: list[str]  # kept questions whose computed class differs from the declared one


def _declared_matches(declared: str, computed: str) -> bool:
    # The predecessor declares "N4" for the class we (and its classifier) name "N4+".
    return computed.rstrip("+") == declared


def curated(n_digits: int, classes: tuple[str, ...] | None = None) -> CuratedSet:
    """Build the curated set for `n_digits`: pairs that fit, whose computed class equals the declared one."""
    check_n_digits(n_digits)
    limit = 10**n_digits
    a, op, b, declared = [], [], [], []
    too_long = 0
    for name, pairs in curated_pairs().items():
        if classes is not None and name not in classes:
            continue
        token = PLUS if name.startswith("S") else MINUS
        for x, y in pairs:
            if x >= limit or y >= limit:
                too_long += 1
                continue
            a.append(x), op.append(token), b.append(y), declared.append(name)
    batch = QuestionBatch(n_digits, np.array(a, np.int64), np.array(op, np.int8), np.array(b, np.int64),
                          {"declared": np.array(declared)})
    computed = batch.complexity
    ok = np.array([_declared_matches(d, c) for d, c in zip(declared, computed)], dtype=bool)
    mismatches = [f"{batch.question_string(i)} declared {declared[i]} computed {computed[i]}"
                  for i in np.flatnonzero(~ok)]
    return CuratedSet(batch.select(ok), too_long, mismatches)
