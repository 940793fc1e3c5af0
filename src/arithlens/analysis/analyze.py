"""The whole analysis of one model as one function: useful nodes and tags, the sub-task searches, and node studies
of the heads that look like carry/borrow for several operations (always with the layer-0 heads that compute A2).

It computes and returns; it writes nothing. `arithlens analyze` writes the JSON files, the maps and the report.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import torch
from threadpoolctl import threadpool_limits

from arithlens.analysis.memory import release_freed_memory
from arithlens.analysis.node_study import P_MAX, StudyCache, StudyOptions, study_node
from arithlens.analysis.node_study.study import planned_digit
from arithlens.analysis.nodes import Major, Node, NodeList, UsefulNode
from arithlens.analysis.useful import (
    ANALYSIS_SEED,
    RANDOM_QUESTIONS,
    UsefulResult,
    find_useful,
    varied_questions,
)
from arithlens.errors import ArithLensError
from arithlens.model.spec import ModelSpec

if TYPE_CHECKING:
    from arithlens.analysis.circuit import Circuit
    from arithlens.analysis.edges.discovery import EdgeCircuit
    from arithlens.results.circuits import AblationCard
    from arithlens.analysis.faithfulness import Faithfulness


class Drawer(Protocol):
    """What `analyze` tells a figure drawer: the nodes are tagged (maps can be drawn), a study is done."""

    def tagged(self, analysis: Analysis) -> None: ...

    def studied(self, entry: StudyEntry) -> None: ...


# (stage, done, total, detail): called as work advances; stages are "positions", "nodes", "faithfulness", "edges",
# "search", "studies".
Progress = Callable[[str, int, int, str], None]

# Sub-tasks whose Algo tag says "this node knows whether digit k makes (or passes on) a carry or borrow", by
# the operation they serve: make / pass on / tricase (the predecessor's sub-task families).
CARRY_LIKE = {"SC": "ADD", "SS": "ADD", "ST": "ADD", "MB": "SUB", "MZ": "SUB", "MT": "SUB",
              "NB": "NEG", "NZ": "NEG", "NT": "NEG"}
_ALGO_RE = re.compile(r"A(?P<digit>\d+)\.(?P<task>[A-Z]{2})(?:\.A\d+)?")

# The layer-0 heads at A2's position get `arithlens node`'s own defaults, so the report's verdicts on the founding
# question are the ones `arithlens node P18L0H0` prints. The other heads get smaller sets, so a dozen of them fit
# the time budget; their CIs show the cost (a necessity rate +-3 points at worst instead of +-2). Both keep 100
# permutations: a permutation p-value is at least 1/(permutations+1), and the verdict needs p <= 0.01.
FOUNDING_STUDY = StudyOptions()
STUDY_DEFAULTS = StudyOptions(questions=300, pairs=100, per_case=150, mixed=500, permutations=100)
SEARCH_PAIRS = 100
# Clean runs the studies share (heads of one layer at one digit, studied one after another). 512 MiB holds a
# digit's runs at STUDY_DEFAULTS (~0.4 GB: three 900-question engines, the patching store and engine) but not at
# the founding study's sizes (~1.2 GB a digit), whose heads share their runs another way (below) within analyze's
# 2 GB budget (at 3 GiB it peaked at 7.4 GB, benchmarks/results/memory.md).
STUDY_CACHE_BYTES = 512 * 2**20
# The founding heads' own cache: their chunked necessity engines are not kept in it (one chunk alive at a time), but
# a digit's node activations (9 x 0.5 MB), mixed set and patching run (~0.1 GB) are, and the second head of a digit
# finds its necessity outcomes there, computed on the first head's engines (`study_node`'s companions).
FOUNDING_CACHE_BYTES = 256 * 2**20
# Fresh uniform questions per qtype for the useful set's faithfulness: a Wilson interval of at most +-2.2 points,
# at three forward passes over them (clean, all ablated, the set alone): 18 s for the shipped mixed model on one
# thread of the shared 2-core machine, beside minutes for the rest of the analysis.
FAITHFULNESS_QUESTIONS = 2000
# Fresh questions per qtype for the edge circuit's ablation card (EDGE_CARD_ABLATIONS): enough to see whether its
# faithfulness survives the choice of ablation (mean 99.7% against zero 16.5% on ADD on the default model; a Wilson
# interval of about +-4 points at 90%), at 4 s on 2 cores (scripts/circuit_card.py gives it at 10,000 per qtype)
EDGE_CARD_QUESTIONS = 100
EDGE_CARD_ABLATIONS = ("mean", "plain-mean", "resample#1", "zero")
# Questions per necessity run of a study on a study thread: two streams each holding a qtype set's three clean runs
# (900 questions each at STUDY_DEFAULTS) took 0.7 GB more than one stream; in chunks of 450 one chunk's run is alive
# per stream (the companions' replacements still run on it).
STREAM_CHUNK = 450


@dataclass(frozen=True)
class AnalyzeOptions:
    questions: int = RANDOM_QUESTIONS  # random questions of the useful-node sweep (the curated set is added)
    pairs: int = SEARCH_PAIRS  # search pairs per sub-task and digit
    seed: int | None = None  # None: each stage's own default seed (useful 345621, search 0, studies 0)
    study: StudyOptions = STUDY_DEFAULTS  # the heads with carry-like tags
    founding_study: StudyOptions = FOUNDING_STUDY  # the layer-0 heads at the position computing A2
    max_studies: int | None = None  # None: every target; else the founding heads first, then by position
    search: bool = True
    faithfulness: int = FAITHFULNESS_QUESTIONS  # questions per qtype to score the useful set alone on; 0: skip
    circuit: bool = False  # also find a circuit (`arithlens circuit`, validated on `faithfulness` questions): slow
    edges: bool = True  # also find the edge circuit (`arithlens edges` at its defaults)
    edge_card: int = EDGE_CARD_QUESTIONS  # questions per qtype for the edge circuit's ablation card; 0: skip

    def __post_init__(self) -> None:
        if self.questions < 0:
            raise ArithLensError(f"--questions must be >= 0, not {self.questions}")
        if self.pairs < 1:
            raise ArithLensError(f"--pairs must be at least 1, not {self.pairs}")
        if self.faithfulness < 0:
            raise ArithLensError(f"--faithfulness must be >= 0, not {self.faithfulness}")
        if self.edge_card < 0:
            raise ArithLensError(f"--edge-card must be >= 0, not {self.edge_card}")
        if self.max_studies is not None and self.max_studies < 0:
            raise ArithLensError(f"--max-studies must be >= 0, not {self.max_studies}")
        for study in (self.study, self.founding_study):
            if 1 / (study.permutations + 1) > P_MAX:
                raise ArithLensError(f"{study.permutations} permutations cannot give a p-value <= {P_MAX}: a study "
                                     f"needs at least {round(1 / P_MAX) - 1}")

    def study_options(self, target: StudyTarget, digit: int | None = None) -> StudyOptions:
        base = self.founding_study if target.founding else self.study
        return replace(base, seed=base.seed if self.seed is None else self.seed, digit=digit)


@dataclass(frozen=True)
class StudyTarget:
    """A head to study and why: the founding question, carry-like tags for several operations, or both."""

    node: Node
    reasons: tuple[str, ...]
    operations: tuple[str, ...] = ()  # operations whose carry-like Algo tags the head carries
    tags: tuple[str, ...] = ()  # those tags
    digit: int | None = None  # the tags' carry digit: used when the study cannot pick one from attention
    founding: bool = False  # a layer-0 head at the position computing A2


@dataclass
class StudyEntry:
    target: StudyTarget
    data: dict | None = None  # the study's JSON object (NodeStudy.data); None when it failed
    error: str | None = None
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.target.node.name


@dataclass
class Analysis:
    spec: ModelSpec
    options: AnalyzeOptions
    useful: UsefulResult
    nodes: NodeList  # the useful nodes with every tag: behaviour, attention, and Algo when the search ran
    search: object | None = None  # arithlens.analysis.search.SearchResult when the search ran
    search_note: str | None = None  # why it did not run, or what went wrong
    claims: list = field(default_factory=list)  # arithlens.analysis.claims.ClaimResult
    studies: list[StudyEntry] = field(default_factory=list)
    skipped_studies: list[StudyTarget] = field(default_factory=list)  # over max_studies
    faithfulness: Faithfulness | None = None  # the useful set alone (everything else mean-ablated)
    faithfulness_note: str | None = None  # why it was not measured
    circuit: Circuit | None = None  # when options.circuit
    circuit_note: str | None = None  # why there is none although asked for
    edge_circuit: EdgeCircuit | None = None  # when options.edges
    edge_circuit_note: str | None = None  # why there is none
    edge_card: AblationCard | None = None  # the edge circuit's ablation card, when options.edge_card
    edge_card_note: str | None = None  # why there is none
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds

    def summary(self) -> dict:
        """The numbers of `analysis.json` and of `--json`, without file names."""
        u = self.useful
        mlps = [n for n in self.nodes.mlps if not n.node.is_neuron]
        data = {
            "model": self.spec.name,
            "questions": len(u.questions), "dropped": len(u.dropped), "clean_loss": u.clean_loss,
            "useful_positions": u.useful_positions, "position_failures": u.position_failures,
            "heads": len(self.nodes.heads), "mlps": len(mlps),
            "options": {"questions": self.options.questions, "pairs": self.options.pairs, "seed": self.options.seed,
                        "study": _sizes(self.options.study), "founding_study": _sizes(self.options.founding_study),
                        "max_studies": self.options.max_studies, "faithfulness": self.options.faithfulness,
                        "circuit": self.options.circuit, "edges": self.options.edges,
                        "edge_card": self.options.edge_card},
            "search": None if self.search is None else self.search.coverage.to_dict(),
            "search_note": self.search_note,
            "claims": {"passed": sum(c.passed for c in self.claims), "total": len(self.claims)},
            "studies": [_study_summary(e) for e in self.studies],
            "skipped_studies": [t.node.name for t in self.skipped_studies],
            "faithfulness": None if self.faithfulness is None else faithfulness_record(self.faithfulness, brief=True),
            "faithfulness_note": self.faithfulness_note,
            "circuit": None if self.circuit is None else circuit_record(self.circuit, brief=True),
            "circuit_note": self.circuit_note,
            "edge_circuit": None if self.edge_circuit is None else edge_circuit_record(self.edge_circuit),
            "edge_circuit_note": self.edge_circuit_note,
            "edge_card": None if self.edge_card is None else edge_card_record(self.edge_card),
            "edge_card_note": self.edge_card_note,
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }
        return data


def _sizes(options: StudyOptions) -> dict:
    return {k: v for k, v in vars(options).items() if k not in ("seed", "digit")}


def _study_summary(entry: StudyEntry) -> dict:
    out = {"node": entry.name, "reasons": list(entry.target.reasons), "seconds": round(entry.seconds, 2)}
    if entry.data is None:
        return {**out, "error": entry.error}
    verdict = entry.data["verdict"]
    return {**out, "study_digit": entry.data["study_digit"], "polysemantic": verdict["polysemantic"],
            "roles": verdict["roles"], "shared_direction": verdict["shared_direction"], "tags": entry.data["tags"],
            "verdict": verdict["text"]}


# ---------------------------------------------------------------------------------------------------
# Which heads to study


def carry_like_tags(un: UsefulNode) -> dict[str, list[str]]:
    """Operation (ADD / SUB / NEG) -> the node's carry-like Algo tags (strong `A1.SC` or weak `A1.SC.A2`)."""
    out: dict[str, list[str]] = {}
    for value in un.values(Major.ALGO):
        m = _ALGO_RE.fullmatch(value)
        if m and m["task"] in CARRY_LIKE:
            out.setdefault(CARRY_LIKE[m["task"]], []).append(value)
    return out


