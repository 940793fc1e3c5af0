"""The multiplication sub-tasks: a node holds column k's sum of partial products (PS), the carry into column k
(PC), or the running sum there (PR, Bai et al. 2025's c-hat: the column sum plus the carry).

Each is tested like the add/sub ones: patch the node from a store question into a clean one; where a node holds
only that column quantity, answer digit Ak becomes (clean Ak + store's quantity - clean's) mod 10, and only Ak is
judged (the answer is written most significant digit first, so the digits above, which the new value would carry
into, are predicted at earlier positions that a node where Ak is computed cannot reach). The store is a fresh MUL
question that agrees with the clean on the other part of the running sum, so PS, PC and PR tell apart a node with
the column sum, one with the carry and one with both. Tags carry the column: `A2.PS` changes A2.
"""

from __future__ import annotations

from arithlens.analysis.subtasks.spec import Effect, PairRecipe, Prerequisite, SubTask
from arithlens.arith.questions import QType

# The same-carry (same-sum) condition keeps about 1 in 20 (1 in 100) random pairs: draw in big batches.
_ROWS = 4096
_SPAN = ("the products of a column's digit pairs can be formed from the second operand's tokens on, so a node "
         "from the operator's position to where Ak is computed can hold {what}; its ablation changes Ak")

PS = SubTask(
    "PS", "MUL", "column sum: the node holds sum_{i+j=k} Di x D'j, the partial products of answer column k",
    ("0", "c"),
    Prerequisite("span", _SPAN.format(what="the column sum"), impact="k"),
    PairRecipe(QType.MUL, fresh_store=True, differ="PS", same="PC", min_rows=_ROWS),
    Effect("column", "PS", "k"),
)
PC = SubTask(
    "PC", "MUL", "carry into column k: the node holds the carry the columns below pass to Ak "
    "(the running sum of column k-1, integer-divided by 10)", ("1", "c+1"),
    Prerequisite("span", _SPAN.format(what="the carry from the columns below"), impact="k"),
    PairRecipe(QType.MUL, fresh_store=True, differ="PC", same="PS", min_rows=_ROWS),
    Effect("column", "PC", "k"),
)
PR = SubTask(
    "PR", "MUL", "running sum at column k: column sum plus carry in; Ak is it mod 10 and it // 10 carries on",
    ("0", "c+1"),
    Prerequisite("span", _SPAN.format(what="the running sum"), impact="k"),
    PairRecipe(QType.MUL, fresh_store=True, differ="PR", min_rows=_ROWS),
    Effect("column", "PR", "k"),
)

MUL_TASKS = (PS, PC, PR)
