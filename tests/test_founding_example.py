"""scripts/founding_example.py on a folder holding a real study record: the founding answer first, each probe
figure labelled with its probe, the patched digit named (never "None"), and patching that could not run said so."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import founding_example  # noqa: E402

RECORD = json.loads((ROOT / "tests" / "data" / "cli_reference" / "P18L0H3_study.json").read_text())


def test_founding_example_reads_a_folder(tmp_path, capsys):
    model = RECORD["model"]
    (tmp_path / "analysis.json").write_text(json.dumps({"model": model}))
    (tmp_path / f"{model}_search.json").write_text(json.dumps({"coverage": {"line": "coverage line"}, "tags": {},
                                                                "trials": []}))
    (tmp_path / "P18L0H3_study.json").write_text(json.dumps(RECORD))
    unpatched = copy.deepcopy(RECORD)
    unpatched.update(node="P18L0H2", head=2)
    unpatched["sufficiency"] = {"applicable": False, "reason": "the model answers none of the candidate clean questions right"}
    (tmp_path / "P18L0H2_study.json").write_text(json.dumps(unpatched))
    founding_example.main(str(tmp_path))
    out = capsys.readouterr().out
    assert "None" not in out
    assert out.splitlines()[1] == (f"In {model} no layer-0 head at P18 does carry and borrow; no studied head at P18 "
                                   "does either.")
    assert "patching moves A2 as predicted in: ADD 0.0% / SUB 0.0% / NEG 0.0%" in out
    assert "patching not applicable: the model answers none of the candidate clean questions right" in out
    # P18L0H3's ADD carry probe 80.0% < its pair probe 97.8%: the figure shown is the pair probe's, and says so
    assert "ADD 97.8% (pair probe)" in out
