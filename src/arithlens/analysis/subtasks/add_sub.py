"""The addition and subtraction sub-tasks (SA, SC, SS, ST, MD, MB, MZ, MT, ND, NB, NZ, NT, GT, OPR, SGN) as specs.

Tag-index conventions (the predecessor's): SA/MD/ND/ST/MT/NT/GT tags carry the operand digit used,
SC/MB/NB/SS/MZ/NZ the lower digit that makes the carry/borrow, so `A1.SC` changes A2.
"""

from __future__ import annotations

from arithlens.analysis.nodes import Major
from arithlens.analysis.subtasks.spec import Effect, PairRecipe, Prerequisite, SubTask
from arithlens.arith.questions import QType

_LATE_DIGIT = ("a late-token head computes answer digit k at or before the position that predicts Ak, from D and "
               "D' of digit {a}; its ablation changes Ak")

SA = SubTask(
    "SA", "ADD", "base add: Ak = (Dk + D'k) mod 10 (the carry from below added by another node)", ("0", "n-1"),
    Prerequisite("late", _LATE_DIGIT.format(a="k"), attends=("k",), impact="k"),
    PairRecipe(QType.ADD, store=(("k", "any"),), differ="SA", same="SC"),
    Effect("digit", "SA", "k"),
)
SC = SubTask(
    "SC", "ADD", "make carry: Dk + D'k >= 10 adds one to A(k+1)", ("0", "n-1"),
    Prerequisite("late", "a head that tells A(k+1) whether digit k makes a carry must attend Dk and D'k at or "
                 "before the position predicting A(k+1), and its ablation changes A(k+1)",
                 attends=("k",), impact="k+1"),
    PairRecipe(QType.ADD, clean=(("k", "sum<=8"), ("k+1", "sum<=8")), store=(("k", "sum>=10"),), no_carry_in=True),
    Effect("digit", "SC", "k+1"),
)
SS = SubTask(
    "SS", "ADD", "use sum 9: Dk + D'k = 9 passes a carry from digit k-1 on to A(k+1)", ("1", "n-1"),
    Prerequisite("span", "a cascade through a sum-9 digit k is seen by a node that has the carry-making digit "
                 "k-1 (a layer-0 head attending D and D' of k-1, or sitting at one of them): at A(k+1)'s position, "
                 "or already at the question tokens where the tricase of digit k is built (P12 carries digit 0's "
                 "carry into digit 1's tricase); its ablation changes A(k+1)",
                 attends=("k-1",), impact="k+1"),
    PairRecipe(QType.ADD, clean=(("k", "sum=9"), ("k-1", "sum>=10"), ("k+1", "sum<=8")), store=(("k-1", "sum<=8"),)),
    Effect("digit", "SS", "k+1"),
)
ST = SubTask(
    "ST", "ADD", "add tricase (early): digit k's pair is T8 / T9 / T10; a T9 made T10 carries into A(k+1) "
    "(and on through sum-9 digits above)", ("0", "n-1"),
    Prerequisite("early", "the tricase of digit k is computed at question tokens before the answer (P6..P14 for "
                 "6 digits) by heads attending Dk and D'k; the node matters for some addition question",
                 attends=("k",), fails=Major.MATH_ADD),
    PairRecipe(QType.ADD, clean=(("k", "sum=9"),), store=(("k", "sum>=10"),), no_carry_in=True),
    Effect("digit", "SC", "k+1"),
)
MD = SubTask(
    "MD", "SUB", "difference: Ak = (Dk - D'k) mod 10 for a >= b (the borrow from below added by another node)",
    ("0", "n-1"),
    Prerequisite("late", _LATE_DIGIT.format(a="k"), attends=("k",), impact="k"),
    PairRecipe(QType.SUB, store=(("k", "any"),), differ="MD", same="MB"),
    Effect("digit", "MD", "k"),
)
MB = SubTask(
    "MB", "SUB", "borrow one: Dk < D'k takes one from A(k+1) (a >= b kept by the digits above)", ("0", "n-2"),
    Prerequisite("late", "a head that tells A(k+1) whether digit k borrows must attend Dk and D'k at or before the "
                 "position predicting A(k+1); its ablation changes A(k+1)", attends=("k",), impact="k+1"),
    PairRecipe(QType.SUB, clean=(("k", "x>=y"), ("k+1", "x>y")), store=(("k", "x<y"),), no_carry_in=True),
    Effect("digit", "MB", "k+1", sign=-1),
)
MZ = SubTask(
    "MZ", "SUB", "make zero: Dk = D'k passes a borrow from digit k-1 on to A(k+1)", ("1", "n-2"),
    Prerequisite("span", "like SS: a node with the borrow-making digit k-1, at A(k+1)'s position or at the question "
                 "tokens; its ablation changes A(k+1)", attends=("k-1",), impact="k+1"),
    PairRecipe(QType.SUB, clean=(("k", "x=y"), ("k-1", "x<y"), ("k+1", "x>y")), store=(("k-1", "x>y"),)),
    Effect("digit", "MZ", "k+1", sign=-1),
)
MT = SubTask(
    "MT", "SUB", "subtract tricase (early): digit k is T8 (Dk > D'k) / T9 (equal) / T10 (Dk < D'k); an equal pair "
    "made T10 borrows from A(k+1) (and on through equal digits above)", ("0", "n-2"),
    Prerequisite("early", "as ST, for subtraction: a question-token head attending Dk and D'k that matters for "
                 "some a >= b question", attends=("k",), fails=Major.MATH_SUB),
    PairRecipe(QType.SUB, clean=(("k", "x=y"),), store=(("k", "x<y"),), no_carry_in=True),
    Effect("digit", "MB", "k+1", sign=-1),
)
ND = SubTask(
    "ND", "NEG", "difference for a < b: magnitude digit k = (D'k - Dk - borrow) mod 10", ("0", "n-1"),
    Prerequisite("late", _LATE_DIGIT.format(a="k"), attends=("k",), impact="k"),
    PairRecipe(QType.NEG, store=(("k", "any"),), differ="ND", same="NB"),
    Effect("digit", "ND", "k"),
)
NB = SubTask(
    "NB", "NEG", "borrow one for a < b: computing b - a, Dk > D'k borrows; the clean borrows, the store does "
    "not, so the answer's magnitude grows by 10^(k+1)", ("0", "n-2"),
    Prerequisite("late", "as MB: a head attending Dk and D'k at or before the position predicting A(k+1); its "
                 "ablation changes A(k+1)", attends=("k",), impact="k+1"),
    PairRecipe(QType.NEG, clean=(("k", "x>y"), ("k+1", "x<y")), store=(("k", "x<=y"),), no_carry_in=True),
    Effect("digit", "NB", "k+1", sign=-1),
)
NZ = SubTask(
    "NZ", "NEG", "make zero for a < b: Dk = D'k passes a borrow (of b - a) from digit k-1 on to A(k+1)",
    ("1", "n-2"),
    Prerequisite("span", "as MZ, in b - a semantics", attends=("k-1",), impact="k+1"),
    PairRecipe(QType.NEG, clean=(("k", "x=y"), ("k-1", "x>y"), ("k+1", "x<y")), store=(("k-1", "x<y"),)),
    Effect("digit", "NZ", "k+1", sign=-1),
)
NT = SubTask(
    "NT", "NEG", "negative tricase (early), b - a semantics: an equal pair made Dk > D'k borrows, so the "
    "magnitude loses 10^(k+1) (and cascades through equal digits above)", ("0", "n-2"),
    Prerequisite("early", "as MT, for a < b: the node matters for some negative-answer question",
                 attends=("k",), fails=Major.MATH_NEG),
    PairRecipe(QType.NEG, clean=(("k", "x=y"),), store=(("k", "x>y"),), no_carry_in=True),
    Effect("digit", "NB", "k+1", sign=-1),
)
GT = SubTask(
    "GT", "SUB/NEG", "greater-than: with equal digits above k, Dk vs D'k decides the sign of a - b", ("0", "n-1"),
    Prerequisite("sign", "the sign is predicted at `=`; a node deciding it attends Dk and D'k at or before `=`, "
                 "and its ablation changes the sign", attends=("k",), impact="sign"),
    PairRecipe(QType.NEG, clean=(("k", "x<y"),), store=(("k", "x>y"),), above="x=y", store_qtype=QType.SUB,
               mirror=True),
    Effect("sign"),
)
OPR = SubTask(
    "OPR", "ADD/SUB", "operator: the node tells answer digit k which operation (+ or -) the question asks. "
    "Causal test (`Ak.OPR`): patched from the same operands under the other operator (a >= b, so ADD <-> SUB "
    "and both answers are positive), Ak becomes the other operation's digit. Attention fact (bare `OPR`): a "
    "head paying at least the minimum attention to the operator token, kept only beside another purpose or "
    "together with SGN", ("0", "n"),
    Prerequisite("span", "the operator is known from its token on, so a node from the operator's position to "
                 "where Ak is computed can carry it; a layer-0 head does so only by attending the operator "
                 "token; its ablation changes Ak", impact="k", token="opr"),
    PairRecipe(QType.ADD, store_qtype=QType.SUB, mirror=True),
    Effect("store_digit", digit="k"),
    attends_to="opr",
)
SGN = SubTask(
    "SGN", "SUB/NEG", "answer sign: the node tells answer digit k whether the answer is a - b or -(b - a). Causal "
    "test (`Ak.SGN`): patched from a question of the other sign class (SUB <-> NEG) that has the clean's digits "
    "at and below k (only the digits above k differ, and they decide the sign), Ak becomes the other class's "
    "digit. Attention fact (bare `SGN`): a head paying at least the minimum attention to the answer's sign "
    "token, kept only beside another purpose or together with OPR", ("0", "n-2"),
    Prerequisite("late", "the sign token is written at A(n+1)'s position, so a node from there to where Ak is "
                 "computed can read it; a layer-0 head does so only by attending the sign token; its ablation "
                 "changes Ak", impact="k", token="sign"),
    PairRecipe(QType.NEG, store_qtype=QType.SUB, store_above="any", mirror=True),
    Effect("store_digit", digit="k"),
    attends_to="sign",
)

