"""A node circuit that stays faithful under resample ablation: the existing greedy pruning (`circuit.prune`),
run with resample values instead of means, over the search questions repeated once per resample draw so that
a removal must hold for every draw, not for one lucky set of replacement rows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np
from torch import Tensor

from arithlens.analysis.circuit import TARGET, Pruner, QuestionSource, prune
from arithlens.results.circuits import RobustCircuit
from arithlens.analysis.faithfulness import (
    FAITHFULNESS_SEED, REFERENCE_QUESTIONS, STREAM_REFERENCE, STREAM_SEARCH, all_nodes, fresh_questions,
    reference_questions, resample_values, rng_for,
)
from arithlens.analysis.nodes import Node
from arithlens.arith.questions import QuestionBatch
from arithlens.errors import ArithLensError
from arithlens.model.transformer import HookedTransformer

SEARCH_QUESTIONS = 600  # per qtype, before repeating them once per draw
SEARCH_DRAWS = 2
STREAM_SEARCH_DRAWS = 41  # rng stream of the search's resample rows (the card's draws use other streams)

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
