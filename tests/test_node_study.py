"""The node study on a tiny hand-built model whose head P18L0H0 attends only to D1 and D'1, and the CLI."""

import json

import numpy as np
import pytest
import torch
from helpers import arithlens

from arithlens.analysis.node_study import StudyOptions, expected_answer, study_node
from arithlens.arith.questions import QType, QuestionBatch
from arithlens.errors import ArithLensError
from arithlens.model import HookedTransformer, ModelSpec, save_checkpoint

SMALL = StudyOptions(questions=60, pairs=20, per_case=40, mixed=300, permutations=20, seed=3)


def pair_head_model() -> HookedTransformer:
    """One layer, 6 digits. Tokens and positions are one-hot (so LayerNorm is the same affine map for every
    input); head 0's query at P18 matches only the keys of P4 (D1) and P11 (D'1), equally, and its values
    read the token, so its output at P18 is exactly a function of (D1, D'1)."""
    spec = ModelSpec(n_digits=6, n_layers=1, n_heads=2, d_model=40, d_head=8, d_mlp=16, op="mix", perc_sub=50)
    model = HookedTransformer(spec, seed=11)
    pos = 15  # position one-hots start after the 15 token dimensions
    with torch.no_grad():
        model.embed.W_E.zero_()
        model.embed.W_E[:, :15] = torch.eye(15)
        model.pos_embed.W_pos.zero_()
        model.pos_embed.W_pos[:, pos:pos + 22] = torch.eye(22)
        attn = model.blocks[0].attn
        attn.W_Q[0].zero_()
        attn.W_K[0].zero_()
        attn.W_Q[0][pos + 18, 0] = 3.0
        attn.W_K[0][pos + 4, 0] = 3.0
        attn.W_K[0][pos + 11, 0] = 3.0
        attn.W_V[0][pos:] = 0.0  # values carry the token only
    return model.eval()


@pytest.fixture(scope="module")
def study():
    return study_node(pair_head_model(), "P18L0H0", SMALL)


def test_study_finds_that_the_head_attends_to_d1_and_d1_prime(study):
    att = study.data["attention"]
    for qtype in ("ADD", "SUB", "NEG"):
        row = att["per_qtype"][qtype]
        assert row[4] == pytest.approx(0.5, abs=0.01) and row[11] == pytest.approx(0.5, abs=0.01)
    assert {t["meaning"] for t in att["top"]} == {"D1", "D'1"}
    assert att["operator"] < 0.01
    assert study.data["study_digit"] == 1 and study.data["study_digit_source"] == "attention"
    assert study.data["answer_digit"] == 2
    assert study.data["candidates"][0] == {"digit": 1, "role": "carry", "attention": pytest.approx(1.0, abs=0.01),
                                           "study": True}


def test_grid_is_explained_by_the_digit_pair_and_not_by_the_operator(study):
    grid = study.data["grid"]
    assert grid["r2_pair"] == pytest.approx(1.0, abs=1e-6)
    assert grid["qtype_beyond_pair"] == pytest.approx(0.0, abs=1e-6)
    # A cell's mean output is the same whichever qtype the question is.
    pc0 = {q: np.array(grid["projection"][q]["pc0"], dtype=float) for q in ("ADD", "SUB", "NEG")}
    both = np.isfinite(pc0["ADD"]) & np.isfinite(pc0["SUB"])
    assert both.sum() > 20
    np.testing.assert_allclose(pc0["ADD"][both], pc0["SUB"][both], atol=1e-4)
    assert study.data["verdict"]["operator_blind"] is True


