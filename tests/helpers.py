"""Helpers shared by the test modules (importable: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from arithlens.cli import main


def arithlens(*args: str) -> subprocess.CompletedProcess:
    """Run `arithlens ARGS` in a fresh process, as a user would; stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-m", "arithlens.cli", *args], capture_output=True, text=True)


def arithlens_here(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `arithlens ARGS` in this process (fast; for commands that load small models): (exit code, out, err)."""
    monkeypatch.setattr(sys, "argv", ["arithlens", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    return exit_info.value.code or 0, out.out, out.err


# ---------------------------------------------------------------------------------------------------
# Comparing results with stored references across machines

# Why floats get a tolerance: the models run in float32, and a float32 sum's last bits depend on the order
# of its terms, which changes with the CPU's SIMD width (AVX2 vs AVX-512/AMX), the kernel torch picks, the
# thread count and BLAS. Those ~1e-7 relative differences flow through means, PCA, probes and cosines into
# the float64 figures we store (the issue saw 0.9779435379946142 vs 0.9779435382480445 on AVX-512), and a
# figure stored rounded (PCA scores to 5 decimals) can flip its last digit: 1e-5 absolute. Measured on the
# reference node study (tests/data/cli_reference) under ATEN_CPU_CAPABILITY=default (torch's non-SIMD kernels,
# a much larger change of summation order than AVX2 -> AVX-512): 529 floats differ from the AVX2 run, at most
# 1e-5 absolute, at most 1.7e-5 relative for values above 0.1 (1.3e-4 for one near 0.009). So: 1e-4 relative
# or 5e-5 absolute, still far below any real change (one more or one fewer question moves a rate by >= 1e-4
# absolute, a permutation p-value by 1e-2). Decisions (tags, verdicts, node sets, strings, ints, bools) compare
# exactly; no decision differed in that run.
REL_TOL = 1e-4
ABS_TOL = 5e-5


def json_differences(actual, expected, *, rel: float = REL_TOL, abs_tol: float = ABS_TOL, path: str = "") -> list[str]:
    """Where two JSON values differ: floats beyond `rel`/`abs_tol` (NaN equals NaN), anything else (keys, list
    lengths, strings, ints, bools, None) when not exactly equal. Empty when they match."""
    import math

    if isinstance(actual, dict) and isinstance(expected, dict):
        if actual.keys() != expected.keys():
            return [f"{path or '.'}: keys differ {sorted(map(str, actual.keys() ^ expected.keys()))}"]
        return [d for k in expected for d in json_differences(actual[k], expected[k], rel=rel, abs_tol=abs_tol,
                                                              path=f"{path}.{k}")]
    if isinstance(actual, list) and isinstance(expected, list):
        if len(actual) != len(expected):
            return [f"{path or '.'}: {len(actual)} vs {len(expected)} items"]
        return [d for i, (a, e) in enumerate(zip(actual, expected))
                for d in json_differences(a, e, rel=rel, abs_tol=abs_tol, path=f"{path}[{i}]")]
    numbers = (int, float)
    if (isinstance(actual, float) or isinstance(expected, float)) and isinstance(actual, numbers) \
            and isinstance(expected, numbers) and not isinstance(actual, bool) and not isinstance(expected, bool):
        if math.isnan(actual) and math.isnan(expected) or math.isclose(actual, expected, rel_tol=rel, abs_tol=abs_tol):
            return []
        return [f"{path or '.'}: {actual!r} vs {expected!r}"]
    if type(actual) is not type(expected) or actual != expected:
        return [f"{path or '.'}: {actual!r} vs {expected!r}"]
    return []


def assert_json_close(actual, expected, **tolerances) -> None:
    """Fail with the first few differences when `actual` and `expected` differ (see `json_differences`)."""
    found = json_differences(actual, expected, **tolerances)
    assert not found, f"{len(found)} differences, first: " + "; ".join(found[:5])


def json_layout(text: str) -> str:
    """JSON text with every float literal replaced by `F`: two files with the same layout, keys and order, whose
    floats may differ in their last digits, have the same layout."""
    import re

    return re.sub(r"-?\d+\.\d+(?:[eE][-+]?\d+)?|-?\d+[eE][-+]?\d+", "F", text)


_KILLED_TRAINING = """
import os, signal, sys, torch
from arithlens.model import ModelSpec
from arithlens.model.train import TrainConfig, train
torch.set_num_threads(1)
spec = ModelSpec.parse({spec!r}, d_model=32, d_head=8, d_mlp=64)
cfg = TrainConfig(**{config!r})
out, kill_at, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"

def progress(step, info):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

train(spec, cfg, out, resume=resume, progress=progress)
"""


def kill_and_resume(tmp_path, spec: str, config: dict, kill_at: int) -> tuple[dict, dict]:
    """Train `spec` (d_model 32) with `config` once straight through (`tmp_path/full`) and once SIGKILLed at step
    `kill_at` then resumed (`tmp_path/cut`), each in its own process; returns both `training.json` histories after
    checking that the killed run died by signal 9 and that the two final checkpoints are identical bit for bit."""
    import json

    import torch

    from arithlens.model.checkpoint import load_checkpoint

    script = _KILLED_TRAINING.format(spec=spec, config=config)

    def run(out, kill, resume):
        return subprocess.run([sys.executable, "-c", script, str(out), str(kill), "1" if resume else "0"])

    assert run(tmp_path / "full", -1, False).returncode == 0
    assert run(tmp_path / "cut", kill_at, False).returncode == -9
    assert run(tmp_path / "cut", -1, True).returncode == 0
    full = load_checkpoint(tmp_path / "full").model.state_dict()
    resumed = load_checkpoint(tmp_path / "cut").model.state_dict()
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)
    return (json.loads((tmp_path / "full" / "training.json").read_text()),
            json.loads((tmp_path / "cut" / "training.json").read_text()))
