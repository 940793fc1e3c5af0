"""Discovery's parts: the wrong answers a certified circuit may have (a 95% Wilson lower bound >= the target), checks
that stop early yet decide as a full count would, question sets interleaved by qtype, and the first guess of k."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from planted_edges import EDGE_SPEC, edge_circuit_model

from arithlens.analysis.edges.discovery import CheckSet, allowed_errors, first_guess
from arithlens.analysis.edges.forward import ablation_values, edge_forward
from arithlens.analysis.edges.graph import EdgeGraph
from arithlens.analysis.faithfulness import fresh_questions, rng_for
from arithlens.analysis.stats import wilson
from arithlens.arith.qtype import QType
from arithlens.arith.questions import QuestionBatch
from arithlens.arith.vocab import PLUS
from arithlens.model.spec import ModelSpec
from arithlens.model.transformer import HookedTransformer


@pytest.mark.parametrize("n, target, k", [(1000, 0.99, 3), (600, 0.99, 1), (400, 0.99, 0), (381, 0.99, 0), (380, 0.99, -1),
                                          (2000, 0.99, 11), (100, 0.9, 4)])
def test_allowed_errors_is_the_most_wrong_answers_the_wilson_bound_allows(n, target, k):
    assert allowed_errors(n, target) == k
    if k >= 0:
        assert wilson(n - k, n)[0] >= target
    assert wilson(n - k - 1, n)[0] < target


def test_first_guess_is_the_fewest_top_edges_holding_the_mass():
    scores = np.array([-1.0, 4.0, np.nan, -3.0, 2.0])  # |scores| 4, 3, 2, 1 hold 40, 70, 90, 100%
    order = np.argsort(-np.abs(np.nan_to_num(scores)), kind="stable")
    assert [first_guess(scores, order, m) for m in (0.4, 0.41, 0.7, 0.95, 1.0)] == [1, 2, 2, 4, 4]
    assert first_guess(np.zeros(3), np.arange(3), 0.5) == 3  # nothing to rank by: every edge


@pytest.fixture(scope="module")
def planted():
    """The planted edge model on a+0 (a = 0..9, four times over) and its mean ablation over them."""
    model = edge_circuit_model()
    a = np.tile(np.arange(10), 4)
    questions = QuestionBatch(1, a, np.full(40, PLUS), np.zeros(40, dtype=np.int64))
    graph = EdgeGraph.build(EDGE_SPEC, min_position=EDGE_SPEC.layout.answer_logit_positions.start)
    return model, questions, graph, ablation_values(model, questions.torch_tokens("cpu"), "mean")


def full_count(model, questions, graph, ablated, mask) -> int:
    tokens = questions.torch_tokens("cpu")
    answer = EDGE_SPEC.layout.answer_logit_positions
    with torch.no_grad():
        logits = edge_forward(model, graph, tokens, ablated, mask)
    return int((~(logits.argmax(-1) == tokens[:, answer.start + 1 : answer.stop + 1]).all(-1)).sum())


def test_an_early_stopping_check_decides_as_the_full_count_does(planted):
    model, questions, graph, ablated = planted
    rng = np.random.default_rng(0)
    masks = [torch.ones(graph.n_edges), torch.zeros(graph.n_edges)] + [
        torch.as_tensor(rng.random(graph.n_edges) < p, dtype=torch.float32) for p in (0.3, 0.6, 0.9)]
    seen = set()
    for mask in masks:
        wrong = full_count(model, questions, graph, ablated, mask)
        seen.add(wrong)
        full = CheckSet.build(model, questions, ablated, lambda n: n).wrong(model, graph, mask, stop_early=False)
        assert full.tolist() == [wrong]
        for allowed in {0, max(0, wrong - 1), wrong, wrong + 1}:
            check = CheckSet.build(model, questions, ablated, lambda n, a=allowed: a)
            got = check.wrong(model, graph, mask, chunk=8)
            assert (got is not None) == (wrong <= allowed)
            if got is not None:
                assert got.tolist() == [wrong]
    assert {0, 36} <= seen  # the whole circuit answers all 40, the fully ablated one 4 (its constant guess)


def test_a_check_set_interleaves_the_qtypes_and_keeps_rows_with_their_ablation():
    spec = ModelSpec(n_digits=2, n_layers=1, n_heads=2, d_model=16, d_head=8, op="mix")
    model = HookedTransformer(spec, seed=1).eval()
    questions = fresh_questions(spec, 30, rng_for(5, 1))
    per_row = torch.arange(len(questions), dtype=torch.float32).view(-1, 1, 1, 1)  # row i carries i
    check = CheckSet.build(model, questions, per_row, lambda n: 0)
    assert check.names == ("ADD", "SUB", "NEG")
    counts = np.bincount(check.qtype)
    for stop in (3, 9, 30, len(check)):  # every prefix holds each qtype's share, to within one row
        share = np.bincount(check.qtype[:stop], minlength=3) / stop
        assert np.all(np.abs(share - counts / counts.sum()) <= 1 / stop + 1e-9)
    rows = check.ablated.view(-1).long().numpy()  # the original row behind each place
    assert sorted(rows.tolist()) == list(range(len(questions)))
    np.testing.assert_array_equal(check.tokens.numpy(), questions.torch_tokens("cpu").numpy()[rows])
    assert [QType(questions.qtype[r]).name for r in rows] == [check.names[c] for c in check.qtype]
