"""The sub-task search: patch each candidate node from store questions into clean ones, many pairs at once,
and tag the nodes whose patch makes the answer change the sub-task predicts (`Algo:A1.SC`).

For every sub-task and alter digit: draw the pairs (seeded per task and digit, so a result does not depend
on which other tasks ran), run the store questions once and keep every head's `hook_z` and every MLP's
`hook_post`, run the clean questions once (the intervention engine's clean run), then give each candidate
one batched patched run in which row i of the clean batch gets row i of the store's activation at the
node. Only pairs the model answers right, store and clean, are judged. A pair is a *strong* success when
the patched answer equals the expected answer (on the judged positions), a *weak* one when exactly the
expected answer digits change (to any value). Rates come with Wilson 95% intervals; `Rule` says when one
earns a tag.

Groups: two or three candidate heads at one position (any layers) are also patched together, for heads that
split one job (the predecessor's "virtual head" of two layer-0 heads each copying one operand is the
simplest case). A group earns its tag for every member only when its rate clears the rule and each member
is needed: leaving any one member out gives a rate whose whole Wilson interval lies below the group's.
With `partners`, a candidate head that passed neither alone nor in a group is also paired with each deeper
head at its position that is not a useful node: mean-ablating such a head fails no question because the other half of a redundant job makes up for
it, yet patching the two together can move the answer where neither does alone (in the shipped mixed model,
P18L2H2 with P18L2H0: A1.NB 99%, 29% and 0% alone). Only useful nodes are tagged; the record names the partner.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from arithlens.analysis.nodes import (
    Major,
    Node,
    NodeList,
    Tag,
    UsefulNode,
    impact_string,
)
from arithlens.analysis.search_runner import (  # noqa: F401  (importable from here, as before)
    DEFAULT_BATCH_ROWS,
    EngineRunner,
    Runner,
    RunnerFactory,
    engine_runner,
)
from arithlens.analysis.stats import rate, wilson
from arithlens.analysis.subtasks import (
    DEFAULT_MIN_ATTN,
    DEFAULT_PAIRS,
    ORDER,
    Pairs,
    SubTask,
    candidate_filter,
    digit_ref,
    tasks_for,
)
from arithlens.arith.vocab import tokens_to_string
from arithlens.errors import ArithLensError

ATTENTION_FACTS = ("OPR", "SGN")
# The sequential test's first stage settles a node set with at most this many hits on it as failing (see
# `stage_ends`): most sets patched in a cell move no answer at all, so this first block is all they cost.
STAGE_SLACK = 5
WEAK_POLICIES = ("always", "fallback", "never")
_TASK_INDEX = {t.name: i for i, t in enumerate(ORDER)}  # part of each (task, digit) seed: never reorder


@dataclass(frozen=True)
class Rule:
    """A rate earns a tag when the lower end of its Wilson 95% interval reaches `min_lower`.

    0.5 means: with 95% confidence the patch does what the sub-task predicts in most pairs. Chance is far
    below that (an unrelated patch leaves the answer unchanged, which never matches the expected answer),
    and the bar scales with the evidence: 100 judged pairs need a rate of at least 0.60 (200: 0.57; 20: 0.75;
    5: all 5). A fixed rate cut (say 0.8) would tag on 4 of 5 pairs and miss real but shared mechanisms
    (two heads splitting one job, each moving the answer in 60-80% of pairs).
    """

    min_lower: float = 0.5

    def passes(self, hits: int, n: int) -> bool:
        return n > 0 and wilson(hits, n)[0] >= self.min_lower

    @staticmethod
    def all_needed(hits: int, without: Sequence[int], n: int) -> bool:
        """A group's members are all needed when, leaving out any one of them, the upper end of the rate's
        Wilson interval stays below the lower end of the group's (a member that adds nothing, or too little
        to tell on these pairs, is not credited with the group's purpose)."""
        lower = wilson(hits, n)[0]
        return all(wilson(h, n)[1] < lower for h in without)

    def describe(self) -> str:
        return f"lower end of the Wilson 95% interval of the success rate >= {self.min_lower:g}"


