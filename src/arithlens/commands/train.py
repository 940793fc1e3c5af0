"""`arithlens train`: train a model from a spec name with the default recipe, a config file and flags."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from arithlens.commands._common import Device, Progress, count_option, device_option, threads_option, thread_limit
from arithlens.errors import ArithLensError
from arithlens.validate import MAX_STEPS, check_int, finite


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        spec: str = typer.Option(..., "--spec", help="Model name, e.g. mix_d6_l3_h4_t12K_s372001."),
        out: str = typer.Option(..., "--out", help="Output directory (checkpoints, training.json, loss PNGs)."),
        config: Optional[Path] = typer.Option(None, "--config", help="JSON: recipe fields and a 'spec' dict of size overrides."),
        steps: Optional[int] = typer.Option(None, "--steps",
                                            callback=lambda v: check_int("--steps", check_int("--steps", v, low=1),
                                                                         high=MAX_STEPS),
                                            help=f"Training steps, 1 to {MAX_STEPS:,} (default: from the name)."),
        d_model: Optional[int] = count_option(None, "--d-model", "Residual width (default: from the name)."),
        d_head: Optional[int] = count_option(None, "--d-head", "Head width."),
        d_mlp: Optional[int] = count_option(None, "--d-mlp", "MLP width."),
        perc_sub: Optional[int] = typer.Option(None, "--perc-sub", help="Percent of subtraction rows."),
        lr: Optional[float] = typer.Option(None, "--lr", callback=lambda v: finite("--lr", v, positive=True),
                                           help="Peak learning rate (> 0)."),
        batch_size: Optional[int] = count_option(None, "--batch-size", "Questions per step."),
        insert_from: Optional[Path] = typer.Option(None, "--insert-from", help="Checkpoint of a smaller model to insert."),
        init_from: Optional[Path] = typer.Option(None, "--init-from", help="Fine-tune: start from this checkpoint's weights."),
        curriculum_steps: Optional[int] = typer.Option(
            None, "--curriculum-steps", callback=lambda v: check_int("--curriculum-steps", v, low=0),
            help="MUL operands grow from 1 digit to full length in equal stages over these steps (0: off)."),
        aux_loss: Optional[float] = typer.Option(
            None, "--aux-loss", callback=lambda v: finite("--aux-loss", v),
            help="Weight of the training-only MUL running-sum loss (a linear head, not saved; 0: off)."),
        device: Device = device_option(),
        threads: Optional[int] = threads_option(),
        resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
        force: bool = typer.Option(False, "--force", help="Train anew over a model already in --out: the new run "
                                   "trains beside it and replaces it when finished (with --resume: continue such a run)."),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """Train a model. A model already in --out is kept: continue it with --resume or replace it with --force.

        Example: `arithlens train --spec mix_d6_l3_h4_t12K_s372001 --d-model 128 --d-head 32 --out runs/mix`.
        """
        from arithlens.api import parse_spec, train as run_training, train_config
        from arithlens.io import OutputTarget
        from arithlens.report.loss_curves import plot_loss_curves

        if not out.strip():
            raise ArithLensError("--out is empty: give the output directory")
        out = Path(out)
        file_cfg = _read_config(config) if config is not None else {}
        overrides = file_cfg.pop("spec", None) or {}
        for key, value in (("d_model", d_model), ("d_head", d_head), ("d_mlp", d_mlp), ("perc_sub", perc_sub)):
            if value is not None:
                overrides[key] = value
        model_spec = parse_spec(spec, **overrides)
        where = f"--config '{config}'" if config is not None else "training config"
        recipe = {"steps": model_spec.training_steps, **file_cfg}
        train_config(recipe, where=where)  # the file's own values, named as the file's
        for key, value in (("steps", steps), ("lr", lr), ("batch_size", batch_size),
                           ("insert_from", str(insert_from) if insert_from else None),
                           ("init_from", str(init_from) if init_from else None),
                           ("curriculum_steps", curriculum_steps), ("aux_loss", aux_loss)):
            if value is not None:
                recipe[key] = value
        if model_spec.insert_mode and not recipe.get("insert_from"):
            raise ArithLensError(f"{model_spec.name} has insert mode {model_spec.insert_mode}: give --insert-from")
        cfg = train_config(recipe)
        for flag, value in (("--insert-from", cfg.insert_from), ("--init-from", cfg.init_from)):
            if value is not None and not Path(value).exists():
                raise ArithLensError(f"{flag} '{value}' does not exist: give a checkpoint directory or file")
        dev = _resolve(device)
        target = OutputTarget(out, "dir", "--out", staged=False)
        replacing = force and _holds_run(out)
        where = _replacement(out) if replacing or (force and resume) else out
        if force and resume and not (where / "train_state.safetensors").is_file():
            raise ArithLensError(f"--force --resume: no interrupted --force run of '{out}' to continue (give --force "
                                 "alone to start one)")
        _check_out(where, resume=resume, force=force and not resume)
        command = "arithlens " + " ".join(sys.argv[1:])
        existed = where.exists()
        with target, thread_limit(threads), Progress(quiet, label_width=5) as bar:
            if where != out and not resume and where.exists():
                import shutil

                shutil.rmtree(where)  # an earlier --force run that was stopped: this one starts anew
            try:
                result = run_training(model_spec, cfg, where, device=dev, resume=resume,
                                      progress=None if bar.quiet else _train_progress(bar, cfg.steps))
            except BaseException:
                if not existed and where.is_dir() and not any(where.iterdir()):
                    where.rmdir()  # nothing was trained: leave no empty --out behind
                raise
            plot_loss_curves(result.history, where, title=model_spec.name)
            _record_command(where, command)
            if where != out:
                _swap(where, out)
        last = result.history["eval"][-1] if result.history["eval"] else {}
        typer.echo(f"{model_spec.name}: {cfg.steps} steps in {result.history['seconds']:.0f} s, final loss "
                   f"{result.history['final_loss']:.3g}, held-out wrong {last.get('wrong')}/{last.get('questions')}"
                   f" -> {out}")


def _read_config(path: Path) -> dict[str, Any]:
    """The `--config` JSON: an object whose 'spec' (if any) is an object too."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        from arithlens.io import describe_os_error

        raise ArithLensError(f"cannot read --config '{path}': {describe_os_error(exc)}") from None
    except ValueError as exc:
        raise ArithLensError(f"--config '{path}' is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ArithLensError(f"--config '{path}' must hold a JSON object of recipe fields, not a "
                             f"{type(data).__name__.replace('NoneType', 'null')}")
    if "spec" in data and not isinstance(data["spec"], (dict, type(None))):
        raise ArithLensError(f"--config '{path}': 'spec' must be an object of size overrides such as "
                             f'{{"d_model": 128}}, not {data["spec"]!r}')
    return dict(data)


