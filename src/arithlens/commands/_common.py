"""What every command shares: validated options, scoped thread limits and one progress reporter (a module
starting with _ registers no command). Models and devices come from `arithlens.api`."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, Optional, TextIO

import typer

from arithlens.validate import check_int, check_seed, check_threads

# The one progress-callback signature the commands hand around: (stage, done, total, detail).
ProgressFn = Callable[[str, int, Optional[int], str], None]


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


# ---------------------------------------------------------------------------------------------------
# Options: each validated once, at parse time, by the same helper in every command


def model_option() -> Any:
    return typer.Option(None, "--model", help="Model name or checkpoint path (default: the shipped model).")


def device_option() -> Any:
    return typer.Option(Device.auto, "--device", help="auto (cuda when available, else cpu), cpu or cuda.")


def threads_option(default: Optional[int] = None, help: str | None = None) -> Any:
    return typer.Option(default, "--threads", callback=lambda value: check_threads(value), help=help or (
        "CPU threads for torch, 1 to the cores this process may use (default: torch's)."))


def sweep_threads_option() -> Any:
    return threads_option(help="CPU cores to use: ablation sweeps run this many worker threads (default: torch's).")


def seed_option(default: Optional[int], help: str) -> Any:
    return typer.Option(default, "--seed", callback=lambda value: check_seed(value), help=help)


def count_option(default: Optional[int], flag: str, help: str, *, low: int = 1) -> Any:
    """A count with a lower bound here; its upper bound comes from a memory estimate once the model is known."""
    return typer.Option(default, flag, callback=lambda value: check_int(flag, value, low=low), help=help)


def json_option(what: str = "the result") -> Any:
    return typer.Option(False, "--json", help=f"Print {what} as one JSON object.")


def quiet_option() -> Any:
    return typer.Option(False, "--quiet", help="No progress bar.")


# ---------------------------------------------------------------------------------------------------
# Threads


@contextlib.contextmanager
def thread_limit(threads: Optional[int]) -> Iterator[None]:
    """torch's thread count set to `threads` inside the block and restored after (None: left as it is)."""
    import torch

    if not threads:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------------
# Progress


class Progress:
    """Progress on stderr, fed through one callback `(stage, done, total, detail)`; `advance(...)` counts
    increments. On a terminal: rich bars, one per stage. Otherwise (a log file, a pipe, a CI job): plain lines
    `stage: done/total (share), elapsed, about N s left, detail`, throttled to one per stage every
    `every_seconds` or `every_share` of the stage, plus its first and last. Quiet: every call is a no-op."""

    def __init__(self, quiet: bool, label_width: int = 9, *, stream: Optional[TextIO] = None,
                 interactive: Optional[bool] = None, clock: Callable[[], float] = time.monotonic,
                 every_seconds: float = 10.0, every_share: float = 0.1):
        self.quiet, self.bar, self.tasks, self.done = quiet, None, {}, {}
        self.stream, self.clock, self.label_width = stream, clock, label_width
        self.every_seconds, self.every_share = every_seconds, every_share
        self.started: dict[str, float] = {}  # stage -> clock at its first call
        self.last: dict[str, tuple[float, int]] = {}  # stage -> (clock, done) at its last printed line
        if quiet:
            return
        if interactive is None:
            interactive = _is_terminal(stream if stream is not None else sys.stderr)
        if not interactive:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(TextColumn(f"{{task.description:{label_width}s}}"), BarColumn(),
                                MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[detail]}"),
                                console=_stderr_console(), refresh_per_second=4)

    def __call__(self, stage: str, done: int, total: Optional[int] = None, detail: str = "") -> None:
        if self.quiet:
            return
        if self.bar is None:
            self._line(stage, done, total, detail)
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total, detail=detail)
        self.bar.update(self.tasks[stage], completed=done, total=total, detail=detail)

    def advance(self, stage: str, n: int, total: Optional[int] = None, detail: str = "") -> None:
        """Count `n` more done in `stage` (for libraries that report increments)."""
        if self.quiet:
            return
        self.done[stage] = self.done.get(stage, 0) + n
        self(stage, self.done[stage], total, detail)

    def _line(self, stage: str, done: int, total: Optional[int], detail: str) -> None:
        """One plain line when the stage starts or ends, or enough time or work has passed since the last one."""
        now = self.clock()
        first = stage not in self.started
        start = self.started.setdefault(stage, now)
        last_time, last_done = self.last.get(stage, (start, 0))
        finished = total is not None and done >= total
        moved = total is not None and total > 0 and (done - last_done) >= self.every_share * total
        if not (first or finished or moved or now - last_time >= self.every_seconds):
            return
        if (last_time, last_done) == (now, done) and not first:
            return  # the same state printed twice (e.g. a final call repeated)
        self.last[stage] = (now, done)
        elapsed = now - start
        parts = [f"{stage}: {done:,}/{total:,} ({100 * done / total:.0f}%)" if total else f"{stage}: {done:,}",
                 f"elapsed {_seconds(elapsed)}"]
        if total and 0 < done < total and elapsed > 0:
            parts.append(f"about {_seconds(elapsed / done * (total - done))} left")
        elif finished:
            parts.append("done")
        if detail:
            parts.append(detail)
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(", ".join(parts) + "\n")
        stream.flush()

    def __enter__(self) -> Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def read_json_config(path: Path) -> dict:
    """A `--config` file's JSON object; one-line errors for an unreadable file, bad JSON or another JSON type."""
    from arithlens.validate import check_finite_json, read_json_object

    data = read_json_object(path, "config")
    return check_finite_json(data, f"config '{path}'")  # NaN / Infinity: Python reads them, no option takes them
