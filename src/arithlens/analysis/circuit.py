"""Circuit discovery: greedy pruning of heads and MLP layers (ACDC style, over nodes rather than edges) to a
small set whose faithfulness stays >= a target on every qtype, checked on held-out questions, with the
faithfulness each circuit node costs when it alone is removed (minimality).

Each candidate removal is one forward pass with masks, started where the removal first changes anything:
a node at position p in layer l leaves every position before p and every layer below l as the current
circuit has them, so the pass starts from the current circuit's cached residual at layer l and its cached
keys and values of the earlier positions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
from torch import Tensor

from arithlens.analysis.faithfulness import (
    FAITHFULNESS_SEED,
    REFERENCE_QUESTIONS,
    STREAM_EVAL,
    STREAM_MINIMALITY,
    STREAM_REFERENCE,
    STREAM_SEARCH,
    KeepMask,
    all_nodes,
    fresh_questions,
    mean_values,
    measure_faithfulness,
    reference_questions,
    rng_for,
    supported_qtypes,
    targets_of,
)
from arithlens.analysis.memory import release_freed_memory
from arithlens.analysis.nodes import Node
from arithlens.analysis.stats import wilson
from arithlens.arith.questions import QuestionBatch
from arithlens.errors import ArithLensError
from arithlens.interventions import Engine
from arithlens.model.spec import ModelSpec
from arithlens.model.transformer import HookedTransformer
from arithlens.results.circuits import Circuit, Faithfulness, NodeCost  # noqa: F401  (the result types, re-exported)

TARGET = 0.99  # faithfulness asked of the circuit, exact per qtype
SEARCH_QUESTIONS = 600  # per qtype: the search set and the minimality set
HELD_OUT_QUESTIONS = 10_000  # per qtype: the validation

Progress = Callable[[str, int, int], None]  # (stage, done, total)
# (spec, count per qtype, rng, questions to leave out) -> questions; `fresh_questions` by default
QuestionSource = Callable[[ModelSpec, int, np.random.Generator, QuestionBatch | None], QuestionBatch]


def reverse_topological(nodes: Iterable[Node]) -> list[Node]:
    """Later layers first, the MLP after the heads of its layer, later positions first: every node comes
    before the nodes it reads from."""
    return sorted(nodes, key=lambda n: (-n.layer, -int(n.is_mlp), -n.position, -n.num))


class Pruner:
    """One question set and fixed ablation values; the current node set's run is the base of an intervention
    `Engine`, so each candidate removal recomputes only the positions and layers it can change."""

    def __init__(self, model: HookedTransformer, questions: QuestionBatch, values: Mapping[str, Tensor],
                 nodes: Iterable[Node], *, target: float = TARGET):
        self.model = model
        self.spec = spec = model.spec
        self.questions = questions
        self.values = values
        self.target = target
        self.answer = spec.layout.answer_logit_positions
        self.tokens = questions.torch_tokens(str(model.device))
        self.targets = targets_of(self.tokens, spec)
        self.masks = [(qt.name, questions.qtype == qt) for qt in supported_qtypes(spec)]
        self.passes = 0
        self._pending = None
        self.set(nodes)

    def set(self, nodes: Iterable[Node]) -> None:
        """Make `nodes` the current set: one full pass, which later candidates start from."""
        self.nodes = set(nodes)
        self.keep = KeepMask.of(self.spec, self.nodes, self.model.device)
        self.engine = Engine(self.model, self.tokens, base=self.keep.ablations(self.spec, self.values))
        self.passes += 1
        self.wrong = (self.engine.clean_logits.argmax(-1) != self.targets).cpu().numpy()

    def without(self, removed: Sequence[Node]) -> np.ndarray:
        """(batch, n_answer) wrong answer tokens with `removed` taken out of the current set as well;
        `accept()` then makes that the current set without another pass."""
        self._pending = None
        if not removed:
            return self.wrong.copy()
        nodes = self.nodes - set(removed)
        keep, run, wrong = self._rerun(nodes, removed, keep_run=True)
        self._pending = (nodes, keep, run, wrong)
        return wrong

    def with_added(self, added: Sequence[Node]) -> np.ndarray:
        """(batch, n_answer) wrong answer tokens with `added` running clean besides the current set; the current
        set stays as it is (nothing to `accept`: a set that grows is made current with `set`)."""
        self._pending = None
        if not added:
            return self.wrong.copy()
        return self._rerun(self.nodes | set(added), added, keep_run=False)[2]

    def _rerun(self, nodes: set[Node], changed: Sequence[Node], *, keep_run: bool
               ) -> tuple[KeepMask, tuple | None, np.ndarray]:
        """(keep mask of `nodes`, what `Engine.splice` needs with `keep_run` (else None), wrong answer tokens) of the
        set `nodes`, which differs from the current one by `changed`: a partial rerun from the lowest changed layer
        and position (nothing before either can change)."""
        keep = KeepMask.of(self.spec, nodes, self.model.device)
        layer = min(n.layer for n in changed)
        pos = min(n.position for n in changed)
        if pos > self.answer.stop - 1:  # reaches no answer logit
            return keep, None, self.wrong.copy()
        ablations = keep.ablations(self.spec, self.values)
        out = self.engine.rerun([a for a in ablations if a.layer >= layer], layer, pos, keep=keep_run)
        logits, cache = out if keep_run else (out, None)
        self.passes += 1
        wrong = self.wrong.copy()
        first = max(pos, self.answer.start) - self.answer.start
        wrong[:, first:] = (logits.argmax(-1) != self.targets[:, first:]).cpu().numpy()
        return keep, (ablations, layer, pos, logits, cache) if keep_run else None, wrong

    def accept(self) -> None:
        """Make the last `without` the current set: its run is spliced into the engine's base run."""
        if self._pending is None:
            raise ArithLensError("nothing to accept: call without() first")
        nodes, keep, rerun, wrong = self._pending
        if rerun is not None:
            self.engine.splice(*rerun)
        self.nodes, self.keep, self.wrong = nodes, keep, wrong
        self._pending = None

    def exact(self, wrong: np.ndarray) -> dict[str, float]:
        right = ~wrong.any(1)
        return {name: float(right[m].mean()) for name, m in self.masks}

    def faithful(self, wrong: np.ndarray) -> bool:
        """Every qtype's exact accuracy is >= the target at 95% confidence (Wilson lower bound)."""
        right = ~wrong.any(1)
        return all(wilson(int(right[m].sum()), int(m.sum()))[0] >= self.target for _, m in self.masks)


