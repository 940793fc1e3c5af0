"""The arithmetic task layer: vocabulary, layout, questions with labels, generators. No model code."""

from arithlens.arith.features import ALL_FEATURES, DigitFeatures, complexity_classes, digit_features
from arithlens.arith.generators import DEFAULT_QTYPE_MIX, enriched, uniform
from arithlens.arith.layout import MAX_DIGITS, MIN_DIGITS, Layout
from arithlens.arith.questions import QType, QuestionBatch, answer_string, parse_answer
from arithlens.arith.tricase import CASES, tricase, tricase_count, tricase_set
from arithlens.arith.vocab import D_VOCAB, EQUALS, MINUS, MULT, PLUS, string_to_tokens, tokens_to_string

__all__ = [
    "ALL_FEATURES", "CASES", "D_VOCAB", "DEFAULT_QTYPE_MIX", "EQUALS", "MAX_DIGITS", "MIN_DIGITS", "MINUS",
    "MULT", "PLUS", "DigitFeatures", "Layout", "QType", "QuestionBatch", "answer_string", "complexity_classes",
    "digit_features", "enriched", "parse_answer", "string_to_tokens", "tokens_to_string", "tricase",
    "tricase_count", "tricase_set", "uniform",
]
