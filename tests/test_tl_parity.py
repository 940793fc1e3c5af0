"""Numeric parity with the installed TransformerLens, 3.x or 4.x (each test skips without it), and reference `.pth` files.

3.x exports to a `HookedTransformer`, 4.x to a `TransformerBridge` over TL's native model; the round trip and
the shipped-model check run on whichever is installed (`/work/venv-tl` has 3.9, `/work/venv-tl4` has 4.3).
"""

import os

import pytest
import torch

from arithlens.errors import ArithLensError, CheckpointError
from arithlens.model import HookedTransformer, ModelSpec, from_transformer_lens, load_checkpoint, to_transformer_lens
from arithlens.model.tl_adapter import tl_major

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may reach the network; a download attempt then fails loudly
SMALL = ModelSpec.parse("ins1_mix_d6_l3_h4_t40K_s372001", d_model=64, d_head=16)
REFERENCE = ModelSpec.parse("ins1_mix_d6_l3_h4_t40K_s372001")  # d_model 510, d_head 170, d_mlp 2040
pytestmark = pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated:DeprecationWarning")
COMPARED = ["blocks.0.attn.hook_z", "blocks.2.attn.hook_z", "blocks.0.attn.hook_pattern", "blocks.2.attn.hook_pattern"]
ACCEPTANCE_SEED = 770041  # used nowhere else: the 10,000 questions of the shipped-model check
# TL 4.3's native bridge has every one of our hook names; these two hold something else there (see
# docs/transformer-lens.md): `hook_attn_scores` fires with the softmaxed pattern, `hook_result` is not computed.
BRIDGE_DIFFERENT = {"attn.hook_attn_scores", "attn.hook_result"}


def installed_major():
    try:
        return tl_major()
    except ArithLensError:
        return None


@pytest.fixture(scope="module")
def major():
    found = installed_major()
    if found is None:
        pytest.skip("transformer-lens 3.x or 4.x is not installed (the `tl` extra)")
    return found


@pytest.fixture(scope="module")
def tl3(major):
    if major != 3:
        pytest.skip(f"needs transformer-lens 3.x; {major}.x is installed")
    import transformer_lens

    return transformer_lens


@pytest.fixture(scope="module")
def tl4(major):
    if major != 4:
        pytest.skip(f"needs transformer-lens 4.x; {major}.x is installed")
    import transformer_lens

    return transformer_lens


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


def assert_same_weights(ours, back):
    assert back.state_dict().keys() == ours.state_dict().keys()
    for key, value in ours.state_dict().items():
        assert torch.equal(value, back.state_dict()[key]), key


# ---- either major version ----


@pytest.mark.parametrize("spec", [SMALL, REFERENCE], ids=["small", "reference"])
def test_logits_hook_z_and_pattern_match_transformer_lens(major, spec):
    ours = random_model(spec)
    theirs = to_transformer_lens(ours)
    assert type(theirs).__name__ == ("HookedTransformer" if major == 3 else "TransformerBridge")
    tokens = tokens_for(spec)
    with torch.no_grad():
        logits, cache = ours.run_with_cache(tokens, names=COMPARED)
        tl_logits, tl_cache = theirs.run_with_cache(tokens, names_filter=COMPARED)
        fast = ours(tokens)
    torch.testing.assert_close(logits, tl_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast, tl_logits, atol=1e-5, rtol=0)
    for name in COMPARED:
        torch.testing.assert_close(cache[name], tl_cache[name], atol=1e-5, rtol=0)


def test_round_trip_through_transformer_lens_keeps_every_weight_and_the_name(major):
    ours = random_model(SMALL)
    back = from_transformer_lens(to_transformer_lens(ours))
    assert back.spec == SMALL  # the cfg's model_name carries the name; the shapes the sizes
    assert_same_weights(ours, back)


def test_float64_model_stays_float64_through_transformer_lens(major):
    ours = random_model(SMALL).to(torch.float64)
    theirs = to_transformer_lens(ours)
    back = from_transformer_lens(theirs)
    assert back.embed.W_E.dtype == torch.float64
    assert_same_weights(ours, back)


def test_bridge_that_transformer_lens_built_itself_comes_over_with_its_logits(major):
    """TL's own native bridge (3.9 has it beside HookedTransformer; 4.x only it), TL's init, our model back."""
    from transformer_lens import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg = TransformerBridgeConfig(n_layers=SMALL.n_layers, n_heads=SMALL.n_heads, d_model=SMALL.d_model,
                                  d_head=SMALL.d_head, d_mlp=SMALL.d_mlp, act_fn="relu", normalization_type="LN",
                                  d_vocab=SMALL.d_vocab, d_vocab_out=SMALL.d_vocab, n_ctx=SMALL.n_ctx,
                                  default_prepend_bos=False, seed=7)
    theirs = TransformerBridge.boot_native(cfg)
    ours = from_transformer_lens(theirs, spec=SMALL.name)
    assert ours.spec == SMALL
    tokens = tokens_for(SMALL)
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), theirs(tokens), atol=1e-5, rtol=0)


