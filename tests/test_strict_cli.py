"""The command line keeps its promise (issue 25): nothing lost (no device, FIFO, socket or symlink replaced, no
model replaced by a partial one), nothing guessed (conflicting sources are errors), everything bounded and
checked before the work. Heavy functions are replaced by ones that fail loudly, so a check that came too late
shows as 'work started' instead of running for minutes."""

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile

import pytest
import torch

from arithlens.model import HookedTransformer, ModelSpec, save_checkpoint
from helpers import arithlens_here

ADD_NAME = "add_d6_l1_h2_t1K_s372001"
ADD = ModelSpec.parse(ADD_NAME, d_model=16, d_head=8, d_mlp=16)
MIX = ModelSpec.parse("mix_d6_l1_h2_t1K_s372001", d_model=16, d_head=8, d_mlp=16)
TRAIN = ["train", "--spec", "add_d3_l1_h1_t1K_s372001", "--d-model", "16", "--d-head", "8", "--d-mlp", "16",
         "--quiet"]
RECIPE = {"steps": 30, "batch_size": 16, "eval_every": 10, "eval_questions": 20, "checkpoint_every": 10,
          "warmup_steps": 2}


@pytest.fixture
def adder_dir(tmp_path):
    return save_checkpoint(HookedTransformer(ADD, seed=1), ADD, tmp_path / "adder")


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(RECIPE))
    return str(path)


def no_work(monkeypatch, *targets):
    """Replace each `module:function` by one that fails: a check must come before it runs."""
    import importlib

    def started(*args, **kwargs):
        raise AssertionError("work started")

    for target in targets:
        module, name = target.split(":")
        monkeypatch.setattr(importlib.import_module(module), name, started)


def run(monkeypatch, capsys, *args):
    code, out, err = arithlens_here(monkeypatch, capsys, *args)
    return code, out, err.strip()


def assert_error(code, out, err, message):
    assert code == 2 and out == "" and len(err.splitlines()) == 1, (code, out, err)
    assert err.startswith("error: ") and message in err, err


# ---------------------------------------------------------------------------------------------------
# Outputs: only regular files and folders


@pytest.fixture
def specials():
    """A FIFO, a socket, a symlink to a file and one to a folder, in a short folder (socket paths are short)."""
    folder = tempfile.mkdtemp(prefix="al25-", dir="/tmp")
    os.mkfifo(f"{folder}/fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(f"{folder}/sock")
    with open(f"{folder}/real.json", "w") as f:
        f.write("keep me\n")
    os.symlink(f"{folder}/real.json", f"{folder}/link")
    os.mkdir(f"{folder}/realdir")
    os.symlink(f"{folder}/realdir", f"{folder}/dirlink")
    yield folder
    sock.close()
    shutil.rmtree(folder)


@pytest.mark.parametrize("name, what", [("fifo", "a FIFO (named pipe)"), ("sock", "a socket"),
                                        ("link", "a symbolic link")])
def test_eval_out_refuses_a_fifo_socket_or_symlink_and_leaves_it(monkeypatch, capsys, adder_dir, specials, name,
                                                                 what):
    target = f"{specials}/{name}"
    before = os.lstat(target).st_mode
    code, out, err = run(monkeypatch, capsys, "eval", "--model", str(adder_dir), "--kind", "curated", "--quiet",
                         "--out", target)
    assert_error(code, out, err, f"--out '{target}' is {what}: arithlens writes only regular files and folders")
    assert os.lstat(target).st_mode == before
    assert open(f"{specials}/real.json").read() == "keep me\n"


def test_eval_out_refuses_a_device_file(monkeypatch, capsys, adder_dir):
    no_work(monkeypatch, "arithlens.model.evaluate:evaluate_suite")  # never let a late check touch /dev/full
    code, out, err = run(monkeypatch, capsys, "eval", "--model", str(adder_dir), "--out", "/dev/full")
    assert_error(code, out, err, "--out '/dev/full' is a device file")
    assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)


def test_faithfulness_out_refuses_a_symlink(monkeypatch, capsys, adder_dir, specials, tmp_path):
    nodes = tmp_path / "nodes.txt"
    nodes.write_text("P18L0H0\n")
    code, out, err = run(monkeypatch, capsys, "faithfulness", "--model", str(adder_dir), "--nodes", str(nodes),
                         "--questions", "10", "--quiet", "--out", f"{specials}/link")
    assert_error(code, out, err, "is a symbolic link")
    assert os.path.islink(f"{specials}/link")


