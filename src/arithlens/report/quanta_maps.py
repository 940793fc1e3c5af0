"""Quanta maps and tables: one picture per behaviour of the useful nodes, laid out like the predecessor's.

A map has the answer-relevant positions on x (meanings such as `D'1` on top, `P11` below) and the
rows `L0H0` .. `L2MLP` on y; each node's cell shows a short text from one cell function of the
catalogue (failure %, impact, attention, complexity, purpose), shaded by a colour index
(the predecessor's map names). Files are `<prefix><TitleWithoutSpacesCommasColonsHyphens>.<png|svg>`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import matplotlib
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Rectangle

from arithlens.analysis.nodes import Major, Node, UsefulNode, compact_impact
from arithlens.arith.layout import Layout
from arithlens.errors import ArithLensError
from arithlens.report.figures import Job, figure_job, new_figure, save_figure
from arithlens.model.spec import ModelSpec

FONT_SIZE = 10
BACKGROUND = "lightgrey"  # grid positions without a cell (nodes that are not useful)
WINTER, GREEN_YELLOW = "winter", "green_yellow"
_CMAPS = {WINTER: matplotlib.colormaps["winter"],
          GREEN_YELLOW: LinearSegmentedColormap.from_list(GREEN_YELLOW, ["green", "yellow"])}
ATTN_SHOWN_PCT = 10  # attention above this share is named in a cell
FORMATS = ("png", "svg")

Cell = tuple[str, int]  # (text, colour index); empty text: no cell
NO_CELL: Cell = ("", 0)
CellFn = Callable[[UsefulNode, Layout], Cell]


def pale(family: str, index: int, shades: int) -> tuple[float, float, float]:
    """The colour of shade `index` (clamped to 0..shades-1), blended 50% with white."""
    i = min(max(index, 0), shades - 1)
    r, g, b, _ = _CMAPS[family](i / shades)
    return (0.5 + r / 2, 0.5 + g / 2, 0.5 + b / 2)


# ---- cell texts ----

def _first(un: UsefulNode, major: Major) -> str | None:
    values = un.values(major)
    return values[0] if values else None


def fail_text(un: UsefulNode) -> str:
    """`6`, or `<1` when fewer than 1% of the questions failed; empty without a Fail% tag."""
    value = _first(un, Major.FAIL)
    if value is None:
        return ""
    return "<1" if int(value) == 0 else value


def attention_order(attention: Mapping[int, int], names: Sequence[str]) -> list[tuple[str, int]]:
    """Attended positions above 10%, as (name, pct), by pct desc then name.

    When the top two are within 5 points or both >= 40% they are put in alphabetical order, so a head
    that splits its attention (`D'2 D2`) reads the same whichever side got slightly more.
    """
    shown = sorted(((names[p], pct) for p, pct in attention.items() if pct > ATTN_SHOWN_PCT),
                   key=lambda item: (-item[1], item[0]))
    if len(shown) >= 2 and (shown[0][1] - shown[1][1] <= 5 or shown[1][1] >= 40):
        shown[:2] = sorted(shown[:2])
    return shown


def attention_text(attention: Mapping[int, int], names: Sequence[str]) -> str:
    """`{4: 50, 11: 50}` with the default meanings -> `D'1 D1`; with P-names `P11 P4`."""
    return " ".join(name for name, _ in attention_order(attention, names))


def min_complexity(un: UsefulNode, major: Major, prefix: str) -> str | None:
    """The lexicographically smallest `major` tag starting with `prefix` (`S123`); PCA tags never match."""
    values = [v for v in un.values(major) if v.startswith(prefix)]
    return min(values) if values else None


COMPLEXITY = ((Major.MATH_ADD, "S"), (Major.MATH_SUB, "M"), (Major.MATH_NEG, "N"))


def operation_letters(un: UsefulNode) -> str:
    """`SMN`, `MN`, `S`: the operations whose questions fail when this node is ablated."""
    return "".join(prefix for major, prefix in COMPLEXITY if min_complexity(un, major, prefix))


# ---- cell functions: (node, layout) -> (text, colour index) ----

def fail_cell(un: UsefulNode, layout: Layout) -> Cell:
    text = fail_text(un)
    return (text, _fail_pct(text) // 10) if text else NO_CELL


def _fail_pct(text: str) -> int:
    return 1 if text == "<1" else int(text)


def impact_cell(un: UsefulNode, layout: Layout) -> Cell:
    value = _first(un, Major.IMPACT)
    if not value:
        return NO_CELL
    return compact_impact(value), int(value[1]) if value[1:2].isdigit() else 0


def attention_cell(un: UsefulNode, layout: Layout) -> Cell:
    attention = un.attention()
    shown = attention_order(attention, layout.meanings)
    if not shown:
        return NO_CELL
    colour = 9 if len(attention) == 5 else 10 - sum(pct for _, pct in shown) // 10
    return " ".join(name for name, _ in shown), colour


def min_complexity_cell(un: UsefulNode, layout: Layout, *, major: Major, prefix: str) -> Cell:
    value = min_complexity(un, major, prefix)
    if value is None:
        return NO_CELL
    return value[:2], int(value[1]) if value[1:2].isdigit() else 0


def coverage_cell(un: UsefulNode, layout: Layout) -> Cell:
    letters = operation_letters(un)
    return letters, len(letters)


def purpose_cell(un: UsefulNode, layout: Layout) -> Cell:
    return " ".join(un.values(Major.ALGO)), 1


def purpose_all_cell(un: UsefulNode, layout: Layout) -> Cell:
    """Every node gets a cell (a blank one when it has no Algo tag), so the unexplained ones show."""
    values = un.values(Major.ALGO)
    return (" ".join(values), 2) if values else (" ", 1)


# ---- the catalogue ----

@dataclass(frozen=True)
class QuantaMap:
    title: str
    cell: CellFn
    shades: int
    family: str = WINTER
    merge: bool = True  # draw vertically adjacent cells with identical text as one block
    heads_only: bool = False
    circles: bool = False  # failure-percentage circles (the failure map)
    needs: Major | None = None  # draw only when some node carries a tag of this major


def catalogue(layout: Layout) -> dict[str, QuantaMap]:
    """Every map, by short name. `AlgorithmPurpose` is the predecessor's other name for MathsPurposePerNode."""
    def complexity(title, major, prefix, shades):
        return QuantaMap(title, partial(min_complexity_cell, major=major, prefix=prefix), shades, GREEN_YELLOW)

    maps = {
        "FailureFrequency": QuantaMap("Failure Frequency Behavior Per Node", fail_cell, 10, merge=False,
                                      circles=True),
        "AnswerImpact": QuantaMap("Answer Impact Behavior Per Node", impact_cell, layout.n_answer),
        "AttentionBehavior": QuantaMap("Attention Behavior Per Head", attention_cell, 10, heads_only=True),
        "OperationCoverage": QuantaMap("Maths Operation Coverage", coverage_cell, 4, GREEN_YELLOW, merge=False),
        "AddMinComplexity": complexity("Addition Min-Complexity", Major.MATH_ADD, "S", 6),
        "SubMinComplexity": complexity("Positive-answer Subtraction Min-Complexity", Major.MATH_SUB, "M", 5),
        "NegMinComplexity": complexity("Negative-answer Subtraction Min-Complexity", Major.MATH_NEG, "N", 5),
        "MathsPurposePerNode": QuantaMap("Maths Purpose Per Node", purpose_cell, 2),
        "MathsPurposeAllNodes": QuantaMap("Maths Purpose All Nodes", purpose_all_cell, 3, needs=Major.ALGO),
    }
    maps["AlgorithmPurpose"] = maps["MathsPurposePerNode"]
    return maps