@dataclass(frozen=True)
class Trial:
    """One (node or node pair, sub-task, digit) test: counts over the judged pairs."""

    nodes: tuple[Node, ...]
    task: str
    digit: int
    tag: str
    valid: int
    strong: int
    weak: int
    tagged: str | None = None  # the Algo tag this trial added, if any
    without: tuple[tuple[int, int], ...] = ()  # groups: (strong, weak) with each member left out, in order
    partners: tuple[Node, ...] = ()  # members that are not useful nodes (never tagged)
    # The cell's valid pairs, which the rule judges against; more than `valid` when the sequential test stopped
    # patching this trial once no outcome of the pairs left could change its verdict (None: `valid`).
    pairs_valid: int | None = None

    @property
    def name(self) -> str:
        return "+".join(n.name for n in self.nodes)

    def passes(self, rule: Rule, kind: str) -> bool:
        """Whether the strong (kind "strong") or weak count earns a tag; a group's also needs every member. After a
        sequential stop, the verdict the unjudged pairs cannot change (`settled`): the full count's verdict."""
        return self.verdicts(rule, kind)[0]

    def settled(self, rule: Rule, kind: str) -> bool:
        """Whether every outcome of the pairs not judged yet gives the same verdict."""
        worst, best = self.verdicts(rule, kind)
        return worst == best

    def verdicts(self, rule: Rule, kind: str) -> tuple[bool, bool]:
        """The verdict if every pair not judged yet fails, and if every one succeeds (while every member left out
        does the opposite): the verdict rises with the hits and falls with the left-out sets' hits, so these
        bound the full count's verdict; equal, it is settled."""
        n = self.valid if self.pairs_valid is None else self.pairs_valid
        rest = n - self.valid
        hits = self.strong if kind == "strong" else self.weak
        others = [s if kind == "strong" else w for s, w in self.without]
        worst = rule.passes(hits, n) and rule.all_needed(hits, [o + rest for o in others], n)
        best = rule.passes(hits + rest, n) and rule.all_needed(hits + rest, others, n)
        return worst, best

    def to_dict(self) -> dict:
        out = {"node": self.name, "task": self.task, "digit": self.digit, "tag": self.tag,
               "strong": _rate(self.strong, self.valid), "weak": _rate(self.weak, self.valid),
               "tagged": self.tagged}
        if self.pairs_valid is not None and self.pairs_valid != self.valid:
            out["stopped_early"] = {"judged": self.valid, "valid": self.pairs_valid}
        if self.without:
            out["without"] = {node.name: {"strong": _rate(s, self.valid), "weak": _rate(w, self.valid)}
                              for node, (s, w) in zip(self.nodes, self.without)}
        if self.partners:
            out["not_useful"] = [node.name for node in self.partners]
        return out


def _rate(hits: int, n: int) -> dict:
    """`stats.rate` rounded for JSON, with null instead of NaN when no pair was judged."""
    r = rate(hits, n)
    if not n:
        return {"k": hits, "n": n, "rate": None, "ci": None}
    return {**r, "rate": round(r["rate"], 4), "ci": [round(x, 4) for x in r["ci"]]}


@dataclass
class Cell:
    """One (sub-task, digit): what was tried."""

    task: str
    digit: int | None
    tag: str
    candidates: list[str]
    filter: str
    pairs: int = 0
    valid: int = 0
    tagged: list[str] = field(default_factory=list)
    example: dict | None = None  # the first pair: store and clean questions, clean and expected answers

    def to_dict(self) -> dict:
        return {"task": self.task, "digit": self.digit, "tag": self.tag, "pairs": self.pairs, "valid": self.valid,
                "candidates": self.candidates, "tagged": self.tagged, "filter": self.filter.strip(),
                "example": self.example}


