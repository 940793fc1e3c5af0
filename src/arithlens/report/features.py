"""Reading a dictionary's and a feature study's JSON: text summaries, the L0 / explained-variance Pareto figure and
per-feature dashboards (top questions, activation histogram, label AUROCs; plotly with the interactive extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from arithlens.report.figures import new_figure, save_figure


def _pct(rate) -> str:
    if not rate or rate.get("rate") is None:
        return "n/a"
    lo, hi = rate["ci"]
    return f"{100 * rate['rate']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def _match(m: dict | None) -> str:
    if not m:
        return "none"
    p = "n/a" if m["p_value"] is None else f"{m['p_value']:.3f}"
    return (f"feature {m['feature']} AUROC {m['auroc']:.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}] p={p}"
            f"{'' if m['passes'] else ' (below the bar)'}")


def dictionary_text(data: dict) -> str:
    """What `arithlens sae` prints: quality, spliced accuracy per qtype, and the carry/borrow matches per digit."""
    q = data["quality"]
    k = f"k={data['k']}" if data.get("k") is not None else f"l1={data['l1']:g}"
    lines = [f"{data['arch']} dictionary of {data['site']} on {data['model']}: {data['size']} features over "
             f"{data['d_in']} dims, {k}; {data['questions']['train']} training / {data['questions']['eval']} "
             "held-out questions",
             f"held out: explained variance {q['explained_variance']:.4f}, MSE {q['mse']:.3g}, L0 {q['l0']:.2f}, "
             f"dead {q['dead']} ({100 * q['dead_share']:.1f}%), dense {q['dense']}",
             "exact accuracy per qtype (clean / spliced with the reconstruction / site mean-ablated):"]
    acc = q["accuracy"]
    for name in acc["clean"]:
        lines.append(f"  {name}: {_pct(acc['clean'][name])} / {_pct(acc['spliced'][name])} / "
                     f"{_pct(acc['mean_ablated'][name])}")
    m = data["meaning"]
    lines.append(f"meaning: {m['live']} live features; a feature carries a label at max(AUROC, 1-AUROC) >= "
                 f"{m['auroc_min']} and p <= {m['p_max']} ({m['permutations']} permutations); "
                 f"{len(m['cross_qtype'])} fire across qtypes")
    for rec in m["labels"]:
        label = rec["label"]
        if ".pair" in label or "=" in label:
            continue
        if rec["carriers"] or (rec["best"] and rec["best"]["strength"] >= 0.75):
            lines.append(f"  {label}: {len(rec['carriers'])} carrier(s); best {_match(rec['best'])}")
    if data.get("sweep"):
        pts = ", ".join(f"(size {p['size']}, L0 {p['l0']:.1f}, EV {p['explained_variance']:.3f})"
                        for p in data["sweep"])
        lines.append(f"sweep: {pts}")
    return "\n".join(lines)


def study_text(data: dict) -> str:
    """The features part in words: carriers, shared feature, effects, and where the three methods agree."""
    f = data["features"]
    lines = [dictionary_text(data["dictionary"]), "",
             f"founding question at digit {f['digit']} (a carry / borrow out of it changes {f['target_digit']}):"]
    for op, rec in f["carry_borrow"].items():
        lines.append(f"  {rec['label']}: {len(rec['carriers'])} feature(s) carry it {rec['carriers'][:8]}; "
                     f"best {_match(rec['best'])}")
    lines.append(f"  operand digits D{f['digit']}, D'{f['digit']}: {len(f['operand_carriers'])} feature(s) carry one")
    lines.append(f"  one feature for carry and borrow at once: "
                 f"{'yes, ' + str(f['shared_features']) if f['one_feature_for_carry_and_borrow'] else 'no'}")
    lines.append("effects (error term kept), exact failures per qtype and the answer digits that fail:")
    for name, eff in f["effects"].items():
        parts = [f"{op} {_pct(r['fail'])} {','.join(r['digits_failing']) or '-'}" for op, r in eff.items()]
        lines.append(f"  {name}: " + "; ".join(parts))
    lines.append("probe / direction beside the features:")
    for op, p in f["probes"].items():
        c = f["comparison"][op]
        cos = c["feature_direction_cosine"]
        lines.append(f"  {op}: probe {p['accuracy']:.3f} (p={p['p_value']:.3f}); feature encodes "
                     f"{c['feature_encodes']}, probe reads {c['probe_reads']} -> "
                     f"{'agree' if c['encoding_agrees'] else 'DISAGREE'}; flipping the feature moves "
                     f"{f['target_digit']} {c['feature_moves']}, the direction {c['direction_moves']} -> "
                     f"{'agree' if c['use_agrees'] else 'DISAGREE'}; cos(feature, direction) "
                     f"{'n/a' if cos is None else format(cos, '.2f')}")
    cos = ", ".join(f"{k} {v:.2f}" for k, v in f["directions"]["cosines"].items() if v is not None)
    lines.append(f"  direction cosines between qtypes: {cos or 'n/a'}; shared axis "
                 f"{'yes' if f['directions']['shared_axis'] else 'no'}")
    return "\n".join(lines)


def pareto_figure(data: dict) -> Figure:
    """L0 against explained variance over the sweep, one line per dictionary size; the trained one starred."""
    fig = new_figure(5, 3.6)
    ax = fig.add_subplot()
    points = data.get("sweep") or []
    for size in sorted({p["size"] for p in points}):
        pts = sorted((p for p in points if p["size"] == size), key=lambda p: p["l0"])
        ax.plot([p["l0"] for p in pts], [p["explained_variance"] for p in pts], "o-", label=f"size {size}")
    q = data["quality"]
    ax.plot([q["l0"]], [q["explained_variance"]], "k*", markersize=12, label="this dictionary")
    ax.set_xlabel("L0 (features firing per question)")
    ax.set_ylabel("explained variance (held out)")
    ax.set_title(f"{data['site']}: {data['arch']} dictionaries")
    ax.legend(fontsize=7)
    return fig


def _card(data: dict, feature: int) -> dict:
    for card in data.get("features", []):
        if card["feature"] == feature:
            return card
    from arithlens.errors import ArithLensError

    raise ArithLensError(f"feature {feature} is dead or outside 0..{data['size'] - 1}")


def feature_dashboard(data: dict, feature: int, *, interactive: bool = False):
    """Histogram of activations (when on), AUROC of its best labels, and its top questions as text."""
    card = _card(data, feature)
    labels = card["labels"]
    edges, counts = card["histogram"]["edges"], card["histogram"]["counts"]
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    top = "\n".join(f"{t['question']}{t['answer']}  {t['qtype']}  {t['activation']:.2f}" for t in card["top"][:8])
    title = (f"{data['site']} feature {feature}: fires on {100 * card['fire_rate']:.1f}%"
             f"{' (across qtypes)' if card['cross_qtype'] else ''}")
    if interactive:
        from plotly.subplots import make_subplots

        from arithlens.report.interactive import _go

        go = _go()
        fig = make_subplots(rows=1, cols=3, subplot_titles=("activation when on", "label AUROC", "top questions"),
                            specs=[[{}, {}, {"type": "table"}]])
        fig.add_trace(go.Bar(x=centres, y=counts, name="count"), 1, 1)
        fig.add_trace(go.Bar(x=[m["auroc"] for m in labels], y=[m["label"] for m in labels], orientation="h",
                             hovertext=[f"[{m['ci'][0]:.3f}, {m['ci'][1]:.3f}] p={m['p_value']}" for m in labels],
                             name="AUROC"), 1, 2)
        fig.add_trace(go.Table(header={"values": ["question", "qtype", "activation"]},
                               cells={"values": [[t["question"] + t["answer"] for t in card["top"]],
                                                 [t["qtype"] for t in card["top"]],
                                                 [round(t["activation"], 3) for t in card["top"]]]}), 1, 3)
        fig.update_layout(title=title, showlegend=False)
        return fig
    fig = new_figure(11, 3.2)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    ax1.bar(centres, counts, width=(edges[1] - edges[0]) if len(edges) > 1 else 1.0)
    ax1.set_xlabel("activation (when on)")
    ax1.set_ylabel("questions")
    ax2.barh([m["label"] for m in labels][::-1], [m["auroc"] for m in labels][::-1], color="tab:orange")
    ax2.set_xlim(0, 1)
    ax2.axvline(0.5, color="grey", lw=0.8)
    ax2.set_xlabel("AUROC")
    ax3.axis("off")
    ax3.text(0, 1, top or "(never fires)", va="top", family="monospace", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def write_dictionary_figures(data: dict, out_dir: str | Path, *, features: int = 8,
                             formats: Sequence[str] = ("png",)) -> list[Path]:
    """The Pareto figure (when there was a sweep) and the dashboards of the most frequent live features, plus
    interactive HTML dashboards when plotly is installed."""
    from arithlens.io import write_atomic
    from arithlens.report.interactive import available

    paths: list[Path] = []
    stem = data["site"].replace("@", "_").replace(".", "_")
    if data.get("sweep"):
        paths += save_figure(pareto_figure(data), out_dir, f"{stem}_pareto", formats)
    cards = sorted(data.get("features", []), key=lambda c: -c["fire_rate"])[:features]
    for card in cards:
        paths += save_figure(feature_dashboard(data, card["feature"]), out_dir, f"{stem}_feature{card['feature']}",
                             formats)
    if cards and available():  # one offline page: plotly.js once, then every dashboard
        parts = [feature_dashboard(data, c["feature"], interactive=True).to_html(
            include_plotlyjs=(i == 0), full_html=False) for i, c in enumerate(cards)]
        page = f"<html><head><meta charset='utf-8'></head><body>{''.join(parts)}</body></html>"
        path = Path(out_dir) / f"{stem}_features.html"
        write_atomic(path, page.encode())
        paths.append(path)
    return paths


__all__ = ["dictionary_text", "feature_dashboard", "pareto_figure", "study_text", "write_dictionary_figures"]
