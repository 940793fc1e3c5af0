"""Training: schedule, determinism, kill -9 then --resume is bit-identical, insert mode copies everything."""

import json

import pytest
import torch
from helpers import kill_and_resume

from arithlens.model import HookedTransformer, ModelSpec, load_checkpoint
from arithlens.model.train import (
    TrainConfig,
    insert_model,
    insert_slices,
    lr_at,
    qtype_mix,
    train,
)

TINY = dict(d_model=32, d_head=8, d_mlp=64)


def tiny_spec(name="mix_d3_l2_h2_t1K_s123456"):
    return ModelSpec.parse(name, **TINY)


def tiny_cfg(**kw):
    base = dict(steps=30, batch_size=32, eval_every=15, eval_questions=50, checkpoint_every=10, warmup_steps=5)
    return TrainConfig(**(base | kw))


def test_lr_warms_up_then_decays_to_min():
    cfg = TrainConfig(steps=1000, lr=1e-3, warmup_steps=100, min_lr=1e-5)
    assert lr_at(cfg, 0) == pytest.approx(1e-5)
    assert lr_at(cfg, 100) == pytest.approx(1e-3)
    assert lr_at(cfg, 550) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(cfg, 1000) == pytest.approx(1e-5)


def test_qtype_mix_follows_the_spec_percentages():
    assert qtype_mix(ModelSpec.parse("add_d6_l2_h3_t1K_s123456")) == {"add": 1.0}
    assert qtype_mix(ModelSpec.parse("sub_d6_l2_h3_t1K_s123456")) == {"sub": 0.5, "neg": 0.5}
    mix = qtype_mix(ModelSpec.parse("mix_d6_l2_h3_t1K_s123456"))
    assert mix["add"] == pytest.approx(0.34) and mix["sub"] == pytest.approx(0.33)


def test_same_seed_gives_identical_weights_and_another_seed_does_not():
    torch.set_num_threads(1)
    one = train(tiny_spec(), tiny_cfg(steps=12)).model.state_dict()
    two = train(tiny_spec(), tiny_cfg(steps=12)).model.state_dict()
    other = train(tiny_spec("mix_d3_l2_h2_t1K_s654321"), tiny_cfg(steps=12)).model.state_dict()
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert not torch.equal(one["blocks.0.attn.W_Q"], other["blocks.0.attn.W_Q"])


def test_cuda_training_runs_with_deterministic_kernels_and_restores_the_callers_setting(monkeypatch):
    """On CUDA, train() turns on PyTorch's deterministic algorithms (cuBLAS's fixed workspace too) for the run
    and restores the caller's setting after; on CPU it changes nothing. The switch needs no GPU to check."""
    from arithlens.model import train as train_module

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert not torch.are_deterministic_algorithms_enabled()
    with train_module._deterministic("cpu"):
        assert not torch.are_deterministic_algorithms_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in train_module.os.environ
    try:
        with train_module._deterministic("cuda"):
            assert torch.are_deterministic_algorithms_enabled()
            assert train_module.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
            raise RuntimeError("a failed run")
    except RuntimeError:
        pass
    assert not torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with train_module._deterministic("cuda:0"):
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_training_lowers_the_loss_and_writes_checkpoint_and_history(tmp_path):
    torch.set_num_threads(1)
    result = train(tiny_spec(), tiny_cfg(steps=60, lr=3e-3), tmp_path)
    loss = result.history["loss"]
    assert sum(loss[-5:]) / 5 < 0.8 * sum(loss[:5]) / 5
    ck = load_checkpoint(tmp_path)
    assert ck.spec == tiny_spec() and ck.extra["training"]["steps"] == 60
    history = json.loads((tmp_path / "training.json").read_text())
    assert len(history["loss_by_position"]) == 60 and len(history["loss_by_position"][0]) == 5
    assert history["answer_names"] == ["A4", "A3", "A2", "A1", "A0"]
    assert [e["step"] for e in history["eval"]] == [15, 30, 45, 60]


def test_kill_9_then_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    config = dict(steps=40, batch_size=32, eval_every=15, eval_questions=50, checkpoint_every=10, warmup_steps=5)
    # killed between the checkpoints at 20 and 30
    h_full, h_cut = kill_and_resume(tmp_path, "mix_d3_l2_h2_t1K_s123456", config, kill_at=25)
    assert h_full["loss"] == h_cut["loss"] and len(h_cut["loss"]) == 40