@dataclass(frozen=True)
class Coverage:
    """Useful heads / MLP nodes, those with any Algo tag, and those with a strong patching tag."""

    heads: int
    heads_purposed: int
    heads_strong: int
    mlps: int
    mlps_purposed: int
    mlps_strong: int

    @staticmethod
    def _pct(a: int, b: int) -> float:
        return 100.0 * a / b if b else 0.0

    def line(self) -> str:
        return (f"{self.heads_purposed} of {self.heads} useful attention heads "
                f"({self._pct(self.heads_purposed, self.heads):.2f}%) have an algorithmic purpose assigned "
                f"({self.heads_strong} by a strong test); {self.mlps_purposed} of {self.mlps} useful MLP nodes "
                f"({self._pct(self.mlps_purposed, self.mlps):.2f}%) ({self.mlps_strong} strong)")

    def to_dict(self) -> dict:
        return {
            "heads": {"useful": self.heads, "purposed": self.heads_purposed, "strong": self.heads_strong,
                      "pct": round(self._pct(self.heads_purposed, self.heads), 2)},
            "mlps": {"useful": self.mlps, "purposed": self.mlps_purposed, "strong": self.mlps_strong,
                     "pct": round(self._pct(self.mlps_purposed, self.mlps), 2)},
            "line": self.line(),
        }


def is_strong_tag(value: str) -> bool:
    """`A1.SC` (a strong patching tag), not `A1.SC.A2` (weak) nor the attention facts."""
    return value not in ATTENTION_FACTS and value.count(".") == 1


def coverage(nodes: Iterable[UsefulNode]) -> Coverage:
    nodes = list(nodes)
    counts = []
    for group in ([n for n in nodes if n.node.is_head], [n for n in nodes if n.node.is_mlp]):
        purposed = sum(bool(n.values(Major.ALGO)) for n in group)
        strong = sum(any(is_strong_tag(v) for v in n.values(Major.ALGO)) for n in group)
        counts += [len(group), purposed, strong]
    return Coverage(*counts)


@dataclass
class SearchResult:
    """Tagged nodes (the input's tags with this search's Algo tags), every trial and the coverage."""

    nodes: NodeList
    trials: list[Trial]
    cells: list[Cell]
    rule: Rule
    settings: dict

    @property
    def coverage(self) -> Coverage:
        return coverage(self.nodes)

    def algo_tags(self) -> dict[str, list[str]]:
        return {un.name: un.values(Major.ALGO) for un in self.nodes if un.values(Major.ALGO)}

    def to_json(self) -> dict:
        return {
            **self.settings,
            "rule": self.rule.describe(),
            "coverage": self.coverage.to_dict(),
            "tags": self.algo_tags(),
            "cells": [c.to_dict() for c in self.cells],
            "trials": [t.to_dict() for t in self.trials],
        }


# ---------------------------------------------------------------------------------------------------
# The search


def _judge(pred: np.ndarray, pairs: Pairs, valid: np.ndarray, rows: slice = slice(None)) -> tuple[int, int]:
    """(strong, weak) success counts over the valid rows (of the block `rows` that `pred` answers)."""
    j = pairs.judged
    impact = pairs.impact[rows]
    strong = (pred[:, j] == pairs.expected_tokens[rows][:, j]).all(1)
    changed = (pred != pairs.clean_tokens[rows]) & j
    weak = (changed == impact).all(1) & impact.any(1)
    return int((strong & valid[rows]).sum()), int((weak & valid[rows]).sum())


def stage_ends(valid: np.ndarray, rule: Rule, slack: int = STAGE_SLACK) -> list[int]:
    """Row ends of the sequential test's stages over a cell's pairs: first just enough valid pairs that a node
    set with at most `slack` hits there cannot reach the rule's bar on all of them (n - h* + 1 + slack, where h*
    is the fewest hits that pass), then the rest. One stage when that leaves nothing to save."""
    n = int(valid.sum())
    bar = next((h for h in range(n + 1) if rule.passes(h, n)), None)
    if bar is None:
        return [len(valid)]
    first = n - bar + 1 + slack
    if not 0 < first < n:
        return [len(valid)]
    return [int(np.flatnonzero(valid)[first - 1]) + 1, len(valid)]