def map_cells(nodes: Iterable[UsefulNode], qmap: QuantaMap, layout: Layout) -> dict[Node, Cell]:
    """The map's non-empty cells by node (what the picture shows, before spaces become newlines)."""
    nodes = list(nodes)
    if qmap.needs is not None and not any(un.values(qmap.needs) for un in nodes):
        return {}
    cells = {}
    for un in nodes:
        if qmap.heads_only and not un.node.is_head:
            continue
        text, colour = qmap.cell(un, layout)
        if text:
            cells[un.node] = (text, colour)
    return cells


@dataclass(frozen=True)
class OperationCoverage:
    by_operation: Mapping[str, int]  # S / M / N -> nodes whose ablation fails such questions
    by_count: Mapping[int, int]  # 3 / 2 / 1 -> nodes serving that many operations

    def __str__(self) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in self.by_operation.items())
        counts = ", ".join(f"{k} ops {v}" for k, v in self.by_count.items())
        return f"nodes used by {ops}; by {counts}"


def operation_coverage(nodes: Iterable[UsefulNode]) -> OperationCoverage:
    letters = [operation_letters(un) for un in nodes]
    by_op = {p: sum(p in word for word in letters) for _, p in COMPLEXITY}
    by_count = {k: sum(len(word) == k for word in letters) for k in (3, 2, 1)}
    return OperationCoverage(by_op, by_count)


