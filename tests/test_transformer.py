"""The hooked transformer: TL layout, the maths of one forward, scoped hooks, caches, running from a cached state."""

import math

import pytest
import torch
import torch.nn.functional as F

from arithlens.errors import ArithLensError
from arithlens.model import HookedTransformer, ModelSpec, patch_head, patch_neuron, patch_pos

# 3-digit questions: n_ctx 13, answer logits at positions 7..11.
SPEC = ModelSpec.parse("add_d3_l2_h3_t15K_s372001", d_model=24, d_head=8, d_mlp=40)
N_CTX = SPEC.n_ctx
ANSWER = SPEC.layout.answer_logit_positions


@pytest.fixture(scope="module")
def model():
    m = HookedTransformer(SPEC, seed=7)
    with torch.no_grad():  # non-trivial LayerNorm and bias values, so tests see every parameter
        for name, p in m.named_parameters():
            if not name.split(".")[-1].startswith("W_"):
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.3)
    return m


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 15, (5, N_CTX), generator=torch.Generator().manual_seed(1))


def naive_logits(m: HookedTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """The same network written out directly from the TL definitions, as an independent check."""

    def ln(x, mod):
        x = x - x.mean(-1, keepdim=True)
        return x / (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt() * mod.w + mod.b

    T = tokens.shape[1]
    x = m.embed.W_E[tokens] + m.pos_embed.W_pos[:T]
    for b in m.blocks:
        a = b.attn
        h = ln(x, b.ln1)
        q = torch.einsum("btd,hde->bthe", h, a.W_Q) + a.b_Q
        k = torch.einsum("btd,hde->bthe", h, a.W_K) + a.b_K
        v = torch.einsum("btd,hde->bthe", h, a.W_V) + a.b_V
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(a.d_head)
        scores = scores.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
        z = torch.einsum("bhqk,bkhe->bqhe", scores.softmax(-1), v)
        x = x + torch.einsum("bqhe,hed->bqd", z, a.W_O) + a.b_O
        x = x + torch.relu(ln(x, b.ln2) @ b.mlp.W_in + b.mlp.b_in) @ b.mlp.W_out + b.mlp.b_out
    return ln(x, m.ln_final) @ m.unembed.W_U + m.unembed.b_U


def test_state_dict_has_transformer_lens_names_and_shapes():
    H, D, E, M, V = 3, 24, 8, 40, 15
    expected = {"embed.W_E": (V, D), "pos_embed.W_pos": (N_CTX, D)}
    for layer in range(2):
        p = f"blocks.{layer}."
        expected |= {
            p + "ln1.w": (D,), p + "ln1.b": (D,), p + "ln2.w": (D,), p + "ln2.b": (D,),
            p + "attn.W_Q": (H, D, E), p + "attn.W_K": (H, D, E), p + "attn.W_V": (H, D, E),
            p + "attn.b_Q": (H, E), p + "attn.b_K": (H, E), p + "attn.b_V": (H, E),
            p + "attn.W_O": (H, E, D), p + "attn.b_O": (D,),
            p + "mlp.W_in": (D, M), p + "mlp.b_in": (M,), p + "mlp.W_out": (M, D), p + "mlp.b_out": (D,),
        }  # fmt: skip
    expected |= {"ln_final.w": (D,), "ln_final.b": (D,), "unembed.W_U": (D, V), "unembed.b_U": (V,)}
    got = {k: tuple(v.shape) for k, v in HookedTransformer(SPEC).state_dict().items()}
    assert got == expected


def test_init_is_tl_gpt2_style_and_seeded():
    a, b, c = HookedTransformer(SPEC, seed=1), HookedTransformer(SPEC, seed=1), HookedTransformer(SPEC, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.blocks[0].attn.W_Q, c.blocks[0].attn.W_Q)
    big = HookedTransformer(ModelSpec(n_digits=3, n_layers=1, d_model=400, d_head=100), seed=3)
    assert big.blocks[0].mlp.W_in.std().item() == pytest.approx(0.8 / math.sqrt(400), rel=0.02)
    assert torch.all(big.blocks[0].attn.b_Q == 0) and torch.all(big.blocks[0].ln1.w == 1)
    assert HookedTransformer(SPEC).embed.W_E.std() > 0  # default seed is spec.seed


def test_logits_match_a_direct_implementation(model, tokens):
    logits = model(tokens)
    assert logits.shape == (5, N_CTX, 15)
    torch.testing.assert_close(logits, naive_logits(model, tokens), atol=1e-5, rtol=0)


def test_attention_is_causal(model, tokens):
    changed = tokens.clone()
    changed[:, 8] = (changed[:, 8] + 1) % 15
    a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8], atol=0, rtol=0)
    assert (a[:, 8:] - b[:, 8:]).abs().max() > 1e-3


