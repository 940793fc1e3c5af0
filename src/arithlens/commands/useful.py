"""`arithlens useful`: find and tag a model's useful positions and nodes; write the behaviour JSON and maps."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from arithlens.commands._common import (Device, Progress, count_option, device_option, json_option,
                                        model_option, quiet_option, seed_option, sweep_threads_option, thread_limit)


def _draw_maps(result, out: Path) -> tuple[list[Path], str | None]:
    """The quanta maps and the position-failure table; (files, note)."""
    try:
        from arithlens.report.quanta_maps import draw_all_maps, draw_position_failures
    except ImportError:  # guards the call while report/quanta_maps.py (issue 5 item 6) is not installed
        return [], "maps skipped: arithlens.report.quanta_maps is not available"
    prefix = result.spec.base_name
    files = list(draw_all_maps(result.nodes, result.spec, out, prefix))
    files += list(draw_position_failures(result.position_failures, result.spec, out, prefix))
    return files, None


def register(app: typer.Typer) -> None:
    @app.command()
    def useful(
        out: Path = typer.Option(..., "--out", help="Output directory (behaviour JSON, maps)."),
        model: Optional[str] = model_option(),
        questions: int = count_option(256, "--questions", "Random questions, before the curated set is added.", low=0),
        seed: int = seed_option(345621, "Seed of the random questions."),
        neurons: bool = typer.Option(False, "--neurons", help="Also each neuron of useful MLP layers (slow)."),
        power: Optional[int] = count_option(
            None, "--power", low=0, help="Fresh questions per qtype to try apparently unused positions and nodes on "
            "(default 598: a node failing >= 0.5% of one qtype is found with 95% probability; 0 skips it)."),
        reference_compat: bool = typer.Option(False, "--reference-compat", help="Layer-0 means for all layers (predecessor)."),
        threads: Optional[int] = sweep_threads_option(),
        device: Device = device_option(),
        as_json: bool = json_option(),
        quiet: bool = quiet_option(),
    ) -> None:
        """Find useful positions and nodes by mean ablation and tag them.

        Writes `<model>_behavior.json` (the predecessor's schema) and the quanta maps into --out.
        Examples: `arithlens useful --out out/`; `arithlens useful --model runs/mix --out out/ --json`.
        """
        from arithlens.api import find_useful, load_checkpoint
        from arithlens.io import OutputTarget
        from arithlens.validate import check_command_memory

        target = OutputTarget(out, "dir", "--out")  # checked before the work
        net = load_checkpoint(model, device).model
        check_command_memory("useful", net.spec, {"questions": questions, "power": power},
                             {"questions": "the useful-node sweep", "power": "the power stage"})
        with target, thread_limit(threads):
            with Progress(quiet or as_json) as bar:
                result = find_useful(net, questions=questions, seed=seed, neurons=neurons,
                                     reference_compat=reference_compat, power=power,
                                     progress=None if bar.quiet else bar)
            staged = [result.nodes.save(target.stage / f"{result.spec.base_name}_behavior.json")]
            maps, note = _draw_maps(result, target.stage)
            path, maps = target.final(staged[0]), [target.final(m) for m in maps]
            target.commit()
        if as_json:
            _print_json(result, [path, *maps], note)
        else:
            _print_summary(result, path, maps, note)


def _print_json(result, files: list[Path], note: str | None) -> None:
    data = {
        "model": result.spec.name,
        "questions": len(result.questions),
        "dropped": result.dropped,
        "clean_loss": result.clean_loss,
        "reference_compat": result.reference_compat,
        "useful_positions": result.useful_positions,
        "position_failures": result.position_failures,
        "heads": len(result.nodes.heads),
        "mlps": len([n for n in result.nodes.mlps if not n.node.is_neuron]),
        "neurons": len([n for n in result.nodes.mlps if n.node.is_neuron]),
        "nodes": [{"name": n.name, "tags": [str(t) for t in n.tags]} for n in result.nodes],
        "seconds": round(result.seconds, 3),
        "files": [str(f) for f in files],
        "power_questions": result.power_questions,
        "power_found": list(result.power_found),
        "failures": {name: {qt: list(kn) for qt, kn in per.items()} for name, per in result.failures.items()},
        "verdicts": {name: result.verdict(name) for name in result.failures},
    }
    if note:
        data["note"] = note
    sys.stdout.write(json.dumps(data) + "\n")


def _print_summary(result, path: Path, maps: list[Path], note: str | None) -> None:
    layout = result.spec.layout
    mlps = [n for n in result.nodes.mlps if not n.node.is_neuron]
    neurons = len(result.nodes.mlps) - len(mlps)
    echo = typer.echo
    echo(f"{result.spec.name}: {len(result.questions)} questions"
         f" ({len(result.dropped)} the model gets wrong dropped), clean loss {result.clean_loss:.2e}")
    for line in result.dropped[:5]:
        echo(f"  dropped {line}")
    positions = " ".join(f"P{p}({layout.meaning(p)})" for p in result.useful_positions)
    echo(f"useful positions ({len(result.useful_positions)}): {positions}")
    echo(f"useful nodes: {len(result.nodes.heads)} heads, {len(mlps)} MLP layers"
         + (f", {neurons} neurons" if neurons else "")
         + (" (reference-compat means)" if result.reference_compat else "") + f" in {result.seconds:.1f} s")
    if result.power_questions:
        echo(f"power stage: {result.power_questions} fresh questions per qtype"
             + (f" found {', '.join(result.power_found)}" if result.power_found else " found nothing more"))
        unused = [n for n in result.failures if n not in result.nodes]
        if unused:
            echo(f"unused nodes ({len(unused)}), the loosest bound: "
                 + max((result.verdict(n) for n in unused), key=lambda v: float(v.split("< ")[1].split("%")[0])))
    echo(f"wrote {path}" + (f" and {len(maps)} maps" if maps else ""))
    if note:
        echo(note)
