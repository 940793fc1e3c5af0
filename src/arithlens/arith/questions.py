"""Question types, operand -> token encoding, answers, and the `QuestionBatch` that flows downstream."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from arithlens.arith.features import complexity_classes, digit_features
from arithlens.arith.layout import Layout, check_n_digits
from arithlens.arith.qtype import QType  # re-exported: `from arithlens.arith.questions import QType` still works
from arithlens.arith.vocab import EQUALS, MINUS, MULT, PLUS, string_to_tokens, tokens_to_string
from arithlens.errors import ParseError, QuestionRequestError


OPERATOR_OF = {QType.ADD: PLUS, QType.SUB: MINUS, QType.NEG: MINUS, QType.MUL: MULT}
OP_CHAR = {PLUS: "+", MINUS: "-", MULT: "*"}


def mul_operand_digits(n_digits: int) -> int:
    """MUL operands use only the low ceil(n/2) digits so the product fits in n+1 digits."""
    return n_digits - n_digits // 2


def digits_of(values: np.ndarray, n_digits: int) -> np.ndarray:
    """(batch,) int64 -> (batch, n_digits) int8 with column k = digit k (0 = units)."""
    values = np.asarray(values)
    out = np.empty((len(values), n_digits), dtype=np.int8)
    # One divmod per digit; int32 when it fits is ~3x faster than int64 division.
    small = len(values) == 0 or (values.min() >= 0 and values.max() < 2**31)
    rest = values.astype(np.int32 if small else np.int64)
    for k in range(n_digits):
        quotient = rest // 10
        out[:, k] = rest - quotient * 10
        rest = quotient
    return out


def qtype_of(a: np.ndarray, op: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Vectorised qtype per row."""
    qt = np.full(a.shape, QType.ADD, dtype=np.int8)
    minus = op == MINUS
    qt[minus & (a >= b)] = QType.SUB
    qt[minus & (a < b)] = QType.NEG
    qt[op == MULT] = QType.MUL
    return qt


