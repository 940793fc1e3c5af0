"""Sub-task specs: expected answer changes (the Appendix A SS and ND cases among them), the property every
drawn pair claims (checked with plain integer arithmetic), determinism, candidate filters."""

import numpy as np
import pytest

from arithlens.analysis import subtasks as S
from arithlens.analysis.nodes import Node, NodeList, UsefulNode
from arithlens.arith import MINUS, PLUS, QuestionBatch
from arithlens.arith.layout import Layout
from arithlens.errors import ArithLensError, QuestionRequestError

PATCHED = [t for t in S.ORDER if t.recipe is not None and t.op != "MUL"]  # MUL: tests/test_subtasks_mul.py


def digit(v: int, k: int) -> int:
    return abs(v) // 10**k % 10


def low(v: int, k: int) -> int:
    """v mod 10^k: the digits below k."""
    return v % 10**k


def carry_into(a: int, b: int, k: int) -> bool:
    return low(a, k) + low(b, k) >= 10**k


def borrow_into(x: int, y: int, k: int) -> bool:
    """Computing x - y, a borrow reaches digit k."""
    return low(x, k) < low(y, k)


def answer(v: int, n: int) -> str:
    return ("-" if v < 0 else "+") + str(abs(v)).zfill(n + 1)


# ---- Appendix A, through the spec machinery ----

def test_appendix_ss_case_loses_the_cascaded_carry():
    store = QuestionBatch.from_strings(5, ["25222+44444"])
    clean = QuestionBatch.from_strings(5, ["34633+55555"])
    pairs = S.SS.pairs_from(store, clean, 3)
    assert clean.result[0] == 90188
    assert pairs.expected[0] == 80188
    assert pairs.impact_digits(0) == (4,) and pairs.tag == "A3.SS"


def test_appendix_nd_case_replaces_the_magnitude_digit():
    store = QuestionBatch.from_strings(6, ["033333-111111"])
    clean = QuestionBatch.from_strings(6, ["099999-444444"])
    pairs = S.ND.pairs_from(store, clean, 3)
    assert clean.result[0] == -344445
    assert pairs.expected[0] == -347445
    assert pairs.impact_digits(0) == (3,)


@pytest.mark.parametrize("task, store, clean, k, expected", [
    (S.SC, "222222+666696", "333333+555555", 1, 888988),  # the reference's SC example: A2 gains the carry
    (S.MB, "222222-111131", "777777-444444", 1, 333233),  # the reference's MB example
    (S.SA, "222222+111111", "555555+444444", 2, 999399),  # A2 becomes the store's 3 (no carries anywhere)
    (S.MD, "333333-111111", "999999-444444", 2, 555255),  # A2 becomes the store's 2
    (S.NB, "022222-111131", "077777-444444", 1, -366767),  # the reference's NB example: magnitude grows
])
def test_reference_single_examples_give_the_reference_answers(task, store, clean, k, expected):
    pairs = task.pairs_from(QuestionBatch.from_strings(6, [store]), QuestionBatch.from_strings(6, [clean]), k)
    assert pairs.expected[0] == expected


def test_opr_turns_the_judged_answer_digit_into_the_other_operation_s():
    # 345678+123456=+0469134 and 345678-123456=+0222222: A2 (4th answer digit) 1 -> 2, nothing else judged.
    pairs = S.OPR.pairs_from(QuestionBatch.from_strings(6, ["345678-123456"]),
                             QuestionBatch.from_strings(6, ["345678+123456"]), 2)
    assert pairs.expected[0] == 469234 and pairs.tag == "A2.OPR"
    assert pairs.judged.tolist() == [False] * 5 + [True] + [False] * 2
    assert pairs.impact_digits(0) == (2,)
    carry = S.OPR.pairs_from(QuestionBatch.from_strings(6, ["900000-200000"]),
                             QuestionBatch.from_strings(6, ["900000+200000"]), 6)
    assert carry.expected[0] == 100000 and carry.impact_digits(0) == (6,)  # A6: the carry of 1100000 is lost


