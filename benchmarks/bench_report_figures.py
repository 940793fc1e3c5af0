"""CPU seconds to draw and write every figure of an `arithlens analyze` report (the node-study figures, the quanta
maps and tables, the edge-circuit graph), per figure type, by the report code of an earlier commit ("before") and
of this tree ("after"), in one run, alternating, best of `--repeats`; then whether the PNGs have the same pixels,
and their sizes.

    python benchmarks/bench_report_figures.py DIR [--before main] [--repeats 3] [--studies N]

DIR is an `arithlens analyze --out DIR` folder: its `<node>_study.json` files give the node-study figures; its
`<model>_behavior.json`, `_algorithm.json`, `_edges.json` and `analysis.json`, where present, the maps, tables
and graph. The "before" modules (`src/arithlens/report/{figures,quanta_maps,circuit_graph,node_figures}.py` at
`--before`, read with `git show`) are imported from a temporary package. As in the report's figure workers (forked
with the parent's objects frozen), the inputs are frozen out of the garbage collector before timing. Process CPU
time, not wall time, is compared, so other jobs on the machine move both columns alike.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

MODULES = ("figures", "quanta_maps", "circuit_graph", "node_figures")  # in import order


def load_before(ref: str, root: Path) -> dict:
    """The report modules at git `ref`, imported as package `before_report` from `root`."""
    package = root / "before_report"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in MODULES:
        text = subprocess.run(["git", "show", f"{ref}:src/arithlens/report/{name}.py"], capture_output=True,
                              text=True, check=True).stdout
        for other in MODULES:
            text = text.replace(f"arithlens.report.{other} import", f"before_report.{other} import")
        (package / f"{name}.py").write_text(text)
    sys.path.insert(0, str(root))
    return {name: importlib.import_module(f"before_report.{name}") for name in MODULES}


def load_after() -> dict:
    return {name: importlib.import_module(f"arithlens.report.{name}") for name in MODULES}


def map_inputs(folder: Path):
    """(nodes, spec, position failures, graph data or None), or None when the folder lacks the node lists."""
    from arithlens.analysis.edges.discovery import EdgeCircuit
    from arithlens.analysis.nodes import Major, NodeList
    from arithlens.model.spec import ModelSpec
    from arithlens.report.circuit_graph import graph_data

    behaviour = sorted(folder.glob("*_behavior.json"))
    if not behaviour or not (folder / "analysis.json").exists():
        return None
    name = behaviour[0].name.removesuffix("_behavior.json")
    spec = ModelSpec.parse(name)
    nodes = NodeList.load(behaviour[0])
    if (folder / f"{name}_algorithm.json").exists():  # the Algo tags, as the analysis holds them
        for un in NodeList.load(folder / f"{name}_algorithm.json"):
            for tag in un.tags:
                nodes.ensure(un.node).add(tag)
    nodes = list(nodes)
    failures = json.loads((folder / "analysis.json").read_text())["position_failures"]
    graph = None
    if (folder / f"{name}_edges.json").exists():
        circuit = EdgeCircuit.from_dict(json.loads((folder / f"{name}_edges.json").read_text()), spec)
        purposes = {un.name: un.values(Major.ALGO) for un in nodes if un.values(Major.ALGO)}
        title = (f"{spec.name}: {circuit.n_edges:,} of {circuit.graph.n_edges:,} edges ({circuit.method}, "
                 f"{circuit.ablation} ablation)")
        graph = graph_data(circuit, purposes, spec.layout.meanings, title)
    return nodes, spec, failures, graph


def jobs(mods: dict, studies: list[dict], maps, out: Path) -> list[tuple[str, object, tuple]]:
    """(figure type, function, args) for every figure, as `ReportDrawer` queues them (PNG only)."""
    out_jobs = []
    for data in studies:
        for name, (fn, args) in mods["node_figures"].node_figure_jobs(data, out, ("png",)).items():
            out_jobs.append((name, fn, args))
    if maps is not None:
        nodes, spec, failures, graph = maps
        for fn, args in mods["quanta_maps"].map_jobs(nodes, spec, out, spec.base_name, ("png",)):
            out_jobs.append(("table" if fn.__name__ == "draw_quanta_at" else "map", fn, args))
        out_jobs.append(("table", mods["quanta_maps"].draw_position_failures,
                         (failures, spec, out, spec.base_name, ("png",))))
        if graph is not None:
            out_jobs.append(("graph", mods["circuit_graph"].draw_circuit_graph,
                             (graph, out, spec.base_name + mods["circuit_graph"].GRAPH_STEM, ("png",))))
    return out_jobs


def run(job_list) -> dict[str, float]:
    seconds: dict[str, float] = {}
    for kind, fn, args in job_list:
        t0 = time.process_time()
        fn(*args)
        seconds[kind] = seconds.get(kind, 0.0) + time.process_time() - t0
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--before", default="main", help="git commit of the 'before' code (default main)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--studies", type=int, default=None, help="only the first N studies (default: all)")
    args = parser.parse_args()
    files = sorted(args.folder.glob("*_study.json"))[: args.studies]
    if not files:
        raise SystemExit(f"error: no *_study.json in {args.folder}")
    studies = [json.loads(f.read_text()) for f in files]
    maps = map_inputs(args.folder)
    with tempfile.TemporaryDirectory(prefix="bench_report_figures.") as tmp:
        root = Path(tmp)
        mods = {"before": load_before(args.before, root), "after": load_after()}
        outs = {label: root / label for label in mods}
        job_lists = {label: jobs(mods[label], studies, maps, outs[label]) for label in mods}
        run(job_lists["after"][:8])  # warm both: fonts, caches, imports
        run(job_lists["before"][:8])
        gc.collect()
        gc.freeze()
        best: dict[str, dict[str, float]] = {label: {} for label in mods}
        for _ in range(args.repeats):
            for label in mods:
                for kind, s in run(job_lists[label]).items():
                    best[label][kind] = min(best[label].get(kind, float("inf")), s)
        counts: dict[str, int] = {}
        for kind, _, _ in job_lists["after"]:
            counts[kind] = counts.get(kind, 0) + 1
        print(f"{len(studies)} studies{' with maps' if maps else ''} from {args.folder}; CPU seconds, best of "
              f"{args.repeats}; before = {args.before}")
        print(f"{'figure':<11}{'files':>6}{'before':>9}{'after':>9}{'ratio':>8}{'per file':>18}")
        for kind in [*counts, "all"]:
            b = sum(best["before"].values()) if kind == "all" else best["before"][kind]
            a = sum(best["after"].values()) if kind == "all" else best["after"][kind]
            n = sum(counts.values()) if kind == "all" else counts[kind]
            print(f"{kind:<11}{n:>6}{b:>9.2f}{a:>9.2f}{b / a:>7.2f}x{1000 * b / n:>8.0f} -> {1000 * a / n:.0f} ms")
        same, sizes = 0, {label: 0 for label in mods}
        pngs = sorted(p.name for p in outs["before"].glob("*.png"))
        for name in pngs:
            pixels = [np.asarray(Image.open(outs[label] / name)) for label in mods]
            same += pixels[0].shape == pixels[1].shape and bool((pixels[0] == pixels[1]).all())
            for label in mods:
                sizes[label] += (outs[label] / name).stat().st_size
        print(f"PNGs with the same pixels: {same} of {len(pngs)}; bytes before {sizes['before']:,}, after "
              f"{sizes['after']:,} ({sizes['after'] / sizes['before'] - 1:+.1%})")


if __name__ == "__main__":
    main()