def result_of(a: np.ndarray, op: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(op == PLUS, a + b, np.where(op == MINUS, a - b, a * b))


def check_operands(n_digits: int, a: np.ndarray, op: np.ndarray, b: np.ndarray) -> None:
    limit = 10**n_digits
    if a.shape != b.shape or a.shape != op.shape or a.ndim != 1:
        raise QuestionRequestError("operands and operators must be 1-D arrays of one length")
    if len(a) and (a.min() < 0 or b.min() < 0 or a.max() >= limit or b.max() >= limit):
        raise QuestionRequestError(f"operands must lie in 0..{limit - 1} for {n_digits} digits")
    if not np.isin(op, (PLUS, MINUS, MULT)).all():
        raise QuestionRequestError("operator tokens must be + (10), - (11) or * (13)")
    mul = op == MULT
    if mul.any():
        mul_limit = 10 ** mul_operand_digits(n_digits)
        if a[mul].max() >= mul_limit or b[mul].max() >= mul_limit:
            raise QuestionRequestError(
                f"multiplication operands must be below {mul_limit} for {n_digits} digits so the product fits"
            )


@dataclass(frozen=True, eq=False)
class QuestionBatch:
    """Questions (a op b) with every label attached to its row.

    `a`, `b` are int64 operands, `op` the operator token per row; everything else (tokens, answers,
    qtype, per-digit features, complexity) is derived on first use. `labels` holds labels a generator
    knows that cannot be derived from the operands (e.g. a tricase set's test digit and case).
    """

    n_digits: int
    a: np.ndarray
    op: np.ndarray
    b: np.ndarray
    labels: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_n_digits(self.n_digits)
        for name in ("a", "b"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        object.__setattr__(self, "op", np.asarray(self.op, dtype=np.int8))
        check_operands(self.n_digits, self.a, self.op, self.b)
        for key, value in self.labels.items():
            if len(value) != len(self.a):
                raise QuestionRequestError(f"label {key!r} has {len(value)} rows, expected {len(self.a)}")

    @classmethod
    def from_strings(cls, n_digits: int, questions: list[str]) -> QuestionBatch:
        """Parse `"133357+182243="` (the `=` and any answer after it are optional)."""
        a, op, b = [], [], []
        for text in questions:
            body = text.split("=")[0]
            for char, token in (("+", PLUS), ("-", MINUS), ("*", MULT)):
                left, sep, right = body.partition(char)
                if sep and left.isdigit() and right.isdigit():
                    a.append(int(left)), op.append(token), b.append(int(right))
                    break
            else:
                raise ParseError(f"cannot parse question {text!r}; expected e.g. 133357+182243=")
        return cls(n_digits, np.array(a, np.int64), np.array(op, np.int8), np.array(b, np.int64))

    def __len__(self) -> int:
        return len(self.a)

    @property
    def layout(self) -> Layout:
        return Layout(self.n_digits)

    def select(self, rows: np.ndarray | slice) -> QuestionBatch:
        """A sub-batch (boolean mask, index array or slice), labels kept with their rows."""
        return QuestionBatch(
            self.n_digits, self.a[rows], self.op[rows], self.b[rows], {k: v[rows] for k, v in self.labels.items()}
        )

    @staticmethod
    def concat(batches: list[QuestionBatch]) -> QuestionBatch:
        n = {q.n_digits for q in batches}
        if len(n) != 1:
            raise QuestionRequestError(f"cannot concatenate batches with different n_digits {sorted(n)}")
        keys = set.intersection(*(set(q.labels) for q in batches))
        return QuestionBatch(
            n.pop(),
            np.concatenate([q.a for q in batches]),
            np.concatenate([q.op for q in batches]),
            np.concatenate([q.b for q in batches]),
            {k: np.concatenate([q.labels[k] for q in batches]) for k in sorted(keys)},
        )

    @cached_property
    def qtype(self) -> np.ndarray:
        """(batch,) int8 of `QType` values."""
        return qtype_of(self.a, self.op, self.b)

    @cached_property
    def result(self) -> np.ndarray:
        return result_of(self.a, self.op, self.b)

    @cached_property
    def digits_a(self) -> np.ndarray:
        """(batch, n_digits) int8, column k = digit k of a (0 = units)."""
        return digits_of(self.a, self.n_digits)

    @cached_property
    def digits_b(self) -> np.ndarray:
        return digits_of(self.b, self.n_digits)

    @cached_property
    def tokens(self) -> np.ndarray:
        """(batch, n_ctx) int8 token ids: question then answer (sign, n+1 digits); `+` for a zero result.

        Compact on purpose (1M questions = 22 MB); `torch_tokens()` gives the int64 tensor a model takes."""
        n, batch = self.n_digits, len(self)
        out = np.empty((batch, 3 * n + 4), dtype=np.int8)
        out[:, 0:n] = self.digits_a[:, ::-1]
        out[:, n] = self.op
        out[:, n + 1 : 2 * n + 1] = self.digits_b[:, ::-1]
        out[:, 2 * n + 1] = EQUALS
        out[:, 2 * n + 2] = np.where(self.result < 0, MINUS, PLUS)
        out[:, 2 * n + 3 :] = digits_of(np.abs(self.result), n + 1)[:, ::-1]
        return out

    def torch_tokens(self, device: str | None = None):
        """The token tensor for a model (torch is imported only here)."""
        import torch

        return torch.from_numpy(self.tokens).to(device=device or "cpu", dtype=torch.long)

    @cached_property
    def features(self):
        return digit_features(self.digits_a, self.digits_b)

    @cached_property
    def complexity(self) -> np.ndarray:
        """(batch,) complexity class names (S0..S5, M0..M4+, N1..N4+, '' for MUL), reference rules."""
        return complexity_classes(self.digits_a, self.digits_b, self.qtype, true_borrow=False)

    @cached_property
    def complexity_true(self) -> np.ndarray:
        """As `complexity` but NEG classes count the borrows really made computing |a-b| = b-a (N0..N4+)."""
        return complexity_classes(self.digits_a, self.digits_b, self.qtype, true_borrow=True)

    def question_string(self, row: int) -> str:
        return tokens_to_string(self.tokens[row, : 2 * self.n_digits + 2])

    def answer_string(self, row: int) -> str:
        return tokens_to_string(self.tokens[row, 2 * self.n_digits + 2 :])

    def row_dict(self, row: int) -> dict:
        """One row as plain JSON-able values (used by `arithlens questions --json`)."""
        qt = QType(int(self.qtype[row]))
        out = {
            "question": self.question_string(row),
            "answer": self.answer_string(row),
            "a": int(self.a[row]),
            "op": OP_CHAR[int(self.op[row])],
            "b": int(self.b[row]),
            "result": int(self.result[row]),
            "qtype": qt.name,
            "complexity": str(self.complexity[row]) or None,
            "features": self.features.row(row, qt),
        }
        if qt == QType.NEG:
            out["complexity_true"] = str(self.complexity_true[row])
        for key, value in self.labels.items():
            item = value[row]
            out[key] = item.item() if hasattr(item, "item") else item
        return out


    def columns(self, *, features: bool = True) -> dict[str, np.ndarray]:
        """Every row's labels as columns of one length: question, answer, a, op, b, result, qtype (name),
        complexity, the generator's labels (tricase_case, carry_out, ...) and, with `features`, one column per
        feature and digit (`SC1` = pair-only SC at digit 1, `SC1_real` = what really happens)."""
        qtypes = np.array([q.name for q in QType])
        out: dict[str, np.ndarray] = {
            "question": np.array([self.question_string(i) for i in range(len(self))], dtype=object),
            "answer": np.array([self.answer_string(i) for i in range(len(self))], dtype=object),
            "a": self.a, "op": np.array([OP_CHAR[int(o)] for o in self.op], dtype=object), "b": self.b,
            "result": self.result, "qtype": qtypes[self.qtype.astype(np.int64)], "complexity": self.complexity,
        }
        out.update(self.labels)
        if features:
            feats = self.features
            for name in sorted(feats.pair):
                for k in range(self.n_digits):
                    out[f"{name}{k}"] = feats.pair[name][:, k]
                    out[f"{name}{k}_real"] = feats.real[name][:, k]
        return out

    def to_pandas(self, *, features: bool = True):
        """`columns()` as a pandas DataFrame (needs pandas: the `notebooks` extra)."""
        try:
            import pandas as pd
        except ImportError:
            raise QuestionRequestError("to_pandas needs pandas: pip install 'arithlens[notebooks]' (or pandas), "
                                       "or use batch.columns()") from None
        return pd.DataFrame(self.columns(features=features))


def answer_string(n_digits: int, value: int) -> str:
    """1234 -> '+0001234' for 6 digits."""
    return ("-" if value < 0 else "+") + str(abs(value)).zfill(n_digits + 1)


def tokens_to_unsigned_int(tokens) -> int:
    return int("".join(str(int(t)) for t in tokens)) if len(tokens) else 0


def parse_answer(tokens) -> int:
    """Sign token then magnitude digits -> int."""
    tokens = [int(t) for t in tokens]
    sign = -1 if tokens[0] == MINUS else 1
    return sign * tokens_to_unsigned_int(tokens[1:])


__all__ = [
    "QType",
    "QuestionBatch",
    "answer_string",
    "digits_of",
    "mul_operand_digits",
    "parse_answer",
    "string_to_tokens",
    "tokens_to_unsigned_int",
]
