"""The ablation card and the resample-robust circuit on the planted backup-heads model (three copy heads at the
position predicting A0, any two of which outvote a constant pull towards 9), the node runner's invariants,
the report's tables and figures, and JSON round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from planted import BACKUP_SPEC, backup_heads_model, plus_zero_questions

from arithlens.analysis.circuits.card import ablation_card
from arithlens.results.circuits import AblationCard, CardRow, RobustCircuit
from arithlens.analysis.circuits.robust import resample_circuit
from arithlens.analysis.circuits.runner import Ablation, NodeRunner, card_ablations, plain_mean
from arithlens.arith.questions import QuestionBatch
from arithlens.arith.vocab import PLUS
from arithlens.errors import ArithLensError
from arithlens.report.circuit_card import card_html, card_markdown, curves_markdown, plot_card, plot_curves

COPY_AT = BACKUP_SPEC.layout.answer_logit_positions.start + 2
COPY_HEADS = [f"P{COPY_AT}L0H{h}" for h in range(3)]


def every_digit(times: int) -> QuestionBatch:
    """`a+0` for a = 0..9, each `times` times: rates over it are exact tenths."""
    a = np.repeat(np.arange(10), times)
    return QuestionBatch(1, a, np.full(len(a), PLUS), np.zeros(len(a), dtype=np.int64))


@pytest.fixture(scope="module")
def runner():
    return NodeRunner(backup_heads_model(), every_digit(4), every_digit(2), seed=3)


def test_ablation_labels_and_bad_ablations():
    assert [a.label for a in card_ablations(2)] == ["mean", "plain-mean", "resample#1", "resample#2", "zero"]
    assert Ablation.parse("resample#2") == Ablation("resample", 1)
    assert Ablation.parse("zero") == Ablation("zero")
    for bad in (lambda: Ablation("optimal"), lambda: Ablation("mean", 1), lambda: Ablation.parse("resample#x"),
                lambda: card_ablations(0)):
        with pytest.raises(ArithLensError):
            bad()


def test_keeping_every_unit_is_the_clean_model_under_every_ablation(runner):
    for ablation in card_ablations(2):
        clean, full = runner.run([None, runner.units], ablation)
        assert np.array_equal(clean.wrong, full.wrong)
        np.testing.assert_allclose(full.logit_diff, clean.logit_diff, rtol=0, atol=1e-6)


def test_unknown_node_is_a_one_line_error(runner):
    with pytest.raises(ArithLensError, match="unknown node 'P99L0H0'"):
        runner.run([["P99L0H0"]], Ablation("mean"))


def test_plain_mean_is_one_value_at_every_position():
    x = np.arange(2 * 3, dtype=np.float32).reshape(1, 3, 2)
    import torch

    out = plain_mean(torch.from_numpy(x))
    assert out.shape == (1, 3, 2)
    np.testing.assert_allclose(out[0].numpy(), [[2.0, 3.0]] * 3, atol=1e-6)


def test_card_of_the_copy_heads_survives_every_ablation(runner):
    card = ablation_card(runner, COPY_HEADS, model="planted", label="copy heads", seed=3, reference=20)
    assert card.ablations == ("mean", "plain-mean", "resample#1", "resample#2", "zero")
    assert card.qtypes == ("ADD",)
    for ablation in card.ablations:
        row = card.row(ablation, "ADD")
        assert (row.n, row.correct, row.clean_correct) == (40, 40, 40)
        assert row.ci[0] > 0.9 and row.ci[1] == 1.0
    # With nothing kept only a = 9 is right (the pull towards 9), under the ablations that carry no other
    # question's digit; resample brings another question's copy into all three heads.
    for ablation in ("mean", "zero"):
        assert card.row(ablation, "ADD").empty_correct == 4
    assert card.min_exact("resample#2") == 1.0


def test_card_of_one_copy_head_fails_all_but_nine(runner):
    card = ablation_card(runner, COPY_HEADS[:1], model="planted", label="one head",
                         ablations=[Ablation("mean"), Ablation("zero")])
    for ablation in ("mean", "zero"):
        row = card.row(ablation, "ADD")
        assert row.correct == 4 and row.exact == pytest.approx(0.1, abs=1e-12)
        assert row.logit_diff < row.clean_logit_diff


def test_card_is_deterministic_and_round_trips_through_json(runner):
    a = ablation_card(runner, COPY_HEADS[:2], model="planted", label="two heads", seed=3)
    b = ablation_card(runner, COPY_HEADS[:2], model="planted", label="two heads", seed=3)
    assert a.rows == b.rows
    again = AblationCard.from_dict(json.loads(json.dumps(a.to_dict())))
    assert again == a
    assert CardRow.from_dict(a.rows[0].to_dict()) == a.rows[0]
    with pytest.raises(ArithLensError, match="malformed ablation card"):
        AblationCard.from_dict({"model": "x"})


def test_card_runs_the_clean_model_once_and_matches_a_run_per_ablation(runner):
    asked = []

    class Counting:
        units, qtypes = runner.units, runner.qtypes

        def run(self, kept, ablation):
            asked.append((ablation.label, sum(k is None for k in kept)))
            return runner.run(kept, ablation)

    card = ablation_card(Counting(), COPY_HEADS[:1], model="planted", label="one head", seed=3, reference=20)
    assert asked == [("mean", 1), ("plain-mean", 0), ("resample#1", 0), ("resample#2", 0), ("zero", 0)]
    for ablation in card.ablations:  # the clean model's row is the one a run under that ablation gives
        clean = runner.run([None], Ablation.parse(ablation))[0]
        assert card.row(ablation, "ADD").clean_correct == int((~clean.wrong).all(1).sum()) == 40


def test_resample_circuit_needs_the_third_head_the_mean_circuit_drops():
    # Under mean ablation H0 and H1 suffice (test_circuit). Under resample the dropped head carries another
    # question's digit; when that digit is 9 it joins the pull towards 9 and outvotes the two kept heads.
    model = backup_heads_model()
    found = resample_circuit(model, search_questions=400, make_questions=plus_zero_questions, seed=5)
    assert set(found.nodes) == set(COPY_HEADS)
    assert found.draws == 2 and found.search_questions == 400
    assert dict(found.search_exact) == {"ADD": 1.0}
    assert RobustCircuit.from_dict(json.loads(json.dumps(found.to_dict()))) == found
    with pytest.raises(ArithLensError, match="malformed robust circuit"):
        RobustCircuit.from_dict({"nodes": []})


def test_report_pieces(runner):
    from arithlens.analysis.circuits.scoring import faithfulness_curve

    card = ablation_card(runner, COPY_HEADS, model="planted", label="copy <heads>",
                         ablations=[Ablation("mean"), Ablation("zero")])
    md = card_markdown(card).splitlines()
    assert md[0] == "| ablation | ADD |" and md[2].startswith("| mean | 100.0% [")
    page = card_html(card)
    assert "copy &lt;heads&gt;" in page and page.count("<tr>") == 3  # header and two ablations
    assert len(plot_card(card).axes[0].patches) == 2  # one bar per ablation for the one qtype
    curve = faithfulness_curve(runner, {COPY_HEADS[0]: 2.0, COPY_HEADS[1]: 1.0}, model="planted", method="m")
    fig = plot_curves([curve], metric="exact")
    assert len(fig.axes[0].lines) == 2  # the curve and the line at 1
    table = curves_markdown([curve], metric="exact").splitlines()
    assert len(table) == 2 + 2 and "| 0.925 | 0.074 |" in table[2]  # ADD and ALL rows


def test_report_section_embeds_its_figures(runner, tmp_path):
    from arithlens.analysis.circuits.scoring import faithfulness_curve
    from arithlens.report.circuit_card import circuit_card_section

    card = ablation_card(runner, COPY_HEADS, model="planted", label="copy heads", ablations=[Ablation("mean")])
    curve = faithfulness_curve(runner, {COPY_HEADS[0]: 2.0, COPY_HEADS[1]: 1.0}, model="planted", method="m")
    page = circuit_card_section([card], [curve], tmp_path)
    assert page.count("data:image/png;base64,") == 3  # the card's bars and two curve figures
    assert sorted(p.name for p in tmp_path.iterdir()) == ["circuit_card_0.png", "mib_curve_exact.png",
                                                           "mib_curve_logit_diff.png"]
    assert "<td>0.925</td><td>0.074</td></tr>" in page  # exact CPR / CMD of the planted step


def test_edge_runner_scores_a_node_circuit_as_the_node_runner_does(runner):
    # A node circuit is the edge circuit without the edges out of the removed nodes; the ablated values are linear
    # in the node's activation (z . W_O, post . W_out), so both runners must agree (resample rows are drawn
    # differently, so only the ablations without draws are compared).
    pytest.importorskip("arithlens.analysis.edges.forward")
    from arithlens.analysis.circuits.edge_runner import EdgeRunner
    from arithlens.analysis.nodes import Node

    edge_runner = EdgeRunner(runner.model, runner.questions, runner.reference)
    removed = [Node.for_model(n, BACKUP_SPEC) for n in runner.units if n not in COPY_HEADS[:2]]
    mask = edge_runner.graph.node_mask(removed).bool().tolist()
    kept = [name for name, keep in zip(edge_runner.units, mask) if keep]
    for kind in ("mean", "plain-mean", "zero"):
        by_node = runner.run([None, COPY_HEADS[:2]], Ablation(kind))
        by_edge = edge_runner.run([None, kept], Ablation(kind))
        for n, e in zip(by_node, by_edge):
            assert np.array_equal(n.wrong, e.wrong)
            np.testing.assert_allclose(e.logit_diff, n.logit_diff, rtol=1e-4, atol=1e-4)
    card = ablation_card(edge_runner, kept, model="planted", label="edges", unit="edge")
    assert card.n_all == len(edge_runner.units) and card.row("mean", "ADD").correct == 40
    # Resample rows are drawn once per question set: computing their values in blocks changes nothing.
    blocks = EdgeRunner(runner.model, runner.questions, runner.reference, rows=7)
    a, b = blocks.run([kept], Ablation("resample", 1))[0], edge_runner.run([kept], Ablation("resample", 1))[0]
    assert np.array_equal(a.wrong, b.wrong)
    np.testing.assert_allclose(a.logit_diff, b.logit_diff, rtol=1e-5, atol=1e-5)


def test_the_edge_runners_clean_run_is_every_edge_kept(runner):
    # The clean model runs as the plain forward; the edge-masked forward with every edge kept must agree with it.
    pytest.importorskip("arithlens.analysis.edges.forward")
    from arithlens.analysis.circuits.edge_runner import EdgeRunner

    edge_runner = EdgeRunner(runner.model, runner.questions, runner.reference)
    clean, every = edge_runner.run([None, edge_runner.units], Ablation("zero"))
    assert np.array_equal(clean.wrong, every.wrong)
    np.testing.assert_allclose(every.logit_diff, clean.logit_diff, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(every.loss, clean.loss, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["mean", "plain-mean", "zero"])
def test_the_empty_edge_circuit_is_one_answer_for_every_question(runner, kind):
    # With no edge kept and one ablated value for all questions the runner computes the first question only: the
    # full edge-masked forward must give every question the same logits.
    pytest.importorskip("arithlens.analysis.edges.forward")
    from arithlens.analysis.circuits.edge_runner import EdgeRunner
    from arithlens.analysis.edges.forward import edge_forward
    from arithlens.analysis.faithfulness import RunScores, targets_of

    edge_runner = EdgeRunner(runner.model, runner.questions, runner.reference)
    fast = edge_runner.run([()], Ablation(kind))[0]
    tokens = edge_runner._tokens
    with torch.inference_mode():
        full = edge_forward(runner.model, edge_runner.graph, tokens, edge_runner._values[kind],
                            torch.zeros(edge_runner.graph.n_edges))
    torch.testing.assert_close(full, full[:1].expand_as(full), rtol=1e-4, atol=1e-4)
    slow = RunScores.of(full, targets_of(tokens, runner.model.spec))
    assert np.array_equal(fast.wrong, slow.wrong)
    np.testing.assert_allclose(fast.logit_diff, slow.logit_diff, rtol=1e-4, atol=1e-4)


def test_slices_are_balanced_prefixes_in_row_order():
    from arithlens.analysis.circuits.card import qtype_slices

    add = np.array([1, 1, 0, 1, 0, 1, 1, 0], dtype=bool)  # ADD rows 0 1 3 5 6, SUB rows 2 4 7
    slices = qtype_slices([("ADD", add), ("SUB", ~add)], 2)
    assert [s.tolist() for s in slices] == [[0, 1, 2, 4], [3, 5, 7], [6]]
    with pytest.raises(ArithLensError, match="at least one question"):
        qtype_slices([("ADD", add)], 0)


def test_a_card_run_in_slices_equals_the_card_of_all_questions(runner):
    from arithlens.analysis.circuits.card import ablation_cards, card_runs, cards_from_runs, joined_runs, qtype_slices

    circuits = {"one head": COPY_HEADS[:1], "two heads": COPY_HEADS[:2]}
    chosen = [Ablation("mean"), Ablation("zero"), Ablation("plain-mean")]
    whole = ablation_cards(runner, circuits, model="planted", ablations=chosen, seed=3, reference=20)
    slices = qtype_slices(runner.qtypes, 15)
    assert [len(s) for s in slices] == [15, 15, 10]
    parts = []
    for rows in slices:
        part = NodeRunner(runner.model, runner.questions.select(rows), runner.reference, seed=3)
        parts.append({a.label: card_runs(part, circuits, a, clean=k == 0) for k, a in enumerate(chosen)})
    runs = {a.label: joined_runs([p[a.label] for p in parts]) for a in chosen}
    sliced = cards_from_runs(runs, runner.qtypes, circuits, model="planted", unit="node", n_all=len(runner.units),
                             seed=3, reference=20)
    for name in circuits:
        for a, b in zip(whole[name].rows, sliced[name].rows):
            assert (a.ablation, a.n, a.correct, a.clean_correct, a.empty_correct) == (
                b.ablation, b.n, b.correct, b.clean_correct, b.empty_correct)
            assert b.logit_diff == pytest.approx(a.logit_diff, abs=1e-5)
    assert sliced["one head"].row("mean", "ADD").correct == 4  # as the one-card test finds
    with pytest.raises(ArithLensError, match="clean model"):
        cards_from_runs({"zero": parts[0]["zero"]}, runner.qtypes, circuits, model="planted", unit="node", n_all=3)
