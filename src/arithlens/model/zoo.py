"""The models shipped inside the package (`arithlens/models/<name>/model.safetensors + model.json`), and
how a `--model` argument becomes a checkpoint path: a shipped name, an op alias (`mix`, `add`) or a path.

The directory can be pointed elsewhere with the environment variable ARITHLENS_MODELS_DIR (tests do).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arithlens.errors import ArithLensError, CheckpointError, NotFoundError
from arithlens.model.checkpoint import SIDECAR_FILE, TORCH_SUFFIXES, WEIGHTS_FILE
from arithlens.model.spec import OPS, ModelSpec

MODELS_ENV = "ARITHLENS_MODELS_DIR"
DEFAULT_OP, DEFAULT_LAYERS = "mix", 3


@dataclass(frozen=True)
class ShippedModel:
    name: str  # the directory name, normally the spec name
    path: Path  # the directory
    spec: ModelSpec
    card: dict[str, Any]  # the sidecar's keys other than format and spec ("training", "accuracy", ...)

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())

    def summary(self) -> dict[str, Any]:
        """What `arithlens models` shows: shape, accuracy from the card, size on disk."""
        s = self.spec
        return {
            "name": self.name, "op": s.op, "digits": s.n_digits, "layers": s.n_layers, "heads": s.n_heads,
            "d_model": s.d_model, "d_head": s.d_head, "d_mlp": s.d_mlp, "accuracy": card_accuracy(self.card),
            "size_bytes": self.size_bytes, "path": str(self.path),
        }


def models_dir() -> Path:
    """Where shipped models live: $ARITHLENS_MODELS_DIR, else `arithlens/models` in the package."""
    env = os.environ.get(MODELS_ENV)
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


def list_models(directory: str | os.PathLike | None = None) -> list[ShippedModel]:
    """Every `<dir>/<name>/` holding model.safetensors and model.json, sorted by name."""
    root = models_dir() if directory is None else Path(directory)
    if not root.is_dir():
        return []
    return [_read(d) for d in sorted(root.iterdir()) if (d / WEIGHTS_FILE).is_file() and (d / SIDECAR_FILE).is_file()]


def default_model_name(directory: str | os.PathLike | None = None) -> str:
    """The model commands use without `--model`: one whose card says `"default": true`, else the first
    mixed add/sub model with 3 layers, else the first mixed one, else the first shipped one."""
    models = list_models(directory)
    if not models:
        raise ArithLensError(
            f"no model is shipped in '{models_dir() if directory is None else directory}'; "
            "pass --model PATH (a checkpoint directory, .safetensors or .pth file)")
    return _default(models).name


def _default(models: list[ShippedModel]) -> ShippedModel:
    return min(models, key=lambda m: (m.card.get("default") is not True, m.spec.op != DEFAULT_OP,
                                      m.spec.n_layers != DEFAULT_LAYERS))


def resolve_model(name_or_path: str | os.PathLike | None = None, directory: str | os.PathLike | None = None) -> Path:
    """A checkpoint path for `--model`: None -> the default model; a shipped name (directory or spec name);
    an op alias such as `mix` naming the default model if it is of that op, else the one shipped model of that
    op; else an existing path.
    Shipped names win over a same-named local path (write `./mix` for the path)."""
    if name_or_path is None:
        name_or_path = default_model_name(directory)
    text = str(name_or_path)
    models = list_models(directory)
    for m in models:
        if text in (m.name, m.spec.name, m.spec.base_name):
            return m.path
    if text in OPS:
        same_op = [m for m in models if m.spec.op == text]
        if models and _default(models) in same_op:  # the default wins among seeds of one op
            return _default(models).path
        if len(same_op) == 1:
            return same_op[0].path
        if len(same_op) > 1:
            raise ArithLensError(
                f"model alias '{text}' matches {len(same_op)} shipped models ({_names(same_op)}); give the full name")
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = _names(models) if models else "none are shipped"
    hint = f" (checkpoints are directories, .safetensors or {'/'.join(TORCH_SUFFIXES)} files)"
    raise NotFoundError(f"unknown model '{text}': not a shipped model ({shipped}) or an existing path{hint}")


def card_accuracy(card: dict[str, Any]) -> str | None:
    """A short accuracy line from a card's "accuracy" entry (the JSON of `arithlens eval`), if it has one."""
    acc = card.get("accuracy")
    if isinstance(acc, dict) and "wrong" in acc and "questions" in acc:
        return f"{acc['wrong']} wrong / {acc['questions']:,}"
    if isinstance(acc, (int, float)) and not isinstance(acc, bool):
        return f"{acc:.6f}"
    return None


def _read(directory: Path) -> ShippedModel:
    sidecar = directory / SIDECAR_FILE
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        spec = ModelSpec.from_dict(data["spec"])
    except (OSError, ValueError, KeyError, TypeError) as exc:  # ArithLensError is a ValueError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"shipped model card '{sidecar}' is unreadable: {reason}") from None
    card = {k: v for k, v in data.items() if k not in ("format", "spec")}
    return ShippedModel(name=directory.name, path=directory, spec=spec, card=card)


def _names(models: list[ShippedModel]) -> str:
    return ", ".join(m.name for m in models)


__all__ = ["MODELS_ENV", "ShippedModel", "card_accuracy", "default_model_name", "list_models", "models_dir",
           "resolve_model"]
