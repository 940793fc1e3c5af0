"""`arithlens node P18L0H0`: the node study (attention, necessity, sufficiency, representation, verdict)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from arithlens.commands._common import (Device, count_option, device_option, model_option, seed_option,
                                        thread_limit, threads_option)
from arithlens.validate import MAX_PERMUTATIONS, check_int


def register(app: typer.Typer) -> None:
    @app.command()
    def node(
        name: str = typer.Argument(..., help="Node: a head such as P18L0H0, or a whole MLP layer such as P18L0MLP."),
        model: Optional[str] = model_option(),
        out: Optional[Path] = typer.Option(None, "--out", help="Write `<node>_study.json` and the figures here."),
        questions: int = count_option(1000, "--questions", "Necessity questions per qtype x T class.", low=10),
        pairs: int = count_option(200, "--pairs", "Patching pairs per qtype.", low=10),
        permutations: int = typer.Option(100, "--permutations", callback=lambda v: check_int(
            "--permutations", v, low=0, high=MAX_PERMUTATIONS), help=f"Label shuffles for the probe and cosine "
            f"nulls, 0 to {MAX_PERMUTATIONS:,}."),
        digit: Optional[int] = typer.Option(None, "--digit", help="Study digit (default: the attended pair, else k-1)."),
        features: bool = typer.Option(False, "--features", help="Also train a sparse autoencoder on the node's output "
                                      "and add its answer (features for carry and borrow, their effects, beside a "
                                      "probe and a direction); adds minutes."),
        seed: int = seed_option(0, "Seed; the same seed gives the same JSON."),
        threads: int = threads_option(1, "CPU threads for torch (1 was fastest on 2 shared cores)."),
        device: Device = device_option(),
        as_json: bool = typer.Option(False, "--json", help="Print the study as one JSON object."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress lines."),
    ) -> None:
        """Study one node: is it doing one job or several (carry for ADD, borrow for SUB and NEG)?

        Examples: `arithlens node P18L0H0 --out out/`; `arithlens node P18L0H1 --model runs/mix --json`.
        """
        from arithlens.api import load_checkpoint, parse_node, run_study
        from arithlens.io import OutputTarget
        from arithlens.report.node_text import summarise
        from arithlens.validate import check_command_memory

        start = time.perf_counter()
        parse_node(name)  # a malformed name fails before anything is loaded or written
        target = OutputTarget(out, "dir", "--out") if out is not None else None  # checked before the work
        net = load_checkpoint(model, device).model
        # necessity: 3 qtypes x 3 T classes of questions (at most the distinct ones), each ablated in a forward pass
        distinct = 10 ** (2 * net.spec.n_digits)
        check_command_memory("node", net.spec, {"questions": min(questions, distinct), "pairs": pairs},
                             {"questions": "the necessity questions", "pairs": "the patching pairs"})
        node_target = parse_node(name, net.spec)

        def progress(message: str) -> None:
            if not (quiet or as_json):
                typer.echo(f"[{time.perf_counter() - start:5.1f}s] {message}", err=True)

        with thread_limit(threads):
            study = run_study(net, node_target, questions=questions, pairs=pairs, permutations=permutations, seed=seed,
                              digit=digit, features=features, progress=progress)
        files: list[Path] = []
        if target is not None:
            from arithlens.report.node_figures import write_node_figures
            from arithlens.report.node_json import write_study

            with target:
                staged = [write_study(study, target.stage)]
                for paths in write_node_figures(study.data, target.stage).values():
                    staged.extend(paths)
                files = [target.final(f) for f in staged]
                target.commit()
        seconds = time.perf_counter() - start
        if as_json:
            typer.echo(json.dumps({**study.data, "files": [str(f) for f in files]}, indent=1, allow_nan=False))
            return
        from arithlens.report.founding import founding_answer

        answer = founding_answer([study.data], net.spec.n_heads)
        if answer:
            typer.echo(answer.sentence())
        typer.echo(summarise(study.data))
        typer.echo(f"files: {', '.join(str(f) for f in files if f.suffix != '.svg')}" if files
                   else "files: none (give --out DIR to write the JSON and figures)")
        typer.echo(f"done in {seconds:.1f} s")
