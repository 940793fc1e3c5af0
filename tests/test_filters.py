"""Node filters: exact semantics, the predecessor's substring bugs only in reference-compat mode."""

from pathlib import Path

import pytest

from arithlens.analysis.filters import (
    Algo, And, Attention, Cond, Contains, Head, Impact, Layer, Name, Neuron, Not, Or, Position, filter_nodes,
)
from arithlens.analysis.nodes import Major, Node, NodeList
from arithlens.errors import ArithLensError

# The published P18 table (the predecessor's P18 table) plus its filter examples; Attn values are chosen
# to render the table's "Attends to" column (see each record's "comment").
NODES = NodeList.load(Path(__file__).parent / "data" / "p18_nodes.json")
P18_HEADS = ["P18L0H0", "P18L0H1", "P18L0H2", "P18L0H3", "P18L1H0", "P18L1H1", "P18L1H2", "P18L1H3"]


def names(flt):
    return filter_nodes(NODES, flt).names


def one_node(*tags):
    nodes = NodeList()
    for tag in tags:
        nodes.add_tag(Node(18, 0, False, 0), tag)
    return nodes.get("P18L0H0")


def test_head_and_neuron_split_the_nodes():
    assert names(Neuron()) == ["P18L0MLP", "P18L1MLP", "P18L2MLP"]
    assert len(names(Head())) == len(NODES) - 3


@pytest.mark.parametrize("cond, expected", [
    (Cond.MUST, ["P9L0H0"]),
    (Cond.MAX, ["P0L0H3", "P6L0H0", "P9L0H0"]),
    ("min", ["P9L0H0", "P15L0H2", "P15L0H3"]),
])
def test_position_conditions(cond, expected):
    assert names(And(Position(9, cond), Position(15, Cond.MAX))) == expected


def test_position_not_and_may():
    assert names(Position(18, Cond.NOT)) == ["P0L0H3", "P6L0H0", "P9L0H0", "P15L0H2", "P15L0H3"]
    assert len(names(Position(99, Cond.MAY))) == len(NODES)


def test_layer_and_name_are_equalities():
    assert names(Layer(2)) == ["P18L2MLP"]
    assert names(Name("P18L1H2")) == ["P18L1H2"]


def test_attention_to_p1_does_not_match_p10_to_p19():
    assert names(Attention(1)) == ["P6L0H0", "P9L0H0"]  # P1=73, P1=49


def test_attention_threshold_is_applied():
    assert names(Attention(6)) == ["P6L0H0", "P18L0H3"]  # P6=23, P6=88; P18L1H2 has P6=6 only
    assert names(Attention(6, min_pct=5)) == ["P6L0H0", "P18L0H3", "P18L1H2"]
    assert names(Attention(4, min_pct=50)) == ["P18L0H0"]  # exactly at the threshold counts
    assert names(Attention(4, min_pct=51)) == []


def test_attention_compat_reproduces_substring_and_missing_threshold():
    # §6.6: "P1" matched P10..P19, and any stored tag qualified (P18L1H2 tagged OPR from P6=6).
    assert names(Attention(1, reference_compat=True)) == ["P6L0H0", "P9L0H0", *P18_HEADS]
    assert "P18L1H2" in names(Attention(6, reference_compat=True))
    assert Attention(1, reference_compat=True).describe() == " must Attn P1"


def test_impact_matches_any_digit_of_the_tag():
    assert names(Impact(3)) == ["P6L0H0"]  # Impact:A43210
    assert names(Impact(6)) == ["P9L0H0"]  # Impact:A765
    assert names(Impact(2)) == ["P6L0H0", *[n.name for n in NODES if n.node.position == 18]]


def test_impact_compat_only_matches_the_leading_digit():
    assert names(Impact(3, reference_compat=True)) == []  # "A3" is not a substring of "Impact:A43210"
    assert names(Impact(4, reference_compat=True)) == ["P6L0H0"]
    assert names(Impact(6, reference_compat=True)) == []


