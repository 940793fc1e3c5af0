"""Writing figures: every format rendered in memory, then written atomically (no half-written file is ever seen).

Figures are `matplotlib.figure.Figure` objects drawn without pyplot, so nothing here touches global state
(no backend switch, no open-figure registry) and figures can be made from worker threads. Drawing is pure
Python and holds the GIL, so `run_jobs` draws many figures in worker processes instead, one per core.
"""

from __future__ import annotations

import functools
import gc
import io
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import cbook
from matplotlib.artist import Artist, allow_rasterization
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import TICKDOWN, TICKLEFT, TICKRIGHT, TICKUP, Line2D
from matplotlib.text import Text
from matplotlib.ticker import NullFormatter, NullLocator
from matplotlib.transforms import Bbox, IdentityTransform, blended_transform_factory

from arithlens.io import write_atomic


# An axes title given its height (1.0: just above the axes, where matplotlib puts it when nothing is drawn over the
# axes' top edge) is not placed again at each drawing: that search measured every tick label of the axes, a
# quarter of a node-study figure's drawing time (`benchmarks/bench_figures.py`).
TITLE_Y = 1.0
TIGHT_PAD = 0.1  # inches around a tight bounding box
# zlib level of the PNGs: 3 encodes in two thirds of the default's (6) time, files ~9% larger
# (`benchmarks/bench_report_figures.py`)
PNG_COMPRESS_LEVEL = 3


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


class FixedTicks(Artist):
    """The major ticks of one axis of an axes at fixed places, drawn as matplotlib draws its own: the same marks,
    labels and axis-label position, so the same pixels (`tests/test_figures_layout.py`), for a third of the cost.

    Matplotlib makes a `Tick` per place (three lines and two texts, two of them never shown, styled from rcParams
    and copied from the first tick) and measures every label twice per drawing; here the marks are one line of
    markers and the labels plain texts. The axis keeps its label, placed at each drawing below (left of) the
    labels as matplotlib places it; the axis itself then draws no ticks (a `NullLocator`). Made by `fixed_ticks`.
    """

    def __init__(self, ax, which: str, locs: Sequence[float], labels: Sequence[str]):
        super().__init__()
        axis = ax.xaxis if which == "x" else ax.yaxis
        side = "bottom" if which == "x" else "left"
        rc = matplotlib.rcParams
        params = axis.get_tick_params()  # what tick_params set; the rest as a new tick takes it: from rcParams

        def param(key: str, rc_key: str):
            return params.get(key, rc[f"{which}tick.{rc_key}"])

        size, width = param("length", "major.size"), param("width", "major.width")
        direction = param("direction", "direction")
        color = param("color", "color")
        labelcolor = param("labelcolor", "labelcolor")
        if cbook._str_equal(labelcolor, "inherit"):
            labelcolor = rc[f"{which}tick.color"]
        self._out = {"in": 0.0, "inout": 0.5, "out": 1.0}[direction]  # the share of a mark outside the axes
        self._size = size
        pad = param("pad", "major.pad") + size * self._out
        self.ax, self.axis, self.which, self.side = ax, axis, which, side
        self.locs = np.asarray(locs, dtype=float)
        marker = {"x": {"out": TICKDOWN, "in": TICKUP, "inout": "|"},
                  "y": {"out": TICKLEFT, "in": TICKRIGHT, "inout": "_"}}[which][direction]
        transform = ax.get_xaxis_transform("tick1") if which == "x" else ax.get_yaxis_transform("tick1")
        self.marks = Line2D([], [], color=color, linestyle="none", markeredgecolor=color, markersize=size,
                            markeredgewidth=width, marker=marker, transform=transform,
                            visible=param(side, side))
        text_transform, va, ha = (ax.get_xaxis_text1_transform(pad) if which == "x"
                                  else ax.get_yaxis_text1_transform(pad))
        self.labels = []
        if param(f"label{side}", f"label{side}"):
            size_pt = param("labelsize", "labelsize")
            self.labels = [Text(x if which == "x" else 0, 0 if which == "x" else x, str(label), fontsize=size_pt,
                                color=labelcolor, verticalalignment=va, horizontalalignment=ha,
                                transform=text_transform)
                           for x, label in zip(self.locs, labels)]
        for artist in (self.marks, *self.labels):
            artist.set_figure(ax.get_figure(root=False))
        self.set_figure(ax.get_figure(root=False))
        self.set_zorder(axis.get_zorder())  # drawn where the axis would draw them: just before it
        self.set_clip_on(False)

    def _shown(self) -> np.ndarray:
        """Which places lie in the view (matplotlib's test: the interval, widened by 1e-10 of its length)."""
        low, high = sorted(self.axis.get_view_interval())
        slack = (high - low) * 1e-10
        return (self.locs >= low - slack) & (self.locs <= high + slack)

    def get_children(self):
        return [self.marks, *self.labels]

    def _drawn_labels(self, shown: np.ndarray) -> list[Text]:
        return [t for t, s in zip(self.labels, shown) if s and t.get_text()] if self.labels else []

    def get_window_extent(self, renderer=None):
        shown = self._shown()
        boxes = [t.get_window_extent(renderer) for t in self._drawn_labels(shown)]
        if self.marks.get_visible() and shown.any():
            self._set_marks(shown)
            boxes.append(self.marks.get_window_extent(renderer))
        return Bbox.union(boxes) if boxes else Bbox.null()

    def _set_marks(self, shown: np.ndarray) -> None:
        locs = self.locs[shown]
        zeros = np.zeros(len(locs))
        self.marks.set_data((locs, zeros) if self.which == "x" else (zeros, locs))

    @allow_rasterization
    def draw(self, renderer):
        if not self.get_visible():
            return
        shown = self._shown()
        self._set_marks(shown)
        if shown.any():
            self.marks.draw(renderer)
        labels = self._drawn_labels(shown)
        for text in labels:
            text.draw(renderer)
        self._place_axis_label(renderer, labels, shown.any() and self.marks.get_visible())
        self.stale = False

    def _place_axis_label(self, renderer, labels: list[Text], marked: bool) -> None:
        """Where matplotlib puts the axis label: `labelpad` points beyond the tick labels and the spine (with the
        marks' length outside it)."""
        dpi = self.get_figure(root=True).dpi
        spine = self.ax.spines.get(self.side, self.ax).get_window_extent(renderer)
        boxes = [t.get_window_extent(renderer) for t in labels]
        if marked:
            padded = spine.frozen()
            padout, padin = self._out * self._size / 72 * dpi, (1 - self._out) * self._size / 72 * dpi
            if self.which == "x":
                padded.y0, padded.y1 = padded.y0 - padout, padded.y1 + padin
            else:
                padded.x0, padded.x1 = padded.x0 - padout, padded.x1 + padin
            spine = Bbox.union([spine, padded])
        bbox = Bbox.union([*boxes, spine])
        pad = self.axis.labelpad * dpi / 72
        x, y = self.axis.label.get_position()
        if self.which == "x":
            self.axis.set_label_coords(x, bbox.y0 - pad, transform=blended_transform_factory(self.ax.transAxes,
                                                                                              IdentityTransform()))
        else:
            self.axis.set_label_coords(bbox.x0 - pad, y, transform=blended_transform_factory(IdentityTransform(),
                                                                                              self.ax.transAxes))


