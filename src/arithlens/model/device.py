"""The one device resolver: `--device auto|cpu|cuda` on the command line and `device=` in the API both go here."""

from __future__ import annotations

import re
from typing import Any

from arithlens.errors import ArgumentTypeError, ArithLensError

CHOICES = ("auto", "cpu", "cuda")


def pick_device(choice: Any, flag: str = "--device") -> str:
    """auto -> cuda when available else cpu; `cpu`, `cuda` or `cuda:N` (a torch.device too) if it exists here;
    anything else is a one-line error (torch's own would be a RuntimeError or an AssertionError)."""
    import torch

    if isinstance(choice, torch.device):
        choice = str(choice)
    if hasattr(choice, "value") and isinstance(choice.value, str):  # the CLI's Device enum
        choice = choice.value
    if not isinstance(choice, str):
        raise ArgumentTypeError(f"{flag} must be auto, cpu or cuda, not {type(choice).__name__} {choice!r}")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    m = re.fullmatch(r"cuda(?::([0-9]+))?", choice)
    if choice != "cpu" and m is None:
        raise ArithLensError(f"{flag} must be auto, cpu or cuda, not {choice!r}")
    if m is not None:
        if not torch.cuda.is_available():
            raise ArithLensError(f"{flag} {choice}: no CUDA device is available on this machine")
        if m[1] is not None and int(m[1]) >= torch.cuda.device_count():
            raise ArithLensError(f"{flag} {choice}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return choice
