"""Every result type in `arithlens.results` survives a JSON round trip (to_dict -> json text -> from_dict) equal to
the original, on a real instance each: from small runs on tiny or planted models, or real CLI output in tests/data.
A new result type without an instance here fails the test."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from planted import backup_heads_model, plus_zero_questions

import arithlens as al
import arithlens.results as results
from arithlens.analysis.circuit import discover_circuit
from arithlens.analysis.circuits.robust import resample_circuit
from arithlens.analysis.circuits.runner import NodeRunner
from arithlens.analysis.circuits.scoring import faithfulness_curve
from arithlens.analysis.nodes import Node, NodeList, UsefulNode
from arithlens.api import run_search
from arithlens.api.nodes import search_record
from arithlens.model.spec import ModelSpec
from arithlens.model.transformer import HookedTransformer

DATA = Path(__file__).parent / "data"
TINY = ModelSpec(n_digits=2, n_layers=2, n_heads=2, d_model=16, d_head=8, op="mix")
SMALL_SAE = {"steps": 20, "questions": 200, "eval_questions": 60, "permutations": 0, "seed": 3}


def result_types() -> list[type]:
    """The results: every dataclass in arithlens.results with its own to_dict and from_dict."""
    return sorted({c for _, c in inspect.getmembers(results, inspect.isclass)
                   if dataclasses.is_dataclass(c) and hasattr(c, "to_dict") and hasattr(c, "from_dict")},
                  key=lambda c: c.__name__)


@pytest.fixture(scope="module")
def instances() -> dict[type, object]:
    tiny = HookedTransformer(TINY, seed=11).eval()
    planted = backup_heads_model()
    copy_at = planted.spec.layout.answer_logit_positions.start + 2
    heads = NodeList([UsefulNode(Node.for_model(f"P{copy_at}L0H{h}", planted.spec)) for h in range(3)])
    found, claims = run_search(planted, heads, pairs=10)
    study = results.NodeStudy.from_json(DATA / "cli_reference" / "P18L0H3_study.json")
    useful = results.UsefulNodes.from_json(DATA / "cli_reference" / "mix_d6_l3_h4_t10K_s372001_behavior.json")
    search = results.SearchReport.from_json(DATA / "search_excerpt.json")
    summary = {"model": study.model, "heads": 64, "mlps": 33,
               "studies": [{"node": study.node, "verdict": study.verdict.text}]}
    analysis = results.AnalysisReport.from_dict({"model": study.model, "summary": summary, "useful": useful.data,
                                                 "search": search.data, "studies": [study.data]})
    faithful = al.faithfulness(tiny, ["P6L0H0", "P7L1MLP"], questions=30)
    circuit = discover_circuit(planted, [], search_questions=400, held_out_questions=100,
                               make_questions=plus_zero_questions)
    features = al.feature_study(tiny, "P6L0H0", **SMALL_SAE)
    copy_heads = [n.node.name for n in heads]
    card = al.circuit_card(planted, copy_heads, questions=20, draws=1)
    runner = NodeRunner(planted, plus_zero_questions(planted.spec, 20, np.random.default_rng(1)),
                        plus_zero_questions(planted.spec, 20, np.random.default_rng(2)), seed=3)
    curve = faithfulness_curve(runner, {copy_heads[0]: 2.0, copy_heads[1]: 1.0}, model="planted", method="m")
    robust = resample_circuit(planted, search_questions=400, make_questions=plus_zero_questions, seed=5)
    purposes = _edge_purposes()
    return {
        results.AblationCard: card, results.CardRow: card.rows[0], results.FaithfulnessCurve: curve,
        results.CurveQType: curve.qtypes[0], results.RobustCircuit: robust,
        results.NodeStudy: study, results.UsefulNodes: useful, results.SearchReport: search,
        results.AnalysisReport: analysis, results.NodePCA: al.pca(tiny, "P6L0H0", al.questions(40, n_digits=2)),
        results.Faithfulness: faithful, results.QTypeFaithfulness: faithful.qtypes[0],
        results.Circuit: circuit, results.NodeCost: circuit.minimality[0],
        results.FeatureStudy: features, results.FeatureDictionary: al.sae(tiny, "P6L0H0", **SMALL_SAE),
        # a search run by the API's path on the planted model: real nodes, tags and coverage
        "planted search": search_record(planted.spec, found, claims),
        results.CircuitPurposes: purposes, results.NodePurpose: purposes.nodes[0],
    }


def test_every_result_type_has_an_instance(instances):
    missing = [c.__name__ for c in result_types() if c not in instances]
    assert not missing, f"result types with no instance in this test: {missing}"
    assert len(result_types()) >= 16


@pytest.mark.parametrize("kind", [c.__name__ for c in result_types()] + ["planted search"])
def test_json_round_trip_gives_the_original(instances, kind):
    cls = getattr(results, kind, None)
    value = instances[cls if cls is not None else kind]
    cls = type(value)
    text = json.dumps(value.to_dict())  # plain JSON types only, or this raises
    back = cls.from_dict(json.loads(text))
    assert back == value
    assert json.dumps(back.to_dict()) == text  # and it writes the same JSON again


def test_every_result_dataclass_is_frozen():
    """Frozen all the way down: the parts a result is made of (Rate, Probe, SearchTrial, ...) too."""
    classes = [c for m in (results.node_study, results.nodes, results.search, results.pca, results.analysis,
                           results.features, results.circuits)
               for _, c in inspect.getmembers(m, inspect.isclass)
               if dataclasses.is_dataclass(c) and c.__module__ == m.__name__]
    assert len(classes) > 20
    thawed = [c.__name__ for c in classes if not c.__dataclass_params__.frozen]
    assert not thawed, thawed


def test_the_planted_round_trip_is_not_vacuous(instances):
    """The instances hold real values: the circuit keeps the two backup heads, the search excerpt its trials."""
    assert set(instances[results.Circuit].nodes) == {"P5L0H0", "P5L0H1"}
    assert len(instances[results.SearchReport].trials) == 20
    assert instances[results.SearchReport].trials[0].strong.n == 100
    assert np.isfinite(instances[results.Faithfulness].qtypes[0].loss)
    assert len(instances["planted search"].nodes) == 3
    assert all(r.correct == r.clean_correct for r in instances[results.AblationCard].rows)  # the whole mechanism
    assert set(instances[results.RobustCircuit].nodes) == {"P5L0H0", "P5L0H1", "P5L0H2"}


def _edge_purposes():
    """Purposes on the planted edge model's discovered circuit (its two copying heads, each needed: 9 of 10 fail)."""
    from planted_edges import edge_circuit_model

    from arithlens.analysis.edges.discovery import discover
    from arithlens.arith.questions import QuestionBatch
    from arithlens.arith.vocab import PLUS

    model = edge_circuit_model()
    questions = QuestionBatch(1, np.arange(10), np.full(10, PLUS), np.zeros(10, dtype=np.int64))
    circuit = discover(model, method="exact", min_position=model.spec.layout.answer_logit_positions.start,
                       search=questions, held_out=questions, reference=questions, prune_passes=50)
    purposes = al.circuit_purposes(model, circuit, question_set=questions, pairs=0)
    assert [p.needed_for for p in purposes.nodes] == ["ADD 9/10; digits A0"] * 2  # not vacuous
    return purposes


