"""The node study's necessity runs go a chunk of questions at a time: the result equals the one-batch run, and only
one chunk's engine is alive at once."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
from helpers import json_differences

from arithlens.analysis.node_study import OPS, StudyOptions, study_node
from arithlens.analysis.node_study import necessity as necessity_module
from arithlens.analysis.node_study.runs import Site, capture
from arithlens.analysis.nodes import Node
from arithlens.arith.generators import uniform
from arithlens.model import HookedTransformer, ModelSpec

OPTIONS = StudyOptions(questions=40, pairs=10, per_case=20, mixed=100, permutations=10, seed=4)


def small_model() -> HookedTransformer:
    """Two layers, random weights (scaled up so that ablating a layer-0 head changes answers): every question is
    'wrong', but the study's counts, means and probes still depend on each row's run."""
    spec = ModelSpec(n_digits=6, n_layers=2, n_heads=2, d_model=24, d_head=6, d_mlp=32, op="mix", perc_sub=50)
    model = HookedTransformer(spec, seed=7)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_O.mul_(4.0)
    return model.eval()


def _study(monkeypatch, chunk: int) -> dict:
    monkeypatch.setattr(necessity_module, "CHUNK", chunk)
    return study_node(small_model(), "P18L0H0", OPTIONS).data


def test_a_chunked_study_equals_the_one_batch_study(monkeypatch):
    """3 x 40 = 120 questions a qtype: one chunk of 1,000 against chunks of 25 (five, all the same size) and of 50
    (the last one shorter). Decisions and counts exactly; floats within helpers' REL_TOL / ABS_TOL (a float32
    sum's order may change with the batch size: the node's activations feed the means, probes and cosines)."""
    whole = _study(monkeypatch, 1000)
    for chunk in (25, 50):
        chunked = _study(monkeypatch, chunk)
        assert json_differences(chunked, whole) == []
        assert chunked["verdict"] == whole["verdict"] and chunked["tags"] == whole["tags"]
        assert chunked["necessity"]["groups"] == whole["necessity"]["groups"]  # counts of questions: exact
    # the replacements change answers in this model, so the comparison above has something to compare
    rates = whole["necessity"]["per_qtype"]["ADD"]["all"]
    assert rates["n"] == 120 and rates["mean"]["target_wrong"]["rate"] != rates["clean"]["target_wrong"]["rate"]


def test_each_run_holds_one_chunk_and_frees_it_before_the_next(monkeypatch):
    """Every engine of the necessity runs covers at most `chunk` questions, and none outlives its chunk."""
    model = small_model()
    site = Site(Node.parse("P18L0H0"))
    built: list[weakref.ref] = []
    sizes: list[int] = []
    alive_at_build: list[int] = []
    real = necessity_module.Engine

    def tracked(*args, **kwargs):
        alive_at_build.append(sum(ref() is not None for ref in built))
        engine = real(*args, **kwargs)
        built.append(weakref.ref(engine))
        sizes.append(len(engine))
        return engine

    monkeypatch.setattr(necessity_module, "Engine", tracked)
    rng = np.random.default_rng(0)
    mixed = uniform(6, 50, rng, qtypes={"add": 1, "minus": 1})
    mixed_act = capture(model, site, mixed, engine=False)[0]
    ops = OPS
    necessity_module.necessity(model, site, ops, 1, OPTIONS, np.random.default_rng(1), np.random.default_rng(2),
                               mixed_act, mixed_act.mean(0, keepdims=True), chunk=32)
    assert sizes == [32, 32, 32, 24] * len(ops)  # 120 questions a qtype
    assert alive_at_build == [0] * len(sizes)


@pytest.mark.parametrize("chunk", [7, 120])
def test_replaced_runs_give_each_question_its_one_batch_outcome(chunk):
    """Per question: the same wrong answer tokens (exactly) and losses within 1e-5 relative."""
    model = small_model()
    site = Site(Node.parse("P18L0H0"))
    rng = np.random.default_rng(3)
    mixed = uniform(6, 40, rng, qtypes={"add": 1, "minus": 1})
    qs = uniform(6, 120, rng, qtypes={"add": 1, "minus": 1})
    qs.labels["carry_out"] = (np.arange(len(qs)) % 3 == 0).astype(np.int8)  # both classes: every replacement runs
    mixed_act = capture(model, site, mixed, engine=False)[0]
    pick = rng.integers(0, len(mixed), len(qs))
    args = (model, site, qs, pick, mixed_act, mixed_act.mean(0, keepdims=True))
    act_whole, whole = necessity_module._replaced_runs(*args, len(qs), None)
    act, parts = necessity_module._replaced_runs(*args, chunk, None)
    assert set(parts) == set(whole) == {"clean", "mean", "resample", "same_class_mean", "other_class_mean"}
    np.testing.assert_allclose(act, act_whole, rtol=1e-5, atol=1e-6)
    for name in whole:
        np.testing.assert_array_equal(parts[name].wrong, whole[name].wrong)
        np.testing.assert_allclose(parts[name].loss, whole[name].loss, rtol=1e-5, atol=1e-6)
    assert (whole["mean"].wrong != whole["clean"].wrong).any()
