"""A node circuit that stays faithful under resample ablation: the existing greedy pruning (`circuit.prune`),
run with resample values instead of means, over the search questions repeated once per resample draw so that
a removal must hold for every draw, not for one lucky set of replacement rows; then greedy add-back of nodes,
judged on other questions with a margin, until the Wilson lower bound of every qtype reaches the target."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from arithlens.analysis.circuit import TARGET, Pruner, QuestionSource, prune
from arithlens.results.circuits import RobustCircuit
from arithlens.analysis.faithfulness import (
    FAITHFULNESS_SEED, REFERENCE_QUESTIONS, STREAM_REFERENCE, STREAM_SEARCH, all_nodes, fresh_questions,
    reference_questions, resample_values, rng_for, supported_qtypes,
)
from arithlens.analysis.nodes import Node
from arithlens.analysis.stats import wilson
from arithlens.arith.questions import QuestionBatch
from arithlens.errors import ArithLensError
from arithlens.model.transformer import HookedTransformer

SEARCH_QUESTIONS = 600  # per qtype, before repeating them once per draw
SEARCH_DRAWS = 2
STREAM_SEARCH_DRAWS = 41  # rng stream of the search's resample rows (the card's draws use other streams)
# per qtype, before repeating them: the add-back's questions (none of the search's); at 1,000 a lower bound of
# 99% asks for 99.7% right, a margin over the target
REPAIR_QUESTIONS = 1_000
REPAIR_DRAWS = 2
STREAM_REPAIR, STREAM_REPAIR_DRAWS = 42, 43  # rng streams of the add-back's questions and resample rows

Progress = Callable[[str, int, int], None]


def repeated_with_draws(model: HookedTransformer, questions: QuestionBatch, reference: QuestionBatch, draws: int,
                        rng: np.random.Generator) -> tuple[QuestionBatch, dict[str, Tensor]]:
    """`questions` repeated `draws` times, and resample values giving each copy its own reference rows:
    {site: (draws * batch, pos, ...)}."""
    if draws < 1:
        raise ArithLensError(f"resample draws must be positive, not {draws}")
    tiled = QuestionBatch.concat([questions] * draws)
    rows = rng.integers(0, len(reference), size=len(tiled))
    return tiled, resample_values(model, reference, rows)


def resample_circuit(
    model: HookedTransformer,
    *,
    start: Iterable[Node] | None = None,
    prefer: Iterable[Node] = (),
    target: float = TARGET,
    search_questions: int = SEARCH_QUESTIONS,
    draws: int = SEARCH_DRAWS,
    seed: int = FAITHFULNESS_SEED,
    reference: int = REFERENCE_QUESTIONS,
    make_questions: QuestionSource = fresh_questions,
    progress: Progress | None = None,
) -> RobustCircuit:
    """Prune from `start` (default: every node) to a set that stays >= `target` exact per qtype at 95%
    confidence under resample ablation, on `search_questions` fresh questions per qtype times `draws` draws.
    Nodes outside `prefer` (e.g. the mean-ablation circuit) are tried for removal first. (The copies of a question
    are not independent samples, so the confidence bound is loose: validate on held-out questions, as the card does.)"""
    t0 = time.perf_counter()
    spec = model.spec
    ref = reference_questions(spec, reference, rng_for(seed, STREAM_REFERENCE))
    search = make_questions(spec, search_questions, rng_for(seed, STREAM_SEARCH), None)
    tiled, values = repeated_with_draws(model, search, ref, draws, rng_for(seed, STREAM_SEARCH_DRAWS))
    everything = all_nodes(spec)
    pruner = Pruner(model, tiled, values, everything if start is None else start, target=target)
    nodes = prune(pruner, prefer, progress)
    return RobustCircuit(spec.name, tuple(n.name for n in sorted(nodes)), len(everything), "resample", draws,
                         len(search), tuple(pruner.exact(pruner.wrong).items()), target, pruner.passes, seed,
                         time.perf_counter() - t0)


@dataclass(frozen=True)
class AddedNode:
    """One add-back step: the node added and, after it, each qtype's exact rate (the mean over draws) and its
    Wilson 95% lower bound over the distinct questions."""

    node: str
    exact: tuple[tuple[str, float], ...]
    lower: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict:
        return {"node": self.node, "exact": dict(self.exact), "lower": dict(self.lower)}


@dataclass(frozen=True)
class AddBack:
    """The add-back's result: the circuit it ends with, the nodes it added in order (with the rates after each:
    exact rate against size), and whether every qtype's lower bound reached the target."""

    circuit: RobustCircuit
    start: tuple[str, ...]  # the circuit it started from
    steps: tuple[AddedNode, ...]
    start_exact: tuple[tuple[str, float], ...]
    start_lower: tuple[tuple[str, float], ...]
    reached: bool

    def to_dict(self) -> dict:
        return {**self.circuit.to_dict(), "start": list(self.start), "added": [s.node for s in self.steps],
                "steps": [s.to_dict() for s in self.steps], "start_exact": dict(self.start_exact),
                "start_lower": dict(self.start_lower), "reached": self.reached}


