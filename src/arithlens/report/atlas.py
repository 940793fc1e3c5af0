"""The atlas on paper: the role x model table as a figure, and one small offline HTML page around it."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from matplotlib.colors import ListedColormap
from matplotlib.patches import Rectangle

from arithlens.report.figures import new_figure, save_figure

# Cell colours: absent, one node plays the role, several do; a role a reference model (the adder) shares is framed.
_COLOURS = ListedColormap(["#f2f2f2", "#7fb3d5", "#1f618d"])
_QTYPES = ("ADD", "SUB", "NEG", "MUL")  # the order of the faithfulness table's columns


def plot_role_table(data: dict, path: str | Path, *, dpi: int = 110) -> Path:
    """Rows: roles (every role some model plays, in position then layer order); columns: models; each cell names
    the node playing the role in that model. Polysemantic nodes (by node study) are starred."""
    models = [m["name"] for m in data["models"]]
    rows = data["roles"]
    grid = [[min(len(_nodes(r, m)), 2) for m in models] for r in rows]
    fig_h = 1.2 + 0.22 * max(len(rows), 1)
    fig_w = 4.5 + 1.6 * len(models)
    fig = new_figure(fig_w, fig_h)
    ax = fig.add_subplot()
    ax.imshow(grid if rows else [[0] * len(models)], cmap=_COLOURS, vmin=0, vmax=2, aspect="auto",
              interpolation="nearest")
    for i, r in enumerate(rows):
        for j, m in enumerate(models):
            nodes = _nodes(r, m)
            if nodes:
                text = " ".join(c["node"] + ("*" if c.get("polysemantic") else "") for c in nodes)
                if m not in r["models"]:
                    text = "~ " + text  # the reference plays the role restricted to its operations
                ax.text(j, i, text, ha="center", va="center", fontsize=6, color="white" if len(nodes) > 1 else "black")
        if r["reference_shares"]:
            ax.add_patch(Rectangle((-0.5, i - 0.5), len(models), 1, fill=False, edgecolor="#c0392b", lw=0.8))
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels([_column_label(m) for m in data["models"]], fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r["label"] for r in rows], fontsize=6)
    ax.set_title(f"{data['headline']}\nrole x model (dark: several nodes; red frame: shared with the reference; "
                 f"* polysemantic)\nunder each model: its useful set's worst-qtype exact accuracy with the rest "
                 f"ablated", fontsize=8, pad=32)
    path = Path(path)
    return save_figure(fig, path.parent, path.stem, dpi=dpi)[0]


def write_atlas_html(data: dict, out_dir: str | Path, figure: Path) -> Path:
    """`atlas.html`: the headline, the founding question per model, the role table (figure and HTML table)."""
    out = Path(out_dir)
    esc = html.escape
    png = base64.b64encode(figure.read_bytes()).decode()
    models = [m["name"] for m in data["models"]]
    found_rows = "".join(
        f"<tr><td>{esc(f['model'])}</td><td>{esc(f['position'])}</td><td>{esc(f['evidence'])}</td>"
        f"<td>{'yes' if f['one_head_carry_and_borrow'] else 'no'}</td><td>{esc(f['text'])}</td></tr>"
        for f in data["founding"])
    qtypes = [q for q in _QTYPES if any(m.get("faithfulness") and q in m["faithfulness"]["qtypes"]
                                        for m in data["models"])]
    faith_rows = "".join(_faithfulness_row(m, qtypes, esc) for m in data["models"])
    faith_head = "".join(f"<th>{q} exact [95% CI]</th>" for q in qtypes)
    head = "".join(f"<th>{esc(m)}</th>" for m in models)
    body = []
    for r in data["roles"]:
        cells = []
        for m in models:
            nodes = _nodes(r, m)
            text = "<br>".join(("~ " if m not in r["models"] else "") + esc(_cell_text(c)) for c in nodes)
            cells.append(f"<td class='{'on' if nodes else 'off'}'>{text}</td>")
        mark = " class='shared'" if r["reference_shares"] else ""
        body.append(f"<tr{mark}><th>{esc(r['label'])}</th>{''.join(cells)}</tr>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>arithlens atlas</title><style>
body{{font-family:sans-serif;font-size:13px;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;vertical-align:top}} th{{text-align:left;font-weight:normal}}
td.on{{background:#d6eaf8}} td.off{{background:#fafafa}} tr.shared th{{border-left:4px solid #c0392b}}
</style></head><body>
<h1>Atlas of {len(models)} models</h1>
<p><b>{esc(data['headline'])}</b></p>
<p>{len(data['roles'])} roles; {len(data['roles_in_every_model'])} in every model, {data['roles_in_some_models']} in
some; {len(data['roles_shared_with_reference'])} shared with the reference model (marked red; ~ names the reference's node). A head attends a token
holding at least {data['attend_min']}% of its attention.</p>
<h2>The founding question: the layer-0 head at the position computing A2</h2>
<p>The detail names the layer-0 heads holding the carry (A1.SC) and the borrows (A1.MB, A1.NB) into A2, then any
studied head of a later layer at the same position that holds one of them.</p>
<table><tr><th>model</th><th>position</th><th>evidence</th><th>one head for carry and borrow</th><th>detail</th></tr>
{found_rows}</table>
<h2>The useful set alone</h2>
<p>{esc(data.get('faithfulness_line', ''))}</p>
<p>{esc(data.get('functions_line', ''))}</p>
<table><tr><th>model</th><th>nodes in the set</th>{faith_head}<th>circuit (held out, worst qtype)</th></tr>
{faith_rows}</table>
<h2>Roles x models</h2>
<img alt="role x model table" src="data:image/png;base64,{png}" style="max-width:100%">
<table><tr><th>role</th>{head}</tr>{''.join(body)}</table>
</body></html>
"""
    path = out / "atlas.html"
    from arithlens.io import write_atomic

    write_atomic(path, page.encode())
    return path


