"""Multiplication's intermediate quantities per answer column: the column sum of digit products, the carry into
a column and the running sum (Bai et al. 2025's c-hat), used as auxiliary training targets and sub-task labels.

For a*b with digits a_i, b_j (0 = units), column k holds the partial products a_i*b_j with i + j = k:
    column_sum[k] = sum_{i+j=k} a_i*b_j
    carry_in[k]   = running[k-1] // 10   (0 at the units)
    running[k]    = column_sum[k] + carry_in[k]
and the answer digit Ak is running[k] % 10. Arrays are (batch, n_digits+1): one column per magnitude digit.
"""

from __future__ import annotations

import numpy as np

from arithlens.arith.questions import digits_of, mul_operand_digits

MUL_COLUMN_LABELS = ("column_sum", "carry_in", "running")


def mul_columns(a: np.ndarray, b: np.ndarray, n_digits: int) -> dict[str, np.ndarray]:
    """{column_sum, carry_in, running, digit}: (batch, n_digits+1) int32 for MUL operands `a`, `b`."""
    m = mul_operand_digits(n_digits)
    da = digits_of(np.asarray(a, np.int64), m).astype(np.int32)  # (batch, m)
    db = digits_of(np.asarray(b, np.int64), m).astype(np.int32)
    batch, cols = len(da), n_digits + 1
    column_sum = np.zeros((batch, cols), np.int32)
    for i in range(m):
        for j in range(m):
            column_sum[:, i + j] += da[:, i] * db[:, j]
    carry_in = np.zeros_like(column_sum)
    running = np.zeros_like(column_sum)
    carry = np.zeros(batch, np.int32)
    for k in range(cols):
        carry_in[:, k] = carry
        running[:, k] = column_sum[:, k] + carry
        carry = running[:, k] // 10
    return {"column_sum": column_sum, "carry_in": carry_in, "running": running, "digit": running % 10}


def digit_product(a: np.ndarray, b: np.ndarray, i: int, j: int) -> np.ndarray:
    """(batch,) a_i * b_j: the partial product of digit i of a and digit j of b."""
    return (np.asarray(a, np.int64) // 10**i % 10) * (np.asarray(b, np.int64) // 10**j % 10)


__all__ = ["MUL_COLUMN_LABELS", "digit_product", "mul_columns"]
