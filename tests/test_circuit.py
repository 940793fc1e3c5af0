"""Circuit discovery on planted models (the answer is known) and the pruner's incremental passes."""

from __future__ import annotations

import numpy as np
import torch
import pytest
from planted import BACKUP_SPEC, backup_heads_model, plus_zero_questions

from arithlens.analysis.circuit import Circuit, Pruner, discover_circuit, reverse_topological
from arithlens.analysis.faithfulness import (
    all_nodes, mean_values, measure_faithfulness, reference_questions, rng_for,
)
from arithlens.analysis.nodes import Node
from arithlens.analysis.useful import find_useful
from arithlens.errors import ArithLensError

COPY_AT = BACKUP_SPEC.layout.answer_logit_positions.start + 2
H0, H1 = Node(COPY_AT, 0, False, 0), Node(COPY_AT, 0, False, 1)


@pytest.fixture(scope="module")
def model():
    return backup_heads_model()


@pytest.fixture(scope="module")
def questions():
    return plus_zero_questions(BACKUP_SPEC, 400, np.random.default_rng(0))


def _exact(model, questions, keep) -> float:
    return measure_faithfulness(model, {"s": keep}, questions=questions)["s"]["ADD"].exact


def test_planted_heads_back_each_other_up(model, questions):
    everything = all_nodes(BACKUP_SPEC)
    assert _exact(model, questions, everything) == 1.0
    assert _exact(model, questions, [n for n in everything if n != H0]) == 1.0
    assert _exact(model, questions, [n for n in everything if n != H1]) == 1.0
    assert _exact(model, questions, [n for n in everything if n not in (H0, H1)]) < 0.2


def test_useful_set_misses_the_backup_pair_and_faithfulness_shows_it(model, questions):
    useful = find_useful(model, questions, power=0).nodes
    assert H0 not in useful and H1 not in useful  # each alone fails nothing
    shown = measure_faithfulness(model, {"useful": [u.node for u in useful]}, questions=questions)["useful"]
    assert shown["ADD"].exact < 0.2
    assert shown["ADD"].loss_recovered < 0.2


def test_circuit_keeps_both_backup_heads(model):
    circuit = discover_circuit(model, [], search_questions=400, held_out_questions=500,
                               make_questions=plus_zero_questions)
    assert set(circuit.nodes) == {H0.name, H1.name}
    assert circuit.only_together == (H0.name, H1.name)
    held_out = circuit.faithfulness("circuit")["ADD"]
    assert held_out.exact == 1.0 and held_out.n == 500
    assert circuit.faithfulness("useful")["ADD"].exact < 0.2
    # Minimality: in the circuit (H2 pruned) neither head can go.
    assert len(circuit.minimality) == 2 and all(cost.lost > 0.8 for cost in circuit.minimality)
    again = Circuit.from_json(circuit.to_json())
    assert again.to_json() == circuit.to_json() and again.nodes == circuit.nodes


def test_circuit_is_deterministic_for_a_seed(model):
    kwargs = dict(search_questions=400, held_out_questions=100, make_questions=plus_zero_questions, seed=7)
    a, b = discover_circuit(model, [], **kwargs), discover_circuit(model, [], **kwargs)
    assert a.nodes == b.nodes and a.validation[0].qtypes == b.validation[0].qtypes


def test_pruner_incremental_pass_equals_a_full_pass():
    from arithlens.model.transformer import HookedTransformer
    from arithlens.model.spec import ModelSpec
    from arithlens.analysis.faithfulness import fresh_questions

    spec = ModelSpec(n_digits=2, n_layers=2, n_heads=2, d_model=16, d_head=8, op="mix")
    model = HookedTransformer(spec, seed=3).eval()
    values = mean_values(model, reference_questions(spec, 64, rng_for(0, 1)))
    qs = fresh_questions(spec, 30, rng_for(0, 2))
    start = [n for n in all_nodes(spec) if (n.position + n.layer + max(n.num, 0)) % 3]
    pruner = Pruner(model, qs, values, start, target=0.0)
    rng = np.random.default_rng(5)
    for k in rng.permutation(len(start))[:6]:
        node = start[k]
        wrong = pruner.without([node])
        pruner.accept()
        fresh = Pruner(model, qs, values, pruner.nodes, target=0.0)
        assert np.array_equal(wrong, fresh.wrong)
        assert np.array_equal(pruner.wrong, fresh.wrong)