def _column_label(model: dict) -> str:
    """The model's name on two lines, then its useful set's worst qtype exact accuracy with everything else ablated."""
    label = model["name"].replace("_s", "\n_s")
    f = model.get("faithfulness")
    return label + (f"\nuseful alone >= {_pct(f['min_exact'])}" if f and f["min_exact"] is not None else "")


def _faithfulness_row(model: dict, qtypes: list[str], esc) -> str:
    """One model's useful-set faithfulness: nodes kept of all, exact accuracy per qtype with its interval and n."""
    f = model.get("faithfulness")
    if not f:
        return f"<tr><td>{esc(model['name'])}</td><td colspan='{len(qtypes) + 2}'>not measured</td></tr>"
    rows = [f["qtypes"].get(q) for q in qtypes]
    cells = "".join("<td>-</td>" if r is None else
                    f"<td>{_pct(r['exact'])} [{_pct(r['ci'][0])}, {_pct(r['ci'][1])}] n={r['n']}</td>" for r in rows)
    c = model.get("circuit")
    circuit = "-" if not c else f"{c['n_nodes']} nodes, {_pct(c['min_exact'])}: {esc(' '.join(c['nodes']))}"
    return f"<tr><td>{esc(model['name'])}</td><td>{f['n_nodes']} of {f['n_all']}</td>{cells}<td>{circuit}</td></tr>"


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _nodes(row: dict, model: str) -> list[dict]:
    """The cells of `model` in `row`: its own nodes, else a reference's node for the restricted role."""
    return row["models"].get(model) or row.get("reference_cells", {}).get(model, [])


def _cell_text(cell: dict) -> str:
    text = cell["node"]
    if cell.get("fail_pct") is not None:
        text += f" fail {cell['fail_pct']}%"
    if "polysemantic" in cell:
        text += " polysemantic" if cell["polysemantic"] else ""
        if cell.get("roles"):
            text += " " + "+".join(cell["roles"])
    return text


def write_atlas(data: dict, out_dir: str | Path) -> list[Path]:
    """atlas.json, atlas.png and atlas.html in `out_dir`."""
    from arithlens.io import write_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "atlas.json"
    write_atomic(json_path, (json.dumps(data, indent=1, allow_nan=False) + "\n").encode())
    figure = plot_role_table(data, out / "atlas.png")
    return [json_path, figure, write_atlas_html(data, out, figure)]


__all__ = ["plot_role_table", "write_atlas", "write_atlas_html"]