def test_sgn_turns_the_judged_answer_digit_into_the_other_sign_class_s():
    # Same digits 0..2 (456 / 123); the digits above flip a - b < 0 to a - b > 0.
    store, clean = QuestionBatch.from_strings(6, ["300456-200123"]), QuestionBatch.from_strings(6, ["100456-200123"])
    pairs = S.SGN.pairs_from(store, clean, 2)
    assert clean.result[0] == -99667 and store.result[0] == 100333
    assert pairs.expected[0] == -99367  # magnitude digit 2: 6 (b - a) -> 3 (a - b); the sign stays the clean's
    assert pairs.impact_digits(0) == (2,) and pairs.tag == "A2.SGN"


def test_gt_judges_only_the_sign_and_expects_the_store_s():
    pairs = S.GT.pairs_from(QuestionBatch.from_strings(6, ["600000-200001"]),
                            QuestionBatch.from_strings(6, ["100000-200001"]), 5)
    assert pairs.judged.tolist() == [True] + [False] * 7
    assert pairs.expected_tokens[0, 0] == 10 and pairs.clean_tokens[0, 0] == 11  # + expected, - clean
    assert pairs.impact_digits(0) == (7,)


# ---- every drawn pair has the property its task claims ----

def _check(task, k, n, a, b, ca, cb, expected):
    """(a, b) store operands, (ca, cb) clean operands; returns nothing, asserts the task's property."""
    plus = "ADD" in task.op
    clean = ca + cb if plus else ca - cb
    up = 10 ** (k + 1)
    if task.name in ("SA", "MD", "ND"):
        assert expected == (a + b if plus else a - b)  # only answer digit k differs, so it is the store's answer
        assert answer(expected, n) != answer(clean, n)
        assert [i for i, (x, y) in enumerate(zip(answer(expected, n), answer(clean, n))) if x != y] == [n + 1 - k]
    elif task.name == "SC":
        assert digit(ca, k) + digit(cb, k) <= 8 and not carry_into(ca, cb, k)
        assert digit(a, k) + digit(b, k) >= 10 and expected == clean + up
    elif task.name == "SS":
        assert digit(ca, k) + digit(cb, k) == 9 and carry_into(ca, cb, k)
        assert digit(a, k) + digit(b, k) == 9 and not carry_into(a, b, k)
        assert expected == clean - up
    elif task.name == "ST":
        assert digit(ca, k) + digit(cb, k) == 9 and not carry_into(ca, cb, k)
        assert digit(a, k) + digit(b, k) >= 10 and expected == clean + up
    elif task.name == "MB":
        assert not borrow_into(ca, cb, k) and digit(ca, k) >= digit(cb, k)
        assert digit(a, k) < digit(b, k) and expected == clean - up
    elif task.name == "MZ":
        assert digit(ca, k) == digit(cb, k) and borrow_into(ca, cb, k) and not borrow_into(a, b, k)
        assert expected == clean + up
    elif task.name == "MT":
        assert digit(ca, k) == digit(cb, k) and not borrow_into(ca, cb, k)
        assert digit(a, k) < digit(b, k) and expected == clean - up
    elif task.name == "NB":  # b - a borrows where D > D'
        assert digit(ca, k) > digit(cb, k) and not borrow_into(cb, ca, k)
        assert digit(a, k) <= digit(b, k) and expected == -(abs(clean) + up)
    elif task.name == "NZ":
        assert digit(ca, k) == digit(cb, k) and borrow_into(cb, ca, k) and not borrow_into(b, a, k)
        assert expected == -(abs(clean) + up)
    elif task.name == "NT":
        assert digit(ca, k) == digit(cb, k) and not borrow_into(cb, ca, k)
        assert digit(a, k) > digit(b, k) and expected == -(abs(clean) - up)
    elif task.name == "GT":
        assert a // up == b // up and ca // up == cb // up  # equal digits above k: digit k decides
        assert (a - b > 0) != (clean > 0) and (expected > 0) == (a - b > 0)
    else:
        raise AssertionError(task.name)
    if task.name != "GT":  # the answer's sign (the question type) is held fixed
        assert (expected < 0) == (clean < 0) == ((a + b if plus else a - b) < 0)


