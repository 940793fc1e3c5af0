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
                 graph=None, seed: int = FAITHFULNESS_SEED, chunk: int = 256, rows: int = 1024):
        from arithlens.analysis.edges.forward import ablation_values
        from arithlens.analysis.edges.graph import EdgeGraph

        self.model = model
        self.spec = spec = model.spec
        self.graph = EdgeGraph.build(spec) if graph is None else graph
        self.units = tuple(self.graph.names)
        self.questions = questions
        self.reference = reference
        self.seed = seed
        self.chunk = chunk  # questions per edge-masked forward
        self.rows = rows  # questions per block of resample values
        self.qtypes = tuple((qt.name, questions.qtype == qt) for qt in supported_qtypes(spec))
        self._tokens = questions.torch_tokens(str(model.device))
        self._reference_tokens = reference.torch_tokens(str(model.device))
        with torch.inference_mode():
            mean = ablation_values(model, self._reference_tokens, "mean")  # (1, senders, pos, d_model)
        self._values = {"mean": mean, "plain-mean": mean.mean(2, keepdim=True).expand_as(mean).contiguous(),
                        "zero": torch.zeros_like(mean)}

    def run(self, kept: Sequence[Collection[str] | None], ablation: Ablation) -> list[RunScores]:
        """Per-question scores of each kept edge set (None: the clean model, run as the plain forward: every edge
        kept changes nothing, at a seventh of the edge-masked forward's cost). Resample rows are drawn once for the
        whole question set; the senders' outputs on them are computed `rows` questions at a time, which bounds
        the memory of the (rows, senders, pos, d_model) values."""
        from arithlens.analysis.edges.forward import edge_forward, sender_outputs

        masks = [None if k is None else self.graph.mask(list(k)) for k in kept]
        answer = list(self.spec.layout.answer_logit_positions)
        draw = None
        if ablation.kind == "resample":
            rng = np.random.default_rng([self.seed, STREAM_DRAWS, ablation.draw])
            draw = torch.from_numpy(rng.integers(0, len(self._reference_tokens), size=len(self._tokens)))
        parts: list[list[RunScores]] = [[] for _ in masks]
        with torch.inference_mode():
            for start in range(0, len(self._tokens), self.rows):
                tokens = self._tokens[start : start + self.rows]
                targets = targets_of(tokens, self.spec)
                ablated = (self._values[ablation.kind] if draw is None
                           else sender_outputs(self.model, self._reference_tokens[draw[start : start + self.rows]]))
                for part, mask in zip(parts, masks):
                    if mask is None:
                        logits = self.model(tokens, logit_positions=answer)
                    elif draw is None and not bool(mask.any()):
                        # no edge kept and one ablated value for every question: every receiver reads only
                        # ablated values and biases, so the logits are the same for every question (tested)
                        one = edge_forward(self.model, self.graph, tokens[:1], ablated, mask, chunk=self.chunk)
                        logits = one.expand(len(tokens), *one.shape[1:])
                    else:
                        logits = edge_forward(self.model, self.graph, tokens, ablated, mask, chunk=self.chunk)
                    part.append(RunScores.of(logits, targets))
        return [RunScores.concat(p) for p in parts]
