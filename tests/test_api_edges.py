"""The edge circuit and the ablation card through the front door: `al.edge_circuit` on the planted edge model
keeps only planted edges and is exact, `al.circuit_card` scores a planted node circuit under every ablation, and
`arithlens edges` writes both JSON files (ours and the MIB layout, which reads back), says when --target is out of
reach, and refuses bad options in one line before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import arithlens_here
from planted_edges import EDGE_SPEC, PLANTED_EDGES, edge_circuit_model
from test_useful import SPEC, planted_model

import arithlens as al
from arithlens.analysis.edges.export import from_mib_json
from arithlens.arith.questions import QuestionBatch
from arithlens.arith.vocab import PLUS
from arithlens.errors import ArithLensError
from arithlens.model import save_checkpoint


def test_edge_circuit_keeps_planted_edges_only():
    questions = QuestionBatch(1, np.arange(10), np.full(10, PLUS), np.zeros(10, dtype=np.int64))  # a+0
    found = al.edge_circuit(edge_circuit_model(), method="exact", questions=questions)
    assert found.exact == {"ADD": 1.0}
    assert set(found.edges) <= set(PLANTED_EDGES) and found.n_edges >= 4
    mib = al.edge_circuit_mib(found, edge_circuit_model())
    _, kept, _ = from_mib_json(json.loads(json.dumps(mib)), EDGE_SPEC)
    assert np.array_equal(kept, found.kept)


@pytest.mark.parametrize("bad, says", [({"method": "acdc"}, "method"), ({"ablation": "zero"}, "ablation"),
                                       ({"target": 0}, "target"), ({"held_out": 0}, "held_out"),
                                       ({"min_position": 99}, "min_position")])
def test_edge_circuit_options_are_checked(bad, says):
    with pytest.raises(ArithLensError, match=says):
        al.edge_circuit(edge_circuit_model(), **bad)


def test_circuit_card_of_the_planted_copy_heads():
    from planted import backup_heads_model  # right on a + 0: three heads copy a, any two outvote a pull to 9

    model = backup_heads_model()
    cards = al.circuit_card(model, {"one": ["P5L0H0"], "all": ["P5L0H0", "P5L0H1", "P5L0H2"]}, questions=40, draws=1)
    assert {row.ablation for row in cards["all"].rows} == {"mean", "plain-mean", "resample#1", "zero"}
    assert cards["all"].units == ("P5L0H0", "P5L0H1", "P5L0H2")
    # the three copy heads are the whole mechanism: the clean count under every ablation; one head alone is not
    assert all(r.correct == r.clean_correct > r.empty_correct for r in cards["all"].rows)
    assert all(r.correct < r.clean_correct for r in cards["one"].rows)
    with pytest.raises(ArithLensError, match="not a head or MLP node"):
        al.circuit_card(model, ["P5L9H0"], questions=10, draws=1)


def test_cli_edges_writes_ours_and_mib_and_says_the_target_is_out_of_reach(tmp_path, monkeypatch, capsys):
    path = save_checkpoint(planted_model(), SPEC, tmp_path / "planted")  # right on a + 0 only
    code, out, err = arithlens_here(monkeypatch, capsys, "edges", "--model", str(path), "--out", str(tmp_path / "o"),
                                    "--method", "eap", "--held-out", "50", "--target", "0.5", "--quiet")
    assert code == 0, err
    assert "below --target 50%" in out
    ours = json.loads((tmp_path / "o" / f"{SPEC.base_name}_edges.json").read_text())
    assert ours["reached"] is False and ours["method"] == "eap" and ours["n_edges"] <= ours["n_edges_all"]
    mib = json.loads((tmp_path / "o" / f"{SPEC.base_name}_edges_mib.json").read_text())
    _, kept, _ = from_mib_json(mib, SPEC)
    assert int(kept.sum()) == ours["n_edges"]
    # the same seed finds the same circuit (a second run into another folder)
    code, _, err = arithlens_here(monkeypatch, capsys, "edges", "--model", str(path), "--out", str(tmp_path / "p"),
                                  "--method", "eap", "--held-out", "50", "--target", "0.5", "--quiet")
    again = json.loads((tmp_path / "p" / f"{SPEC.base_name}_edges.json").read_text())
    assert code == 0 and again["edges"] == ours["edges"] and again["exact"] == ours["exact"]


def test_cli_edges_refuses_a_bad_method_in_one_line(tmp_path, monkeypatch, capsys):
    code, _, err = arithlens_here(monkeypatch, capsys, "edges", "--out", str(tmp_path / "o"), "--method", "acdc")
    assert code == 2 and err.startswith("error: ") and "--method" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_edge_card_of_every_edge_and_of_none():
    """`al.edge_card`: with every edge kept no ablation changes an answer (the clean count); with none kept the
    circuit is the empty circuit (its count); bad ablations and another model's graph are refused."""
    from planted import backup_heads_model

    from arithlens.analysis.edges.discovery import EdgeCircuit
    from arithlens.analysis.edges.graph import EdgeGraph

    model = backup_heads_model()
    graph = EdgeGraph.build(model.spec, min_position=model.spec.layout.answer_logit_positions.start)

    def circuit(kept: np.ndarray) -> EdgeCircuit:
        return EdgeCircuit(graph, kept, np.zeros(graph.n_edges), "exact", "mean", {}, 0, {}, 0.0)

    every, none = circuit(np.ones(graph.n_edges, dtype=bool)), circuit(np.zeros(graph.n_edges, dtype=bool))
    cards = al.edge_card(model, {"every": every, "none": none}, questions=30, ablations=("mean", "resample#1", "zero"))
    assert cards["every"].ablations == ("mean", "resample#1", "zero") and cards["every"].unit == "edge"
    assert cards["every"].n_all == graph.n_edges and len(cards["none"].units) == 0
    assert all(r.correct == r.clean_correct for r in cards["every"].rows)
    assert all(r.correct == r.empty_correct for r in cards["none"].rows)
    assert any(r.empty_correct < r.clean_correct for r in cards["none"].rows)
    with pytest.raises(ArithLensError, match="distinct"):
        al.edge_card(model, every, ablations=("mean", "mean"))
    with pytest.raises(ArithLensError, match="not KIND"):
        al.edge_card(model, every, ablations=("resample#x",))
    with pytest.raises(ArithLensError, match="graph"):
        al.edge_card(edge_circuit_model(), every, questions=5)


