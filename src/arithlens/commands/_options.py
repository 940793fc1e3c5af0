"""Options several commands share, spelled and explained once (a module starting with _ registers no command)."""

from __future__ import annotations

from typing import Any

import typer


def model_option() -> Any:
    return typer.Option(None, "--model", help="Model name or checkpoint path (default: the shipped model).")


def sweep_threads_option() -> Any:
    return typer.Option(
        None, "--threads", help="CPU cores to use: ablation sweeps run this many worker threads (default: torch's).")


def json_option(what: str = "the result") -> Any:
    return typer.Option(False, "--json", help=f"Print {what} as one JSON object.")


def quiet_option() -> Any:
    return typer.Option(False, "--quiet", help="No progress bar.")
