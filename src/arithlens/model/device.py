"""Device choice for `--device auto|cpu|cuda`, shared by every command that runs a model."""

from __future__ import annotations

from arithlens.errors import ArithLensError


def pick_device(choice: str) -> str:
    """auto -> cuda when available else cpu; an unavailable or unknown device is a one-line error."""
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice not in ("cpu", "cuda"):
        raise ArithLensError(f"--device must be auto, cpu or cuda, not {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ArithLensError("--device cuda: no CUDA device is available on this machine")
    return choice
