"""An atlas of many models' analyses: nodes aligned across models by the role they play (the answer digit
they serve, layer, sub-task tags, what they attend), not by head index, and the founding question per model.

It reads only what `arithlens analyze` writes (node tags, node-study data and the useful set's faithfulness), so a
sweep folder, an analyze folder or an in-memory `Analysis` all feed it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from arithlens.analysis.nodes import Major, NodeList, UsefulNode
from arithlens.errors import ArithLensError
from arithlens.model.spec import ModelSpec

# A head "attends" a token when the useful-node sweep measured at least this share of its attention there: the
# digit-pair heads split a pair 84/14 or 52/47, so 20 keeps the partner of a balanced pair and drops stray mass.
ATTEND_MIN = 20
# Sub-tasks by the operation they belong to; GT, OPR and SGN serve SUB and NEG together.
SUBTASK_OPS = {"SA": "ADD", "SC": "ADD", "SS": "ADD", "ST": "ADD", "MD": "SUB", "MB": "SUB", "MZ": "SUB",
               "MT": "SUB", "ND": "NEG", "NB": "NEG", "NZ": "NEG", "NT": "NEG", "GT": "SUB/NEG", "SGN": "SUB/NEG",
               "OPR": "SUB/NEG"}
FOUNDING_FEATURES = ("SC", "MB", "NB")  # carry (ADD), borrow (SUB), borrow (NEG) out of the digit below A2
_STRONG_ALGO = re.compile(r"A\d+\.[A-Z]{2,3}|OPR|SGN")  # weak tags carry a suffix (`A1.SC.A2`) and are left out
FAITHFULNESS_FILE = "faithfulness.json"  # beside analysis.json: the useful set alone, everything else mean-ablated
CIRCUIT_FILE = "circuit.json"  # beside analysis.json when the analysis also looked for a circuit
_OPS_BY_MODEL_OP = {"add": ("ADD",), "sub": ("SUB", "NEG"), "mix": ("ADD", "SUB", "NEG"), "mas": ("ADD", "SUB", "NEG")}


@dataclass(frozen=True)
class ModelResult:
    """What the atlas needs of one analysed model."""

    spec: ModelSpec
    nodes: NodeList  # useful nodes with behaviour, attention and Algo tags
    studies: dict[str, dict] = field(default_factory=dict)  # node name -> node-study data (NodeStudy.data)
    source: str = ""
    faithfulness: dict | None = None  # faithfulness.json of the useful set; None for analyses made before it
    circuit: dict | None = None  # circuit.json when the analysis found one

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def operations(self) -> tuple[str, ...]:
        return _OPS_BY_MODEL_OP.get(self.spec.op, ())


@dataclass(frozen=True, order=True)
class Role:
    """What a node does, independent of its index: compared across models."""

    position: int  # where it sits (the served answer digit fixes it)
    layer: int
    kind: str  # "head" or "MLP"
    serves: str  # "A2": the answer digit predicted at the position; else the token there ("D'1", "=")
    tasks: tuple[str, ...]  # strong Algo tags, sorted ("A1.MB", "A1.SC")
    attends: tuple[str, ...]  # tokens holding >= ATTEND_MIN % of its attention (heads only), sorted

    @property
    def label(self) -> str:
        text = f"{self.serves} L{self.layer} {self.kind}"
        if self.tasks:
            text += " " + " ".join(self.tasks)
        if self.attends:
            text += " | attends " + " ".join(self.attends)
        return text

    def restricted(self, operations: Iterable[str]) -> Role:
        """The role as a model that knows only `operations` could show it (its other sub-task tags dropped)."""
        ops = set(operations)
        keep = tuple(t for t in self.tasks if _task_op(t) in ops or (_task_op(t) == "SUB/NEG" and ops & {"SUB", "NEG"}))
        return Role(self.position, self.layer, self.kind, self.serves, keep, self.attends)

    def to_dict(self) -> dict:
        return {"label": self.label, "position": self.position, "layer": self.layer, "kind": self.kind,
                "serves": self.serves, "tasks": list(self.tasks), "attends": list(self.attends)}


def _task_op(tag: str) -> str | None:
    sub = tag.split(".")[1] if "." in tag else tag
    return SUBTASK_OPS.get(sub)


def node_role(un: UsefulNode, spec: ModelSpec) -> Role:
    layout, node = spec.layout, un.node
    digit = layout.answer_digit_at(node.position)
    serves = f"A{digit}" if digit is not None and node.position >= layout.n_question - 1 else layout.meaning(node.position)
    tasks = tuple(sorted({v for v in un.values(Major.ALGO) if _STRONG_ALGO.fullmatch(v)}))
    attends = tuple(sorted(layout.meaning(p) for p, pct in un.attention().items() if pct >= ATTEND_MIN)) \
        if node.is_head else ()
    return Role(node.position, node.layer, "head" if node.is_head else "MLP", serves, tasks, attends)


# ---------------------------------------------------------------------------------------------------
# Reading analyses


def load_result(directory: str | Path) -> ModelResult:
    """A folder written by `arithlens analyze` or `arithlens sweep`: analysis.json, the behaviour and algorithm
    node lists, one `<node>_study.json` per studied head, faithfulness.json and circuit.json when the analysis made
    them."""
    d = Path(directory)
    summary_file = d / "analysis.json"
    if not summary_file.is_file():
        raise ArithLensError(f"'{d}' holds no analysis.json: run `arithlens analyze --out {d}` first")
    try:
        summary = json.loads(summary_file.read_text())
        spec = _spec_of(d, summary["model"])
        nodes = NodeList.load(d / f"{spec.base_name}_behavior.json")
        algo = d / f"{spec.base_name}_algorithm.json"
        if algo.is_file():
            for un in NodeList.load(algo):
                for tag in un.tags:
                    nodes.ensure(un.node).add(tag)
        studies = {}
        for f in sorted(d.glob("*_study.json")):
            data = json.loads(f.read_text())
            studies[data["node"]] = data
        faithfulness, circuit = (json.loads((d / f).read_text()) if (d / f).is_file() else None
                                 for f in (FAITHFULNESS_FILE, CIRCUIT_FILE))
    except (OSError, ValueError, KeyError) as exc:
        raise ArithLensError(f"cannot read the analysis in '{d}': {exc}") from None
    return ModelResult(spec, nodes, studies, str(d), faithfulness, circuit)


def _spec_of(directory: Path, name: str) -> ModelSpec:
    """The full spec (sizes too) from a model card beside the analysis when there is one, else from the name."""
    card = directory / "model.json"
    if card.is_file():
        return ModelSpec.from_dict(json.loads(card.read_text())["spec"])
    return ModelSpec.parse(name)


def result_from_analysis(analysis, source: str = "") -> ModelResult:
    """An in-memory `arithlens.analysis.analyze.Analysis`."""
    from arithlens.analysis.analyze import circuit_record, faithfulness_record

    studies = {e.name: e.data for e in analysis.studies if e.data is not None}
    faithfulness = None if analysis.faithfulness is None else faithfulness_record(analysis.faithfulness)
    circuit = None if analysis.circuit is None else circuit_record(analysis.circuit)
    return ModelResult(analysis.spec, analysis.nodes, studies, source, faithfulness, circuit)


def result_from_report(report, source: str = "") -> ModelResult:
    """An `arithlens.results.AnalysisReport` (what `arithlens.analyze` returns): its nodes with every tag the
    search gave, its studies, the useful set's faithfulness and the circuit when there is one."""
    tagged = report.search if report.search is not None and report.search.nodes else report.useful
    if tagged is None:
        raise ArithLensError(f"the analysis of {report.model} holds no nodes (read from an analysis.json alone?)")
    studies = {s.node: s.data for s in report.studies}
    return ModelResult(ModelSpec.parse(report.model), tagged.node_list(), studies, source,
                       report.data.get("faithfulness"), report.data.get("circuit"))


