"""Quanta maps and tables: cell texts and colours from the published P18 nodes, merging, files written."""

from pathlib import Path

import pytest

from arithlens.analysis.nodes import Major, NodeList
from arithlens.errors import ArithLensError
from arithlens.model.spec import ModelSpec
from arithlens.report.quanta_maps import (
    Block, attention_text, catalogue, draw_all_maps, draw_map, draw_position_failures, draw_quanta_at, file_stem,
    map_blocks, map_cells, map_grid, operation_coverage, operation_letters, quanta_at_rows,
)

DATA = Path(__file__).parent / "data" / "p18_nodes.json"
NODES = NodeList.load(DATA)
SPEC = ModelSpec.parse("ins1_mix_d6_l3_h4_t40K_s372001")
LAYOUT = SPEC.layout
MAPS = catalogue(LAYOUT)
P_NAMES = [f"P{p}" for p in range(SPEC.n_ctx)]


def cells(name, nodes=NODES):
    return {n.name: cell for n, cell in map_cells(nodes, MAPS[name], LAYOUT).items()}


@pytest.mark.parametrize("attention", [{10: 51, 3: 47}, {3: 47, 10: 51}, {10: 48, 3: 47}, {3: 47, 10: 45},
                                       {10: 45, 3: 47}])
def test_close_top_two_attention_is_alphabetical(attention):
    assert attention_text(attention, P_NAMES) == "P10 P3"
    assert attention_text(attention, LAYOUT.meanings) == "D'2 D2"


def test_attention_text_orders_by_share_and_drops_ten_percent_or_less():
    assert attention_text({10: 30, 3: 60}, LAYOUT.meanings) == "D2 D'2"  # 30 points apart, 30 < 40
    assert attention_text({3: 55, 10: 44}, LAYOUT.meanings) == "D'2 D2"  # both >= 40
    assert attention_text({13: 60, 11: 30, 6: 10, 18: 3}, LAYOUT.meanings) == "= D'1"
    assert attention_text({13: 35, 11: 25, 18: 20, 10: 15}, LAYOUT.meanings) == "= D'1 A3 D'2"
    assert attention_text({1: 9}, LAYOUT.meanings) == ""


def test_attention_map_matches_the_published_attends_to_column():
    got = cells("AttentionBehavior")
    assert got["P18L0H0"] == ("D'1 D1", 0)  # 50 + 50 = 100% shown -> colour 0
    assert got["P18L0H3"] == ("OPR", 2)  # 88% shown; the sign position at 8% is not
    assert got["P18L1H2"] == ("= D'1", 1)
    assert got["P6L0H0"] == ("D4 OPR", 1) and got["P9L0H0"] == ("D'4 D4", 1)
    assert "P18L0MLP" not in got and "P15L0H2" not in got  # heads only; no Attn tags


def test_attention_colour_is_nine_for_five_attention_tags():
    un = NodeList.from_records([{"position": 18, "layer": 0, "is_head": True, "num": 0,
                                 "tags": ["Attn:P4=60", "Attn:P11=30", "Attn:P1=4", "Attn:P2=3", "Attn:P3=2"]}])
    assert cells("AttentionBehavior", un)["P18L0H0"] == ("D1 D'1", 9)


def test_failure_cells_show_less_than_one_and_tens_as_colour():
    nodes = NodeList.from_records([{"position": 18, "layer": 0, "is_head": True, "num": 0, "tags": ["Fail%:0"]},
                                   {"position": 18, "layer": 1, "is_head": True, "num": 0, "tags": ["Fail%:57"]}])
    assert cells("FailureFrequency", nodes) == {"P18L0H0": ("<1", 0), "P18L1H0": ("57", 5)}
    assert len(cells("FailureFrequency")) == len(NODES) - 2  # the P15 nodes carry Algo tags only


def test_impact_cells_are_compacted_and_coloured_by_highest_digit():
    got = cells("AnswerImpact")
    assert got["P6L0H0"] == ("A4..0", 4) and got["P9L0H0"] == ("A7..5", 7) and got["P0L0H3"] == ("A7", 7)
    assert got["P18L1MLP"] == ("A2", 2)
    assert MAPS["AnswerImpact"].shades == 8