def _read_digit(tag: str) -> int:
    """The operand digit whose pair a carry-like tag reads: k for `Ak.SC`, k-1 for the pass-on tags `Ak.SS`."""
    m = _ALGO_RE.fullmatch(tag)
    return int(m["digit"]) - (1 if m["task"] in ("SS", "MZ", "NZ") else 0)


def founding_position(spec: ModelSpec) -> int:
    """Where A2 is computed (P18 for 6 digits): the position of the head the project set out to study."""
    return spec.layout.computed_at(min(2, spec.n_digits))


def study_targets(nodes: NodeList, spec: ModelSpec) -> list[StudyTarget]:
    """Every layer-0 head at the position computing A2, then every head whose Algo tags mark a carry-like
    predicate for more than one operation, in node order, each once with all its reasons."""
    position = founding_position(spec)
    reasons: dict[Node, list[str]] = {}
    extra: dict[Node, tuple[tuple[str, ...], tuple[str, ...], int | None]] = {}
    for h in range(spec.n_heads):
        node = Node(position, 0, False, h)
        reasons[node] = [f"layer-0 head at P{position}, where A{min(2, spec.n_digits)} is computed"]
    for un in nodes.heads:
        by_op = carry_like_tags(un)
        if len(by_op) < 2:
            continue
        tags = tuple(t for op in ("ADD", "SUB", "NEG") for t in by_op.get(op, []))
        reasons.setdefault(un.node, []).append(f"carry/borrow-like tags for {len(by_op)} operations: {' '.join(tags)}")
        digits = [_read_digit(t) for t in tags]
        extra[un.node] = (tuple(op for op in ("ADD", "SUB", "NEG") if op in by_op), tags,
                          max(sorted(set(digits)), key=digits.count))
    founding = [n for n in reasons if n.position == position and n.layer == 0 and n.is_head]
    rest = sorted(n for n in reasons if n not in founding)
    return [StudyTarget(n, tuple(reasons[n]), *extra.get(n, ((), (), None)), founding=n in founding)
            for n in sorted(founding) + rest]


