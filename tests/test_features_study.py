"""The feature study end to end on the shipped model (small settings): splicing, feature and direction edits, the
result's JSON round trip, figures, and the `arithlens sae` command's outputs and one-line errors."""

import json

import numpy as np
import pytest
import torch
from helpers import arithlens

import arithlens as al
from arithlens.analysis.features import effects, quality
from arithlens.analysis.features.activations import Site, site_acts, training_questions
from arithlens.interventions import Engine, compute_means, mean_ablate
from arithlens.errors import ArithLensError
from arithlens.report.features import feature_dashboard, pareto_figure, write_dictionary_figures
from arithlens.results import FeatureStudy

SMALL = dict(questions=1000, eval_questions=300, steps=200, permutations=10, seed=4)


@pytest.fixture(scope="module")
def model():
    return al.load_model()


@pytest.fixture(scope="module")
def study(model):
    return al.feature_study(model, "P18L0H3", sweep=True, **SMALL)


def test_splicing_the_site_with_itself_is_clean_and_with_its_mean_equals_mean_ablation(model):
    site = Site.parse("P18L0H1", model.spec)  # a head the model needs (README: ablation breaks 29-69%)
    batch = training_questions(model.spec, 240, seed=9)
    x = site_acts(model, site, batch)
    engine = Engine(model, batch)
    same = quality.spliced_accuracy(engine, site, batch, x, x)
    assert same["spliced"] == same["clean"]
    # the site set to its mean over these questions is the engine's mean ablation of the head at P18
    means = compute_means(model, batch, [site.hook])
    wrong = engine.outcome([mean_ablate(means, site.hook, 18, head=1)]).wrong
    expected = quality.exact_by_qtype(wrong, batch)
    assert same["mean_ablated"].keys() == expected.keys()
    for name in expected:  # one question may sit on the edge: the two means differ in the last float32 bit
        assert same["mean_ablated"][name]["k"] == pytest.approx(expected[name]["k"], abs=1)
    assert wrong.any(1).mean() > 0.05  # the head matters, so the comparison above is not vacuous


def test_feature_edits_keep_the_error_term_and_flip_within_the_label_domain():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))
    f = np.abs(rng.normal(size=(6, 2)))
    w = rng.normal(size=(2, 3))
    ablated = effects.feature_edit(x, f, w, 1, "ablate")
    np.testing.assert_allclose(ablated, x - f[:, 1:2] * w[1], atol=1e-12)
    y = np.array([1, 0, 0, 0, 1, 0], bool)
    groups = np.array([0, 0, 0, 1, 1, 1])
    flipped = effects.feature_edit(x, f, w, 0, "flip", y, groups)
    target = np.array([f[[1, 2], 0].mean(), f[0, 0], f[0, 0], f[4, 0], f[[3, 5], 0].mean(), f[4, 0]])
    np.testing.assert_allclose(flipped, x + (target - f[:, 0])[:, None] * w[0], atol=1e-12)
    d = np.array([1.0, 0.0, 0.0])
    moved = effects.direction_edit(x, d, "ablate", y, groups)
    np.testing.assert_allclose(moved[:, 1:], x[:, 1:])
    np.testing.assert_allclose(moved[:3, 0], x[:3, 0].mean())
    np.testing.assert_allclose(moved[3:, 0], x[3:, 0].mean())


def test_feature_study_reports_quality_matches_effects_and_comparisons(study, model):
    d = study.dictionary
    q = d.quality
    assert d.site == "P18L0H3" and d.d_in == model.spec.d_head and d.size == 128 and d.k == 4
    assert 0.5 < q.explained_variance <= 1 and q.l0 == pytest.approx(4.0) and 0 <= q.dead_share < 1
    for name in ("ADD", "SUB", "NEG"):
        assert q.accuracy["clean"][name].n == q.accuracy["spliced"][name].n > 50
    f = study.features
    assert f["digit"] == 1 and f["target_digit"] == "A2" and f["answer_names"][0] == "A7"
    assert set(f["carry_borrow"]) == {"ADD", "SUB", "NEG"}
    for op, rec in f["carry_borrow"].items():
        best = rec["best"]
        real = {"ADD": "ADD.SC1", "SUB": "SUB.MB1", "NEG": "NEG.NB1"}[op]
        assert rec["label"] in (real, real + ".pair")  # the one of the two its best feature separates better
        other = rec["by_label"][real + ".pair" if rec["label"] == real else real]["best"]
        assert best["strength"] >= other["strength"]
        assert best["ci"][0] <= best["auroc"] <= best["ci"][1] and not best["passes"]  # 10 permutations: p >= 1/11
        assert f"{op} feature {best['feature']} flip" in f["effects"] and f"{op} direction flip" in f["effects"]
        assert 0.5 <= f["probes"][op]["accuracy"] <= 1
        c = f["comparison"][op]
        assert c["encoding_agrees"] == (c["feature_encodes"] == c["probe_reads"])
    # every effect names the qtypes and the answer digits that fail beyond clean
    for eff in f["effects"].values():
        assert set(eff) == {"ADD", "SUB", "NEG"}
        for rec in eff.values():
            assert set(rec["digits_failing"]) <= set(f["answer_names"])
    assert len(d.sweep) == 6 and {p["size"] for p in d.sweep} == {64, 128}