def test_rmsnorm_transformer_lens_model_is_refused(major):
    theirs = to_transformer_lens(random_model(SMALL))
    theirs.cfg.normalization_type = "RMS"
    with pytest.raises(ArithLensError, match="normalization_type='RMS'; arithlens models need 'LN'"):
        from_transformer_lens(theirs)


def test_state_dict_that_is_not_transformer_lens_is_refused():
    with pytest.raises(ArithLensError, match="neither 'embed.W_E'"):
        from_transformer_lens({"wte.weight": torch.zeros(15, 8)})


def test_every_hook_name_of_ours_is_in_transformer_lens_with_equal_values_but_two_on_the_bridge(major):
    """The record of which hook names match: all 58 of ours exist in TL; 3.x holds our values at every one,
    4.x's bridge at all but `hook_attn_scores` and `hook_result`."""
    ours = random_model(SMALL)
    theirs = to_transformer_lens(ours)
    if major == 3:
        theirs.set_use_attn_result(True)  # 3.x computes hook_result only when asked
    tokens = tokens_for(SMALL)
    with torch.no_grad():
        _, cache = ours.run_with_cache(tokens, names=list(ours.hook_names))
        _, tl_cache = theirs.run_with_cache(tokens)
    assert len(ours.hook_names) == 58
    assert set(ours.hook_names) <= set(theirs.hook_dict)
    equal = {n for n in ours.hook_names if n in tl_cache and cache[n].shape == tl_cache[n].shape
             and torch.allclose(cache[n], tl_cache[n], atol=1e-5, rtol=0, equal_nan=True)}
    different = {n.split(".", 2)[2] for n in set(ours.hook_names) - equal}
    assert different == (set() if major == 3 else BRIDGE_DIFFERENT)


@pytest.mark.slow
def test_shipped_model_to_transformer_lens_and_back_on_10000_questions(major):
    """The acceptance check on the default shipped model and 10,000 fresh questions, in both dtypes.

    float64: logits within 1e-9 (measured 6.8e-13 with TL 4.3). float32: the same answer at all 80,000
    answer-predicting positions and logits within 1e-3 (measured 2.5e-4): float32 cannot do 1e-5 here, since
    ours and TL's are each 2.7e-4 and 3.1e-4 from the float64 logits (scripts/tl_parity.py). The weights come
    back bit for bit, so the model that comes back gives our logits exactly."""
    import arithlens as al

    tokens = torch.as_tensor(al.questions(10_000, seed=ACCEPTANCE_SEED).tokens, dtype=torch.long)
    for dtype, logit_tol in ((torch.float64, 1e-9), (torch.float32, 1e-3)):
        ours = al.load_model().to(dtype)
        theirs = to_transformer_lens(ours)
        back = from_transformer_lens(theirs)
        assert back.spec == ours.spec
        assert_same_weights(ours, back)
        answers = list(ours.spec.layout.answer_logit_positions)
        worst, differing = 0.0, 0
        with torch.no_grad():
            for rows in torch.split(tokens, 1000):
                logits, tl_logits = ours(rows), theirs(rows)
                worst = max(worst, float((logits - tl_logits).abs().max()))
                differing += int((logits[:, answers].argmax(-1) != tl_logits[:, answers].argmax(-1)).sum())
        assert worst <= logit_tol, (dtype, worst)
        assert differing == 0, dtype


# ---- TransformerLens 3.x ----


def test_same_seed_draws_the_same_initial_weights_as_transformer_lens(tl3):
    from arithlens.model import tl_config

    theirs = tl3.HookedTransformer(tl_config(SMALL))
    ours = HookedTransformer(SMALL)
    for key, value in ours.state_dict().items():
        assert torch.equal(value, theirs.state_dict()[key]), key


def test_reference_shape_pth_saved_by_transformer_lens_loads_with_identical_logits(tl3, tmp_path):
    from arithlens.model import tl_config

    theirs = tl3.HookedTransformer(tl_config(REFERENCE))  # TL's own init, buffers and state-dict layout
    path = tmp_path / f"{REFERENCE.name}.pth"
    torch.save(theirs.state_dict(), path)
    ck = load_checkpoint(path)
    assert ck.spec == REFERENCE
    tokens = tokens_for(REFERENCE, batch=8)
    with torch.no_grad():
        torch.testing.assert_close(ck.model(tokens), theirs(tokens), atol=1e-5, rtol=0)


# ---- TransformerLens 4.x ----