@pytest.mark.parametrize("n", [3, 6])
@pytest.mark.parametrize("task", [t for t in PATCHED if t.name not in ("OPR", "SGN")], ids=lambda t: t.name)
def test_every_drawn_pair_has_its_property(task, n):
    rng = np.random.default_rng(7)
    for k in task.digit_range(n):
        pairs = task.pairs(n, k, 150, rng)
        store, clean = pairs.store, pairs.clean
        want = {"ADD": {0}, "SUB": {1}, "NEG": {2}, "SUB/NEG": {1, 2}}[task.op]
        assert set(clean.qtype.tolist()) <= want and set(store.qtype.tolist()) <= want
        changed = {
            "SS": {k - 1}, "MZ": {k - 1}, "NZ": {k - 1},
        }.get(task.name, {k})
        for i in range(len(pairs)):
            a, b, ca, cb = (int(v[i]) for v in (store.a, store.b, clean.a, clean.b))
            differ = {j for j in range(n) if (digit(a, j), digit(b, j)) != (digit(ca, j), digit(cb, j))}
            assert differ == changed, (task.name, k, a, b, ca, cb)
            _check(task, k, n, a, b, ca, cb, int(pairs.expected[i]))


def _value(q: QuestionBatch, i: int) -> int:
    a, b = int(q.a[i]), int(q.b[i])
    return a + b if q.op[i] == PLUS else a - b


@pytest.mark.parametrize("n", [3, 6])
def test_opr_pairs_swap_only_the_operator_and_their_answers_differ_at_the_judged_digit(n):
    for k in S.OPR.digit_range(n):
        pairs = S.OPR.pairs(n, k, 60, np.random.default_rng(k))
        store, clean = pairs.store, pairs.clean
        assert np.array_equal(store.a, clean.a) and np.array_equal(store.b, clean.b) and (clean.a >= clean.b).all()
        assert (store.op != clean.op).all() and (clean.op == PLUS).sum() == 30
        for i in range(len(pairs)):
            s, c, e = _value(store, i), _value(clean, i), int(pairs.expected[i])
            assert digit(s, k) != digit(c, k) and digit(e, k) == digit(s, k)
            assert [j for j in range(n + 1) if digit(e, j) != digit(c, j)] == [k] and e >= 0


@pytest.mark.parametrize("n", [3, 6])
def test_sgn_pairs_keep_the_digits_up_to_k_and_flip_the_sign_class(n):
    for k in S.SGN.digit_range(n):
        pairs = S.SGN.pairs(n, k, 60, np.random.default_rng(k))
        store, clean = pairs.store, pairs.clean
        assert (store.op == MINUS).all() and (clean.op == MINUS).all()
        assert ((store.result < 0) != (clean.result < 0)).all() and (clean.result < 0).sum() == 30
        for i in range(len(pairs)):
            a, b, ca, cb = (int(v[i]) for v in (store.a, store.b, clean.a, clean.b))
            assert low(a, k + 1) == low(ca, k + 1) and low(b, k + 1) == low(cb, k + 1)  # digits 0..k shared
            s, c, e = a - b, ca - cb, int(pairs.expected[i])
            assert digit(s, k) != digit(c, k) and digit(e, k) == digit(s, k)
            assert [j for j in range(n + 1) if digit(e, j) != digit(c, j)] == [k] and (e < 0) == (c < 0)


def test_gt_pairs_test_both_directions():
    pairs = S.GT.pairs(6, 2, 100, np.random.default_rng(0))
    assert (pairs.clean.result < 0).sum() == 50 and (pairs.store.result < 0).sum() == 50


def test_pairs_are_deterministic_for_a_seed():
    one = S.SC.pairs(6, 2, 50, np.random.default_rng(3))
    two = S.SC.pairs(6, 2, 50, np.random.default_rng(3))
    other = S.SC.pairs(6, 2, 50, np.random.default_rng(4))
    assert np.array_equal(one.clean.tokens, two.clean.tokens) and np.array_equal(one.store.tokens, two.store.tokens)
    assert not np.array_equal(one.clean.tokens, other.clean.tokens)


