"""Numeric parity with TransformerLens 3.x (skipped without the `tl` extra), and reference-shape `.pth` files."""

import pytest
import torch

from arithlens.errors import CheckpointError
from arithlens.model import HookedTransformer, ModelSpec, from_transformer_lens, load_checkpoint, to_transformer_lens

SMALL = ModelSpec.parse("ins1_mix_d6_l3_h4_t40K_s372001", d_model=64, d_head=16)
REFERENCE = ModelSpec.parse("ins1_mix_d6_l3_h4_t40K_s372001")  # d_model 510, d_head 170, d_mlp 2040
pytestmark = pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated:DeprecationWarning")
COMPARED = ["blocks.0.attn.hook_z", "blocks.2.attn.hook_z", "blocks.0.attn.hook_pattern", "blocks.2.attn.hook_pattern"]


@pytest.fixture(scope="module")
def tl():
    tl = pytest.importorskip("transformer_lens")
    if not hasattr(tl, "HookedTransformer"):
        pytest.skip("this transformer-lens has no HookedTransformer (4.x)")
    return tl


def tokens_for(spec, batch=16):
    return torch.randint(0, 15, (batch, spec.n_ctx), generator=torch.Generator().manual_seed(5))


def random_model(spec):
    """Random weights everywhere, LayerNorm and biases included, so no parameter is trivially 0 or 1."""
    model = HookedTransformer(spec, seed=123)
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.rsplit(".", 1)[-1].startswith("W_"):
                p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    return model


@pytest.mark.parametrize("spec", [SMALL, REFERENCE], ids=["small", "reference"])
def test_logits_hook_z_and_pattern_match_transformer_lens(tl, spec):
    ours = random_model(spec)
    theirs = to_transformer_lens(ours)
    assert isinstance(theirs, tl.HookedTransformer)
    tokens = tokens_for(spec)
    with torch.no_grad():
        logits, cache = ours.run_with_cache(tokens, names=COMPARED)
        tl_logits, tl_cache = theirs.run_with_cache(tokens, names_filter=COMPARED)
        fast = ours(tokens)
    torch.testing.assert_close(logits, tl_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast, tl_logits, atol=1e-5, rtol=0)
    for name in COMPARED:
        torch.testing.assert_close(cache[name], tl_cache[name], atol=1e-5, rtol=0)


def test_same_seed_draws_the_same_initial_weights_as_transformer_lens(tl):
    from arithlens.model import tl_config

    theirs = tl.HookedTransformer(tl_config(SMALL))
    ours = HookedTransformer(SMALL)
    for key, value in ours.state_dict().items():
        assert torch.equal(value, theirs.state_dict()[key]), key


def test_round_trip_through_transformer_lens_keeps_every_weight(tl):
    ours = random_model(SMALL)
    back = from_transformer_lens(to_transformer_lens(ours))
    assert back.spec.n_layers == 3 and back.spec.d_head == 16
    for key, value in ours.state_dict().items():
        assert torch.equal(value, back.state_dict()[key]), key


def test_reference_shape_pth_saved_by_transformer_lens_loads_with_identical_logits(tl, tmp_path):
    from arithlens.model import tl_config

    theirs = tl.HookedTransformer(tl_config(REFERENCE))  # TL's own init, buffers and state-dict layout
    path = tmp_path / f"{REFERENCE.name}.pth"
    torch.save(theirs.state_dict(), path)
    ck = load_checkpoint(path)
    assert ck.spec == REFERENCE
    tokens = tokens_for(REFERENCE, batch=8)
    with torch.no_grad():
        torch.testing.assert_close(ck.model(tokens), theirs(tokens), atol=1e-5, rtol=0)


def test_wrong_shape_reference_checkpoint_names_the_tensor(tmp_path):
    """No TransformerLens needed: the state dict is built by hand, with 4 heads where the name says 3."""
    spec = ModelSpec.parse("add_d6_l2_h3_t15K_s372001")
    state = {k: torch.zeros(v.shape) for k, v in HookedTransformer(spec, device="meta").state_dict().items()}
    state["blocks.0.attn.W_Q"] = torch.zeros(4, 510, 170)
    path = tmp_path / "add_d6_l2_h3_t15K_s372001.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == (
        "checkpoint tensor 'blocks.0.attn.W_Q' has shape (4, 510, 170), expected (3, 510, 170)"
        " for add_d6_l2_h3_t15K_s372001"
    )