def rates_over_draws(pruner: Pruner, wrong: np.ndarray, draws: int) -> tuple[dict[str, float], dict[str, float]]:
    """({qtype: exact rate averaged over the draws}, {qtype: its Wilson 95% lower bound}) for `wrong` over the
    pruner's questions (`draws` copies of one set, stacked). The bound counts each distinct question once: the
    copies share their question, so counting them apart would claim more confidence than they give."""
    right = ~wrong.any(1)
    exact, lower = {}, {}
    for name, mask in pruner.masks:
        n = int(mask.sum()) // draws
        exact[name] = float(right[mask].mean())
        lower[name] = wilson(exact[name] * n, n)[0]
    return exact, lower


def best_addition(pruner: Pruner, questions: QuestionBatch, everything: Sequence[Node], draws: int,
                  progress: Progress | None = None, stage: str = "add-back") -> Node:
    """The node outside the pruner's set whose addition raises the lowest qtype's lower bound the most (then fixes
    the most questions; ties: the first in `everything`), screened on the rows the set now gets wrong only: each
    candidate is a partial rerun of those rows (a few percent of them), counting rows it fixes. Rows it would break
    are not seen here; the caller's full pass after adding it counts them (the screen only orders the work)."""
    failing = pruner.wrong.any(1)
    screen = Pruner(pruner.model, questions.select(failing), {k: v[torch.from_numpy(failing)]
                                                             for k, v in pruner.values.items()}, pruner.nodes)
    right = {name: int((~failing[m]).sum()) for name, m in pruner.masks}
    total = {name: int(m.sum()) for name, m in pruner.masks}
    candidates = [n for n in everything if n not in pruner.nodes]
    best, best_key = None, None
    for k, node in enumerate(candidates):
        fixed = ~screen.with_added([node]).any(1)
        counts = {name: right[name] + int(fixed[m].sum()) for name, m in screen.masks}
        bound = min(wilson(counts[q] / draws, total[q] // draws)[0] for q in total)
        key = (bound, int(fixed.sum()))
        if best_key is None or key > best_key:
            best, best_key = node, key
        if progress is not None:
            progress(stage, k + 1, len(candidates))
    pruner.passes += screen.passes
    return best


def add_back(
    model: HookedTransformer,
    nodes: Iterable[Node],
    *,
    target: float = TARGET,
    repair_questions: int = REPAIR_QUESTIONS,
    draws: int = REPAIR_DRAWS,
    seed: int = FAITHFULNESS_SEED,
    reference: int = REFERENCE_QUESTIONS,
    exclude: QuestionBatch | None = None,
    make_questions: QuestionSource = fresh_questions,
    max_steps: int | None = None,
    progress: Progress | None = None,
) -> AddBack:
    """Greedy add-back under resample ablation: while some qtype's Wilson lower bound (`rates_over_draws`) on
    `repair_questions` fresh questions per qtype (none of `exclude`, e.g. the pruning's search set) times
    `draws` resample draws is below `target`, add the node outside the circuit that raises the lowest bound the
    most (`best_addition`). Stops at the target, after `max_steps` additions, or when every node is in (then
    `reached` says whether the whole model passes)."""
    if not 0 < target <= 1:
        raise ArithLensError(f"the target must be in (0, 1], not {target}")
    t0 = time.perf_counter()
    spec = model.spec
    everything = all_nodes(spec)
    start = set(nodes)
    unknown = sorted(start - set(everything))
    if unknown:
        raise ArithLensError(f"node {unknown[0]} is not a head or MLP layer of {spec.name}")
    ref = reference_questions(spec, reference, rng_for(seed, STREAM_REFERENCE))
    questions = make_questions(spec, repair_questions, rng_for(seed, STREAM_REPAIR), exclude)
    smallest = min(int((questions.qtype == qt).sum()) for qt in supported_qtypes(spec))
    if wilson(smallest, smallest)[0] < target:
        raise ArithLensError(f"{smallest} questions of a qtype cannot show {100 * target:g}% at 95% confidence even "
                             "when all are right: use more")
    tiled, values = repeated_with_draws(model, questions, ref, draws, rng_for(seed, STREAM_REPAIR_DRAWS))
    pruner = Pruner(model, tiled, values, start, target=target)
    start_exact, start_lower = rates_over_draws(pruner, pruner.wrong, draws)
    exact, lower = start_exact, start_lower
    steps: list[AddedNode] = []
    while min(lower.values()) < target and len(pruner.nodes) < len(everything) and (
            max_steps is None or len(steps) < max_steps):
        best = best_addition(pruner, tiled, everything, draws, progress, f"add-back step {len(steps) + 1}")
        pruner.set(pruner.nodes | {best})  # one full pass: the real rates, fixed and broken rows alike
        exact, lower = rates_over_draws(pruner, pruner.wrong, draws)
        steps.append(AddedNode(best.name, tuple(exact.items()), tuple(lower.items())))
    circuit = RobustCircuit(spec.name, tuple(n.name for n in sorted(pruner.nodes)), len(everything), "resample",
                            draws, len(questions), tuple(exact.items()), target, pruner.passes, seed,
                            time.perf_counter() - t0)
    return AddBack(circuit, tuple(n.name for n in sorted(start)), tuple(steps), tuple(start_exact.items()),
                   tuple(start_lower.items()), min(lower.values()) >= target)