def test_study_reports_every_section_with_consistent_counts(study):
    d = study.data
    groups = d["necessity"]["groups"]
    assert {g["qtype"] for g in groups} == {"ADD", "SUB", "NEG"}
    for qtype in ("ADD", "SUB", "NEG"):
        assert sum(g["n"] for g in groups if g["qtype"] == qtype) == 3 * SMALL.questions
        rep = d["representation"][qtype]
        assert rep["n"] == 3 * SMALL.per_case and len(rep["scores"]) == rep["n"] == len(rep["case"])
        assert 0 <= rep["probe_carry"]["p_value"] <= 1
    # T10 of ADD always carries, T8 never; NEG borrows (b - a) on T8 (Dt > D't).
    by = {(g["qtype"], g["case"]): set() for g in groups}
    for g in groups:
        by[(g["qtype"], g["case"])].add(g["carry_out"])
    assert by[("ADD", "T10")] == {1} and by[("ADD", "T8")] == {0} and by[("NEG", "T8")] == {1}
    assert by[("SUB", "T10")] == {1} and by[("NEG", "T10")] == {0} and by[("ADD", "T9")] == {0, 1}
    assert d["verdict"]["text"] and isinstance(d["tags"], list)
    json.loads(study.to_json())  # strict JSON: no NaN


def test_same_seed_gives_the_same_json_and_another_seed_does_not():
    model = pair_head_model()
    options = StudyOptions(questions=30, pairs=10, per_case=20, mixed=100, permutations=10, seed=5)
    first = study_node(model, "P18L0H0", options).to_json()
    assert study_node(model, "P18L0H0", options).to_json() == first
    other = StudyOptions(questions=30, pairs=10, per_case=20, mixed=100, permutations=10, seed=6)
    assert study_node(model, "P18L0H0", other).to_json() != first


def test_mlp_node_is_studied_at_the_carry_digit_and_a_neuron_is_refused():
    model = pair_head_model()
    options = StudyOptions(questions=20, pairs=10, per_case=10, mixed=60, permutations=5)
    mlp = study_node(model, "P18L0MLP", options)
    assert mlp.data["attention"] is None and mlp.data["study_digit"] == 1
    assert mlp.data["study_digit_source"] == "carry candidate (k-1)"
    with pytest.raises(ArithLensError, match="not P18L0M3"):
        study_node(model, "P18L0M3", options)


@pytest.mark.parametrize("question, store, expected", [
    ("000150+000160", "000110+000160", "+0000210"),  # carry out of D1 removed: A2 3 -> 2
    ("000250-000130", "000210-000130", "+0000020"),  # SUB borrow out of D1 added: A2 1 -> 0
    ("000130-000250", "000170-000250", "-0000020"),  # NEG (b - a) borrows where D1 > D'1: A2 1 -> 0
    ("000170-000250", "000130-000250", "-0000180"),  # and the other way: A2 0 -> 1
])
def test_expected_answer_recomputes_the_next_digit_with_the_store_carry(question, store, expected):
    clean, st = QuestionBatch.from_strings(6, [question]), QuestionBatch.from_strings(6, [store])
    tokens = expected_answer(clean, st, clean.qtype.astype(int), 1)
    text = "".join("+-"[t - 10] if t >= 10 else str(t) for t in tokens[0])
    assert text == expected
    assert QType(int(clean.qtype[0])) == QType(int(st.qtype[0]))


# ---- CLI ----


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = pair_head_model()
    return save_checkpoint(model, model.spec, tmp_path_factory.mktemp("ckpt") / "pairhead")


