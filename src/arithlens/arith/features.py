"""Per-digit features (SA, SC, SS, ST, MD, MB, MZ, MT, ND, NB, NZ, NT, GT) and complexity classes.

Every feature is an (batch, n_digits) int8 array whose column k describes digit k (0 = units), in two
versions: `pair` looks at the digit pair (Dk, D'k) alone; `real` says what happens in the actual
computation, with carries/borrows cascading from lower digits.

ADD (a + b), pair sum s = Dk + D'k:
  SA  base add: pair (s mod 10); real: the answer digit (s + carry_in) mod 10
  SC  make carry: pair s >= 10; real: a carry leaves digit k
  SS  use sum 9: pair s == 9; real: s == 9 and a carry arrives (the carry cascades through)
  ST  tricase class: 8 (s <= 8), 9 (s == 9), 10 (s >= 10); real: 10 when a carry leaves, 9 when s == 9
      and no carry arrived, else 8
SUB (a - b, a >= b), borrows of a - b:
  MD  difference: pair (Dk - D'k) mod 10; real: the answer digit
  MB  borrow one: pair Dk < D'k; real: a borrow leaves digit k
  MZ  make zero: pair Dk == D'k; real: equal and a borrow arrives
  MT  tricase class: 8 (Dk > D'k), 9 (equal), 10 (Dk < D'k); real: 10 when a borrow leaves, 9 when
      equal and no borrow arrived, else 8
NEG (a - b, a < b): the answer is -(b - a), so the real borrows are those of b - a (Dk > D'k).
  ND  pair (D'k - Dk) mod 10; real: the answer magnitude digit
  NB  pair Dk > D'k; real: a borrow leaves digit k computing b - a
  NZ  pair Dk == D'k; real: equal and a borrow arrives (computing b - a)
  NT  tricase class as MT (8: Dk > D'k, 9: equal, 10: Dk < D'k), the same relation classes the tricase
      sets use; real: in b - a semantics, 10 when a borrow leaves digit k, 9 equal and none arrived,
      8 otherwise. So for NEG the borrowing pair class is T8 (Dk > D'k): pair T8 becomes real 10.
GT  greater-than, for SUB and NEG: pair sign(Dk - D'k) in {-1, 0, 1}; real: sign of
    (a // 10^k) - (b // 10^k), the comparison decided by digits k and above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arithlens.arith.qtype import QType

ADD_FEATURES = ("SA", "SC", "SS", "ST")
SUB_FEATURES = ("MD", "MB", "MZ", "MT", "GT")
NEG_FEATURES = ("ND", "NB", "NZ", "NT", "GT")
ALL_FEATURES = ("SA", "SC", "SS", "ST", "MD", "MB", "MZ", "MT", "ND", "NB", "NZ", "NT", "GT")
FEATURES_OF_QTYPE = {QType.ADD: ADD_FEATURES, QType.SUB: SUB_FEATURES, QType.NEG: NEG_FEATURES, QType.MUL: ()}

ADD_CLASSES = ("S0", "S1", "S2", "S3", "S4", "S5")
SUB_CLASSES = ("M0", "M1", "M2", "M3", "M4+")
NEG_CLASSES = ("N1", "N2", "N3", "N4+")
NEG_TRUE_CLASSES = ("N0", "N1", "N2", "N3", "N4+")


@dataclass(frozen=True)
class DigitFeatures:
    """`pair[name]` and `real[name]`: (batch, n_digits) int8, column k = digit k."""

    pair: dict[str, np.ndarray]
    real: dict[str, np.ndarray]

    def row(self, row: int, qtype: QType) -> dict[str, dict[str, list[int]]]:
        """The features that apply to this row's qtype, as lists indexed by digit (0 = units)."""
        names = FEATURES_OF_QTYPE[QType(qtype)]
        return {
            "real": {k: self.real[k][row].tolist() for k in names},
            "pair": {k: self.pair[k][row].tolist() for k in names},
        }


def _chain(delta: np.ndarray, threshold_out) -> tuple[np.ndarray, np.ndarray]:
    """Carry/borrow in and out of every digit (n small: one vectorised step per digit)."""
    batch, n = delta.shape
    c_in = np.zeros((batch, n), dtype=np.int8)
    c_out = np.zeros((batch, n), dtype=np.int8)
    carry = np.zeros(batch, dtype=np.int8)
    for k in range(n):
        c_in[:, k] = carry
        carry = threshold_out(delta[:, k], carry).astype(np.int8)
        c_out[:, k] = carry
    return c_in, c_out


def _tclass(low: np.ndarray, eq: np.ndarray) -> np.ndarray:
    """8 / 9 / 10 from 'never carries' / 'carries only if one arrives' masks' complement."""
    out = np.full(eq.shape, 10, dtype=np.int8)
    out[low] = 8
    out[eq] = 9
    return out


def _real_tclass(carry_out: np.ndarray, pending: np.ndarray) -> np.ndarray:
    """10: a carry/borrow leaves the digit; 9: a pending pair (sum 9 / equal) that none reached; 8: else."""
    out = np.full(carry_out.shape, 8, dtype=np.int8)
    out[pending] = 9
    out[carry_out == 1] = 10
    return out