@pytest.mark.parametrize("task, n, k", [(S.SC, 6, 6), (S.MB, 6, 5), (S.SS, 6, 0), (S.MZ, 3, 2), (S.SA, 1, 1)])
def test_a_digit_outside_the_task_s_range_is_an_error(task, n, k):
    with pytest.raises(QuestionRequestError, match=f"{task.name} applies to digits"):
        task.pairs(n, k, 10, np.random.default_rng(0))


def test_digit_ranges_follow_the_tag_conventions():
    ranges = {t.name: list(t.digit_range(6)) for t in PATCHED}
    assert ranges["SA"] == ranges["SC"] == ranges["ST"] == ranges["MD"] == ranges["ND"] == ranges["GT"] == [0, 1, 2, 3, 4, 5]
    assert ranges["SS"] == [1, 2, 3, 4, 5]
    assert ranges["MB"] == ranges["MT"] == ranges["NB"] == ranges["NT"] == [0, 1, 2, 3, 4]
    assert ranges["MZ"] == ranges["NZ"] == [1, 2, 3, 4]
    assert ranges["OPR"] == [0, 1, 2, 3, 4, 5, 6]  # answer digits, the carry digit A6 included
    assert ranges["SGN"] == [0, 1, 2, 3, 4]  # a digit above k must be free to flip the sign
    assert S.SC.tag(1) == "A1.SC" and S.OPR.tag() == "OPR" and S.OPR.tag(2) == "A2.OPR"
    with pytest.raises(ArithLensError, match="need a digit"):
        S.SC.tag()


def test_digit_references():
    assert S.digit_ref("k+1", k=2) == 3 and S.digit_ref("n-2", n=6) == 4 and S.digit_ref("3") == 3
    with pytest.raises(ArithLensError, match="bad digit reference"):
        S.digit_ref("j+1")


def test_tasks_follow_the_operation_mix():
    assert [t.name for t in S.tasks_for(100, 0)] == ["SS", "SC", "SA", "ST"]
    sub_only = [t.name for t in S.tasks_for(0, 100)]
    assert "SA" not in sub_only and "OPR" not in sub_only and "SGN" in sub_only and "GT" in sub_only
    assert [t.name for t in S.tasks_for(34, 66)] == [t.name for t in S.ORDER if t.op != "MUL"]
    assert [t.name for t in S.tasks_for(20, 30, 50)] == [t.name for t in S.ORDER]


# ---- candidate filters ----

def useful(name, impact, attn=None, tags=()):
    un = UsefulNode(Node.parse(name))
    un.add(f"Impact:A{impact}")
    for pos, pct in (attn or {}).items():
        un.add(f"Attn:P{pos}={pct}")
    for t in tags:
        un.add(t)
    return un


def test_late_candidates_use_exact_positions_attention_and_impact():
    layout = Layout(6)  # D2 at P3, D'2 at P10; A2 computed at P18
    nodes = NodeList([
        useful("P18L0H0", 2, {3: 99}),  # attends D2: joins the pool (pairs with a D'2 head)
        useful("P18L0H2", 2, {10: 99}),
        useful("P18L0H1", 2, {4: 50, 11: 50}),  # D1 / D'1: not digit 2
        useful("P18L0H3", 2, {13: 99}),  # P13 contains "P1" and "P3" as substrings: must not match
        useful("P19L0H0", 2, {3: 50, 10: 50}),  # after P18: cannot change A2
        useful("P18L1H0", 2, {14: 90}),  # deeper head: no attention clause
        useful("P18L0MLP", 2),
        useful("P17L0MLP", 43210),  # impact includes 2 (exact digits, not substring)
        useful("P16L0MLP", 3),  # impact misses A2
    ])
    flt = S.candidate_filter(S.SA, 2, layout)
    assert [un.name for un in nodes if flt(un)] == ["P17L0MLP", "P18L0H0", "P18L0H2", "P18L0MLP", "P18L1H0"]
    assert not S.SA.prereq.covers([nodes.get("P18L0H0")], 2, layout)
    assert S.SA.prereq.covers([nodes.get("P18L0H0"), nodes.get("P18L0H2")], 2, layout)
    assert S.SA.prereq.covers([nodes.get("P18L1H0")], 2, layout)


