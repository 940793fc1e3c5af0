"""The small interface every circuit is scored through: the units a circuit is a subset of (nodes today,
edges when they land) and a runner that scores the model with only a kept subset running, under an ablation.

`NodeRunner` is the node implementation, on the existing engine (`faithfulness.run_masked`); an edge runner
needs only `units`, `qtypes` and `run` with the same meaning.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from arithlens.analysis.faithfulness import (
    FAITHFULNESS_SEED, KeepMask, RunScores, all_nodes, mean_values, run_masked, supported_qtypes,
)
from arithlens.analysis.nodes import Node
from arithlens.arith.questions import QuestionBatch
from arithlens.errors import ArithLensError
from arithlens.model.transformer import HookedTransformer

# "mean" is the project's mean: per position, over a reference batch (MIB's "mean-positional");
# "plain-mean" is one mean over every position (MIB's "mean").
ABLATION_KINDS = ("mean", "plain-mean", "resample", "zero")
ABLATION_TEXT = {
    "mean": "mean per position", "plain-mean": "one mean over all positions",
    "resample": "resample (another question's activation)", "zero": "zero",
}
STREAM_DRAWS = 40  # rng stream of the resample draws: np.random.default_rng([seed, STREAM_DRAWS, draw])


@dataclass(frozen=True)
class Ablation:
    """What replaces a unit outside the circuit; `draw` numbers independent resample draws (0 for the rest)."""

    kind: str
    draw: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ABLATION_KINDS:
            raise ArithLensError(f"ablation {self.kind!r} is not one of {', '.join(ABLATION_KINDS)}")
        if self.draw < 0 or (self.draw and self.kind != "resample"):
            raise ArithLensError(f"only resample ablation has draws (not {self.kind} draw {self.draw})")

    @property
    def label(self) -> str:
        """`mean`, `zero`, `resample#1` (draws numbered from 1 for people)."""
        return f"{self.kind}#{self.draw + 1}" if self.kind == "resample" else self.kind

    @classmethod
    def parse(cls, label: str) -> Ablation:
        kind, _, draw = label.partition("#")
        try:
            return cls(kind, int(draw) - 1 if draw else 0)
        except ValueError:
            raise ArithLensError(f"ablation label {label!r} is not KIND or resample#N") from None


def card_ablations(draws: int = 2) -> tuple[Ablation, ...]:
    """The ablation card's columns: mean per position, one mean, `draws` resample draws, zero."""
    if draws < 1:
        raise ArithLensError(f"resample draws must be positive, not {draws}")
    return (Ablation("mean"), Ablation("plain-mean"), *(Ablation("resample", d) for d in range(draws)),
            Ablation("zero"))


class CircuitRunner(Protocol):
    """Scores the model over a fixed question set with only `kept` units running, everything else ablated."""

    units: tuple[str, ...]  # every unit (node or edge name): a circuit is a subset
    qtypes: tuple[tuple[str, np.ndarray], ...]  # (qtype name, (batch,) bool rows of that qtype)

    def run(self, kept: Sequence[Collection[str] | None], ablation: Ablation) -> list[RunScores]:
        """Per-question scores of each kept set (None: the clean model) under `ablation`; every set in one
        call shares the ablation values (for resample: the same drawn rows)."""
        ...


def plain_mean(values: Tensor) -> Tensor:
    """(1, pos, ...) per-position means -> the one mean over positions, repeated at every position."""
    return values.mean(1, keepdim=True).expand_as(values).contiguous()


class NodeRunner:
    """`CircuitRunner` over nodes (every head and MLP layer at every position) of one model."""

    def __init__(self, model: HookedTransformer, questions: QuestionBatch, reference: QuestionBatch, *,
                 seed: int = FAITHFULNESS_SEED, chunk: int = 2048):
        self.model = model
        self.spec = spec = model.spec
        self.questions = questions
        self.reference = reference
        self.seed = seed
        self.chunk = chunk
        self.units = tuple(n.name for n in all_nodes(spec))
        self._known = set(self.units)
        self.qtypes = tuple((qt.name, questions.qtype == qt) for qt in supported_qtypes(spec))
        self._means = mean_values(model, reference)  # {site: (1, pos, ...)}
        self._values = {
            "mean": self._means,
            "plain-mean": {k: plain_mean(v) for k, v in self._means.items()},
            "zero": {k: torch.zeros_like(v) for k, v in self._means.items()},
        }

    def keep_mask(self, kept: Collection[str]) -> KeepMask:
        unknown = sorted(set(kept) - self._known)
        if unknown:
            raise ArithLensError(f"unknown node {unknown[0]!r}: not a head or MLP layer of {self.spec.name}")
        return KeepMask.of(self.spec, [Node.for_model(n, self.spec) for n in kept], self.model.device)

    def run(self, kept: Sequence[Collection[str] | None], ablation: Ablation) -> list[RunScores]:
        keeps = [None if k is None else self.keep_mask(k) for k in kept]
        if ablation.kind == "resample":
            rng = np.random.default_rng([self.seed, STREAM_DRAWS, ablation.draw])
            return run_masked(self.model, self.questions, keeps, ablation="resample", reference=self.reference,
                              rng=rng, chunk=self.chunk)
        return run_masked(self.model, self.questions, keeps, ablation="mean", means=self._values[ablation.kind],
                          chunk=self.chunk)