def test_min_complexity_cells():
    add, sub, neg = cells("AddMinComplexity"), cells("SubMinComplexity"), cells("NegMinComplexity")
    assert (add["P18L0H0"], sub["P18L0H0"], "P18L0H0" in neg) == (("S1", 1), ("M1", 1), False)
    assert (add["P18L0H1"], sub["P18L0H1"], neg["P18L0H1"]) == (("S0", 0), ("M0", 0), ("N1", 1))
    assert add["P18L2MLP"] == ("S2", 2) and neg["P18L1H1"] == ("N3", 3)


def test_min_complexity_ignores_pca_tags_and_drops_the_plus():
    un = NodeList.from_records([{"position": 14, "layer": 0, "is_head": True, "num": 0,
                                 "tags": ["Math.Add:A3.SP", "Math.Sub:M4+", "Math.Sub:A0.MP"]}])
    assert cells("AddMinComplexity", un) == {} and cells("SubMinComplexity", un) == {"P14L0H0": ("M4", 4)}


def test_operation_coverage_letters_and_counts():
    got = cells("OperationCoverage")
    assert got["P18L0H0"] == ("SM", 2) and got["P18L0H3"] == ("MN", 2) and got["P9L0H0"] == ("SMN", 3)
    assert got["P18L1H2"] == ("S", 1) and "P15L0H2" not in got
    cov = operation_coverage(NODES)
    assert dict(cov.by_operation) == {"S": 9, "M": 12, "N": 9}
    assert dict(cov.by_count) == {3: 5, 2: 6, 1: 3}
    assert str(cov) == "nodes used by S 9, M 12, N 9; by 3 ops 5, 2 ops 6, 1 ops 3"
    assert operation_letters(NODES.get("P15L0H3")) == ""


def test_purpose_maps_list_algo_tags():
    per_node, all_nodes = cells("MathsPurposePerNode"), cells("MathsPurposeAllNodes")
    assert per_node["P18L0H0"] == ("A1.SC A1.MB A1.NB", 1) and per_node["P15L0H2"] == ("A5.SA A5.MD A5.ND.A5", 1)
    assert "P18L0MLP" not in per_node and all_nodes["P18L0MLP"] == (" ", 1) and all_nodes["P18L0H3"] == ("OPR SGN", 2)
    assert len(all_nodes) == len(NODES)
    assert MAPS["AlgorithmPurpose"] is MAPS["MathsPurposePerNode"]


def test_quanta_at_p18_reproduces_the_published_table():
    assert quanta_at_rows(NODES, LAYOUT, 18) == [
        ("P18L0H0", "A2", "A1.SC A1.MB A1.NB", "D'1 D1", "S123", "M123", "", "6"),
        ("P18L0H1", "A2", "A2.SA A2.MD A2.ND", "D'2 D2", "S01234", "M0123", "N1234", "44"),
        ("P18L0H2", "A2", "A2.SA A2.MD A2.ND", "D'2 D2", "S012345", "M0123", "N1234", "57"),
        ("P18L0H3", "A2", "OPR SGN", "OPR", "", "M0123", "N1234", "11"),
        ("P18L0MLP", "A2", "", "", "S01234", "M0123", "N1234", "50"),
        ("P18L1H0", "A2", "", "A3 D'2 D'1", "", "M123", "", "2"),
        ("P18L1H1", "A2", "", "= D'1 A3 D'2", "", "M012", "N34", "2"),
        ("P18L1H2", "A2", "OPR", "= D'1", "S01234", "", "", "11"),
        ("P18L1H3", "A2", "SGN", "= A3", "S12345", "", "", "3"),
        ("P18L1MLP", "A2", "", "", "S01234", "M0123", "N2", "23"),
        ("P18L2MLP", "A2", "", "", "S2", "M0123", "", "7"),
    ]


def test_grid_has_only_columns_and_rows_with_cells():
    cols, rows = map_grid(map_cells(NODES, MAPS["AddMinComplexity"], LAYOUT))
    assert cols == [9, 18]
    assert [r.row_name for r in rows] == ["L0H0", "L0H1", "L0H2", "L0MLP", "L1H2", "L1H3", "L1MLP", "L2MLP"]


