"""`arithlens node P18L0H0`: the node study (attention, necessity, sufficiency, representation, verdict)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from arithlens.commands._options import model_option


def register(app: typer.Typer) -> None:
    @app.command()
    def node(
        name: str = typer.Argument(..., help="Node: a head such as P18L0H0, or a whole MLP layer such as P18L0MLP."),
        model: Optional[str] = model_option(),
        out: Optional[Path] = typer.Option(None, "--out", help="Write <node>_study.json and the figures here."),
        questions: int = typer.Option(1000, "--questions", help="Necessity questions per qtype x T class."),
        pairs: int = typer.Option(200, "--pairs", help="Patching pairs per qtype."),
        permutations: int = typer.Option(100, "--permutations", help="Label shuffles for the probe and cosine nulls."),
        digit: Optional[int] = typer.Option(None, "--digit", help="Study digit (default: the attended pair, else k-1)."),
        seed: int = typer.Option(0, "--seed", help="Seed; the same seed gives the same JSON."),
        threads: int = typer.Option(1, "--threads", help="CPU threads for torch (1 was fastest on 2 shared cores)."),
        as_json: bool = typer.Option(False, "--json", help="Print the study as one JSON object."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress lines."),
    ) -> None:
        """Study one node: is it doing one job or several (carry for ADD, borrow for SUB and NEG)?

        Examples: `arithlens node P18L0H0 --out out/`; `arithlens node P18L0H1 --model runs/mix --json`.
        """
        import torch

        from arithlens.analysis.node_study import StudyOptions, study_node
        from arithlens.analysis.nodes import Node
        from arithlens.errors import ArithLensError
        from arithlens.model import load_checkpoint
        from arithlens.model.zoo import resolve_model

        start = time.perf_counter()
        Node.parse(name)  # a malformed name fails before anything is loaded or written
        options = StudyOptions(questions=questions, pairs=pairs, permutations=permutations, seed=seed, digit=digit)
        if threads < 1:
            raise ArithLensError(f"--threads must be at least 1, not {threads}")
        torch.set_num_threads(threads)
        net = load_checkpoint(resolve_model(model)).model
        target = Node.for_model(name, net.spec)

        def progress(message: str) -> None:
            if not (quiet or as_json):
                typer.echo(f"[{time.perf_counter() - start:5.1f}s] {message}", err=True)

        study = study_node(net, target, options, progress=progress)
        files: list[Path] = []
        if out is not None:
            from arithlens.report.node_figures import write_node_figures

            files.append(study.save(out))
            for paths in write_node_figures(study.data, out).values():
                files.extend(paths)
        seconds = time.perf_counter() - start
        if as_json:
            typer.echo(json.dumps({**study.data, "files": [str(f) for f in files]}, indent=1, allow_nan=False))
            return
        typer.echo(study.summary())
        typer.echo(f"files: {', '.join(str(f) for f in files if f.suffix != '.svg')}" if files
                   else "files: none (give --out DIR to write the JSON and figures)")
        typer.echo(f"done in {seconds:.1f} s")