def digit_features(digits_a: np.ndarray, digits_b: np.ndarray) -> DigitFeatures:
    """Features from operand digits ((batch, n) arrays, column k = digit k)."""
    da, db = digits_a.astype(np.int16), digits_b.astype(np.int16)
    s = da + db
    diff = da - db
    sign = np.sign(diff).astype(np.int8)
    as8 = lambda x: x.astype(np.int8)  # noqa: E731

    add_in, add_out = _chain(s, lambda col, c: col + c >= 10)
    sub_in, sub_out = _chain(diff, lambda col, c: col - c < 0)  # borrows of a - b
    neg_in, neg_out = _chain(-diff, lambda col, c: col - c < 0)  # borrows of b - a

    eq = diff == 0
    pair = {
        "SA": as8(s % 10),
        "SC": as8(s >= 10),
        "SS": as8(s == 9),
        "ST": _tclass(s <= 8, s == 9),
        "MD": as8(diff % 10),
        "MB": as8(diff < 0),
        "MZ": as8(eq),
        "MT": _tclass(diff > 0, eq),
        "ND": as8((-diff) % 10),
        "NB": as8(diff > 0),
        "NZ": as8(eq),
        "NT": _tclass(diff > 0, eq),
        "GT": sign,
    }
    # (a // 10^k) vs (b // 10^k) is decided by the highest differing digit at or above k.
    greater = np.zeros(da.shape, dtype=np.int8)
    decided = np.zeros(len(da), dtype=np.int8)
    for k in range(da.shape[1] - 1, -1, -1):
        decided = np.where(decided != 0, decided, sign[:, k])
        greater[:, k] = decided
    real = {
        "SA": as8((s + add_in) % 10),
        "SC": add_out,
        "SS": as8((s == 9) & (add_in == 1)),
        "ST": _real_tclass(add_out, s == 9),
        "MD": as8((diff - sub_in) % 10),
        "MB": sub_out,
        "MZ": as8(eq & (sub_in == 1)),
        "MT": _real_tclass(sub_out, eq),
        "ND": as8((-diff - neg_in) % 10),
        "NB": neg_out,
        "NZ": as8(eq & (neg_in == 1)),
        "NT": _real_tclass(neg_out, eq),
        "GT": greater,
    }
    return DigitFeatures(pair=pair, real=real)


def _longest_cascade(start: np.ndarray, link: np.ndarray) -> np.ndarray:
    """Per row: the longest run of `link` digits directly above a `start` digit (-1 if no start).

    A cascade of length L at k means start[k] and link[k+1..k+L].
    """
    batch, n = start.shape
    run_above = np.zeros((batch, n), dtype=np.int16)  # consecutive links at k+1, k+2, ...
    for k in range(n - 2, -1, -1):
        run_above[:, k] = np.where(link[:, k + 1], run_above[:, k + 1] + 1, 0)
    return np.where(start, run_above, -1).max(axis=1)


def _classes(start: np.ndarray, link: np.ndarray, names_by_length: tuple[str, ...], none: str) -> np.ndarray:
    """none if no start digit; else names_by_length[min(longest cascade, last)]."""
    longest = _longest_cascade(start, link)
    idx = np.minimum(longest, len(names_by_length) - 1)
    out = np.asarray(names_by_length, dtype=object)[np.maximum(idx, 0)]
    return np.where(longest < 0, none, out)


def complexity_classes(da: np.ndarray, db: np.ndarray, qtype: np.ndarray, *, true_borrow: bool = False) -> np.ndarray:
    """Complexity class per row (the predecessor's rules): S0..S5, M0..M4+, N1..N4+ ('' for MUL).

    With `true_borrow`, NEG rows are classified by the borrows really made computing b - a
    (Dk > D'k), giving N0 (no borrow) .. N4+; the reference counts Dk < D'k digits instead.
    """
    n_digits = da.shape[1]
    s = da.astype(np.int16) + db
    out = np.full(len(da), "", dtype=object)

    add = qtype == QType.ADD
    if add.any():
        out[add] = _classes(s[add] >= 10, s[add] == 9, ("S1", "S2", "S3", "S4", "S5"), "S0")

    sub = qtype == QType.SUB
    if sub.any():
        out[sub] = _classes(da[sub] < db[sub], da[sub] == db[sub], ("M1", "M2", "M3", "M4+"), "M0")

    neg = qtype == QType.NEG
    if neg.any():
        x, y = da[neg], db[neg]
        # Digits above the highest non-zero digit of either operand are not part of the question.
        nonzero = (x != 0) | (y != 0)
        highest = n_digits - 1 - np.argmax(nonzero[:, ::-1], axis=1)
        inside = np.arange(n_digits)[None, :] <= highest[:, None]
        zero = (x == y) & inside
        if true_borrow:
            out[neg] = _classes(x > y, zero, ("N1", "N2", "N3", "N4+"), "N0")
        else:
            # A negative answer always has some Dk < D'k, so the reference's UNKNOWN never occurs.
            out[neg] = _classes(x < y, zero, ("N1", "N2", "N3", "N4+"), "N?")
    return out.astype(str)
