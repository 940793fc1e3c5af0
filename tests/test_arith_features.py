"""Per-digit features and complexity classes against definitions computed independently here."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arithlens.arith import QuestionBatch, QType
from arithlens.arith.vocab import MINUS, PLUS


def digit(x, k):
    return (x // 10**k) % 10


def reference_features(n, a, b):
    """Schoolbook arithmetic, one digit at a time, written without numpy."""
    out = {}
    carry = 0
    for k in range(n):
        s = digit(a, k) + digit(b, k)
        out[("SA", k)] = (s + carry) % 10
        out[("SS", k)] = int(s == 9 and carry == 1)
        carry = int(s + carry >= 10)
        out[("SC", k)] = carry
        out[("ST", k)] = 10 if carry else (9 if s == 9 else 8)
    for prefix, x, y in (("M", a, b), ("N", b, a)):
        borrow = 0
        for k in range(n):
            d = digit(x, k) - digit(y, k)
            out[(prefix + "D", k)] = (d - borrow) % 10
            out[(prefix + "Z", k)] = int(d == 0 and borrow == 1)
            borrow = int(d - borrow < 0)
            out[(prefix + "B", k)] = borrow
            out[(prefix + "T", k)] = 10 if borrow else (9 if d == 0 else 8)
    for k in range(n):
        hi_a, hi_b = a // 10**k, b // 10**k
        out[("GT", k)] = (hi_a > hi_b) - (hi_a < hi_b)
    return out


operands = st.integers(0, 999_999)


@settings(max_examples=300, deadline=None)
@given(operands, operands, st.sampled_from([PLUS, MINUS]))
def test_real_features_match_schoolbook_arithmetic(a, b, op):
    batch = QuestionBatch(6, np.array([a]), np.array([op]), np.array([b]))
    ref = reference_features(6, a, b)
    for (name, k), value in ref.items():
        assert batch.features.real[name][0, k] == value, (name, k, a, b)


@settings(max_examples=200, deadline=None)
@given(operands, operands)
def test_pair_features_look_at_the_digit_pair_only(a, b):
    batch = QuestionBatch(6, np.array([a]), np.array([MINUS]), np.array([b]))
    pair = batch.features.pair
    for k in range(6):
        x, y = digit(a, k), digit(b, k)
        assert pair["SC"][0, k] == (x + y >= 10) and pair["SS"][0, k] == (x + y == 9)
        assert pair["ST"][0, k] == (8 if x + y <= 8 else 9 if x + y == 9 else 10)
        assert pair["MB"][0, k] == (x < y) and pair["NB"][0, k] == (x > y)
        assert pair["MT"][0, k] == pair["NT"][0, k] == (8 if x > y else 9 if x == y else 10)
        assert pair["MD"][0, k] == (x - y) % 10 and pair["ND"][0, k] == (y - x) % 10


@settings(max_examples=300, deadline=None)
@given(operands, operands, st.sampled_from([PLUS, MINUS]))
def test_answer_digits_equal_the_real_answer_features(a, b, op):
    batch = QuestionBatch(6, np.array([a]), np.array([op]), np.array([b]))
    magnitude = abs(a + b if op == PLUS else a - b)
    name = {QType.ADD: "SA", QType.SUB: "MD", QType.NEG: "ND"}[QType(int(batch.qtype[0]))]
    assert [batch.features.real[name][0, k] for k in range(6)] == [digit(magnitude, k) for k in range(6)]


def reference_class(n, a, b, qtype, true_borrow=False):
    """§4.2 rules, written directly."""
    da = [digit(a, k) for k in range(n)]
    db = [digit(b, k) for k in range(n)]
    if qtype == "ADD":
        start = [x + y > 9 for x, y in zip(da, db)]
        link = [x + y == 9 for x, y in zip(da, db)]
        names, none = ["S1", "S2", "S3", "S4", "S5"], "S0"
    else:
        start = [(x > y) if (qtype == "NEG" and true_borrow) else (x < y) for x, y in zip(da, db)]
        link = [x == y for x, y in zip(da, db)]
        if qtype == "NEG":
            top = max([k for k in range(n) if da[k] or db[k]], default=0)
            link = [link[k] and k <= top for k in range(n)]
            names, none = ["N1", "N2", "N3", "N4+"], "N0"
        else:
            names, none = ["M1", "M2", "M3", "M4+"], "M0"
    best = -1
    for k in range(n):
        if start[k]:
            length = 0
            while k + length + 1 < n and link[k + length + 1]:
                length += 1
            best = max(best, length)
    return none if best < 0 else names[min(best, len(names) - 1)]


@settings(max_examples=400, deadline=None)
@given(operands, operands, st.sampled_from([PLUS, MINUS]))
def test_complexity_matches_the_written_rules(a, b, op):
    batch = QuestionBatch(6, np.array([a]), np.array([op]), np.array([b]))
    qt = QType(int(batch.qtype[0])).name
    assert batch.complexity[0] == reference_class(6, a, b, qt)
    assert batch.complexity_true[0] == reference_class(6, a, b, qt, true_borrow=True)


@pytest.mark.parametrize(
    "question, cls",
    [("054545+045455=", "S5"), ("099004-000008=", "M3"), ("003111-003117=", "N4+"), ("000000+000000=", "S0"),
     ("000015+000015=", "S1"), ("000081+000019=", "S2")],
)
def test_spec_examples_have_their_class(question, cls):
    assert QuestionBatch.from_strings(6, [question]).complexity[0] == cls


def test_neg_true_borrow_class_counts_borrows_of_b_minus_a():
    # 3111 - 3117 = -6: b - a = 6 makes no borrow at all, the reference rule sees a cascade of 3.
    batch = QuestionBatch.from_strings(6, ["003111-003117="])
    assert batch.complexity_true[0] == "N0"
    assert batch.features.real["NB"][0].tolist() == [0, 0, 0, 0, 0, 0]
