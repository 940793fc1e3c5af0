"""`arithlens atlas`: analyse (or reuse the analyses of) many models and align their nodes by role."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from arithlens.commands._common import json_option, quiet_option, read_json_config
from arithlens.errors import ArithLensError
from arithlens.validate import check_int, check_threads


def register(app: typer.Typer) -> None:
    @app.command(context_settings={"allow_extra_args": True})
    def atlas(
        ctx: typer.Context,
        out: Path = typer.Option(..., "--out", help="Output directory: atlas.json, atlas.png, atlas.html."),
        models: Optional[List[str]] = typer.Option(None, "--models", help="Models: names, checkpoint paths or "
                                                   "folders holding an analysis (analysis.json); several may follow."),
        sweep: Optional[Path] = typer.Option(None, "--sweep", help="Also every model folder of this sweep."),
        jobs: int = typer.Option(1, "--jobs", help="Local worker processes for the analyses still to run."),
        scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Run them on this Dask cluster instead."),
        config: Optional[Path] = typer.Option(None, "--config", help="JSON of analysis options (AnalyzeOptions "
                                              "fields; 'study' and 'founding_study' as dicts)."),
        threads: int = typer.Option(1, "--threads", callback=lambda v: check_int("--threads", v, low=1),
                                    help="Torch threads per analysis (locally: 1 to the cores this process may use)."),
        circuit: bool = typer.Option(False, "--circuit", help="Also find each analysed model's circuit (slow: tens "
                                     "of minutes a shipped model); folders analysed before are read as they are."),
        as_json: bool = json_option("the atlas"),
        quiet: bool = quiet_option(),
    ) -> None:
        """Align many models' nodes by role and ask the founding question of each.

        A model given by name or checkpoint is analysed into `DIR/models/<name>/` (reused on the next run); a
        folder written by `arithlens analyze` or `arithlens sweep` is read as it is. An adder among mixed
        models is the reference: the roles it shares are marked. Each analysis also scores the model's useful
        set alone (every other node mean-ablated; 2,000 questions per qtype unless the config's 'faithfulness'
        says otherwise) and, with --circuit, finds its circuit.
        Examples: `arithlens atlas --models mix_d6_l3_h4_t10K_s372001 add_d6_l2_h3_t8K_s372001 --out atlas/`;
        `arithlens atlas --sweep runs/sweep --models add_d6_l2_h3_t8K_s372001 --out atlas/`.
        """
        from arithlens.api import analyse_checkpoints, atlas_of, check_analysis_options, read_checkpoint, resolve_model
        from arithlens.report.atlas import write_atlas

        start = time.perf_counter()
        if scheduler is None:  # a cluster's workers may have more cores than this machine
            check_threads(threads)
        from arithlens.io import refuse_special

        refuse_special(out, "--out")  # a symlink, device, FIFO or socket: written through, it would be lost
        if out.exists() and not out.is_dir():
            raise ArithLensError(f"--out '{out}' is a file, not a directory")
        extra = [a for a in ctx.args]
        bad = [a for a in extra if a.startswith("-")]
        if bad:
            raise ArithLensError(f"unknown option '{bad[0]}'")
        wanted = [*(models or []), *extra]
        folders: list[Path] = []
        if sweep is not None:
            if not sweep.is_dir():
                raise ArithLensError(f"--sweep '{sweep}' is not a directory")
            folders += sorted(d for d in sweep.iterdir() if (d / "analysis.json").is_file())
        analysis: dict = {}
        if config is not None:
            analysis = read_json_config(config)
            analysis = analysis.get("analysis", analysis)
        if circuit:
            analysis = {**analysis, "circuit": True}
        check_analysis_options(analysis)  # a bad field fails here, not in a worker
        to_run: list[tuple[str, str]] = []
        for m in wanted:
            path = Path(m)
            if path.is_dir() and (path / "analysis.json").is_file():
                folders.append(path)
                continue
            checkpoint = resolve_model(m)
            target = out / "models" / read_checkpoint(checkpoint).model.spec.name
            folders.append(target)
            if not (target / "analysis.json").is_file():
                to_run.append((str(checkpoint), str(target)))
        if not folders:
            raise ArithLensError("give --models or --sweep")
        if to_run:
            if not quiet and not as_json:
                typer.echo(f"analysing {len(to_run)} model(s): {', '.join(Path(t).name for _, t in to_run)}", err=True)
            analyse_checkpoints(to_run, analysis, threads, jobs, scheduler)
        data = atlas_of(folders)
        data["wall_seconds"] = round(time.perf_counter() - start, 1)
        files = write_atlas(data, out)
        if as_json:
            sys.stdout.write(json.dumps(data) + "\n")
            return
        typer.echo(data["headline"])
        for f in data["founding"]:
            typer.echo(f"  {f['model']}: {f['text']} ({f['evidence']})")
        typer.echo(data["faithfulness_line"])
        typer.echo(data["functions_line"])
        typer.echo(f"{len(data['roles'])} roles, {len(data['roles_in_every_model'])} in every model, "
                   f"{len(data['roles_shared_with_reference'])} shared with the reference; "
                   f"{data['wall_seconds']:.0f} s -> {', '.join(str(p) for p in files)}")

