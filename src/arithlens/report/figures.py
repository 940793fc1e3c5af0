"""Writing figures: every format rendered in memory, then written atomically (no half-written file is ever seen).

Figures are `matplotlib.figure.Figure` objects drawn without pyplot, so nothing here touches global state
(no backend switch, no open-figure registry) and figures can be made from worker threads.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from arithlens.model.checkpoint import write_atomic


def new_figure(width: float, height: float, **kwargs) -> Figure:
    """A pyplot-free figure on the Agg canvas."""
    fig = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(fig)
    return fig


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
