"""Seeded, vectorised question generators: uniform, enriched (carry/borrow cascades) and mixes.

Every generator takes an explicit `numpy.random.Generator`; the same seed gives the same questions.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from arithlens.arith.layout import check_n_digits
from arithlens.arith.questions import OPERATOR_OF, QType, QuestionBatch, mul_operand_digits
from arithlens.arith.vocab import MINUS, MULT, PLUS
from arithlens.errors import QuestionRequestError

OPS = ("add", "sub", "mix", "mul")


def _check_count(count: int) -> int:
    if not isinstance(count, (int, np.integer)) or count < 0:
        raise QuestionRequestError(f"question count must be a non-negative integer, got {count!r}")
    return int(count)


def _uniform_operands(rng: np.random.Generator, n_digits: int, count: int) -> np.ndarray:
    return rng.integers(0, 10**n_digits, size=count, dtype=np.int64)


def _from_digits(digits: np.ndarray) -> np.ndarray:
    """(batch, n) digits, column k = digit k -> int64 values."""
    powers = 10 ** np.arange(digits.shape[1], dtype=np.int64)
    return (digits.astype(np.int64) * powers).sum(axis=1)


def _qtype_operands(rng: np.random.Generator, n_digits: int, qtype: QType, count: int):
    """Uniform operands for one qtype (SUB: a >= b, NEG: a < b, drawn by rejection)."""
    if qtype == QType.MUL:
        limit = 10 ** mul_operand_digits(n_digits)
        return rng.integers(0, limit, count, dtype=np.int64), rng.integers(0, limit, count, dtype=np.int64)
    a, b = _uniform_operands(rng, n_digits, count), _uniform_operands(rng, n_digits, count)
    if qtype == QType.ADD:
        return a, b
    keep = (a >= b) if qtype == QType.SUB else (a < b)
    bad = np.flatnonzero(~keep)
    while len(bad):
        a[bad], b[bad] = _uniform_operands(rng, n_digits, len(bad)), _uniform_operands(rng, n_digits, len(bad))
        still = (a[bad] >= b[bad]) if qtype == QType.SUB else (a[bad] < b[bad])
        bad = bad[~still]
    return a, b


def op_weights(op: str) -> dict[str, float]:
    """`--op` to operator weights: sub (and the minus half of mix) gives SUB and NEG as they fall."""
    table = {
        "add": {"add": 1.0},
        "sub": {"minus": 1.0},
        "mix": {"add": 0.5, "minus": 0.5},
        "mul": {"mul": 1.0},
    }
    if op not in table:
        raise QuestionRequestError(f"unknown op {op!r}; expected one of {', '.join(OPS)}")
    return table[op]


def _split_counts(rng: np.random.Generator, weights: Mapping[str, float], count: int) -> dict[str, int]:
    names = list(weights)
    p = np.array([weights[k] for k in names], dtype=float)
    if (p < 0).any() or p.sum() <= 0:
        raise QuestionRequestError(f"mix weights must be non-negative with a positive sum: {dict(weights)}")
    return dict(zip(names, rng.multinomial(count, p / p.sum()).tolist()))


def _shuffle(rng: np.random.Generator, batch: QuestionBatch) -> QuestionBatch:
    return batch.select(rng.permutation(len(batch)))


def uniform(
    n_digits: int,
    count: int,
    rng: np.random.Generator,
    *,
    op: str | None = "mix",
    qtypes: Mapping[str, float] | None = None,
    distinct: bool = False,
) -> QuestionBatch:
    """Uniform operands. `op` picks operators (minus rows are SUB or NEG as they fall); or give
    `qtypes` weights such as {"sub": 1} to draw uniformly within question types.
    With `distinct`, no (a, op, b) repeats; asking for more than exist is an error."""
    check_n_digits(n_digits)
    count = _check_count(count)
    weights = dict(qtypes) if qtypes is not None else op_weights(op or "mix")
    if distinct:
        return _distinct(n_digits, count, rng, weights)
    return _uniform_weights(n_digits, count, rng, weights)


def _uniform_weights(n_digits: int, count: int, rng: np.random.Generator, weights: dict[str, float]):
    parts = []
    for name, k in _split_counts(rng, weights, count).items():
        if name == "minus":
            a, b = _uniform_operands(rng, n_digits, k), _uniform_operands(rng, n_digits, k)
            parts.append(QuestionBatch(n_digits, a, np.full(k, MINUS, np.int8), b))
        else:
            qt = QType.parse(name)
            a, b = _qtype_operands(rng, n_digits, qt, k)
            parts.append(QuestionBatch(n_digits, a, np.full(k, OPERATOR_OF[qt], np.int8), b))
    return _shuffle(rng, QuestionBatch.concat(parts))


def _space_size(n_digits: int, name: str) -> int:
    """Number of distinct questions of one kind."""
    size = 10**n_digits
    return {
        "add": size * size,
        "minus": size * size,
        "sub": size * (size + 1) // 2,
        "neg": size * (size - 1) // 2,
        "mul": 10 ** (2 * mul_operand_digits(n_digits)),
    }[name]


def _distinct(n_digits: int, count: int, rng: np.random.Generator, weights: dict[str, float]) -> QuestionBatch:
    total = sum(_space_size(n_digits, k) for k, w in weights.items() if w > 0)
    if count > total:
        raise QuestionRequestError(
            f"{count} distinct {n_digits}-digit questions requested but only {total} exist for {sorted(weights)}"
        )
    have: QuestionBatch | None = None
    while have is None or len(have) < count:
        need = count - (0 if have is None else len(have))
        extra = _uniform_weights(n_digits, need + need // 4 + 16, rng, weights)
        merged = extra if have is None else QuestionBatch.concat([have, extra])
        key = np.stack([merged.a, merged.op.astype(np.int64), merged.b], axis=1)
        _, first = np.unique(key, axis=0, return_index=True)
        have = merged.select(np.sort(first))
    return have.select(slice(0, count))


# ---------------------------------------------------------------------------------------------
# Enriched questions: more carry / borrow cascades than uniform digits ever give.

DEFAULT_QTYPE_MIX = {"add": 0.5, "sub": 0.25, "neg": 0.25}


def _cascade_rows(rng, n_digits: int, rows: int, start_pairs: np.ndarray, link_pairs: np.ndarray,
                  top: int, near: float = 0.0, near_pairs: np.ndarray | None = None):
    """Digits (rows, n) uniform except one cascade: a start pair at k, link pairs at k+1..k+m <= top.
    A `near` share of rows starts from `near_pairs` instead (a pair that makes no carry or borrow)."""
    x = rng.integers(0, 10, size=(rows, n_digits), dtype=np.int8)
    y = rng.integers(0, 10, size=(rows, n_digits), dtype=np.int8)
    if top < 1 or rows == 0:
        return x, y
    k = rng.integers(0, top, size=rows)  # start digit, leaves room for >= 1 link
    m = rng.integers(1, top + 1 - k)  # cascade length 1 .. top-k
    start = start_pairs[rng.integers(0, len(start_pairs), size=rows)]
    if near:  # drawn only when asked, so recipes without it keep their random stream
        stopped = np.flatnonzero(rng.random(rows) < near)
        start[stopped] = near_pairs[rng.integers(0, len(near_pairs), size=len(stopped))]
    all_rows = np.arange(rows)
    x[all_rows, k], y[all_rows, k] = start[:, 0], start[:, 1]
    for offset in range(1, n_digits):
        sel = np.flatnonzero(offset <= m)
        pos = k[sel] + offset
        link = link_pairs[rng.integers(0, len(link_pairs), size=len(sel))]
        x[sel, pos], y[sel, pos] = link[:, 0], link[:, 1]
    return x, y


_PAIRS = np.array([(i, j) for i in range(10) for j in range(10)], dtype=np.int8)
SUM_GE10 = _PAIRS[_PAIRS.sum(axis=1) >= 10]
SUM_EQ9 = _PAIRS[_PAIRS.sum(axis=1) == 9]
X_LT_Y = _PAIRS[_PAIRS[:, 0] < _PAIRS[:, 1]]
X_EQ_Y = _PAIRS[_PAIRS[:, 0] == _PAIRS[:, 1]]
SUM_LE8 = _PAIRS[_PAIRS.sum(axis=1) <= 8]  # no carry out, even with a carry in
X_GT_Y = _PAIRS[_PAIRS[:, 0] > _PAIRS[:, 1]]  # no borrow out, even with a borrow in


def _enriched_qtype(rng, n_digits: int, qtype: QType, count: int, cascade: float, equal: float,
                    near: float = 0.0):
    if qtype in (QType.MUL,) or count == 0:
        return _qtype_operands(rng, n_digits, qtype, count)
    n_casc = int(rng.binomial(count, cascade))
    if qtype == QType.ADD:
        x, y = _cascade_rows(rng, n_digits, n_casc, SUM_GE10, SUM_EQ9, top=n_digits - 1, near=near,
                             near_pairs=SUM_LE8)
        a = np.concatenate([_from_digits(x), _uniform_operands(rng, n_digits, count - n_casc)])
        b = np.concatenate([_from_digits(y), _uniform_operands(rng, n_digits, count - n_casc)])
        return a, b
    # SUB and NEG: draw x >= y (x > y for NEG) whose computation x - y holds the cascade; NEG is the
    # same computation with the operands swapped (its answer's magnitude is b - a).
    strict = qtype == QType.NEG
    if n_digits < 3:  # a borrow cascade needs a digit above it to pay for it
        n_casc = 0
    n_equal = 0 if strict else int(rng.binomial(count - n_casc, equal))
    n_plain = count - n_casc - n_equal
    x = np.empty(count, np.int64)
    y = np.empty(count, np.int64)
    x[n_casc:n_casc + n_plain], y[n_casc:n_casc + n_plain] = _qtype_operands(
        rng, n_digits, QType.NEG if strict else QType.SUB, n_plain)
    if strict:  # _qtype_operands(NEG) gives a < b: swap into x > y
        x[n_casc:n_casc + n_plain], y[n_casc:n_casc + n_plain] = (
            y[n_casc:n_casc + n_plain].copy(), x[n_casc:n_casc + n_plain].copy())
    eq = _uniform_operands(rng, n_digits, n_equal)
    x[count - n_equal:], y[count - n_equal:] = eq, eq
    todo = np.arange(n_casc)
    while len(todo):
        # The cascade stops below the top digit, so a higher digit with x > y can absorb the borrow.
        dx, dy = _cascade_rows(rng, n_digits, len(todo), X_LT_Y, X_EQ_Y, top=n_digits - 2, near=near,
                               near_pairs=X_GT_Y)
        vx, vy = _from_digits(dx), _from_digits(dy)
        ok = (vx > vy) if strict else (vx >= vy)
        x[todo[ok]], y[todo[ok]] = vx[ok], vy[ok]
        todo = todo[~ok]
    return (y, x) if strict else (x, y)


def _share_low_digits(rng, n_digits: int, qtype: QType, a: np.ndarray, b: np.ndarray, share: float):
    """A `share` of SUB/NEG rows gets a's low m digits in b too (m uniform in 1..n-1), keeping its type."""
    rows = np.flatnonzero(rng.random(len(a)) < share)
    scale = 10 ** rng.integers(1, n_digits, size=len(rows))
    return _set_rows(qtype, a, b, rows, a[rows], b[rows] // scale * scale + a[rows] % scale)


def _share_high_digits(rng, n_digits: int, qtype: QType, a: np.ndarray, b: np.ndarray, share: float):
    """A `share` of rows gets b's top m digits set to a's (m uniform in 1..n-1); SUB/NEG rows keep their type."""
    rows = np.flatnonzero(rng.random(len(a)) < share)
    scale = 10 ** (n_digits - rng.integers(1, n_digits, size=len(rows)))
    return _set_rows(qtype, a, b, rows, a[rows], a[rows] // scale * scale + b[rows] % scale)


def _set_rows(qtype: QType, a: np.ndarray, b: np.ndarray, rows: np.ndarray, na: np.ndarray, nb: np.ndarray):
    """Copies of a and b with `rows` replaced by (na, nb): SUB/NEG pairs swapped to keep their type, and NEG
    rows that would become a == b (a SUB answer) left as they were."""
    if qtype in (QType.SUB, QType.NEG):
        swap = (na < nb) if qtype == QType.SUB else (na > nb)
        na, nb = np.where(swap, nb, na), np.where(swap, na, nb)
    ok = na != nb if qtype == QType.NEG else np.ones(len(rows), bool)
    a, b = a.copy(), b.copy()
    a[rows[ok]], b[rows[ok]] = na[ok], nb[ok]
    return a, b


def enriched(
    n_digits: int,
    count: int,
    rng: np.random.Generator,
    *,
    qtypes: Mapping[str, float] | None = None,
    op: str | None = None,
    cascade: float = 0.4,
    equal: float = 0.01,
    shared_low: float = 0.0,
    near_cascade: float = 0.0,
    shared_high: float = 0.0,
) -> QuestionBatch:
    """Questions with forced carry (ADD) or borrow (SUB, NEG) cascades.

    `qtypes` weights the question types (default 50% ADD, 25% SUB, 25% NEG; or derive them from `op`);
    within each type a `cascade` share of rows gets one cascade: a carry (borrow) made at a random
    digit k and passed on through m >= 1 sum-9 (equal) digit pairs above it, other digits uniform;
    an `equal` share of SUB rows has a == b (answer +0000000). Other rows are uniform for their type.
    A `shared_low` share of SUB and NEG rows then gets the same m low digits in both operands
    (m uniform in 1..n-1), so the answer ends in m zeros and no borrow reaches digit m: e.g.
    `414734-514734=-0100000`, rare in uniform data (an earlier 15K-step mixed model got 13 of 1M NEG
    wrong, all of this kind). A `near_cascade` share of the cascade rows keeps the run of sum-9 (equal) pairs but
    starts it from a pair that makes no carry (borrow): `441776+358223=+0799999` (no carry reaches the
    run of 9s) — the contrast a model needs not to carry through every run of 9s (a 10K-step model answered
    that question +0899999). A `shared_high` share of ADD, SUB and NEG rows gets the same m top digits in
    both operands (m uniform in 1..n-1; SUB/NEG rows swap operands to keep their type), so the sign and the
    borrow chain are decided low down: `669890-669293=+0000597` (sharing the top 3 digits happens once in
    1,000 uniform rows; the 10K-step mixed model trained without this share answered that question -0000597).
    A zero share draws nothing from `rng`, so older recipes give the same rows.
    """
    check_n_digits(n_digits)
    count = _check_count(count)
    if not 0 <= cascade <= 1 or not 0 <= equal <= 1:
        raise QuestionRequestError("cascade and equal shares must lie in 0..1")
    if qtypes is None:
        qtypes = {"add": {"add": 1.0}, "sub": {"sub": 0.5, "neg": 0.5}, "mul": {"mul": 1.0}}.get(
            op or "", DEFAULT_QTYPE_MIX)
    if not 0 <= shared_low <= 1 or not 0 <= near_cascade <= 1 or not 0 <= shared_high <= 1:
        raise QuestionRequestError("shared_low, near_cascade and shared_high shares must lie in 0..1")
    parts = []
    for name, k in _split_counts(rng, qtypes, count).items():
        qt = QType.parse(name)
        a, b = _enriched_qtype(rng, n_digits, qt, k, cascade, equal, near_cascade)
        if shared_low and qt in (QType.SUB, QType.NEG) and n_digits > 1:
            a, b = _share_low_digits(rng, n_digits, qt, a, b, shared_low)
        if shared_high and qt in (QType.ADD, QType.SUB, QType.NEG) and n_digits > 1:
            a, b = _share_high_digits(rng, n_digits, qt, a, b, shared_high)
        parts.append(QuestionBatch(n_digits, a, np.full(k, OPERATOR_OF[qt], np.int8), b))
    return _shuffle(rng, QuestionBatch.concat(parts))


__all__ = ["DEFAULT_QTYPE_MIX", "OPS", "enriched", "op_weights", "uniform", "PLUS", "MINUS", "MULT"]
