"""The numbers of docs/circuit-purposes.md: the default model's edge circuit, its heads and MLPs with their purposes
(the analysis's sub-task tags, then the searches run on the rest), what the unexplained ones are needed for, and
how long each step takes; plus the circuit graph the report draws.

    python scripts/circuit_purposes.py --out runs/purposes            # the default model, every number of the note
    python scripts/circuit_purposes.py --out runs/purposes --quick    # fewer questions (a smoke run)
    python scripts/circuit_purposes.py --out runs/purposes --force --circuit runs/purposes/edge_circuit.json \\
        --nodes runs/purposes/tagged_nodes.json                       # reuse a run's circuit and analysis

Writes `purposes.json` (every number printed), `edge_circuit.json` (the circuit, `EdgeCircuit.to_dict`),
`tagged_nodes.json` (the analysis's useful nodes and tags) and the circuit graph PNG, each staged and renamed into
place; an existing --out folder's files are only replaced with --force.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from edge_circuit import Clock, write_atomic  # scripts/: run as `python scripts/circuit_purposes.py`

from arithlens.analysis.edges.discovery import EdgeCircuit, discover
from arithlens.analysis.nodes import Major, NodeList
from arithlens.api import circuit_purposes, load_model, run_analysis
from arithlens.report.circuit_graph import GRAPH_STEM, draw_circuit_graph, graph_data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model name or path (default: the default model)")
    parser.add_argument("--out", required=True, help="folder for purposes.json, edge_circuit.json and the graph")
    parser.add_argument("--force", action="store_true", help="replace the files of an existing --out folder")
    parser.add_argument("--quick", action="store_true", help="fewer questions everywhere (a smoke run)")
    parser.add_argument("--circuit", help="an edge circuit's JSON (EdgeCircuit.to_dict) instead of discovering one")
    parser.add_argument("--nodes", help="tagged nodes (NodeList.save) instead of running the useful sweep and search")
    parser.add_argument("--questions", type=int, default=100, help="fresh questions per qtype for the removals")
    parser.add_argument("--pairs", type=int, default=100, help="search pairs per sub-task and digit")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, the shared 2-core VM)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    reused = {Path(p).resolve() for p in (args.circuit, args.nodes) if p}
    if out.exists() and any(p.resolve() not in reused for p in out.iterdir()) and not args.force:
        sys.exit(f"error: {out} exists and is not empty; pass --force to replace its files")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    questions, pairs = (40, 20) if args.quick else (args.questions, args.pairs)

    model = load_model(args.model)
    spec = model.spec
    result: dict = {"model": spec.name, "threads": args.threads, "questions": questions, "pairs": pairs}

    if args.nodes:
        tagged = NodeList.load(args.nodes)
        result["analysis"] = {"from": args.nodes}
    else:
        with Clock() as c_an:  # the useful sweep and the searches, as `analyze` runs them (no studies)
            analysis = run_analysis(model, max_studies=0, faithfulness=0, pairs=pairs,
                                    **({"questions": 64} if args.quick else {}))
        tagged = analysis.nodes
        result["analysis"] = {**c_an.to_dict(), "stages": {k: round(v, 1) for k, v in analysis.timings.items()}}
        tagged.save(out / "tagged_nodes.json")
    units = [un for un in tagged if not un.node.is_neuron]
    heads = [un for un in units if un.node.is_head]
    result["useful"] = {"heads": len(heads), "heads_purposed": sum(bool(un.values(Major.ALGO)) for un in heads),
                        "mlps": len(units) - len(heads),
                        "mlps_purposed": sum(bool(un.values(Major.ALGO)) for un in units if un.node.is_mlp)}
    print(f"useful: {result['useful']['heads']} heads ({result['useful']['heads_purposed']} with a purpose), "
          f"{result['useful']['mlps']} MLPs ({result['useful']['mlps_purposed']} with a purpose)", flush=True)

    if args.circuit:
        circuit = EdgeCircuit.from_dict(json.loads(Path(args.circuit).read_text()), spec)
        result["circuit"] = {"from": args.circuit}
    else:
        with Clock() as c_disc:
            circuit = discover(model, progress=lambda line: print(f"  {line}", flush=True),
                               **({"search_per_qtype": 50, "held_out_per_qtype": 100} if args.quick else {}))
        result["circuit"] = c_disc.to_dict()
        write_atomic(out / "edge_circuit.json", circuit.to_dict())
    result["circuit"].update({"method": circuit.method, "ablation": circuit.ablation, "n_edges": circuit.n_edges,
                              "n_edges_all": circuit.graph.n_edges, "n_nodes": len(circuit.nodes),
                              "exact": circuit.exact, "n_held_out": circuit.n_held_out})
    print(f"circuit: {circuit.n_edges:,} of {circuit.graph.n_edges:,} edges, {len(circuit.nodes)} nodes, exact "
          f"{circuit.exact} on {circuit.n_held_out} held-out questions per qtype", flush=True)

    with Clock() as c_p:
        found = circuit_purposes(model, circuit, tagged, questions=questions, pairs=pairs,
                                 progress=lambda stage, done, total: print(f"  {stage} {done}/{total}", flush=True))
    result["purposes"] = {**c_p.to_dict(), "counts": found.counts(), "searched": len(found.searched),
                          "unexplained": {p.node: p.needed_for for p in found.unexplained},
                          "by_search": {p.node: list(p.purpose) for p in found.nodes if p.source == "search"},
                          "needed_only_together": sum(p.needed_for == "needed only together"
                                                      for p in found.unexplained)}
    write_atomic(out / "purposes_result.json", found.to_dict())
    for kind, c in found.counts().items():
        print(f"{kind}s in the circuit: {c['nodes']}, with a purpose {c['purposed']} (analysis {c['analysis']}, "
              f"search {c['search']}); useful {c['useful']}, of them with a purpose {c['useful_purposed']}")
    print(f"unexplained: {len(found.unexplained)} ({result['purposes']['needed_only_together']} needed only "
          f"together); {c_p.wall:.0f} s wall / {c_p.cpu:.0f} s CPU", flush=True)

    purposes = {p.node: list(p.purpose) for p in found.nodes}
    title = f"{spec.name}: {circuit.n_edges:,} of {circuit.graph.n_edges:,} edges ({circuit.method})"
    with Clock() as c_fig:
        draw_circuit_graph(graph_data(circuit, purposes, spec.layout.meanings, title), out,
                           spec.base_name + GRAPH_STEM)
    result["figure"] = c_fig.to_dict()
    write_atomic(out / "purposes.json", result)
    print(f"wrote {out / 'purposes.json'}, {out / 'purposes_result.json'} and the graph ({c_fig.wall:.1f} s)")


if __name__ == "__main__":
    main()
