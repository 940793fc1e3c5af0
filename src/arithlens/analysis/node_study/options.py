"""The node study's vocabulary, decision thresholds and options (the rules they enter are in `verdict`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arithlens.analysis.nodes import Major
from arithlens.arith.questions import QType
from arithlens.errors import ArithLensError

OPS = (QType.ADD, QType.SUB, QType.NEG)
CARRY = {QType.ADD: "SC", QType.SUB: "MB", QType.NEG: "NB"}  # real carry / borrow out of a digit
WORD = {QType.ADD: "carry", QType.SUB: "borrow", QType.NEG: "borrow"}
PAIR_RULE = {QType.ADD: "Dt+D't>=10", QType.SUB: "Dt<D't", QType.NEG: "Dt>D't"}
PCA_TAG = {QType.ADD: (Major.MATH_ADD, "SP"), QType.SUB: (Major.MATH_SUB, "MP"), QType.NEG: (Major.MATH_NEG, "NP")}
ABLATIONS = ("mean", "resample", "same_class_mean", "other_class_mean")

ATTEND_MIN = 0.5
PROBE_MIN = 0.95
P_MAX = 0.01
SUFFICIENT_MIN = 0.8
NECESSARY_MIN = 0.05
SHARED_COS_MIN = 0.5
OPERATOR_BLIND_MAX = 0.05
PROBE_COMPONENTS = 32  # probes see the top principal components (a head's output has rank <= d_head)
PCA_COMPONENTS = 6

@dataclass(frozen=True)
class StudyOptions:
    questions: int = 1000  # necessity: questions per qtype x T class
    pairs: int = 200  # sufficiency: clean/store pairs per qtype
    per_case: int = 300  # representation: rows per qtype x T class
    mixed: int = 1000  # mixed set: attention, means, resampling
    permutations: int = 100  # permutation null of probes and cosines
    seed: int = 0
    digit: int | None = None  # study digit; None: from attention (heads) or k-1

    def __post_init__(self) -> None:
        for name, low in (("questions", 10), ("pairs", 10), ("per_case", 10), ("mixed", 10), ("permutations", 0)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ArithLensError(f"{name} must be an integer >= {low}, not {value!r}")
