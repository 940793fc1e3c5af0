"""The search's batched patching: row-masked patches, node sets stacked along the batch axis (or run on worker
threads) giving exactly the predictions of one set per forward, and the same search record either way."""

import dataclasses

import numpy as np
import pytest
import torch

from arithlens.analysis import subtasks as S
from arithlens.analysis.nodes import Node, NodeList, UsefulNode
from arithlens.analysis.search import EngineRunner, search
from arithlens.errors import ArithLensError
from arithlens.interventions import Engine, patch_from, record, run_with_interventions
from arithlens.model import HookedTransformer, ModelSpec
from arithlens.model.hooks import node_site

# 3 digits: n_ctx 13, answer logits at 7..11.
SPEC = ModelSpec.parse("mix_d3_l3_h2_t1K_s000001", d_model=32, d_head=8, d_mlp=48)
N_PAIRS = 16


@pytest.fixture(scope="module")
def model():
    return HookedTransformer(SPEC, seed=11).eval()


@pytest.fixture(scope="module")
def pairs():
    return S.SA.pairs(3, 1, N_PAIRS, np.random.default_rng(4))


def head(p, layer, h):
    return Node(p, layer, False, h)


def mlp(p, layer):
    return Node(p, layer, True, -1)


def full_patched(model, pairs, nodes):
    """Answer logits of one full forward with `nodes` patched from the store questions (the plain way)."""
    names = sorted({node_site(n).hook for n in nodes})
    stored = record(model, pairs.store, names)
    ivs = [patch_from(stored, node_site(n).hook, n.position, head=node_site(n).head, neuron=node_site(n).neuron)
           for n in nodes]
    return run_with_interventions(model, pairs.clean.torch_tokens(), ivs)


def test_a_row_masked_patch_edits_its_rows_only_and_a_sub_batch_keeps_its_rows_of_the_mask(model, pairs):
    stored = record(model, pairs.store, ["blocks.1.attn.hook_z"])
    iv = patch_from(stored, "blocks.1.attn.hook_z", 9, head=0)
    mask = torch.arange(N_PAIRS) % 3 == 0
    masked = dataclasses.replace(iv, row_mask=mask)
    tokens = pairs.clean.torch_tokens()
    clean = model(tokens, logit_positions=SPEC.layout.answer_logit_positions)
    patched = run_with_interventions(model, tokens, [iv])
    both = run_with_interventions(model, tokens, [masked])
    assert torch.equal(both[mask], patched[mask]) and torch.equal(both[~mask], clean[~mask])
    assert not torch.allclose(patched[mask], clean[mask])  # the patch does move the rows it edits
    rows = np.arange(1, N_PAIRS, 2)
    sub = masked.rows(rows)
    assert torch.equal(sub.row_mask, mask[rows]) and torch.equal(sub.value, iv.value[rows])
    engine = Engine(model, pairs.clean)
    torch.testing.assert_close(engine.answer_logits([masked]), both, rtol=1e-5, atol=1e-5)  # the engine's way
    with pytest.raises(ArithLensError, match="row mask"):
        dataclasses.replace(iv, row_mask=mask.float())
    with pytest.raises(ArithLensError, match="row mask"):
        dataclasses.replace(iv, row_mask=mask[:5])


def test_a_tiled_engine_repeats_the_clean_run_exactly(model, pairs):
    engine = Engine(model, pairs.clean)
    three, two = engine.tiled(3), engine.tiled(2)  # the second is a view of the first's rows
    assert len(three) == 3 * N_PAIRS and len(two) == 2 * N_PAIRS
    assert torch.equal(three.clean_logits, engine.clean_logits.repeat(3, 1, 1))
    iv = patch_from(record(model, pairs.store, ["blocks.0.mlp.hook_post"]), "blocks.0.mlp.hook_post", 8)
    tiled_iv = dataclasses.replace(iv, value=iv.value.repeat(2, 1, 1))
    assert torch.equal(two.answer_logits([tiled_iv]), engine.answer_logits([iv]).repeat(2, 1, 1))
    assert torch.equal(two.answer_logits([tiled_iv]), engine.answer_logits([iv]).repeat(2, 1, 1))  # scratch restored


