"""Planted ground truth: on a hand-built model with a known edge circuit (a redundant pair of copying heads and a
path that matters only through one receiver), exact patching separates the planted edges from all others
(AUROC 1), attribution is measured against it, and discovery returns an exact circuit made of planted edges."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from arithlens.analysis.edges.discovery import EdgeCircuit, discover, exact_rates
from arithlens.analysis.edges.export import from_mib_json, to_mib_json
from arithlens.analysis.edges.forward import ablation_values
from arithlens.analysis.edges.graph import EdgeGraph
from arithlens.analysis.edges.scores import eap_ig_scores, eap_scores, exact_scores, rank_agreement
from arithlens.arith.questions import QuestionBatch
from arithlens.arith.vocab import PLUS
from arithlens.errors import ArithLensError
from planted_edges import EDGE_SPEC, PLANTED_EDGES, edge_circuit_model

ANSWER = EDGE_SPEC.layout.answer_logit_positions


@pytest.fixture(scope="module")
def setup():
    model = edge_circuit_model()
    questions = QuestionBatch(1, np.arange(10), np.full(10, PLUS), np.zeros(10, dtype=np.int64))  # a+0, a = 0..9
    tokens = questions.torch_tokens("cpu")
    graph = EdgeGraph.build(EDGE_SPEC, min_position=ANSWER.start)
    planted = np.zeros(graph.n_edges, dtype=bool)
    planted[[graph.index(e) for e in PLANTED_EDGES]] = True
    return model, questions, tokens, graph, planted, ablation_values(model, tokens, "mean")


def test_the_planted_model_answers_every_question(setup):
    model, questions, tokens, graph, _, abl = setup
    assert exact_rates(model, graph, questions, abl, torch.ones(graph.n_edges)) == {"ADD": 1.0}


def test_exact_patching_recovers_the_planted_edges_exactly(setup):
    model, _, tokens, graph, planted, abl = setup
    exact = exact_scores(model, graph, tokens, abl)
    assert roc_auc_score(planted, np.abs(exact)) == 1.0
    # each planted edge costs about one path's 12 logits of margin; no other edge reaches 0.01
    assert np.all((exact[planted] < -11.5) & (exact[planted] > -12.5))
    assert np.abs(exact[~planted]).max() < 0.01


def test_the_private_path_matters_only_through_its_one_receiver(setup):
    model, _, tokens, graph, _, abl = setup
    picks = [graph.index("P5L0H2 -> P5L1MLP"), graph.index("P5L0H2 -> P5LOGITS")]
    exact = exact_scores(model, graph, tokens, abl, edges=np.array(picks))
    assert exact[picks[0]] < -11.5 and abs(exact[picks[1]]) < 0.01


def test_the_redundant_pair_backs_each_other_up(setup):
    model, questions, _, graph, planted, abl = setup
    circuit = torch.as_tensor(planted, dtype=torch.float32)
    for dropped in (["P5L0H0 -> P5LOGITS"], ["P5L0H1 -> P5LOGITS"], ["P5L1MLP -> P5LOGITS"]):
        mask = circuit.clone()
        mask[[graph.index(e) for e in dropped]] = 0.0
        assert exact_rates(model, graph, questions, abl, mask) == {"ADD": 1.0}
    mask = circuit.clone()
    mask[[graph.index("P5L0H0 -> P5LOGITS"), graph.index("P5L1MLP -> P5LOGITS")]] = 0.0
    assert exact_rates(model, graph, questions, abl, mask) == {"ADD": 0.1}  # only a = 9 survives the pull


def test_attribution_on_the_planted_model(setup):
    """What EAP and EAP-IG get here (measured): both rank every planted edge above every other one, but EAP
    overestimates the two edges into the MLP path 1.8x (it extrapolates through the ReLU that switches off)."""
    model, _, tokens, graph, planted, abl = setup
    exact = exact_scores(model, graph, tokens, abl)
    eap, ig = eap_scores(model, graph, tokens, abl), eap_ig_scores(model, graph, tokens, abl, steps=5)
    assert roc_auc_score(planted, np.abs(eap)) == 1.0 and roc_auc_score(planted, np.abs(ig)) == 1.0
    into_mlp_path = [graph.index("P0EMB -> P5L0H2.v@0"), graph.index("P5L0H2 -> P5L1MLP")]
    assert eap[into_mlp_path] / exact[into_mlp_path] == pytest.approx([1.8, 1.8], abs=0.01)
    overall = rank_agreement(graph, eap, exact, top_k=7)[0]
    assert overall.layer == -1 and overall.overlap == 1.0


def test_discovery_finds_an_exact_circuit_of_planted_edges(setup):
    model, questions, _, graph, planted, _ = setup
    circuit = discover(model, method="exact", min_position=ANSWER.start, search=questions, held_out=questions,
                       reference=questions, prune_passes=50)
    assert circuit.exact == {"ADD": 1.0}
    assert not (circuit.kept & ~planted).any()
    # any two of the three paths are enough, and one is not: the smallest such circuit is the two heads' 4 edges
    assert circuit.n_edges == 4 and circuit.stages["top_k"] >= 4
    assert set(circuit.nodes) <= {"P5L0H0", "P5L0H1", "P5L0H2", "P5L1MLP"}
    back = EdgeCircuit.from_dict(json.loads(json.dumps(circuit.to_dict())), EDGE_SPEC)
    assert back.edges == circuit.edges and back.exact == circuit.exact and back.stages == circuit.stages
    np.testing.assert_array_equal(back.scores, circuit.scores)


def test_exported_circuit_round_trips_through_mib_json(setup, tmp_path):
    model, questions, tokens, graph, planted, abl = setup
    scores = exact_scores(model, graph, tokens, abl)
    data = to_mib_json(graph, planted, scores, d_model=EDGE_SPEC.d_model)
    assert data["edges"]["a0.h0->logits"]["in_graph"] and not data["edges"]["a0.h2->logits"]["in_graph"]
    assert data["edges"]["input->a0.h2<v>"]["in_graph"] and data["nodes"]["a0.h2"]["in_graph"]
    assert not data["nodes"]["a1.h0"]["in_graph"]
    path = tmp_path / "circuit.json"
    path.write_text(json.dumps(data))
    graph2, kept2, scores2 = from_mib_json(json.loads(path.read_text()), EDGE_SPEC)
    assert graph2.names == graph.names and np.array_equal(kept2, planted)
    np.testing.assert_array_equal(scores2, scores)
    plain = {k: v for k, v in data.items() if k != "arithlens"}  # as MIB tools write it: positions unknown
    _, kept3, _ = from_mib_json(plain, EDGE_SPEC)
    full = EdgeGraph.build(EDGE_SPEC)
    assert {full.mib_names[i] for i in np.flatnonzero(kept3)} == {graph.mib_names[i] for i in np.flatnonzero(planted)}


def test_discovery_under_resample_ablation_keeps_to_planted_edges(setup):
    model, questions, _, graph, planted, _ = setup
    circuit = discover(model, method="exact", ablation="resample", min_position=ANSWER.start, search=questions,
                       held_out=questions, reference=questions, prune_passes=50, seed=3)
    assert circuit.ablation == "resample" and circuit.exact == {"ADD": 1.0}
    assert not (circuit.kept & ~planted).any() and circuit.n_edges >= 4


def test_repairing_a_circuit_under_another_ablation_adds_planted_edges_until_both_hold(setup):
    """`start=`: a mean-ablation circuit holding one of the two needed paths is repaired under resample ablation by
    adding edges (never dropping one), and the result is exact under resample and mean ablation both."""
    model, questions, tokens, graph, planted, abl = setup
    one_path = np.zeros(graph.n_edges, dtype=bool)
    one_path[[graph.index(e) for e in ("P0EMB -> P5L0H0.v@0", "P5L0H0 -> P5LOGITS")]] = True
    assert exact_rates(model, graph, questions, abl, torch.as_tensor(one_path, dtype=torch.float32))["ADD"] < 1.0
    start = EdgeCircuit(graph, one_path, np.full(graph.n_edges, np.nan), "exact", "mean", {"ADD": 0.0}, 10,
                        {"final": 2}, 0.0)
    circuit = discover(model, method="exact", ablation="resample", start=start, search=questions, held_out=questions,
                       reference=questions, seed=3)
    assert circuit.ablation == "resample" and circuit.exact == {"ADD": 1.0}
    assert (circuit.kept >= one_path).all() and not (circuit.kept & ~planted).any()
    assert circuit.stages["start"] == 2 and circuit.stages["final"] == circuit.n_edges > 2
    assert "top_k" not in circuit.stages  # a repair only: no top-k search, no pruning
    mask = torch.as_tensor(circuit.kept, dtype=torch.float32)
    assert exact_rates(model, graph, questions, abl, mask) == {"ADD": 1.0}  # and still under mean ablation
    wider = EdgeGraph.build(EDGE_SPEC, min_position=0)
    with pytest.raises(ArithLensError, match="not this model's graph"):
        discover(model, ablation="resample", start=start, min_position=0, search=questions, held_out=questions,
                 reference=questions)
    assert wider.n_edges > graph.n_edges


@pytest.mark.parametrize("bad", [{"method": "acdc"}, {"ablation": "zero"}, {"target": 1.5}])
def test_discovery_options_are_checked(setup, bad):
    from arithlens.errors import ArithLensError

    with pytest.raises(ArithLensError):
        discover(setup[0], **bad)