def as_result(item) -> ModelResult:
    """What `atlas` takes: a ModelResult, an analysis folder, an `Analysis` or an `AnalysisReport` (told apart by
    their fields, so that analysis need not import the API's result types)."""
    if isinstance(item, ModelResult):
        return item
    if isinstance(item, (str, os.PathLike)):
        return load_result(item)
    if hasattr(item, "useful") and hasattr(item, "studies") and hasattr(item, "spec"):
        return result_from_analysis(item)
    if all(hasattr(item, a) for a in ("model", "useful", "search", "studies", "data")):
        return result_from_report(item)
    raise ArithLensError(f"the atlas takes analyses (folders, Analysis, AnalysisReport), not {type(item).__name__}")


# ---------------------------------------------------------------------------------------------------
# The atlas


def atlas(results: Sequence, *, reference_op: str = "add") -> dict:
    """Align the nodes of `results` by role and answer the founding question per model, beside each model's useful
    set's faithfulness. `results`: ModelResults, analysis folders, `Analysis` or `AnalysisReport` objects.

    Models of op `reference_op` (the adder) are a reference when other ops are present: "in every model" counts
    the others, and a role the adder also plays (restricted to the adder's operations) is marked shared.
    Returns a JSON-ready dict; `arithlens.report.atlas` draws and writes it.
    """
    if not results:
        raise ArithLensError("an atlas needs at least one analysed model")
    results = [as_result(r) for r in results]
    names = [r.name for r in results]
    if len(set(names)) != len(names):
        raise ArithLensError(f"model {next(n for n in names if names.count(n) > 1)} is given twice")
    refs = [r for r in results if r.spec.op == reference_op] if any(r.spec.op != reference_op for r in results) else []
    main = [r for r in results if r not in refs]

    placed = [(r, un, node_role(un, r.spec)) for r in results for un in r.nodes if not un.node.is_neuron]
    cells: dict[Role, dict[str, list[dict]]] = {}
    for r, un, role in placed:
        cells.setdefault(role, {}).setdefault(r.name, []).append(_cell(un, r.studies))
    rows = []
    for role in sorted(cells):
        present = cells[role]
        in_main = [m.name for m in main if m.name in present]
        shared = _shared_with_reference(role, present, refs, main, cells)
        rows.append({**role.to_dict(), "models": {n: present[n] for n in names if n in present},
                     "in_models": len(in_main), "everywhere": len(in_main) == len(main) and bool(main),
                     "reference_shares": shared,
                     # the reference's node for this role, found under the role restricted to its operations
                     "reference_cells": {ref.name: cells[role.restricted(ref.operations)][ref.name]
                                         for ref in refs if ref.name in shared}})
    functions = _functions(placed, results, main)
    founding = [founding_question(r) for r in results]
    asked = [f for f, r in zip(founding, results) if {"SUB", "NEG"} & set(r.operations) and "ADD" in r.operations]
    k = sum(f["one_head_carry_and_borrow"] for f in asked)
    answer = min((r.spec.n_digits for r in results), default=6)
    line = (f"{k} of {len(asked)} models use one layer-0 head for carry and borrow at A{min(2, answer)}"
            if asked else "no model does both addition and subtraction: the founding question does not apply")
    return {
        "models": [{"name": r.name, "op": r.spec.op, "layers": r.spec.n_layers, "heads": r.spec.n_heads,
                    "reference": r in refs, "source": r.source, "useful_nodes": len(r.nodes),
                    "studied": sorted(r.studies), "faithfulness": faithfulness_entry(r.faithfulness),
                    "circuit": circuit_entry(r.circuit)}
                   for r in results],
        "attend_min": ATTEND_MIN,
        "roles": rows,
        "roles_in_every_model": [row["label"] for row in rows if row["everywhere"]],
        "roles_in_some_models": sum(1 for row in rows if 0 < row["in_models"] < len(main)),
        "roles_shared_with_reference": [row["label"] for row in rows if row["reference_shares"]],
        "functions": functions,
        "functions_line": _functions_line(functions, len(main)),
        "founding": founding,
        "headline": line,
        "faithfulness_line": _faithfulness_line(results),
    }


