"""Algorithm claims (as the predecessor, QuantaTools, states them): a hypothesis stated as data and checked against a node list's Algo tags.

`Claim("ADD", 2, ("A2.SA", "A1.SC"), position=18)` or `Claim.parse("ADD A2 @P18: A2.SA A1.SC")` says: for
addition, answer digit A2 is computed from a base-add node for digit 2 and a make-carry node for digit 1, both
at P18. A clause is one Algo tag, or alternatives joined by `|` (`A5.GT|A4.GT`). Without `@P18` every clause
must hold at or before the position where the answer digit is computed; `<=P14` bounds it explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from arithlens.analysis.nodes import Major, UsefulNode
from arithlens.arith.layout import Layout
from arithlens.errors import ParseError

_CLAIM_RE = re.compile(
    r"\s*(?P<op>[A-Za-z/]+)\s+A(?P<digit>\d+)\s*(?:(?P<bound>@|<=)\s*P(?P<pos>\d+))?\s*:\s*(?P<clauses>.+?)\s*"
)


@dataclass(frozen=True)
class Claim:
    """Every clause (an Algo tag, or `|`-joined alternatives) is carried by some node in the position bound."""

    op: str  # the question type the claim is about: ADD, SUB, NEG, SUB/NEG (descriptive)
    answer_digit: int  # n+1 is the sign
    requires: tuple[str, ...]
    position: int | None = None  # None: at or before where the answer digit is computed
    at_or_before: bool = False  # with a position: `<=P14` instead of exactly `@P18`
    weak: bool = False  # weak-pass tags (`A2.SA.A2`) satisfy a clause too

    def __post_init__(self) -> None:
        if not self.requires:
            raise ParseError(f"claim {self} has no clauses")

    @classmethod
    def parse(cls, text: str, *, weak: bool = False) -> Claim:
        """`ADD A2 @P18: A2.SA A1.SC`, `NEG A7 <=P13: A5.GT|A4.GT`, `SUB A3: A3.MD A2.MB`."""
        m = _CLAIM_RE.fullmatch(text)
        if m is None:
            raise ParseError(f"cannot parse claim {text!r}; expected e.g. 'ADD A2 @P18: A2.SA A1.SC'")
        position = int(m["pos"]) if m["pos"] is not None else None
        return cls(m["op"].upper(), int(m["digit"]), tuple(m["clauses"].replace(",", " ").split()), position,
                   m["bound"] == "<=", weak)

    def __str__(self) -> str:
        bound = "" if self.position is None else f" {'<=' if self.at_or_before else '@'}P{self.position}"
        return f"{self.op} A{self.answer_digit}{bound}: {' '.join(self.requires)}"

    def positions_ok(self, position: int, layout: Layout) -> bool:
        if self.position is None:
            return position <= layout.computed_at(self.answer_digit)
        return position <= self.position if self.at_or_before else position == self.position

    def matches(self, un: UsefulNode, clause: str) -> bool:
        values = un.values(Major.ALGO)
        for tag in clause.split("|"):
            if tag in values or (self.weak and any(v.startswith(tag + ".") for v in values)):
                return True
        return False


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    clauses: tuple[tuple[str, tuple[str, ...]], ...]  # (clause, names of the nodes satisfying it)

    @property
    def passed(self) -> bool:
        return all(names for _, names in self.clauses)

    def line(self) -> str:
        parts = [f"{clause} ({', '.join(names) or 'none'})" for clause, names in self.clauses]
        return f"{'PASS' if self.passed else 'FAIL'} {self.claim}  <- {'; '.join(parts)}"

    def to_dict(self) -> dict:
        return {"claim": str(self.claim), "passed": self.passed,
                "clauses": [{"clause": c, "nodes": list(names)} for c, names in self.clauses]}


def evaluate(claim: Claim, nodes: Iterable[UsefulNode], layout: Layout) -> ClaimResult:
    inside = [un for un in nodes if claim.positions_ok(un.node.position, layout)]
    return ClaimResult(claim, tuple((c, tuple(un.name for un in inside if claim.matches(un, c)))
                                    for c in claim.requires))


def evaluate_all(claims: Sequence[Claim], nodes: Iterable[UsefulNode], layout: Layout) -> list[ClaimResult]:
    nodes = list(nodes)
    return [evaluate(c, nodes, layout) for c in claims]


def default_claims(n_digits: int, *, add: bool = True, sub: bool = True) -> tuple[Claim, ...]:
    """The predecessor's current hypothesis for mixed models (§11.3, Hypothesis 2), one claim per fact:

    * each answer digit d < n is computed at its own position from a digit node (SA / MD / ND for digit d)
      and a carry/borrow node (SC / MB / NB for digit d-1), one claim per operation (H5);
    * the addition carry digit A(n) comes from SC of the top digit;
    * the sign is decided by a greater-than node of some digit at or before `=` (H3);
    * question tokens compute the tricase ("essence of carry / sign") of each digit by the sign token (H2).
    """
    layout = Layout(n_digits)
    n, out = n_digits, []
    at = layout.computed_at
    families = ([("ADD", "SA", "SC")] if add else []) + ([("SUB", "MD", "MB"), ("NEG", "ND", "NB")] if sub else [])
    for op, digit_task, carry_task in families:
        for d in range(n):
            needs = (f"A{d}.{digit_task}",) + ((f"A{d - 1}.{carry_task}",) if d > 0 else ())
            out.append(Claim(op, d, needs, position=at(d)))
    if add:
        out.append(Claim("ADD", n, (f"A{n - 1}.SC",), position=at(n)))
    if sub:
        out.append(Claim("SUB/NEG", n + 1, ("|".join(f"A{k}.GT" for k in reversed(range(n))),)))
    early = ([("ADD", "ST", n)] if add else []) + ([("SUB", "MT", n - 1), ("NEG", "NT", n - 1)] if sub else [])
    for op, task, count in early:
        for f in range(count):
            out.append(Claim(op, f + 1, (f"A{f}.{task}",), position=layout.sign_pos, at_or_before=True))
    return tuple(out)
