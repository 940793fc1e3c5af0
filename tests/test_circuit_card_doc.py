"""docs/circuit-card.md: its block is rendered from the stored results (benchmarks/results/circuit_card.json), and
the stored cards and curves hold together (the same questions behind every ablation, the circuits as stored)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from arithlens.results.circuits import AblationCard, FaithfulnessCurve

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("circuit_card_script", ROOT / "scripts" / "circuit_card.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def _stored() -> dict:
    return json.loads(script.RESULTS.read_text())


def test_docs_block_is_rendered_from_the_stored_results():
    text = script.DOC.read_text()
    block = re.search(re.escape(script.START) + r"\n(.*?)\n" + re.escape(script.END), text, re.S)
    assert block is not None
    assert block[1] == script.render(_stored())


def test_stored_cards_and_curves_are_consistent():
    data = _stored()
    mean_circuit = json.loads(script.CIRCUIT.read_text())["circuit"]["nodes"]
    cards = {k: script.card_of(v, data) for k, v in data["cards"]["cards"].items()}
    assert list(cards[script.MEAN].units) == sorted(mean_circuit)
    if "robust" in data:
        assert list(cards[script.ROBUST].units) == sorted(data["robust"]["nodes"])
    if "edges" in data and script.EDGE in cards:
        edges = script.unpacked_circuit(data["edges"]["circuit"], script.default_spec()).edges
        assert list(cards[script.EDGE].units) == sorted(edges)
        assert len(edges) == data["edges"]["circuit"]["n_edges"]
    for card in cards.values():
        # every card has both resample draws; a card may leave out other ablations (the doc shows its columns)
        full = ("mean", "plain-mean", "resample#1", "resample#2", "zero")
        assert {"resample#1", "resample#2"} <= set(card.ablations)
        assert card.ablations == tuple(a for a in full if a in card.ablations)
        for qtype in card.qtypes:
            rows = [card.row(a, qtype) for a in card.ablations]
            assert len({(r.n, r.clean_correct) for r in rows}) == 1  # one question set, one clean model
            assert all(0 <= r.correct <= r.n for r in rows)
    for c in data["curves"]["curves"]:
        curve = FaithfulnessCurve.from_dict(c)
        assert curve.sizes == (0, 0, 1, 3, 6, 16, 33, 66, 165, 330)
        f = curve["ALL"].faithfulness("logit_diff")
        assert abs(f[-1] - 1) < 1e-9 and abs(f[0]) < 1e-9  # every node is the model, none the empty circuit


def test_stored_add_back_grows_the_resample_circuit_to_its_target():
    data = _stored()
    if "repair" not in data:
        return
    repair = data["repair"]
    assert set(repair["start"]) == set(data["robust"]["nodes"])
    assert set(repair["nodes"]) == set(repair["start"]) | set(repair["added"])
    assert len(repair["nodes"]) == len(repair["start"]) + len(repair["added"]) == repair["n_nodes"]
    last = repair["steps"][-1]["lower"] if repair["steps"] else repair["start_lower"]
    assert repair["reached"] == (min(last.values()) >= repair["target"])
    # the lower bound of the last step is the Wilson bound of its exact rate over the distinct questions
    from arithlens.analysis.stats import wilson

    per_qtype = repair["search_questions"] // len(last)
    for q, bound in last.items():
        exact = (repair["steps"][-1]["exact"] if repair["steps"] else repair["start_exact"])[q]
        assert abs(wilson(exact * per_qtype, per_qtype)[0] - bound) < 1e-9
    cards = data["cards"]["cards"]
    if script.REPAIRED in cards:
        assert list(AblationCard.from_dict(cards[script.REPAIRED]).units) == sorted(repair["nodes"])


def test_cards_measured_in_parts_join_to_the_card_measured_at_once():
    import numpy as np
    from planted import backup_heads_model

    from arithlens.analysis.circuits.card import ablation_card
    from arithlens.analysis.circuits.runner import Ablation, NodeRunner
    from arithlens.arith.questions import QuestionBatch
    from arithlens.arith.vocab import PLUS

    a = np.repeat(np.arange(10), 3)
    questions = QuestionBatch(1, a, np.full(len(a), PLUS), np.zeros(len(a), dtype=np.int64))
    runner = NodeRunner(backup_heads_model(), questions, questions, seed=3)
    kept = ["P5L0H0", "P5L0H1"]  # two of the copy heads: resample ablation fails some questions

    def card(*labels):
        return ablation_card(runner, kept, label="c", model="planted", seed=3, reference=30,
                             ablations=[Ablation.parse(x) for x in labels])

    whole = card("mean", "resample#1", "resample#2", "zero")
    first, second = card("resample#1", "resample#2"), card("zero", "mean")
    joined = script._joined(first.to_dict(), second)
    assert joined.ablations == ("mean", "resample#1", "resample#2", "zero")
    assert joined.rows == whole.rows
    other = card("mean")
    assert script._joined({**first.to_dict(), "seed": 4}, other) is other  # not the same questions: not joined


def test_stored_results_are_compact_and_keep_the_edge_circuit_as_a_bitmask():
    import numpy as np
    from planted_edges import EDGE_SPEC, PLANTED_EDGES

    from arithlens.analysis.edges.discovery import EdgeCircuit
    from arithlens.analysis.edges.graph import EdgeGraph

    assert script.RESULTS.stat().st_size < 100_000
    assert "scores" not in _stored()["edges"]["circuit"] and "edges" not in _stored()["edges"]["circuit"]
    graph = EdgeGraph.build(EDGE_SPEC, min_position=EDGE_SPEC.layout.answer_logit_positions.start)
    kept = np.isin(np.array(graph.names), PLANTED_EDGES)
    circuit = EdgeCircuit(graph, kept, np.arange(graph.n_edges, dtype=float), "exact", "mean", {"ADD": 1.0}, 10,
                          {"final": int(kept.sum())}, 1.5)
    packed = json.loads(json.dumps(script.packed_circuit(circuit)))
    back = script.unpacked_circuit(packed, EDGE_SPEC)
    assert back.edges == circuit.edges == sorted(PLANTED_EDGES, key=graph.names.index)
    assert np.isnan(back.scores).all() and back.exact == {"ADD": 1.0}
    from arithlens.results.circuits import CardRow

    data = {"edges": {"circuit": packed}}
    card = AblationCard("m", "edge circuit", "edge", tuple(sorted(circuit.edges)), graph.n_edges, 0, 0,
                        (CardRow("mean", "ADD", 10, 10, 10, 0, 1.0, 1.0, 0.0),), 0.0)
    stored = script.card_dict(card, data, EDGE_SPEC)
    assert "units" not in stored and stored["units_packed"] == packed["edges_packed"]
    assert stored["min_position"] == graph.min_position
    assert script.card_of(json.loads(json.dumps(stored)), data, EDGE_SPEC) == card
