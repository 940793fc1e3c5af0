"""Multiplication's column quantities (column sums, carries in, running sums) against hand arithmetic."""

import numpy as np

from arithlens.arith.mul import digit_product, mul_columns


def test_mul_columns_of_345_times_823_by_hand():
    cols = mul_columns(np.array([345]), np.array([823]), 6)
    # columns (units first): 5*3; 5*2+4*3; 5*8+4*2+3*3; 4*8+3*2; 3*8; then only carries
    assert cols["column_sum"][0].tolist() == [15, 22, 57, 38, 24, 0, 0]
    assert cols["carry_in"][0].tolist() == [0, 1, 2, 5, 4, 2, 0]
    assert cols["running"][0].tolist() == [15, 23, 59, 43, 28, 2, 0]
    assert cols["digit"][0].tolist()[::-1] == [0, 2, 8, 3, 9, 3, 5]  # 345*823 = 0283935
    assert digit_product(np.array([345]), np.array([823]), 2, 1).tolist() == [3 * 2]


def test_mul_column_digits_are_the_product_digits_for_every_operand_pair_kind():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.integers(0, 1000, 500), [999, 0, 999, 100]])
    b = np.concatenate([rng.integers(0, 1000, 500), [999, 999, 0, 100]])
    cols = mul_columns(a, b, 6)
    value = (cols["digit"].astype(np.int64) * 10 ** np.arange(7)).sum(1)
    assert (value == a * b).all()
    assert (cols["running"] == cols["column_sum"] + cols["carry_in"]).all()
