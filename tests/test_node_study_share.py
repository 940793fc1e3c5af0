"""Heads studied at one digit share their necessity runs: a study's companions get their replacements run on its
clean runs, and their own studies (same cache) find the outcomes there and give exactly the study they give alone."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from arithlens.analysis.node_study import StudyCache, StudyOptions, study_node
from arithlens.analysis.node_study import necessity as necessity_module
from arithlens.interventions import Engine
from arithlens.model import HookedTransformer, ModelSpec

OPTIONS = StudyOptions(questions=40, pairs=10, per_case=20, mixed=100, permutations=10, seed=4, digit=1)


def small_model() -> HookedTransformer:
    """Two layers, random weights scaled up so that replacing a layer-0 head changes answers."""
    spec = ModelSpec(n_digits=6, n_layers=2, n_heads=2, d_model=24, d_head=6, d_mlp=32, op="mix", perc_sub=50)
    model = HookedTransformer(spec, seed=7)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_O.mul_(4.0)
    return model.eval()


def _count_outcomes(monkeypatch) -> list[int]:
    calls = [0]
    real = Engine.outcome

    def counted(self, interventions):
        calls[0] += 1
        return real(self, interventions)

    monkeypatch.setattr(Engine, "outcome", counted)
    return calls


@pytest.mark.parametrize("chunk", [1000, 50])  # one engine a qtype (cached), or chunks (never kept)
def test_a_companion_study_equals_its_study_alone_and_reruns_nothing(monkeypatch, chunk):
    monkeypatch.setattr(necessity_module, "CHUNK", chunk)
    model = small_model()
    alone = study_node(model, "P18L0H1", OPTIONS).data
    calls = _count_outcomes(monkeypatch)
    cache = StudyCache()
    first = study_node(model, "P18L0H0", OPTIONS, cache=cache, companions=("P18L0H1",))
    ran_first = calls[0]
    second = study_node(model, "P18L0H1", OPTIONS, cache=cache)
    assert second.data == alone  # exactly: the same runs, only run earlier
    assert first.data == study_node(model, "P18L0H0", OPTIONS).data
    # 3 qtypes x (mean, resample, same class, other class) for each head, in chunks of 120 / chunk questions
    spans = -(-120 // chunk)
    assert ran_first == 3 * 4 * 2 * spans
    assert calls[0] - ran_first == 3 * 4 * spans  # the study alone's second call, P18L0H1 through the cache: none
    # the replacements do change answers here, so the equality above compares outcomes that differ by head
    rates = alone["necessity"]["per_qtype"]["ADD"]["all"]
    assert rates["resample"]["target_wrong"]["rate"] != rates["clean"]["target_wrong"]["rate"]


def test_a_companion_at_another_digit_or_options_is_left_alone(monkeypatch):
    """Outcomes are kept under the questions they ran on: a study with other options finds none and runs its own."""
    model = small_model()
    cache = StudyCache()
    study_node(model, "P18L0H0", OPTIONS, cache=cache, companions=("P18L0H1",))
    calls = _count_outcomes(monkeypatch)
    other = replace(OPTIONS, digit=2)
    assert study_node(model, "P18L0H1", other, cache=cache).data == study_node(model, "P18L0H1", other).data
    assert calls[0] == 2 * 3 * 4  # both ran their own replacements


def test_a_capture_without_engine_stops_at_the_node_and_equals_the_full_run(monkeypatch):
    """The node's activations (and attention row) from a forward stopped once they are captured are exactly those
    of a full run's cache."""
    from arithlens.analysis.node_study.runs import Site, capture
    from arithlens.analysis.nodes import Node
    from arithlens.arith.generators import uniform
    from arithlens.model.hooks import act_name

    import numpy as np

    model = small_model()
    qs = uniform(6, 30, np.random.default_rng(0), qtypes={"add": 1, "minus": 1})
    site = Site(Node.parse("P18L0H1"))
    act, pattern, _ = capture(model, site, qs, engine=False, pattern=True)
    names = [act_name("z", 0), act_name("pattern", 0)]
    _, full = model.run_with_cache(qs.torch_tokens("cpu"), names)
    np.testing.assert_array_equal(act, full[names[0]][:, 18, 1].double().numpy())
    np.testing.assert_array_equal(pattern, full[names[1]][:, 1, 18, :19].double().numpy())
    block_type = type(model.blocks[1])
    layers_run = []
    for method in ("forward", "fast"):  # a block runs through one of them (hooked or not)
        real = getattr(block_type, method)

        def counted(self, *args, _real=real, **kwargs):
            layers_run.append(self.layer)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(block_type, method, counted)
    model(qs.torch_tokens("cpu"))
    assert layers_run == [0, 1]  # (the counting sees a full run)
    layers_run.clear()
    capture(model, site, qs, engine=False)
    assert layers_run == [0]  # layer 1 never ran


