"""`arithlens train`: train a model from a spec name with the default recipe, a config file and flags."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from arithlens.errors import ArithLensError



def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        spec: str = typer.Option(..., "--spec", help="Model name, e.g. mix_d6_l3_h4_t12K_s372001."),
        out: Path = typer.Option(..., "--out", help="Output directory (checkpoints, training.json, loss PNGs)."),
        config: Optional[Path] = typer.Option(None, "--config", help="JSON: recipe fields and a 'spec' dict of size overrides."),
        steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: from the name)."),
        d_model: Optional[int] = typer.Option(None, "--d-model"),
        d_head: Optional[int] = typer.Option(None, "--d-head"),
        d_mlp: Optional[int] = typer.Option(None, "--d-mlp"),
        perc_sub: Optional[int] = typer.Option(None, "--perc-sub", help="Percent of subtraction rows."),
        lr: Optional[float] = typer.Option(None, "--lr"),
        batch_size: Optional[int] = typer.Option(None, "--batch-size"),
        insert_from: Optional[Path] = typer.Option(None, "--insert-from", help="Checkpoint of a smaller model to insert."),
        init_from: Optional[Path] = typer.Option(None, "--init-from", help="Fine-tune: start from this checkpoint's weights."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """Train a model.

        Example: `arithlens train --spec mix_d6_l3_h4_t12K_s372001 --d-model 128 --d-head 32 --out runs/mix`.
        """
        import torch

        from arithlens.model import ModelSpec
        from arithlens.model.train import TrainConfig
        from arithlens.model.train import train as run_training
        from arithlens.report.loss_curves import plot_loss_curves

        file_cfg: dict = {}
        if config is not None:
            try:
                file_cfg = json.loads(config.read_text())
            except (OSError, ValueError) as exc:
                raise ArithLensError(f"cannot read config '{config}': {exc}") from None
        overrides = dict(file_cfg.pop("spec", {}))
        for key, value in (("d_model", d_model), ("d_head", d_head), ("d_mlp", d_mlp), ("perc_sub", perc_sub)):
            if value is not None:
                overrides[key] = value
        model_spec = ModelSpec.parse(spec, **overrides)
        recipe = {"steps": model_spec.training_steps, **file_cfg}
        for key, value in (("steps", steps), ("lr", lr), ("batch_size", batch_size),
                           ("insert_from", str(insert_from) if insert_from else None),
                           ("init_from", str(init_from) if init_from else None)):
            if value is not None:
                recipe[key] = value
        if model_spec.insert_mode and not recipe.get("insert_from"):
            raise ArithLensError(f"{model_spec.name} has insert mode {model_spec.insert_mode}: give --insert-from")
        cfg = TrainConfig.from_dict(recipe)
        if threads:
            torch.set_num_threads(threads)
        dev = _pick_device(device)
        command = "arithlens " + " ".join(sys.argv[1:])
        progress_cb, finish = _progress(cfg.steps, quiet)
        try:
            result = run_training(model_spec, cfg, out, device=dev, resume=resume, progress=progress_cb)
        finally:
            finish()
        plot_loss_curves(result.history, out, title=model_spec.name)
        _record_command(out, command)
        last = result.history["eval"][-1] if result.history["eval"] else {}
        typer.echo(f"{model_spec.name}: {cfg.steps} steps in {result.history['seconds']:.0f} s, final loss "
                   f"{result.history['final_loss']:.3g}, held-out wrong {last.get('wrong')}/{last.get('questions')}"
                   f" -> {out}")


def _record_command(out: Path, command: str) -> None:
    from arithlens.model.checkpoint import write_atomic

    card = json.loads((out / "model.json").read_text())
    card.setdefault("training", {})["command"] = command
    write_atomic(out / "model.json", (json.dumps(card, indent=2) + "\n").encode())


def _progress(total: int, quiet: bool):
    """A rich progress bar on stderr: loss, held-out wrong count, ETA."""
    if quiet:
        return None, lambda: None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                   TimeRemainingColumn(), console=Console(stderr=True), refresh_per_second=2)
    task = bar.add_task("train", total=total, status="")
    state = {"wrong": "-"}
    bar.start()

    def update(step: int, info: dict) -> None:
        if "heldout_wrong" in info:
            state["wrong"] = info["heldout_wrong"]
        bar.update(task, completed=step, status=f"loss {info['loss']:.2e} lr {info['lr']:.1e} wrong {state['wrong']}")

    return update, bar.stop


def _pick_device(choice: str) -> str:
    from arithlens.model.device import pick_device  # imports torch: keep it out of CLI start-up

    return pick_device(choice)
