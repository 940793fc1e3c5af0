"""Purposes on an edge circuit as values: for each head and MLP of the circuit, its sub-task tags (from the analysis
or from a search run on it) or, when it has none, what fails when it alone is removed from the circuit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from arithlens.errors import ArithLensError

SOURCES = ("analysis", "search", "study", "none")  # where a node's purpose came from ("none": unexplained)


@dataclass(frozen=True)
class HeadStudy:
    """What a circuit head kept of its node study: the verdict's carry/borrow roles (`A2.SC`), the study's tags
    (its purpose when a role was found), the digit studied, or the error that stopped the study."""

    roles: tuple[str, ...]
    tags: tuple[str, ...]
    digit: int | None
    error: str
    seconds: float

    def to_dict(self) -> dict:
        return {"roles": list(self.roles), "tags": list(self.tags), "digit": self.digit, "error": self.error,
                "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping) -> HeadStudy:
        return cls(tuple(d["roles"]), tuple(d["tags"]), None if d["digit"] is None else int(d["digit"]),
                   str(d["error"]), float(d["seconds"]))


@dataclass(frozen=True)
class NodePurpose:
    """One circuit node: its purpose (Algo tag values) and what the circuit loses without it."""

    node: str
    kind: str  # "head" or "mlp"
    useful: bool  # a useful node of the analysis (its ablation alone fails questions in the whole model)
    source: str  # one of SOURCES
    purpose: tuple[str, ...]  # Algo tag values (`A1.SC`, `A2.MB.A2`, `OPR`); empty: unexplained
    tags: tuple[str, ...]  # the other tags it carries or was searched with (`Impact:A12`, `Attn:P4=50`)
    sends: int  # circuit edges it sends (0: only receives, so removing it changes nothing)
    # (qtype, questions the circuit gets wrong without it), every qtype; empty for a node the analysis explained
    # (its removal is not run)
    fails: tuple[tuple[str, int], ...]
    judged: tuple[tuple[str, int], ...]  # (qtype, questions the intact circuit answers right: the ones judged)
    digits: tuple[str, ...]  # answer digits wrong in those failures, sign (highest) first: ("A7", "A2")
    study: HeadStudy | None = None  # its node study, for a head studied because nothing else explained it

    @property
    def explained(self) -> bool:
        return bool(self.purpose)

    @property
    def needed_for(self) -> str:
        """`ADD 12/300, NEG 3/300; digits A2 A1`, or `needed only together` when removing it alone fails nothing."""
        failing = [(qt, k) for qt, k in self.fails if k]
        if not self.fails:
            return "not measured (explained by the analysis)"
        if not failing:
            return "sends no circuit edge" if not self.sends else "needed only together"
        judged = dict(self.judged)
        return (", ".join(f"{qt} {k}/{judged.get(qt, 0)}" for qt, k in failing)
                + f"; digits {' '.join(self.digits)}")

    def to_dict(self) -> dict:
        return {"node": self.node, "kind": self.kind, "useful": self.useful, "source": self.source,
                "purpose": list(self.purpose), "tags": list(self.tags), "sends": self.sends,
                "fails": dict(self.fails), "judged": dict(self.judged), "digits": list(self.digits),
                "needed_for": self.needed_for, **({"study": self.study.to_dict()} if self.study else {})}

    @classmethod
    def from_dict(cls, d: Mapping) -> NodePurpose:
        try:
            if d["source"] not in SOURCES:
                raise ValueError(f"source {d['source']!r} is not one of {', '.join(SOURCES)}")
            return cls(d["node"], d["kind"], bool(d["useful"]), d["source"], tuple(d["purpose"]), tuple(d["tags"]),
                       int(d["sends"]), tuple((k, int(v)) for k, v in d["fails"].items()),
                       tuple((k, int(v)) for k, v in d["judged"].items()), tuple(d["digits"]),
                       HeadStudy.from_dict(d["study"]) if d.get("study") else None)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArithLensError(f"malformed node purpose JSON: {exc}") from None


@dataclass(frozen=True)
class CircuitPurposes:
    """Every head and MLP of an edge circuit with its purpose, and how the removals and searches were run."""

    model: str
    method: str  # the circuit's ranking (eap_ig, eap, exact)
    ablation: str  # the circuit's ablation (mean, resample): removals use it too
    n_edges: int  # edges the circuit keeps
    questions: int  # questions per qtype the removals were judged on (before dropping the intact circuit's misses)
    pairs: int  # search pairs per sub-task and digit (0: no search ran)
    searched: tuple[str, ...]  # the nodes the search ran on (those without a purpose from the analysis)
    seed: int
    nodes: tuple[NodePurpose, ...]
    seconds: float
    studied: tuple[str, ...] = ()  # heads given a node study (those the analysis and the search left unexplained)

    def __post_init__(self) -> None:
        # a timing holds what its JSON holds (milliseconds), so a result read back equals the one written
        object.__setattr__(self, "seconds", round(float(self.seconds), 3))

    def __getitem__(self, node: str) -> NodePurpose:
        for p in self.nodes:
            if p.node == node:
                return p
        raise ArithLensError(f"{node} is not a head or MLP of this circuit")

    @property
    def unexplained(self) -> tuple[NodePurpose, ...]:
        return tuple(p for p in self.nodes if not p.explained)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per kind (head, mlp): circuit nodes, those with a purpose, and from where (analysis, search)."""
        out = {}
        for kind in ("head", "mlp"):
            group = [p for p in self.nodes if p.kind == kind]
            out[kind] = {"nodes": len(group), "purposed": sum(p.explained for p in group),
                         "analysis": sum(p.source == "analysis" for p in group),
                         "search": sum(p.source == "search" for p in group),
                         "study": sum(p.source == "study" for p in group),
                         "useful": sum(p.useful for p in group),
                         "useful_purposed": sum(p.useful and p.explained for p in group)}
        return out

    def to_dict(self) -> dict:
        return {"model": self.model, "method": self.method, "ablation": self.ablation, "n_edges": self.n_edges,
                "questions": self.questions, "pairs": self.pairs, "searched": list(self.searched), "seed": self.seed,
                "counts": self.counts(), "nodes": [p.to_dict() for p in self.nodes], "seconds": self.seconds,
                "studied": list(self.studied)}

    @classmethod
    def from_dict(cls, d: Mapping) -> CircuitPurposes:
        try:
            return cls(d["model"], d["method"], d["ablation"], int(d["n_edges"]), int(d["questions"]),
                       int(d["pairs"]), tuple(d["searched"]), int(d["seed"]),
                       tuple(NodePurpose.from_dict(p) for p in d["nodes"]), float(d["seconds"]),
                       tuple(d.get("studied", ())))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArithLensError(f"malformed circuit purposes JSON: {exc}") from None