# ---------------------------------------------------------------------------------------------------
# The pipeline


def analyze(model, options: AnalyzeOptions | None = None, progress: Progress | None = None,
            drawer: Drawer | None = None) -> Analysis:
    """Useful nodes and tags, the searches (when `arithlens.analysis.search` is installed) and the node studies.

    `drawer` (e.g. `arithlens.report.html.ReportDrawer`) is handed the analysis once the nodes carry their final
    tags and each study as it finishes, so figures can be drawn while the rest runs; it changes no result.

    Raises ArithLensError when the useful-node sweep cannot run (e.g. the model answers no question right);
    a search or a study that fails is recorded in the result instead, so one bad head does not lose the rest.
    """
    options = options or AnalyzeOptions()
    say = progress or (lambda stage, done, total, detail="": None)
    spec = model.spec
    model.eval()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    seed = ANALYSIS_SEED if options.seed is None else options.seed
    questions = varied_questions(spec, count=options.questions, seed=seed)
    useful = find_useful(model, questions, progress=lambda stage, done, total: say(stage, done, total, ""))
    timings["useful"] = time.perf_counter() - t0
    result = Analysis(spec, options, useful, useful.nodes, timings=timings)

    t0 = time.perf_counter()
    _faithfulness(model, result, say)
    timings["faithfulness"] = time.perf_counter() - t0
    if options.circuit:
        t0 = time.perf_counter()
        _circuit(model, result, say)
        timings["circuit"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _edge_circuit(model, result, say)  # the discovery's own wall time is also the circuit's `seconds`
    if options.edges:
        timings["edges"] = time.perf_counter() - t0  # discovery and the ablation card

    t0 = time.perf_counter()
    _search(model, result, say)
    timings["search"] = time.perf_counter() - t0
    if drawer is not None:
        drawer.tagged(result)

    t0 = time.perf_counter()
    targets = study_targets(result.nodes, spec)
    if options.max_studies is not None:
        targets, result.skipped_studies = targets[: options.max_studies], targets[options.max_studies:]
    # The useful sweep's, the search's and the faithfulness check's freed working sets go back to the OS first (glibc
    # keeps them resident otherwise, under the studies' and, shared, in the forked figure workers), then each study's.
    release_freed_memory()
    result.studies = study_all(model, targets, options, say, drawer)
    timings["studies"] = time.perf_counter() - t0
    return result


def study_all(model, targets: list[StudyTarget], options: AnalyzeOptions, say: Progress | None = None,
              drawer: Drawer | None = None, streams: int | None = None) -> list[StudyEntry]:
    """The studies of `targets`, in their order (`analyze`'s studies stage; `benchmarks/bench_studies.py` times it).

    On a CPU the heads are studied on `streams` threads (default: the torch thread count) of one torch thread each:
    each stream takes whole groups of heads that share their clean runs (one layer, one digit; the founding heads'
    groups first, the costliest) and keeps them in a cache of its own. With one stream, the founding heads first,
    then the others, on the process's torch threads. A study's questions and draws come from its own seeds, so no result depends on the stream or on the
    order; only float32 summation order (one thread or two per matmul) moves the last bits of its numbers."""
    say = say or (lambda stage, done, total, detail="": None)
    # Heads of one layer studied at one digit (with the same options) run the same questions: studied one after
    # the other, they share those runs while the cache holds them. Each study's digit is known from its first step
    # (the mixed set's pass, shared by a layer's heads). The entries keep the targets' order.
    founding_cache, plan_cache = StudyCache(FOUNDING_CACHE_BYTES), StudyCache(STUDY_CACHE_BYTES)
    digits = [_planned_digit(model, t, options, founding_cache if t.founding else plan_cache) for t in targets]
    groups: dict[tuple, list[int]] = {}  # (founding, layer, digit) -> targets, in study order
    for i in sorted(range(len(targets)), key=lambda i: (not targets[i].founding, targets[i].node.layer, digits[i],
                                                        targets[i].node.position, i)):
        key = (targets[i].founding, targets[i].node.layer, digits[i] if digits[i] >= 0 else ("alone", i))
        groups.setdefault(key, []).append(i)
    founding = [g for k, g in groups.items() if k[0]]
    rest = [g for k, g in groups.items() if not k[0]]
    entries: dict[int, StudyEntry] = {}
    lock = threading.Lock()

    def run_group(group: list[int], cache: StudyCache, chunk: int | None = None) -> None:
        for n, i in enumerate(group):
            with lock:
                say("studies", len(entries), len(targets), targets[i].node.name)
            # The heads still to study in this group (same options, same questions) are the study's companions:
            # their necessity replacements run on its clean runs.
            companions = tuple(targets[j].node for j in group[n + 1:]) if digits[i] >= 0 else ()
            entry = _study(model, targets[i], options, cache, companions, chunk)
            with lock:
                entries[i] = entry
                if drawer is not None:
                    drawer.studied(entry)
            release_freed_memory()
        # The group's runs go (no other group runs its questions); the mixed-set passes of the planning stay.
        cache.discard(_planned_pass)

    cpu = next(model.parameters()).device.type == "cpu"
    streams = max(1, min(streams or torch.get_num_threads(), len(groups))) if cpu else 1
    if streams == 1:
        for group in founding:  # the founding heads' runs: one cache for them all, cleared after the last
            run_group(group, founding_cache)
        founding_cache.clear()
        release_freed_memory()
        for group in rest:
            run_group(group, plan_cache)
    else:
        # Costliest groups first onto the stream with the least work so far (the founding heads' larger sets first).
        load, plan = [0.0] * streams, [[] for _ in range(streams)]
        for group in sorted(founding + rest, key=lambda g: -_group_cost(targets, g)):
            s = load.index(min(load))
            plan[s].append(group)
            load[s] += _group_cost(targets, group)
        # Each stream's cache starts with the planning's mixed-set passes (read only, shared between the streams).
        caches = [plan_cache.copy(also=founding_cache) for _ in range(streams)]
        founding_cache.clear()
        plan_cache.clear()

        def run_stream(s: int) -> None:
            for group in plan[s]:  # the founding heads' sets in `arithlens node`'s chunks; the others' in smaller
                run_group(group, caches[s], None if targets[group[0]].founding else STREAM_CHUNK)

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # process-wide while the streams run, as the search's worker threads do
        try:
            with threadpool_limits(1), ThreadPoolExecutor(streams, thread_name_prefix="arithlens-study") as pool:
                for future in [pool.submit(run_stream, s) for s in range(streams)]:
                    future.result()
        finally:
            torch.set_num_threads(threads)
    del founding_cache, plan_cache
    release_freed_memory()
    result = [entries[i] for i in range(len(targets))]
    say("studies", len(targets), len(targets), "")
    return result


def _planned_pass(key: tuple) -> bool:
    """Whether a study cache key is a capture without an engine (a mixed-set pass of `planned_digit`: one position)."""
    return key[0] == "capture" and not key[2]


def _group_cost(targets: list[StudyTarget], group: list[int]) -> float:
    """A rough cost of studying a group of heads that share their runs: the first head's runs (a layer-0 head reruns
    every layer) and each head's statistics."""
    first = targets[group[0]]
    return (2.0 * (3 - min(first.node.layer, 2)) + len(group)) * (3 if first.founding else 1)


def _faithfulness(model, result: Analysis, say: Progress) -> None:
    """The useful set's exact accuracy per qtype with every other head and MLP layer mean-ablated at once: how
    much of the model the set explains together (each node was found useful alone)."""
    from arithlens.analysis.faithfulness import FAITHFULNESS_SEED, measure_faithfulness

    count = result.options.faithfulness
    if not count:
        result.faithfulness_note = "faithfulness not measured (0 questions)"
        return
    seed = FAITHFULNESS_SEED if result.options.seed is None else result.options.seed
    say("faithfulness", 0, 1, "useful set")
    try:
        result.faithfulness = measure_faithfulness(model, {"useful": [un.node for un in result.useful.nodes]},
                                                   questions_per_qtype=count, seed=seed)["useful"]
    except ArithLensError as exc:
        result.faithfulness_note = f"faithfulness failed: {exc}"
    say("faithfulness", 1, 1, "")


def faithfulness_record(result: Faithfulness, *, brief: bool = False) -> dict:
    """`faithfulness.json`: the result's JSON without its wall time (so a sweep's files repeat byte for byte) and
    with null where a ratio has no denominator (strict JSON). `brief`: the set's size and exact rates only."""
    data = {k: v for k, v in result.to_json().items() if k != "seconds"}
    if brief:
        return _finite({"label": data["label"], "n_nodes": data["n_nodes"], "n_all": data["n_all"],
                        "ablation": data["ablation"], "seed": data["seed"],
                        "qtypes": {r["qtype"]: {k: r[k] for k in ("n", "correct", "exact", "ci")}
                                   for r in data["qtypes"]}})
    return _finite(data)


def _circuit(model, result: Analysis, say: Progress) -> None:
    """A circuit grown down from the whole model and seeded with the useful set (`arithlens circuit`'s defaults,
    validated on as many held-out questions per qtype as the faithfulness stage uses)."""
    from arithlens.analysis.circuit import discover_circuit
    from arithlens.analysis.faithfulness import FAITHFULNESS_SEED

    seed = FAITHFULNESS_SEED if result.options.seed is None else result.options.seed
    try:
        result.circuit = discover_circuit(model, [un.node for un in result.useful.nodes], seed=seed,
                                          held_out_questions=result.options.faithfulness or FAITHFULNESS_QUESTIONS,
                                          progress=lambda stage, done, total: say("circuit", done, total, stage))
    except ArithLensError as exc:  # e.g. a model below the target: recorded, the rest of the analysis stands
        result.circuit_note = f"circuit not found: {exc}"


def circuit_record(circuit: Circuit, *, brief: bool = False) -> dict:
    """`circuit.json`: the circuit's JSON without wall times. `brief`: its nodes and held-out exact rates only."""
    data = {k: v for k, v in circuit.to_json().items() if k not in ("seconds", "search_seconds")}
    data["validation"] = [{k: v for k, v in f.items() if k != "seconds"} for f in data["validation"]]
    if brief:
        held_out = circuit.faithfulness("circuit")
        return {"n_nodes": data["n_nodes"], "nodes": data["nodes"], "target": data["target"],
                "qtypes": faithfulness_record(held_out, brief=True)["qtypes"]}
    return _finite(data)


def _edge_circuit(model, result: Analysis, say: Progress) -> None:
    """The edge circuit at `arithlens edges`' defaults (EAP ranking, mean ablation, receivers from the first answer
    position), certified on its own held-out questions; a failure is recorded, the rest stands."""
    from arithlens.analysis.edges.discovery import discover
    from arithlens.analysis.faithfulness import FAITHFULNESS_SEED

    if not result.options.edges:
        result.edge_circuit_note = "edge circuit not searched (--no-edges)"
        return
    seed = FAITHFULNESS_SEED if result.options.seed is None else result.options.seed
    say("edges", 0, 1, "edge circuit")
    try:
        result.edge_circuit = discover(model, seed=seed, progress=lambda line: say("edges", 0, 1, line))
    except ArithLensError as exc:
        result.edge_circuit_note = f"edge circuit not found: {exc}"
    _edge_card(model, result, say)
    say("edges", 1, 1, "")


def _edge_card(model, result: Analysis, say: Progress) -> None:
    """The edge circuit's ablation card on `options.edge_card` fresh questions per qtype (the card's own seed, or
    the analysis's seed on the card's question stream)."""
    from arithlens.analysis.circuits import CARD_SEED
    from arithlens.analysis.circuits.card import edge_cards
    from arithlens.analysis.circuits.runner import Ablation

    count = result.options.edge_card
    if result.edge_circuit is None:
        result.edge_card_note = "no ablation card: no edge circuit"
        return
    if not count:
        result.edge_card_note = "ablation card not measured (--edge-card 0)"
        return
    say("edges", 0, 1, f"ablation card on {count} questions per qtype")
    seed = CARD_SEED if result.options.seed is None else result.options.seed
    try:
        result.edge_card = edge_cards(model, {"edge circuit": result.edge_circuit}, questions=count, seed=seed,
                                      ablations=[Ablation.parse(a) for a in EDGE_CARD_ABLATIONS])["edge circuit"]
    except ArithLensError as exc:
        result.edge_card_note = f"ablation card failed: {exc}"


def edge_card_record(card: AblationCard) -> dict:
    """analysis.json's record of the edge circuit's ablation card: per ablation and qtype the exact rate with its
    Wilson interval and the logit difference recovered (its edges are the edge circuit's)."""
    rows = [r.to_dict() for r in card.rows]
    return _finite({"label": card.label, "n_edges": len(card.units), "n_edges_all": card.n_all, "seed": card.seed,
                    "reference": card.reference, "ablations": list(card.ablations), "rows": rows})


def edge_circuit_record(circuit: EdgeCircuit) -> dict:
    """analysis.json's brief record of the edge circuit (its edges and scores are in `<model>_edges.json`)."""
    from arithlens.analysis.edges.discovery import TARGET
    from arithlens.analysis.stats import wilson

    n = circuit.n_held_out
    return _finite({"method": circuit.method, "ablation": circuit.ablation, "target": TARGET,
                    "reached": min(circuit.exact.values()) >= TARGET, "n_edges": circuit.n_edges,
                    "n_edges_all": circuit.graph.n_edges, "n_nodes": len(circuit.nodes), "nodes": circuit.nodes,
                    "n_held_out": n, "exact": dict(circuit.exact),
                    "ci": {q: list(wilson(round(r * n), n)) for q, r in circuit.exact.items()},
                    "stages": dict(circuit.stages), "seconds": round(circuit.seconds, 2)})


def _finite(value):
    """`value` with every NaN or infinity as None (a ratio without a denominator), for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _search(model, result: Analysis, say: Progress) -> None:
    if not result.options.search:
        result.search_note = "search not run (--no-search)"
        return
    try:
        from arithlens.analysis.claims import default_claims, evaluate_all
        from arithlens.analysis.search import search_model
    except ImportError as exc:  # the searches are an optional layer of the analysis
        result.search_note = f"search skipped: {exc}"
        return
    spec, options = model.spec, result.options
    try:
        search = search_model(model, result.nodes, n_pairs=options.pairs,
                              seed=0 if options.seed is None else options.seed,
                              progress=lambda done, total, label: say("search", done, total, label))
    except ArithLensError as exc:
        result.search_note = f"search failed: {exc}"
        return
    result.search, result.nodes = search, search.nodes
    claims = default_claims(spec.n_digits, add=spec.perc_add > 0, sub=spec.perc_sub > 0)
    result.claims = evaluate_all(claims, search.nodes, spec.layout)


def _planned_digit(model, target: StudyTarget, options: AnalyzeOptions, cache: StudyCache) -> int:
    """The digit `_study` will study the target at (-1 where the study would fail anyway)."""
    digit = planned_digit(model, target.node, options.study_options(target), cache)
    digit = target.digit if digit is None else digit
    return -1 if digit is None else digit


def _study(model, target: StudyTarget, options: AnalyzeOptions, cache: StudyCache | None = None,
           companions: tuple[Node, ...] = (), chunk: int | None = None) -> StudyEntry:
    t0 = time.perf_counter()
    try:
        try:
            study = study_node(model, target.node, options.study_options(target), cache=cache, companions=companions,
                               chunk=chunk)
        except ArithLensError:
            if target.digit is None:  # nothing better to offer than the study's own choice
                raise
            # A question-token head (P10) predicts no answer digit and may split its attention: its tags say
            # which digit it serves.
            study = study_node(model, target.node, options.study_options(target, target.digit), cache=cache,
                               chunk=chunk)
        return StudyEntry(target, study.data, seconds=time.perf_counter() - t0)
    except ArithLensError as exc:
        return StudyEntry(target, None, str(exc), time.perf_counter() - t0)