def _functions(placed: list[tuple[ModelResult, UsefulNode, Role]], results: list[ModelResult],
               main: list[ModelResult]) -> list[dict]:
    """Alignment by function alone: an answer digit served and one strong sub-task tag, whatever node carries it
    (a role also fixes the layer, the node kind, the other tags and the attended tokens). Per function, the nodes
    of each model that carry it, and whether one layer and node kind carries it in every main model."""
    carriers: dict[tuple[int, str, str], dict[str, list[dict]]] = {}
    for r, un, role in placed:
        for task in role.tasks:
            carriers.setdefault((role.position, role.serves, task), {}).setdefault(r.name, []).append(
                {"node": un.node.name, "layer": role.layer, "kind": role.kind})
    out = []
    for (position, serves, task), present in sorted(carriers.items()):
        in_main = [m.name for m in main if m.name in present]
        places = [{(c["layer"], c["kind"]) for c in present[n]} for n in in_main]
        everywhere = len(in_main) == len(main) and bool(main)
        common = set.intersection(*places) if everywhere else set()
        out.append({"label": f"{serves} {task}", "position": position, "serves": serves, "task": task,
                    "models": {r.name: present[r.name] for r in results if r.name in present},
                    "in_models": len(in_main), "everywhere": everywhere,
                    "same_place_everywhere": [f"L{layer} {kind}" for layer, kind in sorted(common)]})
    return out


def _functions_line(functions: list[dict], n_main: int) -> str:
    seen = [f for f in functions if f["in_models"]]  # a function only the reference has is not counted
    every = [f for f in seen if f["everywhere"]]
    same = [f for f in every if f["same_place_everywhere"]]
    return (f"by function (answer digit and one strong sub-task tag, any node): {len(every)} of {len(seen)} "
            f"functions are found in every one of the {n_main} models; {len(same)} of those sit in one layer and "
            "node kind in every model, the rest move between layers or between heads and MLPs")