def test_resume_with_another_config_is_refused(tmp_path):
    from arithlens.errors import CheckpointError

    train(tiny_spec(), tiny_cfg(steps=10), tmp_path)
    with pytest.raises(CheckpointError, match="another spec or config"):
        train(tiny_spec(), tiny_cfg(steps=20), tmp_path, resume=True)


def test_insert_copies_every_component_including_wo_ln2_and_b_u():
    small = HookedTransformer(ModelSpec.parse("add_d3_l1_h2_t1K_s111111", **TINY))
    for p in small.parameters():
        torch.nn.init.normal_(p)  # biases and LN weights too, so a missed copy shows
    big = HookedTransformer(ModelSpec.parse("mix_d3_l2_h3_t1K_s222222", d_model=32, d_head=8, d_mlp=96))
    insert_model(big, small)
    bs, ss = big.state_dict(), small.state_dict()
    for name in ("blocks.0.attn.W_O", "blocks.0.attn.b_O", "blocks.0.ln2.w", "blocks.0.ln2.b", "ln_final.b",
                 "unembed.b_U", "embed.W_E", "blocks.0.attn.W_Q"):
        sl = insert_slices(small.spec, big.spec)[name]
        assert torch.equal(bs[name][sl], ss[name]), name
    assert torch.equal(bs["blocks.0.mlp.W_in"][:, :64], ss["blocks.0.mlp.W_in"])
    assert not torch.equal(bs["blocks.0.attn.W_Q"][2], torch.zeros_like(bs["blocks.0.attn.W_Q"][2]))


def test_frozen_insert_keeps_inserted_weights_while_the_rest_learns(tmp_path):
    small_spec = ModelSpec.parse("add_d3_l1_h2_t1K_s111111", **TINY)
    train(small_spec, tiny_cfg(steps=5), tmp_path / "small")
    small = load_checkpoint(tmp_path / "small").model.state_dict()
    big_spec = ModelSpec.parse("ins1_mix_d3_l2_h3_t1K_s222222", d_model=32, d_head=8, d_mlp=96)
    big = train(big_spec, tiny_cfg(steps=8, insert_from=str(tmp_path / "small"), insert_freeze=True)).model
    state = big.state_dict()
    slices = insert_slices(small_spec, big_spec)
    assert torch.equal(state["blocks.0.attn.W_O"][slices["blocks.0.attn.W_O"]], small["blocks.0.attn.W_O"])
    assert torch.equal(state["unembed.b_U"], small["unembed.b_U"])
    fresh = HookedTransformer(big_spec).state_dict()
    assert not torch.equal(state["blocks.1.attn.W_Q"], fresh["blocks.1.attn.W_Q"])  # layer 1 trained


def test_insert_of_a_wider_model_is_an_error():
    from arithlens.errors import ArithLensError

    with pytest.raises(ArithLensError, match="d_model, d_head and n_digits must match"):
        insert_slices(ModelSpec.parse("add_d3_l1_h2_t1K_s111111", d_model=64, d_head=8),
                      ModelSpec.parse("mix_d3_l2_h3_t1K_s222222", **TINY))


def test_the_reference_recipe_runs_at_reference_size(tmp_path):
    # The predecessor's main model: an adder of the reference size, inserted into the 3-layer, 4-head mixed
    # model (README, "Reference recipe on a GPU"). One step each on the CPU: the recipe runs end to end.
    adder = ModelSpec.parse("add_d6_l2_h3_t15K_s372001")
    mixed = ModelSpec.parse("ins1_mix_d6_l3_h4_t40K_s372001")
    assert (mixed.d_model, mixed.d_head, mixed.d_mlp, mixed.perc_sub, mixed.insert_mode) == (510, 170, 2040, 80, 1)
    quick = dict(steps=1, batch_size=8, eval_every=1, eval_questions=8, checkpoint_every=1, warmup_steps=1)
    train(adder, TrainConfig(**quick), tmp_path / "add")
    small = load_checkpoint(tmp_path / "add").model
    result = train(mixed, TrainConfig(**quick, insert_from=str(tmp_path / "add")), tmp_path / "mix")
    assert len(result.history["loss"]) == 1
    big = load_checkpoint(tmp_path / "mix").model
    # one AdamW step at lr 1e-3 moves the inserted embedding only slightly: it came from the adder
    moved = (big.embed.W_E - small.embed.W_E).abs().max()
    assert moved < 0.01 * small.embed.W_E.abs().max() + 2e-3
    assert (tmp_path / "mix" / "model.safetensors").stat().st_size < 50e6  # shippable if trained (issue 4)
