"""The node analyses through the front door: useful nodes, sub-task searches, one node's study, a node set's
faithfulness and circuit discovery; each checks its options, runs the analysis and returns a typed result."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from arithlens.api._checks import check_model, check_node, node_set
from arithlens.errors import ArgumentTypeError, ArithLensError
from arithlens.results import (
    Circuit,
    Faithfulness,
    NodeStudy,
    SearchReport,
    UsefulNodes,
)
from arithlens.validate import (
    MAX_PERMUTATIONS,
    check_choice,
    check_count,
    check_int,
    check_seed,
)

if TYPE_CHECKING:
    from arithlens.analysis.nodes import Node
    from arithlens.model.transformer import HookedTransformer


def useful_nodes(model: HookedTransformer, *, questions: int = 256, seed: int = 345621, neurons: bool = False,
                 reference_compat: bool = False, power: int | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> UsefulNodes:
    """Useful positions and nodes by mean ablation, tagged (what `arithlens useful` computes). `power`: fresh
    questions per qtype on which the nodes that failed nothing are tried again (None: enough to find a node
    failing 0.5% of one qtype with 95% probability; 0: the screen alone)."""
    check_model(model)
    check_count("questions", questions, low=1)
    check_seed(seed, "seed")
    model.eval()
    return useful_record(find_useful(model, questions=questions, seed=seed, neurons=neurons,
                                     reference_compat=reference_compat, power=power, progress=progress))


def find_useful(model: HookedTransformer, *, questions: int | None = None, seed: int | None = None,
                neurons: bool = False, reference_compat: bool = False, power: int | None = None,
                progress: Callable[..., None] | None = None):
    """The useful-node sweep's whole record (`analysis.useful.UsefulResult`: node list with tags, failures, the
    questions), on the varied question set (`questions` random ones, default 256, seed default 345621, plus the
    curated ones): what `arithlens useful` writes and `useful_nodes` summarises."""
    from arithlens.analysis import useful

    batch = useful.varied_questions(model.spec, count=useful.RANDOM_QUESTIONS if questions is None else questions,
                                    seed=useful.ANALYSIS_SEED if seed is None else seed)
    return useful.find_useful(model, batch, neurons=neurons, reference_compat=reference_compat, power=power,
                              progress=progress)


def useful_record(result) -> UsefulNodes:
    mlps = [n for n in result.nodes.mlps if not n.node.is_neuron]
    return UsefulNodes.from_dict({
        "model": result.spec.name, "questions": len(result.questions), "dropped": result.dropped,
        "clean_loss": result.clean_loss, "reference_compat": result.reference_compat,
        "useful_positions": result.useful_positions, "position_failures": result.position_failures,
        "heads": len(result.nodes.heads), "mlps": len(mlps), "neurons": len(result.nodes.mlps) - len(mlps),
        "nodes": [{"name": n.name, "tags": [str(t) for t in n.tags]} for n in result.nodes],
    })


def faithfulness(model: HookedTransformer, nodes: UsefulNodes | Iterable[str | Node], *, questions: int = 10_000,
                 seed: int | None = None, ablation: str = "mean") -> Faithfulness:
    """Exact accuracy per qtype and answer digit (Wilson 95% intervals) and the loss / logit difference recovered,
    with every head and MLP layer outside `nodes` ablated at once (`arithlens faithfulness`)."""
    check_model(model)
    check_count("questions", questions, low=1)
    check_seed(seed, "seed")
    check_choice("ablation", ablation, ("mean", "resample"))
    model.eval()
    return faithfulness_of(model, node_set(model, nodes), "nodes", questions=questions, seed=seed, ablation=ablation)


def circuit(model: HookedTransformer, useful: UsefulNodes | Iterable[str | Node] | None = None, *,
            target: float = 0.99, search_questions: int = 600, held_out: int = 10_000, seed: int | None = None,
            progress: Callable[[str, int, int], None] | None = None) -> Circuit:
    """A small node set faithful to >= `target` exact per qtype (greedy pruning of the useful nodes, later layers and
    positions first), validated on `held_out` fresh questions per qtype, with each node's cost (`arithlens circuit`)."""
    check_model(model)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise ArithLensError(f"target must be an exact accuracy in (0, 1], not {target!r}")
    check_count("search_questions", search_questions, low=1)
    check_count("held_out", held_out, low=1)
    check_seed(seed, "seed")
    model.eval()
    start = useful_nodes(model, progress=progress) if useful is None else useful
    return discover_circuit(model, node_set(model, start), target=target, search_questions=search_questions,
                            held_out=held_out, seed=seed, progress=progress)


