"""Multiplication sub-tasks (PS column sum, PC carry in, PR running sum): hand-checked expected answers, the
property every drawn pair claims (checked with plain integer arithmetic), which models get them, and the search
running end to end on a briefly trained multiplier."""

import numpy as np
import pytest
import torch

from arithlens.analysis import subtasks as S
from arithlens.arith import QType, QuestionBatch
from arithlens.arith.layout import Layout
from arithlens.errors import QuestionRequestError


def columns(a: int, b: int, m: int = 3):
    """(column sums, carries in, running sums) of a*b by schoolbook arithmetic on Python ints."""
    da = [a // 10**i % 10 for i in range(m)]
    db = [b // 10**j % 10 for j in range(m)]
    sums = [sum(da[i] * db[j] for i in range(m) for j in range(m) if i + j == k) for k in range(2 * m + 1)]
    carries, running, carry = [], [], 0
    for s in sums:
        carries.append(carry)
        running.append(s + carry)
        carry = (s + carry) // 10
    return sums, carries, running


CLEAN = "000345*000823"  # 283935; column 2: sum 5*8+4*2+3*3 = 57, carry in 2, running 59


@pytest.mark.parametrize("task, store, expected", [
    (S.PS, "000155*000005", 283735),  # column 2 sum 5 (carry in 2 as the clean's): A2 = (9 - 52) mod 10 = 7
    (S.PC, "000543*000328", 283135),  # column 2 sum 57 as the clean's, carry in 4: A2 = (9 + 2) mod 10 = 1
    (S.PR, "000543*000328", 283135),  # running sum 61 against 59
    (S.PR, "000155*000005", 283735),  # running sum 7 against 59
])
def test_hand_checked_mul_pairs_move_the_column_digit_by_the_column_difference(task, store, expected):
    pairs = task.pairs_from(QuestionBatch.from_strings(6, [store]), QuestionBatch.from_strings(6, [CLEAN]), 2)
    assert pairs.clean.result[0] == 283935
    assert pairs.expected[0] == expected and pairs.tag == f"A2.{task.name}"
    # only A2 is judged: the digits above are predicted before A2's position, out of reach of a node there
    assert pairs.judged.tolist() == [False] * 5 + [True] + [False] * 2
    assert pairs.impact_digits(0) == (2,)


def test_column_labels_of_the_hand_examples():
    assert columns(345, 823)[0][2] == 57 and columns(345, 823)[1][2] == 2
    assert columns(155, 5)[0][2] == 5 and columns(155, 5)[1][2] == 2
    assert columns(543, 328)[0][2] == 57 and columns(543, 328)[1][2] == 4


def test_mul_tasks_cover_the_columns_that_hold_products_or_carries():
    assert list(S.PS.digit_range(6)) == [0, 1, 2, 3, 4]  # 3-digit operands: columns 0..4 hold products
    assert list(S.PC.digit_range(6)) == [1, 2, 3, 4, 5]  # column 5 holds only the carry out of column 4
    assert list(S.PR.digit_range(6)) == [0, 1, 2, 3, 4, 5]
    assert list(S.PC.digit_range(5)) == [1, 2, 3, 4, 5]  # 5 digits: 3-digit operands too, A5 reached
    with pytest.raises(QuestionRequestError, match="PS applies to digits 0..4 for 6 digits, not 5"):
        S.PS.pairs(6, 5, 10, np.random.default_rng(0))


@pytest.mark.parametrize("task", [S.PS, S.PC, S.PR])
def test_every_drawn_mul_pair_has_the_property_its_task_claims(task):
    for k in task.digit_range(6):
        pairs = task.pairs(6, k, 40, np.random.default_rng(k))
        assert len(pairs) == 40
        assert (pairs.clean.qtype == QType.MUL).all() and (pairs.store.qtype == QType.MUL).all()
        for a, b, ca, cb, expected in zip(pairs.store.a, pairs.store.b, pairs.clean.a, pairs.clean.b, pairs.expected):
            a, b, ca, cb, expected = map(int, (a, b, ca, cb, expected))
            assert max(a, b, ca, cb) < 1000
            store, clean = columns(a, b), columns(ca, cb)
            which = {"PS": 0, "PC": 1, "PR": 2}[task.name]
            assert store[which][k] != clean[which][k]
            if task.name == "PS":
                assert store[1][k] == clean[1][k]  # same carry in: only the column sum differs
            if task.name == "PC":
                assert store[0][k] == clean[0][k]  # same column sum: only the carry differs
            delta = store[which][k] - clean[which][k]
            old = ca * cb // 10**k % 10
            assert delta % 10 != 0  # a pair whose digit would not move predicts nothing
            assert expected == ca * cb + ((old + delta) % 10 - old) * 10**k


def test_mul_pairs_are_deterministic_for_a_seed():
    one = S.PC.pairs(6, 3, 30, np.random.default_rng(7))
    two = S.PC.pairs(6, 3, 30, np.random.default_rng(7))
    assert (one.store.a == two.store.a).all() and (one.clean.b == two.clean.b).all()


def test_models_get_the_mul_tasks_only_when_they_train_on_mul():
    assert S.tasks_for(0, 0, 100) == (S.PS, S.PC, S.PR)
    assert not set(S.tasks_for(34, 66)) & {S.PS, S.PC, S.PR}
    mas = S.tasks_for(20, 30, 50)
    assert {S.PS, S.PC, S.PR, S.SC, S.MB, S.OPR} <= set(mas)
    assert S.ORDER[-3:] == (S.PS, S.PC, S.PR)  # appended: the add/sub tasks keep their pair seeds
    assert S.get("pc") is S.PC


def test_mul_candidates_are_nodes_between_the_operator_and_the_impacted_digit():
    from arithlens.analysis.nodes import Node, NodeList, UsefulNode

    layout = Layout(6)

    def node(name, impact):
        un = UsefulNode(Node.parse(name))
        un.add(f"Impact:A{impact}")
        return un

    nodes = NodeList([node("P18L0H0", 2), node("P18L1MLP", 2), node("P19L0H0", 2), node("P3L0H0", 2),
                      node("P17L1H1", 3)])
    flt = S.candidate_filter(S.PS, 2, layout)
    assert [un.node.name for un in nodes if flt(un)] == ["P18L0H0", "P18L1MLP"]


@pytest.mark.slow
def test_search_runs_end_to_end_on_a_briefly_trained_multiplier():
    """A 2-digit multiplier (1-digit operands: the 100 products) trained for a few hundred steps: useful nodes,
    then the MUL searches, each cell judged on pairs the model answers right. A1 (the tens) of a one-digit
    product is exactly the carry into column 1, so the MLP where A1 is computed holds it."""
    from arithlens.analysis.search import search_model
    from arithlens.analysis.useful import find_useful
    from arithlens.arith import uniform
    from arithlens.model import ModelSpec
    from arithlens.model.train import TrainConfig, count_wrong, train

    torch.set_num_threads(1)
    spec = ModelSpec.parse("mul_d2_l1_h2_t1K_s123456", d_model=48, d_head=12, d_mlp=192)
    model = train(spec, TrainConfig(steps=600, batch_size=64, lr=3e-3, warmup_steps=50, eval_every=600,
                                    eval_questions=100)).model
    every = QuestionBatch(2, np.repeat(np.arange(10), 10), np.full(100, 13, np.int8), np.tile(np.arange(10), 10))
    assert count_wrong(model, every, "cpu") <= 5  # it multiplies (nearly) every pair of digits
    useful = find_useful(model, uniform(2, 200, np.random.default_rng(0), op="mul"), power=0).nodes
    result = search_model(model, useful, n_pairs=40, seed=0)
    tried = {(c.task, c.digit) for c in result.cells}
    assert tried == {("PS", 0), ("PC", 1), ("PR", 0), ("PR", 1)}
    assert all(c.valid > 0 for c in result.cells if c.candidates)
    tags = result.algo_tags()
    assert {"A1.PC", "A1.PR"} <= set(tags["P7L0MLP"]) and {"A0.PS", "A0.PR"} <= set(tags["P8L0MLP"])