def test_the_study_round_trips_through_json_and_draws_its_figures(study, tmp_path):
    text = study.to_json()
    back = FeatureStudy.from_json(text)
    assert back.to_json() == text and back.dictionary.quality == study.dictionary.quality
    assert back.one_feature_for_carry_and_borrow == study.one_feature_for_carry_and_borrow
    card = max(study.dictionary.features, key=lambda c: c["fire_rate"])  # dashboards go to the busiest first
    assert feature_dashboard(study.dictionary.data, card["feature"]).axes
    assert pareto_figure(study.dictionary.data).axes
    paths = write_dictionary_figures(study.dictionary.data, tmp_path, features=2)
    assert {p.name for p in paths} >= {"P18L0H3_pareto.png", f"P18L0H3_feature{card['feature']}.png"}
    with pytest.raises(ArithLensError, match="no trained weights"):
        back.dictionary.save_dictionary(tmp_path / "x")
    with pytest.raises(ArithLensError, match="no label 'SC1'"):
        study.dictionary.match("SC1")
    assert study.dictionary.match("ADD.SC1").feature == study.features["carry_borrow"]["ADD"]["best"]["feature"]


def test_the_same_seed_gives_the_same_dictionary(model):
    opts = dict(questions=300, eval_questions=100, steps=30, permutations=0, seed=2)
    a, b = al.sae(model, "P18L0MLP", **opts), al.sae(model, "P18L0MLP", **opts)
    assert a.to_json() == b.to_json() and torch.equal(a.sae.W_dec, b.sae.W_dec)
    assert a.d_in == model.spec.d_mlp and a.size == 1024 and a.k == 16


@pytest.mark.parametrize("args, message", [
    (["P99L0H0"], "error: unknown node 'P99L0H0': position 99 is outside 0..21"),
    (["P18L0H3", "--arch", "relu"], "error: Invalid value for '--arch'"),
    (["P18L0H3", "--size", "4", "--k", "8"], "error: k (8) cannot exceed the dictionary size (4)"),
    (["P18L0M3"], "error: a dictionary reads a head or a whole MLP layer"),
    (["blocks.9.hook_resid_pre@P18"], "error: unknown site 'blocks.9.hook_resid_pre@P18': layer 9 is outside 0..2"),
    (["P18L0H3", "--threads", "0"], "error: --threads must be between 1 and"),
    (["P18L0H3", "--l1", "nan"], "error: --l1 must be a finite number"),
])
def test_bad_arguments_are_one_line_errors_that_write_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    result = arithlens("sae", *args, "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert not out.exists()


def test_an_out_that_is_a_file_is_refused_and_left_unchanged(tmp_path):
    target = tmp_path / "out"
    target.write_text("precious")
    result = arithlens("sae", "P18L0H3", "--out", str(target))
    assert result.returncode == 2 and "is a file, not a directory" in result.stderr
    assert result.stderr.count("\n") == 1 and target.read_text() == "precious"


@pytest.mark.slow
def test_cli_writes_the_json_the_saelens_dictionary_and_figures(tmp_path):
    out = tmp_path / "out"
    result = arithlens("sae", "P18L0H3", "--questions", "400", "--eval-questions", "100", "--steps", "30",
                       "--permutations", "0", "--seed", "1", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    files = printed.pop("files")
    saved = json.loads((out / "P18L0H3_sae.json").read_text())
    assert printed == saved and saved["options"]["seed"] == 1
    assert (out / "P18L0H3_sae" / "cfg.json").exists() and (out / "P18L0H3_sae" / "sae_weights.safetensors").exists()
    loaded, cfg = al.load_dictionary(out / "P18L0H3_sae")
    assert cfg["metadata"]["hook_name"] == "blocks.0.attn.hook_z" and cfg["arithlens"]["head"] == 3
    assert loaded.d_sae == saved["size"] and len(files) == len([p for p in out.rglob("*") if p.is_file()])