def test_identical_vertical_neighbours_merge_only_where_the_map_says_so():
    impact = map_blocks(map_cells(NODES, MAPS["AnswerImpact"], LAYOUT), MAPS["AnswerImpact"].merge)
    assert Block(3, 0, 11, "A2", 2) in impact  # column P18, all 11 rows in one block
    fail = map_blocks(map_cells(NODES, MAPS["FailureFrequency"], LAYOUT), MAPS["FailureFrequency"].merge)
    assert len(fail) == len(NODES) - 2
    purpose = map_blocks(map_cells(NODES, MAPS["MathsPurposePerNode"], LAYOUT), True)
    assert Block(2, 1, 2, "A2.SA\nA2.MD\nA2.ND", 1) in purpose  # P18 L0H1 + L0H2, spaces -> newlines


def test_file_names_drop_spaces_commas_colons_hyphens():
    assert file_stem("m_", "Positive-answer Subtraction Min-Complexity") == "m_PositiveanswerSubtractionMinComplexity"
    assert file_stem("", "Quanta At P18") == "QuantaAtP18"


def test_draw_all_maps_writes_every_map_with_cells_and_the_answer_position_tables(tmp_path):
    paths = draw_all_maps(NODES, SPEC, tmp_path, "m_", formats=("png", "svg"))
    stems = ["FailureFrequencyBehaviorPerNode", "AnswerImpactBehaviorPerNode", "AttentionBehaviorPerHead",
             "MathsOperationCoverage", "AdditionMinComplexity", "PositiveanswerSubtractionMinComplexity",
             "NegativeanswerSubtractionMinComplexity", "MathsPurposePerNode", "MathsPurposeAllNodes",
             "QuantaAtP15", "QuantaAtP18"]
    assert [p.name for p in paths] == [f"m_{s}.{fmt}" for s in stems for fmt in ("png", "svg")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temp files left
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths if p.suffix == ".png")
    svg = (tmp_path / "m_AttentionBehaviorPerHead.svg").read_text()
    assert ">D'1<" in svg and ">P18<" in svg and ">L1H3<" in svg  # real text, not glyph paths


def test_maps_without_cells_are_skipped(tmp_path):
    no_algo_no_neg = NodeList.from_records([{"position": 18, "layer": 0, "is_head": False, "num": 0,
                                             "tags": ["Fail%:50", "Impact:A2", "Math.Add:S01234"]}])
    assert draw_map(no_algo_no_neg, MAPS["NegMinComplexity"], LAYOUT, tmp_path, "m_") == []
    names = {p.name for p in draw_all_maps(no_algo_no_neg, SPEC, tmp_path, formats=("png",))}
    assert names == {f"{SPEC.name}{s}.png" for s in ("FailureFrequencyBehaviorPerNode", "AnswerImpactBehaviorPerNode",
                                                      "MathsOperationCoverage", "AdditionMinComplexity", "QuantaAtP18")}
    assert draw_quanta_at(no_algo_no_neg, SPEC, 17, tmp_path, "m_") == []


def test_position_failures_table(tmp_path):
    counts = [40, 0, 0, 0, 0, 0, 28, 0, 0, 66, 112, 59, 166, 105, 173, 231, 385, 381, 370, 434, 470, 0]
    [svg] = draw_position_failures(counts, SPEC, tmp_path, "m_", formats=("svg",))
    assert svg.name == "m_FailuresWhenPositionAblated.svg"
    text = svg.read_text()
    assert ">P21<" in text and ">OPR<" in text and ">470<" in text and "># fails<" in text
    with pytest.raises(ArithLensError, match="expected 22 position failure counts, got 3"):
        draw_position_failures([1, 2, 3], SPEC, tmp_path, "m_")


def test_maps_read_both_predecessor_schemas(tmp_path):
    # An older behaviour file (Fail:, MathAdd:) plus a `_maths.json` with Algo tags only, merged.
    old = NodeList.from_records([{"position": 18, "layer": 0, "is_head": True, "num": 0,
                                  "tags": ["Fail:6", "Impact:A2", "MathAdd:S123", "MathSub:M123"]}])
    NODES.save(tmp_path / "m_maths.json", majors=[Major.ALGO])
    for un in NodeList.load(tmp_path / "m_maths.json"):
        merged = old.ensure(un.node)
        for tag in un.tags:
            merged.add(tag)
    assert cells("FailureFrequency", old) == {"P18L0H0": ("6", 0)}
    assert cells("AddMinComplexity", old) == {"P18L0H0": ("S1", 1)}
    assert cells("MathsPurposePerNode", old) == cells("MathsPurposePerNode")
    assert len(old) == len(NODES) and old.get("P18L0MLP").tags == []  # maths rows list every useful node