def search(model: HookedTransformer, nodes: UsefulNodes | None = None, *, pairs: int = 100, seed: int = 0,
           progress: Callable[[int, int, str], None] | None = None, **options) -> SearchReport:
    """Sub-task searches over the useful nodes (found first when `nodes` is None), as `arithlens search`.
    `options` go to `arithlens.analysis.search.search` (e.g. `pair_search=False`, `max_group=2`)."""
    check_model(model)
    check_count("pairs", pairs, low=1)
    check_seed(seed, "seed")
    if nodes is not None and not isinstance(nodes, UsefulNodes):
        raise ArgumentTypeError(f"nodes must be a UsefulNodes result (arithlens.useful_nodes), not {nodes!r}")
    if nodes is not None:
        from arithlens.validate import check_same_model

        check_same_model(nodes.model, model.spec, "the node set")
    model.eval()
    nodes = useful_nodes(model) if nodes is None else nodes
    result, claims = run_search(model, nodes.node_list(), pairs=pairs, seed=seed, progress=progress, **options)
    return search_record(model.spec, result, claims)


def default_claims_for(spec, default_claims):
    """The default algorithm claims for the operations `spec` was trained on."""
    return default_claims(spec.n_digits, add=spec.perc_add > 0, sub=spec.perc_sub > 0)


def search_record(spec, result, claims) -> SearchReport:
    """The search record `arithlens search` writes, with the model's name and every node's tags (for the maps)."""
    nodes = [{"name": n.name, "tags": [str(t) for t in n.tags]} for n in result.nodes]
    return SearchReport.from_dict({**result.to_json(), "claims": [c.to_dict() for c in claims],
                                   "model": spec.name, "nodes": nodes})


def study_node(model: HookedTransformer, node: str | Node, *, questions: int = 1000, pairs: int = 200,
               per_case: int = 300, mixed: int = 1000, permutations: int = 100, seed: int = 0,
               digit: int | None = None, features: bool = False,
               progress: Callable[[str], None] | None = None) -> NodeStudy:
    """Study one head (`"P18L0H3"`) or MLP layer (`"P18L0MLP"`): is it doing one job or several? Attention,
    necessity (mean / resample / class-mean ablation), sufficiency (patching), representation (PCA, probes
    with `permutations` label shuffles; the verdict needs >= 99 for p <= 0.01) and the verdict, as
    `arithlens node`. `features=True` adds the dictionary's answer (`feature_study` with its default dictionary,
    the study's seed and permutations): `study.to_dict()["features"]`, cited by the verdict. Deterministic for
    `seed`."""
    check_model(model)
    node = check_node(model, node)
    for name, value, low in (("questions", questions, 10), ("pairs", pairs, 10), ("per_case", per_case, 10),
                             ("mixed", mixed, 10)):
        check_count(name, value, low=low)
    check_count("permutations", permutations, low=0, high=MAX_PERMUTATIONS)
    check_seed(seed, "seed")
    check_int("digit", digit, low=0, high=model.spec.n_digits - 1)
    if not isinstance(features, bool):
        raise ArgumentTypeError(f"features must be True or False, not {features!r}")
    study = run_study(model, node, questions=questions, pairs=pairs, per_case=per_case, mixed=mixed,
                      permutations=permutations, seed=seed, digit=digit, features=features, progress=progress)
    return NodeStudy.from_dict(study.data)


# ---------------------------------------------------------------------------------------------------
# The records the commands write (analysis objects with their own save methods)