def faithfulness_entry(data: dict | None) -> dict | None:
    """A model's useful-set faithfulness for the atlas: the set's size and, per qtype, the exact accuracy with
    every other head and MLP layer ablated at once, its Wilson 95% interval and the question count."""
    if data is None:
        return None
    qtypes = {}
    for row in data["qtypes"]:
        qtypes[row["qtype"]] = {"exact": row["exact"], "ci": row["ci"], "n": row["n"], "correct": row["correct"],
                                "clean_correct": row.get("clean_correct")}
    rates = [q["exact"] for q in qtypes.values() if q["exact"] is not None]
    return {"label": data["label"], "n_nodes": data["n_nodes"], "n_all": data["n_all"], "ablation": data["ablation"],
            "seed": data["seed"], "qtypes": qtypes, "min_exact": min(rates) if rates else None}


def circuit_entry(data: dict | None) -> dict | None:
    """A model's circuit for the atlas: its nodes and its faithfulness on the held-out questions (as above)."""
    if data is None:
        return None
    held_out = next(f for f in data["validation"] if f["label"] == "circuit")
    return {"n_nodes": data["n_nodes"], "nodes": data["nodes"], "target": data["target"],
            "only_together": data["only_together"], "useful_left_out": data["useful_left_out"],
            **{k: v for k, v in faithfulness_entry(held_out).items() if k in ("qtypes", "min_exact")}}


def _faithfulness_line(results: list[ModelResult]) -> str:
    """One line over the models: how much of each model its useful set is, alone."""
    measured = [(r, faithfulness_entry(r.faithfulness)) for r in results if r.faithfulness is not None]
    if not measured:
        return "useful-set faithfulness not measured (analyses made before it, or with faithfulness 0)"
    cells = []
    for r, f in measured:
        qtype, row = min(f["qtypes"].items(), key=lambda kv: 2.0 if kv[1]["exact"] is None else kv[1]["exact"])
        cells.append(f"{r.name} {f['n_nodes']} nodes, {qtype} {_pct(row['exact'])} "
                     f"[{_pct(row['ci'][0])}, {_pct(row['ci'][1])}] n={row['n']}")
    missing = len(results) - len(measured)
    tail = f"; {missing} model(s) without a measurement" if missing else ""
    circuits = [(r.name, circuit_entry(r.circuit)) for r in results if r.circuit is not None]
    if circuits:
        tail += "; circuits: " + "; ".join(f"{name} {c['n_nodes']} nodes, worst qtype {_pct(c['min_exact'])}"
                                           for name, c in circuits)
    return (f"useful set alone ({measured[0][1]['ablation']}-ablating every other head and MLP layer), worst qtype's "
            f"exact accuracy: " + "; ".join(cells) + tail)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _cell(un: UsefulNode, studies: dict[str, dict]) -> dict:
    cell = {"node": un.name, "fail_pct": _int(un.min_value(Major.FAIL)), "impact": un.min_value(Major.IMPACT)}
    study = studies.get(un.name)
    if study is not None:
        v = study["verdict"]
        cell.update(polysemantic=v["polysemantic"], roles=v["roles"], shared_direction=v["shared_direction"])
    return cell


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def _shared_with_reference(role: Role, present: dict, refs: list[ModelResult], main: list[ModelResult],
                           cells: dict) -> list[str]:
    """The reference models that play a role some main model plays, as far as their operations allow: an adder
    head tagged A1.SC matches a mixed model's head tagged A1.MB A1.NB A1.SC at the same place, attending the same."""
    if not any(m.name in present for m in main):
        return []
    return [ref.name for ref in refs if ref.name in cells.get(role.restricted(ref.operations), {})]


