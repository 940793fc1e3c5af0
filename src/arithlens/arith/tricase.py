"""Tricase sets: questions that differ only in the class of one digit pair, built by construction.

For test digit t the classes are T8 / T9 / T10:
  ADD:      Dt + D't <= 8 (never carries), == 9 (carries only if a carry arrives), >= 10 (always carries)
  SUB, NEG: Dt > D't, Dt == D't, Dt < D't (the predecessor's MT1 / MT2 / MT3)
A question is three independent parts: the pair at digit t (drawn from the class), the `low` digits
below t (drawn to make a carry/borrow arrive at t: "any", "never" or "always", in the semantics of the
real computation, so b - a for NEG), and the `high` digits above t:
  high="decide" (default): for SUB/NEG the digits above t fix the qtype (a_high > b_high for SUB,
      a_high < b_high for NEG), so a carry or borrow can leave digit t and every class is possible;
      for ADD they are uniform. At the top digit (t = n-1) there are no higher digits and the pair
      (and, for T9, the low digits) decides the qtype.
  high="zero": the predecessor's construction: digits above t are zero, so for SUB/NEG the sign is
      decided at t and no borrow ever leaves it (SUB admits T8/T9 only, NEG T10 and, for t > 0, T9).
Rows are distinct; asking for more than the class holds, or for an impossible class, is an error.
Every row carries labels: tricase_digit, tricase_case, carry_in, carry_out (real computation at t).
"""

from __future__ import annotations

import numpy as np

from arithlens.arith.layout import check_n_digits
from arithlens.arith.questions import OPERATOR_OF, QType, QuestionBatch, digits_of
from arithlens.errors import QuestionRequestError

CASES = (8, 9, 10)
LT, EQ, GT = "<", "=", ">"
_PAIRS = np.array([(i, j) for i in range(10) for j in range(10)], dtype=np.int64)


def parse_case(case: int | str) -> int:
    text = str(case).upper().lstrip("T")
    if text not in ("8", "9", "10"):
        raise QuestionRequestError(f"unknown tricase class {case!r}; expected T8, T9 or T10")
    return int(text)


def case_pairs(qtype: QType, case: int) -> np.ndarray:
    """The (Dt, D't) pairs of a class: 45, 10 or 45 of them."""
    x, y = _PAIRS[:, 0], _PAIRS[:, 1]
    if qtype == QType.ADD:
        keep = {8: x + y <= 8, 9: x + y == 9, 10: x + y >= 10}[case]
    else:
        keep = {8: x > y, 9: x == y, 10: x < y}[case]
    return _PAIRS[keep]


