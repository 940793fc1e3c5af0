"""The CLI's JSON is unchanged in content by the API layered over the analyses: `tests/data/cli_reference/`
holds what the code before the API wrote for reduced options on the default model (see its README)."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import arithlens_here, assert_json_close

REFERENCE = Path(__file__).parent / "data" / "cli_reference"


def test_cli_node_study_json_is_unchanged(tmp_path, monkeypatch, capsys):
    code, _, err = arithlens_here(monkeypatch, capsys, "node", "P18L0H3", "--questions", "30", "--pairs", "20",
                                  "--permutations", "5", "--out", str(tmp_path), "--quiet")
    assert code == 0, err
    written = json.loads((tmp_path / "P18L0H3_study.json").read_text())
    # floats within the summation-order tolerance of helpers.REL_TOL (another CPU family adds up in another
    # order); every tag, verdict, count and string exactly
    assert_json_close(written, json.loads((REFERENCE / "P18L0H3_study.json").read_text()))


def test_cli_node_json_on_stdout_is_the_study_plus_its_files(monkeypatch, capsys):
    code, out, err = arithlens_here(monkeypatch, capsys, "node", "P18L0H3", "--questions", "30", "--pairs", "20",
                                    "--permutations", "5", "--json")
    assert code == 0, err
    printed = json.loads(out)
    assert printed.pop("files") == []
    assert_json_close(printed, json.loads((REFERENCE / "P18L0H3_study.json").read_text()))