# ---- drawing ----

@dataclass(frozen=True)
class Block:
    """One drawn cell at grid (col, row): `span` rows tall when identical neighbours are merged."""

    col: int
    row: int
    span: int
    text: str  # as drawn: one word a line
    colour: int


def _row_node(node: Node) -> Node:
    """The node at position 0 standing for its row (`L0H0`), so rows sort by layer, heads first."""
    return replace(node, position=0)


def map_grid(cells: Mapping[Node, Cell]) -> tuple[list[int], list[Node]]:
    """The columns (positions) and rows (row nodes, `.row_name` = `L0H0`) that hold at least one cell."""
    cols = sorted({n.position for n in cells})
    rows = sorted({_row_node(n) for n in cells}, key=lambda n: (n.layer, n.is_mlp, n.num))
    return cols, rows


def map_blocks(cells: Mapping[Node, Cell], merge: bool) -> list[Block]:
    """The cells as drawn, column by column, top to bottom; with `merge`, runs of equal text are one block."""
    cols, rows = map_grid(cells)
    grid = {(cols.index(n.position), rows.index(_row_node(n))): c for n, c in cells.items()}
    blocks: list[Block] = []
    for (col, row), (text, colour) in sorted(grid.items()):
        text = text.rstrip().replace(" ", "\n")
        last = blocks[-1] if blocks else None
        if merge and last and (last.col, last.row + last.span, last.text) == (col, row, text):
            blocks[-1] = replace(last, span=last.span + 1)
        else:
            blocks.append(Block(col, row, 1, text, colour))
    return blocks


def _cell_size(blocks: list[Block]) -> tuple[float, float]:
    """Cell width and height in inches: room for the longest word and the most lines per row."""
    words = [w for b in blocks for w in b.text.split("\n")]
    lines = max(math.ceil((b.text.count("\n") + 1) / b.span) for b in blocks)
    width = max(0.55, 0.085 * max(map(len, words)) + 0.2)
    return width, 0.19 * lines + 0.25


def _draw_map(cells: Mapping[Node, Cell], qmap: QuantaMap, layout: Layout) -> Figure:
    cols, rows = map_grid(cells)
    blocks = map_blocks(cells, qmap.merge)
    cell_w, cell_h = _cell_size(blocks)
    margin_l, margin_r, margin_t, margin_b = 0.7, 0.15, 0.4, 0.35
    fig_w = margin_l + margin_r + cell_w * len(cols)
    fig_h = margin_t + margin_b + cell_h * len(rows)
    fig = new_figure(fig_w, fig_h)
    ax = fig.add_axes((margin_l / fig_w, margin_b / fig_h, cell_w * len(cols) / fig_w, cell_h * len(rows) / fig_h))
    _grid_axes(ax, [f"P{p}" for p in cols], [layout.meaning(p) for p in cols], [r.row_name for r in rows])
    max_pct = max((_fail_pct(b.text) for b in blocks), default=0) if qmap.circles else 0
    for b in blocks:
        ax.add_patch(Rectangle((b.col - 0.5, b.row - 0.5), 1, b.span, zorder=1, lw=1.5, edgecolor="white",
                               facecolor=pale(qmap.family, b.colour, qmap.shades)))
        if qmap.circles and _fail_pct(b.text) >= 20:
            radius = 0.5 * _fail_pct(b.text) / max(10, max_pct) * min(cell_w, cell_h)  # inches
            ax.add_patch(Ellipse((b.col, b.row), 2 * radius / cell_w, 2 * radius / cell_h, zorder=2,
                                 facecolor="white", edgecolor="none"))
        ax.text(b.col, b.row + (b.span - 1) / 2, b.text, ha="center", va="center", fontsize=FONT_SIZE,
                linespacing=1.15, zorder=3)
    return fig