def test_cli_edges_repairs_a_circuit_under_resample_and_refuses_a_bad_file(tmp_path, monkeypatch, capsys):
    path = save_checkpoint(planted_model(), SPEC, tmp_path / "planted")  # right on a + 0 only
    common = ["--model", str(path), "--held-out", "50", "--target", "0.5", "--quiet"]
    code, _, err = arithlens_here(monkeypatch, capsys, "edges", *common, "--out", str(tmp_path / "o"))
    assert code == 0, err
    found = tmp_path / "o" / f"{SPEC.base_name}_edges.json"
    mean = json.loads(found.read_text())
    code, out, err = arithlens_here(monkeypatch, capsys, "edges", *common, "--out", str(tmp_path / "r"),
                                    "--repair", str(found), "--ablation", "resample")
    assert code == 0, err
    repaired = json.loads((tmp_path / "r" / f"{SPEC.base_name}_edges.json").read_text())
    assert repaired["ablation"] == "resample" and set(mean["edges"]) <= set(repaired["edges"])
    assert repaired["stages"]["start"] == mean["n_edges"] and f"repaired from {mean['n_edges']:,} (mean)" in out
    # the library reads the same file back as the circuit it holds
    back = al.load_edge_circuit(found, al.load_model(str(path)))
    assert back.edges == mean["edges"] and back.ablation == "mean"

    bad = tmp_path / "bad.json"
    for text, says in (("{not json", "cannot read the edge circuit"), ("[1, 2]", "must hold a JSON object"),
                       (json.dumps({**mean, "model": "mix_d6_l3_h4_t10K_s372001"}), "was written for"),
                       (json.dumps({**mean, "edges": ["P0EMB -> P99L0H0.q"]}), "does not fit"),
                       (json.dumps({k: v for k, v in mean.items() if k != "scores"}), "malformed")):
        bad.write_text(text)
        code, _, err = arithlens_here(monkeypatch, capsys, "edges", *common, "--out", str(tmp_path / "x"),
                                      "--repair", str(bad))
        assert code == 2 and err.startswith("error: ") and says in err and err.count("\n") == 1, (text, err)
        assert not (tmp_path / "x").exists()
