"""The edge circuit in the report: its graph over positions and layers renders from a tiny circuit, the report's
section names its nodes, rates and JSON, and the node study lists the founding heads' circuit edges with scores."""

from __future__ import annotations

import base64
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from arithlens.analysis.analyze import StudyEntry, StudyTarget, founding_position
from arithlens.analysis.edges.discovery import EdgeCircuit
from arithlens.analysis.edges.graph import EdgeGraph
from arithlens.analysis.nodes import Node, NodeList, Tag, UsefulNode
from arithlens.report.circuit_graph import (
    EDGES_FILE, GRAPH_STEM, draw_circuit_graph, family_colours, graph_data, node_edges, task_family, useful_split,
)
from arithlens.report.html import ReportDrawer, _edge_circuit, _studies
from arithlens.report.quanta_maps import BACKGROUND
from planted_edges import EDGE_SPEC

ANSWER = EDGE_SPEC.layout.answer_logit_positions
FOUNDING = founding_position(EDGE_SPEC)  # P4 for one digit: the position predicting A1
# the two copy heads' paths at P5, and a founding head at P4 that sends two edges and receives one
SCORED = {"P0EMB -> P5L0H0.v@0": -11.9, "P0EMB -> P5L0H1.v@0": -11.8, "P5L0H0 -> P5LOGITS": -6.0,
          "P5L0H1 -> P5LOGITS": -5.5, f"P{FOUNDING}L0H0 -> P5L1H0.v@{FOUNDING}": -2.5,
          f"P{FOUNDING}L0H0 -> P{FOUNDING}LOGITS": 0.75, f"P{FOUNDING}EMB -> P{FOUNDING}L0H0.q": -0.125}


@pytest.fixture(scope="module")
def circuit() -> EdgeCircuit:
    graph = EdgeGraph.build(EDGE_SPEC, min_position=ANSWER.start)
    kept = np.zeros(graph.n_edges, dtype=bool)
    scores = np.full(graph.n_edges, 0.001)
    for name, score in SCORED.items():
        kept[graph.index(name)], scores[graph.index(name)] = True, score
    return EdgeCircuit(graph, kept, scores, "exact", "mean", {"ADD": 0.995}, 400, {"top_k": 8, "final": 7}, 1.5)


@pytest.fixture(scope="module")
def analysis(circuit):
    useful = NodeList([UsefulNode(Node.parse("P5L0H0"), [Tag.parse("Impact:A0"), Tag.parse("Algo:A0.SA")]),
                       UsefulNode(Node.parse("P5L0H2"), [Tag.parse("Impact:A0")])])
    studies = [StudyEntry(StudyTarget(Node(FOUNDING, 0, False, 0), ("layer-0 head",), founding=True), None, "skipped"),
               StudyEntry(StudyTarget(Node.parse("P5L0H0"), ("copies",)), None, "skipped")]
    return SimpleNamespace(spec=EDGE_SPEC, nodes=useful, studies=studies, skipped_studies=[], edge_circuit=circuit,
                           edge_circuit_note=None, useful=SimpleNamespace(position_failures=[1] * EDGE_SPEC.n_ctx))


def test_graph_data_places_each_edge_between_its_nodes_rows(circuit):
    data = graph_data(circuit, {"P5L0H0": ["A0.SA"]}, EDGE_SPEC.layout.meanings, "tiny")
    rows = data["rows"]
    assert rows[0] == "EMB" and rows[1] == "L0H0" and rows[4] == "L0MLP" and rows[-1] == "LOGITS"
    lines = {(x0, rows[y0], x1, rows[y1]): w for x0, y0, x1, y1, w in data["lines"]}
    assert len(lines) == circuit.n_edges == 7
    assert lines[(0, "EMB", 5, "L0H0")] == pytest.approx(11.9)
    assert lines[(FOUNDING, "L0H0", 5, "L1H0")] == pytest.approx(2.5)  # a value input lands on its head's row
    assert lines[(5, "L0H1", 5, "LOGITS")] == pytest.approx(5.5)
    nodes = {name: (x, rows[y], fams) for name, x, y, fams in data["nodes"]}
    assert nodes == {"P5L0H0": (5, "L0H0", ["SA"]), "P5L0H1": (5, "L0H1", []),
                     f"P{FOUNDING}L0H0": (FOUNDING, "L0H0", []), "P5L1H0": (5, "L1H0", [])}


def test_sub_task_families_get_the_quanta_map_colours():
    assert task_family("A1.SC") == task_family("A1.SC.A2") == "SC" and task_family("OPR") == "OPR"
    colours = family_colours(["SC", "MB", "SA", "NB"])
    assert len(set(colours.values())) == 4 and BACKGROUND not in colours.values()


