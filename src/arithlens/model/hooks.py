"""Activation names in one place: TransformerLens's hook names (`blocks.0.attn.hook_z`), where a node lives,
and what a node writes to the residual stream. No other module spells a hook name.

`act_name("z", 0)` is TransformerLens's `get_act_name("z", 0)`; `node_site(node)` maps a head, MLP layer or
neuron to the hook that holds its output and the head / neuron index to pick there; `node_output` turns that
slice into the node's write to the residual stream (a head's `hook_z . W_O[head]`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

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


def act_names(name: str, n_layers: int) -> list[str]:
    """`act_name(name, layer)` for every layer, lowest first."""
    return [act_name(name, layer) for layer in range(n_layers)]


def block_site(name: str) -> str:
    """The name inside a block: `block_site("z")` -> `attn.hook_z` (what `split_name` returns as the site)."""
    if name not in _BLOCK:
        raise ArithLensError(f"unknown block activation {name!r}; expected one of {', '.join(sorted(_BLOCK))}")
    return _BLOCK[name]


_LAYER_RE = re.compile(r"blocks\.(\d+)\.(.+)")


def split_name(hook_name: str) -> tuple[int | None, str]:
    """`blocks.1.attn.hook_z` -> (1, "attn.hook_z"); a name outside the blocks -> (None, the name)."""
    m = _LAYER_RE.fullmatch(hook_name)
    return (int(m[1]), m[2]) if m else (None, hook_name)


# The hooks inside attention carry a head axis: a site there needs its head (P18L0H3), not just a position.
_PER_HEAD = frozenset(_BLOCK[n] for n in ("q", "k", "v", "z", "result", "attn_scores", "pattern"))


def is_per_head(hook_name: str) -> bool:
    """Whether `hook_name` (`blocks.0.attn.hook_z`) holds one slice per head."""
    return split_name(hook_name)[1] in _PER_HEAD


def site_at(site: str, layer: int) -> str:
    """The inverse of `split_name`: ("attn.hook_z", 1) -> `blocks.1.attn.hook_z`."""
    return f"blocks.{layer}.{site}"


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


def output_sites(n_layers: int) -> list[str]:
    """Every site a node's output lives at: each layer's `hook_z`, then each layer's `hook_post`."""
    return act_names("z", n_layers) + act_names("post", n_layers)


def node_slice(node, acts: torch.Tensor, positions: Sequence[int] | None = None) -> torch.Tensor:
    """The node's slice of its site's activation: acts (batch, pos, ...) -> (batch, d_site), d_site being d_head
    for a head, d_mlp for an MLP layer, 1 for a neuron. `positions`: the absolute positions `acts` covers
    (default 0..)."""
    i = node.position if positions is None else list(positions).index(node.position)
    if node.is_head:
        return acts[:, i, node.num]
    if node.is_neuron:
        return acts[:, i, node.num : node.num + 1]
    return acts[:, i]


def output_weight(model, node) -> torch.Tensor:
    """(d_site, d_model): the weights that write the node's slice into the residual stream (bias excluded)."""
    block = model.blocks[node.layer]
    if node.is_head:
        return block.attn.W_O[node.num]
    if node.is_neuron:
        return block.mlp.W_out[node.num : node.num + 1]
    return block.mlp.W_out


def node_output(model, node, acts: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """The node's write to the residual stream, (batch, d_site) -> (batch, d_model), bias excluded: a head's
    `hook_z . W_O[head]` (its `hook_result`), an MLP layer's `hook_post . W_out`. A numpy slice is multiplied
    in float64, a tensor in the weights' dtype."""
    w = output_weight(model, node)
    if isinstance(acts, np.ndarray):
        return acts @ w.detach().double().cpu().numpy()
    return acts @ w


__all__ = ["is_per_head", "NodeSite", "act_name", "act_names", "block_site", "node_output", "node_site", "node_slice",
           "output_sites", "output_weight", "site_at", "split_name"]