def test_fast_path_equals_hooked_path(model, tokens):
    logits, cache = model.run_with_cache(tokens, names=lambda name: True)
    assert set(cache) == set(model.hook_names)
    torch.testing.assert_close(logits, model(tokens), atol=1e-5, rtol=0)


def test_the_fast_kernels_flag_switches_paths_not_values(model, tokens, monkeypatch):
    """`fast_kernels=False` sends every block through the hooked modules: the logits stay within 1e-5, and the
    flag is what chose the path (without gradients the kernels run for every unhooked block, with it off none)."""
    import arithlens.model.transformer as transformer

    seen = []
    real = transformer.fast_block
    monkeypatch.setattr(transformer, "fast_block", lambda *a, **k: seen.append(1) or real(*a, **k))
    with torch.inference_mode():
        fast = model(tokens)
        assert len(seen) == SPEC.n_layers
        monkeypatch.setattr(model, "fast_kernels", False)
        plain = model(tokens)
        assert len(seen) == SPEC.n_layers
    torch.testing.assert_close(plain, fast, atol=1e-5, rtol=0)


def test_cache_holds_only_the_requested_names_with_tl_shapes(model, tokens):
    names = [
        "hook_embed", "hook_pos_embed", "blocks.0.attn.hook_q", "blocks.0.attn.hook_z",
        "blocks.1.attn.hook_pattern", "blocks.1.attn.hook_attn_scores", "blocks.1.attn.hook_result",
        "blocks.1.mlp.hook_post", "blocks.0.ln1.hook_scale", "blocks.1.hook_resid_post", "ln_final.hook_normalized",
    ]  # fmt: skip
    _, cache = model.run_with_cache(tokens, names=names)
    shapes = {k: tuple(v.shape) for k, v in cache.items()}
    assert shapes == {
        "hook_embed": (5, 13, 24), "hook_pos_embed": (5, 13, 24),
        "blocks.0.attn.hook_q": (5, 13, 3, 8), "blocks.0.attn.hook_z": (5, 13, 3, 8),
        "blocks.1.attn.hook_pattern": (5, 3, 13, 13), "blocks.1.attn.hook_attn_scores": (5, 3, 13, 13),
        "blocks.1.attn.hook_result": (5, 13, 3, 24), "blocks.1.mlp.hook_post": (5, 13, 40),
        "blocks.0.ln1.hook_scale": (5, 13, 1), "blocks.1.hook_resid_post": (5, 13, 24),
        "ln_final.hook_normalized": (5, 13, 24),
    }  # fmt: skip
    _, one = model.run_with_cache(tokens, names="blocks.0.hook_resid_pre")
    assert list(one) == ["blocks.0.hook_resid_pre"]
    assert not any(t.requires_grad for t in cache.values())


def test_pattern_is_causal_and_normalised(model, tokens):
    _, cache = model.run_with_cache(tokens, names=["blocks.0.attn.hook_pattern"])
    pattern = cache["blocks.0.attn.hook_pattern"]
    torch.testing.assert_close(pattern.sum(-1), torch.ones(5, 3, N_CTX))
    assert torch.all(pattern.triu(1) == 0)


def test_head_results_sum_to_the_attention_output(model, tokens):
    names = ["blocks.1.attn.hook_result", "blocks.1.hook_attn_out"]
    _, cache = model.run_with_cache(tokens, names=names)
    total = cache["blocks.1.attn.hook_result"].sum(2) + model.blocks[1].attn.b_O
    torch.testing.assert_close(total, cache["blocks.1.hook_attn_out"], atol=1e-5, rtol=0)


