"""The edge-masked forward: equal to the model with every edge kept, equal to the engine's node ablation when every
edge out of a node is cut, per-(query, key) keys, per-row masks, and gradients equal to finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arithlens.analysis.edges.forward import ablation_values, edge_forward, logit_diff, sender_outputs
from arithlens.analysis.edges.graph import EdgeGraph
from arithlens.analysis.faithfulness import fresh_questions, reference_questions, rng_for
from arithlens.analysis.nodes import Node
from arithlens.errors import ArithLensError
from arithlens.interventions import Engine, compute_means, mean_ablate
from arithlens.model.hooks import act_name
from arithlens.model.spec import ModelSpec
from arithlens.model.transformer import HookedTransformer

SPEC = ModelSpec(n_digits=2, n_layers=2, n_heads=2, d_model=16, d_head=8, op="mix")
ANSWER = SPEC.layout.answer_logit_positions


@pytest.fixture(scope="module")
def model():
    return HookedTransformer(SPEC, seed=11).eval()


@pytest.fixture(scope="module")
def tokens():
    return fresh_questions(SPEC, 6, rng_for(0, 1)).torch_tokens("cpu")


@pytest.fixture(scope="module")
def reference():
    return reference_questions(SPEC, 64, rng_for(0, 2)).torch_tokens("cpu")


def test_sender_outputs_sum_to_the_residual_stream(model, tokens):
    outs = sender_outputs(model, tokens)  # (B, S, P, D)
    _, cache = model.run_with_cache(tokens, [act_name("resid_post", SPEC.n_layers - 1)])
    biases = sum(b.attn.b_O + b.mlp.b_out for b in model.blocks)
    torch.testing.assert_close(outs.sum(1) + biases, cache[act_name("resid_post", SPEC.n_layers - 1)],
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("min_position", [0, ANSWER.start])
def test_every_edge_kept_gives_the_model_logits(model, tokens, reference, min_position):
    graph = EdgeGraph.build(SPEC, min_position=min_position)
    abl = ablation_values(model, reference, "mean")
    with torch.no_grad():
        got = edge_forward(model, graph, tokens, abl, torch.ones(graph.n_edges, requires_grad=False), chunk=4)
        want = model(tokens, logit_positions=ANSWER)
    assert (got - want).abs().max() <= 1e-5


def test_every_edge_kept_with_gradients_on_gives_the_model_logits(model, tokens, reference):
    graph = EdgeGraph.build(SPEC)
    mask = torch.ones(graph.n_edges, requires_grad=True)  # forces every group through the edited path
    got = edge_forward(model, graph, tokens, ablation_values(model, reference, "mean"), mask)
    with torch.no_grad():
        want = model(tokens, logit_positions=ANSWER)
    assert (got.detach() - want).abs().max() <= 1e-5


@pytest.mark.parametrize("node", [Node(7, 0, False, 1), Node(6, 1, False, 0), Node(5, 0, True, -1),
                                  Node(8, 1, True, -1), Node(2, 0, False, 0)])
def test_cutting_every_edge_of_a_node_is_the_engine_mean_ablating_it(model, tokens, reference, node):
    graph = EdgeGraph.build(SPEC)  # every receiver position, so no edge of the node is left out
    abl = ablation_values(model, reference, "mean")
    site = act_name("post", node.layer) if node.is_mlp else act_name("z", node.layer)
    means = compute_means(model, reference, [site])
    iv = mean_ablate(means, site, node.position, head=None if node.is_mlp else node.num)
    with torch.no_grad():
        got = edge_forward(model, graph, tokens, abl, graph.node_mask([node]))
    want = Engine(model, tokens).answer_logits([iv])
    clean = model(tokens, logit_positions=ANSWER)
    assert (want - clean).abs().max() > 1e-3  # the ablation changes something
    assert (got - want).abs().max() <= 1e-4


def test_a_key_edge_is_read_by_one_query_only(model, tokens, reference):
    graph = EdgeGraph.build(SPEC)
    abl = ablation_values(model, reference, "zero")
    p, q = ANSWER.start + 2, 3
    mask = torch.ones(graph.n_edges)
    mask[graph.index(f"P{q}L0H1 -> P{p}L1H0.k@{q}")] = 0.0
    with torch.no_grad():
        got = edge_forward(model, graph, tokens, abl, mask)
        clean = edge_forward(model, graph, tokens, abl, torch.ones(graph.n_edges))
    i = p - ANSWER.start
    # answer positions before the query read the clean key (recomputed along another path: float noise only)
    assert (got[:, :i] - clean[:, :i]).abs().max() <= 1e-5
    assert (got[:, i] - clean[:, i]).abs().max() > 1e-4


def test_per_row_masks_equal_separate_runs(model, tokens, reference):
    graph = EdgeGraph.build(SPEC, min_position=ANSWER.start)
    abl = ablation_values(model, reference, "mean")
    masks = torch.ones(len(tokens), graph.n_edges)
    for row in range(len(tokens)):
        masks[row, 97 * row % graph.n_edges] = 0.0
    with torch.no_grad():
        together = edge_forward(model, graph, tokens, abl, masks, chunk=4)
        for row in range(len(tokens)):
            alone = edge_forward(model, graph, tokens[row : row + 1], abl, masks[row])
            torch.testing.assert_close(together[row : row + 1], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["mean", "resample"])
def test_the_shared_mask_check_path_equals_the_explicit_pair_inputs(kind):
    """Without gradients a shared mask takes the factored path (`_PairStats`: keys and values never formed per
    (query, key) pair, head outputs projected through z . (W_O W), each sender's difference taken once into a
    buffer); with gradients the explicit one. Same logits to float32 rounding, same answers, in float64 exactly
    to 1e-10, with mask blocks made once (`mask_blocks`) or per chunk."""
    from arithlens.analysis.edges.forward import mask_blocks

    for dtype, tol in ((torch.float32, 2e-5), (torch.float64, 1e-10)):
        model = HookedTransformer(SPEC, seed=3).to(dtype).eval()
        tokens = fresh_questions(SPEC, 8, rng_for(2, 1)).torch_tokens("cpu")
        reference = reference_questions(SPEC, 64, rng_for(2, 2)).torch_tokens("cpu")
        graph = EdgeGraph.build(SPEC, min_position=2)
        abl = ablation_values(model, reference, kind, batch=len(tokens), rng=np.random.default_rng(0)).to(dtype)
        kept = torch.as_tensor(np.random.default_rng(1).random(graph.n_edges) < 0.4, dtype=dtype)
        explicit = edge_forward(model, graph, tokens, abl, kept.clone().requires_grad_(True), chunk=3).detach()
        with torch.no_grad():
            factored = edge_forward(model, graph, tokens, abl, kept, chunk=3)
            blocks = edge_forward(model, graph, tokens, abl, kept, chunk=3, offs=mask_blocks(graph, kept))
        assert (factored - explicit).abs().max() <= tol * max(1.0, explicit.abs().max().item())
        torch.testing.assert_close(blocks, factored, atol=0, rtol=0)
        assert torch.equal(factored.argmax(-1), explicit.argmax(-1))
        assert (explicit - model(tokens, logit_positions=ANSWER).detach()).abs().max() > 1e-3  # the mask bites


def test_mask_gradient_equals_finite_differences():
    model = HookedTransformer(SPEC, seed=5).double().eval()
    tokens = fresh_questions(SPEC, 3, rng_for(1, 1)).torch_tokens("cpu")
    graph = EdgeGraph.build(SPEC, min_position=ANSWER.start)
    abl = ablation_values(model, reference_questions(SPEC, 32, rng_for(1, 2)).torch_tokens("cpu"), "mean")
    targets = tokens[:, ANSWER.start + 1 : ANSWER.stop + 1]
    level = 0.7
    mask = torch.full((graph.n_edges,), level, dtype=torch.float64, requires_grad=True)
    logit_diff(edge_forward(model, graph, tokens, abl, mask), targets).sum().backward()
    for idx in (0, graph.n_edges // 3, graph.n_edges // 2, graph.n_edges - 1):
        plus, minus = torch.full((2, graph.n_edges), level, dtype=torch.float64)
        plus[idx] += 1e-6
        minus[idx] -= 1e-6
        with torch.no_grad():
            fd = (logit_diff(edge_forward(model, graph, tokens, abl, plus), targets).sum()
                  - logit_diff(edge_forward(model, graph, tokens, abl, minus), targets).sum()) / 2e-6
        assert mask.grad[idx].item() == pytest.approx(fd.item(), rel=1e-4, abs=1e-7)


def test_bad_masks_and_values_are_one_line_errors(model, tokens, reference):
    graph = EdgeGraph.build(SPEC)
    abl = ablation_values(model, reference, "mean")
    with pytest.raises(ArithLensError, match="edge mask"):
        edge_forward(model, graph, tokens, abl, torch.ones(3))
    with pytest.raises(ArithLensError, match="ablated sender values"):
        edge_forward(model, graph, tokens, abl[:, :2], torch.ones(graph.n_edges))
    with pytest.raises(ArithLensError, match="one of"):
        ablation_values(model, reference, "optimal")


def test_exact_scores_from_the_engine_equal_edge_masked_forwards(model, tokens, reference):
    from arithlens.analysis.edges.scores import exact_scores

    graph = EdgeGraph.build(SPEC, min_position=ANSWER.start)
    abl = ablation_values(model, reference, "mean")
    picks = np.arange(0, graph.n_edges, 7)
    fast = exact_scores(model, graph, tokens, abl, edges=picks, rows=64)
    slow = exact_scores(model, graph, tokens, abl, edges=picks, rows=64, base=torch.ones(graph.n_edges))
    assert np.isnan(fast[1]) and np.isnan(slow[1])
    np.testing.assert_allclose(fast[picks], slow[picks], atol=2e-5, rtol=1e-4)
    assert np.abs(fast[picks]).max() > 1e-2  # some edges matter
    kinds = {graph.edges[i].receiver.kind for i in picks}
    assert kinds == {"q", "k", "v", "mlp", "logits"}
