"""Scores over nodes for MIB's curve, until attribution scores over edges land: each node's single-node
ablation effect (the drop in mean logit difference when it alone is ablated), or a discovered circuit's node
costs (the exact accuracy lost when one circuit node alone is removed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from torch import Tensor

from arithlens.analysis.circuit import Circuit
from arithlens.analysis.faithfulness import KeepMask, RunScores, all_nodes, targets_of
from arithlens.arith.questions import QuestionBatch
from arithlens.interventions import Engine
from arithlens.model.transformer import HookedTransformer


def single_node_scores(model: HookedTransformer, questions: QuestionBatch, values: Mapping[str, Tensor],
                       progress: Callable[[int, int], None] | None = None) -> dict[str, float]:
    """{node: mean logit difference of the clean model minus that with the node alone replaced by `values`}
    over `questions`; one partial rerun per node (the engine starts at the node's layer and position)."""
    spec = model.spec
    engine = Engine(model, questions)
    targets = targets_of(engine.tokens, spec)
    clean = float(RunScores.of(engine.clean_logits, targets).logit_diff.mean())
    everything = all_nodes(spec)
    out = {}
    for k, node in enumerate(everything):
        keep = KeepMask.of(spec, [n for n in everything if n != node], model.device)
        logits = engine.answer_logits(keep.ablations(spec, values))
        out[node.name] = clean - float(np.mean(RunScores.of(logits, targets).logit_diff))
        if progress is not None:
            progress(k + 1, len(everything))
    return out


def cost_scores(circuit: Circuit) -> dict[str, float]:
    """{circuit node: exact accuracy lost (largest over qtypes) when it alone is removed}; nodes outside the
    circuit have no score (0 when ranked)."""
    return {cost.node: cost.lost for cost in circuit.minimality}
