"""The docs' circuit figures (docs/circuits.md): the block matches the stored results, and (slow) the stored results match a
fresh run on the shipped default model."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from helpers import json_differences

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("circuit_figures", ROOT / "scripts" / "circuit_figures.py")
figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(figures)


def _stored() -> dict:
    return json.loads(figures.RESULTS.read_text())


def test_docs_block_is_rendered_from_the_stored_figures():
    text = figures.DOC.read_text()
    block = re.search(re.escape(figures.START) + r"\n(.*?)\n" + re.escape(figures.END), text, re.S)
    assert block is not None
    assert block[1] == figures.render(_stored())


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _same(a, b) -> list[str]:
    """Where two JSON values differ: floats beyond helpers.REL_TOL (a fresh run on another CPU family adds up in
    another order), everything else exactly."""
    return json_differences(a, b)


def test_comparison_finds_a_changed_figure():
    stored = _without_times(_stored())
    assert _same(stored, stored) == []
    changed = json.loads(json.dumps(stored))
    changed["circuit"]["validation"][0]["qtypes"][0]["correct"] += 1
    changed["table"][1]["qtypes"][2]["loss"] *= 1.001
    assert len(_same(stored, changed)) == 2


@pytest.mark.regen  # ~10 min on 2 idle cores: `python -m pytest -m regen`
def test_stored_figures_match_a_fresh_run_of_the_shipped_model():
    fresh = figures.compute()
    assert _same(_without_times(fresh), _without_times(_stored())) == []


_seeds_spec = importlib.util.spec_from_file_location("atlas_seeds", ROOT / "scripts" / "atlas_seeds.py")
seeds = importlib.util.module_from_spec(_seeds_spec)
_seeds_spec.loader.exec_module(seeds)


def test_docs_seed_table_is_rendered_from_the_stored_atlas():
    """The founding-question-across-seeds table (docs/many-models.md) is `scripts/atlas_seeds.py`'s rendering of the committed
    extract of the atlas run (benchmarks/results/atlas_seeds.json), whose models are shipped."""
    from arithlens.model.zoo import list_models

    stored = json.loads(seeds.RESULTS.read_text())
    text = seeds.DOC.read_text()
    block = re.search(re.escape(seeds.START) + r"\n(.*?)\n" + re.escape(seeds.END), text, re.S)
    assert block is not None and block[1] == seeds.render(stored)
    shipped = {m.name for m in list_models()}
    assert {m["name"] for m in stored["models"]} <= shipped
    assert stored["headline"].endswith(f"of {sum(not m['reference'] for m in stored['models'])} models use one "
                                       "layer-0 head for carry and borrow at A2")


def test_seed_table_extract_reads_an_atlas_folder(tmp_path):
    """extract(): the holders are the studied heads at A2's position with a carry/borrow role, any layer, with
    their resample and patching figures; the device comes from each model's card."""

    def rate(x):
        return {"rate": x, "ci": [x / 2, min(1.0, x * 1.5)], "n": 100, "k": int(100 * x)}

    def study(node, layer, roles):
        return {"node": node, "kind": "head", "layer": layer, "verdict": {"roles": roles, "polysemantic": len(roles) > 1,
                "pair_geometry": {"SUB~NEG": "one axis, opposite signs", "ADD~NEG": "separate"}},
                "necessity": {"per_qtype": {op: {"all": {"resample": {"target_wrong": rate(0.4)}}}
                                            for op in ("ADD", "SUB", "NEG")}},
                "sufficiency": {"per_qtype": {op: {"success": rate(0.9)} for op in ("ADD", "SUB", "NEG")}},
                "shared": {"direction_cosines": {"SUB~NEG": {"cosine": -0.981}, "ADD~NEG": {"cosine": 0.123}}}}

    name = "mix_d6_l3_h4_t10K_s372009"
    folder = tmp_path / "models" / name
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"training": {"device": "cuda"},
                                                   "accuracy": {"questions": 1000, "wrong": 1, "failures": ["x"]}}))
    for node, layer, roles in [("P18L0H1", 0, ["A1.MB", "A1.NB"]), ("P18L2H0", 2, ["A1.SC", "A1.NB"]), ("P18L0H0", 0, []),
                               ("P17L0H1", 0, ["A1.MB"])]:
        (folder / f"{node}_study.json").write_text(json.dumps(study(node, layer, roles)))
    faith = {"n_nodes": 10, "n_all": 20, "qtypes": {"ADD": {"exact": 0.5, "ci": [0.4, 0.6], "n": 2000},
                                                    "NEG": {"exact": 0.25, "ci": [0.2, 0.3], "n": 2000}}}
    (tmp_path / "atlas.json").write_text(json.dumps({
        "headline": "0 of 1 models use one layer-0 head for carry and borrow at A2", "roles_in_every_model": ["a"],
        "roles_shared_with_reference": [], "roles": [{"models": {name: []}}, {"models": {}}],
        "models": [{"name": name, "reference": False, "faithfulness": faith}],
        "founding": [{"model": name, "position": "P18", "one_head_carry_and_borrow": False}]}))
    data = seeds.extract(tmp_path)
    model = data["models"][0]
    assert model["device"] == "cuda" and model["roles"] == 1
    assert model["useful_alone"] == {"nodes": 10, "of": 20, "qtype": "NEG", "exact": 0.25, "ci": [0.2, 0.3], "n": 2000}
    assert [(h["node"], h["roles"]) for h in model["holders"]] == [("P18L0H1", ["A1.MB", "A1.NB"]),
                                                                   ("P18L2H0", ["A1.SC", "A1.NB"])]
    assert model["holders"][0]["sub_neg"] == {"cosine": -0.98, "geometry": "one axis, opposite signs"}
    lines = seeds.render(data).splitlines()
    row = next(line for line in lines if line.startswith(f"| `{name}`"))
    assert lines[-1] == ("Across the seeds: 1 heads in 1 of 1 mixed models hold the carry together with a borrow; the "
                         "carry's direction is separate from the borrow's in every one (|cos| at most 0.12); 1 of 1 "
                         "hold SUB's and NEG's borrows on one axis with opposite signs in one head (1 heads, in layer "
                         "0; cos -0.98 to -0.98).")
    assert row.startswith(f"| `{name}` | GPU, **1 wrong** of 1,000 | `P18L2H0` (ADD wrong 40.0% [20.0, 60.0], "
                          "patching 90% [45, 100]) |")
    assert lines[0].startswith("**0 of 1 models use one layer-0 head for carry and borrow at A2.** Of the 0 models "
                               "exact on the acceptance suite, 0 do.")
    assert model["acceptance"] == {"questions": 1000, "wrong": 1, "failures": ["x"]}
    assert "MB/NB one axis, opposite signs (cos -0.98)" in row and "| no | NEG 25.0% [20.0, 30.0]" in row