def _grid_axes(ax, bottom: list[str], top: list[str], rows: list[str]) -> None:
    """Light-grey grid with white lines; P-names below, meanings above, left-aligned row names."""
    n_cols, n_rows = len(bottom), len(rows)
    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_ylim(n_rows - 0.5, -0.5)  # first row at the top
    ax.set_facecolor(BACKGROUND)
    ax.vlines([c + 0.5 for c in range(n_cols - 1)], -0.5, n_rows - 0.5, colors="white", lw=1.5, zorder=0.5)
    ax.hlines([r + 0.5 for r in range(n_rows - 1)], -0.5, n_cols - 0.5, colors="white", lw=1.5, zorder=0.5)
    ax.set_xticks(range(n_cols), bottom, fontsize=FONT_SIZE)
    secondary = ax.secondary_xaxis("top")
    secondary.set_xticks(range(n_cols), top, fontsize=FONT_SIZE)
    ax.set_yticks(range(n_rows), rows, fontsize=FONT_SIZE)
    pad = 0.62 * FONT_SIZE * max(map(len, rows)) + 4  # points: room for left-aligned labels
    ax.tick_params(axis="y", pad=pad)
    for label in ax.get_yticklabels():
        label.set_horizontalalignment("left")
    for a in (ax, secondary):
        a.tick_params(length=0)
        for spine in a.spines.values():
            spine.set_visible(False)


def file_stem(prefix: str, title: str) -> str:
    """`ins1_mix` + `Positive-answer Subtraction Min-Complexity` -> `ins1_mixPositiveanswerSubtractionMinComplexity`."""
    return prefix + re.sub(r"[ ,:\-]", "", title)


def _save(fig: Figure, out_dir: str | Path, stem: str, formats: Sequence[str]) -> list[Path]:
    return save_figure(fig, out_dir, stem, formats, dpi=150)


def named_map_cells(nodes: Iterable[UsefulNode], name: str, layout: Layout):
    """The catalogue map called `name` (e.g. `MathsPurposePerNode`) and its cells; one-line errors for an
    unknown name or a map with no cells."""
    maps = catalogue(layout)
    if name not in maps:
        raise ArithLensError(f"unknown map {name!r}; expected one of {', '.join(maps)}")
    cells = map_cells(nodes, maps[name], layout)
    if not cells:
        raise ArithLensError(f"the {name} map has no cells: no node carries the tags it shows")
    return maps[name], cells


def map_figure(nodes: Iterable[UsefulNode], name: str, layout: Layout) -> Figure:
    """One catalogue map (by short name, e.g. `MathsPurposePerNode`) as a figure, nothing written."""
    spec, cells = named_map_cells(nodes, name, layout)
    return _draw_map(cells, spec, layout)


@figure_job
def draw_map(nodes: Iterable[UsefulNode], qmap: QuantaMap, layout: Layout, out_dir: str | Path, prefix: str,
             formats: Sequence[str] = FORMATS) -> list[Path]:
    """Draw one map; returns the files written (none when the map has no cells)."""
    cells = map_cells(nodes, qmap, layout)
    if not cells:
        return []
    return _save(_draw_map(cells, qmap, layout), out_dir, file_stem(prefix, qmap.title), formats)


# ---- tables ----

QUANTA_AT_COLUMNS = ("Node", "Impact", "Algorithm sub-task", "Attends to", "Add Complex", "Sub Complex",
                     "Neg Complex", "Fail %")
_QUANTA_AT_FAMILIES = (None, None, GREEN_YELLOW, GREEN_YELLOW, WINTER, WINTER, WINTER, GREEN_YELLOW)


def quanta_at_rows(nodes: Iterable[UsefulNode], layout: Layout, position: int) -> list[tuple[str, ...]]:
    """One row per useful node at `position`, in QUANTA_AT_COLUMNS order."""
    rows = []
    for un in nodes:
        if un.node.position != position:
            continue
        attends = attention_text(un.attention(), layout.meanings) if un.node.is_head else ""
        complexity = [min_complexity(un, major, prefix) or "" for major, prefix in COMPLEXITY]
        rows.append((un.name, compact_impact(_first(un, Major.IMPACT) or ""), " ".join(un.values(Major.ALGO)),
                     attends, *complexity, fail_text(un)))
    return rows


