"""Writing figures: every format rendered in memory, then written atomically (no half-written file is ever seen).

Figures are `matplotlib.figure.Figure` objects drawn without pyplot, so nothing here touches global state
(no backend switch, no open-figure registry) and figures can be made from worker threads. Drawing is pure
Python and holds the GIL, so `run_jobs` draws many figures in worker processes instead, one per core.
"""

from __future__ import annotations

import gc
import io
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from arithlens.io import write_atomic


# An axes title given its height (1.0: just above the axes, where matplotlib puts it when nothing is drawn over the
# axes' top edge) is not placed again at each drawing: that search measured every tick label of the axes, a
# quarter of a node-study figure's drawing time (`benchmarks/bench_figures.py`).
TITLE_Y = 1.0


def new_figure(width: float, height: float, **kwargs) -> Figure:
    """A pyplot-free figure on the Agg canvas."""
    fig = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(fig)
    return fig


def fixed_margins(fig: Figure, *, left: float, right: float, top: float, bottom: float,
                  wspace: float | None = None, hspace: float | None = None) -> Figure:
    """Place the subplots `fig` makes next with these margins, in inches (spaces: fractions of an axes' size).

    A layout engine (constrained, tight) measures every tick label and title in an extra drawing pass: about
    half of a figure's drawing time (`benchmarks/bench_figures.py`). Figures whose parts have known sizes take
    fixed margins instead."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                        wspace=wspace, hspace=hspace)
    return fig


def text_width(fig: Figure, texts: Sequence[str], fontsize: float) -> float:
    """The widest of `texts` at `fontsize`, in inches, measured by the figure's renderer without drawing."""
    from matplotlib.font_manager import FontProperties

    renderer, font = fig.canvas.get_renderer(), FontProperties(size=fontsize)
    return max((renderer.get_text_width_height_descent(t, font, ismath=False)[0] for t in texts), default=0.0) \
        / fig.dpi


def save_figure(fig: Figure, out_dir: str | Path, stem: str, formats: Sequence[str] = ("png",), *,
                dpi: int = 150, tight: bool = True) -> list[Path]:
    """Write `fig` as out_dir/stem.<fmt> for each format; returns the paths. SVGs keep real text and are
    byte-for-byte stable across runs (fixed hash salt, no date)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": stem}):
            fig.savefig(buf, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else None,
                        **({"bbox_inches": "tight", "pad_inches": 0.1} if tight else {}))
        path = out / f"{stem}.{fmt}"
        write_atomic(path, buf.getvalue())
        paths.append(path)
    return paths


# A job draws and writes one figure: (function, args); the function is module-level (sent to a worker by name)
# and returns the paths it wrote.
Job = tuple[Callable[..., list[Path]], tuple]
MAX_WORKERS = 8


def figure_workers(jobs: int) -> int:
    """Worker processes for `jobs` figures: one per core this process may run on, at most MAX_WORKERS and the
    number of jobs (a worker costs ~0.3 s to start, so 1 means: draw here)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_WORKERS, jobs))


def run_jobs(jobs: Sequence[Job], workers: int | None = None,
             done: Callable[[int], None] | None = None) -> list[list[Path]]:
    """Run every job, on `workers` processes (default `figure_workers`); results in job order. `done(i)` is
    called in job order as each finishes. Workers are forked where the OS allows it (no re-import of the
    package; they touch only matplotlib and numpy, never torch)."""
    workers = figure_workers(len(jobs)) if workers is None else max(1, min(workers, len(jobs)))
    out: list[list[Path]] = []
    with JobPool(workers) as pool:
        futures = [pool.submit(job) for job in jobs]
        for i, future in enumerate(futures):
            out.append(future.result())
            if done is not None:
                done(i)
    return out


class _Deferred:
    """A job run where and when its result is first asked for (the one-worker case: nothing to overlap with)."""

    def __init__(self, job: Job):
        self._job, self._done, self._value = job, False, None

    def result(self) -> list[Path]:
        if not self._done:
            fn, args = self._job
            self._value, self._done = fn(*args), True
        return self._value

    def cancel(self) -> bool:
        self._done = True
        return True


class JobPool:
    """Figure jobs drawn while other work goes on: `submit` hands a job to a worker process at once and returns
    its future, so figures are drawn on the cores the caller leaves idle (the node studies run mostly on one).
    The workers are forked at the first submit. With one worker (one core) a job runs when its result is asked
    for, in the caller. Use as a context manager: leaving it on an exception cancels what has not started."""

    def __init__(self, workers: int | None = None):
        self.workers = figure_workers(MAX_WORKERS) if workers is None else max(1, workers)
        self._pool: ProcessPoolExecutor | None = None
        self._futures: list = []

    def submit(self, job: Job) -> Future | _Deferred:
        if self.workers == 1:
            future: Future | _Deferred = _Deferred(job)
        else:
            fn, args = job
            if self._pool is None:
                method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
                self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method))
                # The first submit forks the workers. Frozen, the parent's objects are left out of the workers'
                # garbage collections, which would otherwise write to every one and so copy the parent's heap
                # page by page into each worker.
                gc.freeze()
                try:
                    future = self._pool.submit(fn, *args)
                finally:
                    gc.unfreeze()
            else:
                future = self._pool.submit(fn, *args)
        self._futures.append(future)
        return future

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for future in self._futures:
                future.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None

    def __enter__(self) -> JobPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(cancel=exc_type is not None)
