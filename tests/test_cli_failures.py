"""Every command against every class of failure: bad values, unwritable, missing and full targets, a kill -9
mid-run, two runs into one folder. Each must exit 2 with exactly one stderr line `error: ...`, no traceback,
the target unchanged or absent and no leftovers beside it."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import arithlens_here
from test_useful import SPEC, planted_model

from arithlens.model import HookedTransformer, ModelSpec, save_checkpoint

TINY_TRAIN = ["--spec", "add_d2_l1_h1_t1K_s000001", "--d-model", "8", "--d-head", "4", "--d-mlp", "8",
              "--steps", "4", "--batch-size", "8", "--quiet"]
TRAIN_CONFIG = {"eval_every": 2, "eval_questions": 20, "checkpoint_every": 2, "warmup_steps": 1}


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """The planted adder of test_useful: right on a + 0, so every analysis command has something to do."""
    return save_checkpoint(planted_model(), SPEC, tmp_path_factory.mktemp("models") / "planted")


def run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.delenv("ARITHLENS_DEBUG", raising=False)
    return arithlens_here(monkeypatch, capsys, *args)


def assert_one_line_error(code: int, err: str, *, contains: str = "") -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert contains in err, err


def listing(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) with a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "arithlens.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def wait_for(predicate, proc: subprocess.Popen, seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        assert proc.poll() is None, f"the run ended before the awaited moment: {proc.communicate()}"
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.02)


def stages(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if ".arithlens-stage-" in p.name]


def owner_written(parent: Path) -> bool:
    """A stage whose owner record (PID, command) is on disk: from then on a second run can name the first."""
    for stage in stages(parent):
        try:
            json.loads((stage / "owner.json").read_text())
            return True
        except (OSError, ValueError):
            pass
    return False


# ---------------------------------------------------------------------------------------------------
# Bad values: refused at the edge, before anything is loaded or written


def _commands_with(option: str) -> list[tuple[str, ...]]:
    """Each command taking `option`, with the arguments it needs otherwise (--out is OUT)."""
    base = {
        "questions": ("questions",),
        "useful": ("useful", "--out", "OUT"),
        "search": ("search", "--out", "OUT"),
        "analyze": ("analyze", "--out", "OUT"),
        "node": ("node", "P5L0H0", "--out", "OUT"),
        "eval": ("eval", "--out", "OUT"),
        "train": ("train", "--spec", "add_d2_l1_h1_t1K_s000001", "--out", "OUT"),
    }
    takes = {"--threads": ["useful", "search", "analyze", "node", "eval", "train"],
             "--seed": ["questions", "useful", "search", "analyze", "node", "eval"],
             "--device": ["useful", "search", "analyze", "node", "eval", "train"]}[option]
    return [base[c] for c in takes]


BAD_VALUES = (
    [(args, "--threads", v, "--threads must be between 1 and") for args in _commands_with("--threads")
     for v in ("-1", "0", "999")]
    + [(args, "--seed", "-1", "--seed must be at least 0, not -1") for args in _commands_with("--seed")]
    + [(("questions",), "--count", "-1", "--count must be at least 0"),
       (("questions",), "--digits", "abc", "Invalid value for '--digits'"),
       (("questions",), "--op", "div", "Invalid value for '--op'"),
       (("questions",), "--nope", "1", "No such option"),
       (("eval", "--out", "OUT"), "--questions", "-5", "--questions must be at least 0"),
       (("search", "--out", "OUT"), "--pairs", "0", "--pairs must be at least 1, not 0"),
       (("node", "P5L0H0", "--out", "OUT"), "--questions", "5", "--questions must be at least 10"),
       (("train", "--spec", "add_d2_l1_h1_t1K_s000001", "--out", "OUT"), "--steps", "0", "--steps must be at least 1"),
       (("train", "--spec", "add_d2_l1_h1_t1K_s000001", "--out", "OUT"), "--lr", "nan", "--lr must be a finite"),
       (("train", "--spec", "add_d2_l1_h1_t1K_s000001", "--out", "OUT"), "--batch-size", "0",
        "--batch-size must be at least 1")]
)


@pytest.mark.parametrize("args, option, value, message", BAD_VALUES,
                         ids=[f"{a[0]}{o}={v}" for a, o, v, _ in BAD_VALUES])
def test_bad_values_are_one_line_errors_before_any_work(tmp_path, monkeypatch, capsys, args, option, value, message):
    out = tmp_path / "out"
    argv = [str(out) if a == "OUT" else a for a in args]
    code, stdout, err = run(monkeypatch, capsys, *argv, "--model", "no/such/model", option, value) \
        if args[0] not in ("questions", "train") else run(monkeypatch, capsys, *argv, option, value)
    assert_one_line_error(code, err, contains=message)
    assert stdout == "" and not out.exists() and list(tmp_path.iterdir()) == []


def test_threads_error_says_what_the_limit_is(monkeypatch, capsys):
    from arithlens.validate import usable_cores

    code, _, err = run(monkeypatch, capsys, "useful", "--out", "x", "--threads", "999")
    assert_one_line_error(code, err, contains=f"this machine lets this process use {usable_cores()} cores")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("args", _commands_with("--device"), ids=lambda a: a[0])
def test_device_cuda_without_cuda_is_a_one_line_error(tmp_path, monkeypatch, capsys, planted, args):
    out = tmp_path / "out"
    argv = [str(out) if a == "OUT" else a for a in args]
    extra = () if args[0] == "train" else ("--model", str(planted))
    code, _, err = run(monkeypatch, capsys, *argv, *extra, "--device", "cuda")
    assert_one_line_error(code, err, contains="no CUDA device is available")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_help_stays_rich_and_exits_0(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "questions", "--help")
    assert code == 0 and "Usage: arithlens questions" in out and "╭" in out


@pytest.fixture(scope="module")
def six_digits(tmp_path_factory) -> Path:
    """A small random 6-digit model: 10**9 necessity questions exist for it (a 2-digit model has 10**4)."""
    spec = ModelSpec.parse("mix_d6_l1_h2_t1K_s000001", d_model=16, d_head=4, d_mlp=16)
    return save_checkpoint(HookedTransformer(spec, seed=0), spec, tmp_path_factory.mktemp("models") / "six")


@pytest.mark.parametrize("args, per_item", [
    (("useful", "--questions", str(10**9)), "useful-node sweep"),
    (("node", "P18L0H1", "--questions", str(10**9)), "necessity questions"),
    (("analyze", "--questions", str(10**9)), "useful-node sweep"),
    (("search", "--pairs", str(10**9)), "patching pairs"),
])
def test_counts_that_cannot_fit_are_refused_up_front_with_the_estimate(tmp_path, monkeypatch, capsys, six_digits,
                                                                         args, per_item):
    code, _, err = run(monkeypatch, capsys, *args, "--model", str(six_digits), "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, contains=f"needs about")
    assert per_item in err and "GB" in err and "ask for at most about" in err
    assert list(tmp_path.iterdir()) == []


def test_the_faithfulness_check_is_sized_by_its_chunk_not_by_the_question_count(monkeypatch):
    """The faithfulness stage runs 2,048 questions at a time: a reference-size model (d_model 510) with the
    default 2,000 per qtype must not be refused on a 24 GB machine, and only a chunk that cannot fit is."""
    import arithlens.validate as validate
    from arithlens.analysis.faithfulness import CHUNK
    from arithlens.errors import ArithLensError

    ref = ModelSpec.parse("mix_d6_l3_h4_t10K_s372001", d_model=510, d_head=170, d_mlp=2040)
    each = validate.forward_bytes(ref)
    monkeypatch.setattr(validate, "available_memory", lambda: 24e9)
    assert validate.check_chunked_memory("--faithfulness", 2000, 3, CHUNK, each, "x") == 2000
    assert validate.check_chunked_memory("--faithfulness", 10**7, 3, CHUNK, each, "x") == 10**7
    with pytest.raises(ArithLensError, match="the check"):
        validate.check_memory("--faithfulness", 2000, 3 * each, "the check")  # the old, unchunked estimate refused it
    monkeypatch.setattr(validate, "available_memory", lambda: 0.5 * CHUNK * each)
    with pytest.raises(ArithLensError, match=f"one pass over {CHUNK:,} questions needs about"):
        validate.check_chunked_memory("--faithfulness", 2000, 3, CHUNK, each, "the faithfulness check")
    assert validate.check_chunked_memory("--faithfulness", 10, 3, CHUNK, each, "x") == 10  # 30 questions fit


# ---------------------------------------------------------------------------------------------------
# The train config: one schema


@pytest.mark.parametrize("config, message", [
    ({"steps": "abc"}, "'steps': input should be a valid integer"),
    ({"steps": 10.5}, "'steps': input should be a valid integer"),
    ({"steps": True}, "'steps': input should be a valid integer"),
    ({"steps": 0}, "'steps': input should be greater than or equal to 1"),
    ({"steps": -1}, "'steps': input should be greater than or equal to 1"),
    ({"lr": "fast"}, "'lr': input should be a valid number"),
    ({"lr": -1}, "'lr': input should be greater than 0"),
    ({"lr": float("nan")}, "'lr': input should be a finite number"),
    ({"batch_size": 0}, "'batch_size': input should be greater than or equal to 1"),
    ({"checkpoint_every": 0}, "'checkpoint_every': input should be greater than or equal to 1"),
    ({"spec": [1, 2]}, "'spec' must be an object of size overrides"),
    ({"spec": {"perc_sub": "many"}}, "perc_sub"),
    ({"stepz": 3}, "'stepz': unknown field"),
    ([{"steps": 3}], "must hold a JSON object of recipe fields, not a list"),
], ids=lambda v: json.dumps(v)[:40])
def test_train_config_goes_through_one_schema(tmp_path, monkeypatch, capsys, config, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    out = tmp_path / "out"
    code, _, err = run(monkeypatch, capsys, "train", *TINY_TRAIN, "--out", str(out), "--config", str(path))
    assert_one_line_error(code, err, contains=message)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


# ---------------------------------------------------------------------------------------------------
# Targets that cannot be written: checked before the work


def _target_commands(planted: Path, target: Path) -> dict[str, tuple[str, ...]]:
    m = ("--model", str(planted))
    return {
        "useful": ("useful", *m, "--out", str(target), "--quiet"),
        "search": ("search", *m, "--out", str(target), "--quiet", "--pairs", "5"),
        "analyze": ("analyze", *m, "--out", str(target), "--quiet"),
        "node": ("node", "P7L0H1", *m, "--out", str(target), "--quiet"),
        "train": ("train", *TINY_TRAIN, "--out", str(target)),
        "convert": ("convert", str(planted), str(target)),
    }


@pytest.mark.parametrize("command", ["useful", "search", "analyze", "node", "train", "convert"])
def test_out_that_is_a_file_is_refused_and_left_unchanged(tmp_path, monkeypatch, capsys, planted, command):
    target = tmp_path / "out"
    target.write_text("precious")
    code, _, err = run(monkeypatch, capsys, *_target_commands(planted, target)[command])
    assert_one_line_error(code, err, contains="is a file, not a directory")
    assert target.read_text() == "precious" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_eval_out_that_is_a_directory_is_refused(tmp_path, monkeypatch, capsys, planted):
    (tmp_path / "out").mkdir()
    code, _, err = run(monkeypatch, capsys, "eval", "--model", str(planted), "--questions", "10", "--quiet",
                       "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, contains="is a directory, not a file")
    assert listing(tmp_path) == {"out": "dir"}


@pytest.mark.parametrize("command", ["useful", "node", "train", "convert"])
def test_out_under_proc_or_under_a_file_is_refused_before_the_work(tmp_path, monkeypatch, capsys, planted, command):
    code, _, err = run(monkeypatch, capsys, *_target_commands(planted, Path("/proc/arithlens-test/out"))[command])
    assert_one_line_error(code, err, contains="/proc")
    (tmp_path / "file").write_text("x")
    code, _, err = run(monkeypatch, capsys, *_target_commands(planted, tmp_path / "file" / "sub" / "out")[command])
    assert_one_line_error(code, err, contains="is a file, so the folder cannot be created")
    assert listing(tmp_path) == {"file": listing(tmp_path)["file"]}


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 96 kB tmpfs (skipped where mount is not allowed): too small for the maps, big enough to start."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


FULL_DISK = ["useful", "node", "convert", "eval", "train"]


def _full_disk_args(planted: Path, target: Path, command: str) -> tuple[str, ...]:
    if command == "eval":
        return ("eval", "--model", str(planted), "--questions", "10", "--kind", "uniform", "--quiet", "--out",
                str(target / "eval.json"))
    return _target_commands(planted, target / "out")[command]


@pytest.mark.parametrize("command", FULL_DISK)
def test_a_full_disk_is_a_one_line_error_that_leaves_nothing(monkeypatch, capsys, planted, small_tmpfs, command):
    filler = small_tmpfs / "filler"
    with open(filler, "wb") as f:  # fill the disk but one page: the folders fit, the files do not
        try:
            f.write(b"\0" * 96 * 1024)
        except OSError:
            pass
    size = filler.stat().st_size
    filler.write_bytes(b"\0" * max(0, size - 4 * 1024))
    before = listing(small_tmpfs)
    code, _, err = run(monkeypatch, capsys, *_full_disk_args(planted, small_tmpfs, command))
    assert_one_line_error(code, err, contains="disk is full")
    assert listing(small_tmpfs) == before


@pytest.mark.parametrize("command", FULL_DISK)
def test_enospc_at_write_time_is_a_one_line_error_that_leaves_nothing(tmp_path, monkeypatch, capsys, planted,
                                                                       command):
    """Where mount is not allowed: every atomic write fails at fsync the way a full disk makes it."""
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("arithlens.io.os.fsync", full)
    # the target's parents do not exist yet: the ones this run creates go too
    code, _, err = run(monkeypatch, capsys, *_full_disk_args(planted, tmp_path / "new" / "parent", command))
    assert_one_line_error(code, err, contains="disk is full")
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_mount_is_refused_before_the_work(tmp_path, monkeypatch, capsys, planted):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        for command in ("useful", "train", "convert"):
            code, _, err = run(monkeypatch, capsys, *_target_commands(planted, mnt / "out")[command])
            assert_one_line_error(code, err, contains="read-only")
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# ---------------------------------------------------------------------------------------------------
# Killed runs and concurrent runs (subprocesses)


def test_kill_9_mid_run_leaves_nothing_the_next_run_does_not_clean(tmp_path, planted):
    out = tmp_path / "out"
    args = ("useful", "--model", str(planted), "--out", str(out), "--questions", "20000", "--quiet")
    proc = cli(*args)
    wait_for(lambda: stages(tmp_path), proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and stages(tmp_path)  # the dead run's stage is there, the target is not
    done = subprocess.run([sys.executable, "-m", "arithlens.cli", *args[:-3], "--questions", "300", "--quiet"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / f"{SPEC.name}_behavior.json").is_file()


def test_a_second_run_into_a_folder_in_use_is_refused_naming_the_first(tmp_path, planted):
    out = tmp_path / "out"
    first = cli("useful", "--model", str(planted), "--out", str(out), "--questions", "3000", "--seed", "1", "--quiet")
    wait_for(lambda: owner_written(tmp_path), first)  # the stage and its owner record: the stage appears first
    os.kill(first.pid, signal.SIGSTOP)  # hold the first run inside its work while the second one starts
    try:
        second = subprocess.run([sys.executable, "-m", "arithlens.cli", "useful", "--model", str(planted), "--out",
                                 str(out), "--questions", "3000", "--seed", "2", "--quiet"], capture_output=True,
                                text=True)
    finally:
        os.kill(first.pid, signal.SIGCONT)  # never leave a stopped process behind, whatever the second run did
    assert_one_line_error(second.returncode, second.stderr, contains=f"is in use by another run (PID {first.pid}: ")
    assert "--seed 1" in second.stderr
    assert first.wait(timeout=300) == 0, first.communicate()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    saved = json.loads((out / f"{SPEC.name}_behavior.json").read_text())
    assert [(n["position"], n["num"]) for n in saved] == [(7, 1), (8, 0)]


KILL_IN_CHECKPOINT_WRITE = """
import os, signal, sys
import arithlens.io as io
real = os.replace
def replace(src, dst, *a, **k):
    if str(dst).endswith("model.safetensors"):  # the temporary file is written; die before the rename
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *a, **k)
io.os.replace = replace
sys.argv = ["arithlens", *sys.argv[1:]]
from arithlens.cli import main
main()
"""


def test_train_killed_in_a_checkpoint_write_leaves_no_tmp_after_the_next_run(tmp_path):
    out, config = tmp_path / "out", tmp_path / "config.json"
    config.write_text(json.dumps(TRAIN_CONFIG))
    args = [*TINY_TRAIN, "--out", str(out), "--config", str(config)]
    killed = subprocess.run([sys.executable, "-c", KILL_IN_CHECKPOINT_WRITE, "train", *args], capture_output=True)
    assert killed.returncode == -9
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # the kill left its temporary file
    done = subprocess.run([sys.executable, "-m", "arithlens.cli", "train", *args, "--resume"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "out"]


# ---------------------------------------------------------------------------------------------------
# train never destroys a model


def test_train_keeps_a_finished_model_byte_identical_without_force(tmp_path, monkeypatch, capsys):
    out, config = tmp_path / "out", tmp_path / "config.json"
    config.write_text(json.dumps(TRAIN_CONFIG))
    args = ("train", *TINY_TRAIN, "--out", str(out), "--config", str(config))
    assert run(monkeypatch, capsys, *args)[0] == 0
    before = listing(tmp_path)
    code, _, err = run(monkeypatch, capsys, *args[:-2])  # no --config: another recipe, same folder
    assert_one_line_error(code, err, contains="already holds a trained model: pass --resume")
    assert listing(tmp_path) == before
    code, _, err = run(monkeypatch, capsys, *args, "--steps", "2", "--force")
    assert code == 0, err
    assert json.loads((out / "model.json").read_text())["training"]["steps"] == 2


def test_train_resume_with_nothing_to_resume_creates_no_out(tmp_path, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "train", *TINY_TRAIN, "--out", str(tmp_path / "out"), "--resume")
    assert_one_line_error(code, err, contains="nothing to resume")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# Loading: no guessed operation, no NaN weights, random bytes named for what they are


def _tl_state(model: HookedTransformer) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("case, message", [
    ("unnamed", "cannot tell which operation"),
    ("nan", "non-finite values (NaN or inf)"),
    ("random", "not a PyTorch file at all"),
])
def test_models_that_cannot_be_trusted_are_refused_by_every_command(tmp_path, monkeypatch, capsys, case, message):
    spec = ModelSpec.parse("mix_d2_l1_h2_t1K_s000001", d_model=16, d_head=4, d_mlp=16)
    state = _tl_state(HookedTransformer(spec, seed=0))
    name = {"unnamed": "weights.pth", "nan": f"{spec.name}.pth", "random": f"{spec.name}.pth"}[case]
    path = tmp_path / name
    if case == "nan":
        state["blocks.0.mlp.W_in"][0, 0] = float("nan")
    torch.save(state, path)
    if case == "random":
        path.write_bytes(bytes(range(1, 200)) * 3)
    for args in (("eval", "--questions", "10", "--quiet"), ("useful", "--out", str(tmp_path / "out"), "--quiet"),
                 ("convert", str(path), str(tmp_path / "out"))):
        code, _, err = run(monkeypatch, capsys, *args, *(() if args[0] == "convert" else ("--model", str(path))))
        assert_one_line_error(code, err, contains=message)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


# ---------------------------------------------------------------------------------------------------
# Tracebacks only on request; questions streamed


def test_debug_option_and_variable_show_the_traceback(monkeypatch, capsys):
    code, _, err = arithlens_here(monkeypatch, capsys, "--debug", "questions", "--kind", "tricase")
    assert code == 2 and "Traceback" in err and err.splitlines()[-1] == "error: --kind tricase needs --digit"
    monkeypatch.setenv("ARITHLENS_DEBUG", "1")
    code, _, err = arithlens_here(monkeypatch, capsys, "questions", "--kind", "tricase")
    assert code == 2 and "Traceback" in err
    monkeypatch.setenv("ARITHLENS_DEBUG", "0")
    code, _, err = arithlens_here(monkeypatch, capsys, "questions", "--kind", "tricase")
    assert_one_line_error(code, err, contains="--kind tricase needs --digit")


def test_unexpected_errors_are_one_line_too(monkeypatch, capsys):
    def boom(*a, **k):
        raise MemoryError()

    monkeypatch.setattr("arithlens.arith.uniform", boom)
    code, _, err = run(monkeypatch, capsys, "questions", "--count", "3")
    assert_one_line_error(code, err, contains="out of memory")


def test_questions_stream_in_chunks_drawn_in_order_from_one_generator(monkeypatch, capsys):
    import arithlens.commands.questions as questions

    code, whole, _ = run(monkeypatch, capsys, "questions", "--count", "7", "--seed", "4", "--json")
    assert code == 0
    monkeypatch.setattr(questions, "CHUNK", 7)
    code, chunked, _ = run(monkeypatch, capsys, "questions", "--count", "20", "--seed", "4", "--json")
    lines = chunked.splitlines()
    assert code == 0 and len(lines) == 20 and len(set(lines)) == 20
    assert lines[:7] == whole.splitlines()  # a count up to one chunk gives the questions it always gave
    code, table, _ = run(monkeypatch, capsys, "questions", "--count", "20", "--seed", "4")
    assert table.splitlines()[0].startswith("question") and len(table.splitlines()) == 21