def founding_question(result: ModelResult) -> dict:
    """The layer-0 heads at the position computing A2 that hold A1.SC / A1.MB / A1.NB: by Algo tag (search) and
    by node-study verdict (encodes it, and necessary or sufficient), with the study's numbers. Studied heads of
    later layers at that position whose verdict gives them one of those features are listed beside
    (`later_layers`): where a model makes the carry or borrow into A2 when layer 0 does not."""
    spec = result.spec
    k = min(2, spec.n_digits)
    position = spec.layout.computed_at(k)
    features = [f"A{k - 1}.{f}" for f in FOUNDING_FEATURES]
    heads = sorted({un.node for un in result.nodes if un.node.is_head and un.node.layer == 0
                    and un.node.position == position}
                   | {n for n in (_node_of(s) for s in result.studies.values()) if n is not None
                      and n.layer == 0 and n.position == position and n.is_head})
    per_head, by_tag, by_study = [], {f: [] for f in features}, {f: [] for f in features}
    for node in heads:
        un = result.nodes.get(node) if node in result.nodes else None
        tags = set(un.values(Major.ALGO)) if un else set()
        for f in features:
            if f in tags:
                by_tag[f].append(node.name)
        entry = {"node": node.name, "tags": sorted(t for t in tags if t.split(".")[0] == f"A{k - 1}")}
        study = result.studies.get(node.name)
        if study is not None:
            v = study["verdict"]
            for f in v["roles"]:
                if f in by_study:
                    by_study[f].append(node.name)
            entry.update(_study_numbers(study))
        per_head.append(entry)
    studied = any("polysemantic" in h for h in per_head)
    holders = by_study if studied else by_tag
    carry = set(holders[features[0]])
    borrow = set(holders[features[1]]) | set(holders[features[2]])
    one_head = sorted(carry & borrow)
    later = []
    for study in sorted(result.studies.values(), key=lambda st: st.get("node", "")):
        node = _node_of(study)
        if node is None or not node.is_head or node.layer == 0 or node.position != position:
            continue
        if set(study["verdict"]["roles"]) & set(features):
            later.append({"node": node.name, "layer": node.layer, **_study_numbers(study)})
    return {"model": result.name, "position": f"P{position}", "answer_digit": f"A{k}", "features": features,
            "evidence": "node study" if studied else "Algo tags", "holders_by_tag": by_tag,
            "holders_by_study": by_study if studied else None, "heads": per_head,
            "one_head_carry_and_borrow": bool(one_head), "carry_and_borrow_heads": one_head,
            "later_layers": later,
            "text": _founding_text(per_head, holders, features, one_head, later)}


def _node_of(study: dict):
    from arithlens.analysis.nodes import Node

    try:
        return Node.parse(study["node"])
    except (ArithLensError, KeyError):
        return None


def _study_numbers(study: dict) -> dict:
    """The statistics a reader checks a verdict against: per qtype the best probe accuracy, the resample
    ablation's damage to the target digit and the patching success; the class-direction cosines."""
    v, rep, nec, suf = study["verdict"], study["representation"], study["necessity"], study["sufficiency"]
    per = {}
    for qt, r in rep.items():
        best = max((r["probe_carry"], r["probe_pair"]), key=lambda p: p["accuracy"] or 0.0)
        allq = nec["per_qtype"].get(qt, {}).get("all", {})
        per[qt] = {"probe": _round(best["accuracy"]), "resample_wrong": _round(allq.get("resample", {})
                                                                               .get("target_wrong", {}).get("rate")),
                   "patch_success": _round(suf["per_qtype"][qt]["success"]["rate"]) if suf.get("applicable") else None,
                   "role": v["per_qtype"].get(qt, {}).get("role")}
    cosines = {pair: _round(c["cosine"]) for pair, c in study.get("shared", {}).get("direction_cosines", {}).items()}
    return {"polysemantic": v["polysemantic"], "roles": v["roles"], "shared_direction": v["shared_direction"],
            "operator_blind": v.get("operator_blind"), "study_digit": study.get("study_digit"), "per_qtype": per,
            "direction_cosines": cosines}


def _round(x):
    return None if x is None else round(float(x), 4)


def _founding_text(per_head: list[dict], holders: dict, features: list[str], one_head: list[str],
                   later: list[dict] = ()) -> str:
    found = [f"{f}: {' '.join(holders[f]) or 'none'}" for f in features]
    parts = ["; ".join(found)]
    for h in per_head:
        if h["node"] in one_head:
            axis = {True: "one shared axis", False: "separate axes", None: "axis not measured"}[h.get("shared_direction")]
            parts.append(f"{h['node']} holds {' and '.join(h.get('roles') or [])} ({axis})")
    if not one_head:
        parts.append("no head holds both carry and borrow")
    for h in later:
        roles = [r for r in h["roles"] if r in features]
        axis = ""
        if len(roles) > 1:
            axis = {True: ", one shared axis", False: ", separate axes", None: ""}[h.get("shared_direction")]
        parts.append(f"in layer {h['layer']}: {h['node']} holds {' and '.join(roles)}{axis}")
    return "; ".join(parts)


__all__ = ["ATTEND_MIN", "CIRCUIT_FILE", "FAITHFULNESS_FILE", "ModelResult", "Role", "as_result", "atlas",
           "circuit_entry", "faithfulness_entry", "founding_question", "load_result", "node_role", "result_from_analysis",
           "result_from_report"]
