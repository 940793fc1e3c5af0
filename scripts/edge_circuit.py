"""The numbers of docs/edges.md: edge counts, exact / EAP / EAP-IG scores with their times and rank agreement per
receiver layer, and a discovered edge circuit with its wall and CPU time and its exact rate on fresh questions.

    python scripts/edge_circuit.py --out runs/edges            # the default model, every number of the note
    python scripts/edge_circuit.py --out runs/edges --quick    # fewer questions (a smoke run, minutes)

    python scripts/edge_circuit.py --out runs/edges --methods eap_ig eap exact   # discovery from each ranking

    python scripts/edge_circuit.py --default --json benchmarks/results/edge_circuit.json --force
        # the default circuit (`discover(model)` at its defaults), then checked on 10,000 fresh questions per qtype
        # drawn from a stream no discovery step uses

Writes `edges.json` (every number printed) and `circuit_<method>_mib.json` (each circuit in EAP-IG / MIB layout),
each staged and renamed into place; an existing --out folder's files are only replaced with --force.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from arithlens.analysis.edges.discovery import (
    HELD_OUT_PER_QTYPE, METHODS, SEARCH_PER_QTYPE, STREAM_EDGE_HELD_OUT, STREAM_EDGE_REFERENCE, STREAM_EDGE_SEARCH,
    CheckSet, discover,
    exact_rates,
)
from arithlens.analysis.edges.export import to_mib_json
from arithlens.analysis.edges.forward import ablation_values
from arithlens.analysis.edges.graph import EdgeGraph
from arithlens.analysis.edges.scores import eap_ig_scores, eap_scores, exact_scores, rank_agreement
from arithlens.analysis.faithfulness import (
    FAITHFULNESS_SEED, REFERENCE_QUESTIONS, fresh_questions, reference_questions, rng_for,
)
from arithlens.analysis.stats import wilson
from arithlens.api import load_model

SEED = 28_028
VALIDATION_SEED = 28_099  # the default circuit's check: a seed no discovery stream uses (they run under 140,014)


class Clock:
    """Wall and process CPU seconds of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def to_dict(self) -> dict:
        return {"wall_s": round(self.wall, 1), "cpu_s": round(self.cpu, 1)}