def _random_pruner(seed: int = 3):
    """A pruner of a random tiny model over about two thirds of its nodes, with the nodes it leaves out."""
    from arithlens.model.transformer import HookedTransformer
    from arithlens.model.spec import ModelSpec
    from arithlens.analysis.faithfulness import fresh_questions

    spec = ModelSpec(n_digits=2, n_layers=2, n_heads=2, d_model=16, d_head=8, op="mix")
    model = HookedTransformer(spec, seed=seed).eval()
    values = mean_values(model, reference_questions(spec, 64, rng_for(0, 1)))
    qs = fresh_questions(spec, 30, rng_for(0, 2))
    start = [n for n in all_nodes(spec) if (n.position + n.layer + max(n.num, 0)) % 3]
    outside = [n for n in all_nodes(spec) if n not in set(start)]
    return Pruner(model, qs, values, start, target=0.0), outside


def test_pruner_with_added_equals_a_full_pass_of_the_larger_set():
    pruner, outside = _random_pruner()
    before = pruner.wrong.copy()
    changed = 0
    for node in outside:
        wrong = pruner.with_added([node])
        fresh = Pruner(pruner.model, pruner.questions, pruner.values, pruner.nodes | {node}, target=0.0)
        assert np.array_equal(wrong, fresh.wrong)
        changed += int((wrong != before).any())
        assert np.array_equal(pruner.wrong, before)  # the current set stays as it was
    assert changed > 0  # some additions do change answers: the comparison is not vacuous


def test_pruner_with_added_then_without_round_trips_to_the_same_wrong_counts():
    pruner, outside = _random_pruner()
    start_wrong = int(pruner.wrong.sum())
    start_nodes = set(pruner.nodes)
    for node in outside[:6]:
        added = pruner.with_added([node])
        pruner.set(pruner.nodes | {node})
        assert int(pruner.wrong.sum()) == int(added.sum())
        back = pruner.without([node])
        assert int(back.sum()) == start_wrong and pruner.nodes == start_nodes | {node}
        pruner.accept()
        assert pruner.nodes == start_nodes and int(pruner.wrong.sum()) == start_wrong
    with pytest.raises(ArithLensError, match="nothing to accept"):
        pruner.with_added([outside[0]])
        pruner.accept()  # with_added leaves nothing pending: the set grows only through set()


def test_reverse_topological_order():
    nodes = [Node(3, 0, False, 1), Node(5, 1, True, -1), Node(5, 1, False, 0), Node(2, 1, False, 0)]
    assert [n.name for n in reverse_topological(nodes)] == ["P5L1MLP", "P5L1H0", "P2L1H0", "P3L0H1"]


def test_reference_means_in_chunks_are_the_means_in_one_pass():
    """The discovery's means run MEANS_CHUNK reference questions at a time (a third of the memory): float64 sums
    give the float32 means of one pass, bit for bit, so no circuit changes."""
    from arithlens.analysis.faithfulness import MEANS_CHUNK, ablation_hook_names
    from arithlens.interventions.cache import compute_means
    from arithlens.model.spec import ModelSpec
    from arithlens.model.transformer import HookedTransformer

    spec = ModelSpec(n_digits=2, n_layers=2, n_heads=2, d_model=16, d_head=8, op="mix")
    model = HookedTransformer(spec, seed=4).eval()
    reference = reference_questions(spec, 3 * MEANS_CHUNK + 17, rng_for(0, 1))  # a ragged last chunk
    chunked = mean_values(model, reference)
    whole = compute_means(model, reference, ablation_hook_names(spec), chunk=len(reference)).values
    assert set(chunked) == set(whole)
    for name in whole:
        assert torch.equal(chunked[name], whole[name]), name
