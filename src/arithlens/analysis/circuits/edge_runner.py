"""`CircuitRunner` over edges: the edge graph's positioned edges as units, the edge-masked forward
(`analysis.edges.forward.edge_forward`) as the run, so the ablation card and MIB's curve score edge circuits
exactly as they score node circuits."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import torch

from arithlens.analysis.circuits.runner import STREAM_DRAWS, Ablation
from arithlens.analysis.faithfulness import FAITHFULNESS_SEED, RunScores, supported_qtypes, targets_of
from arithlens.arith.questions import QuestionBatch
from arithlens.model.transformer import HookedTransformer


class EdgeRunner:
    """Edges of `graph` (default: every edge of the model) kept or ablated over a fixed question set. An ablated
    edge carries its sender's mean output per position (`mean`), one mean over positions (`plain-mean`), a
    reference question's output drawn per question (`resample`), or zero."""

    def __init__(self, model: HookedTransformer, questions: QuestionBatch, reference: QuestionBatch, *,
                 graph=None, seed: int = FAITHFULNESS_SEED, chunk: int = 256):
        from arithlens.analysis.edges.forward import ablation_values
        from arithlens.analysis.edges.graph import EdgeGraph

        self.model = model
        self.spec = spec = model.spec
        self.graph = EdgeGraph.build(spec) if graph is None else graph
        self.units = tuple(self.graph.names)
        self.questions = questions
        self.reference = reference
        self.seed = seed
        self.chunk = chunk
        self.qtypes = tuple((qt.name, questions.qtype == qt) for qt in supported_qtypes(spec))
        self._tokens = questions.torch_tokens(str(model.device))
        self._reference_tokens = reference.torch_tokens(str(model.device))
        with torch.inference_mode():
            mean = ablation_values(model, self._reference_tokens, "mean")  # (1, senders, pos, d_model)
        self._values = {"mean": mean, "plain-mean": mean.mean(2, keepdim=True).expand_as(mean).contiguous(),
                        "zero": torch.zeros_like(mean)}

    def _ablated(self, ablation: Ablation) -> torch.Tensor:
        if ablation.kind != "resample":
            return self._values[ablation.kind]
        from arithlens.analysis.edges.forward import ablation_values

        rng = np.random.default_rng([self.seed, STREAM_DRAWS, ablation.draw])
        return ablation_values(self.model, self._reference_tokens, "resample", batch=len(self._tokens), rng=rng)

    def run(self, kept: Sequence[Collection[str] | None], ablation: Ablation) -> list[RunScores]:
        from arithlens.analysis.edges.forward import edge_forward

        targets = targets_of(self._tokens, self.spec)
        with torch.inference_mode():
            ablated = self._ablated(ablation)
            out = []
            for k in kept:
                mask = torch.ones(self.graph.n_edges) if k is None else self.graph.mask(list(k))
                logits = edge_forward(self.model, self.graph, self._tokens, ablated, mask, chunk=self.chunk)
                out.append(RunScores.of(logits, targets))
        return out