def test_contains_matches_minor_prefix_not_the_major_name():
    pca_only = one_node("Math.Sub:A0.MP", "Math.Add:A3.SP")
    assert not Contains(Major.MATH_SUB, "M")(pca_only)
    assert not Contains(Major.MATH_ADD, "S")(pca_only)
    # Reference compat: "M" is found in "Math.Sub" itself, "S" in "A3.SP".
    assert Contains(Major.MATH_SUB, "M", reference_compat=True)(pca_only)
    assert Contains(Major.MATH_ADD, "S", reference_compat=True)(pca_only)


def test_contains_prefix_exact_and_any():
    assert names(Contains(Major.MATH_SUB, "M0", exact=True)) == ["P0L0H3"]
    assert names(Contains(Major.MATH_ADD, "S2")) == ["P18L2MLP"]
    assert names(Contains(Major.MATH_NEG, "N3")) == ["P18L1H1"]
    assert len(names(Contains(Major.MATH_NEG))) == 9
    assert names(Contains("Math.Neg", "N1", Cond.NOT)) == names(Not(Contains(Major.MATH_NEG, "N1")))


def test_algo_any_exact_and_prefix():
    assert names(Algo()) == ["P6L0H0", "P15L0H2", "P15L0H3", "P18L0H0", "P18L0H1", "P18L0H2", "P18L0H3",
                             "P18L1H2", "P18L1H3"]
    assert names(Algo("A1.SC")) == ["P18L0H0"]
    assert names(Algo("A5.ND")) == []  # the weak-pass tag is A5.ND.A5
    assert names(Algo("A5.ND", prefix=True)) == ["P15L0H2"]
    assert names(Algo("OPR")) == ["P6L0H0", "P15L0H3", "P18L0H3", "P18L1H2"]
    assert names(Algo("SGN", Cond.NOT)) == [n for n in NODES.names if n not in ("P15L0H3", "P18L0H3", "P18L1H3")]


def test_algo_compat_is_a_substring_of_the_whole_tag():
    assert names(Algo("A", reference_compat=True)) == names(Algo())  # "A" is in "Algo:" itself
    assert names(Algo("D", reference_compat=True)) == ["P15L0H2", "P18L0H1", "P18L0H2"]  # MD, ND


def test_late_token_prerequisite_finds_the_carry_head():
    # The SC search for A2 at P18: a head attending D1 (P4) and D'1 (P11) that impacts A2.
    flt = And(Head(), Position(18), Attention(4), Attention(11), Impact(2))
    assert names(flt) == ["P18L0H0"]
    assert flt.describe() == " and( IsHead, must P18, must Attn P4>=10, must Attn P11>=10, must Impact A2)"


def test_operators_compose_and_describe():
    flt = (Head() & Layer(1)) | ~Neuron()
    assert flt.describe() == " or( and( IsHead, L1), not( IsNeuron))"
    assert names(flt) == names(Head())
    assert Or()(NODES.get("P0L0H3")) is False and And()(NODES.get("P0L0H3")) is True
    assert Contains(Major.MATH_ADD, "S1").describe() == " must Math.Add S1*"
    assert Algo().describe() == " must Algo *" and Name("P0L0H3").describe() == " is P0L0H3"


def test_filter_nodes_returns_a_sorted_node_list_of_the_same_nodes():
    shuffled = NodeList(reversed(list(NODES)))
    out = filter_nodes(shuffled, Position(18))
    assert isinstance(out, NodeList) and out.names == sorted(out.names, key=lambda n: Node.parse(n))
    assert out.get("P18L0H0") is NODES.get("P18L0H0")


def test_filters_are_frozen_values():
    assert Attention(4) == Attention(4, 10) and hash(Impact(2)) == hash(Impact(2))
    with pytest.raises(AttributeError):
        Attention(4).pos = 5


def test_bounds_only_apply_to_positions():
    with pytest.raises(ArithLensError, match="only applies to Position"):
        Attention(4, cond=Cond.MAX)
    with pytest.raises(ValueError):
        Position(4, "sometimes")
