"""`arithlens analyze`: the whole analysis of a model (useful nodes, searches, node studies, maps) written as JSON
files and one offline HTML report, `report.html`."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from arithlens.commands._common import (Device, Progress, count_option, device_option, json_option,
                                        model_option, quiet_option, seed_option, sweep_threads_option, thread_limit)


def register(app: typer.Typer) -> None:
    @app.command()
    def analyze(
        out: Path = typer.Option(..., "--out", help="Output directory (report.html, JSON files, maps, figures)."),
        model: Optional[str] = model_option(),
        questions: int = count_option(256, "--questions", "Random questions of the useful-node sweep, before the curated set is added.", low=0),
        pairs: int = count_option(100, "--pairs", "Question pairs per sub-task and digit in the searches."),
        seed: Optional[int] = seed_option(None, "One seed for every stage (default: each stage's own: useful 345621, search and studies 0)."),
        max_studies: Optional[int] = count_option(None, "--max-studies", "Study at most this many heads (the layer-0 heads computing A2 first).", low=0),
        search: bool = typer.Option(True, "--search/--no-search", help="Run the algorithm sub-task searches."),
        faithfulness: int = count_option(2000, "--faithfulness", "Fresh questions per qtype to score the useful "
                                         "set alone on (every other node mean-ablated); 0 skips it.", low=0),
        circuit: bool = typer.Option(False, "--circuit", help="Also find a circuit (as `arithlens circuit`; "
                                     "minutes to tens of minutes) and write circuit.json."),
        edges: bool = typer.Option(True, "--edges/--no-edges", help="Find the edge circuit (as `arithlens edges`) "
                                   "and write <model>_edges.json."),
        edge_card: int = count_option(100, "--edge-card", "Fresh questions per qtype for the edge circuit's "
                                      "ablation card (mean, plain-mean, resample, zero); 0 skips it.", low=0),
        svg: bool = typer.Option(False, "--svg", help="Also write every map and figure as SVG."),
        threads: Optional[int] = sweep_threads_option(),
        device: Device = device_option(),
        as_json: bool = json_option("the summary"),
        quiet: bool = quiet_option(),
    ) -> None:
        """Analyse a model end to end and write one offline HTML report, DIR/report.html.

        Useful nodes and tags, the sub-task searches, a node study of every head tagged carry/borrow for more
        than one operation and of every layer-0 head where A2 is computed (P18 for 6 digits), every quanta map.
        Also writes the behaviour, algorithm, search, per-node study, faithfulness (the useful set alone,
        every other node mean-ablated), circuit (with --circuit), edge circuit (`<model>_edges.json`, unless
        --no-edges) and analysis.json files; nothing on failure.
        Examples: `arithlens analyze --out out/`; `arithlens analyze --model runs/mix --out out/ --json`.
        """
        from arithlens.api import freeze_long_lived_objects, load_checkpoint, resolve_model, run_analysis
        from arithlens.io import OutputTarget
        from arithlens.report.analysis_files import write_analysis
        from arithlens.report.figures import MAX_WORKERS, figure_workers
        from arithlens.report.html import ReportDrawer
        from arithlens.validate import check_command_memory

        start = time.perf_counter()
        options = {"questions": questions, "pairs": pairs, "seed": seed, "max_studies": max_studies, "search": search,
                   "faithfulness": faithfulness, "circuit": circuit, "edges": edges, "edge_card": edge_card}
        target = OutputTarget(out, "dir", "--out")  # checked before the work
        path = resolve_model(model)
        ck = load_checkpoint(str(path), device)
        freeze_long_lived_objects()  # the modules and the model: never scanned by the collector again
        # the faithfulness check runs a chunk of questions at a time: only a chunk that cannot fit counts
        check_command_memory("analyze", ck.spec, {"questions": questions, "pairs": pairs, "faithfulness": faithfulness,
                                                  "circuit": circuit, "edges": edges, "max_studies": max_studies,
                                                  "figure_workers": figure_workers(MAX_WORKERS)},
                             {"questions": "the useful-node sweep", "pairs": "the patching pairs"})
        load_seconds = time.perf_counter() - start
        formats = ("png", "svg") if svg else ("png",)
        with target, thread_limit(threads), Progress(quiet or as_json) as bar:
            progress = None if bar.quiet else bar
            # figures are drawn into the staging folder while the studies run when a core is left over beside
            # the analysis's torch threads; else at the end, one worker process per core
            import torch

            spare = figure_workers(MAX_WORKERS) > torch.get_num_threads()
            with ReportDrawer(target.stage, formats, overlap=spare) as drawer:
                analysis = run_analysis(ck.model, progress=progress, drawer=drawer, **options)
                analysis.timings = {"model": load_seconds, **analysis.timings}
                files, timings = write_analysis(analysis, target, card=ck.extra, source=str(path), formats=formats,
                                        progress=progress, start=start, drawer=drawer)
        summary = json.loads((out / "analysis.json").read_text())
        if as_json:
            sys.stdout.write(json.dumps(summary) + "\n")
        else:
            _print_summary(analysis, out, files, timings)


def _print_summary(analysis, out: Path, files: list[Path], timings: dict[str, float]) -> None:
    from arithlens.report.founding import founding_sentence

    u, nodes, echo = analysis.useful, analysis.nodes, typer.echo
    mlps = [n for n in nodes.mlps if not n.node.is_neuron]
    answer = founding_sentence(analysis)
    if answer:
        echo(answer)
    echo(f"{analysis.spec.name}: {len(u.questions)} questions ({len(u.dropped)} dropped), "
         f"{len(u.useful_positions)} useful positions, {len(nodes.heads)} useful heads, {len(mlps)} MLP layers")
    if analysis.search is not None:
        passed = sum(c.passed for c in analysis.claims)
        echo(f"search: {analysis.search.coverage.line()}; claims {passed} of {len(analysis.claims)} pass")
    if analysis.search_note:
        echo(analysis.search_note)
    if analysis.faithfulness is not None:
        echo(f"faithfulness, {analysis.faithfulness.summary()}")
    elif analysis.faithfulness_note:
        echo(analysis.faithfulness_note)
    if analysis.circuit is not None:
        echo(f"circuit: {len(analysis.circuit.nodes)} nodes, {analysis.circuit.faithfulness('circuit').summary()}")
    elif analysis.circuit_note:
        echo(analysis.circuit_note)
    echo(f"node studies ({len(analysis.studies)}):")
    for e in analysis.studies:
        text = f"failed: {e.error}" if e.data is None else e.data["verdict"]["text"].split(";")[0]
        echo(f"  {e.name:<9} {text}")
    if analysis.skipped_studies:
        echo(f"  not studied (--max-studies): {', '.join(t.node.name for t in analysis.skipped_studies)}")
    edge = analysis.edge_circuit
    if edge is not None:
        exact = ", ".join(f"{q} {100 * r:.2f}%" for q, r in edge.exact.items())
        echo(f"edge circuit: {edge.n_edges:,} of {edge.graph.n_edges:,} edges ({len(edge.nodes)} nodes), {exact} on "
             f"{edge.n_held_out:,} held-out questions per qtype ({edge.method}, {edge.ablation} ablation)")
    elif analysis.edge_circuit_note:
        echo(analysis.edge_circuit_note)
    if analysis.edge_card is not None:
        echo(f"edge circuit's ablation card: {analysis.edge_card.summary()}")
    elif edge is not None and analysis.edge_card_note:
        echo(analysis.edge_card_note)
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k not in ("total", "cpu"))
    load = os.getloadavg()[0]
    echo(f"time: {timings['total']:.1f} s (CPU {timings['cpu']:.1f} s, load average {load:.1f}): {stages}")
    echo(f"report: {out / 'report.html'} ({len(files) - 1} more files in {out})")
