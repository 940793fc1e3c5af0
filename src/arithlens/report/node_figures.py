"""Figures of a node study, drawn from its JSON object: the per-qtype PCA grid (T8/T9/T10 red/green/blue),
attention bars per qtype, the necessity heat map and the 10x10 grids of mean output over a digit pair.

Each figure is written as `<out>/<node>_<name>.png` and `.svg`, atomically, with a deterministic SVG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from arithlens.report.figures import (TITLE_Y, Job, figure_job, fixed_margins, fixed_ticks, frozen_ticks, new_figure,
                                      save_figure, text_width)

FORMATS = ("png", "svg")
CASE_COLOURS = {8: "red", 9: "green", 10: "blue"}
QTYPE_COLOURS = {"ADD": "tab:green", "SUB": "tab:red", "NEG": "tab:blue"}
CASE_MEANING = {"ADD": {8: "T8 (sum<9)", 9: "T9 (sum=9)", 10: "T10 (sum>9)"},
                "SUB": {8: "T8 (Dt>D't)", 9: "T9 (Dt=D't)", 10: "T10 (Dt<D't)"},
                "NEG": {8: "T8 (Dt>D't)", 9: "T9 (Dt=D't)", 10: "T10 (Dt<D't)"}}
DIGITS = [str(d) for d in range(10)]
ABLATION_TITLES = {"mean": "mean ablation", "resample": "resample ablation",
                   "same_class_mean": "same-class mean", "other_class_mean": "other-class mean"}


def write_node_figures(data: dict, out_dir: str | Path, formats: Sequence[str] = FORMATS) -> dict[str, list[Path]]:
    """All figures of one study; returns {figure name: [paths]}."""
    return {name: fn(*args) for name, (fn, args) in node_figure_jobs(data, out_dir, formats).items()}


def node_figure_jobs(data: dict, out_dir: str | Path, formats: Sequence[str] = FORMATS) -> dict[str, Job]:
    """{figure name: job} for `arithlens.report.figures.run_jobs`: each job draws one figure and writes it."""
    names = ["pca", *(["attention"] if data.get("attention") else []), "necessity", "grid"]
    return {name: (draw_node_figure, (name, data, out_dir, formats)) for name in names}


@figure_job
def draw_node_figure(name: str, data: dict, out_dir: str | Path, formats: Sequence[str]) -> list[Path]:
    """Draw figure `name` ("pca", "attention", "necessity", "grid") of a study and write it."""
    draw = {"pca": pca_figure, "attention": attention_figure, "necessity": necessity_figure, "grid": grid_figure}
    return _save(draw[name](data), out_dir, f"{data['node']}_{name}", formats)


def _save(fig: Figure, out_dir: str | Path, stem: str, formats: Sequence[str]) -> list[Path]:
    # The margins are fixed to fit the labels; a tight bounding box would draw every figure twice (once to measure
    # it) for a few pixels of margin.
    return save_figure(fig, out_dir, stem, formats, dpi=120, tight=False)


def _figure(width: float, height: float, **margins: float) -> Figure:
    """A figure whose subplots take fixed margins (inches): a constrained layout cost half the drawing time of these
    figures, whose titles, labels and legends have sizes known in advance (`benchmarks/bench_figures.py`)."""
    return fixed_margins(new_figure(width, height), **margins)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


# ---------------------------------------------------------------------------------------------------


def pca_figure(data: dict) -> Figure:
    """PC0/PC1 of the node's output per qtype: colour = T class, marker = real carry/borrow out of digit t."""
    rep = data["representation"]
    ops = list(rep)
    t = data["study_digit"]
    # Two-line titles above, the legend hung below each axes.
    fig = _figure(4.3 * len(ops), 5.0, left=0.6, right=0.4, top=0.85, bottom=1.0, wspace=0.22)
    axes = fig.subplots(1, len(ops), squeeze=False)[0]
    for ax, op in zip(axes, ops):
        r = rep[op]
        scores = np.asarray(r["scores"], dtype=float)
        case, carry = np.asarray(r["case"]), np.asarray(r["carry"])
        for c in (8, 9, 10):
            for flag, marker in ((0, "o"), (1, "^")):
                rows = (case == c) & (carry == flag)
                if rows.any():
                    ax.scatter(scores[rows, 0], scores[rows, 1], s=14, marker=marker, c=CASE_COLOURS[c],
                               alpha=0.55, linewidths=0)
        evr = r["evr"]
        word = "carry" if op == "ADD" else "borrow"
        ax.set_title(f"{data['node']} {op}, digit {t}: EVR {_pct(evr[0])} / {_pct(evr[1])}, silhouette "
                     f"{_fmt(r['silhouette_class'])}\nprobe: {word} out {_pct(r['probe_carry']['accuracy'])} "
                     f"(pair-only ceiling {_pct(r['carry_ceiling_from_pair'])}), "
                     f"{r['pair_rule'].replace('t', str(t))} {_pct(r['probe_pair']['accuracy'])}", fontsize=9, y=TITLE_Y)
        ax.set_xlabel("PC0")
        ax.set_ylabel("PC1")
        ax.tick_params(labelsize=7)
        frozen_ticks(ax, "x")
        frozen_ticks(ax, "y")
        handles = [Line2D([], [], marker="s", ls="", color=CASE_COLOURS[c], label=CASE_MEANING[op][c])
                   for c in (8, 9, 10) if (case == c).any()]
        handles += [Line2D([], [], marker="o", ls="", color="grey", label=f"no {word} out"),
                    Line2D([], [], marker="^", ls="", color="grey", label=f"{word} out")]
        ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3,
                  frameon=False)
    fig.suptitle(f"{data['model']}: output of {data['node']} on tricase questions at digit {t}", fontsize=10)
    return fig


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def attention_figure(data: dict) -> Figure:
    att = data["attention"]
    names = att["meanings"]
    per = att["per_qtype"]
    x = np.arange(len(names))
    fig = _figure(max(6.0, 0.42 * len(names) + 1.5), 3.6, left=0.7, right=0.15, top=0.35, bottom=0.5)
    ax = fig.subplots()
    width = 0.8 / len(per)
    for i, (op, row) in enumerate(per.items()):
        ax.bar(x + (i - (len(per) - 1) / 2) * width, row, width, color=QTYPE_COLOURS.get(op), label=op)
    ax.set_ylim(0, 1.05)
    ax.tick_params(axis="x", labelsize=7)
    fixed_ticks(ax, "x", x, [f"{m}\nP{p}" for p, m in zip(att["positions"], names)])
    ax.set_ylabel("mean attention")
    ax.set_title(f"{data['node']}: attention from P{data['position']} ({data['position_token']}) per qtype",
                 fontsize=10, y=TITLE_Y)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def necessity_figure(data: dict) -> Figure:
    """Rows: qtype x T class x real carry; columns: answer tokens; colour: share of questions with that token
    wrong under each ablation."""
    nec = data["necessity"]
    groups = nec["groups"]
    names = nec["answer_names"]
    kinds = [a for a in nec["ablations"] if any(a in g for g in groups)]
    labels = [f"{g['qtype']} {g['case']} {'' if g['carry_out'] else 'no '}"
              f"{'carry' if g['qtype'] == 'ADD' else 'borrow'}  n={g['n']}, clean {_pct1(g['clean']['fail']['rate'])}"
              for g in groups]
    fig = new_figure(2.0 + 3.2 * len(kinds), max(2.6, 0.8 + 0.32 * len(groups)))
    # The row labels' width sets the left margin (8% over: the hinted glyphs at the saving dpi come out wider than
    # measured at the figure's), the colour bar and its ticks take the right one.
    fixed_margins(fig, left=1.08 * text_width(fig, labels, 7) + 0.2, right=0.55, top=0.75, bottom=0.3, wspace=0.06)
    axes = fig.subplots(1, len(kinds), squeeze=False, sharey=True)[0]
    image = None
    for ax, kind in zip(axes, kinds):
        m = np.array([g[kind]["wrong_by_answer"] if kind in g else [np.nan] * len(names) for g in groups])
        image = ax.imshow(m, cmap="Reds", vmin=0, vmax=1, aspect="auto")
        for (i, j), v in np.ndenumerate(m):
            if np.isfinite(v) and v >= 0.01:
                ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=6.5,
                        color="white" if v > 0.6 else "black")
        fails = [g[kind]["fail"]["rate"] if kind in g else None for g in groups]
        ax.set_title(f"{ABLATION_TITLES[kind]}\n(question failures "
                     f"{_pct1(np.nanmean([f for f in fails if f is not None]))}, mean of rows)", fontsize=9, y=TITLE_Y)
        ax.tick_params(labelsize=7)
        fixed_ticks(ax, "x", range(len(names)), names)
        fixed_ticks(ax, "y", range(len(groups)), labels)  # labels on the first axes only (shared y)
        for y in range(1, len(groups)):
            if groups[y]["qtype"] != groups[y - 1]["qtype"]:
                ax.axhline(y - 0.5, color="black", lw=0.8)
    fig.suptitle(f"{data['node']}: % of questions with each answer token wrong when the node is ablated "
                 f"(digit {data['study_digit']} classes)", fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=list(axes), fraction=0.02, pad=0.01)
    return fig