def write_atomic(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep the result from other readers
    os.replace(tmp, path)


def default_circuit(model_name: str | None, path: Path, validate: int, threads: int) -> dict:
    """`discover(model)` at its defaults, timed, then its exact rate per qtype (Wilson 95%) on `validate` fresh
    questions per qtype from VALIDATION_SEED's stream (rows that are in discovery's held-out set left out)."""
    torch.set_num_threads(threads)
    model = load_model(model_name)
    spec = model.spec
    load = os.getloadavg()
    with Clock() as clock:
        circuit = discover(model, progress=lambda line: print(f"  {line}", flush=True))
    search = fresh_questions(spec, SEARCH_PER_QTYPE, rng_for(FAITHFULNESS_SEED, STREAM_EDGE_SEARCH))
    held = fresh_questions(spec, HELD_OUT_PER_QTYPE, rng_for(FAITHFULNESS_SEED, STREAM_EDGE_HELD_OUT), exclude=search)
    check = fresh_questions(spec, validate, rng_for(VALIDATION_SEED, 1), exclude=held)
    reference = reference_questions(spec, REFERENCE_QUESTIONS, rng_for(FAITHFULNESS_SEED, STREAM_EDGE_REFERENCE))
    ablated = ablation_values(model, reference.torch_tokens(str(model.device)), "mean")
    check_set = CheckSet.build(model, check, ablated, lambda n: n)
    with Clock() as c_val:
        wrong = check_set.wrong(model, circuit.graph, circuit.mask(model.device), stop_early=False)
    counts = np.bincount(check_set.qtype, minlength=len(check_set.names))
    exact = {q: {"n": int(n), "correct": int(n - w), "exact": (n - w) / n, "ci": list(wilson(int(n - w), int(n)))}
             for q, n, w in zip(check_set.names, counts, wrong)}
    result = {
        "model": spec.name, "method": circuit.method, "ablation": circuit.ablation,
        "n_edges": circuit.n_edges, "n_edges_all": circuit.graph.n_edges,
        "share_of_edges": circuit.n_edges / circuit.graph.n_edges, "min_position": circuit.graph.min_position,
        "n_nodes": len(circuit.nodes), "nodes": circuit.nodes, "stages": circuit.stages,
        "held_out": {"per_qtype": circuit.n_held_out, "exact": circuit.exact},
        "validation": {"per_qtype": validate, "seed": VALIDATION_SEED, "exact": exact, **c_val.to_dict()},
        "discovery": {**clock.to_dict(), "threads": threads, "load_average_before": [round(x, 2) for x in load],
                      "load_average_after": [round(x, 2) for x in os.getloadavg()],
                      "cpu_note": "process CPU seconds (time.process_time) stand in for the wall time on an idle "
                                  "machine: this one is shared by other jobs"},
        "edges": circuit.edges,
        "command": f"python scripts/edge_circuit.py --default --json {path} --force",
    }
    print(f"{spec.name}: {circuit.n_edges:,} of {circuit.graph.n_edges:,} edges "
          f"({100 * result['share_of_edges']:.1f}%), {len(circuit.nodes)} nodes, {circuit.method} ranking; "
          f"discovery {clock.wall:.1f} s wall / {clock.cpu:.1f} s CPU ({threads} thread(s), load {load[0]:.1f})")
    print(f"  on {validate:,} fresh questions per qtype: " + ", ".join(
        f"{q} {100 * r['exact']:.2f}% [{100 * r['ci'][0]:.2f}, {100 * r['ci'][1]:.2f}]" for q, r in exact.items()))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model name or path (default: the default model)")
    parser.add_argument("--out", help="folder for edges.json and circuit_mib.json (not with --default)")
    parser.add_argument("--default", action="store_true", help="only the default circuit and its 10,000-question "
                        "check, written to --json")
    parser.add_argument("--json", help="with --default: the file to write (e.g. benchmarks/results/edge_circuit.json)")
    parser.add_argument("--force", action="store_true", help="replace the files of an existing --out folder")
    parser.add_argument("--quick", action="store_true", help="fewer questions everywhere (a smoke run)")
    parser.add_argument("--score-per-qtype", type=int, default=6, help="questions per qtype for the scores")
    parser.add_argument("--validate-per-qtype", type=int, default=10_000, help="fresh questions per qtype to check")
    parser.add_argument("--methods", nargs="+", default=["eap_ig"], choices=METHODS,
                        help="rankings to discover a circuit from (default eap_ig)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: on a shared 2-core machine two threads spin against other jobs)")
    args = parser.parse_args(argv)
    if args.default:
        if not args.json:
            sys.exit("error: --default writes one file: pass --json PATH")
        path = Path(args.json)
        if path.exists() and not args.force:
            sys.exit(f"error: {path} exists; pass --force to replace it")
        if not path.parent.is_dir():
            sys.exit(f"error: {path.parent} is not a folder")
        write_atomic(path, default_circuit(args.model, path, args.validate_per_qtype, args.threads))
        print(f"wrote {path}")
        return
    if not args.out:
        sys.exit("error: pass --out DIR (or --default --json PATH)")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        sys.exit(f"error: {out} exists and is not empty; pass --force to replace its files")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    per_qtype, validate = (2, 500) if args.quick else (args.score_per_qtype, args.validate_per_qtype)

    model = load_model(args.model)
    spec = model.spec
    answer = spec.layout.answer_logit_positions
    result: dict = {"model": spec.name, "threads": args.threads, "seed": SEED}
    graph_all = EdgeGraph.build(spec)
    graph = EdgeGraph.build(spec, min_position=answer.start)
    result["edges"] = {"all_positions": graph_all.n_edges, "from_first_answer_position": graph.n_edges,
                       "min_position": graph.min_position}
    print(f"{spec.name}: {graph_all.n_edges:,} edges with receivers at every position, {graph.n_edges:,} from "
          f"P{answer.start} (the first answer position) on")

    questions = fresh_questions(spec, per_qtype, rng_for(SEED, 1))
    tokens = questions.torch_tokens(str(model.device))
    reference = reference_questions(spec, REFERENCE_QUESTIONS, rng_for(SEED, 2))
    ablated = ablation_values(model, reference.torch_tokens(str(model.device)), "mean")
    with Clock() as c_exact:
        exact = exact_scores(model, graph, tokens, ablated)
    with Clock() as c_eap:
        eap = eap_scores(model, graph, tokens, ablated)
    with Clock() as c_ig:
        ig = eap_ig_scores(model, graph, tokens, ablated)
    result["scores"] = {"questions": len(tokens), "metric": "logit_diff", "ablation": "mean",
                        "exact": c_exact.to_dict(), "eap": c_eap.to_dict(), "eap_ig": c_ig.to_dict()}
    print(f"scores on {len(tokens)} questions (logit difference, mean ablation): exact {c_exact.wall:.0f} s wall / "
          f"{c_exact.cpu:.0f} s CPU, EAP {c_eap.wall:.1f} / {c_eap.cpu:.1f} s, EAP-IG (5 steps) {c_ig.wall:.1f} / "
          f"{c_ig.cpu:.1f} s")
    result["agreement"] = {}
    for name, att in (("eap", eap), ("eap_ig", ig)):
        rows = rank_agreement(graph, att, exact, top_k=100)
        result["agreement"][name] = [r.to_dict() for r in rows]
        for r in rows:
            where = "all" if r.layer < 0 else ("logits" if r.layer == spec.n_layers else f"layer {r.layer}")
            print(f"  {name:6s} vs exact, receivers {where:8s}: Spearman {r.spearman:.3f}, top-{r.top_k} overlap "
                  f"{100 * r.overlap:.0f}% ({r.n_edges:,} edges)")
    ratio = np.abs(exact) > 1e-3
    for name, att in (("eap", eap), ("eap_ig", ig)):
        for layer in range(spec.n_layers + 1):
            m = ratio & (graph.receiver_layer == layer)
            if m.any():
                rel = np.median(np.abs(att[m] - exact[m]) / np.abs(exact[m]))
                result["agreement"].setdefault(f"{name}_median_rel_error", {})[str(layer)] = float(rel)
                print(f"  {name:6s} median |attribution - exact| / |exact| at receiver layer {layer}: {rel:.2f}")

    result["discovery"] = {}
    check = fresh_questions(spec, validate, rng_for(SEED, 3))
    for method in args.methods:
        stages: list[str] = []
        with Clock() as c_disc:
            circuit = discover(model, method=method, min_position=answer.start, seed=SEED, reference=reference,
                               progress=lambda line: (stages.append(line), print(f"  {line}", flush=True)),
                               **({"search_per_qtype": 50, "held_out_per_qtype": 400} if args.quick else {}))
        with Clock() as c_val:
            rates = exact_rates(model, graph, check, ablated, circuit.mask(model.device))
        row = {**circuit.to_dict(), **c_disc.to_dict(), "progress": stages,
               "validation": {"per_qtype": validate, "exact": rates, **c_val.to_dict()},
               "fraction_of_edges": circuit.n_edges / graph.n_edges, "n_nodes": len(circuit.nodes)}
        for bulky in ("edges", "scores"):  # in circuit_mib.json
            row.pop(bulky)
        result["discovery"][method] = row
        print(f"discovery ({method} ranking, top-k, repair, prune): {circuit.n_edges:,} edges "
              f"({100 * circuit.n_edges / graph.n_edges:.2f}% of {graph.n_edges:,}), {len(circuit.nodes)} nodes, "
              f"{c_disc.wall:.0f} s wall / {c_disc.cpu:.0f} s CPU; stages {circuit.stages}")
        print(f"  on {validate:,} fresh questions per qtype: "
              + ", ".join(f"{q} {100 * r:.2f}%" for q, r in rates.items()))
        write_atomic(out / f"circuit_{method}_mib.json",
                     to_mib_json(graph, circuit.kept, circuit.scores, d_model=spec.d_model))
    write_atomic(out / "edges.json", result)
    print(f"wrote {out / 'edges.json'} and the circuits' circuit_<method>_mib.json")


if __name__ == "__main__":
    main()
