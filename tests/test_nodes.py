"""Node names, typed tags and the predecessor's behaviour-JSON schema."""

import json

import pytest

from arithlens.analysis.nodes import Major, Node, NodeList, Tag, compact_impact, impact_string
from arithlens.errors import ParseError


@pytest.mark.parametrize("name", ["P18L0H0", "P18L0MLP", "P9L2M123", "P0L0H3"])
def test_node_names_round_trip(name):
    assert Node.parse(name).name == name


@pytest.mark.parametrize("name, message", [
    ("P99L0H0", "position 99 is outside 0..21"), ("P18L7H0", "layer 7 is outside 0..2"),
    ("P18L0H9", "head 9 is outside 0..3"), ("X", "expected a name like P18L0H0"), ("P18L0", "expected a name"),
])
def test_bad_node_names_are_one_line_errors(name, message):
    with pytest.raises(ParseError, match=message):
        Node.parse(name, n_ctx=22, n_layers=3, n_heads=4, d_mlp=512)


def test_nodes_sort_by_position_layer_heads_before_mlp():
    names = ["P18L0MLP", "P18L1H0", "P9L2H1", "P18L0H3", "P18L0H0"]
    assert [n.name for n in sorted(Node.parse(x) for x in names)] == [
        "P9L2H1", "P18L0H0", "P18L0H3", "P18L0MLP", "P18L1H0"]


def test_tags_parse_typed_values_and_render_reference_strings():
    assert Tag.parse("Attn:P4=50").attention == (4, 50)
    assert Tag.parse("Impact:A43210").impact_digits == (4, 3, 2, 1, 0)
    assert str(Tag.parse("Fail:6")) == "Fail%:6"  # legacy major
    assert compact_impact("A43210") == "A4..0" and compact_impact("A7543") == "A7543"
    assert impact_string([0, 2, 4, 3, 2]) == "A4320"
    with pytest.raises(ParseError, match="unknown major"):
        Tag.parse("Bogus:1")


def test_attention_match_is_exact_not_substring():
    un = NodeList.from_records([{"position": 18, "layer": 0, "is_head": True, "num": 0,
                                 "tags": ["Attn:P10=51", "Attn:P3=47"]}]).get("P18L0H0")
    assert un.attention() == {10: 51, 3: 47} and 1 not in un.attention()


def test_behavior_json_round_trips_the_predecessor_schema(tmp_path):
    records = [
        {"position": 0, "layer": 0, "is_head": True, "num": 3,
         "tags": ["Fail%:5", "Impact:A7", "Math.Sub:M0", "Math.Neg:N1234", "Attn:P0=100"]},
        {"position": 18, "layer": 0, "is_head": False, "num": 0, "tags": ["Fail%:50", "Impact:A2"]},
    ]
    nodes = NodeList.from_records(records)
    assert nodes.names == ["P0L0H3", "P18L0MLP"]
    path = nodes.save(tmp_path / "m_behavior.json")
    assert json.loads(path.read_text()) == records
    again = NodeList.load(path)
    assert [len(n.tags) for n in again] == [5, 2]
    assert again.get("P0L0H3").values(Major.MATH_NEG) == ["N1234"]