def _judged(pairs: Pairs) -> str:
    """Which answer positions the verdict looks at: "all", "sign" or the digits ("A2")."""
    if pairs.judged.all():
        return "all"
    if not pairs.judged[1:].any():
        return "sign"
    n_answer = len(pairs.judged)
    return impact_string([n_answer - 1 - j for j in np.flatnonzero(pairs.judged)])


def _weak_tag(task: SubTask, k: int, n_digits: int) -> str:
    """`A5.ND.A5`: the strong tag plus the answer digit the sub-task changes (the sign is A(n+1))."""
    if task.effect.kind == "sign":
        digit = n_digits + 1
    else:
        digit = digit_ref(task.effect.digit, k=k, n=n_digits)
    return f"{task.tag(k)}.{impact_string([digit])}"


def search(nodes: NodeList, spec, runner: RunnerFactory, *, tasks: Sequence[SubTask] | None = None,
           n_pairs: int = DEFAULT_PAIRS, seed: int = 0, rule: Rule = Rule(), weak: str = "always",
           pair_search: bool = True, max_group: int = 3, partners: bool = True, min_pct: int = DEFAULT_MIN_ATTN,
           make_pairs: Callable[[SubTask, int, int, np.random.Generator], Pairs] | None = None,
           sequential: bool = True, progress: Callable[[int, int, str], None] | None = None) -> SearchResult:
    """Run the sub-task searches over useful `nodes` of a model described by `spec` (a ModelSpec).

    `runner(pairs)` patches (see `engine_runner`); `tasks` default to those the model's operation mix
    allows, in the predecessor's order. `weak`: "always" tags a node that passes only the weak test with
    `A1.SC.A2`; "fallback" only when no node passed the strong test for that task and digit (the
    predecessor); "never". With `pair_search`, groups of 2..`max_group` candidate heads at one position
    are patched together (see the module docstring for when a group tags its members); a layer-0 head that
    attends only part of the digits the task needs is tried only in groups that cover them all (the
    predecessor's "virtual head" of two operand-copying heads); with `partners` too, each candidate head
    that passed neither alone nor in a group is paired with every deeper head at its position that is not a useful node. `make_pairs(task, k,
    n_pairs, rng)` replaces the tasks' own pair drawing (e.g. questions a hand-built model can answer).
    `sequential` (with a runner that has `rows`) judges a first block of pairs, then patches the rest only for
    trials whose verdicts those could not settle (`stage_ends`): the same tags as judging every pair, fewer
    patched runs; a stopped trial's rates are over the pairs it was judged on (`stopped_early` in its record).
    Deterministic for a seed.
    """
    if weak not in WEAK_POLICIES:
        raise ArithLensError(f"weak policy {weak!r} is not one of {', '.join(WEAK_POLICIES)}")
    layout = spec.layout
    n = layout.n_digits
    tasks = tuple(tasks_for(spec.perc_add, spec.perc_sub, spec.perc_mul) if tasks is None else tasks)
    out = NodeList(UsefulNode(un.node, [t for t in un.tags if t.major != Major.ALGO]) for un in nodes)
    work = [(t, k) for t in tasks for k in ([None] if t.is_attention_fact else []) + list(t.digit_range(n))]
    trials: list[Trial] = []
    cells: list[Cell] = []
    for i, (task, k) in enumerate(work):
        tag = task.tag(k)
        if progress is not None:
            progress(i, len(work), tag)
        flt = candidate_filter(task, k, layout, min_pct=min_pct)
        candidates = [un for un in out if flt(un)]
        cell = Cell(task.name, k, tag, [un.name for un in candidates], flt.describe())
        cells.append(cell)
        if k is None:  # the attention fact
            for un in candidates:
                un.add(Tag(Major.ALGO, tag))
                cell.tagged.append(un.name)
            continue
        if not candidates:
            continue
        rng = np.random.default_rng([seed, _TASK_INDEX[task.name], k])
        pairs = task.pairs(n, k, n_pairs, rng) if make_pairs is None else make_pairs(task, k, n_pairs, rng)
        run = runner(pairs)
        valid = (run.clean_pred == pairs.clean_tokens).all(1) & (run.store_pred == pairs.store_tokens).all(1)
        cell.pairs, cell.valid = len(pairs), int(valid.sum())
        cell.example = {"store": pairs.store.question_string(0), "clean": pairs.clean.question_string(0),
                        "clean_answer": pairs.clean.answer_string(0),
                        "expected": tokens_to_string(pairs.expected_tokens[0]),
                        "judged": _judged(pairs)}
        weak_tag = _weak_tag(task, k, n)
        judge = _Judge(run, pairs, valid, rule, weak_counts=task.weak and weak != "never",
                       stages=stage_ends(valid, rule) if sequential else [len(pairs)])
        singles = [(un.node,) for un in candidates if task.prereq.covers([un], k, layout, min_pct=min_pct)]
        groups = _groups(candidates, task, k, layout, min_pct, max_group) if pair_search else []
        tried = judge.trials(singles + groups, out, task.name, k, tag)
        if pair_search and partners:  # the second round: who has a partner depends on the first's verdicts
            done = {node for t in tried if t.passes(rule, "strong") for node in t.nodes}
            groups = _partner_pairs([un for un in candidates if un.node not in done], out, spec)
            tried += judge.trials(groups, out, task.name, k, tag)
        any_strong = any(t.passes(rule, "strong") for t in tried)
        for t in tried:
            added = None
            if t.passes(rule, "strong"):
                added = tag
            elif (task.weak and t.passes(rule, "weak")
                  and (weak == "always" or (weak == "fallback" and not any_strong))):
                added = weak_tag
            if added is not None:
                for node in t.nodes:
                    if node in out:
                        out.get(node).add(Tag(Major.ALGO, added))
                cell.tagged.append(t.name)
            trials.append(dataclasses.replace(t, tagged=added))
    if progress is not None:
        progress(len(work), len(work), "done")
    drop_lone_attention_facts(out)
    settings = {"model": getattr(spec, "name", None), "n_digits": n, "pairs": n_pairs, "seed": seed,
                "weak": weak, "pair_search": pair_search, "max_group": max_group, "partners": partners,
                "min_attn_pct": min_pct, "sequential": sequential,
                "tasks": [t.name for t in tasks]}
    return SearchResult(out, trials, cells, rule, settings)


