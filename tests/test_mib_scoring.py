"""MIB scoring: circuit sizes rounded as MIB rounds them, CPR and CMD by MIB's trapezoids, the ranking by
|score|, and the whole curve on the planted backup-heads model, whose curve is known exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from planted import backup_heads_model
from test_circuit_card import COPY_HEADS, every_digit

from arithlens.analysis.circuits.node_scores import single_node_scores
from arithlens.results.circuits import MIB_PERCENTAGES, FaithfulnessCurve, mib_areas
from arithlens.analysis.circuits.runner import Ablation, NodeRunner
from arithlens.analysis.circuits.scoring import faithfulness_curve, mib_sizes, ranked_units
from arithlens.analysis.faithfulness import RunScores, mean_values
from arithlens.errors import ArithLensError


@pytest.fixture(scope="module")
def runner():
    return NodeRunner(backup_heads_model(), every_digit(3), every_digit(1))


def test_sizes_round_down_as_mib_does():
    assert mib_sizes(330) == (0, 0, 1, 3, 6, 16, 33, 66, 165, 330)
    assert mib_sizes(28) == (0, 0, 0, 0, 0, 1, 2, 5, 14, 28)
    with pytest.raises(ArithLensError):
        mib_sizes(10, (0.5, 0.1))


def test_areas_are_mibs_trapezoids_on_a_linear_axis():
    step = (0, 0, 0, 0, 0, 0, 1, 1, 1, 1)  # nothing up to 5%, everything from 10%
    cpr, cmd = mib_areas(MIB_PERCENTAGES, step)
    assert cpr == pytest.approx(0.05 * 0.5 + 0.9, abs=1e-12)  # 0.925
    assert cmd == pytest.approx(0.049 + 0.05 * 0.5, abs=1e-12)  # 0.074
    assert mib_areas(MIB_PERCENTAGES, (1.0,) * 10) == pytest.approx((0.999, 0.0), abs=1e-12)
    over = (2.0,) * 10  # overshooting counts in CMD as much as falling short
    assert mib_areas(MIB_PERCENTAGES, over)[1] == pytest.approx(0.999, abs=1e-12)


def test_ranking_is_by_absolute_score_with_ties_in_unit_order():
    units = ["a", "b", "c", "d"]
    assert ranked_units(units, {"c": -3.0, "b": 2.0}) == ["c", "b", "a", "d"]
    with pytest.raises(ArithLensError, match="not a unit"):
        ranked_units(units, {"z": 1.0})
    with pytest.raises(ArithLensError, match="finite"):
        ranked_units(units, {"a": float("nan")})


def test_planted_curve_is_the_known_step(runner):
    # The three copy heads first: one alone cannot outvote the pull towards 9 (only a = 9 right, as with
    # none), two can. So exact faithfulness is 0 up to k = 1 (5% of 28 nodes) and 1 from k = 2 (10%).
    scores = {COPY_HEADS[0]: 3.0, COPY_HEADS[1]: 2.0, COPY_HEADS[2]: 1.0}
    curve = faithfulness_curve(runner, scores, model="planted", method="planted")
    assert curve.sizes == (0, 0, 0, 0, 0, 1, 2, 5, 14, 28)
    add = curve["ADD"]
    assert add.n == 30 and add.clean_exact == 1.0 and add.empty_exact == pytest.approx(0.1, abs=1e-12)
    assert add.faithfulness("exact") == pytest.approx((0, 0, 0, 0, 0, 0, 1, 1, 1, 1), abs=1e-12)
    assert curve.areas("ADD", "exact") == pytest.approx((0.925, 0.074), abs=1e-12)
    assert curve["ALL"].faithfulness("exact") == add.faithfulness("exact")  # one qtype: pooled is the same
    # The logit difference is recovered in full with every node, and none of it with none.
    f = add.faithfulness("logit_diff")
    assert f[0] == pytest.approx(0.0, abs=1e-9) and f[-1] == pytest.approx(1.0, abs=1e-9)


def test_single_node_scores_put_the_copy_heads_first(runner):
    model = runner.model
    scores = single_node_scores(model, runner.questions, mean_values(model, runner.reference))
    assert len(scores) == 28
    assert set(ranked_units(runner.units, scores)[:3]) == set(COPY_HEADS)
    # (the margin saturates: with one copy head gone the other two still win, by less)
    assert all(scores[h] > 0.3 for h in COPY_HEADS)
    assert max(abs(v) for u, v in scores.items() if u not in COPY_HEADS) < 0.05
    curve = faithfulness_curve(runner, scores, model="planted", method="single-node ablation")
    assert curve.areas("ADD", "exact") == pytest.approx((0.925, 0.074), abs=1e-12)


class PlantedRunner:
    """A runner whose metric is known: each question's logit difference is how many of the 4 planted units
    are kept (every question of qtype B also needs unit p0 kept to be right)."""

    def __init__(self):
        self.units = tuple(f"u{i}" for i in range(100))
        self.planted = ("u10", "u20", "u30", "u40")
        self.qtypes = (("A", np.array([True, True, False])), ("B", np.array([False, False, True])))

    def run(self, kept, ablation):
        out = []
        for k in kept:
            k = set(self.units if k is None else k)
            hits = sum(u in k for u in self.planted)
            wrong = np.array([[hits < 2], [hits < 2], ["u10" not in k]])
            out.append(RunScores(wrong, np.zeros(3), np.full(3, float(hits))))
        return out


def test_curve_per_qtype_and_pooled_on_a_runner_with_a_known_metric():
    runner = PlantedRunner()
    scores = {"u10": 9.0, "u20": -8.0, "u5": 7.0, "u30": 6.0, "u40": 0.5}
    curve = faithfulness_curve(runner, scores, model="m", method="planted", ablation=Ablation("zero"))
    assert curve.sizes == (0, 0, 0, 1, 2, 5, 10, 20, 50, 100)
    # top-k: u10, u20, u5, u30, u40: planted kept at k = 1, 2, 5 -> 1, 2, 4 of 4
    expect = (0, 0, 0, 0.25, 0.5, 1, 1, 1, 1, 1)
    assert curve["ALL"].faithfulness() == pytest.approx(expect, abs=1e-12)
    assert curve["A"].faithfulness("exact") == pytest.approx((0, 0, 0, 0, 1, 1, 1, 1, 1, 1), abs=1e-12)
    assert curve["B"].faithfulness("exact") == pytest.approx((0, 0, 0, 1, 1, 1, 1, 1, 1, 1), abs=1e-12)
    assert curve.ablation == "zero"


def test_curve_json_round_trip(runner):
    curve = faithfulness_curve(runner, {COPY_HEADS[0]: 1.0}, model="planted", method="x",
                               ablation=Ablation("resample", 1))
    text = json.dumps(curve.to_dict())
    again = FaithfulnessCurve.from_dict(json.loads(text))
    assert again == curve
    assert json.loads(text)["scores"]["ADD"]["exact"]["cpr"] == pytest.approx(curve.cpr("ADD", "exact"), abs=1e-12)
    with pytest.raises(ArithLensError, match="malformed"):
        FaithfulnessCurve.from_dict({"model": "m"})


def test_edge_curves_per_method_on_the_planted_edge_circuit():
    # MIB's table over edges (scripts/circuit_card.py edges): each method's scores ranked, the top-k edges kept.
    # On the planted model exact patching, EAP and EAP-IG all put the 7 planted edges first (AUROC 1,
    # test_edges_planted), so from 2% of the edges (13 of 657) on every curve keeps all of them: the model's logit
    # difference, exactly right answers; with no edge kept, the empty circuit's.
    import torch
    from planted_edges import EDGE_SPEC, PLANTED_EDGES, edge_circuit_model

    from arithlens.arith.questions import QuestionBatch
    from arithlens.arith.vocab import PLUS

    from arithlens.analysis.circuits.edge_runner import EdgeRunner
    from arithlens.analysis.edges.forward import ablation_values
    from arithlens.analysis.edges.graph import EdgeGraph
    from arithlens.analysis.edges.scores import eap_ig_scores, eap_scores, exact_scores

    model = edge_circuit_model()
    questions = QuestionBatch(1, np.arange(10), np.full(10, PLUS), np.zeros(10, dtype=np.int64))
    graph = EdgeGraph.build(EDGE_SPEC, min_position=EDGE_SPEC.layout.answer_logit_positions.start)
    runner = EdgeRunner(model, questions, questions, graph=graph)
    tokens = questions.torch_tokens("cpu")
    mean = ablation_values(model, tokens, "mean")
    methods = {"exact": exact_scores, "eap": eap_scores, "eap_ig": eap_ig_scores}
    for method, score in methods.items():
        with torch.enable_grad():
            scores = dict(zip(runner.units, map(float, score(model, graph, tokens, mean))))
        top = sorted(runner.units, key=lambda u: -abs(scores[u]))[: len(PLANTED_EDGES)]
        assert set(top) == set(PLANTED_EDGES), method
        curve = faithfulness_curve(runner, scores, model="planted edges", method=method, unit="edge")
        assert curve.sizes == (0, 1, 3, 6, 13, 32, 65, 131, 328, 657)
        ld = curve["ALL"].faithfulness("logit_diff")
        assert ld[0] == pytest.approx(0, abs=1e-9)
        assert all(f == pytest.approx(1, abs=1e-2) for f in ld[4:]), (method, ld)
        assert curve["ADD"].exact[4:] == (1.0,) * 6
        cpr, cmd = curve.areas("ALL", "logit_diff")
        assert cpr > 0.97 and cmd < 0.03
