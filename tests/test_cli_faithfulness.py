"""`arithlens faithfulness` and `arithlens circuit` on a saved planted model."""

from __future__ import annotations

import json

from helpers import arithlens
from planted import BACKUP_SPEC, backup_heads_model

from arithlens.model import save_checkpoint


def test_faithfulness_of_a_node_file_as_json(tmp_path):
    save_checkpoint(backup_heads_model(), BACKUP_SPEC, tmp_path / "planted")
    (tmp_path / "pair.txt").write_text("P5L0H0 P5L0H1\n")
    out = tmp_path / "res" / "pair.json"
    proc = arithlens("faithfulness", "--model", str(tmp_path / "planted"), "--nodes", str(tmp_path / "pair.txt"),
                     "--questions", "200", "--json", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["nodes"] == ["P5L0H0", "P5L0H1"] and data["n_all"] == 28 and data["file"] == str(out)
    (row,) = data["qtypes"]
    assert row["qtype"] == "ADD" and row["n"] == 200
    # Uniform a+b questions: the planted adder only knows a+0, so it is right about one time in ten (b = 0),
    # and those it keeps right with the pair alone.
    assert 0 < row["clean_correct"] < 60 and row["correct"] == row["clean_correct"]
    assert json.loads(out.read_text())["qtypes"][0]["correct"] == row["correct"]


def test_bad_input_is_one_line_exit_2(tmp_path):
    save_checkpoint(backup_heads_model(), BACKUP_SPEC, tmp_path / "planted")
    (tmp_path / "bad.txt").write_text("P5L3H0\n")
    model = str(tmp_path / "planted")
    for args in (["faithfulness", "--nodes", str(tmp_path / "bad.txt")],
                 ["faithfulness", "--nodes", str(tmp_path / "missing.txt")],
                 ["faithfulness", "--nodes", "useful", "--ablation", "zero", "--quiet"],
                 ["circuit", "--out", str(tmp_path / "c"), "--quiet"]):  # uniform questions: below the target
        proc = arithlens(*args, "--model", model)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "c").exists()
