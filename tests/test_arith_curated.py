"""The curated set reproduces the predecessor's counts for 6 digits with no class mismatches."""

import numpy as np

from arithlens.arith import QType
from arithlens.arith.curated import curated, curated_pairs

KEPT_N6 = {"S0": 24, "S1": 23, "S2": 25, "S3": 17, "S4": 9, "S5": 12,
           "M0": 29, "M1": 18, "M2": 15, "M3": 10, "N1": 10, "N2": 9, "N3": 7, "N4": 6}
LISTED = {"S0": 30, "S1": 29, "S2": 31, "S3": 19, "S4": 11, "S5": 15,
          "M0": 37, "M1": 24, "M2": 21, "M3": 14, "N1": 10, "N2": 9, "N3": 7, "N4": 7}


def test_listed_counts_match_the_reference():
    assert {k: len(v) for k, v in curated_pairs().items()} == LISTED


def test_six_digit_curated_set_keeps_214_questions_with_no_mismatch():
    result = curated(6)
    assert result.mismatches == []
    declared = result.batch.labels["declared"]
    assert {k: int((declared == k).sum()) for k in KEPT_N6} == KEPT_N6
    assert len(result.batch) == 214 and result.dropped_too_long == sum(LISTED.values()) - 214
    counts = np.bincount(result.batch.qtype, minlength=3)
    assert counts[QType.ADD] == 110 and counts[QType.SUB] == 72 and counts[QType.NEG] == 32


def test_curated_classes_equal_the_computed_complexity():
    batch = curated(6).batch
    for declared, computed in zip(batch.labels["declared"], batch.complexity):
        assert computed.rstrip("+") == declared
