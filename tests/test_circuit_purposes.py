"""Purposes on an edge circuit, on the planted edge model (`planted_edges.py`: two copying heads P5L0H0 and P5L0H1
and a third path P5L0H2 -> P5L1MLP, any two of the three enough against a pull towards 9): a node the search can
explain gets its sub-task tag, a node left without one lists exactly what its removal from the circuit fails."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import arithlens as al
from arithlens.analysis.circuits.purposes import circuit_purposes
from arithlens.analysis.edges.discovery import EdgeCircuit
from arithlens.analysis.edges.forward import ablation_values
from arithlens.analysis.edges.graph import EdgeGraph
from arithlens.analysis.edges.scores import exact_scores
from arithlens.analysis.nodes import Node, NodeList, Tag, UsefulNode
from arithlens.analysis import subtasks as S
from arithlens.arith.questions import QuestionBatch
from arithlens.arith.vocab import PLUS
from arithlens.errors import ArgumentTypeError, ArithLensError
from arithlens.results import CircuitPurposes
from planted_edges import EDGE_SPEC, PLANTED_EDGES, edge_circuit_model

ANSWER = EDGE_SPEC.layout.answer_logit_positions
TWO_HEADS = ("P0EMB -> P5L0H0.v@0", "P0EMB -> P5L0H1.v@0", "P5L0H0 -> P5LOGITS", "P5L0H1 -> P5LOGITS")
# The base-add search without its attention clause: D'0 is always 0 in a+0 questions
COPY_SA = dataclasses.replace(S.SA, prereq=dataclasses.replace(S.SA.prereq, attends=()))


def plus_zero_pairs(task, k, count, rng):
    """a+0 questions (the only ones the planted model answers) and the same with a changed."""
    a = rng.integers(0, 10, count)
    store_a = (a + rng.integers(1, 10, count)) % 10
    zero, plus = np.zeros(count, np.int64), np.full(count, PLUS, np.int8)
    return task.pairs_from(QuestionBatch(1, store_a, plus, zero), QuestionBatch(1, a, plus, zero), k)


@pytest.fixture(scope="module")
def planted():
    model = edge_circuit_model()
    questions = QuestionBatch(1, np.arange(10), np.full(10, PLUS), np.zeros(10, dtype=np.int64))  # a+0, a = 0..9
    graph = EdgeGraph.build(EDGE_SPEC, min_position=ANSWER.start)
    scores = exact_scores(model, graph, questions.torch_tokens("cpu"),
                          ablation_values(model, questions.torch_tokens("cpu"), "mean"))

    def circuit(edges) -> EdgeCircuit:
        kept = np.zeros(graph.n_edges, dtype=bool)
        kept[[graph.index(e) for e in edges]] = True
        return EdgeCircuit(graph, kept, scores, "exact", "mean", {"ADD": 1.0}, 10, {"final": int(kept.sum())}, 0.0)

    return model, questions, circuit


def test_the_search_gives_the_copy_heads_their_purpose_inside_the_circuit(planted):
    model, questions, circuit = planted
    found = CircuitPurposes.from_dict(circuit_purposes(
        model, circuit(TWO_HEADS), None, questions=questions, reference=questions, pairs=40, tasks=(COPY_SA,),
        make_pairs=plus_zero_pairs))
    assert [p.node for p in found.nodes] == ["P5L0H0", "P5L0H1"]
    for p in found.nodes:
        # patched together the pair moves A0 to the store's digit; neither does alone against the third path
        assert (p.source, p.purpose, p.useful) == ("search", ("A0.SA",), False)
        # removed from the two-head circuit, one head alone loses to the pull towards 9: all but a = 9 fail, at A0
        assert p.fails == (("ADD", 9),) and p.judged == (("ADD", 10),) and p.digits == ("A0",)
        assert "Impact:A0" in p.tags and "Attn:P0=100" in p.tags and p.sends == 1  # its edge to the logits
    assert found.searched == ("P5L0H0", "P5L0H1") and found.pairs == 40 and not found.unexplained
    assert found.counts()["head"] == {"nodes": 2, "purposed": 2, "analysis": 0, "search": 2, "study": 0, "useful": 0,
                                      "useful_purposed": 0}


def test_a_node_left_without_a_purpose_lists_what_its_removal_fails(planted):
    model, questions, circuit = planted
    tagged = NodeList([UsefulNode(Node.parse("P5L0H0"), [Tag.parse("Impact:A0"), Tag.parse("Algo:A0.SA")])])
    found = CircuitPurposes.from_dict(circuit_purposes(model, circuit(TWO_HEADS), tagged, questions=questions,
                                                       reference=questions, pairs=0))
    known, left = found["P5L0H0"], found["P5L0H1"]
    assert (known.source, known.purpose, known.useful, known.tags) == ("analysis", ("A0.SA",), True, ("Impact:A0",))
    assert (left.source, left.purpose, left.explained) == ("none", (), False)
    assert left.needed_for == "ADD 9/10; digits A0"
    assert found.unexplained == (left,) and found.searched == () and found.pairs == 0


def test_nodes_of_a_redundant_circuit_are_needed_only_together(planted):
    model, questions, circuit = planted
    found = CircuitPurposes.from_dict(circuit_purposes(model, circuit(PLANTED_EDGES), None, questions=questions,
                                                       reference=questions, pairs=0))
    # any two of the three paths outvote the pull: removing one node of the circuit fails no question
    assert [p.node for p in found.nodes] == ["P5L0H0", "P5L0H1", "P5L0H2", "P5L1MLP"]
    assert {p.needed_for for p in found.nodes} == {"needed only together"}
    assert all(p.fails == (("ADD", 0),) and p.digits == () for p in found.nodes)
    # without the MLP's edge to the logits the MLP only receives: nothing to remove
    cut = circuit([e for e in PLANTED_EDGES if e != "P5L1MLP -> P5LOGITS"])
    mlp = CircuitPurposes.from_dict(circuit_purposes(model, cut, None, questions=questions, reference=questions,
                                                     pairs=0))["P5L1MLP"]
    assert mlp.sends == 0 and mlp.needed_for == "sends no circuit edge"


def fake_study(roles_of: dict):
    """A `Study` that answers from a table (head name -> roles, or an exception), and the heads it was asked."""
    asked = []

    def study(model, node):
        asked.append(node.name)
        roles = roles_of[node.name]
        if isinstance(roles, Exception):
            raise roles
        tags = [f"Math.Add:{r.replace('SC', 'SP')}" for r in roles]
        return {"verdict": {"roles": roles}, "tags": tags, "study_digit": 0}

    return study, asked


def test_a_study_that_finds_a_carry_role_gives_the_head_its_purpose(planted):
    model, questions, circuit = planted
    study, asked = fake_study({"P5L0H0": ["A0.SC"], "P5L0H1": [], "P5L0H2": ArithLensError("no digit to study")})
    found = CircuitPurposes.from_dict(circuit_purposes(model, circuit(PLANTED_EDGES), None, questions=questions,
                                                       reference=questions, pairs=0, studies=study))
    assert asked == ["P5L0H0", "P5L0H1", "P5L0H2"]  # heads only: the MLP is not studied
    assert found.studied == ("P5L0H0", "P5L0H1", "P5L0H2")
    h0, h1, h2, mlp = (found[n] for n in ("P5L0H0", "P5L0H1", "P5L0H2", "P5L1MLP"))
    assert (h0.source, h0.purpose, h0.study.roles, h0.study.digit) == ("study", ("Math.Add:A0.SP",), ("A0.SC",), 0)
    assert (h1.source, h1.purpose, h1.study.roles, h1.study.error) == ("none", (), (), "")
    assert (h2.source, h2.study.error, h2.study.digit) == ("none", "no digit to study", None)
    assert mlp.study is None and mlp.source == "none"
    assert found.counts()["head"]["study"] == 1 and found.counts()["head"]["purposed"] == 1
    assert {p.node for p in found.unexplained} == {"P5L0H1", "P5L0H2", "P5L1MLP"}
    assert CircuitPurposes.from_dict(json.loads(json.dumps(found.to_dict()))) == found


def test_a_head_the_analysis_or_search_explained_is_not_studied(planted):
    model, questions, circuit = planted
    tagged = NodeList([UsefulNode(Node.parse("P5L0H0"), [Tag.parse("Algo:A0.SA")])])
    study, asked = fake_study({"P5L0H1": ["A0.SC"]})
    found = CircuitPurposes.from_dict(circuit_purposes(model, circuit(TWO_HEADS), tagged, questions=questions,
                                                       reference=questions, pairs=0, studies=study))
    assert asked == ["P5L0H1"] and found["P5L0H0"].source == "analysis" and found["P5L0H0"].study is None
    assert found["P5L0H1"].source == "study"


def test_the_real_study_runs_on_the_planted_heads_and_records_its_verdict(planted):
    """study_node at analyze's STUDY_DEFAULTS on the one-digit planted model: a + 0 has no carry, so no head gets a
    role, and each head keeps what its study found (or why it could not run)."""
    model, questions, circuit = planted
    found = al.circuit_purposes(model, circuit(TWO_HEADS), question_set=questions, pairs=0, studies=True)
    assert found.studied == ("P5L0H0", "P5L0H1")
    for name in found.studied:
        p = found[name]
        assert p.source == "none" and p.study is not None and p.study.roles == ()
        assert p.study.seconds >= 0 and (p.study.error != "") == (p.study.digit is None)
    with pytest.raises(ArgumentTypeError):
        al.circuit_purposes(model, circuit(TWO_HEADS), question_set=questions, pairs=0, studies="yes")


def test_the_api_reads_a_circuit_dict_and_its_result_round_trips(planted):
    model, questions, circuit = planted
    data = json.loads(json.dumps(circuit(TWO_HEADS).to_dict()))
    found = al.circuit_purposes(model, data, question_set=questions, pairs=0)
    assert isinstance(found, al.CircuitPurposes) and found.n_edges == 4 and found.questions == 10
    assert found["P5L0H1"].needed_for == "ADD 9/10; digits A0"
    back = CircuitPurposes.from_dict(json.loads(json.dumps(found.to_dict())))
    assert back == found


def test_the_api_refuses_what_is_not_a_circuit(planted):
    model, questions, circuit = planted
    with pytest.raises(ArgumentTypeError):
        al.circuit_purposes(model, ["P5L0H0 -> P5LOGITS"], question_set=questions)
    with pytest.raises(ArithLensError, match="edges"):  # a circuit of another model's graph
        al.circuit_purposes(model, {**circuit(TWO_HEADS).to_dict(), "scores": [0.0] * 3}, question_set=questions)
    with pytest.raises(ArithLensError, match="pairs"):
        al.circuit_purposes(model, circuit(TWO_HEADS), question_set=questions, pairs=-1)
    with pytest.raises(ArithLensError, match="malformed"):
        CircuitPurposes.from_dict({"model": "x"})


def test_the_analysis_nodes_are_read_from_what_the_caller_has():
    from pathlib import Path
    from types import SimpleNamespace

    from arithlens.api.circuit_purposes import tagged_nodes
    from arithlens.results import UsefulNodes

    stored = UsefulNodes.from_json(Path(__file__).parent / "data" / "cli_reference"
                                   / "mix_d6_l3_h4_t10K_s372001_behavior.json")
    assert len(tagged_nodes(stored)) == 105 and len(tagged_nodes(None)) == 0
    nodes = NodeList([UsefulNode(Node.parse("P5L0H0"), [Tag.parse("Algo:A0.SA")])])
    assert tagged_nodes(SimpleNamespace(nodes=nodes)) is nodes  # the pipeline's Analysis record
    with pytest.raises(ArgumentTypeError):
        tagged_nodes(["P5L0H0"])


def test_the_docs_numbers_are_rendered_from_the_stored_results(monkeypatch):
    """docs/circuit-purposes.md's block is `scripts/circuit_purposes.py`'s rendering of the stored run, and the
    stored counts add up (every circuit node is explained by the analysis, by the search, or listed)."""
    import importlib.util
    import re
    from pathlib import Path

    scripts = Path(__file__).resolve().parent.parent / "scripts"
    monkeypatch.syspath_prepend(str(scripts))
    spec = importlib.util.spec_from_file_location("circuit_purposes_script", scripts / "circuit_purposes.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    data = json.loads(script.RESULTS.read_text())
    block = re.search(re.escape(script.START) + r"\n(.*?)\n" + re.escape(script.END), script.DOC.read_text(), re.S)
    assert block is not None and block[1] == script.render(data)
    counts, p = data["purposes"]["counts"], data["purposes"]
    assert sum(k["nodes"] for k in counts.values()) == data["circuit"]["n_nodes"]
    assert all(k["purposed"] == k["analysis"] + k["search"] + k.get("study", 0) for k in counts.values())
    assert len(p["unexplained"]) == sum(k["nodes"] - k["purposed"] for k in counts.values())
    assert len(p["by_search"]) == sum(k["search"] for k in counts.values())
    useful = data["useful"]
    assert sum(k["analysis"] for k in counts.values()) <= useful["heads_purposed"] + useful["mlps_purposed"]