def load_node_list(path):
    """A behaviour / algorithm node file (`<model>_behavior.json`) as a NodeList."""
    from arithlens.analysis.nodes import NodeList

    return NodeList.load(path)


def read_node_set(path, spec) -> list[Node]:
    """The nodes a node-set file names (behaviour / circuit JSON, or plain names), checked against `spec`."""
    from arithlens.analysis.faithfulness import read_node_set as read

    return read(path, spec)


def parse_node(name: str, spec=None) -> Node:
    """A node name parsed (and, with `spec`, checked against the model): one-line errors for bad names."""
    from arithlens.analysis.nodes import Node as NodeName

    return NodeName.parse(name) if spec is None else NodeName.for_model(name, spec)


def search_options(*, weak: str = "always", min_lower: float = 0.5, group_size: int = 3, min_attn: int = 10,
                   pair_search: bool = True, partners: bool = True) -> dict:
    """The searches' tagging options, checked (flag-named one-line errors), as `analysis.search.search_model`
    takes them."""
    from arithlens.analysis.search import WEAK_POLICIES as known
    from arithlens.analysis.search import Rule

    if weak not in known:
        raise ArithLensError(f"--weak must be one of {', '.join(known)}, not {weak!r}")
    if not 0 < min_lower <= 1:
        raise ArithLensError(f"--min-lower must lie in (0, 1], not {min_lower}")
    if group_size < 2:
        raise ArithLensError(f"--group-size must be at least 2, not {group_size}")
    return {"weak": weak, "pair_search": pair_search, "max_group": group_size, "partners": partners,
            "min_pct": min_attn, "rule": Rule(min_lower)}


def run_search(model: HookedTransformer, nodes, *, pairs: int = 100, seed: int = 0,
               progress: Callable[[int, int, str], None] | None = None, **options):
    """(the search's record `analysis.search.SearchResult`, the default claims evaluated on its tags) for a node
    list: what `arithlens search` writes and `search` summarises."""
    from arithlens.analysis.claims import default_claims, evaluate_all
    from arithlens.analysis.search import search_model

    result = search_model(model, nodes, n_pairs=pairs, seed=seed, progress=progress, **options)
    return result, evaluate_all(default_claims_for(model.spec, default_claims), result.nodes, model.spec.layout)


def run_study(model: HookedTransformer, node: Node, *, features: bool = False,
              progress: Callable[[str], None] | None = None, **options):
    """The node study's record (`analysis.node_study.NodeStudy`: `.data` is `<node>_study.json`); `options` are
    `StudyOptions` fields (questions, pairs, per_case, mixed, permutations, seed, digit)."""
    from arithlens.analysis.node_study import StudyOptions
    from arithlens.analysis.node_study import study_node as study

    return study(model, node, StudyOptions(**options), progress=progress, features=features)


def faithfulness_of(model: HookedTransformer, nodes: list[Node], label: str, *, questions: int = 10_000,
                    seed: int | None = None, ablation: str = "mean") -> Faithfulness:
    """`faithfulness` of an already checked node list, under `label` (the name the result carries)."""
    from arithlens.analysis.faithfulness import FAITHFULNESS_SEED, measure_faithfulness

    seed = FAITHFULNESS_SEED if seed is None else seed
    return measure_faithfulness(model, {label: nodes}, questions_per_qtype=questions, seed=seed,
                                ablation=ablation)[label]


def discover_circuit(model: HookedTransformer, nodes: list[Node], *, target: float = 0.99,
                     search_questions: int = 600, held_out: int = 10_000, seed: int | None = None,
                     progress: Callable[..., None] | None = None) -> Circuit:
    """`circuit` from an already checked node list."""
    from arithlens.analysis.circuit import discover_circuit as discover
    from arithlens.analysis.faithfulness import FAITHFULNESS_SEED

    seed = FAITHFULNESS_SEED if seed is None else seed
    return discover(model, nodes, target=target, search_questions=search_questions, held_out_questions=held_out,
                    seed=seed, progress=progress)
