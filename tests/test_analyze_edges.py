"""`analyze` finds the edge circuit by default: the Analysis holds an EdgeCircuit whose held-out exact rates are the
model's own on those questions (a model that cannot reach the target keeps every edge), analysis.json gets its
brief record and the output folder `<model>_edges.json`; `--no-edges` gives none of them."""

import json
from dataclasses import replace

import numpy as np
import torch
from helpers import arithlens
from test_analyze import FAST, TINY, tiny_model

import pytest

from arithlens.analysis.analyze import EDGE_CARD_ABLATIONS, analyze
from arithlens.api.circuits import CARD_SEED
from arithlens.results.circuits import AblationCard
from arithlens.analysis.edges.discovery import (
    HELD_OUT_PER_QTYPE, STREAM_EDGE_HELD_OUT, STREAM_EDGE_SEARCH, EdgeCircuit,
)
from arithlens.analysis.faithfulness import FAITHFULNESS_SEED, fresh_questions, rng_for, supported_qtypes
from arithlens.analysis.stats import wilson
from arithlens.model import save_checkpoint

QUICK = replace(FAST, search=False, max_studies=0)  # the useful sweep, faithfulness and the edge circuit only


def model_exact_rates(model, spec) -> dict[str, tuple[int, int]]:
    """qtype -> (right, n) of the model itself on the held-out questions discovery draws at its default seed."""
    search = fresh_questions(spec, 100, rng_for(FAITHFULNESS_SEED, STREAM_EDGE_SEARCH))
    held = fresh_questions(spec, HELD_OUT_PER_QTYPE, rng_for(FAITHFULNESS_SEED, STREAM_EDGE_HELD_OUT), exclude=search)
    tokens = held.torch_tokens("cpu")
    answer = spec.layout.answer_logit_positions
    with torch.no_grad():
        logits = model(tokens)[:, answer.start : answer.stop]
    right = (logits.argmax(-1) == tokens[:, answer.start + 1 : answer.stop + 1]).all(-1).numpy()
    return {qt.name: (int(right[held.qtype == qt].sum()), int((held.qtype == qt).sum()))
            for qt in supported_qtypes(spec)}


def test_analyze_finds_the_edge_circuit_and_records_it():
    model = tiny_model()
    analysis = analyze(model, QUICK)
    circuit = analysis.edge_circuit
    assert isinstance(circuit, EdgeCircuit) and analysis.edge_circuit_note is None
    assert (circuit.method, circuit.ablation) == ("eap", "mean")
    # the tiny model answers only a+0 and a-0: no circuit reaches 99%, so discovery ends with every edge kept,
    # and its exact rates are the model's own on the same held-out questions
    assert circuit.n_edges == circuit.graph.n_edges
    own = model_exact_rates(model, TINY)
    assert circuit.exact == {q: right / n for q, (right, n) in own.items()}
    assert circuit.n_held_out == min(n for _, n in own.values()) and circuit.n_held_out >= 0.95 * HELD_OUT_PER_QTYPE
    record = analysis.summary()["edge_circuit"]
    assert record["n_edges"] == record["n_edges_all"] == circuit.graph.n_edges
    assert record["nodes"] == circuit.nodes and record["n_nodes"] == len(circuit.nodes) > 0
    assert record["exact"] == circuit.exact and (record["method"], record["ablation"]) == ("eap", "mean")
    assert record["n_held_out"] == circuit.n_held_out and record["seconds"] > 0
    assert record["target"] == 0.99 and record["reached"] is False
    for qtype, (lo, hi) in record["ci"].items():
        assert lo <= circuit.exact[qtype] <= hi
        assert (lo, hi) == wilson(round(circuit.exact[qtype] * circuit.n_held_out), circuit.n_held_out)
    assert analysis.summary()["options"]["edges"] is True
    json.dumps(analysis.summary(), allow_nan=False)  # strict JSON


def test_analyze_gives_the_edge_circuits_ablation_card():
    model = tiny_model()
    analysis = analyze(model, replace(QUICK, edge_card=40))
    card = analysis.edge_card
    assert isinstance(card, AblationCard) and analysis.edge_card_note is None
    assert card.unit == "edge" and card.ablations == EDGE_CARD_ABLATIONS and card.seed == CARD_SEED
    assert card.units == tuple(sorted(analysis.edge_circuit.edges)) and card.n_all == analysis.edge_circuit.graph.n_edges
    assert card.qtypes == tuple(qt.name for qt in supported_qtypes(TINY))
    # every edge is kept (no circuit of the tiny model reaches 99%): no ablation can change an answer, so the
    # circuit is right exactly where the clean model is, and the empty circuit is not the model
    for row in card.rows:
        assert 0 < row.n <= 40 and row.correct == row.clean_correct
        assert row.logit_diff == pytest.approx(row.clean_logit_diff, rel=1e-4, abs=1e-4)
    assert any(r.empty_correct < r.clean_correct for r in card.rows if r.ablation == "zero")
    record = analysis.summary()["edge_card"]
    assert record["ablations"] == list(EDGE_CARD_ABLATIONS) and record["n_edges"] == len(card.units)
    assert [(r["ablation"], r["qtype"], r["n"], r["correct"]) for r in record["rows"]] == [
        (r.ablation, r.qtype, r.n, r.correct) for r in card.rows]
    assert card.summary().startswith("mean ADD ") and "n = " in card.summary()
    off = analyze(model, replace(QUICK, edge_card=0))
    assert off.edge_card is None and off.edge_card_note == "ablation card not measured (--edge-card 0)"
    assert off.summary()["edge_card"] is None


def test_no_edges_gives_no_circuit_and_says_why():
    analysis = analyze(tiny_model(), replace(QUICK, edges=False))
    assert analysis.edge_circuit is None
    assert analysis.edge_circuit_note == "edge circuit not searched (--no-edges)"
    assert analysis.edge_card is None  # the edge circuit note says why
    summary = analysis.summary()
    assert summary["edge_circuit"] is None and summary["options"]["edges"] is False


def test_cli_writes_the_edges_file_and_no_edges_leaves_it_out(tmp_path):
    save_checkpoint(tiny_model(), TINY, tmp_path / "tiny")
    name = f"{TINY.base_name}_edges.json"
    common = ["--model", str(tmp_path / "tiny"), "--questions", "3000", "--no-search", "--max-studies", "0",
              "--threads", "1", "--json"]
    proc = arithlens("analyze", "--out", str(tmp_path / "out"), *common)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    data = json.loads((tmp_path / "out" / name).read_text())
    assert name in summary["files"] and data["model"] == TINY.name and data["reached"] is False
    back = EdgeCircuit.from_dict(data, TINY)
    assert back.edges == data["edges"] and back.n_edges == summary["edge_circuit"]["n_edges"]
    assert back.exact == summary["edge_circuit"]["exact"] and back.nodes == summary["edge_circuit"]["nodes"]
    assert np.array_equal(np.isnan(back.scores), [s is None for s in data["scores"]])
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Faithfulness under each ablation" in page and 'class="circuit-card"' in page
    assert summary["edge_card"]["ablations"] == ["mean", "plain-mean", "resample#1", "zero"]

    proc = arithlens("analyze", "--out", str(tmp_path / "plain"), *common, "--no-edges")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["edge_circuit"] is None and summary["edge_circuit_note"] == "edge circuit not searched (--no-edges)"
    assert not (tmp_path / "plain" / name).exists() and name not in summary["files"]