class _Judge:
    """(strong, weak) counts of patched node sets over one cell's pairs, judged in stages (a sequential test):
    each stage patches, on its block of pairs, only the sets of trials whose verdict is not settled yet; each
    set is run once per stage. With a runner that cannot be cut into rows (`rows`), one stage."""

    def __init__(self, run: Runner, pairs: Pairs, valid: np.ndarray, rule: Rule, *, weak_counts: bool,
                 stages: Sequence[int]):
        self.run, self.pairs, self.valid, self.rule, self.weak_counts = run, pairs, valid, rule, weak_counts
        self.ends = list(stages) if hasattr(run, "rows") else [len(pairs)]
        self.judged = [int(valid[:end].sum()) for end in self.ends]  # valid pairs judged after each stage
        self.counts: dict[frozenset[Node], list[tuple[int, int]]] = {}  # cumulative (strong, weak) per stage

    def trials(self, node_sets: Sequence[tuple[Node, ...]], useful: NodeList, task: str, k: int,
               tag: str) -> list[Trial]:
        """A trial per node set (a group's with its members left out), each stopped at the first stage that
        settles its verdicts: the strong one, and the weak one where it can still tag."""
        out: list[Trial | None] = [None] * len(node_sets)
        pending = dict(enumerate(node_sets))
        for stage in range(len(self.ends)):
            self._run([s for nodes in pending.values() for s in _judged_sets(nodes)], stage)
            for i, nodes in list(pending.items()):
                trial = self._trial(nodes, stage, useful, task, k, tag)
                if stage == len(self.ends) - 1 or self._settled(trial):
                    out[i] = trial
                    del pending[i]
        return out

    def _settled(self, trial: Trial) -> bool:
        if not trial.settled(self.rule, "strong"):
            return False
        if trial.passes(self.rule, "strong") or not self.weak_counts:
            return True
        return trial.settled(self.rule, "weak")

    def _trial(self, nodes: tuple[Node, ...], stage: int, useful: NodeList, task: str, k: int, tag: str) -> Trial:
        strong, weak_hits = self.counts[frozenset(nodes)][stage]
        without = tuple(self.counts[frozenset(s)][stage] for s in _judged_sets(nodes)[1:])
        return Trial(nodes, task, k, tag, self.judged[stage], strong, weak_hits, without=without,
                     partners=tuple(x for x in nodes if x not in useful) if len(nodes) > 1 else (),
                     pairs_valid=self.judged[-1])

    def _run(self, node_sets: Iterable[tuple[Node, ...]], stage: int) -> None:
        """Patch every set not judged at `stage` yet on that stage's block of pairs (in one `patched_many` call
        where the runner has one). A set reaching a stage has been judged at every earlier one."""
        todo = list({frozenset(nodes): nodes for nodes in node_sets
                     if len(self.counts.get(frozenset(nodes), ())) == stage}.items())
        if not todo:
            return
        rows = slice(self.ends[stage - 1] if stage else 0, self.ends[stage])
        run = self.run if len(self.ends) == 1 else self.run.rows(rows)
        patched_many = getattr(run, "patched_many", None)
        sets = [list(nodes) for _, nodes in todo]
        preds = patched_many(sets) if patched_many is not None else [run.patched(nodes) for nodes in sets]
        for (key, _), pred in zip(todo, preds):
            strong, weak_hits = _judge(pred, self.pairs, self.valid, rows)
            before = self.counts.setdefault(key, [])
            s0, w0 = before[-1] if before else (0, 0)
            before.append((s0 + strong, w0 + weak_hits))


