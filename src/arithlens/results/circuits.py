"""Faithfulness and circuits as values: a node set's accuracy with everything outside it ablated (per qtype and
answer digit, beside the clean model and everything ablated), a discovered circuit with its nodes' costs, and the
scores of any circuit: its ablation card, MIB's faithfulness curve (CPR, CMD) and a resample-robust circuit."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from arithlens.arith.questions import QType
from arithlens.errors import ArithLensError


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson interval (`analysis.stats.wilson`), imported when asked for: results sit below analysis."""
    from arithlens.analysis.stats import wilson as interval

    return interval(successes, n)


@dataclass(frozen=True)
class QTypeFaithfulness:
    """One qtype's scores with the set alone, beside the clean model and everything ablated."""

    qtype: str
    n: int
    correct: int  # questions answered exactly right with only the set running
    clean_correct: int
    ablated_correct: int  # with every node ablated
    digit_correct: tuple[tuple[str, int], ...]  # (answer digit, questions whose digit is right), sign first
    loss: float  # mean answer NLL
    clean_loss: float
    ablated_loss: float
    logit_diff: float  # mean right-minus-best-other logit
    clean_logit_diff: float
    ablated_logit_diff: float

    @property
    def exact(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    @property
    def ci(self) -> tuple[float, float]:
        """95% Wilson interval of `exact`."""
        return wilson(self.correct, self.n)

    @property
    def loss_recovered(self) -> float:
        """Share of the loss gap (everything ablated vs clean) the set closes: 1 is the clean model."""
        gap = self.ablated_loss - self.clean_loss
        return (self.ablated_loss - self.loss) / gap if gap else float("nan")

    @property
    def logit_diff_recovered(self) -> float:
        gap = self.clean_logit_diff - self.ablated_logit_diff
        return (self.logit_diff - self.ablated_logit_diff) / gap if gap else float("nan")

    def to_dict(self) -> dict:
        lo, hi = self.ci
        return {
            "qtype": self.qtype, "n": self.n, "correct": self.correct, "exact": self.exact, "ci": [lo, hi],
            "clean_correct": self.clean_correct, "ablated_correct": self.ablated_correct,
            "digits": {d: {"correct": k, "ci": list(wilson(k, self.n))} for d, k in self.digit_correct},
            "loss": self.loss, "clean_loss": self.clean_loss, "ablated_loss": self.ablated_loss,
            "loss_recovered": self.loss_recovered,
            "logit_diff": self.logit_diff, "clean_logit_diff": self.clean_logit_diff,
            "ablated_logit_diff": self.ablated_logit_diff, "logit_diff_recovered": self.logit_diff_recovered,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> QTypeFaithfulness:
        return cls(data["qtype"], int(data["n"]), int(data["correct"]), int(data["clean_correct"]),
                   int(data["ablated_correct"]), tuple((d, int(v["correct"])) for d, v in data["digits"].items()),
                   float(data["loss"]), float(data["clean_loss"]), float(data["ablated_loss"]),
                   float(data["logit_diff"]), float(data["clean_logit_diff"]), float(data["ablated_logit_diff"]))

    # the older names, kept for callers of the analysis-era classes: a dict, not JSON text
    to_json = to_dict
    from_json = from_dict



@dataclass(frozen=True)
class Faithfulness:
    """Faithfulness of one node set: per qtype, with everything outside the set ablated at once."""

    model: str
    label: str  # what the set is ("useful", "circuit", a file name)
    nodes: tuple[str, ...]  # the set, sorted
    n_all: int  # heads and MLP layers in the whole model (the set's complement is ablated)
    ablation: str  # "mean" or "resample"
    reference: int  # reference questions the ablation values come from
    seed: int
    qtypes: tuple[QTypeFaithfulness, ...]
    seconds: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "qtypes", tuple(self.qtypes))
        # a timing holds what its JSON holds (milliseconds), so a result read back equals the one written
        object.__setattr__(self, "seconds", round(float(self.seconds), 3))

    def __getitem__(self, qtype: str | QType) -> QTypeFaithfulness:
        key = qtype.name if isinstance(qtype, QType) else str(qtype).upper()
        for row in self.qtypes:
            if row.qtype == key:
                return row
        raise ArithLensError(f"no {key} row in this faithfulness result")

    @property
    def min_exact(self) -> float:
        return min(row.exact for row in self.qtypes)

    def to_dict(self) -> dict:
        return {"model": self.model, "label": self.label, "n_nodes": len(self.nodes), "n_all": self.n_all,
                "nodes": list(self.nodes), "ablation": self.ablation, "reference": self.reference,
                "seed": self.seed, "qtypes": [row.to_dict() for row in self.qtypes],
                "seconds": round(self.seconds, 3)}

    @classmethod
    def from_dict(cls, data: Mapping) -> Faithfulness:
        try:
            return cls(data["model"], data["label"], tuple(data["nodes"]), int(data["n_all"]), data["ablation"],
                       int(data["reference"]), int(data["seed"]),
                       tuple(QTypeFaithfulness.from_dict(r) for r in data["qtypes"]), float(data["seconds"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArithLensError(f"malformed faithfulness JSON: {exc}") from None

    def summary(self) -> str:
        """One line: `useful (97 of 330 nodes, mean): ADD 17.0% [16.3, 17.8] n=10000 | ...`."""
        from arithlens.report.result_views import faithfulness_line

        return faithfulness_line(self)

    # the older names, kept for callers of the analysis-era classes: a dict, not JSON text
    to_json = to_dict
    from_json = from_dict



@dataclass(frozen=True)
class NodeCost:
    """What one circuit node costs: exact accuracy per qtype of the circuit without it, and the loss."""

    node: str
    exact_without: tuple[tuple[str, float], ...]
    lost: float  # the largest drop in exact accuracy over the qtypes

    def to_dict(self) -> dict:
        return {"node": self.node, "exact_without": dict(self.exact_without), "lost": self.lost}

    @classmethod
    def from_dict(cls, data: Mapping) -> NodeCost:
        return cls(data["node"], tuple((k, float(v)) for k, v in data["exact_without"].items()), float(data["lost"]))

    # the older names, kept for callers of the analysis-era classes: a dict, not JSON text
    to_json = to_dict
    from_json = from_dict



@dataclass(frozen=True)
class Circuit:
    """A discovered circuit with how it was found and how faithful it is on held-out questions."""

    model: str
    nodes: tuple[str, ...]
    useful: tuple[str, ...]  # the useful set the search was seeded with
    target: float
    seed: int
    search_questions: int  # questions in the search set (all qtypes)
    search_exact: tuple[tuple[str, float], ...]  # per qtype, the circuit on the search set
    passes: int  # forward passes the search made
    search_seconds: float
    minimality_questions: int
    minimality: tuple[NodeCost, ...]
    validation: tuple[Faithfulness, ...]  # the circuit and the useful set on the held-out questions
    seconds: float

    def __post_init__(self) -> None:
        # timings hold what their JSON holds (milliseconds), so a circuit read back equals the one written
        object.__setattr__(self, "search_seconds", round(float(self.search_seconds), 3))
        object.__setattr__(self, "seconds", round(float(self.seconds), 3))

    @property
    def only_together(self) -> tuple[str, ...]:
        """Circuit nodes the useful set lacks: each matters little alone, but the circuit needs them."""
        useful = set(self.useful)
        return tuple(n for n in self.nodes if n not in useful)

    @property
    def useful_left_out(self) -> tuple[str, ...]:
        nodes = set(self.nodes)
        return tuple(n for n in self.useful if n not in nodes)

    def faithfulness(self, label: str = "circuit") -> Faithfulness:
        for f in self.validation:
            if f.label == label:
                return f
        raise ArithLensError(f"no {label!r} validation in this circuit")

    def to_dict(self) -> dict:
        return {
            "model": self.model, "n_nodes": len(self.nodes), "nodes": list(self.nodes),
            "n_useful": len(self.useful), "useful": list(self.useful), "only_together": list(self.only_together),
            "useful_left_out": list(self.useful_left_out), "target": self.target, "seed": self.seed,
            "search_questions": self.search_questions, "search_exact": dict(self.search_exact),
            "passes": self.passes, "search_seconds": round(self.search_seconds, 3),
            "minimality_questions": self.minimality_questions, "minimality": [c.to_dict() for c in self.minimality],
            "validation": [f.to_dict() for f in self.validation], "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Circuit:
        try:
            return cls(data["model"], tuple(data["nodes"]), tuple(data["useful"]), float(data["target"]),
                       int(data["seed"]), int(data["search_questions"]),
                       tuple((k, float(v)) for k, v in data["search_exact"].items()), int(data["passes"]),
                       float(data["search_seconds"]), int(data["minimality_questions"]),
                       tuple(NodeCost.from_dict(c) for c in data["minimality"]),
                       tuple(Faithfulness.from_dict(f) for f in data["validation"]), float(data["seconds"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArithLensError(f"malformed circuit JSON: {exc}") from None

    # the older names, kept for callers of the analysis-era classes: a dict, not JSON text
    to_json = to_dict
    from_json = from_dict


# ---------------------------------------------------------------------------------------------------
# The ablation card, MIB's faithfulness curve and the resample-robust circuit (analysis.circuits)
MIB_PERCENTAGES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)  # MIB's circuit sizes
METRICS = ("logit_diff", "exact")  # MIB normalises its logit difference; exact is ours


def _malformed(what: str, exc: Exception) -> ArithLensError:
    return ArithLensError(f"malformed {what} JSON: {exc}")


def recovered(value: float, clean: float, empty: float) -> float:
    """MIB's faithfulness (m(C) - m(empty)) / (m(model) - m(empty)): 0 is the empty circuit, 1 the model."""
    gap = clean - empty
    return (value - empty) / gap if gap else math.nan


def mib_areas(percentages: tuple[float, ...], faithfulness: tuple[float, ...]) -> tuple[float, float]:
    """(CPR, CMD) as MIB computes them: trapezoids over the circuit sizes on a linear axis from the smallest
    size to 1 (its `evaluate_area_under_curve` with log_scale off), of f and of |1 - f|."""
    if len(percentages) != len(faithfulness) or len(percentages) < 2:
        raise ArithLensError("a faithfulness curve needs one value per circuit size, and at least two sizes")
    cpr = cmd = 0.0
    for (x1, f1), (x2, f2) in zip(zip(percentages, faithfulness), zip(percentages[1:], faithfulness[1:])):
        cpr += (x2 - x1) * (f1 + f2) / 2
        cmd += (x2 - x1) * (abs(1 - f1) + abs(1 - f2)) / 2
    return cpr, cmd


# ---------------------------------------------------------------------------------------------------
# The ablation card


@dataclass(frozen=True)
class CardRow:
    """One qtype under one ablation: the circuit alone, beside the clean model and the empty circuit."""

    ablation: str  # `Ablation.label`: mean, plain-mean, resample#1, resample#2, zero
    qtype: str
    n: int
    correct: int  # questions exactly right with only the circuit running
    clean_correct: int
    empty_correct: int  # with every unit ablated
    logit_diff: float  # mean over questions of the right-minus-best-other logit, averaged over answer tokens
    clean_logit_diff: float
    empty_logit_diff: float

    @property
    def exact(self) -> float:
        return self.correct / self.n if self.n else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        """95% Wilson interval of `exact`."""
        return wilson(self.correct, self.n)

    @property
    def logit_diff_recovered(self) -> float:
        return recovered(self.logit_diff, self.clean_logit_diff, self.empty_logit_diff)

    def to_dict(self) -> dict:
        return {"ablation": self.ablation, "qtype": self.qtype, "n": self.n, "correct": self.correct,
                "exact": self.exact, "ci": list(self.ci), "clean_correct": self.clean_correct,
                "empty_correct": self.empty_correct, "logit_diff": self.logit_diff,
                "clean_logit_diff": self.clean_logit_diff, "empty_logit_diff": self.empty_logit_diff,
                "logit_diff_recovered": self.logit_diff_recovered}

    @classmethod
    def from_dict(cls, d: Mapping) -> CardRow:
        return cls(d["ablation"], d["qtype"], int(d["n"]), int(d["correct"]), int(d["clean_correct"]),
                   int(d["empty_correct"]), float(d["logit_diff"]), float(d["clean_logit_diff"]),
                   float(d["empty_logit_diff"]))


@dataclass(frozen=True)
class AblationCard:
    """A circuit's faithfulness per qtype under each ablation: does it survive the choice?"""

    model: str
    label: str  # what the circuit is ("mean circuit", "resample circuit", a file name)
    unit: str  # "node" or "edge"
    units: tuple[str, ...]  # the circuit, sorted
    n_all: int  # units in the whole model
    seed: int
    reference: int  # reference questions the means and resample rows come from
    rows: tuple[CardRow, ...]
    seconds: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "units", tuple(self.units))
        object.__setattr__(self, "rows", tuple(self.rows))

    @property
    def ablations(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.ablation for r in self.rows))

    @property
    def qtypes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.qtype for r in self.rows))

    def row(self, ablation: str, qtype: str) -> CardRow:
        for r in self.rows:
            if r.ablation == ablation and r.qtype == qtype:
                return r
        raise ArithLensError(f"no {ablation} / {qtype} row in this ablation card")

    def min_exact(self, ablation: str) -> float:
        return min(r.exact for r in self.rows if r.ablation == ablation)

    def summary(self) -> str:
        """One line: `mean ADD 99.7% SUB 99.6% NEG 100.0%; zero ADD 16.5% ...; n = 10,000 per qtype`."""
        parts = ["; ".join(f"{a} " + " ".join(f"{q} {100 * self.row(a, q).exact:.1f}%" for q in self.qtypes)
                           for a in self.ablations)]
        ns = sorted({r.n for r in self.rows})
        parts.append(f"n = {ns[0]:,} per qtype" if len(ns) == 1 else f"n = {ns[0]:,}-{ns[-1]:,} per qtype")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"model": self.model, "label": self.label, "unit": self.unit, "n_units": len(self.units),
                "n_all": self.n_all, "units": list(self.units), "seed": self.seed, "reference": self.reference,
                "rows": [r.to_dict() for r in self.rows], "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping) -> AblationCard:
        try:
            return cls(d["model"], d["label"], d["unit"], tuple(d["units"]), int(d["n_all"]), int(d["seed"]),
                       int(d["reference"]), tuple(CardRow.from_dict(r) for r in d["rows"]), float(d["seconds"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed("ablation card", exc) from None


# ---------------------------------------------------------------------------------------------------
# MIB's faithfulness curve


@dataclass(frozen=True)
class CurveQType:
    """One qtype (or "ALL", every question pooled, as MIB averages) along the curve: raw metric values per size."""

    qtype: str
    n: int
    exact: tuple[float, ...]  # per size, exact-match rate with the top-k units running
    logit_diff: tuple[float, ...]
    clean_exact: float
    empty_exact: float
    clean_logit_diff: float
    empty_logit_diff: float

    def faithfulness(self, metric: str = "logit_diff") -> tuple[float, ...]:
        if metric not in METRICS:
            raise ArithLensError(f"metric {metric!r} is not one of {', '.join(METRICS)}")
        if metric == "exact":
            return tuple(recovered(v, self.clean_exact, self.empty_exact) for v in self.exact)
        return tuple(recovered(v, self.clean_logit_diff, self.empty_logit_diff) for v in self.logit_diff)

    def to_dict(self) -> dict:
        return {"qtype": self.qtype, "n": self.n, "exact": list(self.exact), "logit_diff": list(self.logit_diff),
                "clean_exact": self.clean_exact, "empty_exact": self.empty_exact,
                "clean_logit_diff": self.clean_logit_diff, "empty_logit_diff": self.empty_logit_diff}

    @classmethod
    def from_dict(cls, d: Mapping) -> CurveQType:
        return cls(d["qtype"], int(d["n"]), tuple(map(float, d["exact"])), tuple(map(float, d["logit_diff"])),
                   float(d["clean_exact"]), float(d["empty_exact"]), float(d["clean_logit_diff"]),
                   float(d["empty_logit_diff"]))


@dataclass(frozen=True)
class FaithfulnessCurve:
    """Faithfulness of the top-k units by |score| at MIB's circuit sizes (k = int(share * units), as MIB
    rounds), per qtype, with CPR (area under f, higher is better) and CMD (area under |1 - f|, 0 is best)."""

    model: str
    method: str  # where the scores come from ("single-node ablation", "circuit costs", "EAP-IG", ...)
    unit: str
    ablation: str
    n_all: int
    percentages: tuple[float, ...]
    sizes: tuple[int, ...]
    qtypes: tuple[CurveQType, ...]
    seed: int
    seconds: float

    def __post_init__(self) -> None:
        for name in ("percentages", "sizes", "qtypes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def __getitem__(self, qtype: str) -> CurveQType:
        for q in self.qtypes:
            if q.qtype == qtype:
                return q
        raise ArithLensError(f"no {qtype} row in this faithfulness curve")

    def areas(self, qtype: str = "ALL", metric: str = "logit_diff") -> tuple[float, float]:
        """(CPR, CMD) of one qtype's curve."""
        return mib_areas(self.percentages, self[qtype].faithfulness(metric))

    def cpr(self, qtype: str = "ALL", metric: str = "logit_diff") -> float:
        return self.areas(qtype, metric)[0]

    def cmd(self, qtype: str = "ALL", metric: str = "logit_diff") -> float:
        return self.areas(qtype, metric)[1]

    def to_dict(self) -> dict:
        scores = {q.qtype: {m: dict(zip(("cpr", "cmd"), self.areas(q.qtype, m)), faithfulness=list(q.faithfulness(m)))
                            for m in METRICS} for q in self.qtypes}
        return {"model": self.model, "method": self.method, "unit": self.unit, "ablation": self.ablation,
                "n_all": self.n_all, "percentages": list(self.percentages), "sizes": list(self.sizes),
                "qtypes": [q.to_dict() for q in self.qtypes], "scores": scores, "seed": self.seed,
                "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping) -> FaithfulnessCurve:
        try:
            return cls(d["model"], d["method"], d["unit"], d["ablation"], int(d["n_all"]),
                       tuple(map(float, d["percentages"])), tuple(map(int, d["sizes"])),
                       tuple(CurveQType.from_dict(q) for q in d["qtypes"]), int(d["seed"]), float(d["seconds"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed("faithfulness curve", exc) from None


# ---------------------------------------------------------------------------------------------------
# A circuit found under resample ablation


@dataclass(frozen=True)
class RobustCircuit:
    """A node circuit pruned under resample ablation, with how it was found."""

    model: str
    nodes: tuple[str, ...]
    n_all: int
    ablation: str  # "resample"
    draws: int  # the search questions were repeated once per draw, each copy with its own replacement rows
    search_questions: int  # distinct search questions (all qtypes), before repeating
    search_exact: tuple[tuple[str, float], ...]  # per qtype, over every draw's copy
    target: float
    passes: int
    seed: int
    seconds: float

    def to_dict(self) -> dict:
        return {"model": self.model, "n_nodes": len(self.nodes), "n_all": self.n_all, "nodes": list(self.nodes),
                "ablation": self.ablation, "draws": self.draws, "search_questions": self.search_questions,
                "search_exact": dict(self.search_exact), "target": self.target, "passes": self.passes,
                "seed": self.seed, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping) -> RobustCircuit:
        try:
            return cls(d["model"], tuple(d["nodes"]), int(d["n_all"]), d["ablation"], int(d["draws"]),
                       int(d["search_questions"]), tuple((k, float(v)) for k, v in d["search_exact"].items()),
                       float(d["target"]), int(d["passes"]), int(d["seed"]), float(d["seconds"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _malformed("robust circuit", exc) from None
