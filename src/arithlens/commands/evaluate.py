"""`arithlens eval`, `arithlens convert` and `arithlens models`: check a model exactly, import a `.pth`,
list the shipped models."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from arithlens.errors import ArithLensError


class EvalKind(str, Enum):
    suite = "suite"
    uniform = "uniform"
    enriched = "enriched"
    curated = "curated"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        model: Optional[str] = typer.Option(
            None, "--model", help="Shipped name, alias (mix, add) or checkpoint path; default: the mixed model."),
        questions: int = typer.Option(
            1_000_000, "--questions", help="Uniform questions per question type (--kind enriched: enriched ones)."),
        seed: int = typer.Option(345_621, "--seed", help="Question seed (differs from training seeds)."),  # EVAL_SEED
        kind: EvalKind = typer.Option(
            EvalKind.suite, "--kind", help="suite (uniform, curated, N/10 enriched, N/5 stress), uniform, enriched or curated."),
        precision: Precision = typer.Option(
            Precision.auto, "--precision", help="auto (bf16 + fp32 re-checks with AMX, else fp32), fp32, bf16."),
        batch_size: Optional[int] = typer.Option(
            None, "--batch-size", help="Questions per forward pass (default 128 on CPU, 8192 on CUDA)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        threads: Optional[int] = typer.Option(None, "--threads", help="CPU cores to use (default: torch's threads)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Also write the JSON result to this file."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    ) -> None:
        """Exact evaluation: a question is right when every answer token's argmax is right (teacher-forced).

        Examples: `arithlens eval` (the default model, 1M questions per type: the acceptance check);
        `arithlens eval --model runs/mix --questions 100000 --json`; `arithlens eval --kind curated`.
        """
        import torch

        from arithlens.model import load_checkpoint
        from arithlens.model.evaluate import KINDS, evaluate_suite, suite_size
        from arithlens.model.zoo import resolve_model

        for flag, value, low in (("--questions", questions, 0), ("--seed", seed, 0), ("--threads", threads, 1)):
            if value is not None and value < low:
                raise ArithLensError(f"{flag} must be >= {low}, not {value}")
        if threads:
            torch.set_num_threads(threads)
        path = resolve_model(model)
        ck = load_checkpoint(path, device=_pick_device(device))
        counts = ({"questions": 0, "enriched_questions": questions} if kind == EvalKind.enriched
                  else {"questions": questions})
        kinds = KINDS if kind == EvalKind.suite else (kind.value,)
        total = suite_size(ck.spec, seed=seed, kinds=kinds, **counts)
        with _progress_bar(total, quiet) as progress:
            suite = evaluate_suite(ck.model, ck.spec, seed=seed, kinds=kinds, precision=precision.value,
                                   batch_size=batch_size, progress=progress, **counts)
        report = {"path": str(path), "kind": kind.value, **suite.to_dict()}
        report["questions_per_second"] = round(report["questions"] / max(report["seconds"], 1e-9))
        if out is not None:
            from arithlens.model import write_atomic

            out.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(out, (json.dumps(report, indent=2) + "\n").encode())
        typer.echo(json.dumps(report) if as_json else _table(report))

    @app.command()
    def convert(
        source: Path = typer.Argument(..., help="A TransformerLens .pth state dict (or any checkpoint)."),
        out_dir: Path = typer.Argument(..., help="Directory for model.safetensors + model.json."),
        spec: Optional[str] = typer.Option(None, "--spec", help="Model name to use instead of the file name / shapes."),
        force: bool = typer.Option(False, "--force", help="Replace a checkpoint already in OUT_DIR."),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """Convert a checkpoint to ours. Example: `arithlens convert add_d6_l2_h3_t15K_s372001.pth models/add`."""
        from arithlens.model import convert_checkpoint, load_checkpoint
        from arithlens.model.checkpoint import WEIGHTS_FILE

        if (out_dir / WEIGHTS_FILE).exists() and not force:
            raise ArithLensError(f"'{out_dir / WEIGHTS_FILE}' exists; pass --force to replace it")
        convert_checkpoint(source, out_dir, spec=spec)
        if not quiet:
            ck = load_checkpoint(out_dir)
            typer.echo(f"{source} -> {out_dir}: {ck.spec.name} (spec from {ck.extra.get('spec_source')})")

    @app.command()
    def models(as_json: bool = typer.Option(False, "--json", help="One JSON object per model, one per line.")) -> None:
        """List the models shipped in the package (the default one is marked *)."""
        from arithlens.model.zoo import default_model_name, list_models

        rows = [m.summary() for m in list_models()]
        default = default_model_name() if rows else None
        for row in rows:
            row["default"] = row["name"] == default
        if as_json:
            for row in rows:
                typer.echo(json.dumps(row))
            return
        if not rows:
            typer.echo("no models are shipped; pass --model PATH to commands that take a model")
            return
        width = max(len(r["name"]) for r in rows) + 2
        typer.echo(f"  {'name':<{width}}{'op':<5}{'layers':>7}{'heads':>6}{'d_model':>8}{'size':>10}  accuracy")
        for r in rows:
            mark = "*" if r["default"] else " "
            typer.echo(f"{mark} {r['name']:<{width}}{r['op']:<5}{r['layers']:>7}{r['heads']:>6}{r['d_model']:>8}"
                       f"{_size(r['size_bytes']):>10}  {r['accuracy'] or '-'}")



class _progress_bar:
    """A rich progress bar on stderr (questions, rate, ETA); a no-op with --quiet."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet, self.bar = total, quiet, None

    def __enter__(self):
        if self.quiet:
            return None
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeRemainingColumn)

        self.bar = Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                            TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                            console=Console(stderr=True), refresh_per_second=4)
        task = self.bar.add_task("eval", total=self.total, rate="")
        self.bar.start()

        def update(n: int, label: str) -> None:
            speed = self.bar.tasks[0].speed
            self.bar.update(task, advance=n, description=label or "eval",
                            rate=f"{speed / 1000:.1f}K q/s" if speed else "")

        return update

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _table(report: dict) -> str:
    lines = [f"model {report['model']} ({report['path']}), seed {report['seed']}, precision {report['precision']}"
             + (f" ({report['rechecked']:,} rows re-checked in fp32)" if "rechecked" in report else "")
             + f": {report['questions']:,} questions in {report['seconds']:.1f} s"
             f" ({report['questions_per_second']:,}/s)",
             f"{'kind':<10}{'qtype':<7}{'questions':>12}{'wrong':>9}{'accuracy':>12}"]
    for kind, result in report["kinds"].items():
        for qtype, c in result["by_qtype"].items():
            lines.append(f"{kind:<10}{qtype:<7}{c['questions']:>12,}{c['wrong']:>9,}{_acc(c):>12}")
    lines.append(f"{'total':<17}{report['questions']:>12,}{report['wrong']:>9,}{_acc(report):>12}")
    lines.append("wrong by answer digit: " + " ".join(f"{k} {v}" for k, v in report["by_answer_digit"].items()))
    lines.append("wrong by class: " + " ".join(f"{k} {c['wrong']}/{c['questions']}"
                                              for k, c in report["by_complexity"].items()))
    if report["failures"]:
        lines.append("first failures (model vs true):")
        lines += [f"  {f}" for f in report["failures"]]
    return "\n".join(lines)


def _acc(counts: dict) -> str:
    return f"{100 * (1 - counts['wrong'] / counts['questions']):.4f}%" if counts["questions"] else "-"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _pick_device(choice: str) -> str:
    from arithlens.model.device import pick_device  # imports torch: keep it out of CLI start-up

    return pick_device(choice)
