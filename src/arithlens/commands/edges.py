"""`arithlens edges`: an edge circuit between positioned nodes, written as our JSON and in the EAP-IG / MIB layout."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from arithlens.commands._common import (
    Device, Progress, device_option, json_option, model_option, quiet_option, seed_option, sweep_threads_option,
    thread_limit,
)


def register(app: typer.Typer) -> None:
    @app.command()
    def edges(
        out: Path = typer.Option(..., "--out", help="Output directory (`<model>_edges.json`, `<model>_edges_mib.json`)."),
        model: Optional[str] = model_option(),
        method: str = typer.Option("eap", "--method", help="How edges are ranked: eap, eap_ig or exact."),
        ablation: str = typer.Option("mean", "--ablation", help="What an ablated edge carries: mean or resample."),
        target: float = typer.Option(0.99, "--target", help="Exact accuracy asked per qtype on held-out questions."),
        min_position: Optional[int] = typer.Option(None, "--min-position",
                                                   help="First receiver position (default: the first answer position)."),
        held_out: int = typer.Option(1000, "--held-out", help="Held-out questions per qtype for the repair and the "
                                     "check (the circuit's 95% Wilson lower bound there must reach --target)."),
        repair: Optional[Path] = typer.Option(None, "--repair", help="An <model>_edges.json (from `arithlens edges` "
                                              "or `analyze`) to repair under --ablation instead of searching: edges "
                                              "are added until it holds under --ablation and under its own."),
        seed: int = seed_option(140_014, "Seed of every question set and the reference batch."),
        threads: Optional[int] = sweep_threads_option(),
        device: Device = device_option(),
        as_json: bool = json_option(),
        quiet: bool = quiet_option(),
    ) -> None:
        """Find an edge circuit: edges ranked by attribution (EAP-IG, EAP) or exact patching, the top ones kept,
        then repaired and pruned until the circuit is >= --target exact per qtype with every other edge ablated.

        Writes `<model>_edges.json` (edges, nodes, scores, exact rate per qtype) and `<model>_edges_mib.json`
        (the EAP-IG / MIB graph layout, positions summed, with our positioned edges under `arithlens`).
        With --repair FILE the circuit in FILE is kept and grown under --ablation until it holds under both.
        Examples: `arithlens edges --out out/`;
        `arithlens edges --repair out/<model>_edges.json --ablation resample --method exact --out robust/`.
        """
        from arithlens.api import edge_circuit, edge_circuit_mib, load_checkpoint, load_edge_circuit
        from arithlens.io import OutputTarget, write_atomic
        from arithlens.report.analysis_files import edges_file_record
        from arithlens.validate import check_choice

        check_choice("--method", method, ("eap_ig", "eap", "exact"))
        check_choice("--ablation", ablation, ("mean", "resample"))
        out_target = OutputTarget(out, "dir", "--out")  # checked before the work
        net = load_checkpoint(model, device).model
        start = None if repair is None else load_edge_circuit(repair, net)  # checked before the work
        with out_target, thread_limit(threads):
            with Progress(quiet or as_json) as bar:
                say = None if bar.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
                found = edge_circuit(net, method=method, ablation=ablation, target=target,
                                     min_position=min_position, held_out=held_out, seed=seed, start=start,
                                     progress=say)
            record = edges_file_record(found, net.spec.name, target)
            paths = []
            for name, data in ((f"{net.spec.base_name}_edges.json", record),
                               (f"{net.spec.base_name}_edges_mib.json", edge_circuit_mib(found, net))):
                staged = out_target.stage / name
                write_atomic(staged, (json.dumps(data, indent=1, allow_nan=False) + "\n").encode())
                paths.append(out_target.final(staged))
            out_target.commit()
        if as_json:
            print(json.dumps({k: v for k, v in record.items() if k != "scores"}, indent=1))
            return
        exact = ", ".join(f"{q} {100 * r:.2f}%" for q, r in found.exact.items())
        how = "" if start is None else f"repaired from {start.n_edges:,} ({start.ablation}), "
        print(f"{net.spec.name}: {found.n_edges:,} of {found.graph.n_edges:,} edges ({len(found.nodes)} nodes), "
              f"{how}ranked by {method}, {ablation} ablation of the rest: exact {exact} "
              f"on {found.n_held_out:,} held-out questions per qtype; {found.seconds:.0f} s")
        if min(found.exact.values()) < target:
            print(f"below --target {100 * target:g}%: even this circuit does not reach it on the held-out questions")
        for p in paths:
            print(f"wrote {p}")
