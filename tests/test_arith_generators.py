"""Generators: answers equal Python arithmetic, exact counts, seeds, cascades, distinctness."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arithlens.arith import QType, enriched, uniform
from arithlens.arith.questions import parse_answer
from arithlens.errors import QuestionRequestError


def python_answer(a, op, b):
    return {10: a + b, 11: a - b, 13: a * b}[op]


def assert_rows_are_right(batch):
    for i in range(len(batch)):
        a, op, b = int(batch.a[i]), int(batch.op[i]), int(batch.b[i])
        value = python_answer(a, op, b)
        assert parse_answer(batch.tokens[i, 2 * batch.n_digits + 2:]) == value
        assert batch.answer_string(i) == ("-" if value < 0 else "+") + str(abs(value)).zfill(batch.n_digits + 1)
        assert batch.question_string(i) == f"{a:0{batch.n_digits}d}{'+-=*'[op - 10] if op != 13 else '*'}" \
            f"{b:0{batch.n_digits}d}="
        expected_qtype = {10: QType.ADD, 13: QType.MUL}.get(op, QType.SUB if a >= b else QType.NEG)
        assert batch.qtype[i] == expected_qtype


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 15), st.sampled_from(["add", "sub", "mix", "mul"]), st.integers(0, 60), st.integers(0, 2**32))
def test_uniform_rows_equal_python_arithmetic(n, op, count, seed):
    batch = uniform(n, count, np.random.default_rng(seed), op=op)
    assert len(batch) == count
    assert_rows_are_right(batch)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 15), st.integers(0, 60), st.integers(0, 2**32))
def test_enriched_rows_equal_python_arithmetic(n, count, seed):
    batch = enriched(n, count, np.random.default_rng(seed), qtypes={"add": 1, "sub": 1, "neg": 1, "mul": 1})
    assert len(batch) == count
    assert_rows_are_right(batch)


def test_same_seed_same_questions_and_two_seeds_differ():
    one = uniform(6, 500, np.random.default_rng(7), op="mix")
    two = uniform(6, 500, np.random.default_rng(7), op="mix")
    other = uniform(6, 500, np.random.default_rng(8), op="mix")
    assert np.array_equal(one.tokens, two.tokens)
    assert not np.array_equal(one.tokens, other.tokens)
    e1 = enriched(6, 500, np.random.default_rng(7))
    e2 = enriched(6, 500, np.random.default_rng(7))
    assert np.array_equal(e1.tokens, e2.tokens)


@pytest.mark.parametrize("qtype", ["add", "sub", "neg", "mul"])
def test_uniform_by_qtype_gives_only_that_qtype(qtype):
    batch = uniform(6, 2000, np.random.default_rng(0), qtypes={qtype: 1})
    assert (batch.qtype == QType.parse(qtype)).all()
    if qtype == "mul":
        assert batch.a.max() < 1000 and batch.b.max() < 1000


def test_enriched_mix_follows_the_requested_weights_and_makes_cascades():
    batch = enriched(6, 20000, np.random.default_rng(3), qtypes={"add": 0.5, "sub": 0.25, "neg": 0.25})
    share = np.bincount(batch.qtype, minlength=4) / len(batch)
    assert share[QType.ADD] == pytest.approx(0.5, abs=0.02)
    assert share[QType.SUB] == pytest.approx(0.25, abs=0.02)
    # Cascades: far more S2+ / M2+ / true-N2+ questions than uniform operands give.
    uni = uniform(6, 20000, np.random.default_rng(3), qtypes={"add": 0.5, "sub": 0.25, "neg": 0.25})

    def hard(b):
        c = b.complexity_true
        return np.isin(c, ["S3", "S4", "S5", "M3", "M4+", "N3", "N4+"]).mean()

    assert hard(batch) > 3 * hard(uni)
    equal = (batch.a == batch.b) & (batch.qtype == QType.SUB)
    assert 0 < equal.sum() < 0.03 * len(batch)


def test_distinct_request_larger_than_the_space_is_an_error():
    with pytest.raises(QuestionRequestError, match="only 100 exist"):
        uniform(1, 101, np.random.default_rng(0), op="add", distinct=True)
    batch = uniform(1, 100, np.random.default_rng(0), op="add", distinct=True)
    assert len({(int(a), int(b)) for a, b in zip(batch.a, batch.b)}) == 100


def test_bad_op_and_negative_count_are_errors():
    with pytest.raises(QuestionRequestError, match="unknown op"):
        uniform(6, 5, np.random.default_rng(0), op="div")
    with pytest.raises(QuestionRequestError, match="non-negative"):
        uniform(6, -1, np.random.default_rng(0))


def test_shared_low_rows_share_their_low_digits_and_keep_their_qtype():
    batch = enriched(6, 400, np.random.default_rng(5), qtypes={"sub": 1, "neg": 1}, shared_low=1.0)
    assert_rows_are_right(batch)
    assert (batch.a % 10 == batch.b % 10).mean() > 0.95  # all but the few NEG rows that would become a == b
    assert (batch.qtype[: len(batch)] != QType.ADD).all()
    assert (batch.result % 10 == 0).mean() > 0.95


def _starts_a_run(x: np.ndarray, y: np.ndarray, start, link) -> np.ndarray:
    """Per row: some digit k has start(x_k, y_k) and link(x_k+1, y_k+1) (digits least significant first)."""
    return (start(x[:, :-1], y[:, :-1]) & link(x[:, 1:], y[:, 1:])).any(axis=1)


def _digits(values: np.ndarray, n: int) -> np.ndarray:
    return np.stack([np.abs(values) // 10**k % 10 for k in range(n)], axis=1)


def test_near_cascades_put_a_run_of_nines_above_a_pair_that_makes_no_carry_or_borrow():
    rng = np.random.default_rng(3)
    add = enriched(6, 600, rng, qtypes={"add": 1}, cascade=1.0, near_cascade=1.0)
    assert_rows_are_right(add)
    x, y = _digits(add.a, 6), _digits(add.b, 6)
    assert _starts_a_run(x, y, lambda a, b: a + b <= 8, lambda a, b: a + b == 9).all()
    real = enriched(6, 600, rng, qtypes={"add": 1}, cascade=1.0)
    x, y = _digits(real.a, 6), _digits(real.b, 6)
    assert _starts_a_run(x, y, lambda a, b: a + b >= 10, lambda a, b: a + b == 9).all()
    # uniform rows seldom have a stopped run: the near share is what puts them there
    assert _starts_a_run(x, y, lambda a, b: a + b <= 8, lambda a, b: a + b == 9).mean() < 0.6

    sub = enriched(6, 600, rng, qtypes={"sub": 1, "neg": 1}, cascade=1.0, near_cascade=1.0)
    assert_rows_are_right(sub)
    big = np.maximum(sub.a, sub.b)
    small = np.minimum(sub.a, sub.b)
    x, y = _digits(big, 6), _digits(small, 6)
    assert _starts_a_run(x, y, lambda a, b: a > b, lambda a, b: a == b).all()


def test_near_cascade_zero_keeps_the_random_stream_of_recipes_without_it():
    a = enriched(6, 500, np.random.default_rng(9), cascade=0.5)
    b = enriched(6, 500, np.random.default_rng(9), cascade=0.5, near_cascade=0.0)
    assert (a.a == b.a).all() and (a.b == b.b).all() and (a.op == b.op).all()
    c = enriched(6, 500, np.random.default_rng(9), cascade=0.5, near_cascade=0.5)
    assert not ((a.a == c.a).all() and (a.b == c.b).all())
    with pytest.raises(QuestionRequestError, match="near_cascade"):
        enriched(6, 5, np.random.default_rng(0), near_cascade=1.5)


def test_shared_high_rows_share_their_top_digits_and_keep_their_qtype():
    rng = np.random.default_rng(21)
    for qtypes in ({"add": 1}, {"sub": 1}, {"neg": 1}):
        batch = enriched(6, 500, rng, qtypes=qtypes, cascade=0.0, shared_high=1.0)
        assert_rows_are_right(batch)
        assert (batch.qtype[: len(batch)] == QType.parse(next(iter(qtypes)))).all()
        same_top = batch.a // 100_000 == batch.b // 100_000
        assert same_top.mean() > 0.95  # all but NEG rows that would have become a == b
        # m is uniform in 1..5, so about 3 rows in 5 share at least their top 3 digits (uniform rows: 1 in 1,000)
        assert 0.5 < (batch.a // 1_000 == batch.b // 1_000).mean() < 0.7
    # NEG keeps a < b although the sign is decided below the shared digits, as in the stress set
    neg = enriched(6, 300, rng, qtypes={"neg": 1}, cascade=0.0, shared_high=1.0)
    assert (neg.a < neg.b).all()


def test_shared_high_zero_keeps_the_random_stream_and_bad_shares_fail():
    a = enriched(6, 500, np.random.default_rng(9), cascade=0.4, shared_low=0.15, near_cascade=0.3)
    b = enriched(6, 500, np.random.default_rng(9), cascade=0.4, shared_low=0.15, near_cascade=0.3, shared_high=0.0)
    assert (a.a == b.a).all() and (a.b == b.b).all() and (a.op == b.op).all()
    c = enriched(6, 500, np.random.default_rng(9), cascade=0.4, shared_low=0.15, near_cascade=0.3, shared_high=0.1)
    assert not ((a.a == c.a).all() and (a.b == c.b).all())
    with pytest.raises(QuestionRequestError, match="shared_high"):
        enriched(6, 5, np.random.default_rng(0), shared_high=-0.1)
