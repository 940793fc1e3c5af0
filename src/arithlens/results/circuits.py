"""Faithfulness and circuits as values: a node set's accuracy with everything outside it ablated (per qtype and
answer digit, beside the clean model and everything ablated), and a discovered circuit with its nodes' costs."""

from __future__ import annotations

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