def _judged_sets(nodes: tuple[Node, ...]) -> list[tuple[Node, ...]]:
    """The sets a trial judges: a single node; a group and the group with each member left out."""
    return [nodes] if len(nodes) == 1 else [nodes] + [tuple(x for x in nodes if x != m) for m in nodes]


def _groups(candidates: list[UsefulNode], task: SubTask, k: int, layout, min_pct: int,
            max_size: int) -> list[tuple[Node, ...]]:
    """Every set of 2..max_size candidate heads at one position (any layers) whose layer-0 members together
    attend what the task needs, in position then node order."""
    by_position: dict[int, list[UsefulNode]] = {}
    for un in candidates:
        if un.node.is_head:
            by_position.setdefault(un.node.position, []).append(un)
    out = []
    for position in sorted(by_position):
        heads = sorted(by_position[position], key=lambda un: (un.node.layer, un.node.num))
        for size in range(2, max_size + 1):
            out += [tuple(un.node for un in group) for group in itertools.combinations(heads, size)
                    if task.prereq.covers(list(group), k, layout, min_pct=min_pct)]
    return out


def _partner_pairs(candidates: list[UsefulNode], useful: NodeList, spec) -> list[tuple[Node, ...]]:
    """Each candidate head with each head in a deeper layer at its position that is not a useful node (layer-0
    heads are left out: what they attend is only known for useful nodes)."""
    out = []
    for un in candidates:
        if not un.node.is_head:
            continue
        p = un.node.position
        for layer in range(1, spec.n_layers):
            for head in range(spec.n_heads):
                other = Node(p, layer, False, head)
                if other not in useful:
                    out.append(tuple(sorted((un.node, other))))
    return out


def drop_lone_attention_facts(nodes: NodeList) -> None:
    """A node whose only Algo tags are OPR or SGN (not both) loses them: attending is not a purpose."""
    for un in nodes:
        values = set(un.values(Major.ALGO))
        if values and values <= set(ATTENTION_FACTS) and values != set(ATTENTION_FACTS):
            un.remove(Major.ALGO)


def search_model(model, nodes: NodeList, **kwargs) -> SearchResult:
    """`search` with the intervention engine on `model` (its spec gives the digits and operation mix)."""
    return search(nodes, model.spec, engine_runner(model), **kwargs)
