"""`arithlens useful`: find and tag a model's useful positions and nodes; write the behaviour JSON and maps."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from arithlens.commands._options import json_option, model_option, quiet_option, sweep_threads_option
from arithlens.errors import ArithLensError


def _load_model(name_or_path: Optional[str]):
    """The model a `--model` argument names: through the zoo (a shipped name, an alias, a path, or the default
    when None) when it is installed, else a checkpoint path."""
    from arithlens.model import load_checkpoint

    try:
        from arithlens.model.zoo import resolve_model
    except ImportError:  # the zoo (written in parallel) is not installed: checkpoint paths only
        if name_or_path is None:
            raise ArithLensError("no default model is available here: give --model PATH (a checkpoint)") from None
        return load_checkpoint(name_or_path).model
    return load_checkpoint(resolve_model(name_or_path)).model


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
        questions: int = typer.Option(256, "--questions", help="Random questions, before the curated set is added."),
        seed: int = typer.Option(345621, "--seed", help="Seed of the random questions."),
        neurons: bool = typer.Option(False, "--neurons", help="Also each neuron of useful MLP layers (slow)."),
        power: Optional[int] = typer.Option(
            None, "--power", help="Fresh questions per qtype to try apparently unused positions and nodes on "
            "(default 598: a node failing >= 0.5% of one qtype is found with 95% probability; 0 skips it)."),
        reference_compat: bool = typer.Option(False, "--reference-compat", help="Layer-0 means for all layers (predecessor)."),
        threads: Optional[int] = sweep_threads_option(),
        as_json: bool = json_option(),
        quiet: bool = quiet_option(),
    ) -> None:
        """Find useful positions and nodes by mean ablation and tag them.

        Writes `<model>_behavior.json` (the predecessor's schema) and the quanta maps into --out.
        Examples: `arithlens useful --out out/`; `arithlens useful --model runs/mix --out out/ --json`.
        """
        import torch

        from arithlens.analysis.useful import find_useful, varied_questions

        if threads:
            torch.set_num_threads(threads)
        net = _load_model(model)
        net.eval()
        batch = varied_questions(net.spec, count=questions, seed=seed)
        progress, finish = _progress(quiet or as_json)
        try:
            result = find_useful(net, batch, neurons=neurons, reference_compat=reference_compat, power=power,
                                 progress=progress)
        finally:
            finish()
        path = result.nodes.save(out / f"{result.spec.base_name}_behavior.json")
        maps, note = _draw_maps(result, out)
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


def _progress(quiet: bool):
    """A rich progress bar on stderr, one task per stage."""
    if quiet:
        return None, lambda: None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description:9s}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), refresh_per_second=4)
    tasks: dict[str, int] = {}
    bar.start()

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done)

    return update, bar.stop
