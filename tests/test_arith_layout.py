"""Vocabulary, layout and encoding: the Appendix A values that belong to the task layer."""

import numpy as np
import pytest

from arithlens.arith import Layout, QType, QuestionBatch, answer_string, tokens_to_string
from arithlens.arith.questions import parse_answer, tokens_to_unsigned_int
from arithlens.arith.vocab import string_to_tokens
from arithlens.errors import ParseError, QuestionRequestError


def test_six_digit_layout_has_14_question_and_8_answer_tokens():
    lay = Layout(6)
    assert (lay.n_question, lay.n_answer, lay.n_ctx) == (14, 8, 22)
    assert lay.meanings[:7] == ("D5", "D4", "D3", "D2", "D1", "D0", "OPR")
    assert lay.meanings[7:14] == ("D'5", "D'4", "D'3", "D'2", "D'1", "D'0", "=")
    assert lay.meanings[14:] == ("A7", "A6", "A5", "A4", "A3", "A2", "A1", "A0")
    assert lay.d_pos(1) == 4 and lay.dp_pos(1) == 11 and lay.opr_pos == 6 and lay.eq_pos == 13
    assert lay.computed_at(2) == 18 and lay.answer_digit_at(18) == 2
    assert list(lay.answer_logit_positions) == list(range(13, 21))


@pytest.mark.parametrize("n, ctx", [(1, 7), (5, 19), (10, 34), (15, 49)])
def test_context_length_is_3n_plus_4(n, ctx):
    assert Layout(n).n_ctx == ctx


@pytest.mark.parametrize("n", [0, 16, -1])
def test_digits_out_of_range_are_rejected(n):
    with pytest.raises(QuestionRequestError, match="outside 1..15"):
        Layout(n)


def test_appendix_a_string_helpers():
    assert answer_string(6, 1234) == "+0001234"
    assert tokens_to_unsigned_int([0, 1, 2, 3, 4, 5]) == 12345
    assert tokens_to_string([12, 4, 0, 7]) == "=407"
    assert string_to_tokens("=407") == [12, 4, 0, 7]
    with pytest.raises(ParseError, match="unknown character"):
        string_to_tokens("12a")


@pytest.mark.parametrize(
    "question, answer, qtype",
    [
        ("133357+182243=", "+0315600", QType.ADD),
        # The project brief and the predecessor's notes print "-0123230" here; 123450 - 345670 is -222220.
        ("123450-345670=", "-0222220", QType.NEG),
        ("000345*000823=", "+0283935", QType.MUL),
        ("099111-099111=", "+0000000", QType.SUB),
    ],
)
def test_brief_examples_encode_exactly(question, answer, qtype):
    batch = QuestionBatch.from_strings(6, [question])
    assert batch.question_string(0) == question
    assert batch.answer_string(0) == answer
    assert batch.qtype[0] == qtype
    assert tokens_to_string(batch.tokens[0]) == question + answer
    assert parse_answer(batch.tokens[0, 14:]) == batch.result[0]


def test_sub_answer_is_negative_when_second_operand_larger():
    batch = QuestionBatch(6, np.array([5, 7]), np.array([11, 11]), np.array([7, 5]))
    assert [batch.answer_string(i) for i in range(2)] == ["-0000002", "+0000002"]
    assert batch.qtype.tolist() == [QType.NEG, QType.SUB]


def test_mul_operands_must_fit_so_the_product_fits():
    with pytest.raises(QuestionRequestError, match="below 1000"):
        QuestionBatch(6, np.array([1000]), np.array([13]), np.array([2]))


def test_operand_too_large_is_rejected():
    with pytest.raises(QuestionRequestError, match="0..999999"):
        QuestionBatch(6, np.array([10**6]), np.array([10]), np.array([2]))


def test_select_keeps_labels_with_their_rows():
    batch = QuestionBatch(3, np.array([1, 2, 3]), np.array([10, 10, 11]), np.array([4, 5, 6]),
                          {"tag": np.array(["x", "y", "z"])})
    sub = batch.select(np.array([2, 0]))
    assert sub.a.tolist() == [3, 1] and sub.labels["tag"].tolist() == ["z", "x"]
