"""Interventions as values, per-layer means, and the engine agreeing with one full forward per intervention."""

import numpy as np
import pytest
import torch

from arithlens.analysis.useful import position_ablation
from arithlens.arith import uniform
from arithlens.errors import ArithLensError
from arithlens.interventions import (
    Engine,
    Intervention,
    compute_means,
    mean_ablate,
    patch_from,
    record,
    resample_ablate,
    run_with_interventions,
    score,
    zero_ablate,
)
from arithlens.model import HookedTransformer, ModelSpec

# 3 digits: n_ctx 13, answer logits at 7..11.
SPEC = ModelSpec.parse("mix_d3_l3_h2_t1K_s000001", d_model=32, d_head=8, d_mlp=48)
HOOKS = ([f"blocks.{l}.attn.hook_z" for l in range(3)] + [f"blocks.{l}.mlp.hook_post" for l in range(3)]
         + [f"blocks.{l}.hook_resid_post" for l in range(3)] + [f"blocks.{l}.hook_resid_pre" for l in range(3)]
         + [f"blocks.{l}.attn.hook_v" for l in range(3)])




@pytest.fixture(scope="module")
def model():
    m = HookedTransformer(SPEC, seed=3)
    with torch.no_grad():  # a larger init than the default, so ablations change argmaxes often
        for name, p in m.named_parameters():
            if name.rsplit(".", 1)[-1].startswith("W_"):
                p.mul_(2.5)
    return m.eval()


@pytest.fixture(scope="module")
def tokens():
    return uniform(3, 60, np.random.default_rng(0)).torch_tokens()


@pytest.fixture(scope="module")
def means(model, tokens):
    return compute_means(model, tokens, HOOKS)


@pytest.fixture(scope="module")
def engine(model, tokens):
    # A random model answers nothing right, so score against its own clean predictions: a question fails
    # when an ablation moves an argmax (and the loss, large for a random model, is above 0.01).
    with torch.inference_mode():
        own = model(tokens, logit_positions=SPEC.layout.answer_logit_positions).argmax(-1)
    return Engine(model, tokens, targets=own)


def test_interventions_are_frozen_values_checked_at_construction():
    iv = zero_ablate("blocks.0.attn.hook_z", 5, head=1)
    assert iv.positions == (5,) and iv.layer == 0 and not iv.spreads
    with pytest.raises(AttributeError):
        iv.head = 0
    for make, message in [
        (lambda: zero_ablate("blocks.0.mlp.hook_post", 5, head=1), "a head is chosen at"),
        (lambda: zero_ablate("blocks.0.attn.hook_z", 5, neuron=1), "a neuron is chosen at"),
        (lambda: zero_ablate("blocks.0.attn.hook_pattern", 5), "use a hook function"),
        (lambda: zero_ablate("blocks.0.attn.hook_z", [3, 3]), "distinct non-negative"),
        (lambda: Intervention("blocks.0.attn.hook_z", (1,), kind="mean"), "needs a value"),
        (lambda: Intervention("blocks.0.attn.hook_z", (1,), kind="blur"), "not one of"),
        (lambda: Intervention("blocks.0.hook_resid_post", (1, 2), kind="mean", value=torch.zeros(1, 3, 4)),
         "need \\(1 or batch, 2"),
    ]:
        with pytest.raises(ArithLensError, match=message):
            make()
    assert zero_ablate("blocks.1.attn.hook_v", 2).spreads and zero_ablate("blocks.1.hook_resid_pre", 2).spreads


def test_a_mean_ablation_replaces_exactly_its_slice(model, tokens, means):
    iv = mean_ablate(means, "blocks.1.attn.hook_z", 4, head=1)
    _, clean = model.run_with_cache(tokens, "blocks.1.attn.hook_z")
    _, hooked = model.run_with_cache(tokens, "blocks.1.attn.hook_z", hooks=[iv.hook()])
    z, zh = clean["blocks.1.attn.hook_z"], hooked["blocks.1.attn.hook_z"]
    assert torch.equal(zh[:, 4, 1], means["blocks.1.attn.hook_z"][0, 4, 1].expand(len(tokens), -1))
    keep = torch.ones_like(z, dtype=torch.bool)
    keep[:, 4, 1] = False
    assert torch.equal(z[keep], zh[keep])
    # The mean is the batch mean of the clean activation, per position.
    torch.testing.assert_close(means["blocks.1.attn.hook_z"][0], z.mean(0), rtol=0, atol=1e-6)