def test_attention_below_the_threshold_does_not_count():
    layout = Layout(6)
    weak_head = useful("P18L0H0", 2, {3: 9, 10: 9})
    assert not S.candidate_filter(S.SA, 2, layout)(weak_head)
    assert S.candidate_filter(S.SA, 2, layout, min_pct=5)(weak_head)


def test_early_candidates_need_the_window_and_a_failing_question_of_the_kind():
    layout = Layout(6)  # D3 at P2, D'3 at P9; early window P6..P14
    add_node = useful("P9L0H0", 543, {2: 99}, tags=["Math.Add:S12"])
    sub_node = useful("P9L0H1", 543, {2: 99}, tags=["Math.Sub:M1", "Math.Add:A3.SP"])  # a PCA tag is not a class
    late = useful("P15L0H0", 5, {2: 50, 9: 50}, tags=["Math.Add:S1"])
    st = S.candidate_filter(S.ST, 3, layout)
    mt = S.candidate_filter(S.MT, 3, layout)
    assert st(add_node) and not st(sub_node) and not st(late)
    assert mt(sub_node) and not mt(add_node)


def test_attention_facts_are_heads_attending_the_operator_or_the_sign():
    layout = Layout(6)
    head = useful("P9L0H1", 7, {6: 94})
    assert S.candidate_filter(S.OPR, None, layout)(head)
    assert not S.candidate_filter(S.SGN, None, layout)(head)
    assert S.candidate_filter(S.SGN, None, layout)(useful("P18L1H0", 2, {14: 41}))
    with pytest.raises(ArithLensError, match="needs an alter digit"):
        S.candidate_filter(S.SA, None, layout)
    pure = S.SubTask("X", "ADD", "attention only", ("0", "0"), None, attends_to="opr")
    assert list(pure.digit_range(6)) == []
    with pytest.raises(ArithLensError, match="only an attention fact"):
        pure.pairs(6, 0, 10, np.random.default_rng(0))


def test_opr_and_sgn_candidates_carry_the_token_to_the_judged_digit():
    layout = Layout(6)  # OPR at P6, the sign at P14; A2 computed at P18
    nodes = NodeList([
        useful("P8L0H1", 2, {6: 96}),  # a layer-0 head reading the operator: an OPR candidate from P6 on
        useful("P18L0H1", 2, {4: 50, 11: 49}),  # layer 0, not attending the operator / the sign
        useful("P14L0H3", 2, {14: 88}),  # reads the sign token
        useful("P18L2H0", 2, {12: 22}),  # deeper: judged by the patch alone
        useful("P19L2H0", 2),  # after P18: cannot change A2
    ])
    opr = S.candidate_filter(S.OPR, 2, layout)
    sgn = S.candidate_filter(S.SGN, 2, layout)
    assert [un.name for un in nodes if opr(un)] == ["P8L0H1", "P18L2H0"]
    assert [un.name for un in nodes if sgn(un)] == ["P14L0H3", "P18L2H0"]


def test_a_layer0_head_at_a_digit_s_position_covers_that_digit():
    layout = Layout(6)  # D0 at P5, D'0 at P12
    at_dp0 = useful("P12L0H3", 7, {6: 66, 5: 30})  # attends D0; D'0 is its own token
    elsewhere = useful("P11L0H3", 7, {6: 66, 5: 30})
    assert S.GT.prereq.covers([at_dp0], 0, layout)
    assert not S.GT.prereq.covers([elsewhere], 0, layout)


def test_cascade_candidates_include_question_tokens():
    layout = Layout(6)  # SS at k=1: the carry of digit 0 (D0 at P5, D'0 at P12) passed on to A2 (P18)
    carrier = useful("P12L0H1", 5432, {6: 56, 5: 24, 12: 20})
    assert S.candidate_filter(S.SS, 1, layout)(carrier) and S.SS.prereq.covers([carrier], 1, layout)
    assert not S.candidate_filter(S.SS, 1, layout)(useful("P5L0H1", 2, {5: 50, 12: 50}))  # before the operator