def test_analyze_studies_heads_of_one_digit_on_one_set_of_engines(monkeypatch):
    """`study_all` (analyze's studies stage): the founding heads' studies are those each gives alone, and a digit's
    chunked necessity engines are built once for all its heads, not once per head."""
    from arithlens.analysis.analyze import AnalyzeOptions, StudyTarget, study_all
    from arithlens.analysis.node_study.study import planned_digit
    from arithlens.analysis.nodes import Node

    monkeypatch.setattr(necessity_module, "CHUNK", 50)  # 120 questions a qtype: 3 chunks, as founding sizes do
    model = small_model()
    small = replace(OPTIONS, digit=None, permutations=99)  # (analyze asks for p-values that can reach 0.01)
    options = AnalyzeOptions(study=small, founding_study=small)
    nodes = [Node.parse(name) for name in ("P18L0H0", "P18L0H1")]
    targets = [StudyTarget(node, ("founding",), founding=True) for node in nodes]
    assert {planned_digit(model, node, small) for node in nodes} == {1}  # both heads at one digit
    alone = [study_node(model, node, small).data for node in nodes]
    built = [0]
    real = necessity_module.Engine

    def counted(*args, **kwargs):
        built[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(necessity_module, "Engine", counted)
    entries = study_all(model, targets, options)
    assert [e.data for e in entries] == alone
    assert built[0] == 3 * 3  # chunks x qtypes, for both heads (alone: twice as many)


def test_analyze_studies_on_two_streams_give_the_studies_of_one(monkeypatch):
    """`study_all` on two study threads (the non-founding heads, in groups that share their runs, each qtype's set in
    chunks) gives the studies that one thread gives: the same decisions and counts, floats within the tolerances of tests/helpers.py (one
    torch thread per stream instead of two per matmul may move the last bits), in the targets' order."""
    from helpers import assert_json_close

    from arithlens.analysis import analyze as analyze_module
    from arithlens.analysis.analyze import AnalyzeOptions, StudyTarget, study_all
    from arithlens.analysis.nodes import Node

    monkeypatch.setattr(analyze_module, "STREAM_CHUNK", 50)  # 120 questions a qtype: 3 chunks on the streams
    model = small_model()
    small = replace(OPTIONS, digit=None, permutations=99)
    options = AnalyzeOptions(study=small, founding_study=small)
    names = ("P18L0H0", "P17L0H1", "P18L1H1", "P16L0H0", "P18L1H0")  # the first the founding one; the rest in groups
    targets = [StudyTarget(Node.parse(n), ("test",), founding=i == 0) for i, n in enumerate(names)]
    one = study_all(model, targets, options, streams=1)
    told = []
    two = study_all(model, targets, options, lambda stage, done, total, detail="": told.append(detail), streams=2)
    assert [e.name for e in two] == list(names)
    for a, b in zip(one, two):
        assert (a.data is None) == (b.data is None) and a.error == b.error
        if a.data is not None:
            assert_json_close(b.data, a.data)
    assert sorted(d for d in told if d) == sorted(names)  # each study announced once


def test_hooks_of_a_with_block_apply_to_its_own_thread_only():
    """`with model.hooks(...)` in one thread leaves another thread's calls unhooked (studies run on two threads)."""
    import threading

    model = small_model()
    tokens = torch.zeros(3, model.spec.n_ctx, dtype=torch.long)
    seen: list[str] = []
    plain = model(tokens)
    with model.hooks([("blocks.0.hook_resid_pre", lambda x, hook: seen.append(threading.current_thread().name))]):
        other = {}
        worker = threading.Thread(target=lambda: other.update(out=model(tokens)), name="other")
        worker.start()
        worker.join()
        model(tokens)
    assert seen == [threading.current_thread().name]
    torch.testing.assert_close(other["out"], plain, rtol=0, atol=0)
