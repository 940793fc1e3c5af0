"""Faithfulness: masks, baselines, resample ablation, JSON round trip and node-set files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from arithlens.analysis.faithfulness import (
    Faithfulness, KeepMask, all_nodes, fresh_questions, measure_faithfulness, read_node_set, rng_for,
)
from arithlens.analysis.nodes import Node
from arithlens.errors import ArithLensError
from arithlens.interventions import Engine, compute_means, mean_ablate
from arithlens.model.spec import ModelSpec
from arithlens.model.transformer import HookedTransformer

SPEC = ModelSpec(n_digits=2, n_layers=2, n_heads=2, d_model=16, d_head=8, op="mix")


@pytest.fixture(scope="module")
def model():
    return HookedTransformer(SPEC, seed=11).eval()


def test_keep_mask_marks_heads_mlps_and_neurons():
    keep = KeepMask.of(SPEC, [Node(3, 1, False, 1), Node(4, 0, True, -1), Node(5, 1, True, 7)])
    assert keep.heads.sum() == 1 and keep.heads[1, 3, 1]
    assert keep.mlp[0, 4].all() and keep.mlp.sum() == SPEC.d_mlp + 1 and keep.mlp[1, 5, 7]
    with pytest.raises(ArithLensError, match="head 5"):
        KeepMask.of(SPEC, [Node(3, 1, False, 5)])


def test_all_kept_is_clean_and_none_kept_matches_engine_ablating_everything(model):
    qs = fresh_questions(SPEC, 40, rng_for(0, 0))
    out = measure_faithfulness(model, {"all": all_nodes(SPEC), "none": []}, questions=qs, seed=4)
    for row in out["all"].qtypes:
        assert row.correct == row.clean_correct and row.loss == pytest.approx(row.clean_loss)
        assert row.loss_recovered == pytest.approx(1.0)
    for row in out["none"].qtypes:
        assert row.correct == row.ablated_correct and row.loss_recovered == pytest.approx(0.0, abs=1e-12)
    # The same everything-ablated run, built from the engine's single interventions.
    from arithlens.analysis.faithfulness import ablation_hook_names, reference_questions

    means = compute_means(model, reference_questions(SPEC, 2048, rng_for(4, 1)), ablation_hook_names(SPEC))
    ivs = [mean_ablate(means, f"blocks.{l}.attn.hook_z", range(SPEC.n_ctx), head=h)
           for l in range(SPEC.n_layers) for h in range(SPEC.n_heads)]
    ivs += [mean_ablate(means, f"blocks.{l}.mlp.hook_post", range(SPEC.n_ctx)) for l in range(SPEC.n_layers)]
    loss = Engine(model, qs).outcome(ivs).loss
    for row in out["none"].qtypes:
        m = qs.qtype == {"ADD": 0, "SUB": 1, "NEG": 2}[row.qtype]
        assert row.loss == pytest.approx(loss[m].mean(), rel=1e-5)


def test_resample_is_deterministic_for_a_seed_and_differs_from_mean(model):
    sets = {"half": [n for n in all_nodes(SPEC) if n.position % 2]}
    a = measure_faithfulness(model, sets, questions_per_qtype=50, seed=3, ablation="resample")["half"]
    b = measure_faithfulness(model, sets, questions_per_qtype=50, seed=3, ablation="resample")["half"]
    c = measure_faithfulness(model, sets, questions_per_qtype=50, seed=3, ablation="mean")["half"]
    assert a.qtypes == b.qtypes
    assert [r.loss for r in a.qtypes] != [r.loss for r in c.qtypes]
    assert [r.n for r in a.qtypes] == [50, 50, 50]


def test_json_round_trip_and_digits(model):
    f = measure_faithfulness(model, {"x": all_nodes(SPEC)[::3]}, questions_per_qtype=30)["x"]
    again = Faithfulness.from_json(json.loads(json.dumps(f.to_json())))
    assert again.qtypes == f.qtypes and again.nodes == f.nodes
    row = f["ADD"]
    assert [d for d, _ in row.digit_correct] == ["A3", "A2", "A1", "A0"]  # sign first
    assert all(k >= row.correct for _, k in row.digit_correct)  # a right question has every digit right
    lo, hi = row.ci
    assert lo <= row.exact <= hi
    with pytest.raises(ArithLensError, match="malformed"):
        Faithfulness.from_json({"model": "x"})


def test_fresh_questions_exclude():
    first = fresh_questions(SPEC, 200, rng_for(1, 0))
    second = fresh_questions(SPEC, 200, rng_for(1, 0), exclude=first)
    assert len(second) == 0
    other = fresh_questions(SPEC, 200, rng_for(2, 0), exclude=first)
    seen = set(zip(first.a.tolist(), first.op.tolist(), first.b.tolist()))
    assert 0 < len(other) < 600 and not seen & set(zip(other.a.tolist(), other.op.tolist(), other.b.tolist()))


def test_read_node_set_formats(tmp_path):
    (tmp_path / "a.txt").write_text("P3L0H1, P4L1MLP  # a comment P9L0H0\nP5L1M7\n")
    (tmp_path / "b.json").write_text(json.dumps({"nodes": ["P3L0H1"]}))
    (tmp_path / "c.json").write_text(json.dumps([{"position": 3, "layer": 0, "is_head": True, "num": 1, "tags": []}]))
    assert [n.name for n in read_node_set(tmp_path / "a.txt", SPEC)] == ["P3L0H1", "P4L1MLP", "P5L1M7"]
    assert [n.name for n in read_node_set(tmp_path / "b.json", SPEC)] == ["P3L0H1"]
    assert [n.name for n in read_node_set(tmp_path / "c.json", SPEC)] == ["P3L0H1"]
    (tmp_path / "d.txt").write_text("P3L7H1")
    with pytest.raises(ArithLensError, match="layer 7"):
        read_node_set(tmp_path / "d.txt", SPEC)


@pytest.mark.parametrize("ablation", ["mean", "resample"])
def test_the_chunk_size_changes_no_score(model, monkeypatch, ablation):
    # The passes run CHUNK questions at a time to bound their memory; resample rows are drawn DRAW_BLOCK at a time
    # whatever the chunk, so a seed gives the same rows and every score is the same (each row's forward is its own;
    # a tolerance for the float32 sums, whose order may follow the batch size).
    import arithlens.analysis.faithfulness as faithfulness

    sets = {"half": [n for n in all_nodes(SPEC) if n.position % 2]}
    monkeypatch.setattr(faithfulness, "DRAW_BLOCK", 64)

    def run(chunk):
        monkeypatch.setattr(faithfulness, "CHUNK", chunk)
        return measure_faithfulness(model, sets, questions_per_qtype=50, seed=3, ablation=ablation)["half"]

    whole, chunked = run(4096), run(7)  # 150 questions: one pass, or 22 (resample rows in blocks of 64)
    for a, b in zip(whole.qtypes, chunked.qtypes):
        assert (a.correct, a.clean_correct, a.ablated_correct, a.digit_correct) == (
            b.correct, b.clean_correct, b.ablated_correct, b.digit_correct)
        assert a.loss == pytest.approx(b.loss, rel=1e-5) and a.logit_diff == pytest.approx(b.logit_diff, rel=1e-5)


@pytest.mark.parametrize("ablation", ["mean", "resample"])
def test_the_everything_ablated_shortcut_equals_the_hooked_run_bit_for_bit(model, ablation):
    """With nothing kept no attention or MLP input runs (`everything_ablated_logits`); the same sums in the same
    order as the run with every site hooked, so the very same logits, for per-layer means and per-question rows."""
    from arithlens.analysis.faithfulness import (
        everything_ablated_logits, mean_values, reference_questions, resample_values,
    )
    from arithlens.interventions import run_with_interventions

    qs = fresh_questions(SPEC, 30, rng_for(1, 0))
    ref = reference_questions(SPEC, 64, rng_for(1, 1))
    values = (mean_values(model, ref) if ablation == "mean"
              else resample_values(model, ref, rng_for(1, 2).integers(0, len(ref), size=len(qs))))
    keep = KeepMask.of(SPEC, [])
    assert keep.keeps_nothing and not KeepMask.of(SPEC, [Node(3, 0, False, 1)]).keeps_nothing
    tokens = qs.torch_tokens("cpu")
    with torch.inference_mode():
        hooked = run_with_interventions(model, tokens, keep.ablations(SPEC, values))
        short = everything_ablated_logits(model, tokens, values)
    assert torch.equal(short, hooked)
    clean = model(tokens, logit_positions=SPEC.layout.answer_logit_positions)
    assert not torch.allclose(short, clean, atol=1e-3)  # the ablation does move the answers


def test_positions_after_the_last_answer_logit_are_not_run_and_change_no_score(model):
    """`run_masked` stops at the last position that predicts an answer token: the scores equal those of runs over
    every position (causal attention: nothing earlier reads the positions left out). The losses to float64 rounding
    of float32 sums, whose blocking may change with the number of positions (bit-equal on the default model)."""
    from arithlens.analysis.faithfulness import RunScores, mean_values, reference_questions, run_masked, targets_of
    from arithlens.interventions import run_with_interventions

    qs = fresh_questions(SPEC, 30, rng_for(2, 0))
    means = mean_values(model, reference_questions(SPEC, 64, rng_for(2, 1)))
    keep = KeepMask.of(SPEC, [n for n in all_nodes(SPEC) if n.layer == 0 or n.position % 3 == 0])
    assert SPEC.layout.answer_logit_positions.stop < SPEC.n_ctx  # there is a position to leave out
    got = run_masked(model, qs, [None, keep], means=means)
    tokens = qs.torch_tokens("cpu")
    with torch.inference_mode():
        for scores, ivs in zip(got, ([], keep.ablations(SPEC, means))):
            full = RunScores.of(run_with_interventions(model, tokens, ivs), targets_of(tokens, SPEC))
            assert np.array_equal(scores.wrong, full.wrong)
            np.testing.assert_allclose(scores.loss, full.loss, rtol=1e-5, atol=1e-7)
