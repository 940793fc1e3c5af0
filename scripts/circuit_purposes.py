"""The numbers of docs/circuit-purposes.md: the default model's edge circuit, its heads and MLPs with their purposes
(the analysis's sub-task tags, then the searches run on the rest), what the unexplained ones are needed for, and
how long each step takes; plus the circuit graph the report draws.

    python scripts/circuit_purposes.py --out runs/purposes            # the default model, every number of the note
    python scripts/circuit_purposes.py --out runs/purposes --quick    # fewer questions (a smoke run)
    python scripts/circuit_purposes.py --out runs/purposes --force --circuit runs/purposes/edge_circuit.json \\
        --nodes runs/purposes/tagged_nodes.json                       # reuse a run's circuit and analysis
    python scripts/circuit_purposes.py --out runs/purposes --stored-circuit --studies --store
        # today's default circuit (benchmarks/results/edge_circuit.json), node studies on the heads still unexplained

Writes `purposes.json` (every number printed), `purposes_result.json` (the `CircuitPurposes`), `edge_circuit.json`
(the circuit, `EdgeCircuit.to_dict`), `tagged_nodes.json` (the analysis's useful nodes and tags) and the circuit
graph PNG, each staged and renamed into place; an existing --out folder's files are only replaced with --force.
`--store` also keeps `purposes.json` as benchmarks/results/circuit_purposes.json and renders the numbers block of
docs/circuit-purposes.md from it; `--render` re-renders the block from the stored file, `--render PATH` stores a
run's purposes.json first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import torch
from edge_circuit import Clock, write_atomic  # scripts/: run as `python scripts/circuit_purposes.py`

from arithlens.analysis.edges.discovery import EdgeCircuit, discover
from arithlens.analysis.nodes import Major, NodeList
from arithlens.analysis.search import ATTENTION_FACTS
from arithlens.api import circuit_purposes, load_model, run_analysis
from arithlens.report.circuit_graph import GRAPH_STEM, draw_circuit_graph, graph_data


ROOT = Path(__file__).resolve().parent.parent
STORED_CIRCUIT = ROOT / "benchmarks" / "results" / "edge_circuit.json"  # `edge_circuit.py --default`'s circuit
RESULTS = ROOT / "benchmarks" / "results" / "circuit_purposes.json"
DOC = ROOT / "docs" / "circuit-purposes.md"
START, END = "<!-- circuit-purposes:start -->", "<!-- circuit-purposes:end -->"
LISTED = 40  # unexplained nodes listed in the doc (all are in the JSON)


def render(data: dict) -> str:
    """The doc's numbers block from a `purposes.json`."""
    c, p, u = data["circuit"], data["purposes"], data["useful"]
    exact = " / ".join(f"{100 * v:.2f}" for v in c["exact"].values())
    load = data.get("load")  # 1-minute load averages at the start and the end (runs that recorded them)
    lines = [
        f"Model `{data['model']}`, {data['threads']} torch thread(s) on the shared 2-core VM"
        + (f" (load average {load[0]:.1f} at the start, {load[-1]:.1f} at the end)" if load else "")
        + ", where other jobs ran too: wall times exceed the CPU times; both are given.",
        "",
        f"- **The circuit**: `discover(model)` ({c['method']} ranking, {c['ablation']} ablation, receivers from the "
        f"first answer position): {c['n_edges']:,} of {c['n_edges_all']:,} edges "
        f"({100 * c['n_edges'] / c['n_edges_all']:.1f}%), {c['n_nodes']} heads and MLPs; exact "
        f"{' / '.join(c['exact'])} {exact}% on {c['n_held_out']} held-out questions per qtype"
        + (f"; found in {c['wall_s']:.0f} s wall / {c['cpu_s']:.0f} s CPU" if "wall_s" in c else "")
        + (f" (the circuit stored in `{c['from']}`)." if "from" in c else "."),
        f"- **The analysis**: {u['heads']} useful heads, {u['heads_purposed']} with a purpose "
        f"({u['heads'] - u['heads_purposed']} without); {u['mlps']} useful MLPs, {u['mlps_purposed']} with one.",
        f"- **Purposes** ({data['questions']} fresh questions per qtype for the removals, {data['pairs']} search pairs "
        f"per sub-task and digit; {p['searched']} nodes removed and searched): {p['wall_s']:.0f} s wall / "
        f"{p['cpu_s']:.0f} s CPU.",
        "",
        "| circuit nodes | total | purpose from the analysis | from the search | from a node study | unexplained | "
        "useful ones (with a purpose) |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, label in (("head", "heads"), ("mlp", "MLPs")):
        k = p["counts"][kind]
        study = k.get("study", 0) if "studies" in p else "not run"
        lines.append(f"| {label} | {k['nodes']} | {k['analysis']} | {k['search']} | {study} | "
                     f"{k['nodes'] - k['purposed']} | {k['useful']} ({k['useful_purposed']}) |")
    gained = p["by_search"]
    facts = [n for n, v in gained.items() if set(v) <= set(ATTENTION_FACTS)]  # attends the operator and the sign
    useful_new = sum(k["useful_purposed"] - k["analysis"] for k in p["counts"].values())
    useful_left = sum(k["useful"] - k["useful_purposed"] for k in p["counts"].values())
    text = f"The search gave a purpose to {len(gained)} nodes"
    text += (": " + ", ".join(f"{n} ({' '.join(v)})" for n, v in sorted(gained.items()))) if gained else ""
    if facts:
        text += (f"; {len(facts)} of them only the attention facts {' and '.join(ATTENTION_FACTS)} (the head attends "
                 "the operator and the sign token: where it looks, not what it computes)")
    text += (f". {useful_new} of them are useful nodes: {useful_left} useful heads and MLPs stay without a purpose "
             "when searched again with their tags inside the circuit.")
    lines += ["", text]
    if "studies" in p:
        st = p["studies"]
        found = ", ".join(f"{n} ({' '.join(v)})" for n, v in sorted(st["by_study"].items()))
        reasons: dict[str, int] = {}
        for e in st["errors"].values():
            reasons[e] = reasons.get(e, 0) + 1
        lines += ["", f"Node studies (`--studies`: `study_node` at analyze's STUDY_DEFAULTS) on the {st['heads']} heads "
                  f"the analysis and the search left unexplained: {st['with_role']} found a carry/borrow role and take "
                  f"the study's tags as their purpose" + (f" ({found})" if found else "")
                  + f"; {st['heads'] - st['with_role'] - st['failed']} were studied and found none; {st['failed']} "
                  "could not be studied" + (" (" + "; ".join(f"{k}: {v}" for k, v in reasons.items()) + ")"
                                             if reasons else "")
                  + f". The studies took {st['wall_s']:.0f} s wall in all."]
    if "study_sample" in data:
        st = data["study_sample"]
        found = ", ".join(f"{n} ({' '.join(v)})" for n, v in sorted(st["by_study"].items()))
        lines += ["", f"Node studies on a uniform sample of the heads without a purpose from the analysis in "
                  f"today's default circuit ({st['circuit_edges']:,} edges; `--study-sample {st['seed']}`, "
                  f"`study_node` at analyze's STUDY_DEFAULTS): {st['studied']} of its {st['heads']} such heads "
                  f"studied, {st['with_role']} found a carry/borrow role" + (f" ({found})" if found else "")
                  + f", {st['failed']} could not be studied; {st['wall_s']:.0f} s wall / {st['cpu_s']:.0f} s CPU "
                  f"({st['cpu_s'] / max(st['studied'], 1):.1f} CPU s a head) on the shared machine."]
    left = p["unexplained"]
    together = sum(v == "needed only together" for v in left.values())
    silent = sum(v == "sends no circuit edge" for v in left.values())
    failing = {n: v for n, v in left.items() if v not in ("needed only together", "sends no circuit edge")}
    lines += ["", f"Of the {len(left)} unexplained nodes, {together} are needed only together (removing one alone "
              f"from the circuit fails none of the judged questions), {silent} send no circuit edge, and "
              f"{len(failing)} fail questions when removed alone"
              + (" (the first " + str(LISTED) + " by node; all are in the JSON)" if len(failing) > LISTED else "")
              + (":" if failing else ".")]
    if failing:
        lines += ["", "| node | fails when removed alone from the circuit (failures / judged; digits) |", "|---|---|"]
        lines += [f"| {n} | {v} |" for n, v in list(failing.items())[:LISTED]]
    return "\n".join(lines)


def study_sample(model, circuit: EdgeCircuit, tagged: NodeList, out: Path, seed: int, result: dict,
                 keep: bool) -> None:
    """Node studies on the circuit's heads that have no purpose from the analysis (the heads `--studies` studies,
    before the search explains a few), in a shuffled order so that a run stopped early is a uniform sample; the
    tally is rewritten after each head."""
    import time

    import numpy as np

    from arithlens.analysis.circuits.purposes import circuit_units, study_heads

    heads = [n for n in circuit_units(circuit) if n.is_head and not (n in tagged and tagged.get(n).values(Major.ALGO))]
    order = [heads[i] for i in np.random.default_rng(seed).permutation(len(heads))]
    records: dict = {}
    t0, c0 = time.perf_counter(), time.process_time()
    for node in order:
        records[node.name] = study_heads(model, [node])[node]
        done = list(records.values())
        result["study_sample"] = {
            "seed": seed, "heads": len(heads), "studied": len(done), "with_role": sum(bool(r["roles"]) for r in done),
            "failed": sum(bool(r["error"]) for r in done), "wall_s": round(time.perf_counter() - t0, 1),
            "cpu_s": round(time.process_time() - c0, 1), "records": records}
        write_atomic(out / "study_sample.json", result)
        print(f"  study {len(done)}/{len(heads)} {node.name}: roles {records[node.name]['roles']} "
              f"{records[node.name]['error']} ({records[node.name]['seconds']:.1f} s)", flush=True)
        if keep:
            data = json.loads(RESULTS.read_text())
            data["study_sample"] = {k: v for k, v in result["study_sample"].items() if k != "records"} | {
                "by_study": {n: r["tags"] for n, r in records.items() if r["roles"]},
                "errors": {n: r["error"] for n, r in records.items() if r["error"]},
                "circuit_edges": circuit.n_edges}
            store(data)


def stored_circuit(spec) -> EdgeCircuit:
    """The default edge circuit as `edge_circuit.py --default` stored it (edges and held-out rates; no scores)."""
    d = json.loads(STORED_CIRCUIT.read_text())
    from arithlens.analysis.edges.graph import EdgeGraph

    n = EdgeGraph.build(spec, min_position=int(d["min_position"])).n_edges
    return EdgeCircuit.from_dict({**d, "exact": d["held_out"]["exact"], "n_held_out": d["held_out"]["per_qtype"],
                                  "seconds": d["discovery"]["wall_s"], "scores": [None] * n}, spec)


def store(data: dict) -> None:
    """Keep `data` as the stored results and render the doc's block from it."""
    write_atomic(RESULTS, data)
    render_doc(data)


def render_doc(data: dict) -> None:
    text = DOC.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"error: {DOC} has no {START} ... {END} block")
    block = f"{START}\n{render(data)}\n{END}"
    DOC.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model name or path (default: the default model)")
    parser.add_argument("--out", help="folder for purposes.json, edge_circuit.json and the graph")
    parser.add_argument("--force", action="store_true", help="replace the files of an existing --out folder")
    parser.add_argument("--quick", action="store_true", help="fewer questions everywhere (a smoke run)")
    parser.add_argument("--circuit", help="an edge circuit's JSON (EdgeCircuit.to_dict) instead of discovering one")
    parser.add_argument("--stored-circuit", action="store_true",
                        help=f"the default circuit stored in {STORED_CIRCUIT.relative_to(ROOT)} instead of discovering one")
    parser.add_argument("--studies", action="store_true",
                        help="node studies (analyze's STUDY_DEFAULTS) on the heads the analysis and search leave unexplained")
    parser.add_argument("--study-sample", type=int, metavar="SEED",
                        help="only node studies, on the circuit's heads without a purpose from the analysis, in an order "
                             "shuffled with SEED, written after each head to study_sample.json (a sample, if stopped)")
    parser.add_argument("--nodes", help="tagged nodes (NodeList.save) instead of running the useful sweep and search")
    parser.add_argument("--questions", type=int, default=100, help="fresh questions per qtype for the removals")
    parser.add_argument("--pairs", type=int, default=100, help="search pairs per sub-task and digit")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, the shared 2-core VM)")
    parser.add_argument("--store", action="store_true", help="keep the numbers in benchmarks/results and the doc")
    parser.add_argument("--render", nargs="?", const=str(RESULTS), metavar="PURPOSES_JSON",
                        help="only render the doc's block: from the stored file, or store a run's purposes.json first")
    args = parser.parse_args(argv)
    if args.render:
        data = json.loads(Path(args.render).read_text())
        return render_doc(data) if Path(args.render).resolve() == RESULTS else store(data)
    if not args.out:
        parser.error("--out is required (or --render)")
    out = Path(args.out)
    reused = {Path(p).resolve() for p in (args.circuit, args.nodes) if p}
    if out.exists() and any(p.resolve() not in reused for p in out.iterdir()) and not args.force:
        sys.exit(f"error: {out} exists and is not empty; pass --force to replace its files")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    questions, pairs = (40, 20) if args.quick else (args.questions, args.pairs)

    model = load_model(args.model)
    spec = model.spec
    result: dict = {"model": spec.name, "threads": args.threads, "questions": questions, "pairs": pairs,
                    "load": [round(os.getloadavg()[0], 1)]}

    if args.nodes:
        tagged = NodeList.load(args.nodes)
        result["analysis"] = {"from": args.nodes}
    else:
        with Clock() as c_an:  # the useful sweep and the searches, as `analyze` runs them (no studies)
            analysis = run_analysis(model, max_studies=0, faithfulness=0, pairs=pairs, edges=False,
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
    elif args.stored_circuit:
        circuit = stored_circuit(spec)
        result["circuit"] = {"from": str(STORED_CIRCUIT.relative_to(ROOT)),
                             **json.loads(STORED_CIRCUIT.read_text())["discovery"]}
        write_atomic(out / "edge_circuit.json", circuit.to_dict())
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

    if args.study_sample is not None:
        return study_sample(model, circuit, tagged, out, args.study_sample, result, args.store)
    with Clock() as c_p:
        found = circuit_purposes(model, circuit, tagged, questions=questions, pairs=pairs, studies=args.studies,
                                 progress=lambda stage, done, total: print(f"  {stage} {done}/{total}", flush=True))
    result["purposes"] = {**c_p.to_dict(), "counts": found.counts(), "searched": len(found.searched),
                          "unexplained": {p.node: p.needed_for for p in found.unexplained},
                          "by_search": {p.node: list(p.purpose) for p in found.nodes if p.source == "search"},
                          "needed_only_together": sum(p.needed_for == "needed only together"
                                                      for p in found.unexplained)}
    if args.studies:
        done = [found[n] for n in found.studied]
        result["purposes"]["studies"] = {
            "heads": len(done), "with_role": sum(bool(p.study.roles) for p in done),
            "failed": sum(bool(p.study.error) for p in done), "wall_s": round(sum(p.study.seconds for p in done), 1),
            "by_study": {p.node: list(p.purpose) for p in done if p.source == "study"},
            "errors": {p.node: p.study.error for p in done if p.study.error}}
        print(f"studies: {len(done)} heads, {result['purposes']['studies']['with_role']} with a carry/borrow role, "
              f"{result['purposes']['studies']['failed']} could not run; "
              f"{result['purposes']['studies']['wall_s']:.0f} s wall", flush=True)
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
    result["load"].append(round(os.getloadavg()[0], 1))
    write_atomic(out / "purposes.json", result)
    if args.store:
        store(result)
    print(f"wrote {out / 'purposes.json'}, {out / 'purposes_result.json'} and the graph ({c_fig.wall:.1f} s)")


if __name__ == "__main__":
    main()
