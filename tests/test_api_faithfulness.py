"""The public API's faithfulness and circuit entry points on the shipped model and a planted one."""

import arithlens as al


def _every_node(spec) -> list[str]:
    names = []
    for p in range(spec.n_ctx):
        for layer in range(spec.n_layers):
            names += [f"P{p}L{layer}H{h}" for h in range(spec.n_heads)] + [f"P{p}L{layer}MLP"]
    return names


def test_faithfulness_of_every_node_is_the_clean_model_and_of_one_head_is_nothing():
    model = al.load_model()
    everything = al.faithfulness(model, _every_node(model.spec), questions=60)
    assert [r.qtype for r in everything.qtypes] == ["ADD", "SUB", "NEG"]
    assert all(r.exact == 1.0 and r.n == 60 for r in everything.qtypes)  # nothing ablated: the model is exact
    alone = al.faithfulness(model, ["P18L0H0"], questions=60)
    assert all(r.exact < 0.05 for r in alone.qtypes)  # everything else mean-ablated: no question survives


def test_faithfulness_accepts_the_useful_nodes_result_and_matches_the_names():
    model = al.load_model()
    useful = al.useful_nodes(model, questions=64, power=0)
    by_result = al.faithfulness(model, useful, questions=40, seed=3)
    by_names = al.faithfulness(model, [n.name for n in useful.nodes], questions=40, seed=3)
    first, second = by_result.to_json(), by_names.to_json()
    first.pop("seconds"), second.pop("seconds")  # wall time, not a result
    assert first == second
    assert len(first["nodes"]) == len(useful.nodes) > 40
