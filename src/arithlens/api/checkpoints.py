"""Models through the front door: the shipped ones, loading any checkpoint onto a resolved device, saving and
converting checkpoints. `auto` devices are resolved here, once, for the Python API and the CLI alike."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arithlens.errors import ArgumentTypeError

if TYPE_CHECKING:
    import torch

    from arithlens.model.checkpoint import Checkpoint
    from arithlens.model.spec import ModelSpec
    from arithlens.model.transformer import HookedTransformer
    from arithlens.model.zoo import ShippedModel


def models() -> list[ShippedModel]:
    """The shipped models (name, spec, model card, path), sorted by name."""
    from arithlens.model.zoo import list_models

    return list_models()


def default_model_name() -> str:
    """The name of the model used when none is given."""
    from arithlens.model.zoo import default_model_name as default

    return default()


def resolve_model(name_or_path: str | os.PathLike | None) -> Path:
    """The checkpoint path a model argument names: a shipped name, an op alias, a path, or the default (None)."""
    from arithlens.model.zoo import resolve_model as resolve

    return resolve(name_or_path)


def resolve_device(choice: Any, flag: str = "--device") -> str:
    """auto -> cuda when available else cpu; cuda without CUDA is a one-line error naming `flag`."""
    from arithlens.model.device import (
        pick_device,  # imports torch: keep it out of CLI start-up
    )

    return pick_device(getattr(choice, "value", choice), flag=flag)


def load_model(name_or_path: str | os.PathLike | None = None, device: str | torch.device | None = None, *,
               spec: str | None = None, allow_partial: bool = False) -> HookedTransformer:
    """A model in eval mode: None for the default shipped model, a shipped name or op alias (`mix`, `add`), a
    checkpoint directory, a `.safetensors` file or a TransformerLens / QuantaTools `.pth` state dict (read with
    `weights_only=True`). `device` defaults to the CPU. `spec` (a model name such as
    `mix_d6_l3_h4_t10K_s372001`) says what a bare `.pth` cannot: the operations it was trained on."""
    from arithlens.model.checkpoint import load_checkpoint as load

    if name_or_path is not None and not isinstance(name_or_path, (str, os.PathLike)):
        raise ArgumentTypeError(f"load_model takes a model name or path, not {type(name_or_path).__name__}")
    if spec is not None and not isinstance(spec, str):
        raise ArgumentTypeError(f"spec must be a model name such as mix_d6_l3_h4_t10K_s372001, not {spec!r}")
    # `device="auto"` picks what `--device auto` picks: the same resolver
    dev = resolve_device("cpu" if device is None else device, flag="device")
    return load(resolve_model(name_or_path), spec=spec, device=dev, allow_partial=allow_partial).model.eval()


def load_checkpoint(name_or_path: str | os.PathLike | None, device: Any = "cpu", *,
                    spec: str | None = None) -> Checkpoint:
    """The whole checkpoint a `--model` argument names (model, spec, model card), the model moved to the resolved
    device and in eval mode: what the commands load."""
    from arithlens.model.checkpoint import load_checkpoint as load

    dev = resolve_device(device)
    ck = load(resolve_model(name_or_path), spec=spec)
    ck.model.to(dev).eval()
    return ck


def save_checkpoint(model: HookedTransformer, spec: ModelSpec, out_dir: str | os.PathLike,
                    extra: dict | None = None) -> Path:
    """`model.safetensors` + `model.json` (the card, with `extra`) in `out_dir`."""
    from arithlens.model.checkpoint import save_checkpoint as save

    return save(model, spec, Path(out_dir), extra)


def checkpoint_files() -> dict[str, str]:
    """The file names a checkpoint folder holds: weights, the model card, and an unfinished run's state."""
    from arithlens.model.checkpoint import SIDECAR_FILE, WEIGHTS_FILE
    from arithlens.model.train import STATE_FILE

    return {"weights": WEIGHTS_FILE, "card": SIDECAR_FILE, "state": STATE_FILE}


def read_checkpoint(path: str | os.PathLike, *, spec: str | None = None) -> Checkpoint:
    """The checkpoint in one file or folder as it is (no model names resolved): what `convert` reads, TL 3.x / 4.x
    state dicts included."""
    from arithlens.model.checkpoint import load_checkpoint as load

    return load(path, spec=spec)