def test_means_are_per_layer_and_reference_compat_uses_layer_zero_for_every_layer(means, engine):
    compat = means.layer0_for_all()
    for site in ("hook_resid_post", "attn.hook_z", "mlp.hook_post"):
        l0, l2 = means[f"blocks.0.{site}"], means[f"blocks.2.{site}"]
        assert not torch.allclose(l0, l2)
        assert torch.equal(compat[f"blocks.2.{site}"], l0) and torch.equal(compat[f"blocks.0.{site}"], l0)
    ivs = position_ablation(compat, SPEC, 7)
    assert all(torch.equal(iv.value, means["blocks.0.hook_resid_post"][:, [7]]) for iv in ivs)
    # and the position sweep sees the difference
    per_layer = [engine.outcome(position_ablation(means, SPEC, p)).n_fails for p in range(SPEC.n_ctx)]
    layer0 = [engine.outcome(position_ablation(compat, SPEC, p)).n_fails for p in range(SPEC.n_ctx)]
    assert per_layer != layer0


def _cases(means, stored):
    """Single interventions of every kind the engine treats differently, plus combinations."""
    cases = []
    for p in (0, 3, 7, 9, 11, 12):
        for layer in range(3):
            cases += [[mean_ablate(means, f"blocks.{layer}.attn.hook_z", p, head=h)] for h in range(2)]
            cases.append([mean_ablate(means, f"blocks.{layer}.mlp.hook_post", p)])
            cases.append([mean_ablate(means, f"blocks.{layer}.mlp.hook_post", p, neuron=5)])
        cases.append(position_ablation(means, SPEC, p))
    cases += [
        [mean_ablate(means, "blocks.1.hook_resid_pre", 4)],  # edits this layer's keys and values at 4
        [mean_ablate(means, "blocks.0.attn.hook_v", 8, head=0)],
        [zero_ablate("blocks.2.attn.hook_z", [2, 9], head=1)],  # two positions
        [mean_ablate(means, "blocks.0.attn.hook_z", 5, head=0), mean_ablate(means, "blocks.2.attn.hook_v", 5, head=1)],
        [mean_ablate(means, "blocks.1.mlp.hook_post", range(13))],  # every position, including the last
        [patch_from(stored, "blocks.1.hook_resid_post", [6, 10])],
        [resample_ablate(stored, "blocks.0.attn.hook_z", 8, head=1, batch_size=60, rng=np.random.default_rng(1))],
        [zero_ablate("hook_embed", 3)],  # before the blocks: a full forward
    ]
    return cases


def test_engine_equals_one_full_forward_per_intervention(model, tokens, means, engine):
    other = uniform(3, 60, np.random.default_rng(9)).torch_tokens()
    stored = record(model, other, ["blocks.1.hook_resid_post", "blocks.0.attn.hook_z"])
    changed = 0
    for ivs in _cases(means, stored):
        fast = engine.answer_logits(ivs)
        full = run_with_interventions(model, tokens, ivs)
        torch.testing.assert_close(fast, full, rtol=0, atol=2e-5)
        fails_fast, fails_full = engine.outcome(ivs).fails, score(full, engine.targets).fails
        assert np.array_equal(fails_fast, fails_full), ivs[0].hook_name
        changed += bool(fails_full.any())
    assert changed > 20  # the comparison is not vacuous


def test_engine_leaves_logits_alone_where_an_edit_cannot_reach(means, engine):
    # P12 (A0) predicts nothing; a last-layer edit at a question position reaches only that position's logits.
    for ivs in ([mean_ablate(means, "blocks.0.attn.hook_z", 12, head=0)],
                [mean_ablate(means, "blocks.2.mlp.hook_post", 3)]):
        assert torch.equal(engine.answer_logits(ivs), engine.clean_logits)
    assert not torch.equal(engine.answer_logits([mean_ablate(means, "blocks.1.mlp.hook_post", 3)]),
                           engine.clean_logits)


def test_engine_restores_its_scratch_keys_and_values(model, tokens, means, engine):
    ivs = [mean_ablate(means, "blocks.0.attn.hook_z", 6, head=1)]
    first = engine.answer_logits(ivs)
    engine.answer_logits([mean_ablate(means, "blocks.0.mlp.hook_post", 6)])
    assert torch.equal(engine.answer_logits(ivs), first)
    scratch = engine._scratch()
    assert all(torch.equal(scratch[n], engine._kv_clean[n]) for n in scratch)


def test_outcomes_on_worker_threads_equal_one_at_a_time_in_order(model, tokens, means, engine):
    ablations = [[mean_ablate(means, f"blocks.{layer}.attn.hook_z", p, head=h)] for p in (3, 6, 9, 11)
                 for layer in range(2) for h in range(2)]
    ablations += [[mean_ablate(means, f"blocks.{layer}.mlp.hook_post", p)] for p in (4, 8) for layer in range(2)]
    one = [engine.outcome(ivs) for ivs in ablations]
    seen = []
    threads = torch.get_num_threads()
    many = engine.outcomes(ablations, workers=3, progress=seen.append)
    assert torch.get_num_threads() == threads
    assert seen == list(range(1, len(ablations) + 1))
    for a, b in zip(one, many):
        np.testing.assert_allclose(a.loss, b.loss, rtol=1e-9, atol=1e-9)
        assert (a.wrong == b.wrong).all()
    assert len({o.loss.sum() for o in many}) > len(ablations) // 2  # distinct ablations, not one repeated
    with pytest.raises(ArithLensError, match="workers must be positive"):
        engine.outcomes(ablations, workers=0)


