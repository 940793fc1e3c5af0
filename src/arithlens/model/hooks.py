"""Activation names in one place: TransformerLens's hook names (`blocks.0.attn.hook_z`) and where a node lives.

`act_name("z", 0)` is TransformerLens's `get_act_name("z", 0)`; `node_site(node)` maps a head, MLP layer or
neuron to the hook that holds its output and the head / neuron index to pick there.
"""

from __future__ import annotations

from typing import NamedTuple

from arithlens.errors import ArithLensError

# short name -> the name inside block l (TransformerLens's spellings and aliases)
_BLOCK = {
    "resid_pre": "hook_resid_pre", "resid_mid": "hook_resid_mid", "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out",
    "q": "attn.hook_q", "k": "attn.hook_k", "v": "attn.hook_v", "z": "attn.hook_z", "result": "attn.hook_result",
    "attn_scores": "attn.hook_attn_scores", "scores": "attn.hook_attn_scores", "attn": "attn.hook_pattern",
    "pattern": "attn.hook_pattern", "pre": "mlp.hook_pre", "post": "mlp.hook_post",
    "scale_ln1": "ln1.hook_scale", "normalized_ln1": "ln1.hook_normalized",
    "scale_ln2": "ln2.hook_scale", "normalized_ln2": "ln2.hook_normalized",
}
_GLOBAL = {"embed": "hook_embed", "pos_embed": "hook_pos_embed"}


def act_name(name: str, layer: int | None = None) -> str:
    """The full hook name: `act_name("z", 0)` -> `blocks.0.attn.hook_z`; `act_name("embed")` -> `hook_embed`.

    Full names pass through (`act_name("blocks.1.mlp.hook_post")`)."""
    if name.startswith(("blocks.", "hook_")) or name.startswith("ln_final."):
        return name
    if name in _GLOBAL:
        return _GLOBAL[name]
    if name not in _BLOCK:
        raise ArithLensError(f"unknown activation {name!r}; expected one of {', '.join(sorted(_BLOCK | _GLOBAL))}")
    if layer is None:
        raise ArithLensError(f"activation {name!r} lives in a block: give its layer")
    return f"blocks.{layer}.{_BLOCK[name]}"


class NodeSite(NamedTuple):
    """Where a node's output lives: the hook, and the head or neuron index there (None: the whole slice)."""

    hook: str
    head: int | None = None
    neuron: int | None = None


def node_site(node) -> NodeSite:
    """A head's `hook_z` (its head index), an MLP layer's `hook_post`, a neuron's `hook_post` (its index)."""
    if node.is_head:
        return NodeSite(act_name("z", node.layer), head=node.num)
    if node.is_neuron:
        return NodeSite(act_name("post", node.layer), neuron=node.num)
    return NodeSite(act_name("post", node.layer))


__all__ = ["NodeSite", "act_name", "node_site"]
