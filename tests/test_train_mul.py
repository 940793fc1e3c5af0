"""Training for multiplication: column labels, the operand-length curriculum, the training-only aux head,
per-answer-digit MUL accuracy in the history, and a bit-identical resume with both switched on."""

import json

import numpy as np
import pytest
import torch
from helpers import kill_and_resume
from safetensors import safe_open

from arithlens.arith import QType, QuestionBatch, uniform
from arithlens.model import HookedTransformer, ModelSpec, load_checkpoint
from arithlens.model import train as train_module
from arithlens.model.train import (
    STATE_FILE,
    AuxHead,
    TrainConfig,
    aux_targets,
    count_wrong,
    curriculum_batch,
    digit_accuracy,
    mul_operand_length,
    train,
)

TINY = dict(d_model=32, d_head=8, d_mlp=64)


def mul_spec(name="mul_d6_l2_h2_t1K_s123456"):
    return ModelSpec.parse(name, **TINY)


def cfg(**kw):
    base = dict(steps=30, batch_size=32, eval_every=15, eval_questions=50, checkpoint_every=10, warmup_steps=5)
    return TrainConfig(**(base | kw))


def test_curriculum_stages_grow_the_operand_length_in_equal_steps():
    spec = mul_spec()  # 3-digit MUL operands
    c = cfg(curriculum_steps=90)
    assert [mul_operand_length(c, spec, s) for s in (0, 29, 30, 59, 60, 89, 90, 500)] == [1, 1, 2, 2, 3, 3, 3, 3]
    assert mul_operand_length(cfg(), spec, 0) == 3  # off: full length from the start


def test_curriculum_batch_redraws_only_mul_rows_below_the_stage_limit():
    batch = uniform(6, 400, np.random.default_rng(1), qtypes={"add": 0.5, "mul": 0.5})
    out = curriculum_batch(batch, 2, np.random.default_rng(2))
    mul = batch.qtype == QType.MUL
    assert (out.a[mul] < 100).all() and (out.b[mul] < 100).all()
    assert (out.a[mul] >= 10).mean() > 0.8  # uniform below 100, not stuck at one digit
    assert (out.a[~mul] == batch.a[~mul]).all() and (out.b[~mul] == batch.b[~mul]).all()
    assert (out.qtype == batch.qtype).all()


def test_training_draws_the_curriculum_lengths_step_by_step(monkeypatch):
    seen = []

    def spy(batch, length, rng):
        out = curriculum_batch(batch, length, rng)
        mul = out.qtype == QType.MUL
        seen.append((length, int(max(out.a[mul].max(), out.b[mul].max()))))
        return out

    monkeypatch.setattr(train_module, "curriculum_batch", spy)
    torch.set_num_threads(1)
    train(mul_spec(), cfg(steps=8, curriculum_steps=6, eval_every=100))
    # stages of 2 steps: length 1, then 2; from step 4 on the full length needs no redraw
    assert [length for length, _ in seen] == [1, 1, 2, 2]
    assert all(top < 10**length for length, top in seen)
    assert seen[2][1] >= 10  # 32 rows below 100 reach two digits


def test_aux_targets_are_scaled_column_labels_in_answer_order_for_mul_rows_only():
    batch = QuestionBatch.from_strings(6, ["000345*000823=", "000345+000823="])
    want, mask = aux_targets(batch, "cpu")
    assert mask.tolist() == [True, False]
    assert want.shape == (2, 7, 3)
    # answer order A6..A0: the last column is the units (15, 0, 15), then the tens (22, 1, 23)
    assert want[0, -1].tolist() == pytest.approx([0.15, 0.0, 0.15])
    assert want[0, -2].tolist() == pytest.approx([0.22, 0.1, 0.23])


def test_aux_head_is_not_saved_and_the_model_loads_as_any_other(tmp_path):
    torch.set_num_threads(1)
    spec = mul_spec()
    result = train(spec, cfg(steps=40, aux_loss=1.0, lr=3e-3), tmp_path)
    aux = result.history["aux_loss"]
    assert len(aux) == 40 and np.mean(aux[-5:]) < 0.5 * np.mean(aux[:5])  # the head learns its targets
    loaded = load_checkpoint(tmp_path)
    assert loaded.spec == spec
    assert set(loaded.model.state_dict()) == set(HookedTransformer(spec).state_dict())
    with safe_open(str(tmp_path / STATE_FILE), framework="pt") as f:
        assert {"aux.proj.weight", "aux.proj.bias"} <= set(f.keys())  # only the resume state holds it
    assert loaded.extra["training"]["config"]["aux_loss"] == 1.0
    plain = train(spec, cfg(steps=40, lr=3e-3)).model.state_dict()
    assert not torch.equal(plain["blocks.0.attn.W_Q"], loaded.model.state_dict()["blocks.0.attn.W_Q"])