@pytest.mark.parametrize("name, message", [
    ("P99L0H0", "error: unknown node 'P99L0H0': position 99 is outside 0..21"),
    ("P18L7H0", "error: unknown node 'P18L7H0': layer 7 is outside 0..0"),
    ("X", "error: unknown node 'X': expected a name like P18L0H0"),
])
def test_bad_node_names_are_one_line_errors_that_write_nothing(tmp_path, checkpoint, name, message):
    out = tmp_path / "out"
    result = arithlens("node", name, "--model", str(checkpoint), "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert not out.exists()


def test_cli_writes_the_json_and_figures_and_prints_the_same_numbers(tmp_path, checkpoint):
    out = tmp_path / "out"
    result = arithlens("node", "P18L0H0", "--model", str(checkpoint), "--out", str(out), "--questions", "20",
                     "--pairs", "10", "--permutations", "5", "--seed", "2", "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    saved = json.loads((out / "P18L0H0_study.json").read_text())
    files = printed.pop("files")
    assert printed == saved and saved["node"] == "P18L0H0" and saved["options"]["seed"] == 2
    names = sorted(p.name for p in out.iterdir())
    for stem in ("pca", "attention", "necessity", "grid"):
        assert f"P18L0H0_{stem}.png" in names and f"P18L0H0_{stem}.svg" in names
    assert len(files) == len(names) and not any(n.endswith(".tmp") for n in names)


def _synthetic_study(resample: dict, clean: float = 0.0, n: int = 3000) -> dict:
    """The parts of a study's data that the verdict reads: every qtype encodes the borrow/carry perfectly, no
    patching success, and the given resample-ablation break rates of A(t+1)."""
    from arithlens.analysis.stats import rate

    ops = ("ADD", "SUB", "NEG")
    probe = {"accuracy": 1.0, "p_value": 0.0099}
    per = {op: {"all": {"resample": {"target_wrong": rate(round(resample[op] * n), n),
                                     "wrong_by_answer": [0.0, 0.0, resample[op], 0.0]},
                        "clean": {"target_wrong": rate(round(clean * n), n)}}} for op in ops}
    return {
        "node": "P15L2H2", "position": 15, "answer_digit": 5, "study_digit": 4, "qtypes": list(ops),
        "attention": None,
        "representation": {op: {"probe_carry": probe, "probe_pair": probe} for op in ops},
        "necessity": {"per_qtype": per, "target_digit": "A5", "answer_names": ["A7", "A6", "A5", "A4"]},
        "sufficiency": {"applicable": True, "controls": {},
                        "per_qtype": {op: {"success": rate(0, 200)} for op in ops}},
        "grid": {"qtype_beyond_pair": 0.4, "r2_pair": 0.25},
        "shared": {"direction_cosines": {"ADD~SUB": {"cosine": 0.0, "p_value": 0.5},
                                         "ADD~NEG": {"cosine": 0.0, "p_value": 0.5},
                                         "SUB~NEG": {"cosine": -0.3, "p_value": 0.01}}},
    }


def _verdict(data: dict, ops, t: int) -> tuple[dict, list[str]]:
    """The decisions (analysis) with their wording (report) in them, as the study JSON has them."""
    from arithlens.analysis.node_study import decide
    from arithlens.report.node_text import verdict_text

    verdict, tags = decide(data, ops, t)
    return {**verdict, "text": verdict_text({**data, "verdict": verdict})}, tags


def test_a_qtype_whose_answers_rarely_break_has_no_role_even_when_significant(monkeypatch):
    from arithlens.analysis import node_study
    from arithlens.report import node_text

    monkeypatch.setattr(node_text, "mean_ablation_notes", lambda data, ops: [])
    ops = node_study.OPS
    # SUB: 1.5% of 3,000 questions break (significant against 0% clean, but below the 5-point bar).
    verdict, _ = _verdict(_synthetic_study({"ADD": 0.258, "SUB": 0.015, "NEG": 0.214}), ops, 4)
    assert verdict["roles"] == ["A4.SC", "A4.NB"] and verdict["polysemantic"]
    assert verdict["per_qtype"]["SUB"] == {"encodes": True, "necessary": False, "sufficient": False, "role": False,
                                           "feature": "A4.MB"}
    assert "SUB encodes it too but does not use it (resample ablation makes A5 wrong in 1.5%)" in verdict["text"]
    # At 6% SUB relies on it: three roles.
    verdict, _ = _verdict(_synthetic_study({"ADD": 0.258, "SUB": 0.06, "NEG": 0.214}), ops, 4)
    assert verdict["roles"] == ["A4.SC", "A4.MB", "A4.NB"]
    assert "does not use" not in verdict["text"]
    # Only ADD breaks: one role, not polysemantic, and the other two are named as unused.
    verdict, _ = _verdict(_synthetic_study({"ADD": 0.3, "SUB": 0.0, "NEG": 0.01}), ops, 4)
    assert verdict["roles"] == ["A4.SC"] and not verdict["polysemantic"]
    assert verdict["text"].startswith("not polysemantic: computes only A4.SC for ADD; SUB/NEG encode it too but do not")
