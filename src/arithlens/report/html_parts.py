"""The building blocks of the offline HTML report: escaping, percentages and rates, tables, embedded PNGs and
the page's stylesheet."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _pct(x, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:.{digits}f}%"


def _num(x, fmt: str = ".2f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def _rate(r: dict | None) -> str:
    """`97.0% [94.1, 98.5] n=200` from a stats.rate dict."""
    if not r or not r.get("n"):
        return "n/a"
    lo, hi = r["ci"]
    return f"{_pct(r['rate'])} <span class=ci>[{_pct(lo)}, {_pct(hi)}] n={r['n']}</span>"


def _img(path: Path, alt: str, cls: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="{cls}" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "", raw: bool = False) -> str:
    """A table; cells are escaped unless `raw` (the caller built them from escaped pieces)."""
    cell = (lambda c: str(c)) if raw else _e
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _kv(rows: Sequence[tuple[str, str]]) -> str:
    return '<table class="kv">' + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _png(paths: Sequence[Path]) -> Path | None:
    return next((p for p in paths if p.suffix == ".png"), None)


CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2430; margin: 0;
       background: #f6f7f9; }
main { max-width: 1240px; margin: 0 auto; padding: 16px 28px 60px; background: #fff; }
header.top { background: #1f3a5f; color: #fff; padding: 18px 28px; }
header.top h1 { margin: 0; font-size: 24px; }
header.top p { margin: 4px 0 0; opacity: .85; }
header.top code { background: rgba(255,255,255,.15); color: #fff; }
header.top nav a { color: #cfe0f5; }
h2 { border-bottom: 2px solid #1f3a5f; padding-bottom: 4px; margin-top: 40px; }
h3 { margin: 28px 0 8px; }
nav { font-size: 14px; margin: 10px 0 0; }
nav a { margin-right: 14px; color: #1f3a5f; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13.5px; }
th, td { border: 1px solid #d5d9e0; padding: 3px 8px; text-align: left; vertical-align: top; }
thead th { background: #eef1f5; }
table.kv th { background: #f3f5f8; font-weight: 600; width: 15em; }
table.positions td, table.positions th { text-align: center; min-width: 2.4em; }
table.positions td.hit { background: #dbeecd; font-weight: 600; }
table.quanta td.filled { background: #eaf3df; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.card { border: 1px solid #d5d9e0; border-radius: 6px; padding: 8px 14px; min-width: 150px; background: #fafbfc; }
.card b { display: block; font-size: 22px; color: #1f3a5f; }
.card span { font-size: 13px; color: #556; }
.verdict { border-left: 5px solid #1f3a5f; background: #f2f6fb; padding: 8px 14px; margin: 8px 0 12px; }
.verdict.poly { border-color: #b5532a; background: #fbf3ee; }
.note { color: #8a4b08; background: #fff7e6; border: 1px solid #f0d9a8; padding: 6px 12px; border-radius: 4px; }
.error { color: #8b1a1a; background: #fdecec; border: 1px solid #f3b9b9; padding: 6px 12px; border-radius: 4px; }
.ci { color: #667; font-size: 12px; }
.yes { color: #1a6b2a; font-weight: 600; }
.no { color: #777; }
figure { margin: 12px 0 22px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; align-items: start; }
.pair figure { margin: 0 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e6ea; }
figcaption { font-size: 13px; color: #556; margin-top: 3px; }
details { margin: 6px 0 14px; }
summary { cursor: pointer; color: #1f3a5f; }
code { background: #f1f3f6; padding: 0 3px; border-radius: 3px; }
footer { margin-top: 40px; font-size: 12.5px; color: #667; }
"""
