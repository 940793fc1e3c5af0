"""Edge scores on a tiny random model: EAP is the first-order term of exact patching (equal for a linear metric
at small ablations), EAP-IG with one step is EAP, rank agreement and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from arithlens.analysis.edges.export import from_mib_json, to_mib_json
from arithlens.analysis.edges.forward import ablation_values, sender_outputs
from arithlens.analysis.edges.graph import EdgeGraph
from arithlens.analysis.edges.scores import eap_ig_scores, eap_scores, exact_scores, rank_agreement
from arithlens.analysis.faithfulness import fresh_questions, reference_questions, rng_for
from arithlens.errors import ArithLensError
from arithlens.model.spec import ModelSpec
from arithlens.model.transformer import HookedTransformer

SPEC = ModelSpec(n_digits=2, n_layers=2, n_heads=2, d_model=16, d_head=8, op="mix")
ANSWER = SPEC.layout.answer_logit_positions


@pytest.fixture(scope="module")
def setup():
    model = HookedTransformer(SPEC, seed=3).double().eval()
    tokens = fresh_questions(SPEC, 4, rng_for(2, 1)).torch_tokens("cpu")
    graph = EdgeGraph.build(SPEC, min_position=ANSWER.start)
    return model, tokens, graph


def test_eap_is_the_slope_of_exact_patching_for_small_ablations(setup):
    """With the ablated value a small step (1e-4) from the clean one, exact change / EAP -> 1 for every edge."""
    model, tokens, graph = setup
    clean = sender_outputs(model, tokens)
    mean = ablation_values(model, reference_questions(SPEC, 32, rng_for(2, 2)).torch_tokens("cpu"), "mean")
    near = clean + 1e-4 * (mean - clean)  # per question: a resample-like value right beside the clean one
    picks = np.arange(0, graph.n_edges, 5)
    exact = exact_scores(model, graph, tokens, near, edges=picks, metric="loss", rows=256)
    eap = eap_scores(model, graph, tokens, near, metric="loss")
    big = np.abs(exact[picks]) > 1e-9
    assert big.sum() > 20
    np.testing.assert_allclose(eap[picks][big], exact[picks][big], rtol=2e-3, atol=1e-10)


def test_eap_ig_with_one_step_is_eap(setup):
    model, tokens, graph = setup
    abl = ablation_values(model, tokens, "zero")
    np.testing.assert_array_equal(eap_ig_scores(model, graph, tokens, abl, steps=1), eap_scores(model, graph, tokens, abl))
    with pytest.raises(ArithLensError, match="steps"):
        eap_ig_scores(model, graph, tokens, abl, steps=0)


def test_rank_agreement_counts_order_and_top_k(setup):
    _, _, graph = setup
    exact = np.linspace(1.0, 2.0, graph.n_edges)
    same = rank_agreement(graph, -3 * exact, exact, top_k=10)  # |scores| in the same order
    assert all(r.spearman == pytest.approx(1.0) and r.overlap == 1.0 for r in same)
    assert {r.layer for r in same} == {-1, 0, 1, 2}
    reverse = rank_agreement(graph, 1 / exact, exact, top_k=10)[0]
    assert reverse.spearman == pytest.approx(-1.0) and reverse.overlap == 0.0
    gaps = exact.copy()
    gaps[::2] = np.nan  # unscored edges are left out
    assert rank_agreement(graph, exact, gaps)[0].n_edges == graph.n_edges // 2
    with pytest.raises(ArithLensError):
        rank_agreement(graph, exact[:3], exact)


def test_unknown_metric_and_foreign_json_are_one_line_errors(setup):
    model, tokens, graph = setup
    with pytest.raises(ArithLensError, match="metric"):
        eap_scores(model, graph, tokens, ablation_values(model, tokens, "zero"), metric="accuracy")
    data = to_mib_json(graph, np.zeros(graph.n_edges, bool), np.zeros(graph.n_edges), d_model=SPEC.d_model)
    other = ModelSpec(n_digits=2, n_layers=3, n_heads=2, d_model=16, d_head=8, op="mix")
    with pytest.raises(ArithLensError, match="layers"):
        from_mib_json(data, other)
    with pytest.raises(ArithLensError, match="cfg"):
        from_mib_json({"edges": {}}, SPEC)
    plain = {"cfg": data["cfg"], "edges": {"a9.h0->logits": {"in_graph": True, "score": 1.0}}}
    with pytest.raises(ArithLensError, match="not an edge"):
        from_mib_json(plain, SPEC)
