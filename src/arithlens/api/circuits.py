"""Circuits the field can compare, through the front door: an edge circuit between positioned nodes (ranked by
EAP, EAP-IG or exact patching, then repaired and pruned against exact faithfulness), and the ablation card of any
node or edge set (its faithfulness under mean, plain mean, resample and zero ablation: `circuit_card` of nodes,
`edge_card` of an edge circuit)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from arithlens.analysis.circuits import CARD_SEED  # the card's seed
from arithlens.api._checks import check_model
from arithlens.errors import ArithLensError
from arithlens.validate import check_choice, check_count, check_seed

if TYPE_CHECKING:
    from arithlens.arith.questions import QuestionBatch
    from arithlens.results.circuits import AblationCard
    from arithlens.analysis.edges.discovery import EdgeCircuit
    from arithlens.model.transformer import HookedTransformer

EDGE_METHODS = ("eap_ig", "eap", "exact")


def edge_circuit(model: HookedTransformer, *, method: str = "eap", ablation: str = "mean", target: float = 0.99,
                 min_position: int | None = None, held_out: int = 1000, seed: int | None = None,
                 questions: QuestionBatch | None = None, start: EdgeCircuit | None = None,
                 progress=None) -> EdgeCircuit:
    """An edge circuit of `model` whose exact rate per qtype on `held_out` fresh questions per qtype has a 95% Wilson
    lower bound >= `target` (1,000 allow 3 wrong answers at 99%; fewer than 384 cannot certify 99%).

    Edges run between positioned senders (embedding, heads, MLPs) and receivers (a head's q, k@q, v@q inputs, an
    MLP, the logits); `min_position` is the first receiver position (default: the first answer position).
    `method` ranks the edges (eap_ig, eap, exact); an ablated edge carries its sender's `ablation` value.
    `questions`: one set to search, check and take ablation values on instead of fresh ones (a planted model's).
    `start`: a circuit of this model (e.g. found under mean ablation; `load_edge_circuit` reads one from its file)
    to repair under `ablation` instead of searching: edges ranked by `method` are added until the held-out check
    passes under `ablation` and under `start`'s own ablation, so the result holds under both."""
    from arithlens.analysis.edges.discovery import discover
    from arithlens.analysis.faithfulness import FAITHFULNESS_SEED

    check_model(model)
    check_choice("method", method, EDGE_METHODS)
    check_choice("ablation", ablation, ("mean", "resample"))
    if not 0 < target <= 1:
        raise ArithLensError(f"target must be in (0, 1], not {target}")
    check_count("held_out", held_out, low=1)
    if min_position is not None and not 0 <= min_position < model.spec.layout.n_ctx:
        raise ArithLensError(f"min_position must be in 0..{model.spec.layout.n_ctx - 1}, not {min_position}")
    seed = FAITHFULNESS_SEED if seed is None else check_seed(seed, "seed")
    if start is not None:
        from arithlens.analysis.edges.discovery import EdgeCircuit as _EdgeCircuit

        if not isinstance(start, _EdgeCircuit):
            raise ArithLensError(f"start must be an EdgeCircuit (edge_circuit, load_edge_circuit), not {start!r}")
    say = (lambda _: None) if progress is None else progress
    return discover(model, method=method, ablation=ablation, target=target, min_position=min_position,
                    held_out_per_qtype=held_out, seed=seed, progress=say, search=questions, held_out=questions,
                    reference=questions, start=start)


def load_edge_circuit(path, model: HookedTransformer) -> EdgeCircuit:
    """The edge circuit an `<model>_edges.json` holds (`arithlens edges` or `arithlens analyze` wrote it), for
    `model`; one-line errors for an unreadable or malformed file or another model's circuit."""
    from arithlens.analysis.edges.discovery import EdgeCircuit as _EdgeCircuit
    from arithlens.validate import check_same_model, read_json_object

    check_model(model)
    data = read_json_object(path, "the edge circuit")
    check_same_model(data.get("model") if isinstance(data.get("model"), str) else None, model.spec,
                     f"the edge circuit '{path}'")
    try:
        return _EdgeCircuit.from_dict(data, model.spec)
    except ArithLensError as exc:
        raise ArithLensError(f"the edge circuit '{path}' does not fit {model.spec.name}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ArithLensError(f"the edge circuit '{path}' is malformed: {type(exc).__name__} {exc}") from None


def edge_circuit_mib(circuit: EdgeCircuit, model: HookedTransformer) -> dict:
    """`circuit` as an EAP-IG / MIB graph dict (positions summed), with our positioned edges under `arithlens`."""
    from arithlens.analysis.edges.export import to_mib_json

    return to_mib_json(circuit.graph, circuit.kept, circuit.scores, d_model=model.spec.d_model)


def circuit_card(model: HookedTransformer, nodes: Iterable[str] | Mapping[str, Iterable[str]], *,
                 questions: int = 1000, draws: int = 2, seed: int = CARD_SEED) -> AblationCard | dict[str, AblationCard]:
    """The ablation card of a node set (or of several, given as {label: nodes}): per qtype the exact rate with a
    95% interval and the logit difference recovered, under mean (per position), plain mean, `draws` resample
    draws and zero ablation of every node outside the set, on `questions` fresh questions per qtype."""
    from arithlens.analysis.circuits.card import ablation_cards, card_questions
    from arithlens.analysis.circuits.runner import NodeRunner, card_ablations

    check_model(model)
    check_count("questions", questions, low=1)
    check_count("draws", draws, low=1, high=10)
    check_seed(seed, "seed")
    several = isinstance(nodes, Mapping)
    circuits = {k: sorted(v) for k, v in nodes.items()} if several else {"circuit": sorted(nodes)}
    spec = model.spec
    batch, reference = card_questions(spec, questions, seed)
    runner = NodeRunner(model, batch, reference, seed=seed)
    for label, kept in circuits.items():
        unknown = sorted(set(kept) - set(runner.units))
        if unknown:
            raise ArithLensError(f"circuit {label!r}: not a head or MLP node of {spec.name}: {', '.join(unknown[:5])}")
    cards = ablation_cards(runner, circuits, model=spec.name, ablations=card_ablations(draws), seed=seed,
                           reference=len(reference))
    return cards if several else cards["circuit"]


def edge_card(model: HookedTransformer, circuit: EdgeCircuit | Mapping[str, EdgeCircuit], *, questions: int = 1000,
              ablations: Sequence[str] = ("mean", "plain-mean", "resample#1", "resample#2", "zero"),
              seed: int = CARD_SEED) -> AblationCard | dict[str, AblationCard]:
    """The ablation card of an edge circuit (or of several on one graph, given as {label: circuit}): per qtype the
    exact rate with a 95% interval and the logit difference recovered, with every edge outside the circuit carrying
    its sender's value under each of `ablations` (mean per position, plain-mean, resample#N, zero), on
    `questions` fresh questions per qtype drawn as `circuit_card` draws them."""
    from arithlens.analysis.circuits.card import edge_cards
    from arithlens.analysis.circuits.runner import Ablation

    check_model(model)
    check_count("questions", questions, low=1)
    check_seed(seed, "seed")
    chosen = [Ablation.parse(a) for a in ablations]
    if not chosen or len({a.label for a in chosen}) != len(chosen):
        raise ArithLensError(f"ablations must be distinct and at least one, not {list(ablations)}")
    several = isinstance(circuit, Mapping)
    cards = edge_cards(model, dict(circuit) if several else {"edge circuit": circuit}, questions=questions,
                       ablations=chosen, seed=seed)
    return cards if several else cards["edge circuit"]