def prune(pruner: Pruner, useful: Iterable[Node], progress: Progress | None = None) -> set[Node]:
    """Greedy pruning from every node: first whole positions (latest first), then single nodes in reverse
    topological order, the nodes outside the useful set before those in it. A removal stays when the set
    is still faithful on the pruner's questions; what remains is needed, alone or together."""
    spec = pruner.spec
    useful = set(useful)
    smallest = min(int(m.sum()) for _, m in pruner.masks)
    if wilson(smallest, smallest)[0] < pruner.target:
        raise ArithLensError(f"{smallest} search questions of a qtype cannot show {100 * pruner.target:g}% at 95% "
                             "confidence even when all are right: use more")
    if not pruner.faithful(pruner.wrong):
        raise ArithLensError(f"the whole model is below {100 * pruner.target:g}% on the search questions")
    for p in reversed(range(spec.n_ctx)):
        block = [n for n in pruner.nodes if n.position == p]
        if block and pruner.faithful(pruner.without(block)):
            pruner.accept()
        if progress is not None:
            progress("positions", spec.n_ctx - p, spec.n_ctx)
    order = (reverse_topological(n for n in pruner.nodes if n not in useful)
             + reverse_topological(n for n in pruner.nodes if n in useful))
    for k, node in enumerate(order):
        if pruner.faithful(pruner.without([node])):
            pruner.accept()
        if progress is not None:
            progress("nodes", k + 1, len(order))
    return set(pruner.nodes)


def node_costs(pruner: Pruner, progress: Progress | None = None) -> list[NodeCost]:
    """Each current node's cost: the circuit's exact accuracy per qtype without it alone."""
    base = pruner.exact(pruner.wrong)
    out = []
    nodes = sorted(pruner.nodes)
    for k, node in enumerate(nodes):
        exact = pruner.exact(pruner.without([node]))
        out.append(NodeCost(node.name, tuple(exact.items()), max(base[q] - exact[q] for q in exact)))
        if progress is not None:
            progress("minimality", k + 1, len(nodes))
    return out


def discover_circuit(
    model: HookedTransformer,
    useful: Iterable[Node],
    *,
    target: float = TARGET,
    search_questions: int = SEARCH_QUESTIONS,
    held_out_questions: int = HELD_OUT_QUESTIONS,
    seed: int = FAITHFULNESS_SEED,
    reference: int = REFERENCE_QUESTIONS,
    make_questions: QuestionSource = fresh_questions,
    progress: Progress | None = None,
) -> Circuit:
    """Prune to a circuit on `search_questions` fresh questions per qtype (mean ablation, per-position means
    of a mixed reference batch), measure each circuit node's cost on another such set, and validate the
    circuit and the useful set on `held_out_questions` per qtype that share no question with either."""
    if not 0 < target <= 1:
        raise ArithLensError(f"the target must be in (0, 1], not {target}")
    t0 = time.perf_counter()
    release_freed_memory()  # what the stage before (the useful sweep) freed: the pruner's run would come on top of it
    spec = model.spec
    useful = sorted(set(useful))
    values = mean_values(model, reference_questions(spec, reference, rng_for(seed, STREAM_REFERENCE)))
    search = make_questions(spec, search_questions, rng_for(seed, STREAM_SEARCH), None)
    pruner = Pruner(model, search, values, all_nodes(spec), target=target)
    circuit = prune(pruner, useful, progress)
    search_seconds = time.perf_counter() - t0
    search_exact = tuple(pruner.exact(pruner.wrong).items())
    passes = pruner.passes
    del pruner  # its engine (the search questions' cached run) is not needed again: free it before the next one
    release_freed_memory()  # and hand its pages back, so the next pruner's run does not come on top of them

    minimal_set = make_questions(spec, search_questions, rng_for(seed, STREAM_MINIMALITY), search)
    costs = node_costs(Pruner(model, minimal_set, values, circuit, target=target), progress)
    held_out_set = make_questions(spec, held_out_questions, rng_for(seed, STREAM_EVAL),
                                  QuestionBatch.concat([search, minimal_set]))
    held_out = measure_faithfulness(model, {"circuit": circuit, "useful": useful}, questions=held_out_set,
                                    seed=seed, reference=reference)
    return Circuit(spec.name, tuple(n.name for n in sorted(circuit)), tuple(n.name for n in useful), target, seed,
                   len(search), search_exact, passes, search_seconds, len(minimal_set), tuple(costs),
                   tuple(held_out.values()), time.perf_counter() - t0)