def test_transformer_lens_4_has_no_hooked_transformer_so_we_export_a_bridge(tl4):
    with pytest.raises(ImportError, match="removed in TransformerLens 4.0"):
        tl4.HookedTransformer  # noqa: B018
    theirs = to_transformer_lens(random_model(SMALL))
    assert isinstance(theirs, tl4.TransformerBridge)
    assert theirs.compatibility_mode and not theirs._weights_processed


def test_bridge_state_dict_converts_back_with_the_model_name(tl4):
    ours = random_model(SMALL)
    state = to_transformer_lens(ours).state_dict()
    assert "blocks.0.attn.q.weight" in state and "embed.W_E" not in state  # the bridge's own keys
    back = from_transformer_lens(state, spec=SMALL.name)
    assert back.spec == SMALL
    assert_same_weights(ours, back)
    with pytest.raises(ArithLensError, match="does not say how many heads"):
        from_transformer_lens(state)


def test_bridge_over_a_hugging_face_gpt2_with_relu_comes_over_with_its_logits(tl4):
    """Built offline: a GPT-2 from a config (ReLU, our sizes) and a 15-token tokenizer, no Hub call."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    config = GPT2Config(vocab_size=SMALL.d_vocab, n_positions=SMALL.n_ctx, n_embd=SMALL.d_model,
                        n_layer=SMALL.n_layers, n_head=SMALL.n_heads, n_inner=SMALL.d_mlp,
                        activation_function="relu", layer_norm_epsilon=1e-5, tie_word_embeddings=False)
    torch.manual_seed(0)  # GPT-2's own init draws from the global generator
    hf = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # biases and LayerNorms off their 0 and 1 too
        for p in hf.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    vocab = {str(i): i for i in range(10)} | {"+": 10, "-": 11, "=": 12, "*": 13, "?": 14}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="?")), unk_token="?")
    theirs = tl4.TransformerBridge.boot_transformers("arith-gpt2", hf_model=hf, tokenizer=tokenizer)
    ours = from_transformer_lens(theirs, spec=SMALL.name)
    tokens = tokens_for(SMALL)
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), hf(tokens).logits, atol=1e-5, rtol=0)


def test_bridge_with_processed_weights_is_refused(tl4):
    theirs = to_transformer_lens(random_model(SMALL), compatibility_mode=False)
    theirs.enable_compatibility_mode(disable_warnings=True)  # TL's default: fold LayerNorm, centre weights
    with pytest.raises(ArithLensError, match="weights were processed"):
        from_transformer_lens(theirs)


def test_convert_command_reads_a_bridge_state_dict_pth(tl4, tmp_path, monkeypatch, capsys):
    from helpers import arithlens_here

    ours = random_model(SMALL)
    path = tmp_path / f"{SMALL.name}.pth"
    torch.save(to_transformer_lens(ours).state_dict(), path)
    code, out, err = arithlens_here(monkeypatch, capsys, "convert", str(path), str(tmp_path / "model"))
    assert (code, err) == (0, "")
    assert out == f"{path} -> {tmp_path / 'model'}: {SMALL.name} (spec from file name)\n"
    ck = load_checkpoint(tmp_path / "model")
    assert ck.spec == SMALL and ck.extra["converted_from"] == path.name
    assert_same_weights(ours, ck.model)


def test_convert_command_needs_a_name_for_an_unnamed_bridge_state_dict(tl4, tmp_path, monkeypatch, capsys):
    from helpers import arithlens_here

    path = tmp_path / "weights.pth"
    torch.save(to_transformer_lens(random_model(SMALL)).state_dict(), path)
    monkeypatch.delenv("ARITHLENS_DEBUG", raising=False)
    code, out, err = arithlens_here(monkeypatch, capsys, "convert", str(path), str(tmp_path / "model"))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"error: '{path}' is a TransformerBridge state dict") and "--spec NAME" in err
    assert not (tmp_path / "model").exists()


# ---- no TransformerLens needed ----


def test_bridge_state_dict_with_a_foreign_key_or_wrong_head_count_is_refused():
    from arithlens.model.tl_adapter import hooked_state_dict

    with pytest.raises(ArithLensError, match="has key 'blocks.0.attn.rotary.weight', which arithlens models"):
        hooked_state_dict({"blocks.0.attn.rotary.weight": torch.zeros(4)}, n_heads=4)
    with pytest.raises(ArithLensError, match=r"'blocks.0.attn.q.weight' of shape \(64, 64\) does not split into 3"):
        hooked_state_dict({"blocks.0.attn.q.weight": torch.zeros(64, 64)}, n_heads=3)


def test_wrong_shape_reference_checkpoint_names_the_tensor(tmp_path):
    """The state dict is built by hand, with 4 heads where the name says 3."""
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