def test_a_folder_target_that_is_a_symlink_is_refused(monkeypatch, capsys, adder_dir, specials):
    no_work(monkeypatch, "arithlens.analysis.search:search_model", "arithlens.analysis.useful:find_useful")
    code, out, err = run(monkeypatch, capsys, "search", "--model", str(adder_dir), "--out", f"{specials}/dirlink",
                         "--quiet")
    assert_error(code, out, err, "is a symbolic link")
    assert os.listdir(f"{specials}/realdir") == []


# ---------------------------------------------------------------------------------------------------
# Training: a model is replaced only by a complete one


def interrupt_training_at(monkeypatch, step):
    """Make training stop (as if killed) once it has done `step` steps."""
    import arithlens.model.train as train_module

    real = train_module.train

    def stopping(spec, cfg, out_dir=None, *, device="cpu", resume=False, progress=None):
        def stop(done, info):
            if done == step:
                raise KeyboardInterrupt

        return real(spec, cfg, out_dir, device=device, resume=resume, progress=stop)

    monkeypatch.setattr(train_module, "train", stopping)


@pytest.mark.slow
def test_train_force_keeps_the_old_model_until_the_new_one_is_finished(monkeypatch, capsys, tmp_path, recipe):
    out = tmp_path / "run"
    assert run(monkeypatch, capsys, *TRAIN, "--config", recipe, "--out", str(out))[0] == 0
    old = (out / "model.safetensors").read_bytes(), json.loads((out / "model.json").read_text())
    (out / "keep.txt").write_text("the old run's file\n")

    with monkeypatch.context() as m:
        interrupt_training_at(m, 15)
        code, _, err = run(m, capsys, *TRAIN, "--config", recipe, "--lr", "0.002", "--out", str(out), "--force")
    assert code == 130
    assert (out / "model.safetensors").read_bytes() == old[0]  # the old model, untouched
    assert json.loads((out / "model.json").read_text()) == old[1]
    assert "partial" not in old[1]["training"]
    assert (out / "keep.txt").exists()

    # the interrupted replacement is resumable, and replaces the old model only when it is finished
    code, out_text, err = run(monkeypatch, capsys, *TRAIN, "--config", recipe, "--lr", "0.002", "--out", str(out),
                              "--force", "--resume")
    assert code == 0, err
    card = json.loads((out / "model.json").read_text())
    assert card["training"]["steps"] == 30 and card["training"]["config"]["lr"] == 0.002
    assert (out / "model.safetensors").read_bytes() != old[0]
    assert not (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.json", "run"]  # no stage left beside it


def test_a_partial_model_is_an_error_to_load_naming_its_step_and_resume(monkeypatch, capsys, tmp_path, recipe):
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        interrupt_training_at(m, 15)
        assert run(m, capsys, *TRAIN, "--config", recipe, "--out", str(out))[0] == 130
    code, text, err = run(monkeypatch, capsys, "eval", "--model", str(out), "--kind", "curated", "--quiet")
    assert_error(code, text, err, f"checkpoint '{out}' is a snapshot of an unfinished training run (step 10)")
    assert f"arithlens train --resume --out {out}" in err

    from arithlens.model import load_checkpoint

    assert load_checkpoint(out, allow_partial=True).extra["training"] == {"steps": 10, "partial": True}


def test_train_with_an_exploding_learning_rate_stops_with_an_error(monkeypatch, capsys, tmp_path, recipe):
    out = tmp_path / "run"
    code, text, err = run(monkeypatch, capsys, *TRAIN, "--config", recipe, "--lr", "1e30", "--out", str(out))
    assert_error(code, text, err, "training diverged at step")
    assert not (out / "model.safetensors").exists()


def test_non_finite_loss_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch):
    import arithlens.model.train as train_module
    from arithlens.errors import TrainingDivergedError

    real, calls = train_module.answer_loss, []

    def loss_goes_nan(model, tokens):
        loss, nll = real(model, tokens)
        calls.append(1)
        return (loss * float("nan"), nll) if len(calls) == 15 else (loss, nll)

    monkeypatch.setattr(train_module, "answer_loss", loss_goes_nan)
    spec = ModelSpec.parse("add_d3_l1_h1_t1K_s372001", d_model=16, d_head=8, d_mlp=16)
    with pytest.raises(TrainingDivergedError) as exc:
        train_module.train(spec, train_module.TrainConfig(**RECIPE), tmp_path)
    assert str(exc.value).startswith("training diverged at step 15: the loss became nan")
    assert f"the last finite checkpoint (step 10) is kept in '{tmp_path}'" in str(exc.value)
    monkeypatch.setattr(train_module, "answer_loss", real)
    resumed = train_module.train(spec, train_module.TrainConfig(**RECIPE), tmp_path, resume=True)
    assert resumed.history["eval"][-1]["step"] == 30
    assert all(bool(torch.isfinite(p).all()) for p in resumed.model.parameters())