def test_failure_needs_both_a_loss_above_threshold_and_a_wrong_digit():
    logits = torch.zeros(3, 2, 4)
    logits[0, :, 1] = 20.0  # right and confident
    logits[1, :, 1] = 2.0  # right, but loss above 0.01
    logits[2, 0, 1], logits[2, 1, 2] = 20.0, 20.0  # second digit wrong
    out = score(logits, torch.ones(3, 2, dtype=torch.long))
    assert out.fails.tolist() == [False, False, True]
    assert out.wrong[2].tolist() == [False, True] and out.loss[1] > 0.01 > out.loss[0]


def test_a_masked_ablation_through_the_engine_equals_one_full_forward(model, tokens, means):
    from arithlens.interventions import MaskedAblation

    keep = torch.ones(SPEC.n_ctx, SPEC.n_heads, dtype=torch.bool)
    keep[5:, 0] = False  # head 0 of layer 1 ablated from position 5 on
    masked = MaskedAblation("blocks.1.attn.hook_z", keep, means["blocks.1.attn.hook_z"])
    assert masked.positions == tuple(range(5, SPEC.n_ctx)) and masked.layer == 1
    engine = Engine(model, tokens)
    full = run_with_interventions(model, engine.tokens, [masked])
    torch.testing.assert_close(engine.answer_logits([masked]), full, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(full, engine.clean_logits, atol=1e-3)  # (it does change the answers)
    with pytest.raises(ArithLensError, match="masked ablation"):
        MaskedAblation("blocks.1.attn.hook_z", keep.float(), means["blocks.1.attn.hook_z"])


def test_a_spliced_rerun_is_the_base_run_a_fresh_engine_makes(model, tokens, means):
    from arithlens.interventions import MaskedAblation

    def ablate(layer: int, start: int) -> MaskedAblation:
        keep = torch.ones(SPEC.n_ctx, SPEC.d_mlp, dtype=torch.bool)
        keep[start:] = False
        name = f"blocks.{layer}.mlp.hook_post"
        return MaskedAblation(name, keep, means[name])

    first, second = [ablate(2, 3)], [ablate(2, 3), ablate(1, 6)]
    engine = Engine(model, tokens, base=first)
    logits, cache = engine.rerun([a for a in second if a.layer >= 1], 1, 6, keep=True)
    engine.splice(second, 1, 6, logits, cache)
    fresh = Engine(model, tokens, base=second)
    torch.testing.assert_close(engine.clean_logits, fresh.clean_logits, rtol=1e-5, atol=1e-5)
    assert np.array_equal(engine.clean.fails, fresh.clean.fails)
    # and it stays a base: one more ablation on top agrees with the fresh engine's
    extra = [zero_ablate("blocks.2.attn.hook_z", 8, head=1)]
    torch.testing.assert_close(engine.answer_logits(extra), fresh.answer_logits(extra), rtol=1e-4, atol=1e-4)


def test_an_engine_cut_to_a_block_of_rows_answers_as_the_whole_engine_does_there(model, tokens, means, engine):
    """`Engine.rows` views the clean run (nothing rerun); per-question values are cut with `Intervention.rows`.
    Its logits equal the whole engine's on those rows (float32 sums over fewer rows may be blocked differently:
    2e-5, as against a full forward), and so do the failures."""
    other = uniform(3, 60, np.random.default_rng(9)).torch_tokens()
    stored = record(model, other, ["blocks.1.hook_resid_post", "blocks.0.attn.hook_z"])
    block = slice(17, 45)
    part = engine.rows(block)
    assert len(part) == 28 and torch.equal(part.clean_logits, engine.clean_logits[block])
    changed = 0
    for ivs in _cases(means, stored):
        whole = engine.answer_logits(ivs)[block]
        torch.testing.assert_close(part.answer_logits([iv.rows(block) for iv in ivs]), whole, rtol=0, atol=2e-5)
        fails = part.outcome([iv.rows(block) for iv in ivs]).fails
        assert np.array_equal(fails, engine.outcome(ivs).fails[block])
        changed += bool(fails.any())
    assert changed > 10  # the comparison is not vacuous
    with pytest.raises(ArithLensError, match="contiguous"):
        engine.rows(slice(0, 10, 2))
    with pytest.raises(ArithLensError, match="empty"):
        engine.rows(slice(60, 70))