def test_the_graph_figure_renders_from_a_tiny_circuit(circuit, tmp_path):
    data = graph_data(circuit, {"P5L0H0": ["A0.SA"]}, EDGE_SPEC.layout.meanings, "tiny")
    (png,) = draw_circuit_graph(data, tmp_path, "graph")
    assert png == tmp_path / "graph.png" and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_drawer_draws_the_graph_and_the_section_names_nodes_edges_and_the_json(analysis, tmp_path):
    drawer = ReportDrawer(tmp_path, workers=1, overlap=False)
    maps, _, _ = drawer.finish(analysis, lambda *a: None)
    png = tmp_path / f"{EDGE_SPEC.base_name}{GRAPH_STEM}.png"
    assert png in maps and png.stat().st_size > 10_000
    page = _edge_circuit(analysis, maps)
    assert "7 of the graph's" in page and "data:image/png;base64," in page
    link = re.search(rf'download="{EDGES_FILE}" href="data:application/json;base64,([^"]+)"', page)
    edges = json.loads(base64.b64decode(link[1]))  # the circuit's JSON, inline so the page stays one file
    assert edges["edges"] == pytest.approx(SCORED) and edges["exact"] == {"ADD": 0.995} and edges["n_edges"] == 7
    assert "99.5%" in page and "n=400" in page  # the exact rate per qtype with its interval
    assert "1 of 2" in page and "P5L0H2" in page  # useful nodes in / out of the circuit
    for node in ("P5L0H1", f"P{FOUNDING}L0H0", "P5L1H0"):  # circuit nodes without a map cell
        assert node in page
    assert not re.search(r"https?://", page)  # offline: nothing to fetch
    assert all(s.startswith(("data:", "#")) for s in re.findall(r'(?:src|href)="([^"]*)"', page))


def test_the_section_says_why_there_is_no_circuit(analysis):
    missing = SimpleNamespace(**{**vars(analysis), "edge_circuit": None, "edge_circuit_note": "edges not asked for"})
    assert "edges not asked for" in _edge_circuit(missing, [])
    older = SimpleNamespace(**{k: v for k, v in vars(analysis).items() if not k.startswith("edge_circuit")})
    assert "No edge circuit" in _edge_circuit(older, [])  # an Analysis from before the edge fields


def test_the_node_study_lists_the_founding_heads_edges_with_scores(analysis, circuit):
    sent, received = node_edges(circuit, f"P{FOUNDING}L0H0")
    assert sent == [(f"P{FOUNDING}L0H0 -> P5L1H0.v@{FOUNDING}", -2.5), (f"P{FOUNDING}L0H0 -> P{FOUNDING}LOGITS", 0.75)]
    assert received == [(f"P{FOUNDING}EMB -> P{FOUNDING}L0H0.q", -0.125)]
    page = _studies(analysis, {})
    head = page.index(f'id="study-P{FOUNDING}L0H0"')
    listing = page[head : page.index('id="study-P5L0H0"')]
    assert (f"sends (2): <code>P{FOUNDING}L0H0 -&gt; P5L1H0.v@{FOUNDING}</code> -2.500, "
            f"<code>P{FOUNDING}L0H0 -&gt; P{FOUNDING}LOGITS</code> +0.750") in listing
    assert f"receives (1): <code>P{FOUNDING}EMB -&gt; P{FOUNDING}L0H0.q</code> -0.125" in listing
    assert page.count("In the edge circuit") == 1  # P5L0H0 is not a founding head


def test_useful_split_counts_both_sides():
    assert useful_split(["A", "B"], ["B", "C"]) == {"useful_in": ["B"], "useful_out": ["A"], "circuit_only": ["C"]}


@pytest.mark.slow  # a whole (tiny) analysis with its node studies: seconds idle, ~30 s on the loaded 2-core VM
def test_a_real_analysis_with_an_edge_circuit_gets_the_section_and_the_founding_edges(tmp_path):
    """End to end: `analyze` on test_analyze's tiny planted model, an edge circuit attached as h31's
    `Analysis.edge_circuit` will be, `write_report`: the graph is drawn and embedded, the founding head lists its
    edges, and the page still loads nothing from outside itself."""
    from test_analyze import FAST, tiny_model

    from arithlens.analysis.analyze import analyze
    from arithlens.report.html import write_report

    model = tiny_model()
    analysis = analyze(model, FAST)
    spec = model.spec
    at = founding_position(spec)
    graph = EdgeGraph.build(spec, min_position=spec.layout.answer_logit_positions.start)
    kept = np.zeros(graph.n_edges, dtype=bool)
    scores = np.zeros(graph.n_edges)
    for name, score in {f"P{at}L0H0 -> P{at}LOGITS": -3.0, f"P{at}EMB -> P{at}L0H0.q": -0.5}.items():
        kept[graph.index(name)], scores[graph.index(name)] = True, score
    analysis.edge_circuit = EdgeCircuit(graph, kept, scores, "exact", "mean", {"ADD": 1.0, "SUB": 1.0, "NEG": 1.0},
                                        100, {"final": 2}, 0.1)
    page = write_report(analysis, tmp_path).report.read_text()
    assert '<section id="edges">' in page and 'class="circuit-graph"' in page
    assert (tmp_path / f"{spec.base_name}{GRAPH_STEM}.png").stat().st_size > 10_000
    study = page[page.index(f'id="study-P{at}L0H0"') : page.index(f'id="study-P{at}L0H1"')]
    assert f"sends (1): <code>P{at}L0H0 -&gt; P{at}LOGITS</code> -3.000" in study
    assert f"receives (1): <code>P{at}EMB -&gt; P{at}L0H0.q</code> -0.500" in study
    assert all(s.startswith(("data:", "#")) for s in re.findall(r'(?:src|href)="([^"]*)"', page))