def fixed_ticks(ax, which: str, locs: Sequence[float], labels: Sequence[str] | None = None, *,
                widen: bool = True) -> FixedTicks:
    """Major ticks of `ax`'s x or y axis (`which`) at `locs` with `labels` (default: what the axis's formatter
    writes), drawn by a `FixedTicks`: the pixels of `set_xticks(locs, labels)` (which also widens the view to
    show every place), styled as the axis's tick_params say (set them first). Only for the bottom x and left y
    axis of a plain axes."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    locs = list(locs)
    if widen and locs:  # as set_ticks does: the view widened to show every place, on every axes sharing it
        shared = ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()
        for other in shared.get_siblings(ax):
            (other.xaxis if which == "x" else other.yaxis).set_view_interval(min(locs), max(locs))
    if labels is None:
        labels = axis.major.formatter.format_ticks(locs)
    ticks = FixedTicks(ax, which, locs, labels)
    axis.set_major_locator(NullLocator())
    axis.set_major_formatter(NullFormatter())
    ax.add_artist(ticks)
    ticks.set_clip_path(None)
    return ticks


def frozen_ticks(ax, which: str) -> FixedTicks | None:
    """The ticks matplotlib would draw on `ax`'s x or y axis now (its locator on the current view, which is
    frozen: autoscaling is turned off), drawn by a `FixedTicks`. None, and the axis left alone, where its
    formatter writes an offset or a scale (`1e3`) that only the axis can draw."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    low, high = (ax.get_xlim if which == "x" else ax.get_ylim)()  # autoscales now if it must
    locs = axis.get_majorticklocs()
    labels = axis.major.formatter.format_ticks(locs)
    if axis.major.formatter.get_offset():
        return None
    (ax.set_xlim if which == "x" else ax.set_ylim)(low, high)
    return fixed_ticks(ax, which, locs, labels, widen=False)  # places outside the view are not drawn


def tight_box(fig: Figure, dpi: float) -> Bbox:
    """The box `savefig(bbox_inches="tight", pad_inches=TIGHT_PAD)` crops a raster figure to at `dpi`, in inches,
    measured as matplotlib measures it but without drawing the figure first (every artist places itself when
    asked for its extent), so saving draws it once."""
    original = fig.dpi
    fig.dpi = dpi
    try:
        renderer = fig.canvas.get_renderer()
        if any(ax.tables for ax in fig.axes):
            # A table lays its cells out again whenever it is measured or drawn, each time moving them by a float
            # rounding, which can move a snapped line by a pixel: measured twice here, it is measured and drawn
            # as often as matplotlib's measuring drawing leaves it, and comes out with the same pixels.
            fig.get_tightbbox(renderer)
        return fig.get_tightbbox(renderer).padded(TIGHT_PAD)
    finally:
        fig.dpi = original


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
            if fmt == "png":
                # a tight box measured without a drawing first (matplotlib draws the figure once to measure it)
                box = {"bbox_inches": tight_box(fig, dpi)} if tight else {}
                fig.savefig(buf, format=fmt, dpi=dpi, pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL}, **box)
            else:
                fig.savefig(buf, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else None,
                            **({"bbox_inches": "tight", "pad_inches": TIGHT_PAD} if tight else {}))
        path = out / f"{stem}.{fmt}"
        write_atomic(path, buf.getvalue())
        paths.append(path)
    return paths


def figure_job(fn: Callable[..., list[Path]]) -> Callable[..., list[Path]]:
    """`fn` (draws and writes figures) run with the garbage collector paused, then one collection of the youngest
    generation: where the figure's objects, cycles all of them, still are.

    A figure is tens of thousands of objects that live until it is written, and every 700 new ones made the
    collector walk the young ones again, promoting them and walking them again in older generations: 10-20% of
    a figure's drawing time. Paused, they are walked once, when the figure is garbage. The pause is the
    interpreter's (other threads allocate uncollected meanwhile); nested jobs leave it to the outer one."""
    @functools.wraps(fn)
    def job(*args, **kwargs):
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()
            gc.collect(0)
    return job


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
