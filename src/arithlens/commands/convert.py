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
        from arithlens.io import OutputTarget
        from arithlens.model import save_checkpoint
        from arithlens.model.checkpoint import WEIGHTS_FILE

        target = OutputTarget(out_dir, "dir", "OUT_DIR")
        if (out_dir / WEIGHTS_FILE).exists() and not force:
            raise ArithLensError(f"'{out_dir / WEIGHTS_FILE}' exists; pass --force to replace it")
        model, model_spec, spec_source, extra = _load(source, spec)
        extra = {**extra, "converted_from": Path(source).name, "spec_source": spec_source}
        with target:
            save_checkpoint(model, model_spec, target.stage, extra)
            target.commit()
        if not quiet:
            typer.echo(f"{source} -> {out_dir}: {model_spec.name} (spec from {spec_source})")


def _load(source: Path, spec: Optional[str]):
    """(model, spec, where the spec came from, sidecar extras) of any checkpoint, TL 4 bridge state dicts included."""
    from arithlens.model import load_checkpoint

    ck = load_checkpoint(source, spec=spec)
    return ck.model, ck.spec, ck.spec_source, ck.extra