def test_residual_stream_adds_up(model, tokens):
    b = "blocks.0."
    names = [b + "hook_resid_pre", b + "hook_attn_out", b + "hook_resid_mid", b + "hook_mlp_out", b + "hook_resid_post"]
    _, c = model.run_with_cache(tokens, names=names)
    torch.testing.assert_close(c[b + "hook_resid_pre"] + c[b + "hook_attn_out"], c[b + "hook_resid_mid"])
    torch.testing.assert_close(c[b + "hook_resid_mid"] + c[b + "hook_mlp_out"], c[b + "hook_resid_post"])


def test_unknown_hook_name_is_a_one_line_error(model, tokens):
    with pytest.raises(ArithLensError, match="unknown cache name 'blocks.9.attn.hook_z'"):
        model.run_with_cache(tokens, names=["blocks.9.attn.hook_z"])
    with pytest.raises(ArithLensError, match="unknown hook 'blocks.0.attn.z'"):
        model.run_with_hooks(tokens, hooks=[("blocks.0.attn.z", lambda x, hook: None)])


def test_zero_ablating_one_head_changes_only_later_positions(model, tokens):
    hook = patch_head("blocks.0.attn.hook_z", 9, 1, 0.0)
    logits, cache = model.run_with_cache(tokens, names=["blocks.0.attn.hook_z"], hooks=[hook])
    _, clean = model.run_with_cache(tokens, names=["blocks.0.attn.hook_z"])
    z, z0 = cache["blocks.0.attn.hook_z"], clean["blocks.0.attn.hook_z"]
    assert torch.all(z[:, 9, 1] == 0)
    edited = torch.zeros_like(z, dtype=torch.bool)
    edited[:, 9, 1] = True
    torch.testing.assert_close(z[~edited], z0[~edited], atol=0, rtol=0)
    base = model(tokens)
    torch.testing.assert_close(logits[:, :9], base[:, :9], atol=1e-6, rtol=0)
    assert (logits[:, 9:] - base[:, 9:]).abs().max() > 1e-4


def test_observer_hook_sees_name_and_absolute_positions(model, tokens):
    seen = []

    def spy(x, hook):
        seen.append((hook.name, tuple(x.shape), list(hook.positions)))

    logits = model.run_with_hooks(tokens, hooks=[("blocks.1.mlp.hook_pre", spy), ("ln_final.hook_normalized", spy)])
    torch.testing.assert_close(logits, model(tokens), atol=1e-5, rtol=0)
    assert seen == [
        ("blocks.1.mlp.hook_pre", (5, 13, 40), list(range(13))),
        ("ln_final.hook_normalized", (5, 13, 24), list(range(13))),
    ]


def test_hooks_on_one_name_run_in_order(model, tokens):
    name = "blocks.0.hook_resid_mid"
    double = (name, lambda x, hook: x * 2)
    plus_one = (name, lambda x, hook: x + 1)
    _, a = model.run_with_cache(tokens, names=[name], hooks=[double, plus_one])
    _, clean = model.run_with_cache(tokens, names=[name])
    torch.testing.assert_close(a[name], clean[name] * 2 + 1)


def test_hook_returning_a_wrong_shape_is_an_error(model, tokens):
    with pytest.raises(ArithLensError, match=r"hook on blocks.0.hook_resid_pre returned shape \(5, 13\)"):
        model.run_with_hooks(tokens, hooks=[("blocks.0.hook_resid_pre", lambda x, hook: x.sum(-1))])


def test_patch_neuron_and_patch_pos(model, tokens):
    name = "blocks.1.mlp.hook_post"
    _, c = model.run_with_cache(tokens, names=[name], hooks=[patch_neuron(name, 10, 7, 3.5)])
    assert torch.all(c[name][:, 10, 7] == 3.5)
    new = torch.arange(24.0)
    resid = "blocks.1.hook_resid_pre"
    _, c = model.run_with_cache(tokens, names=[resid], hooks=[patch_pos(resid, 4, new)])
    assert torch.equal(c[resid][:, 4], new.expand(5, 24))
    per_row = torch.randn(5, 8)
    _, c = model.run_with_cache(
        tokens, names="blocks.0.attn.hook_v", hooks=[patch_head("blocks.0.attn.hook_v", None, 2, per_row[:, None])]
    )
    assert torch.equal(c["blocks.0.attn.hook_v"][:, :, 2], per_row[:, None].expand(5, 13, 8))
    with pytest.raises(ArithLensError, match="patch_head needs one of"):
        patch_head("blocks.0.hook_resid_pre", 3, 0, 0.0)
    with pytest.raises(ArithLensError, match="patch_neuron needs one of"):
        patch_neuron("blocks.0.attn.hook_z", 3, 0, 0.0)


