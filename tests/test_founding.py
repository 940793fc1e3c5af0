"""The one-line answer to the founding question, read from node-study records: real ones of the shipped model and
planted ones whose answer is known."""

from __future__ import annotations

import json
from pathlib import Path

from arithlens.report.founding import founding_answer

DATA = Path(__file__).parent / "data"


def study(node: str, roles: list[str], *, geometry: dict | None = None, digit: int = 2,
          qtypes=("ADD", "SUB", "NEG"), model: str = "mix_planted") -> dict:
    """The parts of a `<node>_study.json` the answer reads (node names P<pos>L<layer>H<head>)."""
    position, rest = node[1:].split("L")
    layer = int(rest.split("H")[0])
    return {"node": node, "model": model, "kind": "head", "position": int(position), "layer": layer,
            "answer_digit": digit, "qtypes": list(qtypes),
            "verdict": {"roles": roles, "polysemantic": len(roles) > 1, "shared_direction": None,
                        "pair_geometry": geometry or {}}}


SEPARATE = {"ADD~SUB": "separate", "ADD~NEG": "separate", "SUB~NEG": "one axis, opposite signs"}


def test_a_later_head_does_both_when_no_layer0_head_does():
    records = [study(f"P18L0H{h}", []) for h in range(4)] + [
        study("P18L2H0", ["A1.SC", "A1.MB", "A1.NB"], geometry=SEPARATE), study("P18L2H1", ["A1.MB"])]
    assert founding_answer(records, n_heads=4).sentence() == (
        "In mix_planted no layer-0 head at P18 does carry and borrow; P18L2H0 does both, on separate axes.")


def test_a_layer0_head_doing_both_is_named_with_its_geometry():
    records = [study("P18L0H0", ["A1.SC", "A1.NB"], geometry={"ADD~NEG": "same axis"}), study("P18L0H1", [])]
    answer = founding_answer(records, n_heads=2)
    assert [h.node for h in answer.layer0_both] == ["P18L0H0"]
    assert answer.sentence() == "In mix_planted P18L0H0 does carry and borrow at P18, on same axis."


def test_split_jobs_and_a_partial_study_are_said():
    records = [study("P18L0H1", ["A1.SC"]), study("P18L1H3", ["A1.MB", "A1.NB"]), study("P17L0H0", ["A1.SC", "A1.MB"])]
    assert founding_answer(records, n_heads=4).sentence() == (
        "In mix_planted no studied layer-0 head at P18 (P18L0H1; 1 of 4) does carry and borrow; carry is done by "
        "P18L0H1, borrow by P18L1H3.")
    assert founding_answer([study("P18L2H0", ["A1.SC", "A1.MB"], geometry=SEPARATE)], n_heads=4).sentence() == (
        "In mix_planted no layer-0 head at P18 was studied; P18L2H0 does both, on separate axes.")


def test_the_question_does_not_apply_to_an_adder_or_without_a_head_at_a2():
    assert founding_answer([study("P18L0H0", ["A1.SC"], qtypes=("ADD",))]) is None
    assert founding_answer([study("P17L0H0", ["A0.SC"], digit=1)]) is None
    assert founding_answer([]) is None


def test_real_study_record_of_the_shipped_model():
    """P18L0H3 of the default model (the CLI reference study): no carry/borrow role, so no head does both."""
    record = json.loads((DATA / "cli_reference" / "P18L0H3_study.json").read_text())
    assert founding_answer([record], n_heads=4).sentence() == (
        "In mix_d6_l3_h4_t10K_s372001 no studied layer-0 head at P18 (P18L0H3; 1 of 4) does carry and borrow; no "
        "studied head at P18 does either.")