def _pct1(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def grid_figure(data: dict) -> Figure:
    """Mean node output per (Dt, D't) per qtype, projected on the top two PCs of all cell means."""
    grid = data["grid"]
    t = grid["digit"]
    proj = grid["projection"]
    ops = list(proj)
    # A two-line title above, each row's colour bar on the right.
    fig = _figure(3.3 * len(ops) + 0.8, 7.0, left=0.5, right=0.75, top=0.85, bottom=0.45, wspace=0.25, hspace=0.3)
    axes = fig.subplots(2, len(ops), squeeze=False)
    for row, comp in enumerate(("pc0", "pc1")):
        values = [np.array(proj[op][comp], dtype=float) for op in ops]
        finite = np.concatenate([v[np.isfinite(v)] for v in values])
        lim = float(np.abs(finite).max()) if finite.size else 1.0
        image = None
        for ax, op, v in zip(axes[row], ops, values):
            image = ax.imshow(v, cmap="coolwarm", vmin=-lim, vmax=lim, origin="lower")
            _boundary(ax, op)
            ax.set_title(f"{op}: {comp.upper()} (EVR {_pct(grid['evr'][row])})", fontsize=9, y=TITLE_Y)
            ax.set_xlabel(f"D'{t}", fontsize=8)
            ax.set_ylabel(f"D{t}", fontsize=8)
            ax.tick_params(labelsize=7)
            fixed_ticks(ax, "x", range(10), DIGITS)
            fixed_ticks(ax, "y", range(10), DIGITS)
        fig.colorbar(image, ax=list(axes[row]), fraction=0.02, pad=0.02)
    fig.suptitle(f"{data['node']}: mean output over (D{t}, D'{t}) per qtype; variance explained by the pair "
                 f"{_pct1(grid['r2_pair'])}, by the qtype {_pct1(grid['r2_qtype'])}, by pair x qtype "
                 f"{_pct1(grid['r2_pair_x_qtype'])}\n(black line: where the pair makes a carry/borrow; blank: pair "
                 f"not in the qtype's set)", fontsize=9)
    return fig


def _boundary(ax, op: str) -> None:
    """Outline (along cell edges) the cells where the digit pair itself makes a carry (ADD) or a borrow."""
    col, row = np.meshgrid(np.arange(10), np.arange(10))  # column = D't, row = Dt
    inside = {"ADD": col + row >= 10, "SUB": row < col, "NEG": row > col}[op]
    segments = []
    for r in range(10):
        for c in range(10):
            if r + 1 < 10 and inside[r, c] != inside[r + 1, c]:
                segments.append([(c - 0.5, r + 0.5), (c + 0.5, r + 0.5)])
            if c + 1 < 10 and inside[r, c] != inside[r, c + 1]:
                segments.append([(c + 0.5, r - 0.5), (c + 0.5, r + 0.5)])
    ax.add_collection(LineCollection(segments, colors="black", linewidths=1.3))  # one artist: ~20x faster to draw
