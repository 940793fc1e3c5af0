"""The edge graph: which edges exist, their names, their MIB names, masks and node circuits as edge masks."""

from __future__ import annotations

import pytest
import torch

from arithlens.analysis.edges.graph import EdgeGraph, Receiver, Sender, parse_edge
from arithlens.analysis.nodes import Node
from arithlens.errors import ArithLensError, ParseError
from arithlens.model.spec import ModelSpec

DEFAULT = ModelSpec.parse("mix_d6_l3_h4_t10K_s372001")


def _count(spec: ModelSpec, min_position: int) -> int:
    """The edge count from the definition, by arithmetic instead of enumeration."""
    L, H = spec.n_layers, spec.n_heads
    answer = spec.layout.answer_logit_positions
    total = 0
    for p in range(min_position, answer.stop):
        for layer in range(L):
            if layer == L - 1 and p not in answer:
                continue
            ns = 1 + layer * (H + 1)
            total += H * ns * (1 + 2 * (p + 1))  # q reads p; k and v read every q <= p
            total += ns + H  # the MLP
        if p in answer:
            total += 1 + L * (H + 1)  # the logits read every sender
    return total


@pytest.mark.parametrize("min_position", [0, 13])
def test_default_model_edge_count_matches_the_definition(min_position):
    graph = EdgeGraph.build(DEFAULT, min_position=min_position)
    assert len(graph) == _count(DEFAULT, min_position)
    assert len(set(graph.names)) == len(graph)


def test_default_counts_are_the_documented_ones():
    assert len(EdgeGraph.build(DEFAULT)) == 26_759
    assert len(EdgeGraph.build(DEFAULT, min_position=13)) == 21_104


def test_edges_are_causal():
    graph = EdgeGraph.build(DEFAULT)
    for e in graph.edges[::37]:
        s, r = e.sender, e.receiver
        assert s.position == r.reads <= r.position
        if r.kind == "mlp":
            assert s.layer <= r.layer and not (s.layer == r.layer and s.kind == "mlp")
        elif r.kind != "logits":
            assert s.layer < r.layer


def test_edge_names_round_trip_and_read_as_documented():
    graph = EdgeGraph.build(DEFAULT)
    for i in range(0, len(graph), 101):
        e = graph.edges[i]
        assert parse_edge(e.name, DEFAULT.n_layers) == e
        assert graph.index(e.name) == i
    e = parse_edge("P14L0H1 -> P18L2H0.k@14")
    assert e.sender == Sender(14, 0, 1) and e.receiver == Receiver(18, 2, "k", 0, 14)
    assert e.mib_name == "a0.h1->a2.h0<k>"
    assert parse_edge("P13EMB->P13L1MLP").mib_name == "input->m1"
    assert parse_edge("P20L2MLP -> P20LOGITS", 3).mib_name == "m2->logits"
    assert graph.index("P14L0H1->P18L2H0.k@14") == graph.index("P14L0H1 -> P18L2H0.k@14")


@pytest.mark.parametrize("bad", ["P14L0H1", "P14L0H1 -> P18L2H0.k", "P14L0H1 -> P18L2H0.q@3", "X -> P18LOGITS"])
def test_malformed_edge_names_are_one_line_errors(bad):
    with pytest.raises(ParseError):
        parse_edge(bad)


def test_edges_that_do_not_exist_are_rejected():
    graph = EdgeGraph.build(DEFAULT, min_position=13)
    for name in ("P14L1H0 -> P18L0H0.q", "P14L0H1 -> P12L2H0.k@12", "P19L0H1 -> P18L1H0.k@19"):
        with pytest.raises(ArithLensError):
            graph.index(name)
    with pytest.raises(ArithLensError):
        EdgeGraph.build(DEFAULT, min_position=99)


def test_node_mask_cuts_exactly_the_edges_out_of_the_removed_nodes():
    graph = EdgeGraph.build(DEFAULT, min_position=13)
    mask = graph.node_mask([Node(18, 0, False, 3), Node(15, 1, True, -1)])
    cut = {graph.edges[i] for i in torch.nonzero(mask == 0).flatten().tolist()}
    assert cut and all(e.sender in (Sender(18, 0, 3), Sender(15, 1, -1)) for e in cut)
    assert len(cut) == sum(e.sender in (Sender(18, 0, 3), Sender(15, 1, -1)) for e in graph.edges)
    assert graph.senders_in(mask) == sorted({e.sender for e in graph.edges} - {Sender(18, 0, 3), Sender(15, 1, -1)})


def test_mask_keeps_exactly_the_named_edges():
    graph = EdgeGraph.build(DEFAULT, min_position=13)
    names = [graph.names[5], graph.names[-1]]
    mask = graph.mask(names)
    assert mask.sum() == 2 and mask[5] == 1 and mask[-1] == 1