def test_context_hooks_apply_inside_and_are_gone_after_an_exception(model, tokens):
    clean = model(tokens)
    ablate = patch_head("blocks.1.attn.hook_z", 8, 0, 0.0)
    with model.hooks([ablate]):
        inside = model(tokens)
    torch.testing.assert_close(inside, model.run_with_hooks(tokens, [ablate]), atol=0, rtol=0)
    assert (inside - clean).abs().max() > 1e-4
    with pytest.raises(RuntimeError, match="boom"), model.hooks([ablate]):
        raise RuntimeError("boom")
    assert model._context_hooks == []
    torch.testing.assert_close(model(tokens), clean, atol=0, rtol=0)


def test_nested_context_hooks_stack(model, tokens):
    name = "blocks.0.hook_resid_mid"
    with model.hooks([(name, lambda x, hook: x * 2)]):
        with model.hooks([(name, lambda x, hook: x + 1)]):
            _, c = model.run_with_cache(tokens, names=[name])
        _, d = model.run_with_cache(tokens, names=[name])
    _, clean = model.run_with_cache(tokens, names=[name])
    torch.testing.assert_close(c[name], clean[name] * 2 + 1)
    torch.testing.assert_close(d[name], clean[name] * 2)


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_in_place_inference_path_equals_the_direct_implementation(model, tokens, mode):
    # Without gradients the blocks run in place, and the last block only at the wanted logit positions.
    naive = naive_logits(model, tokens).detach()
    before = tokens.clone()
    with mode():
        full = model(tokens)
        answer = model(tokens, logit_positions=ANSWER)
        middle = model(tokens, logit_positions=range(3, 6))
        scattered = model(tokens, logit_positions=[11, 2])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(tokens, logit_positions=ANSWER).float()
    torch.testing.assert_close(full, naive, atol=1e-5, rtol=0)
    torch.testing.assert_close(answer, naive[:, ANSWER.start : ANSWER.stop], atol=1e-5, rtol=0)
    torch.testing.assert_close(middle, naive[:, 3:6], atol=1e-5, rtol=0)
    torch.testing.assert_close(scattered, naive[:, [11, 2]], atol=1e-5, rtol=0)
    assert (low - answer).abs().max() < 0.1 * answer.abs().max()  # bf16 keeps its own (out-of-place) path
    assert torch.equal(tokens, before)


def test_logit_positions_unembed_only_those_positions(model, tokens):
    full = model(tokens)
    answer = model(tokens, logit_positions=ANSWER)
    assert answer.shape == (5, len(ANSWER), 15)
    torch.testing.assert_close(answer, full[:, ANSWER.start : ANSWER.stop], atol=1e-6, rtol=0)
    torch.testing.assert_close(model(tokens, logit_positions=[11, 2]), full[:, [11, 2]], atol=1e-6, rtol=0)
    with pytest.raises(ArithLensError, match="not all in 0..12"):
        model(tokens, logit_positions=[13])


def test_bad_token_shapes_are_errors(model, tokens):
    with pytest.raises(ArithLensError, match=r"tokens must be \(batch, pos\)"):
        model(tokens[0])
    with pytest.raises(ArithLensError, match="do not fit the context 0..12"):
        model(torch.zeros(2, 14, dtype=torch.long))


# ---- running from a cached state ----


def full_cache(model, tokens, hooks=()):
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(SPEC.n_layers)] + model.kv_names()
    return model.run_with_cache(tokens, names=names, hooks=hooks)