def test_train_out_empty_is_refused(monkeypatch, capsys, tmp_path, recipe):
    monkeypatch.chdir(tmp_path)
    no_work(monkeypatch, "arithlens.model.train:train")
    code, out, err = run(monkeypatch, capsys, *TRAIN, "--config", recipe, "--out", "")
    assert_error(code, out, err, "--out is empty: give the output directory")
    assert sorted(os.listdir(tmp_path)) == ["recipe.json"]


@pytest.mark.parametrize("steps", ["--steps", "config"])
def test_train_steps_are_bounded_before_the_work(monkeypatch, capsys, tmp_path, steps):
    no_work(monkeypatch, "arithlens.model.train:train")
    config = tmp_path / "huge.json"
    config.write_text(json.dumps({**RECIPE, "steps": 10**30 if steps == "config" else 30}))
    extra = ["--steps", str(10**9)] if steps == "--steps" else []
    code, out, err = run(monkeypatch, capsys, *TRAIN, "--config", str(config), *extra, "--out", str(tmp_path / "r"))
    assert_error(code, out, err, "steps")
    assert "10000000" in err and not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------------
# Nothing guessed


@pytest.fixture
def mix_weights(tmp_path):
    return save_checkpoint(HookedTransformer(MIX, seed=2), MIX, tmp_path / "mix") / "model.safetensors"


def test_a_card_that_disagrees_with_the_weights_header_is_an_error(monkeypatch, capsys, adder_dir, mix_weights):
    shutil.copy(mix_weights, adder_dir / "model.safetensors")  # the card still says add
    code, out, err = run(monkeypatch, capsys, "eval", "--model", str(adder_dir), "--kind", "curated", "--quiet")
    assert_error(code, out, err, f"the model card '{adder_dir / 'model.json'}' says op 'add'")
    assert f"the header of '{adder_dir / 'model.safetensors'}' says 'mix'" in err


def test_a_file_named_as_an_adder_whose_header_says_mix_is_an_error(monkeypatch, capsys, tmp_path, mix_weights):
    named = tmp_path / f"{ADD_NAME}.safetensors"
    shutil.copy(mix_weights, named)
    code, out, err = run(monkeypatch, capsys, "eval", "--model", str(named), "--kind", "curated", "--quiet")
    assert_error(code, out, err, f"the file name '{named.name}' says {ADD_NAME} but its header says "
                                 "mix_d6_l1_h2_t1K_s372001")


def test_faithfulness_with_another_models_node_file_is_an_error(monkeypatch, capsys, adder_dir, tmp_path):
    no_work(monkeypatch, "arithlens.analysis.faithfulness:measure_faithfulness")
    nodes = tmp_path / "mix_d6_l3_h4_t10K_s372001_behavior.json"
    nodes.write_text(json.dumps(["P18L0H0"]))
    code, out, err = run(monkeypatch, capsys, "faithfulness", "--model", str(adder_dir), "--nodes", str(nodes),
                         "--quiet")
    assert_error(code, out, err, "was written for mix_d6_l3_h4_t10K_s372001, but the model is " + ADD_NAME)


@pytest.mark.parametrize("value", ["-1", "200"])
def test_search_min_attn_is_a_percent(monkeypatch, capsys, adder_dir, tmp_path, value):
    no_work(monkeypatch, "arithlens.analysis.search:search_model", "arithlens.analysis.useful:find_useful")
    code, out, err = run(monkeypatch, capsys, "search", "--model", str(adder_dir), "--out", str(tmp_path / "s"),
                         f"--min-attn={value}")
    assert_error(code, out, err, f"--min-attn must be between 0 and 100, not {value}")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("name", ["P١٨L0H0", "P１８L0H0", " P18L0H0"])
