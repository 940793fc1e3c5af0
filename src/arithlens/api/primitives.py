"""Primitives for going beyond the canned studies: a node's output, its PCA, a cached run, ablations."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from arithlens.api._checks import check_batch, check_model, check_node
from arithlens.arith.questions import QType, QuestionBatch
from arithlens.results import NodePCA
from arithlens.validate import check_count

if TYPE_CHECKING:
    import torch

    from arithlens.analysis.nodes import Node
    from arithlens.model.transformer import HookedTransformer


def node_output(model: HookedTransformer, node: str | Node, batch: QuestionBatch) -> np.ndarray:
    """The node's write to the residual stream on each question (batch, d_model), float64, bias excluded:
    a head's `hook_z . W_O[head]` (its `hook_result`), an MLP layer's `hook_post . W_out`."""
    import torch

    from arithlens.model.hooks import node_site

    check_model(model)
    node = check_node(model, node)
    check_batch(model, batch)
    site = node_site(node)
    block = model.blocks[node.layer]
    with torch.inference_mode():
        _, cache = model.run_with_cache(batch.torch_tokens(str(model.device)), [site.hook], logit_positions=[0])
        act = cache[site.hook][:, node.position]  # (batch, head, d_head) or (batch, d_mlp)
        if node.is_head:
            out = act[:, site.head] @ block.attn.W_O[site.head]  # (batch, d_model)
        elif node.is_neuron:
            out = act[:, site.neuron, None] * block.mlp.W_out[site.neuron]
        else:
            out = act @ block.mlp.W_out
        return out.double().cpu().numpy()


def pca(model: HookedTransformer, node: str | Node, batch: QuestionBatch, *, components: int = 2) -> NodePCA:
    """PCA of the node's output (`node_output`) on `batch`, every row with its question, answer, qtype and,
    for tricase batches, its T class and carry/borrow label (for colours and hover)."""
    from arithlens.analysis import stats

    check_model(model)
    node = check_node(model, node)
    check_batch(model, batch)
    # two axes at least: the result is drawn as a scatter of the first two
    check_count("components", components, low=2, high=min(len(batch), model.spec.d_model))
    out = node_output(model, node, batch)
    p = stats.pca(out, components)
    labels = batch.labels
    none = [None] * len(batch)
    name = node if isinstance(node, str) else node.name
    return NodePCA.from_dict({
        "node": name, "model": model.spec.name,
        "evr": [float(v) for v in p.explained_variance_ratio],
        "scores": np.round(p.scores, 6).tolist(),
        "question": [batch.question_string(i) for i in range(len(batch))],
        "answer": [batch.answer_string(i) for i in range(len(batch))],
        "qtype": [QType(int(q)).name for q in batch.qtype],
        "case": labels["tricase_case"].astype(int).tolist() if "tricase_case" in labels else none,
        "carry": labels["carry_out"].astype(int).tolist() if "carry_out" in labels else none,
        "digit": int(labels["tricase_digit"][0]) if "tricase_digit" in labels and len(batch) else None,
    })


def run_with_cache(model: HookedTransformer, batch: QuestionBatch | torch.Tensor, names: str | Iterable[str],
                   *, hooks: Sequence = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(logits (batch, pos, vocab), {hook name: activation}) of one run on a question batch or token tensor;
    names as TransformerLens spells them (`act_name("z", 0)` = `blocks.0.attn.hook_z`)."""
    import torch

    tokens = batch.torch_tokens(str(model.device)) if isinstance(batch, QuestionBatch) else batch.to(model.device)
    with torch.inference_mode():
        return model.run_with_cache(tokens, names, hooks=hooks)


def ablate(model: HookedTransformer, batch: QuestionBatch, interventions: Sequence) -> np.ndarray:
    """Which questions fail (bool per row) with `interventions` applied (built with `zero_ablate`,
    `mean_ablate`, `resample_ablate` or `patch_from`), computed by the engine (only what they change)."""
    from arithlens.interventions import Engine

    return Engine(model, batch).outcome(list(interventions)).fails
