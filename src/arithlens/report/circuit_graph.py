"""The edge circuit as a picture over positions (x) and layers (y): every kept edge a line whose width and opacity
grow with |score|, every circuit node a box coloured by the family of its sub-task tags (the quanta maps' colours),
plus the text helpers the report needs (the edges a node sends and receives; useful nodes in and out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from arithlens.analysis.nodes import Node
from arithlens.analysis.subtasks import TASKS
from arithlens.report.figures import figure_job, new_figure, save_figure
from arithlens.report.quanta_maps import BACKGROUND, GREEN_YELLOW, WINTER, pale

GRAPH_STEM = "EdgeCircuitGraph"  # the figure's file stem after the model prefix
EDGES_FILE = "edge_circuit.json"  # the name the report's inline link downloads the circuit's JSON as
NO_PURPOSE = "no purpose"
EDGE_COLOUR = "#16324f"
MIN_ALPHA, MAX_WIDTH = 0.06, 3.0
GRAPH_DPI = 110


def task_family(value: str) -> str:
    """The sub-task an Algo tag value names: `A1.SC` and `A1.SC.A2` -> `SC`; `OPR` -> `OPR`."""
    parts = value.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def family_colours(families: Iterable[str]) -> dict[str, tuple[float, float, float]]:
    """One pale colour per sub-task family: ADD tasks in the quanta maps' winter shades, the others (SUB, NEG,
    MUL, attention facts) in their green-yellow shades, in the search's task order."""
    order = {name: i for i, name in enumerate(TASKS)}
    fams = sorted(set(families), key=lambda f: (order.get(f, len(order)), f))
    add = [f for f in fams if f in TASKS and TASKS[f].op == "ADD"]
    rest = [f for f in fams if f not in add]
    out = {f: pale(WINTER, i, len(add) + 1) for i, f in enumerate(add)}
    out.update({f: pale(GREEN_YELLOW, i, len(rest) + 1) for i, f in enumerate(rest)})
    return out


def _sender_row(layer: int, head: int, n_heads: int) -> int:
    """Rows bottom-up: the embedding (0), each layer's heads then its MLP, the logits on top."""
    if layer < 0:
        return 0
    return 1 + layer * (n_heads + 1) + (n_heads if head < 0 else head)


def graph_data(circuit, purposes: Mapping[str, Sequence[str]], meanings: Sequence[str], title: str) -> dict:
    """Plain data for `draw_circuit_graph` (it runs in a figure worker): each kept edge as (x0, row0, x1, row1,
    |score|), each circuit node with its row and sub-task families. `circuit` an `EdgeCircuit`; `purposes`: node
    name -> Algo tag values."""
    g = circuit.graph
    H = g.n_heads
    lines = []
    for e, s in zip((e for e, k in zip(g.edges, circuit.kept) if k), circuit.scores[circuit.kept]):
        r = e.receiver
        # a head's q, k and v inputs all land on the head's box; the logits sit one row above the last MLP
        row = _sender_row(r.layer, r.head if r.kind in ("q", "k", "v") else -1, H) if r.kind != "logits" else \
            _sender_row(g.n_layers, 0, H)
        lines.append((e.sender.position, _sender_row(e.sender.layer, e.sender.head, H), r.position, row,
                      0.0 if np.isnan(s) else abs(float(s))))
    nodes = []
    for name in circuit.nodes:
        node = Node.parse(name)
        row = _sender_row(node.layer, -1 if node.is_mlp else node.num, H)
        nodes.append((name, node.position, row, [task_family(v) for v in purposes.get(name, ())]))
    rows = ["EMB"] + [f"L{layer}" + (f"H{h}" if h < H else "MLP") for layer in range(g.n_layers)
                      for h in range(H + 1)] + ["LOGITS"]
    return {"lines": lines, "nodes": nodes, "rows": rows, "meanings": list(meanings), "title": title}


