"""`arithlens search`: run the algorithm sub-task searches on a model's useful nodes; write the algorithm JSON,
the search record with every rate, the purpose maps, and check the default algorithm claims."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from arithlens.commands._common import (Device, Progress, count_option, device_option, json_option,
                                        model_option, quiet_option, seed_option, sweep_threads_option, thread_limit)
from arithlens.errors import ArithLensError
from arithlens.validate import check_int


def _useful_nodes(net, out: Path, nodes_path: Optional[Path], quiet: bool, stage: Path):
    """The behaviour node list: --nodes, else `<model>_behavior.json` in --out, else a fresh useful sweep
    (saved into the stage, to land in --out with the rest)."""
    from arithlens.api import find_useful, load_node_list

    if nodes_path is not None:
        if not nodes_path.is_file():
            raise ArithLensError(f"--nodes '{nodes_path}' is not a file")
        return load_node_list(nodes_path), str(nodes_path)
    found = out / f"{net.spec.base_name}_behavior.json"
    if found.is_file():
        return load_node_list(found), str(found)

    if not quiet:
        typer.echo(f"no {found.name} in {out}: running the useful-node sweep first", err=True)
    result = find_useful(net)
    result.nodes.save(stage / found.name)
    return result.nodes, str(found)


def _draw_maps(nodes, spec, out: Path) -> tuple[list[Path], str | None]:
    """MathsPurposePerNode (AlgorithmPurpose), MathsPurposeAllNodes and the Quanta At tables."""
    try:
        from arithlens.report.quanta_maps import catalogue, draw_map, draw_quanta_at
    except ImportError:
        return [], "maps skipped: arithlens.report.quanta_maps is not available"
    layout, prefix = spec.layout, spec.base_name
    maps = catalogue(layout)
    files = []
    for key in ("MathsPurposePerNode", "MathsPurposeAllNodes"):
        files += draw_map(nodes, maps[key], layout, out, prefix)
    for position in range(layout.sign_pos + 1, spec.n_ctx - 1):
        files += draw_quanta_at(nodes, spec, position, out, prefix)
    return files, None


def register(app: typer.Typer) -> None:
    @app.command()
    def search(
        out: Path = typer.Option(..., "--out", help="Output directory (algorithm JSON, search record, maps)."),
        model: Optional[str] = model_option(),
        pairs: int = count_option(100, "--pairs", "Question pairs per sub-task and digit."),
        seed: int = seed_option(0, "Seed of the question pairs; the same seed gives the same tags."),
        nodes: Optional[Path] = typer.Option(None, "--nodes", help="Behaviour JSON from `arithlens useful` (default: the one in --out, else a fresh sweep)."),
        min_attn: int = typer.Option(10, "--min-attn",
                                     callback=lambda v: check_int("--min-attn", v, low=0, high=100),
                                     help="Attention percent (0 to 100) that counts as attending a digit."),
        min_lower: float = typer.Option(0.5, "--min-lower", help="A rate tags when its Wilson 95% lower bound reaches this."),
        weak: str = typer.Option("always", "--weak", help="Weak tags (A1.SC.A2): always, fallback (only when no strong tag) or never."),
        pair_search: bool = typer.Option(True, "--pairs-of-heads/--no-pairs-of-heads", help="Also patch groups of heads at one position together (a group tags its members only when each is needed)."),
        group_size: int = typer.Option(3, "--group-size", help="Largest group of heads patched together (2 or more)."),
        partners: bool = typer.Option(True, "--partners/--no-partners", help="Also pair a head that passed nothing with each deeper head at its position that is not a useful node."),
        threads: Optional[int] = sweep_threads_option(),
        device: Device = device_option(),
        as_json: bool = json_option(),
        quiet: bool = quiet_option(),
    ) -> None:
        """Give useful nodes an algorithmic purpose by activation patching, each tag backed by a success rate.

        Writes `<model>_algorithm.json` (Algo tags, the predecessor's `_maths.json` schema), `<model>_search.json`
        (every rate with its Wilson interval, coverage, claims) and the purpose maps into --out.
        Examples: `arithlens search --out out/`; `arithlens search --model runs/mix --out out/ --pairs 200 --json`.
        """
        from arithlens.api import load_checkpoint, run_search, search_options
        from arithlens.io import OutputTarget, write_atomic
        from arithlens.report.node_lists import write_algorithm
        from arithlens.validate import check_command_memory

        options = search_options(weak=weak, min_lower=min_lower, group_size=group_size, min_attn=min_attn,
                                 pair_search=pair_search, partners=partners)
        target = OutputTarget(out, "dir", "--out")  # checked before the work
        net = load_checkpoint(model, device).model
        spec = net.spec
        check_command_memory("search", spec, {"pairs": pairs, "nodes": nodes}, {"pairs": "the patching pairs"})
        with target, thread_limit(threads):
            useful, source = _useful_nodes(net, out, nodes, quiet or as_json, target.stage)
            with Progress(quiet or as_json) as bar:
                result, claims = run_search(
                    net, useful, pairs=pairs, seed=seed, **options,
                    progress=None if bar.quiet else (lambda d, t, label: bar("search", d, t, label)))
            algo_path = write_algorithm(result.nodes, target.stage / f"{spec.base_name}_algorithm.json")
            record = {**result.to_json(), "nodes_from": source, "claims": [c.to_dict() for c in claims]}
            record_path = target.stage / f"{spec.base_name}_search.json"
            write_atomic(record_path, (json.dumps(record, indent=1) + "\n").encode())
            maps, note = _draw_maps(result.nodes, spec, target.stage)
            algo_path, record_path, maps = target.final(algo_path), target.final(record_path), [target.final(m) for m in maps]
            target.commit()
        files = [algo_path, record_path, *maps]
        if as_json:
            summary = {"model": spec.name, "coverage": record["coverage"], "tags": record["tags"],
                       "claims": record["claims"], "files": [str(f) for f in files]}
            if note:
                summary["note"] = note
            sys.stdout.write(json.dumps(summary) + "\n")
            return
        typer.echo(f"{spec.name}: {len(result.trials)} patch tests over {len(result.cells)} sub-task digits, "
                   f"{pairs} pairs each (seed {seed}); {result.rule.describe()}")
        typer.echo(result.coverage.line())
        passed = sum(c.passed for c in claims)
        typer.echo(f"claims: {passed} of {len(claims)} pass")
        for c in claims:
            typer.echo(f"  {c.line()}")
        typer.echo(f"wrote {algo_path}, {record_path}" + (f" and {len(maps)} maps" if maps else ""))
        if note:
            typer.echo(note)