@pytest.mark.parametrize("start_layer", range(SPEC.n_layers))
def test_forward_from_any_layer_equals_the_full_forward(model, tokens, start_layer):
    logits, cache = full_cache(model, tokens)
    resid = cache[f"blocks.{start_layer}.hook_resid_pre"]
    torch.testing.assert_close(model.forward_from(resid, start_layer), logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("start_layer", range(SPEC.n_layers))
@pytest.mark.parametrize("start_pos", [1, 6, 9, 12])
def test_forward_from_a_prefix_reuses_cached_keys_and_values(model, tokens, start_layer, start_pos):
    logits, cache = full_cache(model, tokens)
    resid = cache[f"blocks.{start_layer}.hook_resid_pre"][:, start_pos:]
    out = model.forward_from(resid, start_layer, start_pos=start_pos, kv_prefix=cache)
    torch.testing.assert_close(out, logits[:, start_pos:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("start_layer", range(SPEC.n_layers))
@pytest.mark.parametrize("edit", ["z", "resid", "neuron"])
def test_forward_from_with_an_edit_at_the_prefix_boundary_equals_the_hooked_full_forward(
    model, tokens, start_layer, edit
):
    p = 9
    name, hook = {
        "z": lambda: patch_head(f"blocks.{start_layer}.attn.hook_z", p, 2, 0.0),
        "resid": lambda: patch_pos(f"blocks.{start_layer}.hook_resid_pre", p, torch.linspace(-1, 1, 24)),
        "neuron": lambda: patch_neuron(f"blocks.{start_layer}.mlp.hook_post", p, 5, 4.0),
    }[edit]()
    edited = model.run_with_hooks(tokens, [(name, hook)], logit_positions=ANSWER)  # positions 7..11
    clean_logits, clean = full_cache(model, tokens)  # the edit cannot change anything before p
    resid = clean[f"blocks.{start_layer}.hook_resid_pre"][:, p:]
    out = model.forward_from(
        resid, start_layer, start_pos=p, kv_prefix=clean, logit_positions=range(p, ANSWER.stop), hooks=[(name, hook)]
    )
    torch.testing.assert_close(out, edited[:, p - ANSWER.start :], atol=1e-5, rtol=0)
    torch.testing.assert_close(clean_logits[:, ANSWER.start : p], edited[:, : p - ANSWER.start], atol=1e-5, rtol=0)
    assert (out - clean_logits[:, p : ANSWER.stop]).abs().max() > 1e-4


@pytest.mark.parametrize("start_layer", range(SPEC.n_layers))
@pytest.mark.parametrize("start_pos", [0, 1, 6, 9])
def test_forward_from_without_gradients_takes_the_fast_path_to_the_same_values(model, tokens, start_layer, start_pos):
    # Blocks with nothing hooked run in place (reusing start_qkv, caching only keys and values, the last block
    # at the logit positions only): the same values as the hooked path with gradients on, the inputs untouched.
    logits, clean = model.run_with_cache(tokens, names=lambda name: name.endswith(("resid_pre", "_q", "_k", "_v")))
    names = model.kv_names(start_layer)
    span = slice(start_pos, None)
    answer = range(max(start_pos, ANSWER.start), ANSWER.stop)
    resid = clean[f"blocks.{start_layer}.hook_resid_pre"][:, span]
    qkv = tuple(clean[f"blocks.{start_layer}.attn.hook_{x}"][:, span] for x in "qkv")
    edit = patch_head(f"blocks.{start_layer}.attn.hook_z", 9, 1, 0.0)
    want_edited = model.forward_from(resid, start_layer, start_pos=start_pos, kv_prefix=clean,
                                     logit_positions=answer, hooks=[edit])
    before = resid.clone()
    with torch.inference_mode():
        out, cache = model.forward_from(resid, start_layer, start_pos=start_pos, kv_prefix=clean,
                                        logit_positions=answer, names=names, start_qkv=qkv)
        plain = model.forward_from(resid, start_layer, start_pos=start_pos, kv_prefix=clean, logit_positions=answer)
        edited = model.forward_from(resid, start_layer, start_pos=start_pos, kv_prefix=clean,
                                    logit_positions=answer, hooks=[edit], start_qkv=qkv)
    assert torch.equal(resid, before)
    torch.testing.assert_close(out, logits[:, answer.start : answer.stop], atol=1e-5, rtol=0)
    torch.testing.assert_close(plain, out, atol=1e-5, rtol=0)
    torch.testing.assert_close(edited, want_edited, atol=1e-5, rtol=0)  # start_qkv is ignored where hooked
    assert (edited - out).abs().max() > 1e-4
    assert set(cache) == set(names)
    for name in names:
        torch.testing.assert_close(cache[name], clean[name][:, span], atol=1e-5, rtol=0)
    with pytest.raises(ArithLensError, match="start_qkv must be"):
        model.forward_from(resid, start_layer, start_pos=start_pos, kv_prefix=clean, start_qkv=(qkv[0][:1],) * 3)


def test_forward_from_with_attention_hooks_and_cache_uses_absolute_positions(model, tokens):
    _, clean = full_cache(model, tokens)
    names = ["blocks.1.attn.hook_pattern", "blocks.1.attn.hook_z"]
    _, full = model.run_with_cache(tokens, names=names)
    out, cache = model.forward_from(
        clean["blocks.1.hook_resid_pre"][:, 6:], 1, start_pos=6, kv_prefix=clean, names=names
    )
    assert cache["blocks.1.attn.hook_pattern"].shape == (5, 3, 7, 13)  # queries 6..12, keys 0..12
    torch.testing.assert_close(cache["blocks.1.attn.hook_pattern"], full["blocks.1.attn.hook_pattern"][:, :, 6:])
    torch.testing.assert_close(cache["blocks.1.attn.hook_z"], full["blocks.1.attn.hook_z"][:, 6:])


def test_forward_from_broadcasts_a_single_row_prefix(model, tokens):
    one = tokens[:1].expand(4, -1)
    logits, cache = full_cache(model, tokens[:1])
    rows = cache["blocks.1.hook_resid_pre"][:, 8:].expand(4, -1, -1)
    out = model.forward_from(rows, 1, start_pos=8, kv_prefix=cache)
    torch.testing.assert_close(out, model(one)[:, 8:], atol=1e-5, rtol=0)


def test_forward_from_refuses_what_it_cannot_do(model, tokens):
    _, cache = full_cache(model, tokens)
    resid = cache["blocks.1.hook_resid_pre"]
    with pytest.raises(ArithLensError, match="does not run when starting at layer 1"):
        model.forward_from(resid, 1, hooks=[patch_head("blocks.0.attn.hook_z", 3, 0, 0.0)])
    with pytest.raises(ArithLensError, match="start_pos 4 needs kv_prefix"):
        model.forward_from(resid[:, 4:], 1, start_pos=4)
    with pytest.raises(ArithLensError, match="kv_prefix lacks 'blocks.1.attn.hook_k'"):
        model.forward_from(resid[:, 4:], 1, start_pos=4, kv_prefix={})
    with pytest.raises(ArithLensError, match="start layer 2 is outside 0..1"):
        model.forward_from(resid, 2)
    with pytest.raises(ArithLensError, match="not computed at blocks.1.attn.hook_z"):
        model.forward_from(
            resid[:, 4:], 1, start_pos=4, kv_prefix=cache, hooks=[patch_head("blocks.1.attn.hook_z", 3, 0, 0.0)]
        )
    with pytest.raises(ArithLensError, match="logit positions"):
        model.forward_from(resid[:, 8:], 1, start_pos=8, kv_prefix=cache, logit_positions=ANSWER)


# ---- training and devices ----


def test_gradients_reach_every_parameter_on_both_paths():
    m = HookedTransformer(SPEC, seed=3)
    tokens = torch.randint(0, 15, (4, N_CTX), generator=torch.Generator().manual_seed(0))
    for run in (lambda: m(tokens, logit_positions=ANSWER), lambda: m.run_with_cache(tokens, names=lambda n: True)[0]):
        m.zero_grad()
        logits = run()
        F.cross_entropy(logits.reshape(-1, 15), tokens[:, : logits.shape[1]].reshape(-1)).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_float64_and_meta_devices():
    m64 = HookedTransformer(SPEC, seed=5, dtype=torch.float64)
    m32 = HookedTransformer(SPEC, seed=5)
    tokens = torch.randint(0, 15, (2, N_CTX), generator=torch.Generator().manual_seed(0))
    assert m64(tokens).dtype == torch.float64
    torch.testing.assert_close(m64(tokens).float(), m32(tokens), atol=1e-5, rtol=0)
    meta = HookedTransformer(SPEC, device="meta")
    assert meta.device.type == "meta" and meta.blocks[0].attn.W_Q.shape == (3, 24, 8)
