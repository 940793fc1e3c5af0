"""The hook vocabulary (model/hooks.py): names, a node's site and slice, and a node's output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arithlens.analysis.nodes import Node
from arithlens.arith import uniform
from arithlens.errors import ArithLensError
from arithlens.model import HookedTransformer, ModelSpec
from arithlens.model.hooks import (
    act_name, act_names, block_site, node_output, node_site, node_slice, output_sites, site_at, split_name,
)

SPEC = ModelSpec.parse("mix_d3_l2_h2_t1K_s000001", d_model=32, d_head=8, d_mlp=48)


@pytest.fixture(scope="module")
def model():
    return HookedTransformer(SPEC, seed=5).eval()


def test_names_are_transformer_lens_spellings_and_split_back():
    assert act_names("resid_pre", 2) == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]
    assert output_sites(2) == ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z", "blocks.0.mlp.hook_post",
                               "blocks.1.mlp.hook_post"]
    assert block_site("pattern") == "attn.hook_pattern"
    assert split_name("blocks.1.attn.hook_z") == (1, "attn.hook_z") and split_name("hook_embed") == (None, "hook_embed")
    assert site_at(*reversed(split_name("blocks.1.mlp.hook_post"))) == "blocks.1.mlp.hook_post"
    with pytest.raises(ArithLensError, match="unknown block activation"):
        block_site("embed")


def test_every_node_kind_has_one_site():
    assert node_site(Node(9, 1, False, 1)) == (act_name("z", 1), 1, None)
    assert node_site(Node(9, 0, True, -1)) == (act_name("post", 0), None, None)
    assert node_site(Node(9, 0, True, 7)) == (act_name("post", 0), None, 7)


@torch.no_grad()
def test_a_heads_output_is_its_hook_result_and_an_mlps_is_its_mlp_out_without_bias(model):
    tokens = uniform(3, 40, np.random.default_rng(0)).torch_tokens()
    names = [act_name(n, 1) for n in ("z", "result", "post", "mlp_out")]
    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens, names)
    head, mlp = Node(9, 1, False, 1), Node(9, 1, True, -1)
    z = node_slice(head, cache[node_site(head).hook])  # (batch, d_head)
    assert z.shape == (40, SPEC.d_head)
    torch.testing.assert_close(node_output(model, head, z), cache[act_name("result", 1)][:, 9, 1],
                               rtol=1e-5, atol=1e-5)
    post = node_slice(mlp, cache[node_site(mlp).hook])
    mlp_out = cache[act_name("mlp_out", 1)][:, 9] - model.blocks[1].mlp.b_out
    torch.testing.assert_close(node_output(model, mlp, post), mlp_out, rtol=1e-5, atol=1e-5)
    # numpy in, float64 numpy out, the same numbers
    wide = node_output(model, head, z.double().numpy())
    assert wide.dtype == np.float64 and np.allclose(wide, cache[act_name("result", 1)][:, 9, 1].numpy(), atol=1e-5)
    # one neuron: its activation times its row of W_out
    neuron = Node(9, 1, True, 3)
    one = node_output(model, neuron, node_slice(neuron, cache[node_site(neuron).hook]))
    torch.testing.assert_close(one, cache[act_name("post", 1)][:, 9, 3, None] * model.blocks[1].mlp.W_out[3])


def test_node_slice_reads_positions_relative_to_the_cached_span(model):
    acts = torch.arange(2 * 4 * 2 * 3, dtype=torch.float32).view(2, 4, 2, 3)  # (batch, pos 5..8, head, d_head)
    node = Node(7, 0, False, 1)
    assert torch.equal(node_slice(node, acts, range(5, 9)), acts[:, 2, 1])


def test_per_head_hooks_are_the_attention_hooks_with_a_head_axis():
    from arithlens.model.hooks import act_name, is_per_head

    assert all(is_per_head(act_name(n, 1)) for n in ("q", "k", "v", "z", "result", "attn_scores", "pattern"))
    assert not any(is_per_head(act_name(n, 1)) for n in ("resid_pre", "attn_out", "post", "pre", "mlp_out"))
    assert not is_per_head(act_name("embed"))
