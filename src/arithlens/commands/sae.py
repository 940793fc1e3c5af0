"""`arithlens sae P18L0H3`: a sparse autoencoder on one node's output, its quality, feature meanings and (with
`--study`) the founding question from below; `--out DIR` also writes the dictionary in SAELens's format."""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from arithlens.commands._common import (Device, count_option, device_option, model_option, seed_option,
                                        thread_limit, threads_option)


class Trainer(str, Enum):
    arithlens = "arithlens"
    saelens = "saelens"


class Arch(str, Enum):
    topk = "topk"
    batchtopk = "batchtopk"
    l1 = "l1"


def register(app: typer.Typer) -> None:
    @app.command()
    def sae(
        name: str = typer.Argument(..., help="Node (P18L0H3, P18L0MLP) or a hook at a position "
                                             "(blocks.1.hook_resid_pre@P18)."),
        model: Optional[str] = model_option(),
        arch: Arch = typer.Option(Arch.topk, "--arch", help="topk, batchtopk (saved as SAELens JumpReLU) or l1."),
        size: Optional[int] = count_option(None, "--size", "Dictionary features (default: 4 x the site's width, "
                                                           "64..1024).", low=1),
        k: Optional[int] = count_option(None, "--k", "Features per question for topk / batchtopk "
                                                     "(default: max(4, width // 32)).", low=1),
        l1: float = typer.Option(0.05, "--l1", help="L1 coefficient for --arch l1."),
        steps: int = count_option(3000, "--steps", "Training steps (minibatches of 256).", low=1),
        questions: int = count_option(20_000, "--questions", "Fresh training questions (half uniform, half "
                                                             "enriched).", low=20),
        eval_questions: int = count_option(3000, "--eval-questions", "Held-out questions for every number.",
                                           low=20),
        permutations: int = count_option(100, "--permutations", "Label shuffles for the AUROC and probe nulls.",
                                         low=0),
        trainer: Trainer = typer.Option(Trainer.arithlens, "--trainer", help="arithlens (plain torch) or saelens "
                                                                              "(SAELens's trainer; the sae extra)."),
        sweep: bool = typer.Option(False, "--sweep", help="Also train sizes x sparsities for the Pareto figure."),
        study: bool = typer.Option(False, "--study", help="Also the founding question: carriers, effects, "
                                                          "probe and direction."),
        digit: Optional[int] = typer.Option(None, "--digit", help="Carry digit for --study (default: the one into "
                                                                  "the answer digit predicted here)."),
        seed: int = seed_option(0, "Seed; the same seed gives the same JSON and weights."),
        out: Optional[Path] = typer.Option(None, "--out", help="Write the JSON, the dictionary (cfg.json + "
                                                               "sae_weights.safetensors) and figures here."),
        threads: Optional[int] = threads_option(None),
        device: Device = device_option(),
        as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress lines."),
    ) -> None:
        """Train a dictionary of features on one node and say what its features mean and do.

        Examples: `arithlens sae P18L0H3 --out out/sae`; `arithlens sae P18L0MLP --k 16 --study --json`.
        """
        from arithlens.api import check_sae, feature_study, load_checkpoint, sae as train_sae
        from arithlens.io import OutputTarget
        from arithlens.validate import check_chunked_memory, check_memory, finite, forward_bytes

        start = time.perf_counter()
        finite("--l1", l1)
        options = dict(arch=arch.value, size=size, k=k, l1=l1, steps=steps, questions=questions,
                       eval_questions=eval_questions, permutations=permutations, seed=seed, sweep=sweep,
                       trainer=trainer.value)
        check_sae(name, digit=digit, **options)  # every option checked before anything is loaded or written
        if trainer == Trainer.saelens:
            import importlib.util

            if importlib.util.find_spec("sae_lens") is None:
                from arithlens.errors import ArithLensError

                raise ArithLensError("--trainer saelens needs SAELens: pip install 'arithlens[sae]'")
        target = OutputTarget(out, "dir", "--out") if out is not None else None
        net = load_checkpoint(model, device).model
        check_sae(name, net.spec, digit=digit, **options)
        # the training questions run 4,096 at a time; the held-out ones keep their clean run (the engine's caches)
        check_chunked_memory("--questions", questions, 1, 4096, forward_bytes(net.spec), "the training activations")
        check_memory("--eval-questions", eval_questions, forward_bytes(net.spec), "the held-out questions")

        def progress(message: str) -> None:
            if not (quiet or as_json):
                typer.echo(f"[{time.perf_counter() - start:5.1f}s] {message}", err=True)

        with thread_limit(threads):
            if study:
                result = feature_study(net, name, digit=digit, progress=progress, **options)
                dictionary = result.dictionary
            else:
                result = dictionary = train_sae(net, name, progress=progress, **options)
        files: list[Path] = []
        if target is not None:
            from arithlens.report.features import write_dictionary_figures

            with target:
                stem = dictionary.site.replace("@", "_").replace(".", "_")
                staged = [result.save(target.stage / f"{stem}_{'features' if study else 'sae'}.json")]
                staged += dictionary.save_dictionary(target.stage / f"{stem}_sae")
                staged += write_dictionary_figures(dictionary.data, target.stage)
                files = [target.final(f) for f in staged]
                target.commit()
        seconds = time.perf_counter() - start
        if as_json:
            typer.echo(json.dumps({**result.to_dict(), "files": [str(f) for f in files]}, indent=1, allow_nan=False))
            return
        typer.echo(result.summary())
        typer.echo(f"files: {', '.join(str(f) for f in files)}" if files
                   else "files: none (give --out DIR to write the JSON, the dictionary and figures)")
        typer.echo(f"done in {seconds:.1f} s")
