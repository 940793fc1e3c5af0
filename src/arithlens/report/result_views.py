"""The notebook views of the results: `_repr_html_` tables and the PCA scatter, reading a result and returning
HTML or a figure (the result types delegate here; nothing is written)."""

from __future__ import annotations

import html

import numpy as np


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{100 * x:.1f}%"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def study_html(result) -> str:
    nec = result.necessity.per_qtype
    rows = []
    for op in result.qtypes:
        rep, v = result.representation[op], result.verdict.per_qtype[op]
        resample = nec[op]["all"].rates.get("resample")
        patch = result.sufficiency.per_qtype.get(op)
        rows.append([op, _pct(rep.probe_carry.accuracy), _pct(rep.probe_pair.accuracy),
                     _pct(resample.target_wrong.rate if resample else None),
                     _pct(patch.success.rate if patch else None),
                     " ".join(w for w, flag in (("encodes", v.encodes), ("necessary", v.necessary),
                                                ("sufficient", v.sufficient), ("ROLE", v.role)) if flag) or "-"])
    head = (f"{result.node} of {result.model}: {result.kind} at P{result.position} ({result.position_token}), "
            f"study digit {result.study_digit} ({result.study_digit_source})")
    table = _html_table(["qtype", f"{result.necessity.target_digit}: carry probe", "pair probe",
                         f"resample: {result.necessity.target_digit} wrong", "patch success", "decision"], rows)
    grid = (f"pair (D{result.study_digit}, D'{result.study_digit}) explains {_pct(result.grid.r2_pair)} of the "
            f"output variance; the qtype adds {_pct(result.grid.qtype_beyond_pair)}")
    return (f"<div><b>{html.escape(head)}</b><p><b>verdict:</b> {html.escape(result.verdict.text)}</p>"
            f"{table}<p>{html.escape(grid)}; tags: {html.escape(' '.join(result.tags) or '(none)')}</p></div>")


def pca_plot(result, interactive: bool = False, title: str | None = None):
    """PC0 vs PC1: T8/T9/T10 red/green/blue (grey without a class), triangles where a carry/borrow leaves
    the digit. With `interactive` a plotly figure whose hover shows question, answer, class and carry."""
    if interactive:
        from arithlens.report.interactive import pca_scatter

        return pca_scatter(result, title=title)
    from arithlens.report.figures import new_figure
    from arithlens.report.node_figures import CASE_COLOURS

    x = result.array()
    fig = new_figure(5.0, 4.2, layout="constrained")
    ax = fig.subplots()
    case = np.array([c if c is not None else 0 for c in result.case])
    carry = np.array([c if c is not None else 0 for c in result.carry])
    for c in (0, 8, 9, 10):
        for flag, marker in ((0, "o"), (1, "^")):
            rows = (case == c) & (carry == flag)
            if rows.any():
                ax.scatter(x[rows, 0], x[rows, 1], s=14, marker=marker, c=CASE_COLOURS.get(c, "grey"),
                           alpha=0.55, linewidths=0, label=(f"T{c}" if c else "no class")
                           + (" carry/borrow out" if flag else ""))
    ax.set_xlabel(f"PC0 ({_pct(result.evr[0])})")
    ax.set_ylabel(f"PC1 ({_pct(result.evr[1]) if len(result.evr) > 1 else 'n/a'})")
    ax.legend(fontsize=7)
    ax.set_title(title or f"{result.node} of {result.model}: {result.n} questions", fontsize=9)
    return fig


def pca_html(result) -> str:
    counts = {}
    for q, c in zip(result.qtype, result.case):
        key = (q, f"T{c}" if c is not None else "-")
        counts[key] = counts.get(key, 0) + 1
    rows = [[q, c, str(n)] for (q, c), n in sorted(counts.items())]
    evr = ", ".join(_pct(v) for v in result.evr)
    return (f"<div><b>PCA of {html.escape(result.node)}</b> ({html.escape(result.model)}), {result.n} questions; "
            f"explained variance {evr}{_html_table(['qtype', 'class', 'rows'], rows)}</div>")


