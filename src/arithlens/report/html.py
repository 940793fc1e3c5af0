"""The offline HTML report of `arithlens analyze`: one self-contained page (inline CSS, PNGs embedded as data
URIs, no script, no network) with the model card, the useful nodes, every quanta map, the node studies and
the search rates. `write_report` draws the figures beside it; `render_report` only builds the text.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from arithlens.analysis.analyze import Analysis, StudyEntry, founding_position
from arithlens.analysis.nodes import Major
from arithlens.analysis.stats import wilson
from arithlens.errors import ArithLensError
from arithlens.io import write_atomic
from arithlens.model.zoo import card_accuracy
from arithlens.report.circuit_card import card_html, card_verdict
from arithlens.report.circuit_graph import (
    EDGES_FILE, GRAPH_STEM, circuit_json, draw_circuit_graph, graph_data, node_edges, useful_split,
)
from arithlens.report.figures import Job, JobPool
from arithlens.report.founding import founding_sentence
from arithlens.report.html_parts import CSS, _e, _img, _kv, _num, _pct, _png, _rate, _table
from arithlens.report.node_figures import node_figure_jobs
from arithlens.report.quanta_maps import (
    QUANTA_AT_COLUMNS,
    catalogue,
    draw_position_failures,
    file_stem,
    map_jobs,
    operation_coverage,
    quanta_at_rows,
)

REPORT_FILE = "report.html"
FIGURE_TITLES = {"pca": "PCA of the head's output per operation", "attention": "Attention per operation",
                 "necessity": "Necessity: answer tokens wrong under ablation",
                 "grid": "Mean output over the 10x10 digit pairs"}

Say = Callable[[str, int, int, str], None]


@dataclass
class ReportFiles:
    report: Path
    maps: list[Path] = field(default_factory=list)  # every map and table file (all formats)
    figures: dict[str, dict[str, list[Path]]] = field(default_factory=dict)  # node -> figure -> files
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def all(self) -> list[Path]:
        return [*self.maps, *(p for figs in self.figures.values() for paths in figs.values() for p in paths),
                self.report]


class ReportDrawer:
    """The report's maps and study figures, each drawn once (PNG and SVG from one drawing) in worker processes.

    With `overlap`, drawing starts while the analysis goes on: `tagged` queues the maps as soon as the nodes
    carry their final tags, `studied` a study's figures as soon as it is done. That only pays where a core is
    left over (more cores than the analysis's torch threads): on 2 cores with 2 torch threads the figure workers
    took their time from the studies (`benchmarks/bench_analyze.py`: 280.5 s before, 285.7 s after, figures
    57.6 s -> 1.6 s but studies 116.0 s -> 175.7 s), so without `overlap` the jobs wait and `finish` draws them
    all at the end, one worker per core. `finish` queues whatever was not yet and waits. Pass the drawer to
    `analyze(..., drawer=...)`, then to `write_report`; use it as a context manager (an exception cancels the
    drawing not yet started)."""

    def __init__(self, out_dir: str | Path, formats: Sequence[str] = ("png",), workers: int | None = None, *,
                 overlap: bool = True):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.formats = ("png", *(f for f in formats if f != "png"))  # PNG always: the page embeds it
        self.overlap = overlap
        self.pool = JobPool(workers)
        # Each slot holds a future, or (without overlap) the job itself until `finish` submits it.
        self._maps: list | None = None  # the maps and tables, in `map_jobs` order
        self._figures: dict[str, dict[str, object]] = {}  # node -> figure name -> slot

    def _queue(self, job: Job):
        return self.pool.submit(job) if self.overlap else job

    @property
    def _waiting(self) -> list[Job]:
        """The jobs held back (not yet handed to the pool)."""
        slots = [*(self._maps or []), *(f for figs in self._figures.values() for f in figs.values())]
        return [slot for slot in slots if isinstance(slot, tuple)]

    def tagged(self, analysis: Analysis) -> None:
        if self._maps is not None:
            return
        spec = analysis.spec
        jobs = map_jobs(analysis.nodes, spec, self.out, spec.base_name, self.formats)
        jobs.append((draw_position_failures, (analysis.useful.position_failures, spec, self.out, spec.base_name,
                                              self.formats)))
        circuit = analysis.edge_circuit
        if circuit is not None:
            jobs.append((draw_circuit_graph, (_graph_data(analysis, circuit), self.out, spec.base_name + GRAPH_STEM,
                                              self.formats)))
        self._maps = [self._queue(job) for job in jobs]

    def studied(self, entry: StudyEntry) -> None:
        if entry.data is None or entry.name in self._figures:
            return
        self._figures[entry.name] = {name: self._queue(job)
                                     for name, job in node_figure_jobs(entry.data, self.out, self.formats).items()}

    def finish(self, analysis: Analysis, say: Say) -> tuple[list[Path], dict[str, dict[str, list[Path]]],
                                                           dict[str, float]]:
        """(map files, {node: {figure: files}}, timings): `maps` and `figures` are the waits after the analysis."""
        self.tagged(analysis)
        done = [e for e in analysis.studies if e.data is not None]
        for entry in done:
            self.studied(entry)
        def submitted(slot):  # without overlap: everything now, maps first
            return self.pool.submit(slot) if isinstance(slot, tuple) else slot

        self._maps = [submitted(slot) for slot in self._maps]
        self._figures = {node: {name: submitted(slot) for name, slot in figs.items()}
                         for node, figs in self._figures.items()}
        t0 = time.perf_counter()
        say("maps", 0, 1, "")
        maps = [p for future in self._maps for p in future.result()]
        timings = {"maps": time.perf_counter() - t0}
        say("maps", 1, 1, "")
        figures: dict[str, dict[str, list[Path]]] = {}
        for i, entry in enumerate(done):
            say("figures", i, len(done), entry.name)
            figures[entry.name] = {name: future.result() for name, future in self._figures[entry.name].items()}
        say("figures", len(done), len(done), "")
        self.pool.close()
        timings["figures"] = time.perf_counter() - t0 - timings["maps"]
        return maps, figures, timings

    def close(self, cancel: bool = False) -> None:
        self.pool.close(cancel)

    def __enter__(self) -> ReportDrawer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(cancel=exc_type is not None)


def write_report(analysis: Analysis, out_dir: str | Path, *, card: dict | None = None, source: str | None = None,
                 formats: Sequence[str] = ("png",), progress: Say | None = None,
                 interactive: bool = False, drawer: ReportDrawer | None = None) -> ReportFiles:
    """Draw the maps and the node-study figures into `out_dir`, then write `report.html` there.

    `card` is the checkpoint sidecar's extra keys ("training", "accuracy"); `source` where the model came from.
    PNG is always drawn (the page embeds it); `formats` may add "svg". `drawer`: the `ReportDrawer` the analysis
    already handed its results to (drawing into `out_dir` in the same formats); by default one is made here.
    """
    out = Path(out_dir)
    say = progress or (lambda stage, done, total, detail="": None)
    with (drawer if drawer is not None else ReportDrawer(out, formats)) as draw:
        if draw.out.resolve() != out.resolve():
            raise ArithLensError(f"the drawer draws into {draw.out}, not {out}")
        maps, figures, timings = draw.finish(analysis, say)

    t0 = time.perf_counter()
    page = render_report(analysis, maps=maps, figures=figures, card=card, source=source,
                         timings={**analysis.timings, **timings}, interactive=interactive)
    path = out / REPORT_FILE
    write_atomic(path, page.encode("utf-8"))
    timings["report"] = time.perf_counter() - t0
    return ReportFiles(path, maps, figures, timings)


# ---------------------------------------------------------------------------------------------------
# The page


def render_report(analysis: Analysis, *, maps: Sequence[Path], figures: dict[str, dict[str, list[Path]]],
                  card: dict | None = None, source: str | None = None, timings: dict[str, float] | None = None,
                  interactive: bool = False) -> str:
    """The whole page as one string; with `interactive` (and plotly installed) a section of hover figures too."""
    spec = analysis.spec
    sections = [
        ("card", "Model", _model_card(analysis, card or {}, source)),
        ("summary", "Summary", _summary(analysis)),
        ("positions", "Failures per position", _positions(analysis)),
        ("maps", "Quanta maps", _maps(analysis, maps)),
        ("quanta", "Quanta at each answer position", _quanta_at(analysis)),
        ("edges", "Edge circuit", _edge_circuit(analysis, maps)),
        ("studies", "Node studies", _studies(analysis, figures)),
        ("search", "Algorithm searches", _search(analysis)),
        ("timings", "Timings", _timings(timings or analysis.timings)),
    ]
    if interactive:  # plotly.js goes inline, once, inside the section: the page stays offline
        from arithlens.report.interactive import available, report_section

        if available():
            sections.insert(-2, ("interactive", "Interactive figures", report_section(analysis)))
    nav = "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{_e(title)}</h2>{content}</section>' for key, title, content in sections)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<link rel=\"icon\" href=\"data:,\">"  # no favicon request: the page loads nothing from anywhere
        f"<title>arithlens analysis: {_e(spec.name)}</title><style>{CSS}</style></head><body>"
        f"<header class=\"top\"><h1>arithlens analysis of <code>{_e(spec.name)}</code></h1>{_answer(analysis)}"
        f"<p>{_e(stamp)}: useful nodes, algorithm searches and node studies</p>"
        f"<nav>{nav}</nav></header><main>{body}"
        "<footer>Written by <code>arithlens analyze</code>. Every number is also in the JSON files beside this page "
        "(<code>analysis.json</code>, the behaviour, algorithm and search JSONs, one <code>*_study.json</code> per "
        "node study).</footer></main></body></html>\n"
    )


def _answer(analysis: Analysis) -> str:
    """The founding question answered in one sentence (report/founding.py), first on the page."""
    sentence = founding_sentence(analysis)
    return f'<p class="answer"><b>{_e(sentence)}</b></p>' if sentence else ""


def _model_card(analysis: Analysis, card: dict, source: str | None) -> str:
    s = analysis.spec
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    rows = [("name", f"<code>{_e(s.name)}</code>"),
            ("operation", _e(f"{s.op}: {s.perc_add}% addition, {s.perc_sub}% subtraction"
                             + (f", {s.perc_mul}% multiplication" if s.perc_mul else ""))),
            ("shape", _e(f"{s.n_digits} digits, {s.n_layers} layers x {s.n_heads} heads, d_model {s.d_model}, "
                         f"d_head {s.d_head}, d_mlp {s.d_mlp}, {s.act_fn}")),
            ("training", _e(f"{s.training_steps:,} steps planned, seed {s.seed}"
                            + (f"; {training['steps']:,} steps done" if "steps" in training else "")
                            + (f" in {training['seconds']:.0f} s" if training.get("seconds") else "")))]
    heldout = training.get("heldout")
    if isinstance(heldout, dict) and heldout.get("questions"):
        rows.append(("held-out check", _e(f"{heldout['wrong']} wrong of {heldout['questions']:,} at step "
                                          f"{heldout.get('step', '?')}")))
    accuracy = card_accuracy(card)
    rows.append(("accuracy", _e(accuracy) if accuracy else "not in the model card (run <code>arithlens eval</code>)"))
    if training.get("final_loss") is not None:
        rows.append(("final training loss", _e(f"{training['final_loss']:.3g}")))
    if source:
        rows.append(("loaded from", f"<code>{_e(source)}</code>"))
    out = _kv(rows)
    if training.get("partial"):
        out = (f'<p class="note">This is a snapshot taken while training ran (step {training.get("steps", "?")}); '
               "a finished model may use other nodes.</p>") + out
    return out


def _summary(analysis: Analysis) -> str:
    u, nodes = analysis.useful, analysis.nodes
    mlps = [n for n in nodes.mlps if not n.node.is_neuron]
    cover = operation_coverage(nodes)
    cards = [(len(u.useful_positions), "useful positions"), (len(nodes.heads), "useful heads"),
             (len(mlps), "useful MLP layers"), (len(u.questions), f"questions tested ({len(u.dropped)} dropped)")]
    if analysis.search is not None:
        c = analysis.search.coverage
        cards.append((f"{c.heads_purposed}/{c.heads}", "heads with an algorithmic purpose"))
        cards.append((f"{sum(r.passed for r in analysis.claims)}/{len(analysis.claims)}", "algorithm claims pass"))
    done = [e for e in analysis.studies if e.data is not None]
    cards.append((f"{sum(e.data['verdict']['polysemantic'] for e in done)}/{len(done)}", "studied heads polysemantic"))
    html_cards = "".join(f'<div class="card"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for v, k in cards)
    layout = analysis.spec.layout
    rows = [("useful positions", _e(" ".join(f"P{p} ({layout.meaning(p)})" for p in u.useful_positions) or "none")),
            ("clean answer loss", _e(f"{u.clean_loss:.2e} (mean NLL of the answer tokens; < 0.04 is good)")),
            ("operation coverage", _e("nodes whose ablation fails addition (S) "
                                      f"{cover.by_operation['S']}, subtraction (M) {cover.by_operation['M']}, "
                                      f"negative subtraction (N) {cover.by_operation['N']}; serving 3 operations "
                                      f"{cover.by_count[3]}, 2: {cover.by_count[2]}, 1: {cover.by_count[1]}"))]
    if analysis.search is not None:
        rows.append(("search coverage", _e(analysis.search.coverage.line())))
    out = f'<div class="cards">{html_cards}</div>' + _kv(rows)
    if u.dropped:
        shown = "".join(f"<li><code>{_e(d)}</code></li>" for d in u.dropped[:20])
        out += (f"<details><summary>{_plural(len(u.dropped), 'question')} the model gets wrong (dropped first)"
                f"</summary><ul>{shown}</ul></details>")
    return out + _founding(analysis)


def _founding(analysis: Analysis) -> str:
    """The project's founding question: is the layer-0 head at A2's position doing several jobs?"""
    position = founding_position(analysis.spec)
    entries = [e for e in analysis.studies if e.target.node.position == position and e.target.node.layer == 0]
    if not entries:
        return ""
    items = []
    for e in entries:
        if e.data is None:
            items.append(f"<li><a href=\"#study-{e.name}\">{_e(e.name)}</a>: study failed ({_e(e.error)})</li>")
            continue
        v = e.data["verdict"]
        headline = v["text"].split(";")[0]
        cls = "yes" if v["polysemantic"] else "no"
        items.append(f"<li><a href=\"#study-{e.name}\">{_e(e.name)}</a>: <span class=\"{cls}\">{_e(headline)}</span>"
                     + (f" (tags {_e(' '.join(e.data['tags']))})" if e.data["tags"] else "") + "</li>")
    return (f"<h3>Is one layer-0 head at P{position} doing several jobs?</h3>"
            f"<p>Each layer-0 head at P{position} was studied (carry for addition, borrow for subtraction and for "
            f"negative subtraction); details under <a href=\"#studies\">Node studies</a>.</p><ul>{''.join(items)}</ul>")


def _positions(analysis: Analysis) -> str:
    spec = analysis.spec
    counts = analysis.useful.position_failures
    n = len(analysis.useful.questions)
    head = "<tr><th></th>" + "".join(f"<th>P{p}</th>" for p in range(spec.n_ctx)) + "</tr>"
    meaning = "<tr><th>token</th>" + "".join(f"<td>{_e(m)}</td>" for m in spec.layout.meanings) + "</tr>"
    fails = "<tr><th># fails</th>" + "".join(
        f'<td class="hit">{c}</td>' if c else "<td>.</td>" for c in counts) + "</tr>"
    return (f"<p>Questions (of {n}) that fail when the residual stream at one position is mean-ablated after every "
            f"layer. Positions with failures are the useful ones; their heads and MLP layers are tested next.</p>"
            f'<div style="overflow-x:auto"><table class="positions">{head}{meaning}{fails}</table></div>')


def _maps(analysis: Analysis, maps: Sequence[Path]) -> str:
    prefix = analysis.spec.base_name
    by_stem = {p.stem: p for p in maps if p.suffix == ".png"}
    parts = []
    for qmap in {id(m): m for m in catalogue(analysis.spec.layout).values()}.values():
        path = by_stem.get(file_stem(prefix, qmap.title))
        if path is not None:
            parts.append(f"<h3>{_e(qmap.title)}</h3><figure>{_img(path, qmap.title, 'quanta-map')}"
                         f"<figcaption><code>{_e(path.name)}</code></figcaption></figure>")
    if not parts:
        return "<p>No map has a cell: no useful node was found.</p>"
    return "".join(parts)


def _quanta_at(analysis: Analysis) -> str:
    spec = analysis.spec
    parts = []
    for position in range(2 * spec.n_digits + 3, spec.n_ctx - 1):
        rows = quanta_at_rows(analysis.nodes, spec.layout, position)
        if not rows:
            continue
        k = spec.layout.answer_digit_at(position)
        body = "".join("<tr>" + "".join(f'<td class="{"filled" if c and j in (2, 3) else ""}">{_e(c)}</td>'
                                        for j, c in enumerate(row)) + "</tr>" for row in rows)
        head = "".join(f"<th>{_e(h)}</th>" for h in QUANTA_AT_COLUMNS)
        parts.append(f"<h3>Quanta at P{position} ({_e(spec.layout.meaning(position))}, predicts A{k})</h3>"
                     f'<table class="quanta"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
    return "".join(parts) or "<p>No useful node sits at an answer position.</p>"


def _studies(analysis: Analysis, figures: dict[str, dict[str, list[Path]]]) -> str:
    parts = ["<p>Each study ablates the head on question sets split by operation and by the carry/borrow class of "
             "one digit pair, patches it between questions that differ only in that pair, and reads its output "
             "with PCA and cross-validated linear probes (with a label-shuffle null). Rates carry Wilson 95% "
             "intervals.</p>"]
    if analysis.skipped_studies:
        names = ", ".join(t.node.name for t in analysis.skipped_studies)
        parts.append(f'<p class="note">Not studied (over --max-studies): {_e(names)}.</p>')
    founding = _founding_heads(analysis)
    for entry in analysis.studies:
        parts.append(_study(entry, figures.get(entry.name, {})))
        if entry.name in founding:
            parts.append(_founding_edges(analysis, entry.name))
    return "".join(parts)


def _study(entry: StudyEntry, figures: dict[str, list[Path]]) -> str:
    reasons = "; ".join(entry.target.reasons)
    out = [f'<h3 id="study-{_e(entry.name)}">{_e(entry.name)}</h3><p>Studied because: {_e(reasons)}.</p>']
    if entry.data is None:
        return "".join(out) + f'<p class="error">The study failed: {_e(entry.error)}</p>'
    d = entry.data
    v = d["verdict"]
    headline, _, rest = v["text"].partition("; ")
    out.append(f'<div class="verdict{" poly" if v["polysemantic"] else ""}"><b>Verdict: {_e(headline)}.</b> '
               f'{_e(rest[:1].upper() + rest[1:])}</div>')
    ops = d["qtypes"]
    t, k = d["study_digit"], d["answer_digit"]
    facts = [("study digit", _e(f"D{t} / D'{t} ({d['study_digit_source']}); the node's position predicts "
                                + (f"A{k}" if k is not None else "no answer digit"))),
             ("tags", _e(" ".join(d["tags"]) or "none")),
             ("variance explained", _e(f"digit pair {_pct(d['grid']['r2_pair'])}, operation "
                                       f"{_pct(d['grid']['r2_qtype'])}, pair x operation "
                                       f"{_pct(d['grid']['r2_pair_x_qtype'])}"))]
    cos = d["shared"]["direction_cosines"]
    if cos:
        facts.append(("carry-direction cosines", _e(", ".join(
            f"{key} {_num(c['cosine'], '+.2f')} (p={_num(c['p_value'], '.3g')})" for key, c in cos.items()))))
    out.append(_kv(facts))
    out.append(_study_table(d, ops))
    shown = {name: _figure(entry.name, name, figures.get(name, [])) for name in FIGURE_TITLES}
    out += [shown["pca"], shown["necessity"]]
    if shown["attention"] and shown["grid"]:  # the two narrower figures side by side
        out.append(f'<div class="pair">{shown["attention"]}{shown["grid"]}</div>')
    else:
        out += [shown["attention"], shown["grid"]]
    return "".join(out)


def _figure(node: str, name: str, paths: Sequence[Path]) -> str:
    png = _png(paths)
    if png is None:
        return ""
    return (f"<figure>{_img(png, f'{node} {FIGURE_TITLES[name]}', f'figure-{name}')}"
            f"<figcaption>{_e(FIGURE_TITLES[name])} (<code>{_e(png.name)}</code>)</figcaption></figure>")


def _study_table(d: dict, ops: Sequence[str]) -> str:
    rep, nec, suf, per = d["representation"], d["necessity"], d["sufficiency"], d["verdict"]["per_qtype"]
    target = nec["target_digit"]

    def flag(x: bool) -> str:
        return '<span class="yes">yes</span>' if x else '<span class="no">no</span>'

    rows = []
    for op in ops:
        r, a = rep[op], nec["per_qtype"][op]["all"]
        pc, pp = r["probe_carry"], r["probe_pair"]
        patch = _rate(suf["per_qtype"][op]["success"]) if suf.get("applicable") else "n/a"
        rows.append([
            _e(op), _e(per[op]["feature"]), flag(per[op]["encodes"]), flag(per[op]["necessary"]),
            flag(per[op]["sufficient"]), flag(per[op]["role"]),
            f"{_pct(pc['accuracy'])} <span class=ci>p={_num(pc['p_value'], '.3g')}</span>",
            f"{_pct(pp['accuracy'])} <span class=ci>{_e(r['pair_rule'])}</span>",
            f"{_pct(r['evr'][0])} / {_pct(r['evr'][1])}", _num(r["silhouette_class"]), patch,
            f"{_rate(a['resample']['target_wrong'])} "
            f"<span class=ci>clean {_pct(a['clean']['target_wrong']['rate'])}</span>",
        ])
    header = ["op", "feature", "encodes", "necessary", "sufficient", "role", "probe carry/borrow", "probe pair",
              "EVR PC0 / PC1", "silhouette T", "patching success", f"resample: {target} wrong"]
    return _table(header, rows, "study", raw=True)


def _search(analysis: Analysis) -> str:
    if analysis.search is None:
        return f'<p class="note">{_e(analysis.search_note or "The searches did not run.")}</p>'
    s = analysis.search
    out = [f"<p>{_e(s.coverage.line())}. A tag needs the {_e(s.rule.describe())}; "
           f"{s.settings['pairs']} pairs per sub-task and digit, seed {s.settings['seed']}.</p>"]
    if analysis.search_note:
        out.append(f'<p class="note">{_e(analysis.search_note)}</p>')
    if analysis.claims:
        rows = []
        for c in analysis.claims:
            clauses = "; ".join(f"{clause} ({', '.join(names) or 'none'})" for clause, names in c.clauses)
            rows.append(['<span class="yes">PASS</span>' if c.passed else '<span class="no">FAIL</span>',
                         f"<code>{_e(c.claim)}</code>", _e(clauses)])
        passed = sum(c.passed for c in analysis.claims)
        out.append(f"<h3>Algorithm claims: {passed} of {len(analysis.claims)} pass</h3>")
        out.append(_table(["", "claim", "nodes satisfying each clause"], rows, "claims", raw=True))
    # The maps above show which node got which tag; these are the rates behind them, for checking.
    tagged = [t for t in s.trials if t.tagged]
    untagged = [t for t in s.trials if not t.tagged]
    out.append("<h3>Patch tests</h3>")
    for trials, what in ((tagged, "that earned a tag"), (untagged, "that earned none")):
        if trials:
            out.append(f"<details><summary>{len(trials)} patch tests {what}</summary>{_trial_table(trials)}</details>")
    return "".join(out)


def _trial_table(trials) -> str:
    def rate(hits: int, n: int) -> str:
        return _rate({"rate": hits / n, "ci": list(wilson(hits, n)), "n": n}) if n else "n/a"

    rows = [[_e(t.name), _e(t.tag), _e(t.tagged or ""), rate(t.strong, t.valid), rate(t.weak, t.valid)]
            for t in trials]
    return _table(["node", "tested for", "tag added", "strong success", "weak success"], rows, "trials", raw=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _timings(timings: dict[str, float]) -> str:
    rows = [(stage, f"{seconds:.1f} s") for stage, seconds in timings.items()]
    total = sum(timings.values())
    return ("<p>Wall-clock time of each stage on this machine (<code>analysis.json</code> adds the process's CPU "
            "time and the load average, which say how busy the machine was).</p>"
            + _table(["stage", "time"], [*rows, ("total", f"{total:.1f} s")], "timings"))


# ---------------------------------------------------------------------------------------------------
# The edge circuit (issue 28): its graph, exact rates and JSON, how it meets the quanta maps, the founding heads' edges

EDGES_SHOWN = 12  # edges listed per founding head and direction (the rest are in the JSON)


def _circuit_purposes(analysis: Analysis) -> dict[str, list[str]]:
    """Node -> Algo tag values: the circuit's purposes where they were computed, else the analysis's tags."""
    found = getattr(analysis, "circuit_purposes", None)
    if found is not None:
        return {p.node: list(p.purpose) for p in found.nodes}
    return {un.name: un.values(Major.ALGO) for un in analysis.nodes if un.values(Major.ALGO)}


def _graph_data(analysis: Analysis, circuit) -> dict:
    spec = analysis.spec
    title = (f"{spec.name}: {circuit.n_edges:,} of {circuit.graph.n_edges:,} edges ({circuit.method}, "
             f"{circuit.ablation} ablation)")
    return graph_data(circuit, _circuit_purposes(analysis), spec.layout.meanings, title)


def _json_b64(data: dict) -> str:
    """Inline, so the link works offline and the page stays one file (no href leaves it)."""
    return base64.b64encode(json.dumps(data, allow_nan=False).encode()).decode("ascii")


def _useful_units(analysis: Analysis) -> list[str]:
    return [un.name for un in analysis.nodes if not un.node.is_neuron]


def _edge_circuit(analysis: Analysis, maps: Sequence[Path]) -> str:
    circuit = getattr(analysis, "edge_circuit", None)
    if circuit is None:
        note = getattr(analysis, "edge_circuit_note", None) or "No edge circuit was found in this analysis."
        return f'<p class="note">{_e(note)}</p>'
    g = circuit.graph
    nodes = circuit.nodes
    out = [f"<p>{circuit.n_edges:,} of the graph's {g.n_edges:,} edges ({_pct(circuit.n_edges / g.n_edges)}; "
           f"receivers from P{g.min_position}) between {len(nodes)} heads and MLPs, ranked by "
           f"<code>{_e(circuit.method)}</code> and kept while every qtype stays exact; an edge left out carries its "
           f"sender's {_e(circuit.ablation)}-ablated value. Every kept edge and its score: "
           f'<a download="{_e(EDGES_FILE)}" href="data:application/json;base64,{_json_b64(circuit_json(circuit))}">'
           f"<code>{_e(EDGES_FILE)}</code></a>.</p>"]
    rows = []
    for qtype, rate in circuit.exact.items():
        k = round(rate * circuit.n_held_out)
        lo, hi = wilson(k, circuit.n_held_out)
        rows.append([_e(qtype), _rate({"rate": rate, "ci": [lo, hi], "n": circuit.n_held_out})])
    out.append(_table(["qtype", "exact with only the circuit's edges (held-out questions)"], rows, "edges", raw=True))
    card = getattr(analysis, "edge_card", None)
    if card is not None:
        out.append(f"<h3>Faithfulness under each ablation</h3><p>The same edges, every other edge carrying its "
                   f"sender's mean per position (<code>mean</code>), one mean over all positions "
                   f"(<code>plain-mean</code>), another question's value (<code>resample#1</code>) or zero, on "
                   f"fresh questions; LD: the logit difference recovered between the empty circuit (0%) and the "
                   f"model (100%). {_e(card_verdict(card))}</p>{card_html(card)}")
    else:
        note = getattr(analysis, "edge_card_note", None)
        if note:
            out.append(f'<p class="note">{_e(note)}</p>')
    stages = ", ".join(f"{k} {v:,}" for k, v in circuit.stages.items())
    out.append(_kv([("edges after each step", _e(stages or "n/a")), ("found in", _e(f"{circuit.seconds:.1f} s"))]))
    png = next((p for p in maps if p.suffix == ".png" and p.stem == analysis.spec.base_name + GRAPH_STEM), None)
    if png is not None:
        out.append(f"<figure>{_img(png, 'the edge circuit over positions and layers', 'circuit-graph')}"
                   f"<figcaption>Positions on x, layers on y (each layer's heads, then its MLP); a line per kept edge, "
                   f"wider and darker with |score|; boxes coloured by the node's sub-task family (grey: no purpose) "
                   f"(<code>{_e(png.name)}</code>)</figcaption></figure>")
    split = useful_split(_useful_units(analysis), nodes)
    n_useful = len(split["useful_in"]) + len(split["useful_out"])
    out.append("<h3>The circuit and the quanta maps</h3>")
    out.append(_kv([
        ("useful nodes in the circuit", _e(f"{len(split['useful_in'])} of {n_useful}")),
        ("useful nodes outside it", _e(" ".join(split["useful_out"]) or "none")),
        ("circuit nodes that are not useful", _e(f"{len(split['circuit_only'])} (no cell on the maps; removing one "
                                                 "alone from the whole model fails no question)")),
    ]))
    if split["circuit_only"]:
        out.append(f"<details><summary>{len(split['circuit_only'])} circuit nodes without a map cell</summary>"
                   f"<p><code>{_e(' '.join(split['circuit_only']))}</code></p></details>")
    found = getattr(analysis, "circuit_purposes", None)
    if found is not None:
        rows = [[f"<code>{_e(p.node)}</code>", _e(p.needed_for)] for p in found.unexplained]
        out.append(f"<h3>Circuit nodes without a purpose: {len(rows)} of {len(found.nodes)}</h3>"
                   + (_table(["node", f"fails when removed alone from the circuit ({found.questions} questions per "
                                      "qtype)"], rows, "purposes", raw=True) if rows else ""))
    return "".join(out)


def _founding_heads(analysis: Analysis) -> set[str]:
    """The layer-0 heads at the position computing A2 and the heads the founding answer names."""
    from arithlens.report.founding import founding_answer

    position = founding_position(analysis.spec)
    heads = {f"P{position}L0H{h}" for h in range(analysis.spec.n_heads)}
    answer = founding_answer((e.data for e in analysis.studies if e.data is not None), analysis.spec.n_heads)
    return heads | ({h.node for h in answer.holders} if answer else set())


def _founding_edges(analysis: Analysis, node: str) -> str:
    """Which circuit edges a founding head sends and receives, largest |score| first."""
    circuit = getattr(analysis, "edge_circuit", None)
    if circuit is None:
        return ""
    sent, received = node_edges(circuit, node)
    if not sent and not received:
        return f"<p><b>In the edge circuit:</b> {_e(node)} sends and receives no kept edge.</p>"

    def listing(edges: list[tuple[str, float]], what: str) -> str:
        if not edges:
            return f"<li>{what}: none</li>"
        shown = ", ".join(f"<code>{_e(name)}</code> {_num(score, '+.3f')}" for name, score in edges[:EDGES_SHOWN])
        more = f" and {len(edges) - EDGES_SHOWN} more" if len(edges) > EDGES_SHOWN else ""
        return f"<li>{what} ({len(edges)}): {shown}{more}</li>"

    return (f'<div class="founding-edges"><p><b>In the edge circuit</b> (scores: the metric\'s change when the '
            f"edge alone is ablated):</p><ul>{listing(sent, 'sends')}{listing(received, 'receives')}</ul></div>")
