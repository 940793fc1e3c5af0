"""scripts/mul_curves.py: the per-digit table from a run's training.json, its refusal of a run without it, and the
docs block rendered from the stored curves."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mul_curves.py"


def curves():
    spec = importlib.util.spec_from_file_location("mul_curves", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(path: Path, evals: list[dict]) -> Path:
    path.mkdir()
    (path / "training.json").write_text(json.dumps({"loss": [1.0] * 500, "seconds": 250.0, "eval": evals}))
    return path


def test_table_has_a_row_per_evaluation_with_the_sign_last():
    digits = {"A7": 1.0, "A6": 1.0, "A5": 0.9, "A4": 0.5, "A3": 0.1, "A2": 0.11, "A1": 0.2, "A0": 0.995,
              "exact": 0.002}
    module = curves()
    run = {"name": "r", "evals": [{"step": 250, "mul_digits": digits}, {"step": 500, "mul_digits": digits}]}
    lines = module.table(run).splitlines()
    assert lines[0] == "| step | exact | A6 | A5 | A4 | A3 | A2 | A1 | A0 | A7 (sign) |"
    assert lines[2] == "| 250 | 0.2 | 100.0 | 90.0 | 50.0 | 10.0 | 11.0 | 20.0 | 99.5 | 100.0 |"
    assert len(lines) == 4


def test_a_run_without_mul_evaluations_is_refused(tmp_path):
    run = write_run(tmp_path / "mix", [{"step": 250, "wrong": 3, "questions": 100}])
    with pytest.raises(SystemExit, match="has no per-digit MUL evaluations"):
        curves().load(run)
    ok = write_run(tmp_path / "mul", [{"step": 250, "mul_digits": {"A0": 1.0, "exact": 0.5}}])
    assert curves().load(ok)["steps"] == 500


def test_the_docs_block_is_rendered_from_the_stored_curves():
    """docs/multiplication.md's tables are exactly what the stored run histories give."""
    module = curves()
    page = module.DOC.read_text()
    block = page.split(module.START + "\n", 1)[1].split("\n" + module.END, 1)[0]
    assert block == module.render(json.loads(module.RESULTS.read_text()))
