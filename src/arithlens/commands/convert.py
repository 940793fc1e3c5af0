"""`arithlens convert`: import a TransformerLens `.pth` (or any checkpoint) as model.safetensors + model.json.

A `.pth` may hold HookedTransformer keys (TL 3.x, or TL 4's `bridge.get_params()`) or a TL 4 native bridge's
own keys (`bridge.state_dict()`); the latter need the model name (file name or `--spec`) for the head count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from arithlens.errors import ArithLensError


def register(app: typer.Typer) -> None:
    @app.command()
    def convert(
        source: Path = typer.Argument(..., help="A TransformerLens .pth state dict, 3.x or 4.x (or any checkpoint)."),
        out_dir: Path = typer.Argument(..., help="Directory for model.safetensors + model.json."),
        spec: Optional[str] = typer.Option(None, "--spec", help="Model name to use instead of the file name / shapes."),
        force: bool = typer.Option(False, "--force", help="Replace a checkpoint already in OUT_DIR."),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """Convert a checkpoint to ours. Example: `arithlens convert add_d6_l2_h3_t15K_s372001.pth models/add`."""
        from arithlens.api import checkpoint_files, read_checkpoint, save_checkpoint
        from arithlens.io import OutputTarget

        target = OutputTarget(out_dir, "dir", "OUT_DIR")
        weights = out_dir / checkpoint_files()["weights"]
        if weights.exists() and not force:
            raise ArithLensError(f"'{weights}' exists; pass --force to replace it")
        ck = read_checkpoint(source, spec=spec)  # TL 3.x / 4.x state dicts included
        model_spec = ck.spec
        extra = {**ck.extra, "converted_from": Path(source).name, "spec_source": ck.spec_source}
        with target:
            save_checkpoint(ck.model, model_spec, target.stage, extra)
            target.commit()
        if not quiet:
            typer.echo(f"{source} -> {out_dir}: {model_spec.name} (spec from {ck.spec_source})")