def _table_figure(header: Sequence[str], rows: list[Sequence[str]], colours: list[list], min_width: float,
                  row_labels: Sequence[str] | None = None) -> Figure:
    """A table at least `min_width` inches wide whose columns are as wide as their longest text."""
    chars = [max(len(text) for text in column) for column in zip(header, *rows)]
    widths = [0.085 * n + 0.3 for n in chars]  # inches at FONT_SIZE, bold headers included
    fig = new_figure(max(min_width, sum(widths)), 0.3 * (len(rows) + 1) + 0.2)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=header, rowLabels=row_labels, cellColours=colours,
                     colWidths=[w / sum(widths) for w in widths], cellLoc="center", loc="center", bbox=(0, 0, 1, 1))
    table.auto_set_font_size(False)
    table.set_fontsize(FONT_SIZE)
    for (r, c), cell in table.get_celld().items():
        cell.set_edgecolor("darkgrey")
        if r == 0 or c == -1:
            cell.set_text_props(weight="bold")
    return fig


@figure_job
def draw_quanta_at(nodes: Iterable[UsefulNode], spec: ModelSpec, position: int, out_dir: str | Path,
                   prefix: str | None = None, formats: Sequence[str] = FORMATS) -> list[Path]:
    """The "Quanta At P{position}" table; nothing is written when no useful node sits there."""
    rows = quanta_at_rows(nodes, spec.layout, position)
    if not rows:
        return []
    colours = [["white" if not text or family is None else pale(family, 1, 2)
                for text, family in zip(row, _QUANTA_AT_FAMILIES)] for row in rows]
    fig = _table_figure(QUANTA_AT_COLUMNS, rows, colours, min_width=11)
    stem = file_stem(spec.name if prefix is None else prefix, f"Quanta At P{position}")
    return _save(fig, out_dir, stem, formats)


@figure_job
def draw_position_failures(counts: Sequence[int], spec: ModelSpec, out_dir: str | Path, prefix: str | None = None,
                           formats: Sequence[str] = FORMATS) -> list[Path]:
    """The "Failures When Position Ablated" table: P-names, meanings and failure counts ('.' for none)."""
    if len(counts) != spec.n_ctx:
        raise ArithLensError(f"expected {spec.n_ctx} position failure counts, got {len(counts)}")
    rows = [list(spec.layout.meanings), [str(c) if c else "." for c in counts]]
    colours = [["white"] * spec.n_ctx, [pale(GREEN_YELLOW, 1, 2) if c else "white" for c in counts]]
    fig = _table_figure([f"P{p}" for p in range(spec.n_ctx)], rows, colours, min_width=16,
                        row_labels=["", "# fails"])
    stem = file_stem(spec.name if prefix is None else prefix, "Failures When Position Ablated")
    return _save(fig, out_dir, stem, formats)


def draw_all_maps(nodes: Iterable[UsefulNode], spec: ModelSpec, out_dir: str | Path, prefix: str | None = None,
                  formats: Sequence[str] = FORMATS) -> list[Path]:
    """Every catalogue map with at least one cell, then the Quanta At tables of P(2n+3)..P(n_ctx-2).

    The spec's layout names the positions; `prefix` defaults to the model name.
    """
    return [p for fn, args in map_jobs(nodes, spec, out_dir, prefix, formats) for p in fn(*args)]


def map_jobs(nodes: Iterable[UsefulNode], spec: ModelSpec, out_dir: str | Path, prefix: str | None = None,
             formats: Sequence[str] = FORMATS) -> list[Job]:
    """`draw_all_maps` as jobs for `arithlens.report.figures.run_jobs` (one map or table each), in its order."""
    nodes = list(nodes)
    prefix = spec.name if prefix is None else prefix
    layout = spec.layout
    jobs: list[Job] = [(draw_map, (nodes, qmap, layout, out_dir, prefix, formats))
                       for qmap in {id(m): m for m in catalogue(layout).values()}.values()]  # aliases drawn once
    jobs += [(draw_quanta_at, (nodes, spec, position, out_dir, prefix, formats))
             for position in range(2 * layout.n_digits + 3, spec.n_ctx - 1)]
    return jobs