def test_aux_head_reads_the_layer_asked_for_and_refuses_one_outside_the_model():
    spec = mul_spec()
    assert AuxHead(spec, None, seed=1).hook_name == "blocks.0.hook_resid_post"  # n_layers - 2
    assert AuxHead(spec, 1, seed=1).hook_name == "blocks.1.hook_resid_post"
    from arithlens.errors import ArithLensError

    with pytest.raises(ArithLensError, match="aux_layer 2 is outside 0..1"):
        AuxHead(spec, 2, seed=1)


def test_aux_loss_on_the_last_layer_trains_too():
    torch.set_num_threads(1)
    result = train(mul_spec(), cfg(steps=6, aux_loss=1.0, aux_layer=1, eval_every=100))
    assert len(result.history["aux_loss"]) == 6 and all(np.isfinite(result.history["aux_loss"]))


def test_history_records_per_digit_mul_accuracy_at_each_eval():
    torch.set_num_threads(1)
    result = train(mul_spec(), cfg(steps=30))
    evals = result.history["eval"]
    assert [e["step"] for e in evals] == [15, 30]
    for e in evals:
        assert list(e["mul_digits"]) == ["A7", "A6", "A5", "A4", "A3", "A2", "A1", "A0", "exact"]
        assert all(0.0 <= v <= 1.0 for v in e["mul_digits"].values())
    mix = train(ModelSpec.parse("mix_d3_l2_h2_t1K_s123456", **TINY), cfg(steps=15))
    assert "mul_digits" not in mix.history["eval"][0]


def test_digit_accuracy_agrees_with_the_exact_check():
    torch.set_num_threads(1)
    model = train(mul_spec(), cfg(steps=20, eval_every=100)).model
    batch = uniform(6, 300, np.random.default_rng(5), qtypes={"mul": 1.0})
    acc = digit_accuracy(model, batch, "cpu", chunk=128)
    assert acc["exact"] == pytest.approx(1 - count_wrong(model, batch, "cpu") / 300, abs=1e-12)
    assert min(acc[k] for k in acc if k != "exact") >= acc["exact"]


def test_kill_9_then_resume_with_curriculum_and_aux_loss_is_bit_identical(tmp_path):
    config = dict(steps=40, batch_size=32, eval_every=15, eval_questions=50, checkpoint_every=10, warmup_steps=5,
                  curriculum_steps=24, aux_loss=0.5)
    # killed inside the curriculum, after the checkpoint at 10
    h_full, h_cut = kill_and_resume(tmp_path, "mul_d6_l2_h2_t1K_s123456", config, kill_at=15)
    assert h_full["loss"] == h_cut["loss"] and h_full["aux_loss"] == h_cut["aux_loss"]
    assert h_full["eval"] == h_cut["eval"]


# ---- the CLI's options ----

MUL_TRAIN = ["--spec", "mul_d2_l1_h1_t1K_s000001", "--d-model", "8", "--d-head", "4", "--d-mlp", "8",
             "--steps", "4", "--batch-size", "8", "--quiet"]


@pytest.mark.parametrize("option, value, message", [
    ("--curriculum-steps", "-1", "--curriculum-steps must be at least 0"),
    ("--aux-loss", "nan", "--aux-loss must be a finite number"),
    ("--aux-loss", "-1", "'aux_loss': input should be greater than or equal to 0"),
])
def test_cli_refuses_bad_mul_options_with_one_line_and_no_output(tmp_path, monkeypatch, capsys, option, value,
                                                                 message):
    from helpers import arithlens_here

    monkeypatch.delenv("ARITHLENS_DEBUG", raising=False)
    code, out, err = arithlens_here(monkeypatch, capsys, "train", *MUL_TRAIN, "--out", str(tmp_path / "m"),
                                    option, value)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert out == "" and not (tmp_path / "m").exists()


def test_cli_passes_the_mul_options_into_the_recipe_and_the_card(tmp_path, monkeypatch, capsys):
    from helpers import arithlens_here

    code, _, err = arithlens_here(monkeypatch, capsys, "train", *MUL_TRAIN, "--out", str(tmp_path / "m"),
                                  "--curriculum-steps", "2", "--aux-loss", "0.5", "--threads", "1")
    assert code == 0, err
    card = load_checkpoint(tmp_path / "m").extra["training"]
    assert card["config"]["curriculum_steps"] == 2 and card["config"]["aux_loss"] == 0.5
    history = json.loads((tmp_path / "m" / "training.json").read_text())
    assert len(history["aux_loss"]) == 4


def test_a_state_file_written_before_the_mul_fields_existed_still_resumes(tmp_path):
    """Older runs' state files hold configs without curriculum_steps / aux_loss / aux_layer: their defaults."""
    from arithlens.model.checkpoint import safetensors_canonical

    torch.set_num_threads(1)
    spec = mul_spec()
    train(spec, cfg(steps=10), tmp_path)
    path = tmp_path / STATE_FILE
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    old = json.loads(meta["meta"])
    for key in ("curriculum_steps", "aux_loss", "aux_layer"):
        del old["config"][key]
    path.write_bytes(safetensors_canonical(tensors, {**meta, "meta": json.dumps(old)}))
    result = train(spec, cfg(steps=10), tmp_path, resume=True)
    assert len(result.history["loss"]) == 10