def test_stacked_sets_give_each_set_the_logits_of_its_own_forward(model, pairs):
    """Any sets in one forward: another block's nodes, upstream or downstream, are neither patched nor clamped."""
    runner = EngineRunner(model, pairs)
    sets = [(head(9, 0, 0),), (head(9, 2, 1),), (head(9, 0, 1), head(9, 1, 0)), (mlp(9, 1),),
            (head(9, 1, 1), head(9, 2, 0), head(9, 2, 1)), (head(10, 0, 0),), (mlp(8, 0), head(10, 1, 1))]
    stacked = runner.stacked_logits(sets)
    moved = 0
    for b, nodes in enumerate(sets):
        full = full_patched(model, pairs, nodes)
        block = stacked[b * N_PAIRS : (b + 1) * N_PAIRS]
        torch.testing.assert_close(block, full, rtol=1e-5, atol=1e-5)
        assert np.array_equal(block.argmax(-1).numpy(), full.argmax(-1).numpy())
        moved += not torch.allclose(block, runner._engine.clean_logits, atol=1e-3)
    assert moved == len(sets)  # every set's patch changes its logits: the comparison is not of clean runs


def test_patched_many_equals_one_set_per_forward_in_any_chunking(model, pairs):
    """Sets at two positions, heads of one layer, heads in several layers at one position (the other sets'
    downstream heads unclamped), MLP nodes, and repeats; chunks of up to 3 sets or all at once."""
    heads9 = [head(9, layer, h) for layer in range(3) for h in range(2)]
    sets = [(n,) for n in heads9] + [(mlp(9, layer),) for layer in range(3)] + [(head(10, 0, 1),), (mlp(10, 2),)]
    sets += [(a, b) for i, a in enumerate(heads9) for b in heads9[i + 1 :]]
    sets += [(heads9[0], heads9[2], heads9[4]), (heads9[1], heads9[3], heads9[5]), (heads9[0], heads9[1])]
    one = EngineRunner(model, pairs, batch_rows=0)
    expected = [one.patched(nodes) for nodes in sets]
    assert len({p.tobytes() for p in expected}) >= 8  # the sets answer differently: a real comparison
    for batch_rows, workers in ((0, 1), (0, 2), (3 * N_PAIRS, 1), (3 * N_PAIRS, 2), (10_000, 1)):
        runner = EngineRunner(model, pairs, batch_rows=batch_rows, workers=workers)
        got = runner.patched_many(sets)
        assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True)), (batch_rows, workers)


def test_the_search_record_is_the_same_batched_or_not(model, monkeypatch):
    nodes = NodeList(UsefulNode(Node.parse(name)) for name in (
        "P9L0H0", "P9L0H1", "P9L1H0", "P9L1H1", "P9L2H0", "P9L0MLP", "P10L0H0", "P10L1H1", "P10L2MLP"))
    for un in nodes:
        un.add("Impact:A1")
        un.add("Impact:A2")
    stacks = []
    monkeypatch.setattr(EngineRunner, "stacked_logits",
                        lambda self, sets, f=EngineRunner.stacked_logits: stacks.append(len(sets)) or f(self, sets))
    kwargs = dict(tasks=(S.SA, S.SC), n_pairs=24, seed=2, min_pct=0)
    batched = search(nodes, SPEC, lambda p: EngineRunner(model, p, batch_rows=2048), **kwargs).to_json()
    assert stacks and max(stacks) > 2  # the batched path ran, several sets per forward
    calls = len(stacks)
    single = search(nodes, SPEC, lambda p: EngineRunner(model, p, batch_rows=0, workers=1), **kwargs).to_json()
    threaded = search(nodes, SPEC, lambda p: EngineRunner(model, p, batch_rows=0, workers=2), **kwargs).to_json()
    assert len(stacks) == calls  # batch_rows=0: one set per forward
    assert batched == single == threaded and any(len(t["node"].split("+")) > 1 for t in single["trials"])


def test_a_runner_cut_to_a_block_of_pairs_patches_as_the_whole_runner_does_there(model, pairs):
    """`EngineRunner.rows` (the sequential search's stages): the same answers on those pairs, one set per forward
    or several stacked."""
    whole = EngineRunner(model, pairs, batch_rows=0)
    sets = [(head(9, 0, 0),), (head(9, 2, 1),), (head(9, 0, 1), head(9, 1, 0)), (mlp(9, 1),), (head(10, 0, 0),)]
    expected = [whole.patched(nodes) for nodes in sets]
    block = slice(3, 8)
    for runner in (whole.rows(block), EngineRunner(model, pairs, batch_rows=15).rows(block)):  # 3 sets a forward
        assert np.array_equal(runner.clean_pred, whole.clean_pred[block])
        got = runner.patched_many(sets)
        assert all(np.array_equal(a, b[block]) for a, b in zip(got, expected, strict=True))
