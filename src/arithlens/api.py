"""The public Python API: load a model, build labelled questions, run the studies, get typed results back.

Everything here is re-exported by `arithlens` (`import arithlens as al; al.study_node(al.load_model(), "P18L0H3")`).
Each analysis is a function of (model, options) returning a frozen result from `arithlens.results`; the CLI
commands run the same functions and write the results' JSON. Nothing here prints or writes files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from arithlens.arith.questions import QType, QuestionBatch
from arithlens.errors import ArgumentTypeError, ArithLensError
from arithlens.results import AnalysisReport, NodePCA, NodeStudy, SearchReport, UsefulNodes
from arithlens.validate import MAX_PERMUTATIONS, check_choice, check_count, check_int, check_seed, check_weights

if TYPE_CHECKING:
    import torch

    from arithlens.analysis.circuit import Circuit
    from arithlens.analysis.faithfulness import Faithfulness
    from arithlens.analysis.nodes import Node
    from arithlens.model.transformer import HookedTransformer
    from arithlens.model.zoo import ShippedModel

DEFAULT_TRICASE_COUNTS = {"ADD": 300, "SUB": 300, "NEG": 300}  # the founding notebook's per-qtype sets
QUESTION_OPS, QUESTION_KINDS, QTYPE_NAMES = ("add", "sub", "mix", "mul"), ("uniform", "enriched", "curated"), (
    "add", "sub", "neg", "mul")
MAX_DIGITS = 15  # operands of up to 15 digits keep every answer inside int64


# ---------------------------------------------------------------------------------------------------
# Models


def models() -> list[ShippedModel]:
    """The shipped models (name, spec, model card, path), sorted by name."""
    from arithlens.model.zoo import list_models

    return list_models()


def load_model(name_or_path: str | os.PathLike | None = None, device: str | torch.device | None = None, *,
               spec: str | None = None, allow_partial: bool = False) -> HookedTransformer:
    """A model in eval mode: None for the default shipped model, a shipped name or op alias (`mix`, `add`), a
    checkpoint directory, a `.safetensors` file or a TransformerLens / QuantaTools `.pth` state dict (read with
    `weights_only=True`). `device` defaults to the CPU. `spec` (a model name such as
    `mix_d6_l3_h4_t10K_s372001`) says what a bare `.pth` cannot: the operations it was trained on."""
    from arithlens.model.checkpoint import load_checkpoint
    from arithlens.model.device import pick_device
    from arithlens.model.zoo import resolve_model

    if name_or_path is not None and not isinstance(name_or_path, (str, os.PathLike)):
        raise ArgumentTypeError(f"load_model takes a model name or path, not {type(name_or_path).__name__}")
    if spec is not None and not isinstance(spec, str):
        raise ArgumentTypeError(f"spec must be a model name such as mix_d6_l3_h4_t10K_s372001, not {spec!r}")
    # `device="auto"` picks what `--device auto` picks: the same resolver
    dev = pick_device("cpu" if device is None else device, flag="device")
    return load_checkpoint(resolve_model(name_or_path), spec=spec, device=dev,
                           allow_partial=allow_partial).model.eval()


# ---------------------------------------------------------------------------------------------------
# Questions


def questions(count: int = 1000, *, op: str = "mix", kind: str = "uniform", n_digits: int = 6, seed: int = 0,
              qtypes: Mapping[str, float] | None = None) -> QuestionBatch:
    """`count` labelled questions: `kind` "uniform" or "enriched" (carry/borrow cascades), or "curated" (the
    predecessor's hand-picked set, `count` ignored); `op` "add", "sub", "mix" or "mul"; `qtypes` weights per
    question type instead (`{"neg": 1}`). Rows carry qtype, features and complexity (`batch.columns()`)."""
    from arithlens.arith.curated import curated
    from arithlens.arith.generators import enriched, uniform

    check_count("count", count, low=0)
    check_seed(seed, "seed")
    check_count("n_digits", n_digits, low=1, high=MAX_DIGITS)
    check_choice("op", op, QUESTION_OPS)
    if kind not in QUESTION_KINDS:
        raise ArithLensError(f"unknown question kind {kind!r}; expected uniform, enriched or curated")
    if qtypes is not None:
        qtypes = check_weights("qtypes", qtypes, QTYPE_NAMES)
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return uniform(n_digits, count, rng, op=op, qtypes=qtypes)
    if kind == "enriched":
        return enriched(n_digits, count, rng, op=op if qtypes is None else None, qtypes=qtypes)
    return curated(n_digits).batch


def tricase(digit: int, counts: Mapping[str | QType, int] | None = None, *, n_digits: int = 6, seed: int = 0,
            high: str = "decide", carry_in: str = "any") -> QuestionBatch:
    """Tricase questions at operand digit `digit`: per qtype (`{"ADD": 300, "SUB": 300, "NEG": 300}`, the
    founding notebook's sets) that many distinct rows, split evenly over the classes T8/T9/T10 possible there.

    Rows are labelled (`tricase_digit`, `tricase_case` 8/9/10, `carry_in`, `carry_out`: the real carry/borrow
    out of the digit). `high="decide"` lets the higher digits fix SUB vs NEG (so borrows do leave the digit);
    `high="zero"` is the predecessor's construction."""
    from arithlens.arith.tricase import CASES, tricase as tricase_class, tricase_count

    counts = DEFAULT_TRICASE_COUNTS if counts is None else counts
    check_count("n_digits", n_digits, low=1, high=MAX_DIGITS)
    check_count("digit", digit, low=0, high=n_digits - 1)
    check_seed(seed, "seed")
    check_choice("high", high, ("decide", "zero"))
    check_choice("carry_in", carry_in, ("any", "never", "always"))
    if not isinstance(counts, Mapping):
        raise ArgumentTypeError(f"counts must map qtypes to counts ({{'ADD': 300}}), not {counts!r}")
    rng = np.random.default_rng(seed)
    parts = []
    for name, total in counts.items():
        qtype = QType.parse(name) if isinstance(name, str) else QType(name)
        check_count(f"tricase count for {qtype.name}", total, low=0)
        cases = [c for c in CASES if tricase_count(n_digits, digit, qtype, c, carry_in=carry_in, high=high)]
        if total and not cases:
            raise ArithLensError(f"no {qtype.name} tricase class is possible at digit {digit}")
        for i, case in enumerate(cases):
            share = total // len(cases) + (1 if i < total % len(cases) else 0)
            if share:
                parts.append(tricase_class(n_digits, digit, qtype, case, share, rng, carry_in=carry_in, high=high))
    if not parts:
        raise ArithLensError("tricase counts ask for no questions")
    return QuestionBatch.concat(parts)


# ---------------------------------------------------------------------------------------------------
# Analyses


def useful_nodes(model: HookedTransformer, *, questions: int = 256, seed: int = 345621, neurons: bool = False,
                 reference_compat: bool = False, power: int | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> UsefulNodes:
    """Useful positions and nodes by mean ablation, tagged (what `arithlens useful` computes). `power`: fresh
    questions per qtype on which the nodes that failed nothing are tried again (None: enough to find a node
    failing 0.5% of one qtype with 95% probability; 0: the screen alone)."""
    from arithlens.analysis.useful import find_useful, varied_questions

    _check_model(model)
    check_count("questions", questions, low=1)
    check_seed(seed, "seed")
    model.eval()
    batch = varied_questions(model.spec, count=questions, seed=seed)
    result = find_useful(model, batch, neurons=neurons, reference_compat=reference_compat, power=power,
                         progress=progress)
    return _useful(result)


def _useful(result) -> UsefulNodes:
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
    from arithlens.analysis.faithfulness import FAITHFULNESS_SEED, measure_faithfulness

    _check_model(model)
    check_count("questions", questions, low=1)
    check_seed(seed, "seed")
    check_choice("ablation", ablation, ("mean", "resample"))
    model.eval()
    node_set = _node_set(model, nodes)
    seed = FAITHFULNESS_SEED if seed is None else seed
    return measure_faithfulness(model, {"nodes": node_set}, questions_per_qtype=questions, seed=seed,
                                ablation=ablation)["nodes"]


def circuit(model: HookedTransformer, useful: UsefulNodes | Iterable[str | Node] | None = None, *,
            target: float = 0.99, search_questions: int = 600, held_out: int = 10_000, seed: int | None = None,
            progress: Callable[[str, int, int], None] | None = None) -> Circuit:
    """A small node set faithful to >= `target` exact per qtype (greedy pruning of the useful nodes, later layers and
    positions first), validated on `held_out` fresh questions per qtype, with each node's cost (`arithlens circuit`)."""
    from arithlens.analysis.circuit import discover_circuit
    from arithlens.analysis.faithfulness import FAITHFULNESS_SEED
    _check_model(model)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise ArithLensError(f"target must be an exact accuracy in (0, 1], not {target!r}")
    check_count("search_questions", search_questions, low=1)
    check_count("held_out", held_out, low=1)
    check_seed(seed, "seed")
    model.eval()
    start = useful_nodes(model, progress=progress) if useful is None else useful
    seed = FAITHFULNESS_SEED if seed is None else seed
    return discover_circuit(model, _node_set(model, start), target=target, search_questions=search_questions,
                            held_out_questions=held_out, seed=seed, progress=progress)


def _node_set(model: HookedTransformer, nodes) -> list[Node]:
    from arithlens.analysis.nodes import Node

    from arithlens.validate import check_same_model

    if isinstance(nodes, UsefulNodes):
        check_same_model(nodes.model, model.spec, "the node set")
    elif isinstance(nodes, (str, bytes)) or not isinstance(nodes, Iterable):
        raise ArgumentTypeError(f"nodes must be a UsefulNodes result or a list of node names, not {nodes!r}")
    names = [n.name for n in nodes.nodes] if isinstance(nodes, UsefulNodes) else list(nodes)
    return [n if isinstance(n, Node) else Node.for_model(str(n), model.spec) for n in names]


def search(model: HookedTransformer, nodes: UsefulNodes | None = None, *, pairs: int = 100, seed: int = 0,
           progress: Callable[[int, int, str], None] | None = None, **options) -> SearchReport:
    """Sub-task searches over the useful nodes (found first when `nodes` is None), as `arithlens search`.
    `options` go to `arithlens.analysis.search.search` (e.g. `pair_search=False`, `max_group=2`)."""
    from arithlens.analysis.claims import default_claims, evaluate_all
    from arithlens.analysis.search import search_model

    _check_model(model)
    check_count("pairs", pairs, low=1)
    check_seed(seed, "seed")
    if nodes is not None and not isinstance(nodes, UsefulNodes):
        raise ArgumentTypeError(f"nodes must be a UsefulNodes result (arithlens.useful_nodes), not {nodes!r}")
    if nodes is not None:
        from arithlens.validate import check_same_model

        check_same_model(nodes.model, model.spec, "the node set")
    model.eval()
    nodes = useful_nodes(model) if nodes is None else nodes
    result = search_model(model, nodes.node_list(), n_pairs=pairs, seed=seed, progress=progress, **options)
    return _search(model.spec, result, evaluate_all(_claims(model.spec, default_claims), result.nodes,
                                                    model.spec.layout))


def _claims(spec, default_claims):
    return default_claims(spec.n_digits, add=spec.perc_add > 0, sub=spec.perc_sub > 0)


def _search(spec, result, claims) -> SearchReport:
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
    from arithlens.analysis.node_study import StudyOptions, study_node as run_study

    _check_model(model)
    node = _node(model, node)
    for name, value, low in (("questions", questions, 10), ("pairs", pairs, 10), ("per_case", per_case, 10),
                             ("mixed", mixed, 10)):
        check_count(name, value, low=low)
    check_count("permutations", permutations, low=0, high=MAX_PERMUTATIONS)
    check_seed(seed, "seed")
    check_int("digit", digit, low=0, high=model.spec.n_digits - 1)
    options = StudyOptions(questions=questions, pairs=pairs, per_case=per_case, mixed=mixed,
                           permutations=permutations, seed=seed, digit=digit)
    if not isinstance(features, bool):
        raise ArgumentTypeError(f"features must be True or False, not {features!r}")
    return NodeStudy.from_dict(run_study(model, node, options, progress=progress, features=features).data)


def analyze(model: HookedTransformer, *, questions: int = 256, pairs: int = 100, seed: int | None = None,
            max_studies: int | None = None, run_search: bool = True, faithfulness: int = 2000, circuit: bool = False,
            progress: Callable[..., None] | None = None) -> AnalysisReport:
    """The main job of `arithlens analyze` without the files: useful nodes, searches, node studies, and the useful
    set's faithfulness on `faithfulness` questions per qtype (0: skip; `report.data["faithfulness"]`) and, with
    `circuit` (slow), a circuit as `circuit()` finds one (`report.data["circuit"]`).
    `atlas([analyze(m1), analyze(m2)])` aligns such reports by role."""
    from arithlens.analysis.analyze import AnalyzeOptions, analyze as run_analyze, circuit_record, faithfulness_record

    _check_model(model)
    check_count("questions", questions, low=1)
    check_count("pairs", pairs, low=1)
    check_count("faithfulness", faithfulness, low=0)
    check_seed(seed, "seed")
    check_int("max_studies", max_studies, low=0)
    options = AnalyzeOptions(questions=questions, pairs=pairs, seed=seed, max_studies=max_studies,
                             search=run_search, faithfulness=faithfulness, circuit=circuit)
    result = run_analyze(model, options, progress)
    useful = _useful(result.useful)
    found = None
    if result.search is not None:
        found = _search(model.spec, result.search, result.claims)
    studies = [NodeStudy.from_dict(e.data) for e in result.studies if e.data is not None]
    data = {"model": model.spec.name, "summary": result.summary(), "useful": useful.data,
            "search": None if found is None else found.data,
            "studies": [s.data for s in studies],
            "faithfulness": None if result.faithfulness is None else faithfulness_record(result.faithfulness),
            "circuit": None if result.circuit is None else circuit_record(result.circuit)}
    return AnalysisReport(model.spec.name, data["summary"], useful, found, tuple(studies), data=data)


# ---------------------------------------------------------------------------------------------------
# A node's output, PCA


def node_output(model: HookedTransformer, node: str | Node, batch: QuestionBatch) -> np.ndarray:
    """The node's write to the residual stream on each question (batch, d_model), float64, bias excluded:
    a head's `hook_z . W_O[head]` (its `hook_result`), an MLP layer's `hook_post . W_out`."""
    import torch

    from arithlens.model.hooks import node_site

    _check_model(model)
    node = _node(model, node)
    _check_batch(model, batch)
    site = node_site(node)
    block = model.blocks[node.layer]
    with torch.inference_mode():
        _, cache = model.run_with_cache(batch.torch_tokens(str(model.device)), [site.hook], logit_positions=[0])
        act = cache[site.hook][:, node.position]  # (batch, head, d_head) or (batch, d_mlp)
        if node.is_head:
            out = act[:, site.head] @ block.attn.W_O[site.head]  # (batch, d_model)
        elif node.is_neuron:
            out = act[:, site.neuron, None] * block.mlp.W_out[site.neuron]
        else:
            out = act @ block.mlp.W_out
        return out.double().cpu().numpy()


def pca(model: HookedTransformer, node: str | Node, batch: QuestionBatch, *, components: int = 2) -> NodePCA:
    """PCA of the node's output (`node_output`) on `batch`, every row with its question, answer, qtype and,
    for tricase batches, its T class and carry/borrow label (for colours and hover)."""
    from arithlens.analysis import stats

    _check_model(model)
    node = _node(model, node)
    _check_batch(model, batch)
    # two axes at least: the result is drawn as a scatter of the first two
    check_count("components", components, low=2, high=min(len(batch), model.spec.d_model))
    out = node_output(model, node, batch)
    p = stats.pca(out, components)
    labels = batch.labels
    none = [None] * len(batch)
    name = node if isinstance(node, str) else node.name
    return NodePCA.from_dict({
        "node": name, "model": model.spec.name,
        "evr": [float(v) for v in p.explained_variance_ratio],
        "scores": np.round(p.scores, 6).tolist(),
        "question": [batch.question_string(i) for i in range(len(batch))],
        "answer": [batch.answer_string(i) for i in range(len(batch))],
        "qtype": [QType(int(q)).name for q in batch.qtype],
        "case": labels["tricase_case"].astype(int).tolist() if "tricase_case" in labels else none,
        "carry": labels["carry_out"].astype(int).tolist() if "carry_out" in labels else none,
        "digit": int(labels["tricase_digit"][0]) if "tricase_digit" in labels and len(batch) else None,
    })


def _check_model(model) -> None:
    from arithlens.model.transformer import HookedTransformer

    if not isinstance(model, HookedTransformer):
        raise ArgumentTypeError(f"expected a model from arithlens.load_model(), not {type(model).__name__}")


def _node(model: HookedTransformer, node) -> Node:
    """`node` (a name or a Node) checked against the model: one-line errors, never an AttributeError later."""
    from arithlens.analysis.nodes import Node as NodeName

    if isinstance(node, NodeName):
        return NodeName.for_model(node.name, model.spec)
    return NodeName.for_model(node, model.spec)


def _check_batch(model: HookedTransformer, batch) -> None:
    """A non-empty question batch of the model's digit count and of question types the model was trained on."""
    if not isinstance(batch, QuestionBatch):
        raise ArgumentTypeError(f"expected a QuestionBatch (arithlens.questions(...)), not {type(batch).__name__}")
    spec = model.spec
    if len(batch) == 0:
        raise ArithLensError("the question batch is empty: give at least one question")
    if batch.n_digits != spec.n_digits:
        raise ArithLensError(f"the batch has {batch.n_digits}-digit questions but {spec.name} takes "
                             f"{spec.n_digits}-digit ones: build it with n_digits={spec.n_digits}")
    trained = {QType.ADD} if spec.perc_add > 0 else set()
    trained |= {QType.SUB, QType.NEG} if spec.perc_sub > 0 else set()
    trained |= {QType.MUL} if spec.perc_mul > 0 else set()
    foreign = sorted({QType(int(q)) for q in np.unique(batch.qtype)} - trained)
    if foreign:
        raise ArithLensError(f"the batch holds {', '.join(q.name for q in foreign)} questions, which {spec.name} "
                             f"was not trained on (it does {', '.join(q.name for q in sorted(trained))})")


# ---------------------------------------------------------------------------------------------------
# Intervention primitives, for going beyond the canned studies


def run_with_cache(model: HookedTransformer, batch: QuestionBatch | torch.Tensor, names: str | Iterable[str],
                   *, hooks: Sequence = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(logits (batch, pos, vocab), {hook name: activation}) of one run on a question batch or token tensor;
    names as TransformerLens spells them (`act_name("z", 0)` = `blocks.0.attn.hook_z`)."""
    import torch

    tokens = batch.torch_tokens(str(model.device)) if isinstance(batch, QuestionBatch) else batch.to(model.device)
    with torch.inference_mode():
        return model.run_with_cache(tokens, names, hooks=hooks)


def ablate(model: HookedTransformer, batch: QuestionBatch, interventions: Sequence) -> np.ndarray:
    """Which questions fail (bool per row) with `interventions` applied (built with `zero_ablate`,
    `mean_ablate`, `resample_ablate` or `patch_from`), computed by the engine (only what they change)."""
    from arithlens.interventions import Engine

    return Engine(model, batch).outcome(list(interventions)).fails


__all__ = [
    "DEFAULT_TRICASE_COUNTS", "ablate", "analyze", "load_model", "models", "node_output", "pca", "questions",
    "run_with_cache", "search", "study_node", "tricase", "useful_nodes",
]


# ---------------------------------------------------------------------------------------------------
# Dictionary features (sparse autoencoders)


def _sae_options(arch, size, k, l1, steps, questions, eval_questions, permutations, seed, sweep, digit=None,
                 trainer="arithlens"):
    from arithlens.analysis.features.study import SAEOptions

    return SAEOptions(arch=arch, size=size, k=k, l1=l1, steps=steps, questions=questions,
                      eval_questions=eval_questions, permutations=permutations, seed=seed, sweep=sweep, digit=digit,
                      trainer=trainer)


def check_sae(node: str, spec=None, *, digit: int | None = None, **options) -> None:
    """Every `sae` / `feature_study` argument checked before any work (`options` as theirs); with `spec` (the
    model's), the site is also checked against the model. The CLI calls this before it loads or writes anything."""
    from arithlens.analysis.features.activations import Site
    from arithlens.analysis.nodes import Node

    if "@" not in node:
        Node.parse(node)  # a malformed name fails first, with the parser's message
    names = ("arch", "size", "k", "l1", "steps", "questions", "eval_questions", "permutations", "seed", "sweep")
    _sae_options(*(options[n] for n in names), digit, options.get("trainer", "arithlens"))
    if spec is not None:
        Site.parse(node, spec)


def sae(model: HookedTransformer, node: str, *, arch: str = "topk", size: int | None = None, k: int | None = None,
        l1: float = 0.05, steps: int = 3000, questions: int = 20_000, eval_questions: int = 3000,
        permutations: int = 100, seed: int = 0, sweep: bool = False, trainer: str = "arithlens",
        progress: Callable[[str], None] | None = None):
    """A sparse autoencoder (`arch` topk, batchtopk or l1) trained on a node's output site (`"P18L0H3"`: its
    `hook_z` slice at P18; `"P18L0MLP"`: `hook_post` at P18; or `"blocks.1.hook_resid_pre@P18"`) from fresh
    uniform + enriched questions, with its quality (explained variance, MSE, L0, dead / dense features, spliced
    exact accuracy per qtype), every live feature's label AUROCs (permutation null, intervals) and, with
    `sweep`, the L0 / explained-variance Pareto points. `result.save_dictionary(dir)` writes SAELens's format.
    `trainer="saelens"` trains with SAELens's own trainer (the `sae` extra). Deterministic for `seed`."""
    import dataclasses

    from arithlens.analysis.features.study import dictionary_record, train
    from arithlens.results import FeatureDictionary

    model.eval()
    options = _sae_options(arch, size, k, l1, steps, questions, eval_questions, permutations, seed, sweep,
                           trainer=trainer)
    say = progress or (lambda _m: None)
    trained = train(model, node, options, say)
    result = FeatureDictionary.from_dict(dictionary_record(model, trained, options, say))
    return dataclasses.replace(result, sae=trained.sae)


def feature_study(model: HookedTransformer, node: str, *, arch: str = "topk", size: int | None = None,
                  k: int | None = None, l1: float = 0.05, steps: int = 3000, questions: int = 20_000,
                  eval_questions: int = 3000, permutations: int = 100, seed: int = 0, sweep: bool = False,
                  digit: int | None = None, trainer: str = "arithlens",
                  progress: Callable[[str], None] | None = None):
    """The founding question from below (`sae` plus): at the carry digit (`digit`, default the one into the
    answer digit the node's position predicts), how many features carry the carry, each borrow and the operand
    digits, whether one feature serves carry and borrow at once, what ablating or flipping each matched feature
    does to which answer digit of which qtype (error term kept), and beside them a logistic probe and a
    difference-of-means direction (its own ablation and flip). `result.features` is the node study's
    "features" part."""
    import dataclasses

    from arithlens.analysis.features.study import study_features
    from arithlens.results import FeatureStudy

    model.eval()
    options = _sae_options(arch, size, k, l1, steps, questions, eval_questions, permutations, seed, sweep, digit,
                           trainer)
    data, trained = study_features(model, node, options, progress)
    result = FeatureStudy.from_dict(data)
    return dataclasses.replace(result, dictionary=dataclasses.replace(result.dictionary, sae=trained))


__all__ += ["check_sae", "feature_study", "sae"]
