"""A circuit's ablation card and MIB faithfulness curves for people: tables (markdown or HTML fragments the
analyze report can include) and matplotlib figures drawn without pyplot (`figures.new_figure`)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from arithlens.results.circuits import AblationCard, FaithfulnessCurve
from arithlens.report.figures import new_figure, save_figure

QTYPE_COLOURS = {"ADD": "tab:red", "SUB": "tab:green", "NEG": "tab:blue", "MUL": "tab:purple", "ALL": "black"}


def _pct(x: float, digits: int = 1) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:.{digits}f}%"


def card_cells(card: AblationCard) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per ablation, one cell per qtype `99.7% [99.6, 99.8] (LD 98%)`."""
    header = ["ablation", *card.qtypes]
    rows = []
    for ablation in card.ablations:
        cells = [ablation]
        for qtype in card.qtypes:
            r = card.row(ablation, qtype)
            lo, hi = r.ci
            cells.append(f"{_pct(r.exact)} [{100 * lo:.1f}, {100 * hi:.1f}] (LD {_pct(r.logit_diff_recovered, 0)})")
        rows.append(cells)
    return header, rows


def card_caption(card: AblationCard) -> str:
    n = sorted({r.n for r in card.rows})
    per = f"{n[0]:,}" if len(n) == 1 else f"{n[0]:,}-{n[-1]:,}"
    return (f"{card.label}: {len(card.units):,} of {card.n_all:,} {card.unit}s, exact rate per qtype with 95% Wilson "
            f"interval on {per} questions per qtype; LD = logit difference recovered (empty circuit 0%, model 100%)")


def card_verdict(card: AblationCard, target: float = 0.99) -> str:
    """One sentence: under which ablations the circuit is >= `target` exact on every qtype, and for the others the
    worst qtype (point estimates; the card's table has the intervals)."""
    held = [a for a in card.ablations if card.min_exact(a) >= target]
    short = []
    for a in card.ablations:
        if a in held:
            continue
        worst = min(card.qtypes, key=lambda q: card.row(a, q).exact)
        short.append(f"{a} ({worst} {_pct(card.row(a, worst).exact)})")
    parts = []
    if held:
        parts.append(f"at least {_pct(target, 0)} exact on every qtype under {', '.join(held)}")
    if short:
        parts.append(f"short of it under {', '.join(short)}")
    return f"The {card.label} is " + "; ".join(parts) + "."


def card_markdown(card: AblationCard) -> str:
    header, rows = card_cells(card)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def card_html(card: AblationCard) -> str:
    """A self-contained `<table>` with its caption (every cell escaped)."""
    header, rows = card_cells(card)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (f'<table class="circuit-card"><caption>{html.escape(card_caption(card))}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def plot_card(card: AblationCard) -> Figure:
    """Exact rate per ablation (groups) and qtype (bars), with Wilson intervals as error bars."""
    ablations, qtypes = card.ablations, card.qtypes
    fig = new_figure(1.2 + 1.1 * len(ablations), 3.2)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(qtypes)
    for j, qtype in enumerate(qtypes):
        rows = [card.row(a, qtype) for a in ablations]
        xs = [i + (j - (len(qtypes) - 1) / 2) * width for i in range(len(ablations))]
        ys = [100 * r.exact for r in rows]
        err = [[100 * (r.exact - r.ci[0]) for r in rows], [100 * (r.ci[1] - r.exact) for r in rows]]
        ax.bar(xs, ys, width, yerr=err, capsize=2, label=qtype, color=QTYPE_COLOURS.get(qtype, "grey"))
    ax.axhline(99, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(ablations)), ablations)
    ax.set_ylim(0, 100)
    ax.set_ylabel("exact, % of questions")
    ax.set_title(f"{card.label}: {len(card.units)} of {card.n_all} {card.unit}s", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    return fig


def plot_curves(curves: Sequence[FaithfulnessCurve], metric: str = "logit_diff", qtype: str = "ALL") -> Figure:
    """Faithfulness against the share of units kept (log axis, MIB's sizes), one line per curve."""
    fig = new_figure(5.0, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    for c in curves:
        cpr, cmd = c.areas(qtype, metric)
        ax.plot([100 * p for p in c.percentages], c[qtype].faithfulness(metric), marker="o", ms=3,
                label=f"{c.method}, {c.ablation} (CPR {cpr:.2f}, CMD {cmd:.2f})")
    ax.axhline(1, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel(f"{curves[0].unit}s kept, % (top by |score|)" if curves else "units kept, %")
    ax.set_ylabel(f"faithfulness ({'exact' if metric == 'exact' else 'logit diff.'}, {qtype})")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def curves_markdown(curves: Sequence[FaithfulnessCurve], metric: str = "logit_diff") -> str:
    """One row per curve and qtype: CPR, CMD and the faithfulness at each size."""
    if not curves:
        return ""
    sizes = curves[0].percentages
    header = ["scores", "ablation", "qtype", "CPR", "CMD", *(f"{100 * p:g}%" for p in sizes)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in curves:
        for q in c.qtypes:
            cpr, cmd = c.areas(q.qtype, metric)
            f = [f"{v:.2f}" for v in q.faithfulness(metric)]
            lines.append("| " + " | ".join([c.method, c.ablation, q.qtype, f"{cpr:.3f}", f"{cmd:.3f}", *f]) + " |")
    return "\n".join(lines)


def _embedded(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="circuit-card" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def circuit_card_section(cards: Sequence[AblationCard], curves: Sequence[FaithfulnessCurve],
                         figure_dir: str | Path) -> str:
    """An HTML fragment for the analyze report: each card's table and bar chart, then the curves (logit
    difference and exact, pooled over qtypes) with their CPR / CMD table; figures are written to `figure_dir`
    as PNG and embedded (the report is one offline file)."""
    parts = ["<section class=circuit-card><h2>Circuit faithfulness under each ablation</h2>"]
    for k, card in enumerate(cards):
        png = save_figure(plot_card(card), figure_dir, f"circuit_card_{k}")[0]
        parts += [card_html(card), _embedded(png, f"ablation card of {card.label}")]
    if curves:
        for metric in ("logit_diff", "exact"):
            png = save_figure(plot_curves(curves, metric), figure_dir, f"mib_curve_{metric}")[0]
            parts.append(_embedded(png, f"MIB faithfulness curves ({metric})"))
        rows = "".join(
            f"<tr><td>{html.escape(c.method)}</td><td>{html.escape(c.ablation)}</td>"
            + "".join(f"<td>{v:.3f}</td>" for m in ("logit_diff", "exact") for v in c.areas("ALL", m)) + "</tr>"
            for c in curves)
        parts.append("<table class=mib><thead><tr><th>scores</th><th>ablation</th><th>CPR (logit diff.)</th>"
                     "<th>CMD (logit diff.)</th><th>CPR (exact)</th><th>CMD (exact)</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
    return "".join(parts) + "</section>"
