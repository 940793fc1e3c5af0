"""Labelled questions through the front door: uniform, enriched, curated and tricase batches, and the long
streams the `questions` command prints a chunk at a time."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from arithlens.arith.questions import QType, QuestionBatch
from arithlens.errors import ArgumentTypeError, ArithLensError
from arithlens.validate import check_choice, check_count, check_seed, check_weights

DEFAULT_TRICASE_COUNTS = {"ADD": 300, "SUB": 300, "NEG": 300}  # the founding notebook's per-qtype sets
QUESTION_OPS, QUESTION_KINDS, QTYPE_NAMES = ("add", "sub", "mix", "mul"), ("uniform", "enriched", "curated"), (
    "add", "sub", "neg", "mul")
MAX_DIGITS = 15  # operands of up to 15 digits keep every answer inside int64
# Questions generated at a time by `question_stream`; a count up to this is one draw (the same as one batch).
CHUNK = 50_000


def questions(count: int = 1000, *, op: str = "mix", kind: str = "uniform", n_digits: int = 6, seed: int = 0,
              qtypes: Mapping[str, float] | None = None) -> QuestionBatch:
    """`count` labelled questions: `kind` "uniform" or "enriched" (carry/borrow cascades), or "curated" (the
    predecessor's hand-picked set, `count` ignored); `op` "add", "sub", "mix" or "mul"; `qtypes` weights per
    question type instead (`{"neg": 1}`). Rows carry qtype, features and complexity (`batch.columns()`)."""
    from arithlens.arith.curated import curated
    from arithlens.arith.generators import enriched, uniform

    check_count("count", count, low=0)
    check_seed(seed, "seed")
    check_count("n_digits", n_digits, low=1, high=MAX_DIGITS)
    check_choice("op", op, QUESTION_OPS)
    if kind not in QUESTION_KINDS:
        raise ArithLensError(f"unknown question kind {kind!r}; expected uniform, enriched or curated")
    if qtypes is not None:
        qtypes = check_weights("qtypes", qtypes, QTYPE_NAMES)
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return uniform(n_digits, count, rng, op=op, qtypes=qtypes)
    if kind == "enriched":
        return enriched(n_digits, count, rng, op=op if qtypes is None else None, qtypes=qtypes)
    return curated(n_digits).batch


def tricase(digit: int, counts: Mapping[str | QType, int] | None = None, *, n_digits: int = 6, seed: int = 0,
            high: str = "decide", carry_in: str = "any") -> QuestionBatch:
    """Tricase questions at operand digit `digit`: per qtype (`{"ADD": 300, "SUB": 300, "NEG": 300}`, the
    founding notebook's sets) that many distinct rows, split evenly over the classes T8/T9/T10 possible there.

    Rows are labelled (`tricase_digit`, `tricase_case` 8/9/10, `carry_in`, `carry_out`: the real carry/borrow
    out of the digit). `high="decide"` lets the higher digits fix SUB vs NEG (so borrows do leave the digit);
    `high="zero"` is the predecessor's construction."""
    from arithlens.arith.tricase import CASES, tricase_count
    from arithlens.arith.tricase import tricase as tricase_class

    counts = DEFAULT_TRICASE_COUNTS if counts is None else counts
    check_count("n_digits", n_digits, low=1, high=MAX_DIGITS)
    check_count("digit", digit, low=0, high=n_digits - 1)
    check_seed(seed, "seed")
    check_choice("high", high, ("decide", "zero"))
    check_choice("carry_in", carry_in, ("any", "never", "always"))
    if not isinstance(counts, Mapping):
        raise ArgumentTypeError(f"counts must map qtypes to counts ({{'ADD': 300}}), not {counts!r}")
    rng = np.random.default_rng(seed)
    parts = []
    for name, total in counts.items():
        qtype = QType.parse(name) if isinstance(name, str) else QType(name)
        check_count(f"tricase count for {qtype.name}", total, low=0)
        cases = [c for c in CASES if tricase_count(n_digits, digit, qtype, c, carry_in=carry_in, high=high)]
        if total and not cases:
            raise ArithLensError(f"no {qtype.name} tricase class is possible at digit {digit}")
        for i, case in enumerate(cases):
            share = total // len(cases) + (1 if i < total % len(cases) else 0)
            if share:
                parts.append(tricase_class(n_digits, digit, qtype, case, share, rng, carry_in=carry_in, high=high))
    if not parts:
        raise ArithLensError("tricase counts ask for no questions")
    return QuestionBatch.concat(parts)


def question_stream(digits: int, op: str, count: int, seed: int, kind: str, *, digit: int | None = None,
                    case: str | None = None, qtype: str | None = None, high: str = "decide", carry_in: str = "any",
                    chunk: int = CHUNK) -> Iterator[QuestionBatch]:
    """`count` questions (per class for tricase) in batches of at most `chunk`, drawn in order from one generator
    seeded with `seed`, so memory stays flat however many are asked for. `kind` uniform, enriched, curated
    (the hand-picked set of `op`, cut to `count` when count is smaller) or tricase (`digit`, `qtype`, and one
    `case` T8 / T9 / T10 or all three)."""
    from arithlens.arith import curated as curated_mod
    from arithlens.arith import enriched, tricase_set, uniform
    from arithlens.arith import tricase as tricase_class

    rng = np.random.default_rng(seed)
    if kind == "curated":
        batch = curated_mod.curated(digits).batch
        keep = {"add": [QType.ADD], "sub": [QType.SUB, QType.NEG], "mix": [QType.ADD, QType.SUB, QType.NEG],
                "mul": []}[op]
        batch = batch.select(np.isin(batch.qtype, keep))
        if count and count < len(batch):
            batch = batch.select(slice(0, count))
        yield batch
        return
    left = count
    while True:
        n = min(left, chunk)
        if kind == "uniform":
            yield uniform(digits, n, rng, op=op)
        elif kind == "enriched":
            yield enriched(digits, n, rng, op=op if op != "mix" else None)
        elif case is None:
            yield tricase_set(digits, digit, qtype, n, rng, carry_in=carry_in, high=high)
        else:
            yield tricase_class(digits, digit, qtype, case, n, rng, carry_in=carry_in, high=high)
        left -= n
        if left <= 0:
            return