def useful_html(result) -> str:
    heads = sum(1 for n in result.nodes if "H" in n.name.split("L", 1)[1])
    rows = [[n.name, " ".join(n.tags)] for n in result.nodes[:12]]
    more = f"<p>... and {len(result.nodes) - 12} more</p>" if len(result.nodes) > 12 else ""
    return (f"<div><b>{html.escape(result.model)}</b>: {len(result.nodes)} useful nodes ({heads} heads), useful "
            f"positions {', '.join(f'P{p}' for p in result.useful_positions)}; {result.questions} questions"
            f"{_html_table(['node', 'tags'], rows)}{more}</div>")


def search_html(result) -> str:
    rows = [[name, " ".join(tags)] for name, tags in list(result.tags.items())[:20]]
    heads, mlps = result.coverage.get("heads", {}), result.coverage.get("mlps", {})
    return (f"<div><b>search</b> {html.escape(result.model)}: {html.escape(result.rule)}<br>useful heads with a purpose "
            f"{heads.get('purposed')} of {heads.get('useful')}, MLP layers {mlps.get('purposed')} of "
            f"{mlps.get('useful')}{_html_table(['node', 'Algo tags'], rows)}</div>")


def analysis_html(result) -> str:
    rows = [[s["node"], str(s.get("study_digit", "")), "yes" if s.get("polysemantic") else "no",
             " ".join(s.get("roles", [])) or "-", s.get("verdict", s.get("error", ""))[:160]]
            for s in result.summary.get("studies", [])]
    return (f"<div><b>{html.escape(result.model)}</b>: {result.summary.get('heads')} useful heads, "
            f"{result.summary.get('mlps')} MLP layers"
            f"{_html_table(['node', 'digit', 'polysemantic', 'roles', 'verdict'], rows)}</div>")


def dictionary_html(result) -> str:
    q = result.quality
    rows = [[name, str(q.accuracy.get("clean", {}).get(name)), str(rate)]
            for name, rate in q.accuracy.get("spliced", {}).items()]
    return (f"<div><b>{html.escape(result.arch)} dictionary</b> of {html.escape(result.site)} ({result.size} features): "
            f"explained variance {q.explained_variance:.3f}, L0 {q.l0:.2f}, dead {_pct(q.dead_share)}"
            f"{_html_table(['qtype', 'clean exact', 'spliced exact'], rows)}</div>")


def feature_study_html(result) -> str:
    rows = [[op, str(c.get("feature_encodes")), str(c.get("probe_reads")), str(c.get("feature_moves")),
             str(c.get("direction_moves"))] for op, c in result.features["comparison"].items()]
    return (f"<div><b>features of {html.escape(result.site)}</b> at digit {result.digit}: one feature for carry and "
            f"borrow: {'yes' if result.one_feature_for_carry_and_borrow else 'no'}"
            f"{_html_table(['qtype', 'feature encodes', 'probe reads', 'feature moves', 'direction moves'], rows)}"
            "</div>")


def study_pca_plot(result, interactive: bool = False):
    """PC0/PC1 of the node's output per qtype, T8/T9/T10 red/green/blue, marker = carry/borrow out."""
    if interactive:
        from arithlens.report.interactive import study_pca_figure

        return study_pca_figure(result.data)
    from arithlens.report.node_figures import pca_figure

    return pca_figure(result.data)


def map_plot(result, name: str = "MathsPurposePerNode", interactive: bool = False, n_digits: int | None = None):
    """One quanta map by its short name (`map_names()`), e.g. `FailureFrequency`, `AttentionBehavior`,
    `MathsPurposePerNode`; with `interactive` a plotly figure whose hover shows each node's tags."""
    from arithlens.arith.layout import Layout
    from arithlens.results.nodes import _digits_of

    layout = Layout(n_digits or _digits_of(result.model))
    if interactive:
        from arithlens.report.interactive import quanta_map

        return quanta_map(result.node_list(), name, layout, title=f"{result.model}: {name}")
    from arithlens.report.quanta_maps import map_figure

    return map_figure(result.node_list(), name, layout)


def faithfulness_line(result) -> str:
    """One line: `useful (97 of 330 nodes, mean): ADD 17.0% [16.3, 17.8] n=10000 | ...`."""
    cells = []
    for row in result.qtypes:
        lo, hi = row.ci
        cells.append(f"{row.qtype} {100 * row.exact:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] n={row.n}"
                     f" loss rec. {100 * row.loss_recovered:.0f}%")
    return f"{result.label} ({len(result.nodes)} of {result.n_all} nodes, {result.ablation}): " + " | ".join(cells)