def circuit_graph_figure(data: dict) -> Figure:
    """The figure `graph_data` describes: edges under nodes, strongest edges drawn last."""
    meanings, rows = data["meanings"], data["rows"]
    fig = new_figure(max(8.0, 0.5 * len(meanings) + 2), max(4.0, 0.32 * len(rows) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    lines = sorted(data["lines"], key=lambda line: line[4])
    top = max((line[4] for line in lines), default=0.0) or 1.0
    if lines:
        weight = np.array([line[4] for line in lines]) / top
        colours = [(*_rgb(EDGE_COLOUR), MIN_ALPHA + (1 - MIN_ALPHA) * w) for w in weight]
        segments = [_path(x0, y0, x1, y1, len(rows)) for x0, y0, x1, y1, _ in lines]
        ax.add_collection(LineCollection(segments, colors=colours, linewidths=0.3 + MAX_WIDTH * weight, zorder=1))
    families = [f for *_, fams in data["nodes"] for f in fams[:1]]
    colour = family_colours(families)
    for name, x, y, fams in data["nodes"]:
        face = colour[fams[0]] if fams else BACKGROUND
        ax.add_patch(_box(x, y, face))
    ends = _ends(lines, len(rows) - 1)
    ax.scatter([x for x, _ in ends], [y for _, y in ends], s=6, c="black", zorder=3)
    ax.set_xlim(-0.6, len(meanings) - 0.4)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xticks(range(len(meanings)), [f"P{p}" for p in range(len(meanings))], fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    twin = ax.secondary_xaxis("top")
    twin.set_xticks(range(len(meanings)), meanings, fontsize=7)
    ax.grid(axis="x", color="0.92", lw=0.6)
    ax.set_axisbelow(True)
    handles = [Patch(facecolor=c, edgecolor="0.4", label=f) for f, c in colour.items()]
    handles.append(Patch(facecolor=BACKGROUND, edgecolor="0.4", label=NO_PURPOSE))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, title="sub-task",
              title_fontsize=7, frameon=False)
    ax.set_title(data["title"], fontsize=9)
    return fig


def _path(x0: float, y0: float, x1: float, y1: float, n_rows: int) -> list[tuple[float, float]]:
    """A straight line between positions; within one position an arc to the right (longer spans bow further),
    so edges up one column do not all lie on one vertical line through its boxes."""
    if x0 != x1:
        return [(x0, y0), (x1, y1)]
    bow = 0.15 + 0.3 * abs(y1 - y0) / n_rows
    t = np.linspace(0.0, 1.0, 9)
    return list(zip(x0 + bow * 4 * t * (1 - t), y0 + (y1 - y0) * t))


def _rgb(hex_colour: str) -> tuple[float, float, float]:
    return tuple(int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))


def _box(x: float, y: float, face) -> Patch:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.25, y - 0.3), 0.5, 0.6, facecolor=face, edgecolor="0.35", lw=0.6, zorder=2)


def _ends(lines: list, last: int) -> list[tuple[float, float]]:
    """The embedding and logits ends of the edges (rows 0 and `last`, which have no node boxes), once each."""
    return sorted({(x, y) for x0, y0, x1, y1, _ in lines for x, y in ((x0, y0), (x1, y1)) if y in (0, last)})


@figure_job
def draw_circuit_graph(data: dict, out_dir: str | Path, stem: str, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Draw and write the circuit graph (a figure job: module-level, plain arguments)."""
    # 110 dpi: thousands of translucent edges make a 150-dpi PNG of the default model's circuit 1.2 MB, and the
    # report embeds it
    return save_figure(circuit_graph_figure(data), out_dir, stem, formats, dpi=GRAPH_DPI)


# ---------------------------------------------------------------------------------------------------
# The report's lists


def node_edges(circuit, node: str) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(kept edges `node` sends, kept edges it receives), each as (edge name, score), largest |score| first."""
    sent, received = [], []
    for e, k, s in zip(circuit.graph.edges, circuit.kept, circuit.scores):
        if not k:
            continue
        r = e.receiver
        target = None if r.kind == "logits" else (f"P{r.position}L{r.layer}MLP" if r.kind == "mlp"
                                                   else f"P{r.position}L{r.layer}H{r.head}")
        score = float("nan") if np.isnan(s) else float(s)
        if e.sender.name == node:
            sent.append((e.name, score))
        if target == node:
            received.append((e.name, score))
    key = lambda item: -abs(item[1]) if not np.isnan(item[1]) else 0.0  # noqa: E731
    return sorted(sent, key=key), sorted(received, key=key)


def circuit_json(circuit) -> dict:
    """The circuit's kept edges with their scores, its exact rates and how it was found: the JSON the report links
    to (inline, so the page stays one file; `EdgeCircuit.to_dict` also scores the edges left out)."""
    data = {k: v for k, v in circuit.to_dict().items() if k not in ("edges", "scores")}
    data["edges"] = {name: None if np.isnan(s) else float(s)
                     for name, s in zip(circuit.edges, circuit.scores[circuit.kept])}
    return data


def useful_split(useful: Iterable[str], circuit_nodes: Iterable[str]) -> dict[str, list[str]]:
    """Useful heads/MLPs inside and outside the circuit, and circuit nodes that are not useful."""
    useful, inside = set(useful), set(circuit_nodes)
    return {"useful_in": sorted(useful & inside), "useful_out": sorted(useful - inside),
            "circuit_only": sorted(inside - useful)}


__all__ = ["EDGES_FILE", "GRAPH_STEM", "circuit_graph_figure", "circuit_json", "draw_circuit_graph", "family_colours",
           "graph_data", "node_edges", "task_family", "useful_split"]