def test_edge_circuit_round_trips_given_its_model_spec():
    """EdgeCircuit stays in analysis (it holds its EdgeGraph, which `from_dict` rebuilds from the model's spec), so it
    is not among `result_types`; its JSON round trip, on a circuit discovered on the planted edge model."""
    from planted_edges import EDGE_SPEC, PLANTED_EDGES, edge_circuit_model

    from arithlens.analysis.edges.discovery import EdgeCircuit, discover
    from arithlens.arith.questions import QuestionBatch
    from arithlens.arith.vocab import PLUS

    questions = QuestionBatch(1, np.arange(10), np.full(10, PLUS), np.zeros(10, dtype=np.int64))  # a+0, a = 0..9
    circuit = discover(edge_circuit_model(), method="eap", search=questions, held_out=questions, reference=questions)
    assert circuit.exact == {"ADD": 1.0} and 0 < circuit.n_edges < circuit.graph.n_edges
    assert set(circuit.edges) <= set(PLANTED_EDGES)
    text = json.dumps(circuit.to_dict())
    back = EdgeCircuit.from_dict(json.loads(text), EDGE_SPEC)
    assert json.dumps(back.to_dict()) == text
    np.testing.assert_array_equal(back.kept, circuit.kept)
    np.testing.assert_array_equal(back.scores, circuit.scores)  # NaN-free here: every edge scored
    assert (back.method, back.ablation, back.n_held_out, back.seconds) == (circuit.method, circuit.ablation,
                                                                         circuit.n_held_out, circuit.seconds)