def test_node_names_must_be_ascii_as_written(monkeypatch, capsys, adder_dir, name):
    no_work(monkeypatch, "arithlens.analysis.node_study:study_node")
    code, out, err = run(monkeypatch, capsys, "node", name, "--model", str(adder_dir), "--quiet")
    assert_error(code, out, err, f"unknown node {name!r}")


@pytest.mark.parametrize("option", [["--digit", "3"], ["--case", "T8"], ["--qtype", "neg"], ["--high", "zero"]])
def test_questions_tricase_options_without_tricase_are_errors(monkeypatch, capsys, option):
    code, out, err = run(monkeypatch, capsys, "questions", *option)
    assert_error(code, out, err, f"{option[0]} applies to --kind tricase only, not --kind uniform")


def test_sweep_spec_seed_and_seeds_disagreeing_is_an_error(monkeypatch, capsys, tmp_path):
    no_work(monkeypatch, "arithlens.executor:executor")
    code, out, err = run(monkeypatch, capsys, "sweep", "--spec", "add_d6_l1_h1_t1K_s000001", "--seeds", "2",
                         "--out", str(tmp_path / "sw"))
    assert_error(code, out, err, "--spec 'add_d6_l1_h1_t1K_s000001' names seed 000001 while --seeds says '2'")
    assert not (tmp_path / "sw").exists()


# ---------------------------------------------------------------------------------------------------
# Bounds checked before the work


@pytest.mark.parametrize("threads", ["0", "-1"])
def test_atlas_threads_checked_before_anything(monkeypatch, capsys, adder_dir, tmp_path, threads):
    no_work(monkeypatch, "arithlens.executor:executor")
    code, out, err = run(monkeypatch, capsys, "atlas", "--models", str(adder_dir), "--out", str(tmp_path / "at"),
                         f"--threads={threads}", "--quiet")
    assert_error(code, out, err, f"--threads must be at least 1, not {threads}")
    assert not (tmp_path / "at").exists()


def test_atlas_config_nan_is_refused_before_anything(monkeypatch, capsys, adder_dir, tmp_path):
    no_work(monkeypatch, "arithlens.executor:executor")
    config = tmp_path / "config.json"
    config.write_text('{"faithfulness": NaN}')
    code, out, err = run(monkeypatch, capsys, "atlas", "--models", str(adder_dir), "--out", str(tmp_path / "at"),
                         "--config", str(config), "--quiet")
    assert_error(code, out, err, f"config '{config}': 'faithfulness' is nan, not a finite number")
    assert not (tmp_path / "at").exists()


def test_node_permutations_are_bounded(monkeypatch, capsys, adder_dir):
    no_work(monkeypatch, "arithlens.analysis.node_study:study_node")
    code, out, err = run(monkeypatch, capsys, "node", "P18L0H0", "--model", str(adder_dir), "--permutations",
                         str(10**14), "--quiet")
    assert_error(code, out, err, "--permutations must be between 0 and 100000, not 100000000000000")


# ---------------------------------------------------------------------------------------------------
# A legacy .pth: the error line is the only output


@pytest.mark.slow
def test_legacy_pth_error_is_the_only_line_on_stderr(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save(HookedTransformer(ADD, seed=1).state_dict(), path, _use_new_zipfile_serialization=False)
    done = subprocess.run([sys.executable, "-m", "arithlens.cli", "eval", "--model", str(path), "--quiet"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"error: cannot tell which operation '{path}' does")


def test_torch_warnings_while_reading_a_pth_never_reach_the_user(tmp_path, monkeypatch):
    """torch warns (on two lines) about some legacy files it reads; the error or the model is all a user sees."""
    import warnings

    from arithlens.errors import CheckpointError
    from arithlens.model import load_checkpoint

    path = tmp_path / "legacy.pth"
    torch.save(HookedTransformer(ADD, seed=1).state_dict(), path, _use_new_zipfile_serialization=False)
    real_load = torch.load

    def warning_load(*args, **kwargs):
        warnings.warn("TypedStorage is deprecated. It will be removed in the future", UserWarning, stacklevel=2)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", warning_load)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match="cannot tell which operation"):
            load_checkpoint(path)
    assert [str(w.message) for w in caught] == []