def _check_out(out: Path, *, resume: bool, force: bool) -> None:
    """Refuse to overwrite a model, or to resume nothing, before anything is created."""
    from arithlens.api import checkpoint_files

    WEIGHTS_FILE, SIDECAR_FILE, STATE_FILE = checkpoint_files().values()
    if resume:
        if not (out / STATE_FILE).is_file():
            raise ArithLensError(f"nothing to resume in '{out}': no {STATE_FILE} (train without --resume first)")
        return
    if force:
        return
    if (out / WEIGHTS_FILE).exists() or (out / SIDECAR_FILE).exists():
        what = "an unfinished training run" if (out / STATE_FILE).exists() and _partial(out) else "a trained model"
        raise ArithLensError(f"--out '{out}' already holds {what}: pass --resume to continue it, --force to "
                             "replace it, or choose another --out")
    if (out / STATE_FILE).exists():
        raise ArithLensError(f"--out '{out}' already holds an unfinished training run: pass --resume to continue "
                             "it, --force to replace it, or choose another --out")


def _holds_run(out: Path) -> bool:
    from arithlens.api import checkpoint_files

    return out.is_dir() and any((out / f).exists() for f in checkpoint_files().values())


def _replacement(out: Path) -> Path:
    """Where `--force` trains while the model it replaces stays in --out (a fixed name, so `--force --resume`
    finds an interrupted replacement)."""
    return out.absolute().parent / f".{out.name}.arithlens-replacement"


def _swap(new: Path, out: Path) -> None:
    """Put the finished run `new` in place of `out` with two renames; the old model is removed only after."""
    import os
    import shutil

    old = out.absolute().parent / f".{out.name}.arithlens-replaced-{os.getpid()}"
    os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)  # put the old model back: --out never holds nothing
        raise
    shutil.rmtree(old, ignore_errors=True)


def _partial(out: Path) -> bool:
    try:
        card = json.loads((out / "model.json").read_text())
        return bool(card.get("training", {}).get("partial"))
    except (OSError, ValueError, AttributeError):
        return False


def _record_command(out: Path, command: str) -> None:
    from arithlens.io import write_atomic

    card = json.loads((out / "model.json").read_text())
    card.setdefault("training", {})["command"] = command
    write_atomic(out / "model.json", (json.dumps(card, indent=2) + "\n").encode())


def _train_progress(bar: Progress, total: int):
    """train()'s (step, info) calls as the one progress signature: loss, learning rate, held-out wrong count."""
    state = {"wrong": "-"}

    def update(step: int, info: dict) -> None:
        if "heldout_wrong" in info:
            state["wrong"] = info["heldout_wrong"]
        bar("train", step, total, f"loss {info['loss']:.2e} lr {info['lr']:.1e} wrong {state['wrong']}")

    return update


def _resolve(device: Device) -> str:
    from arithlens.api import resolve_device

    return resolve_device(device)
