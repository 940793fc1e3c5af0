"""The numbers of docs/edges.md: edge counts, exact / EAP / EAP-IG scores with their times and rank agreement per
receiver layer, and a discovered edge circuit with its wall and CPU time and its exact rate on fresh questions.

    python scripts/edge_circuit.py --out runs/edges            # the default model, every number of the note
    python scripts/edge_circuit.py --out runs/edges --quick    # fewer questions (a smoke run, minutes)

    python scripts/edge_circuit.py --out runs/edges --methods eap_ig eap exact   # discovery from each ranking

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

from arithlens.analysis.edges.discovery import METHODS, discover, exact_rates
from arithlens.analysis.edges.export import to_mib_json
from arithlens.analysis.edges.forward import ablation_values
from arithlens.analysis.edges.graph import EdgeGraph
from arithlens.analysis.edges.scores import eap_ig_scores, eap_scores, exact_scores, rank_agreement
from arithlens.analysis.faithfulness import REFERENCE_QUESTIONS, fresh_questions, reference_questions, rng_for
from arithlens.api import load_model

SEED = 28_028


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
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model name or path (default: the default model)")
    parser.add_argument("--out", required=True, help="folder for edges.json and circuit_mib.json")
    parser.add_argument("--force", action="store_true", help="replace the files of an existing --out folder")
    parser.add_argument("--quick", action="store_true", help="fewer questions everywhere (a smoke run)")
    parser.add_argument("--score-per-qtype", type=int, default=6, help="questions per qtype for the scores")
    parser.add_argument("--validate-per-qtype", type=int, default=10_000, help="fresh questions per qtype to check")
    parser.add_argument("--methods", nargs="+", default=["eap_ig"], choices=METHODS,
                        help="rankings to discover a circuit from (default eap_ig)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: on a shared 2-core machine two threads spin against other jobs)")
    args = parser.parse_args(argv)
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
                               **({"search_per_qtype": 50, "held_out_per_qtype": 100} if args.quick else {}))
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
