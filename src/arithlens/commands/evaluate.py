"""`arithlens eval`: check a model exactly on fresh questions, the curated set and enriched cascades."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from arithlens.commands._common import (Device, Progress, count_option, device_option, seed_option,
                                        thread_limit, threads_option)


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
        questions: int = count_option(
            1_000_000, "--questions", "Uniform questions per question type (--kind enriched: enriched ones).", low=0),
        seed: int = seed_option(345_621, "Question seed (differs from training seeds)."),  # EVAL_SEED
        kind: EvalKind = typer.Option(
            EvalKind.suite, "--kind", help="suite (uniform, curated, N/10 enriched, N/5 stress), uniform, enriched or curated."),
        precision: Precision = typer.Option(
            Precision.auto, "--precision", help="auto (bf16 + fp32 re-checks with AMX, else fp32), fp32, bf16."),
        batch_size: Optional[int] = count_option(
            None, "--batch-size", "Questions per forward pass (default 128 on CPU, 8192 on CUDA)."),
        device: Device = device_option(),
        threads: Optional[int] = threads_option(help="CPU cores to use (default: torch's threads)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Also write the JSON result to this file."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    ) -> None:
        """Exact evaluation: a question is right when every answer token's argmax is right (teacher-forced).

        Examples: `arithlens eval` (the default model, 1M questions per type: the acceptance check);
        `arithlens eval --model runs/mix --questions 100000 --json`; `arithlens eval --kind curated`.
        """
        from arithlens.api import evaluate, load_checkpoint, resolve_model, suite_kinds, suite_size
        from arithlens.io import OutputTarget

        target = OutputTarget(out, "file", "--out") if out is not None else None  # checked before the work
        path = resolve_model(model)
        ck = load_checkpoint(path, device)
        counts = ({"questions": 0, "enriched_questions": questions} if kind == EvalKind.enriched
                  else {"questions": questions})
        kinds = suite_kinds() if kind == EvalKind.suite else (kind.value,)
        total = suite_size(ck.spec, seed=seed, kinds=kinds, **counts)
        with thread_limit(threads), Progress(quiet, label_width=4) as bar:
            progress = None if bar.quiet else (lambda n, label: bar.advance("eval", n, total, label))
            suite = evaluate(ck.model, ck.spec, seed=seed, kinds=kinds, precision=precision.value,
                             batch_size=batch_size, progress=progress, **counts)
        report = {"path": str(path), "kind": kind.value, **suite.to_dict()}
        report["questions_per_second"] = round(report["questions"] / max(report["seconds"], 1e-9))
        if target is not None:
            from arithlens.io import write_atomic

            with target:
                write_atomic(target.staged_file, (json.dumps(report, indent=2) + "\n").encode())
                target.commit()
        typer.echo(json.dumps(report) if as_json else _table(report))


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
