"""Interactive (plotly) versions of the figures a person hovers over: PCA scatters and quanta maps.

plotly is the optional extra `arithlens[interactive]`; `available()` says whether it is installed, and every
caller falls back to the static matplotlib figure without it. `to_html` embeds a figure without plotly.js,
which the HTML report includes once (`plotly_js()`), so the report stays offline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from arithlens.errors import ArithLensError

CASE_COLOURS = {8: "red", 9: "green", 10: "blue", None: "grey"}
WORD = {"ADD": "carry", "SUB": "borrow", "NEG": "borrow"}


def available() -> bool:
    try:
        import plotly  # noqa: F401
    except ImportError:
        return False
    return True


def _go():
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise ArithLensError("interactive figures need plotly: pip install 'arithlens[interactive]'") from None
    return go


def _label(case, carry, qtype: str) -> str:
    word = WORD.get(qtype, "carry")
    cls = f"T{case}" if case is not None else "no class"
    return cls if carry is None else f"{cls}, {'' if carry else 'no '}{word} out"


def pca_scatter(pca, title: str | None = None) -> Any:
    """A `NodePCA` as a plotly scatter of PC0/PC1: colour = T class, triangle = carry/borrow out; hover shows
    the question, its answer, qtype, class and carry/borrow label."""
    go = _go()
    x = pca.array()
    fig = go.Figure()
    groups: dict[tuple, list[int]] = {}
    for i, (case, carry) in enumerate(zip(pca.case, pca.carry)):
        groups.setdefault((case, carry), []).append(i)
    for (case, carry), rows in sorted(groups.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1] or 0)):
        text = [f"{pca.question[i]}{pca.answer[i]}<br>{pca.qtype[i]} {_label(case, carry, pca.qtype[i])}"
                for i in rows]
        fig.add_trace(go.Scatter(
            x=x[rows, 0], y=x[rows, 1], mode="markers", text=text, hoverinfo="text",
            name=_label(case, carry, pca.qtype[rows[0]]),
            marker={"color": CASE_COLOURS.get(case, "grey"), "symbol": "triangle-up" if carry else "circle",
                    "size": 6, "opacity": 0.6}))
    evr = list(pca.evr) + [float("nan")]
    fig.update_layout(title=title or f"{pca.node} of {pca.model}: {pca.n} questions",
                      xaxis_title=f"PC0 ({100 * evr[0]:.1f}%)", yaxis_title=f"PC1 ({100 * evr[1]:.1f}%)",
                      template="plotly_white", width=640, height=480)
    return fig


def study_pca_figure(data: Mapping) -> Any:
    """A node study's PCA (one panel per qtype) with hover: qtype, class, carry/borrow label, row."""
    go = _go()
    from plotly.subplots import make_subplots

    rep = data["representation"]
    ops = list(rep)
    fig = make_subplots(rows=1, cols=len(ops), subplot_titles=[f"{op}: EVR {100 * rep[op]['evr'][0]:.0f}% / "
                                                               f"{100 * rep[op]['evr'][1]:.0f}%" for op in ops])
    for col, op in enumerate(ops, start=1):
        r = rep[op]
        scores = np.asarray(r["scores"], dtype=float)
        case, carry = np.asarray(r["case"]), np.asarray(r["carry"])
        for c in (8, 9, 10):
            for flag in (0, 1):
                rows = np.flatnonzero((case == c) & (carry == flag))
                if not len(rows):
                    continue
                label = _label(c, flag, op)
                fig.add_trace(go.Scatter(
                    x=scores[rows, 0], y=scores[rows, 1], mode="markers", name=f"{op} {label}",
                    text=[f"{op} {label}<br>row {i}" for i in rows], hoverinfo="text", legendgroup=op,
                    marker={"color": CASE_COLOURS[c], "symbol": "triangle-up" if flag else "circle", "size": 5,
                            "opacity": 0.6}), row=1, col=col)
    fig.update_layout(title=f"{data['model']}: output of {data['node']} on tricase questions at digit "
                            f"{data['study_digit']}", template="plotly_white", height=460, width=420 * len(ops))
    return fig


def quanta_map(nodes: Iterable, name: str, layout, title: str | None = None) -> Any:
    """A quanta map as a plotly heat map of (row = layer/head, column = position): cell text as in the static
    map; hover shows the node's every tag (failure rate, impact, complexity, attention, Algo rates)."""
    go = _go()
    from arithlens.report.quanta_maps import map_grid, named_map_cells

    nodes = list(nodes)
    _, cells = named_map_cells(nodes, name, layout)
    cols, rows = map_grid(cells)
    by_node = {un.node: un for un in nodes}
    z = np.full((len(rows), len(cols)), np.nan)
    text = [["" for _ in cols] for _ in rows]
    hover = [["" for _ in cols] for _ in rows]
    col_index = {p: j for j, p in enumerate(cols)}
    row_index = {r.row_name: i for i, r in enumerate(rows)}
    for node, (cell_text, colour) in cells.items():
        i, j = row_index[node.row_name], col_index[node.position]
        z[i, j] = colour
        text[i][j] = cell_text
        tags = by_node[node].tags if node in by_node else []
        hover[i][j] = f"<b>{node.name}</b><br>" + "<br>".join(str(t) for t in tags)
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"P{p} {layout.meaning(p)}" for p in cols], y=[r.row_name for r in rows], text=text,
        texttemplate="%{text}", customdata=hover, hovertemplate="%{customdata}<extra></extra>",
        colorscale="YlGn", showscale=False, xgap=2, ygap=2))
    fig.update_layout(title=title or name, template="plotly_white", yaxis={"autorange": "reversed"},
                      height=120 + 34 * len(rows), width=160 + 80 * len(cols))
    return fig


def to_html(fig) -> str:
    """A `<div>` for the figure, without plotly.js (include `plotly_js()` once per page)."""
    return fig.to_html(full_html=False, include_plotlyjs=False)


def plotly_js() -> str:
    """plotly.js itself, inline in a `<script>` (no network at view time)."""
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def report_section(analysis) -> str:
    """The HTML report's interactive section: plotly.js once, then the purpose and failure maps with hover
    and each node study's PCA with hover."""
    from html import escape

    from arithlens.report.quanta_maps import catalogue, map_cells

    layout = analysis.spec.layout
    parts = [plotly_js(), "<p>Hover over a cell or a point for its tags, class and carry/borrow label.</p>"]
    for name in ("MathsPurposePerNode", "FailureFrequency"):
        if map_cells(analysis.nodes, catalogue(layout)[name], layout):
            parts.append(f"<h3>{escape(catalogue(layout)[name].title)}</h3>"
                         + to_html(quanta_map(analysis.nodes, name, layout)))
    for entry in analysis.studies:
        if entry.data is not None:
            parts.append(f"<h3>{escape(entry.name)}: PCA</h3>" + to_html(study_pca_figure(entry.data)))
    return "".join(parts)
