"""`arithlens sweep`: train and analyse one model per seed of a recipe, on local processes or a Dask cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from arithlens.commands._common import Device, json_option, quiet_option, read_json_config
from arithlens.errors import ArithLensError


def register(app: typer.Typer) -> None:
    @app.command()
    def sweep(
        spec: str = typer.Option(..., "--spec", help="Model family without the seed, e.g. mix_d6_l3_h4_t10K."),
        seeds: str = typer.Option(..., "--seeds", help="FIRST..LAST (inclusive) or a comma-separated list."),
        out: Path = typer.Option(..., "--out", help="Sweep directory: one folder per model, sweep.json."),
        jobs: int = typer.Option(1, "--jobs", help="Local worker processes (each trains one model at a time)."),
        scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Run on this Dask cluster instead, "
                                                "tcp://HOST:PORT (needs the 'distributed' extra)."),
        config: Optional[Path] = typer.Option(None, "--config", help="JSON: recipe fields, a 'spec' dict of size "
                                              "overrides and an 'analysis' dict of analysis options."),
        steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: from the name)."),
        threads: int = typer.Option(1, "--threads", help="Torch threads per model (fixed, so results do not "
                                    "depend on the worker)."),
        report: bool = typer.Option(False, "--report", help="Also draw each model's maps and report.html."),
        device: Device = typer.Option(Device.cpu, "--device", help="Where the models train and are evaluated: cpu, "
                                      "cuda or auto (CUDA and CPU give one seed different weights). Analyses "
                                      "run on the CPU."),
        evaluate: bool = typer.Option(False, "--eval", help="Run the acceptance suite on each trained model "
                                      "(evaluation.json; 1M uniform questions per type unless --eval-questions)."),
        eval_questions: int = typer.Option(1_000_000, "--eval-questions", help="Uniform questions per question "
                                           "type for --eval."),
        circuit: bool = typer.Option(False, "--circuit", help="Also find each model's circuit (slow: tens of "
                                     "minutes a shipped model); circuit.json beside analysis.json."),
        as_json: bool = json_option("the sweep summary"),
        quiet: bool = quiet_option(),
    ) -> None:
        """Train (resumably) and analyse one model per seed; a stopped sweep continues where it stopped.

        The recipe is the shipped model's of the same family (sizes and train_config.json) unless --config
        says otherwise. Each model's files appear in `DIR/<model name>/` in one rename once all are written;
        finished models are skipped. Examples: `arithlens sweep --spec mix_d6_l3_h4_t10K --seeds 372001..372010
        --out runs/sweep --jobs 2`; `... --scheduler tcp://10.0.0.5:8786`.
        """
        import re

        from arithlens.api import sweep as run_sweep

        named = re.search(r"_s([0-9]{6})$", spec)
        if named:  # the name's seed and --seeds would both say which models to train: nothing is guessed
            raise ArithLensError(f"--spec '{spec}' names seed {named[1]} while --seeds says '{seeds}': give the "
                                 f"family without the seed (--spec {spec[:named.start()]}) and the seeds in --seeds")

        if jobs < 1:
            raise ArithLensError(f"--jobs must be at least 1, not {jobs}")
        if threads < 1:
            raise ArithLensError(f"--threads must be at least 1, not {threads}")
        from arithlens.io import refuse_special

        refuse_special(out, "--out")  # a symlink, device, FIFO or socket: written through, it would be lost
        if out.exists() and not out.is_dir():
            raise ArithLensError(f"--out '{out}' is a file, not a directory")
        file_cfg: dict = {}
        if config is not None:
            file_cfg = read_json_config(config)
        if circuit:
            file_cfg["analysis"] = {**file_cfg.get("analysis", {}), "circuit": True}
        if evaluate and eval_questions < 1:
            raise ArithLensError(f"--eval-questions must be at least 1, not {eval_questions}")
        where_models = _device(device, scheduler)
        say = None if quiet or as_json else (
            lambda done, total, name: typer.echo(f"[{done}/{total}] {name}", err=True))
        result, asked, where = run_sweep(spec, seeds, out, config=file_cfg, steps=steps, threads=threads,
                                         report=report, device=where_models,
                                         evaluate=eval_questions if evaluate else 0, workers=jobs,
                                         scheduler=scheduler, progress=say)
        if as_json:
            sys.stdout.write(json.dumps(result.summary) + "\n")
        else:
            for r in result.records:
                held = r.get("heldout") or {}
                poly = [s["node"] for s in r["studies"] if s.get("polysemantic")]
                suite = r.get("evaluation")
                accepted = "" if suite is None else f"acceptance suite {suite['wrong']:,} wrong of {suite['questions']:,}, "
                typer.echo(f"{r['model']}: held-out wrong {held.get('wrong')}/{held.get('questions')}, {accepted}"
                           f"{r['heads']} useful heads, polysemantic: {' '.join(poly) or 'none'} "
                           f"({result.summary['run']['models'][r['model']]['status']})")
            suites = [r["evaluation"] for r in result.records if r.get("evaluation")]
            if suites:
                exact = sum(1 for e in suites if e["wrong"] == 0)
                typer.echo(f"{exact} of {len(suites)} models exact on the acceptance suite")
            typer.echo(f"{len(result.records)} of {asked} models in {out} ({where}, "
                       f"{result.summary['run']['wall_seconds']:.0f} s); summary {out / 'sweep.json'}")
        if result.errors:
            for name, message in result.errors.items():
                typer.echo(f"error: {name}: {message}", err=True)
            raise typer.Exit(2)


def _device(device: Device, scheduler: str | None) -> str:
    """The device the workers train on. `auto` is resolved here, so every worker gets the same answer; with a
    cluster, say cpu or cuda (this machine may not be a worker)."""
    if device == Device.auto and scheduler:
        raise ArithLensError("--device auto with --scheduler: say cpu or cuda (the workers may differ from this machine)")
    if device == Device.cuda and scheduler:
        return "cuda"  # checked where the models train
    from arithlens.api import resolve_device

    return resolve_device(device)
