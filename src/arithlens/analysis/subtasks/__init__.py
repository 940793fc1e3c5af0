"""Algorithm sub-tasks as declarative specs: the catalogue (addition and subtraction in `add_sub`, multiplication
in `mul`), its search order, and which tasks a model's training mix calls for. `spec` says what a spec is."""

from __future__ import annotations

from arithlens.analysis import filters as F
from arithlens.analysis.subtasks.add_sub import (GT, MB, MD, MT, MZ, NB, ND, NT, NZ, OPR, SA, SC, SGN, SS, ST)
from arithlens.analysis.subtasks.mul import MUL_TASKS, PC, PR, PS
from arithlens.analysis.subtasks.spec import (
    DEFAULT_MIN_ATTN, DEFAULT_PAIRS, MAX_DRAWS, MUL_FEATURES, PAIR_CLASSES, Effect, PairRecipe, Pairs,
    Prerequisite, SubTask, answer_tokens, digit_ref, expected_answers, real_feature, _token_pos,
)
from arithlens.arith.layout import Layout
from arithlens.errors import ArithLensError

# The predecessor's search order, with MZ, NZ and NT after their families; MUL's after all (a task's place is part
# of its pair seed, so new tasks go at the end).
ORDER = (SS, SC, SA, ST, MD, MB, MZ, MT, OPR, SGN, ND, NB, NZ, NT, GT, *MUL_TASKS)
TASKS: dict[str, SubTask] = {t.name: t for t in ORDER}


def get(name: str) -> SubTask:
    try:
        return TASKS[name.upper()]
    except KeyError:
        raise ArithLensError(f"unknown sub-task {name!r}; expected one of {', '.join(TASKS)}") from None


def tasks_for(perc_add: int, perc_sub: int, perc_mul: int = 0) -> tuple[SubTask, ...]:
    """The sub-tasks a model trained on this mix can do (OPR only when it does both addition and subtraction)."""
    out = []
    for t in ORDER:
        add, sub, mul = "ADD" in t.op, "SUB" in t.op or "NEG" in t.op, t.op == "MUL"
        if t is OPR:
            keep = perc_add > 0 and perc_sub > 0
        else:
            keep = (add and perc_add > 0) or (sub and perc_sub > 0) or (mul and perc_mul > 0)
        if keep:
            out.append(t)
    return tuple(out)


def candidate_filter(task: SubTask, k: int | None, layout: Layout, *, min_pct: int = DEFAULT_MIN_ATTN) -> F.Filter:
    """The useful nodes to try for `task` at alter digit k; k None: the attention fact (heads attending the
    operator / the sign token)."""
    if k is None:
        if not task.is_attention_fact:
            raise ArithLensError(f"{task.name} needs an alter digit")
        return F.And(F.Head(), F.Attention(_token_pos(task.attends_to, layout), min_pct))
    return task.prereq.filter(k, layout, min_pct=min_pct)


__all__ = [
    "DEFAULT_MIN_ATTN", "DEFAULT_PAIRS", "GT", "MAX_DRAWS", "MB", "MD", "MT", "MUL_FEATURES", "MUL_TASKS", "MZ", "NB",
    "ND", "NT", "NZ", "OPR", "ORDER", "PAIR_CLASSES", "PC", "PR", "PS", "SA", "SC", "SGN", "SS", "ST", "TASKS",
    "Effect", "PairRecipe", "Pairs", "Prerequisite", "SubTask", "answer_tokens", "candidate_filter", "digit_ref",
    "expected_answers", "get", "real_feature", "tasks_for",
]