class _Part:
    """Pairs (x, y) in [0, size)^2 under one constraint; counted exactly and sampled uniformly."""

    def __init__(self, size: int, relations: frozenset[str] | None = None, sum_below: bool | None = None):
        self.size, self.relations, self.sum_below = size, relations, sum_below

    def count(self) -> int:
        s = self.size
        if self.sum_below is not None:  # x + y < s  or  x + y >= s
            return s * (s + 1) // 2 if self.sum_below else s * (s - 1) // 2
        rel = self.relations if self.relations is not None else frozenset((LT, EQ, GT))
        return (s * (s - 1) // 2) * len(rel - {EQ}) + (s if EQ in rel else 0)

    def _ok(self, x, y):
        if self.sum_below is not None:
            return (x + y < self.size) == self.sum_below
        rel = self.relations
        if rel is None:
            return np.ones(len(x), bool)
        return ((LT in rel) & (x < y)) | ((EQ in rel) & (x == y)) | ((GT in rel) & (x > y))

    def sample(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.relations == frozenset((EQ,)):
            x = rng.integers(0, self.size, k, dtype=np.int64)
            return x, x.copy()
        x = rng.integers(0, self.size, k, dtype=np.int64)
        y = rng.integers(0, self.size, k, dtype=np.int64)
        bad = np.flatnonzero(~self._ok(x, y))
        while len(bad):  # acceptance >= ~1/2 once size > 1; size 1 never needs a redraw
            x[bad] = rng.integers(0, self.size, len(bad), dtype=np.int64)
            y[bad] = rng.integers(0, self.size, len(bad), dtype=np.int64)
            bad = bad[~self._ok(x[bad], y[bad])]
        return x, y

    def enumerate(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = np.divmod(np.arange(self.size * self.size, dtype=np.int64), self.size)
        keep = self._ok(x, y)
        return x[keep], y[keep]


def _plan(n_digits: int, digit: int, qtype: QType, case: int, carry_in: str, high: str):
    """The three parts of a tricase question, or an error saying why the class is impossible."""
    where = f"{qtype.name} T{case} at digit {digit} ({n_digits} digits, high={high}, carry_in={carry_in})"
    low_size, high_size = 10**digit, 10 ** (n_digits - 1 - digit)
    if carry_in not in ("any", "never", "always"):
        raise QuestionRequestError(f"carry_in must be any, never or always, not {carry_in!r}")
    if high not in ("decide", "zero"):
        raise QuestionRequestError(f"high must be decide or zero, not {high!r}")
    if qtype == QType.ADD:
        low = _Part(low_size, sum_below={"any": None, "never": True, "always": False}[carry_in])
        hi = _Part(high_size) if high == "decide" else _Part(1)
        return low, hi, where
    if qtype not in (QType.SUB, QType.NEG):
        raise QuestionRequestError(f"tricase sets exist for ADD, SUB and NEG, not {qtype.name}")
    # Low-digit relation of (a_low, b_low) for the requested borrow into t (SUB borrows when a_low < b_low;
    # NEG's magnitude b - a borrows when a_low > b_low).
    borrow_rel = {QType.SUB: frozenset((LT,)), QType.NEG: frozenset((GT,))}[qtype]
    rel = {"any": frozenset((LT, EQ, GT)), "always": borrow_rel,
           "never": frozenset((LT, EQ, GT)) - borrow_rel}[carry_in]
    decided_above = high == "decide" and digit < n_digits - 1
    if decided_above:
        hi = _Part(high_size, relations=frozenset((GT,) if qtype == QType.SUB else (LT,)))
    else:
        hi = _Part(1)
        # The sign is decided at t, or below it for T9.
        allowed = {QType.SUB: {8: None, 9: frozenset((GT, EQ)), 10: frozenset()},
                   QType.NEG: {8: frozenset(), 9: frozenset((LT,)), 10: None}}[qtype][case]
        if allowed is not None:
            rel = rel & allowed
    low = _Part(low_size, relations=rel)
    return low, hi, where


def tricase_count(n_digits: int, digit: int, qtype: QType, case: int, *, carry_in="any", high="decide") -> int:
    """How many distinct questions the class holds."""
    low, hi, _ = _plan(n_digits, digit, QType(qtype), parse_case(case), carry_in, high)
    return len(case_pairs(QType(qtype), parse_case(case))) * low.count() * hi.count()


def tricase(
    n_digits: int,
    digit: int,
    qtype: QType | str,
    case: int | str,
    count: int,
    rng: np.random.Generator,
    *,
    carry_in: str = "any",
    high: str = "decide",
) -> QuestionBatch:
    """`count` distinct questions of one class, labelled (see the module docstring)."""
    check_n_digits(n_digits)
    qtype = QType.parse(qtype) if isinstance(qtype, str) else QType(qtype)
    case = parse_case(case)
    if not isinstance(digit, (int, np.integer)) or not 0 <= digit < n_digits:
        raise QuestionRequestError(f"test digit {digit!r} is outside 0..{n_digits - 1} for {n_digits} digits")
    low, hi, where = _plan(n_digits, digit, qtype, case, carry_in, high)
    pairs = case_pairs(qtype, case)
    total = len(pairs) * low.count() * hi.count()
    if total == 0:
        raise QuestionRequestError(f"no question exists for {where}")
    if count > total:
        raise QuestionRequestError(f"{count} distinct questions requested for {where} but only {total} exist")

    def draw(k: int):
        p = pairs[rng.integers(0, len(pairs), k)]
        lx, ly = low.sample(rng, k)
        hx, hy = hi.sample(rng, k)
        return _assemble(digit, p, lx, ly, hx, hy)

    if 2 * count > total:  # near-exhaustive: enumerate the class, then choose without replacement
        a, b = _enumerate(digit, pairs, low, hi)
        pick = rng.choice(len(a), size=count, replace=False)
        a, b = a[pick], b[pick]
    else:
        a, b = draw(count + count // 8 + 8)
        while True:
            _, first = np.unique(np.stack([a, b], 1), axis=0, return_index=True)
            first = np.sort(first)
            if len(first) >= count:
                a, b = a[first[:count]], b[first[:count]]
                break
            ea, eb = draw(count - len(first) + 8)
            a, b = np.concatenate([a[first], ea]), np.concatenate([b[first], eb])
    batch = QuestionBatch(n_digits, a, np.full(count, OPERATOR_OF[qtype], np.int8), b)
    if (batch.qtype != qtype).any():  # construction guarantees this; a failure is a bug here
        raise AssertionError(f"tricase construction produced a wrong qtype for {where}")
    feats = batch.features.real
    carry = {QType.ADD: "SC", QType.SUB: "MB", QType.NEG: "NB"}[qtype]
    carry_out = feats[carry][:, digit]
    carry_in_arr = feats[carry][:, digit - 1] if digit > 0 else np.zeros(count, np.int8)
    labels = {
        "tricase_digit": np.full(count, digit, np.int8),
        "tricase_case": np.full(count, case, np.int8),
        "carry_in": carry_in_arr.astype(np.int8),
        "carry_out": carry_out.astype(np.int8),
    }
    return QuestionBatch(n_digits, batch.a, batch.op, batch.b, labels)


def _assemble(digit: int, pair, lx, ly, hx, hy):
    scale = 10**digit
    a = (hx * 10 + pair[:, 0]) * scale + lx
    b = (hy * 10 + pair[:, 1]) * scale + ly
    return a, b


def _enumerate(digit: int, pairs, low: _Part, hi: _Part):
    lx, ly = low.enumerate()
    hx, hy = hi.enumerate()
    ip, il, ih = np.meshgrid(np.arange(len(pairs)), np.arange(len(lx)), np.arange(len(hx)), indexing="ij")
    ip, il, ih = ip.ravel(), il.ravel(), ih.ravel()
    return _assemble(digit, pairs[ip], lx[il], ly[il], hx[ih], hy[ih])


def tricase_set(
    n_digits: int, digit: int, qtype: QType | str, count_per_case: int, rng: np.random.Generator, **kwargs
) -> QuestionBatch:
    """T8, T9 and T10 blocks for one (digit, qtype), skipping classes impossible under `kwargs`."""
    parts = []
    for case in CASES:
        low, hi, _ = _plan(n_digits, digit, QType.parse(qtype) if isinstance(qtype, str) else QType(qtype), case,
                           kwargs.get("carry_in", "any"), kwargs.get("high", "decide"))
        qt = QType.parse(qtype) if isinstance(qtype, str) else QType(qtype)
        if len(case_pairs(qt, case)) * low.count() * hi.count():
            parts.append(tricase(n_digits, digit, qtype, case, count_per_case, rng, **kwargs))
    if not parts:
        raise QuestionRequestError(f"no tricase class is possible for {qtype} at digit {digit}")
    return QuestionBatch.concat(parts)


__all__ = ["CASES", "case_pairs", "parse_case", "tricase", "tricase_count", "tricase_set", "digits_of"]
