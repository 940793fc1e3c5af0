"""The circuit card of the shipped default model (docs/circuit-card.md): the ablation card of its node circuit
(the mean-ablation circuit of benchmarks/results/circuit_figures.json), of a circuit pruned under resample
ablation and then grown by add-back, and of the edge circuit; MIB's faithfulness curves (CPR, CMD) of node and
edge scores.

Stages, each stored under its key of benchmarks/results/circuit_card.json (so a slow one can run alone):
  python scripts/circuit_card.py robust     # prune a node circuit under resample ablation (the slow one)
  python scripts/circuit_card.py repair     # greedy add-back to the resample circuit, judged on other questions
  python scripts/circuit_card.py edges      # the edge circuit (`discover()` defaults) and MIB curves per method
  python scripts/circuit_card.py edge-resample  # the edge circuit repaired under resample ablation (exact ranking)
  python scripts/circuit_card.py edge-curves-resample  # MIB's edge curves per method under resample ablation
  python scripts/circuit_card.py cards      # ablation cards of the node circuits (and the edge circuit, if found)
  python scripts/circuit_card.py curves     # node scores, then MIB curves under mean and resample ablation
  python scripts/circuit_card.py profile    # CPU seconds of a card slice's pieces (one thread, 512 questions)
  python scripts/circuit_card.py render     # rewrite the docs block between the circuit-card markers
  python scripts/circuit_card.py all        # all of them
Every stage is deterministic (fixed seeds); wall times depend on the machine and its load (stored beside them).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "circuit_card.json"
CIRCUIT = ROOT / "benchmarks" / "results" / "circuit_figures.json"  # the stored mean-ablation circuit
DOC = ROOT / "docs" / "circuit-card.md"
START, END = "<!-- circuit-card:start -->", "<!-- circuit-card:end -->"
CARD_SEED = 280_029  # questions and reference batch none of the circuit searches drew (their seed is 140_014)
CARD_QUESTIONS = 10_000  # per qtype, for the ablation cards
CURVE_QUESTIONS = 1_000  # per qtype, for each point of the MIB curves
SCORE_QUESTIONS = 300  # per qtype, for the single-node ablation scores
EDGE_SCORE_QUESTIONS = 32  # per qtype, for the edge scores (as `discover()` scores)
SLICE_QUESTIONS = 1_000  # per qtype in each slice of a card's questions (the unit of work, checkpoint and progress)
CHECKPOINTS = ROOT / "runs" / "circuit_card"  # per (slice, ablation) scores, so an interrupted card resumes
MEAN, ROBUST, REPAIRED, EDGE = "mean circuit", "resample circuit", "resample circuit + add-back", "edge circuit"
EDGE_RS = "edge circuit + resample repair"  # the edge circuit, edges added until it holds under resample ablation too
EDGE_RS_METHOD = "exact"  # the repair's ranking: exact patching under resample ablation adds the fewest edges
SENDERS = "senders' outputs (a resample block)"  # a key of the profile stage
EDGE_METHODS = {"exact": "exact patching", "eap": "EAP", "eap_ig": "EAP-IG"}


def log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def _compact(value):
    """Floats to 7 significant digits (what float32 sums hold), recursively: the stored file stays small."""
    if isinstance(value, float):
        return float(f"{value:.7g}")
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def store(key: str, value, *, compact: bool = False) -> None:
    """Set one stage's key, written atomically (other stages' keys kept); `compact`: its floats to 7 significant
    digits (curves, whose floats only feed 3-decimal tables)."""
    from arithlens.io import write_atomic

    data = load()
    data[key] = _compact(value) if compact else value
    write_atomic(RESULTS, (json.dumps(data, separators=(",", ":")) + "\n").encode())  # compact: ~70 KB, not ~100


def setting() -> dict:
    return {"load_average_at_start": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}


def model_and_sets(with_repair: bool = True):
    """The default model, its mean-ablation circuit, and the questions every search drew (kept out of ours):
    the node searches', and (`with_repair`) the add-back's, drawn after them."""
    import torch

    from arithlens.analysis.circuits.robust import REPAIR_QUESTIONS, STREAM_REPAIR
    from arithlens.analysis.faithfulness import (
        FAITHFULNESS_SEED, STREAM_MINIMALITY, STREAM_SEARCH, fresh_questions, rng_for,
    )
    from arithlens.arith.questions import QuestionBatch
    from arithlens.model import load_checkpoint
    from arithlens.model.zoo import resolve_model

    torch.set_num_threads(int(os.environ.get("ARITHLENS_THREADS", "1")))
    model = load_checkpoint(resolve_model(None)).model.eval()
    circuit = json.loads(CIRCUIT.read_text())["circuit"]
    search = fresh_questions(model.spec, circuit["search_questions"] // 3, rng_for(FAITHFULNESS_SEED, STREAM_SEARCH))
    minimal = fresh_questions(model.spec, circuit["minimality_questions"] // 3,
                              rng_for(FAITHFULNESS_SEED, STREAM_MINIMALITY), search)
    drawn = QuestionBatch.concat([search, minimal])
    if with_repair:  # exactly the add-back's questions: the same seed, stream and exclusions as its stage
        repair = fresh_questions(model.spec, REPAIR_QUESTIONS, rng_for(FAITHFULNESS_SEED, STREAM_REPAIR), drawn)
        drawn = QuestionBatch.concat([drawn, repair])
    return model, circuit, drawn


def runner_for(model, per_qtype: int, stream: int, drawn):
    from arithlens.analysis.circuits.runner import NodeRunner
    from arithlens.analysis.faithfulness import (
        REFERENCE_QUESTIONS, STREAM_REFERENCE, fresh_questions, reference_questions, rng_for,
    )

    questions = fresh_questions(model.spec, per_qtype, rng_for(CARD_SEED, stream), drawn)
    reference = reference_questions(model.spec, REFERENCE_QUESTIONS, rng_for(CARD_SEED, STREAM_REFERENCE))
    return NodeRunner(model, questions, reference, seed=CARD_SEED)


def stage_robust() -> None:
    from arithlens.analysis.circuits.robust import resample_circuit
    from arithlens.analysis.nodes import Node

    t0, where = time.perf_counter(), setting()
    model, circuit, _ = model_and_sets()
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        if time.time() - last[0] > 30 or done == total:
            last[0] = time.time()
            log(f"robust: {stage} {done}/{total}")

    found = resample_circuit(model, prefer=[Node.for_model(n, model.spec) for n in circuit["nodes"]],
                             progress=progress)
    store("robust", {**found.to_dict(), "wall_seconds": time.perf_counter() - t0, **where})
    log(f"robust: {len(found.nodes)} nodes, {dict(found.search_exact)}")


def stage_repair() -> None:
    from arithlens.analysis.circuits.robust import add_back
    from arithlens.analysis.nodes import Node

    t0, where = time.perf_counter(), setting()
    model, _, drawn = model_and_sets(with_repair=False)
    pruned = load()["robust"]["nodes"]
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        if time.time() - last[0] > 30 or done == total:
            last[0] = time.time()
            log(f"repair: {stage} {done}/{total}")

    found = add_back(model, [Node.for_model(n, model.spec) for n in pruned], exclude=drawn, progress=progress)
    store("repair", {**found.to_dict(), "wall_seconds": time.perf_counter() - t0, **where})
    log(f"repair: {len(found.circuit.nodes)} nodes (added {[s.node for s in found.steps]}), "
        f"lower bounds {[dict(s.lower) for s in found.steps][-1:] or dict(found.start_lower)}")


def packed_circuit(circuit) -> dict:
    """The edge circuit's dict without its per-edge scores (`discover()` recomputes them) and with its edges as a
    bitmask over `EdgeGraph.build(spec, min_position).names` (base64 of numpy's packbits): ~3 KB, not ~660 KB."""
    import base64

    import numpy as np

    d = circuit.to_dict()
    del d["scores"], d["edges"]
    return {**d, "edges_packed": base64.b64encode(np.packbits(circuit.kept)).decode()}


def unpacked_circuit(d: dict, spec):
    """The `EdgeCircuit` `packed_circuit` stored (its scores unknown: NaN)."""
    from arithlens.analysis.edges.discovery import EdgeCircuit
    from arithlens.analysis.edges.graph import EdgeGraph

    if "edges_packed" not in d:  # the full layout of `EdgeCircuit.to_dict`
        return EdgeCircuit.from_dict(d, spec)
    graph = EdgeGraph.build(spec, min_position=int(d["min_position"]))
    names = _unpacked_edges(d["edges_packed"], graph.min_position, spec)
    if graph.n_edges != d["n_edges_all"] or len(names) != d["n_edges"]:
        raise SystemExit(f"error: the stored edge circuit does not fit this model's graph ({graph.n_edges} edges)")
    return EdgeCircuit.from_dict({**d, "edges": names, "scores": [None] * graph.n_edges}, spec)


def edge_runner_for(model, graph, per_qtype: int, stream: int, drawn):
    from arithlens.analysis.circuits.edge_runner import EdgeRunner

    nodes = runner_for(model, per_qtype, stream, drawn)  # the same questions and reference as the node cards
    return EdgeRunner(model, nodes.questions, nodes.reference, graph=graph, seed=CARD_SEED)


def _edge_curves(model, graph, runner, tokens, ablated, ablation):
    """MIB's curve of each method's edge scores (scored on `tokens` with `ablated` values) under `ablation`, and
    each method's scoring seconds."""
    import torch

    from arithlens.analysis.circuits.scoring import faithfulness_curve
    from arithlens.analysis.edges.scores import eap_ig_scores, eap_scores, exact_scores

    score_fns = {"exact": lambda: exact_scores(model, graph, tokens, ablated),
                 "eap": lambda: eap_scores(model, graph, tokens, ablated),
                 "eap_ig": lambda: eap_ig_scores(model, graph, tokens, ablated)}
    curves, score_seconds = [], {}
    for method, score in score_fns.items():
        t1 = time.perf_counter()
        with torch.enable_grad():
            scores = score()
        score_seconds[method] = time.perf_counter() - t1
        curve = faithfulness_curve(runner, dict(zip(runner.units, map(float, scores))), model=model.spec.name,
                                   method=EDGE_METHODS[method], ablation=ablation, unit="edge", seed=CARD_SEED)
        curves.append(curve.to_dict())
        log(f"edges: {method} ({ablation.label}): scores {score_seconds[method]:.0f} s, CPR {curve.cpr():.3f} "
            f"CMD {curve.cmd():.3f}")
    return curves, score_seconds


def _edge_score_set(model, runner, drawn, score_questions: int):
    from arithlens.analysis.faithfulness import STREAM_SEARCH, fresh_questions, rng_for
    from arithlens.arith.questions import QuestionBatch

    scored_on = fresh_questions(model.spec, score_questions, rng_for(CARD_SEED, STREAM_SEARCH),
                                QuestionBatch.concat([drawn, runner.questions]))
    return scored_on.torch_tokens(str(model.device))


def stage_edges(per_qtype: int, score_questions: int) -> None:
    """The edge circuit by `discover()`'s defaults, and MIB's curve of each method's edge scores on its graph."""
    from arithlens.analysis.circuits.runner import Ablation
    from arithlens.analysis.edges.discovery import discover
    from arithlens.analysis.edges.forward import ablation_values
    from arithlens.analysis.faithfulness import STREAM_EVAL

    t0, where = time.perf_counter(), setting()
    model, _, drawn = model_and_sets()
    circuit = discover(model, progress=lambda text: log(f"edges: {text}"))
    discover_seconds = time.perf_counter() - t0
    log(f"edges: {circuit.n_edges} of {circuit.graph.n_edges} edges, {len(circuit.nodes)} nodes, "
        f"{discover_seconds:.0f} s")
    runner = edge_runner_for(model, circuit.graph, per_qtype, STREAM_EVAL, drawn)
    tokens = _edge_score_set(model, runner, drawn, score_questions)
    mean = ablation_values(model, runner.reference.torch_tokens(str(model.device)), "mean")
    curves, score_seconds = _edge_curves(model, circuit.graph, runner, tokens, mean, Ablation("mean"))
    store("edges", {"circuit": packed_circuit(circuit), "discover_seconds": discover_seconds,
                    "questions_per_qtype": per_qtype, "score_questions_per_qtype": score_questions,
                    "score_seconds": score_seconds, "curves": curves, "wall_seconds": time.perf_counter() - t0,
                    **where})


def stage_edge_curves_resample(per_qtype: int, score_questions: int) -> None:
    """MIB's curves of the three methods under resample ablation: each method scores the edges with resampled
    values (a reference question drawn per scoring question), and the top-k circuits are run with every other
    edge resampled (the card's first draw); the questions are the mean-ablation curves' own."""
    import numpy as np

    from arithlens.analysis.circuits.runner import Ablation
    from arithlens.analysis.edges.forward import ablation_values
    from arithlens.analysis.faithfulness import STREAM_EVAL

    data = load()
    if "edges" not in data:
        raise SystemExit("error: no stored edges stage; run `circuit_card.py edges` first")
    t0, where = time.perf_counter(), setting()
    model, _, drawn = model_and_sets()
    circuit = unpacked_circuit(data["edges"]["circuit"], model.spec)
    runner = edge_runner_for(model, circuit.graph, per_qtype, STREAM_EVAL, drawn)
    tokens = _edge_score_set(model, runner, drawn, score_questions)
    resampled = ablation_values(model, runner.reference.torch_tokens(str(model.device)), "resample",
                                batch=len(tokens), rng=np.random.default_rng([CARD_SEED, 44]))
    curves, score_seconds = _edge_curves(model, circuit.graph, runner, tokens, resampled, Ablation("resample"))
    store("edges_resample_curves", {"questions_per_qtype": per_qtype, "score_questions_per_qtype": score_questions,
                                    "score_seconds": score_seconds, "curves": curves,
                                    "wall_seconds": time.perf_counter() - t0, **where}, compact=True)


def stage_edge_circuit() -> None:
    """Only the edge circuit, rediscovered with `discover()`'s current defaults; the stored MIB curves are kept (they
    score the rankings over the whole graph and do not depend on discovery). Its card is then stale: rerun
    `cards --only "edge circuit" --force`."""
    from arithlens.analysis.edges.discovery import discover

    data = load()
    if "edges" not in data:
        raise SystemExit("error: no stored edges stage; run `circuit_card.py edges` first")
    t0, where = time.perf_counter(), setting()
    model, _, _ = model_and_sets()
    circuit = discover(model, progress=lambda text: log(f"edge-circuit: {text}"))
    seconds = time.perf_counter() - t0
    log(f"edge-circuit: {circuit.n_edges} of {circuit.graph.n_edges} edges, {len(circuit.nodes)} nodes, {seconds:.0f} s")
    store("edges", {**data["edges"], "circuit": packed_circuit(circuit), "discover_seconds": seconds,
                    "discover_setting": where})


def stage_edge_resample() -> None:
    """The stored edge circuit (found under mean ablation) repaired under resample ablation: edges ranked by
    `EDGE_RS_METHOD` under resample ablation are added until `discover()`'s held-out check passes under resample
    and mean ablation both (`discover(..., start=)`)."""
    from arithlens.analysis.edges.discovery import discover

    data = load()
    if "edges" not in data:
        raise SystemExit("error: no stored edges stage; run `circuit_card.py edges` first")
    t0, c0, where = time.perf_counter(), time.process_time(), setting()
    model, _, _ = model_and_sets()
    start = unpacked_circuit(data["edges"]["circuit"], model.spec)
    circuit = discover(model, method=EDGE_RS_METHOD, ablation="resample", start=start,
                       progress=lambda text: log(f"edge-resample: {text}"))
    seconds = time.perf_counter() - t0
    log(f"edge-resample: {circuit.n_edges} of {circuit.graph.n_edges} edges, {len(circuit.nodes)} nodes, "
        f"{seconds:.0f} s")
    store("edges_resample", {"circuit": packed_circuit(circuit), "start_edges": start.n_edges, "wall_seconds": seconds,
                             "cpu_seconds": time.process_time() - c0, **where})


@functools.cache
def default_spec():
    """The shipped default model's spec (what a stored edge bitmask is read against)."""
    from arithlens.model import load_checkpoint
    from arithlens.model.zoo import resolve_model

    return load_checkpoint(resolve_model(None)).model.spec


def card_of(d: dict, data: dict, spec=None):
    """The `AblationCard` a stored card dict holds; an edge card stores its units as a bitmask over the edge graph
    from `min_position` (`units_packed`), read back here against the default model's graph."""
    from arithlens.results.circuits import AblationCard

    d = dict(d)
    if "units_packed" in d:
        circuit = data["edges"]["circuit"]
        first = int(d.pop("min_position", circuit["min_position"]))
        d = {**d, "units": sorted(_unpacked_edges(d.pop("units_packed"), first, spec or default_spec()))}
    return AblationCard.from_dict(d)


def _packed_edges(edges, graph) -> str:
    import base64

    import numpy as np

    return base64.b64encode(np.packbits(graph.mask(list(edges)).numpy() > 0.5)).decode()


def _unpacked_edges(packed: str, min_position: int, spec) -> list[str]:
    import base64

    import numpy as np

    from arithlens.analysis.edges.graph import EdgeGraph

    graph = EdgeGraph.build(spec, min_position=min_position)
    kept = np.unpackbits(np.frombuffer(base64.b64decode(packed), np.uint8))[: graph.n_edges].astype(bool)
    return [n for n, k in zip(graph.names, kept) if k]


def card_dict(card, data: dict, spec=None) -> dict:
    """`card.to_dict()`, an edge card's units packed as the stored edge circuit's bitmask when they are its edges."""
    from arithlens.analysis.edges.graph import EdgeGraph

    d = card.to_dict()
    circuit = data.get("edges", {}).get("circuit", {})
    if card.unit == "edge" and "min_position" in circuit:
        graph = EdgeGraph.build(spec or default_spec(), min_position=int(circuit["min_position"]))
        d["units_packed"] = _packed_edges(d.pop("units"), graph)
        d["min_position"] = graph.min_position
    return d


def _store_cards(cards: dict, seconds: float | dict, where: dict, extra: dict | None = None) -> None:
    data = load()  # again: another cards run may have stored its card meanwhile
    done = data.get("cards", {})
    merged = {**done.get("cards", {}), **{k: card_dict(c, data) for k, c in cards.items()}}
    walls = {**done.get("wall_seconds", {}), **{k: seconds[k] if isinstance(seconds, dict) else seconds
                                                for k in cards}}
    settings = {**done.get("settings", {}), **{k: where for k in cards}}
    work = {**done.get("work", {}), **{k: extra for k in cards if extra is not None}}
    store("cards", {"cards": merged, "wall_seconds": walls, "settings": settings, "work": work})
    for c in cards.values():
        log(f"cards: {c.label}: " + ", ".join(f"{a} {100 * c.min_exact(a):.1f}%" for a in c.ablations))


# ---------------------------------------------------------------------------------------------------
# Cards in question slices: 2 worker processes, one torch thread each, every (slice, ablation) checkpointed


_WORKER: dict = {}


def _worker_model():
    import torch

    from arithlens.model import load_checkpoint
    from arithlens.model.zoo import resolve_model

    if "model" not in _WORKER:
        torch.set_num_threads(1)  # one thread per worker process: the processes are the parallelism
        _WORKER["model"] = load_checkpoint(resolve_model(None)).model.eval()
    return _WORKER["model"]


def _npz_runs(path: Path) -> dict:
    import numpy as np

    from arithlens.analysis.faithfulness import RunScores

    with np.load(path) as z:
        keys = json.loads(str(z["keys"]))
        return {k: RunScores(z[f"wrong{i}"], z[f"loss{i}"], z[f"diff{i}"]) for i, k in enumerate(keys)}


def _save_runs(path: Path, runs: dict) -> None:
    import io

    import numpy as np

    from arithlens.io import write_atomic

    arrays = {"keys": np.array(json.dumps(list(runs)))}
    for i, r in enumerate(runs.values()):
        arrays |= {f"wrong{i}": r.wrong, f"loss{i}": r.loss, f"diff{i}": r.logit_diff}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


def _slice_task(task: dict) -> tuple[str, int, float]:
    """Run one slice's ablations that have no checkpoint yet; returns (group, slice, CPU seconds)."""
    from arithlens.analysis.circuits.card import card_runs
    from arithlens.analysis.circuits.runner import Ablation, NodeRunner

    t0 = time.process_time()
    todo = [(j, a) for j, a in enumerate(task["ablations"]) if not (task["dir"] / f"s{task['k']:03d}_{a}.npz").exists()]
    if todo:
        model = _worker_model()
        seed = CARD_SEED * 1000 + task["k"]  # each slice its own resample rows
        if task["unit"] == "edge":
            from arithlens.analysis.circuits.edge_runner import EdgeRunner
            from arithlens.analysis.edges.graph import EdgeGraph

            graph = EdgeGraph.build(model.spec, min_position=task["min_position"])
            runner = EdgeRunner(model, task["questions"], task["reference"], graph=graph, seed=seed)
        else:
            runner = NodeRunner(model, task["questions"], task["reference"], seed=seed)
        for j, label in todo:
            runs = card_runs(runner, task["circuits"], Ablation.parse(label), clean=j == 0)
            _save_runs(task["dir"] / f"s{task['k']:03d}_{label}.npz", runs)
    return task["group"], task["k"], time.process_time() - t0


def stage_sliced_cards(per_qtype: int, force: bool, only: list[str] | None, workers: int, slice_size: int) -> None:
    """The cards of the node circuits (together: they share the clean and empty runs) and of the edge circuit, the
    questions cut into slices of `slice_size` per qtype run by `workers` processes; after each slice the cards of
    the slices done so far are stored (a balanced prefix: its n per qtype is in the card), so a stopped run leaves
    a smaller honest card and a rerun resumes from the checkpoints."""
    import hashlib
    import multiprocessing

    from arithlens.analysis.circuits.card import cards_from_runs, joined_runs, qtype_slices
    from arithlens.analysis.circuits.runner import card_ablations
    from arithlens.analysis.faithfulness import STREAM_EVAL, all_nodes

    t0, where = time.perf_counter(), setting()
    model, circuit, drawn = model_and_sets()
    data = load()
    done = data.get("cards", {}).get("cards", {})
    groups = {"nodes": {MEAN: circuit["nodes"]}, "edges": {}}
    if "robust" in data:
        groups["nodes"][ROBUST] = data["robust"]["nodes"]
    if "repair" in data:
        groups["nodes"][REPAIRED] = data["repair"]["nodes"]
    edge_circuit = None
    if "edges" in data:
        edge_circuit = unpacked_circuit(data["edges"]["circuit"], model.spec)
        groups["edges"][EDGE] = edge_circuit.edges
    if "edges_resample" in data:
        groups["edges"][EDGE_RS] = unpacked_circuit(data["edges_resample"]["circuit"], model.spec).edges
    groups = {g: {k: v for k, v in c.items() if (force or k not in done) and (not only or k in only)}
              for g, c in groups.items()}
    groups = {g: c for g, c in groups.items() if c}
    if not groups:
        log("cards: nothing to do (--force recomputes)")
        return
    nodes = runner_for(model, per_qtype, STREAM_EVAL, drawn)  # the node cards' questions and reference
    questions, reference = nodes.questions, nodes.reference
    slices = qtype_slices(nodes.qtypes, slice_size)
    labels = [a.label for a in card_ablations()]
    tasks, dirs = [], {}
    for group in ("edges", "nodes"):  # the edge card first: it is the one no earlier run stored
        if group not in groups:
            continue
        circuits = groups[group]
        key = json.dumps([group, {k: sorted(v) for k, v in circuits.items()}, per_qtype, slice_size, CARD_SEED])
        dirs[group] = CHECKPOINTS / hashlib.sha256(key.encode()).hexdigest()[:16]
        dirs[group].mkdir(parents=True, exist_ok=True)
        for k, rows in enumerate(slices):
            tasks.append({"group": group, "k": k, "dir": dirs[group], "ablations": labels, "circuits": circuits,
                          "unit": "edge" if group == "edges" else "node", "questions": questions.select(rows),
                          "reference": reference,
                          "min_position": edge_circuit.graph.min_position if group == "edges" else 0})
    log(f"cards: {', '.join(k for c in groups.values() for k in c)}: {len(questions):,} questions in "
        f"{len(slices)} slices, {workers} workers")
    cpu = {g: 0.0 for g in groups}
    finished = {g: set() for g in groups}
    n_all = {"edges": edge_circuit.graph.n_edges if edge_circuit else 0, "nodes": len(all_nodes(model.spec))}
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for group, k, seconds in pool.imap(_slice_task, tasks):
            cpu[group] += seconds
            finished[group].add(k)
            prefix = 0
            while prefix in finished[group]:
                prefix += 1
            if prefix != k + 1:
                continue
            stored = load().get("cards", {}).get("cards", {})
            smaller = [c for c in groups[group] if c in stored and stored[c]["rows"][0]["n"] > len(slices[0]) * prefix
                       // len(nodes.qtypes) and prefix < len(slices)]
            if smaller:  # a stored card on more questions stays until this one is complete
                log(f"cards: {group}: {prefix}/{len(slices)} slices (the stored card of {smaller[0]} is larger)")
                continue
            rows = __import__("numpy").concatenate(slices[:prefix])
            runs = {a: joined_runs([_npz_runs(dirs[group] / f"s{j:03d}_{a}.npz") for j in range(prefix)])
                    for a in labels}
            qtypes = [(name, mask[rows]) for name, mask in nodes.qtypes]
            cards = cards_from_runs(runs, qtypes, groups[group], model=model.spec.name,
                                    unit="edge" if group == "edges" else "node", n_all=n_all[group], seed=CARD_SEED,
                                    reference=len(reference), seconds=time.perf_counter() - t0)
            _store_cards(cards, time.perf_counter() - t0, where,
                         {"slices": f"{prefix} of {len(slices)}", "slice_questions_per_qtype": slice_size,
                          "workers": workers, "cpu_seconds": round(cpu[group], 1),
                          "resample_seeds": f"CARD_SEED * 1000 + slice ({CARD_SEED}000 ..)"})
            log(f"cards: {group}: {prefix}/{len(slices)} slices, {cpu[group]:.0f} CPU s, "
                f"{time.perf_counter() - t0:.0f} s wall")


def stage_profile(questions: int = 512) -> None:
    """CPU seconds (one torch thread) of what one card slice runs, on `questions` of the card's questions: a plain
    forward, the edge-masked forward of the edge circuit and of the empty circuit under mean ablation, the senders'
    outputs a resample block needs, and the node runner's masked run of the mean circuit; stored as `profile`."""
    import torch

    from arithlens.analysis.circuits.runner import Ablation
    from arithlens.analysis.edges.forward import edge_forward, sender_outputs
    from arithlens.analysis.faithfulness import STREAM_EVAL

    model, circuit, drawn = model_and_sets()
    data = load()
    edge = unpacked_circuit(data["edges"]["circuit"], model.spec)
    per_qtype = -(-questions // 3)
    runner = edge_runner_for(model, edge.graph, per_qtype, STREAM_EVAL, drawn)
    nodes = runner_for(model, per_qtype, STREAM_EVAL, drawn)
    tokens = runner._tokens[:questions]
    mask = edge.graph.mask(edge.edges)
    mean = ablation_means = runner._values["mean"]

    def cpu(work) -> float:
        t0 = time.process_time()
        with torch.inference_mode():
            work()
        return round(time.process_time() - t0, 2)

    out = {"questions": len(tokens), "threads": torch.get_num_threads(), **setting(),
           "plain forward": cpu(lambda: model(tokens)),
           "edge circuit, mean": cpu(lambda: edge_forward(model, edge.graph, tokens, mean, mask)),
           "empty edge circuit, mean": cpu(lambda: edge_forward(model, edge.graph, tokens, ablation_means,
                                                                torch.zeros_like(mask))),
           SENDERS: cpu(lambda: sender_outputs(model, runner._reference_tokens[:len(tokens)])),
           "node runner, mean circuit (mean)": cpu(lambda: nodes.run([circuit["nodes"]], Ablation("mean")))}
    store("profile", out)
    log(f"profile: {out}")


def stage_cards(per_qtype: int, force: bool, only: str | None = None, ablations: list[str] | None = None) -> None:
    from arithlens.analysis.circuits.card import ablation_cards
    from arithlens.analysis.circuits.runner import Ablation
    from arithlens.analysis.faithfulness import STREAM_EVAL

    t0, where = time.perf_counter(), setting()
    model, circuit, drawn = model_and_sets()
    done = load().get("cards", {})
    circuits = {MEAN: circuit["nodes"]}
    if "robust" in load():
        circuits[ROBUST] = load()["robust"]["nodes"]
    if "repair" in load():
        circuits[REPAIRED] = load()["repair"]["nodes"]
    todo = {k: v for k, v in circuits.items() if (force or k not in done.get("cards", {})) and (not only or k in only)}
    if not todo:
        log("cards: nothing to do (--force recomputes)")
        return
    runner = runner_for(model, per_qtype, STREAM_EVAL, drawn)
    log(f"cards: {', '.join(todo)} on {len(runner.questions)} questions")
    chosen = None if ablations is None else [Ablation.parse(a) for a in ablations]
    cards = ablation_cards(runner, todo, model=model.spec.name, ablations=chosen, seed=CARD_SEED,
                           reference=len(runner.reference))
    seconds = time.perf_counter() - t0
    if chosen is not None:  # join the columns a card already has on the same questions
        joined = {k: _joined(done.get("cards", {}).get(k), c) for k, c in cards.items()}
        seconds = {k: seconds + (done.get("wall_seconds", {}).get(k, 0.0) if joined[k] is not cards[k] else 0.0)
                   for k in cards}
        cards = joined
    _store_cards(cards, seconds, where)


def _joined(stored: dict | None, card):
    """`card` with the stored card's other ablations added (when both cover the same circuit and questions), in
    the card's column order; its seconds are the sum."""
    from dataclasses import replace

    from arithlens.analysis.circuits.runner import card_ablations
    from arithlens.results.circuits import AblationCard

    if stored is None:
        return card
    old = AblationCard.from_dict(stored)
    same = old.units == card.units and old.seed == card.seed and all(
        old.row(old.ablations[0], q).n == card.row(card.ablations[0], q).n for q in card.qtypes)
    if not same:
        return card
    order = [a.label for a in card_ablations()]
    rows = [r for r in old.rows if r.ablation not in card.ablations] + list(card.rows)
    rows.sort(key=lambda r: (order.index(r.ablation) if r.ablation in order else len(order)))
    return replace(card, rows=tuple(rows), seconds=old.seconds + card.seconds)


def stage_curves(per_qtype: int, score_questions: int) -> None:
    from arithlens.analysis.circuit import Circuit
    from arithlens.analysis.circuits.node_scores import cost_scores, single_node_scores
    from arithlens.analysis.circuits.runner import Ablation
    from arithlens.analysis.circuits.scoring import faithfulness_curve
    from arithlens.analysis.faithfulness import STREAM_EVAL, STREAM_SEARCH, fresh_questions, mean_values, rng_for
    from arithlens.arith.questions import QuestionBatch

    t0, where = time.perf_counter(), setting()
    model, circuit, drawn = model_and_sets()
    runner = runner_for(model, per_qtype, STREAM_EVAL, drawn)
    scored_on = fresh_questions(model.spec, score_questions, rng_for(CARD_SEED, STREAM_SEARCH),
                                QuestionBatch.concat([drawn, runner.questions]))
    t1 = time.perf_counter()
    single = single_node_scores(model, scored_on, mean_values(model, runner.reference))
    score_seconds = time.perf_counter() - t1
    log(f"curves: single-node scores in {score_seconds:.0f} s")
    methods = {"single-node ablation": single, "circuit node costs": cost_scores(Circuit.from_json(circuit))}
    curves = []
    for method, scores in methods.items():
        for ablation in (Ablation("mean"), Ablation("resample")):
            curve = faithfulness_curve(runner, scores, model=model.spec.name, method=method, ablation=ablation,
                                       seed=CARD_SEED)
            curves.append(curve.to_dict())
            log(f"curves: {method}, {ablation.label}: CPR {curve.cpr():.3f} CMD {curve.cmd():.3f}")
    store("curves", {"questions_per_qtype": per_qtype, "score_questions_per_qtype": score_questions,
                     "single_node_scores": single, "score_seconds": score_seconds, "curves": curves,
                     "wall_seconds": time.perf_counter() - t0, **where})


# ---------------------------------------------------------------------------------------------------
# The docs block


def _cell(row: dict) -> str:
    lo, hi = row["ci"]
    return f"{100 * row['exact']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def _node_order(name: str) -> tuple:
    from arithlens.analysis.nodes import Node

    node = Node.parse(name)
    return node.position, node.layer, node.is_mlp, node.num


def _load(where: dict | None) -> str:
    if not where:
        return ""
    return f" on {where['cpus']} shared cores, load average {where['load_average_at_start'][0]:.1f} at its start"


def _verdicts(cards: dict) -> list[str]:
    """One sentence per card: the ablations under which it is >= 99% exact on every qtype, and the worst one."""
    out = []
    for label, c in cards.items():
        held = [a for a in c.ablations if c.min_exact(a) >= 0.99]
        worst = min(c.ablations, key=c.min_exact)
        cells = " / ".join(f"{100 * c.row(worst, q).exact:.1f}%" for q in c.qtypes)
        draws = [a for a in c.ablations if a.startswith("resample")]
        lowest = {q: min(c.row(a, q).exact for a in draws) for q in c.qtypes}
        short = [q for q, v in lowest.items() if v < 0.99]
        out += ["", f"The {label} ({len(c.units):,} {c.unit}s) is >= 99% exact on every qtype under "
                    f"{', '.join(held) if held else 'no ablation'}; its worst is {worst}: {cells} "
                    f"({' / '.join(c.qtypes)}). Under resample ablation (the lower of {len(draws)} draws): "
                    + " / ".join(f"{100 * v:.1f}%" for v in lowest.values())
                    + (f", short of 99% on {', '.join(short)}." if short else ", >= 99% on every qtype.")
                    + ("" if len(c.ablations) == 5 else f" (Measured under {', '.join(c.ablations)} only.)")
                    + _disagreement(c, draws)]
    return out


def _disagreement(c, draws: list[str]) -> str:
    """Where mean and resample ablation disagree: qtypes whose mean-ablation Wilson interval does not overlap a
    resample draw's."""
    if "mean" not in c.ablations or not draws:
        return ""
    apart = []
    for q in c.qtypes:
        m = c.row("mean", q)
        for a in draws:
            r = c.row(a, q)
            if r.ci[1] < m.ci[0] or m.ci[1] < r.ci[0]:
                apart.append(f"{q} ({a} {100 * r.exact:.1f}% vs mean {100 * m.exact:.1f}%)")
                break
    if not apart:
        return " Mean and resample ablation agree on every qtype (their 95% intervals overlap)."
    return (" Mean and resample ablation disagree (95% intervals apart) on " + ", ".join(apart) + ".")


def _size(card, data: dict) -> str:
    """`163 of 330 nodes (49%)`; an edge circuit also names the nodes it touches."""
    share = f"{len(card.units):,} of {card.n_all:,} {card.unit}s ({100 * len(card.units) / card.n_all:.1f}% of the model's)"
    key = "edges_resample" if card.label == EDGE_RS else "edges"
    if card.unit == "edge" and key in data:
        circuit = data[key]["circuit"]
        share += (f", touching {len(circuit['nodes'])} of 330 nodes; edges into the answer positions only "
                  f"(P{circuit['min_position']} on): every earlier position runs clean under every ablation")
    return share


def _repair_text(repair: dict) -> str:
    lows = lambda d: " / ".join(f"{100 * v:.2f}%" for v in d.values())  # noqa: E731
    added = ", ".join(repair["added"]) or "none"
    rows = ["| nodes | added | " + " | ".join(f"{q} exact | {q} lower" for q in repair["start_exact"]) + " |",
            "|" + "---|" * (2 + 2 * len(repair["start_exact"]))]
    size = len(repair["start"])
    steps = [("", repair["start_exact"], repair["start_lower"])] + [
        (s["node"], s["exact"], s["lower"]) for s in repair["steps"]]
    for k, (node, exact, lower) in enumerate(steps):
        cells = " | ".join(f"{100 * exact[q]:.2f}% | {100 * lower[q]:.2f}%" for q in exact)
        rows.append(f"| {size + k} | {node or '(start)'} | {cells} |")
    verdict = ("every qtype's lower bound reached" if repair["reached"]
               else "the lower bound did not reach")
    return "\n".join([
        f"The add-back (`robust.add_back`): from the {size}-node resample circuit, on "
        f"{repair['search_questions'] // len(repair['start_exact']):,} fresh questions per qtype (none drawn by any "
        f"search; the cards' questions exclude them) repeated for "
        f"{repair['draws']} independent resample draws, add the node that raises the lowest qtype's Wilson 95% lower "
        f"bound the most (the bound counts each distinct question once), until every bound is >= "
        f"{100 * repair['target']:g}%. It added {len(repair['added'])} ({added}): {verdict} "
        f"{100 * repair['target']:g}% with {repair['n_nodes']} of {repair['n_all']} nodes "
        f"(lower bounds {lows(repair['steps'][-1]['lower'] if repair['steps'] else repair['start_lower'])}; "
        f"{repair['passes']} forward passes, {repair['wall_seconds']:.0f} s wall{_load(repair)}). Exact rate (mean "
        "over the draws) and its lower bound after each step:", "", *rows])


def _edges_text(edges: dict) -> str:
    from arithlens.results.circuits import FaithfulnessCurve
    from arithlens.report.circuit_card import curves_markdown

    c = edges["circuit"]
    cs = [FaithfulnessCurve.from_dict(x) for x in edges["curves"]]
    pooled = [FaithfulnessCurve(x.model, x.method, x.unit, x.ablation, x.n_all, x.percentages, x.sizes,
                                (x["ALL"],), x.seed, x.seconds) for x in cs]
    seconds = ", ".join(f"{EDGE_METHODS[m]} {v:.0f} s" for m, v in edges["score_seconds"].items())
    exact = ", ".join(f"{q} {100 * v:.2f}%" for q, v in c["exact"].items())
    return "\n".join([
        f"The edge circuit (`discover()` defaults: {c['method']} scores, {c['ablation']} ablation): {c['n_edges']:,} "
        f"of {c['n_edges_all']:,} edges ({100 * c['n_edges'] / c['n_edges_all']:.1f}%), touching {len(c['nodes'])} "
        f"nodes; exact on discovery's own held-out questions {exact} ({c['n_held_out']} per qtype); found in "
        f"{edges['discover_seconds']:.0f} s{_load(edges.get('discover_setting', edges))}.", "",
        f"MIB's table over edges, each method side by side: the top-k edges by |score| kept at MIB's sizes (k = "
        f"{', '.join(map(str, cs[0].sizes))} of the {cs[0].n_all:,} edges into P{c['min_position']} on), every other "
        f"such edge mean-ablated, on "
        f"{edges['questions_per_qtype']:,} questions per qtype pooled; scores on {edges['score_questions_per_qtype']} "
        f"other questions per qtype ({seconds}). Faithfulness of the logit difference:", "",
        curves_markdown(pooled, "logit_diff"), "", "and of the exact rate:", "", curves_markdown(pooled, "exact"), "",
        f"Wall time of the edges stage: {edges['wall_seconds']:.0f} s."])


def _edge_resample_text(rs: dict) -> str:
    c = rs["circuit"]
    exact = ", ".join(f"{q} {100 * v:.2f}%" for q, v in c["exact"].items())
    return (f"The edge circuit + resample repair (`discover(model, method=\"{c['method']}\", ablation=\"resample\", "
            f"start=edge_circuit)`): from the {rs['start_edges']:,}-edge mean-ablation circuit, the missing edges ranked "
            f"by {EDGE_METHODS[c['method']]} under resample ablation (on discovery's 32 scoring questions per qtype) are "
            f"added until discovery's held-out check ({c['n_held_out']:,} questions per qtype, 95% Wilson lower bound "
            f">= 99%) passes under resample and mean ablation both. It added {c['n_edges'] - rs['start_edges']:,} edges: "
            f"{c['n_edges']:,} of {c['n_edges_all']:,} ({100 * c['n_edges'] / c['n_edges_all']:.1f}%), touching "
            f"{len(c['nodes'])} nodes; held-out exact under resample {exact}; {rs['wall_seconds']:.0f} s wall, "
            f"{rs['cpu_seconds']:.0f} CPU s{_load(rs)}.")


def _edge_curves_by_ablation(edges: dict, rs: dict) -> str:
    """CPR and CMD of each method's edge curve under mean and under resample ablation, side by side (pooled)."""
    from arithlens.results.circuits import FaithfulnessCurve

    by = {}
    for stored in (edges, rs):
        for x in stored["curves"]:
            c = FaithfulnessCurve.from_dict(x)
            by[(c.method, c.ablation)] = c
    methods = list(dict.fromkeys(m for m, _ in by))
    rows = ["| method | CPR mean | CMD mean | CPR resample | CMD resample | CPR mean (exact) | CPR resample (exact) |",
            "|---|---|---|---|---|---|---|"]
    for m in methods:
        mean, res = by.get((m, "mean")), by.get((m, "resample#1"))
        if mean is None or res is None:
            continue
        (cm, dm), (cr, dr) = mean.areas("ALL", "logit_diff"), res.areas("ALL", "logit_diff")
        rows.append(f"| {m} | {cm:.3f} | {dm:.3f} | {cr:.3f} | {dr:.3f} | {mean.areas('ALL', 'exact')[0]:.3f} | "
                    f"{res.areas('ALL', 'exact')[0]:.3f} |")
    seconds = ", ".join(f"{EDGE_METHODS[m]} {v:.0f} s" for m, v in rs["score_seconds"].items())
    own = " (the mean curves' own)" if rs["questions_per_qtype"] == edges["questions_per_qtype"] else ""
    return "\n".join([
        f"MIB's edge curves under resample ablation as well (`python scripts/circuit_card.py edge-curves-resample`): "
        f"each method scores the edges with a resampled reference question per scoring question "
        f"({rs['score_questions_per_qtype']} per qtype; {seconds}), and the top-k edges at MIB's sizes run with "
        f"every other edge resampled (one draw), on {rs['questions_per_qtype']:,} questions per qtype pooled{own}; "
        f"wall time {rs['wall_seconds']:.0f} s{_load(rs)}. Logit-difference CPR / CMD (and exact-match "
        f"CPR) under each ablation:", "", *rows])


def _sizes_table(cards: dict) -> str:
    """Each circuit's size beside its worst qtype under mean and under resample ablation (the lower draw), with
    the Wilson 95% interval of that rate."""
    lines = ["| circuit | size | share of the model | worst qtype, mean | worst qtype, resample (lower draw) |",
             "|---|---|---|---|---|"]
    for label, c in cards.items():
        def worst(ablations: list[str]) -> str:
            if not ablations:
                return "not measured"
            row = min((c.row(a, q) for a in ablations for q in c.qtypes), key=lambda r: r.exact)
            return f"{row.qtype} {_cell({'exact': row.exact, 'ci': row.ci})}"

        draws = [a for a in c.ablations if a.startswith("resample")]
        lines.append(f"| {label} | {len(c.units):,} {c.unit}s | {100 * len(c.units) / c.n_all:.1f}% of "
                     f"{c.n_all:,} | {worst([a for a in c.ablations if a == 'mean'])} | {worst(draws)} |")
    return "\n".join(lines)


def _profile_text(prof: dict) -> str:
    """What a card's pieces cost, from the `profile` stage."""
    plain = prof["plain forward"]
    edge, empty = prof["edge circuit, mean"], prof["empty edge circuit, mean"]
    per_slice = (5 * (edge + empty) + 2 * prof[SENDERS]) * 1500 / prof["questions"]
    return (f"What a card costs (`python scripts/circuit_card.py profile`: CPU seconds on one torch thread for "
            f"{prof['questions']} of the card's questions{_load(prof)}): a plain forward {plain:.2f} s; the node "
            f"runner's run of the mean circuit {prof['node runner, mean circuit (mean)']:.2f} s (it reruns only what "
            f"the ablation changes); the edge-masked forward of the edge circuit {edge:.2f} s and of the empty "
            f"circuit {empty:.2f} s ({edge / plain:.1f}x and {empty / plain:.1f}x a plain forward); the senders' "
            f"outputs of a resample block {prof[SENDERS]:.2f} s. "
            f"An edge card therefore costs ~{per_slice:.0f} CPU s per 500 questions per qtype (the circuit and the "
            "empty circuit under five ablations, two resample blocks; the clean run once): ~"
            f"{20 * per_slice / 60:.0f} CPU minutes at 10,000 per qtype.")


def render(data: dict) -> str:
    """The docs block (markdown) from the stored results."""
    from arithlens.results.circuits import AblationCard, FaithfulnessCurve
    from arithlens.report.circuit_card import card_markdown, curves_markdown

    out = []
    cards = data.get("cards", {})
    robust = data.get("robust")
    if data.get("profile"):
        out += [_profile_text(data["profile"]), ""]
    if cards:
        out.append(f"Shipped default model, exact rate per qtype with 95% Wilson intervals on fresh questions "
                   f"(seed {CARD_SEED}; none drawn by the circuit searches; n per qtype beside each card), and LD: the logit "
                   "difference recovered between the empty circuit (0%) and the model (100%). Ablated nodes read: "
                   "their mean per position over 2,048 mixed reference questions (`mean`, the project's mean), one "
                   "mean over all positions (`plain-mean`), the activation of a reference question drawn per "
                   "question (`resample#1`, `resample#2`: two independent draws), or zero; an ablated edge carries "
                   "the same value of its sender, and only the receiver of that edge reads it.")
        parsed = {k: card_of(v, data) for k, v in cards["cards"].items()}
        for label, c in parsed.items():
            n = ", ".join(f"{q} {c.row(c.ablations[0], q).n:,}" for q in c.qtypes)
            work = cards.get("work", {}).get(label)
            how = (f" ({work['slices']} slices of {work['slice_questions_per_qtype']:,} questions per qtype, "
                   f"{work['workers']} worker processes, {work['cpu_seconds']:,.0f} CPU s)" if work else "")
            out += ["", f"**{label}**: {_size(c, data)}; n = {n}; wall time "
                        f"{cards['wall_seconds'][label]:.0f} s for this stage{how}"
                        f"{_load(cards.get('settings', {}).get(label))}",
                    "", card_markdown(c)]
        out += _verdicts(parsed)
        out += ["", _sizes_table(parsed)]
    if robust:
        exact = ", ".join(f"{k} {100 * v:.2f}%" for k, v in robust["search_exact"].items())
        out += ["", f"The resample circuit: {robust['n_nodes']} of {robust['n_all']} nodes, pruned from every node "
                    f"under resample ablation on {robust['search_questions']:,} search questions repeated for "
                    f"{robust['draws']} independent draws (search exact {exact}; {robust['passes']} forward passes, "
                    f"{robust['wall_seconds']:.0f} s wall{_load(robust)})."]
        mean_nodes = set(json.loads(CIRCUIT.read_text())["circuit"]["nodes"])
        added = sorted(set(robust["nodes"]) - mean_nodes, key=_node_order)
        dropped = sorted(mean_nodes - set(robust["nodes"]), key=_node_order)
        out += ["", f"Beside the mean circuit's {len(mean_nodes)} nodes it adds {len(added)} ({', '.join(added)}) and "
                    f"drops {len(dropped)} ({', '.join(dropped) or 'none'})."]
    repair = data.get("repair")
    if repair:
        out += ["", _repair_text(repair)]
    edges = data.get("edges")
    if edges:
        out += ["", _edges_text(edges)]
    if data.get("edges_resample"):
        out += ["", _edge_resample_text(data["edges_resample"])]
    if data.get("edges_resample_curves") and edges:
        out += ["", _edge_curves_by_ablation(edges, data["edges_resample_curves"])]
    curves = data.get("curves")
    if curves:
        cs = [FaithfulnessCurve.from_dict(c) for c in curves["curves"]]
        all_rows = [FaithfulnessCurve(c.model, c.method, c.unit, c.ablation, c.n_all, c.percentages, c.sizes,
                                      (c["ALL"],), c.seed, c.seconds) for c in cs]
        out += ["", f"MIB curves over nodes: the top-k nodes by |score| kept at MIB's sizes (k = "
                    f"{', '.join(map(str, cs[0].sizes))} of {cs[0].n_all}), every other node ablated, on "
                    f"{curves['questions_per_qtype']:,} questions per qtype pooled (MIB's average); single-node "
                    f"scores from {curves['score_questions_per_qtype']} questions per qtype "
                    f"({curves['score_seconds']:.0f} s), circuit node costs from the stored circuit (nodes outside "
                    f"it score 0). Faithfulness of the logit difference:", "",
                curves_markdown(all_rows, "logit_diff"), "", "and of the exact rate:", "",
                curves_markdown(all_rows, "exact"), "",
                f"Wall time of the curves stage: {curves['wall_seconds']:.0f} s{_load(curves)}."]
    return "\n".join(out)


def write_doc(data: dict) -> None:
    from arithlens.io import write_atomic

    text = DOC.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"error: {DOC} has no {START} ... {END} block")
    block = f"{START}\n{render(data)}\n{END}"
    write_atomic(DOC, re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S).encode())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=["robust", "repair", "edges", "edge-circuit", "edge-resample",
                                      "edge-curves-resample", "cards", "curves", "render", "all", "profile"])
    p.add_argument("--questions", type=int, default=CARD_QUESTIONS, help="per qtype, for the cards")
    p.add_argument("--curve-questions", type=int, default=CURVE_QUESTIONS, help="per qtype, for the curves")
    p.add_argument("--score-questions", type=int, default=SCORE_QUESTIONS, help="per qtype, single-node scores")
    p.add_argument("--edge-score-questions", type=int, default=EDGE_SCORE_QUESTIONS,
                   help="per qtype, for the edge scores")
    p.add_argument("--ablations", nargs="+", metavar="LABEL",
                   help="the node cards under these ablations only (mean, plain-mean, resample#1, resample#2, zero)")
    p.add_argument("--force", action="store_true", help="recompute cards already stored")
    p.add_argument("--only", nargs="+", choices=[MEAN, ROBUST, REPAIRED, EDGE, EDGE_RS], help="the cards of these circuits only")
    p.add_argument("--workers", type=int, default=2, help="worker processes for the cards (one torch thread each)")
    p.add_argument("--slice", type=int, default=SLICE_QUESTIONS, help="questions per qtype in each slice of a card")
    args = p.parse_args()
    if args.stage in ("robust", "all"):
        stage_robust()
    if args.stage in ("repair", "all"):
        stage_repair()
    if args.stage in ("edges", "all"):
        stage_edges(args.curve_questions, args.edge_score_questions)
    if args.stage == "edge-circuit":
        stage_edge_circuit()
    if args.stage in ("edge-resample", "all"):
        stage_edge_resample()
    if args.stage in ("edge-curves-resample", "all"):
        stage_edge_curves_resample(args.curve_questions, args.edge_score_questions)
    if args.stage in ("cards", "all"):
        if args.ablations:  # some columns of the node cards, joined to the stored ones
            stage_cards(args.questions, args.force, args.only, args.ablations)
        else:
            stage_sliced_cards(args.questions, args.force, args.only, args.workers, args.slice)
    if args.stage in ("curves", "all"):
        stage_curves(args.curve_questions, args.score_questions)
    if args.stage == "profile":
        stage_profile()
    if args.stage in ("render", "all"):
        write_doc(load())


if __name__ == "__main__":
    main()
