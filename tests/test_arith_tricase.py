"""Tricase sets: exact counts, labels by construction, impossible classes are one-line errors."""

import numpy as np
import pytest

from arithlens.arith import QType, tricase, tricase_count
from arithlens.errors import QuestionRequestError


def pair_class(qtype, x, y):
    if qtype == QType.ADD:
        return 8 if x + y <= 8 else 9 if x + y == 9 else 10
    return 8 if x > y else 9 if x == y else 10


def true_carry_out(qtype, a, b, t):
    """Does a carry/borrow leave digit t in the real computation? (b - a for NEG)."""
    low = 10 ** (t + 1)
    if qtype == QType.ADD:
        return int(a % low + b % low >= low)
    x, y = (a, b) if qtype == QType.SUB else (b, a)
    return int(x % low < y % low)


@pytest.mark.parametrize("digit", range(6))
@pytest.mark.parametrize("qtype", [QType.ADD, QType.SUB, QType.NEG])
@pytest.mark.parametrize("case", [8, 9, 10])
def test_every_class_at_every_digit_gives_exact_labelled_rows(digit, qtype, case):
    if digit == 5 and (qtype, case) in ((QType.SUB, 10), (QType.NEG, 8)):
        # At the top digit nothing above can pay for the borrow: D5 < D'5 is never SUB.
        with pytest.raises(QuestionRequestError, match="no question exists"):
            tricase(6, digit, qtype, case, 100, np.random.default_rng(0))
        return
    batch = tricase(6, digit, qtype, case, 100, np.random.default_rng(digit * 100 + case))
    assert len(batch) == 100
    assert (batch.qtype == qtype).all()
    assert len({(int(a), int(b)) for a, b in zip(batch.a, batch.b)}) == 100
    da, db = batch.a // 10**digit % 10, batch.b // 10**digit % 10
    assert all(pair_class(qtype, x, y) == case for x, y in zip(da, db))
    assert (batch.labels["tricase_case"] == case).all() and (batch.labels["tricase_digit"] == digit).all()
    expected_out = [true_carry_out(qtype, int(a), int(b), digit) for a, b in zip(batch.a, batch.b)]
    assert batch.labels["carry_out"].tolist() == expected_out


def test_default_construction_lets_borrows_leave_the_test_digit():
    # The predecessor could never produce this (it zeroed the digits above the test digit).
    sub = tricase(6, 1, "sub", 10, 200, np.random.default_rng(1))
    neg = tricase(6, 1, "neg", 8, 200, np.random.default_rng(2))
    assert sub.labels["carry_out"].all() and neg.labels["carry_out"].all()
    assert (sub.qtype == QType.SUB).all() and (neg.qtype == QType.NEG).all()


@pytest.mark.parametrize("qtype, case", [("sub", 10), ("neg", 8)])
def test_reference_zero_high_digits_make_some_classes_impossible(qtype, case):
    with pytest.raises(QuestionRequestError, match="no question exists"):
        tricase(6, 2, qtype, case, 10, np.random.default_rng(0), high="zero")


def test_neg_t9_at_units_with_zero_high_digits_is_impossible():
    with pytest.raises(QuestionRequestError, match=r"NEG T9 at digit 0"):
        tricase(6, 0, "neg", 9, 10, np.random.default_rng(0), high="zero")


def test_zero_high_digits_keep_the_test_digit_the_highest_nonzero_one():
    batch = tricase(6, 2, "sub", 9, 50, np.random.default_rng(0), high="zero")
    assert (batch.a < 1000).all() and (batch.b < 1000).all()
    assert (batch.labels["carry_out"] == 0).all()


@pytest.mark.parametrize("mode, expected", [("never", 0), ("always", 1)])
def test_carry_in_mode_controls_the_carry_arriving_at_the_test_digit(mode, expected):
    for qtype, case in (("add", 9), ("sub", 9), ("neg", 9)):
        batch = tricase(6, 3, qtype, case, 100, np.random.default_rng(4), carry_in=mode)
        assert (batch.labels["carry_in"] == expected).all()
        # a T9 pair passes on exactly the carry/borrow that arrives
        assert (batch.labels["carry_out"] == expected).all()


def test_counts_are_exact_and_exhaustion_is_an_error():
    # 1 digit, ADD T9: the 10 pairs (x, 9 - x), no lower or higher digits.
    assert tricase_count(1, 0, QType.ADD, 9) == 10
    batch = tricase(1, 0, "add", "T9", 10, np.random.default_rng(0))
    assert sorted(batch.a.tolist()) == list(range(10)) and (batch.a + batch.b == 9).all()
    with pytest.raises(QuestionRequestError, match="only 10 exist"):
        tricase(1, 0, "add", "T9", 11, np.random.default_rng(0))
    with pytest.raises(QuestionRequestError, match="no question exists"):
        tricase(6, 0, "add", 9, 5, np.random.default_rng(0), carry_in="always")


def test_count_formula_matches_brute_force_on_two_digits():
    for qtype in (QType.ADD, QType.SUB, QType.NEG):
        for case in (8, 9, 10):
            for digit in (0, 1):
                for carry_in in ("any", "never", "always"):
                    for high in ("decide", "zero"):
                        brute = sum(
                            1 for a in range(100) for b in range(100)
                            if _matches(qtype, case, digit, carry_in, high, a, b)
                        )
                        assert tricase_count(2, digit, qtype, case, carry_in=carry_in, high=high) == brute, (
                            qtype, case, digit, carry_in, high)


def _matches(qtype, case, digit, carry_in, high, a, b):
    if qtype != QType.ADD and (a >= b) != (qtype == QType.SUB):
        return False
    x, y = a // 10**digit % 10, b // 10**digit % 10
    if pair_class(qtype, x, y) != case:
        return False
    if high == "zero" and (a >= 10 ** (digit + 1) or b >= 10 ** (digit + 1)):
        return False
    if high == "decide" and qtype != QType.ADD and digit < 1:
        ha, hb = a // 10 ** (digit + 1), b // 10 ** (digit + 1)
        if (ha > hb) != (qtype == QType.SUB) or ha == hb:
            return False
    arrives = true_carry_out(qtype, a, b, digit - 1) if digit > 0 else 0
    return carry_in == "any" or arrives == (carry_in == "always")


@pytest.mark.parametrize("bad, message", [(dict(digit=6), "outside 0..5"), (dict(case="T11"), "unknown tricase"),
                                          (dict(qtype="mul"), "ADD, SUB and NEG")])
def test_bad_requests_are_one_line_errors(bad, message):
    args = dict(digit=1, qtype="add", case=8) | bad
    with pytest.raises(QuestionRequestError, match=message) as info:
        tricase(6, args["digit"], args["qtype"], args["case"], 5, np.random.default_rng(0))
    assert "\n" not in str(info.value)
