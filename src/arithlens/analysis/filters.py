"""Node filters with exact semantics: small frozen values that say whether a useful node qualifies.

`And(Head(), Position(14), Attention(4), Impact(2))` is a filter; calling it on a `UsefulNode` answers
yes or no, and `describe()` gives the predecessor's clause text (` and( IsHead, must P14, must Attn
P4>=10, must Impact A2)`). Attention, Impact, Algo and Contains match structured tags exactly; their
`reference_compat=True` mode reproduces the predecessor's substring matching (its filters matched tag text, not typed tags) so
old candidate lists can be rebuilt:

* Attention: `P1` also matched `P10`..`P19`, and the percentage threshold never applied;
* Impact: `A3` did not match `Impact:A43210` (only the highest digit or an exact run matched);
* Contains / Algo: the minor was a substring of the *whole* tag, so `Math.Sub` + `M` matched every
  Math.Sub tag and `Math.Add` + `S` matched PCA tags such as `Math.Add:A3.SP`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from arithlens.analysis.nodes import Major, NodeList, UsefulNode
from arithlens.errors import ArithLensError


class Cond(str, Enum):
    """How a filter's fact is used: required, forbidden, optional, or a position bound."""

    MUST = "must"
    NOT = "not"
    MAY = "may"
    MAX = "max"  # position <= bound
    MIN = "min"  # position >= bound

    def __str__(self) -> str:
        return self.value


def _cond(value: Cond | str, *, positional: bool = False) -> Cond:
    cond = Cond(value)
    if not positional and cond in (Cond.MAX, Cond.MIN):
        raise ArithLensError(f"condition {cond} only applies to Position filters")
    return cond


def _apply(cond: Cond, fact: bool) -> bool:
    return {Cond.MUST: fact, Cond.NOT: not fact, Cond.MAY: True}[cond]


class Filter:
    """Base of all filters: `flt(node) -> bool`, `flt.describe() -> str`, and `&`, `|`, `~`."""

    def __call__(self, un: UsefulNode) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def __and__(self, other: Filter) -> Filter:
        return And(self, other)

    def __or__(self, other: Filter) -> Filter:
        return Or(self, other)

    def __invert__(self) -> Filter:
        return Not(self)


@dataclass(frozen=True, init=False)
class _Group(Filter):
    children: tuple[Filter, ...]
    _word = ""

    def __init__(self, *children: Filter):
        object.__setattr__(self, "children", children)

    def describe(self) -> str:
        return f" {self._word}(" + ",".join(f.describe() for f in self.children) + ")"


class And(_Group):
    """All children pass (an empty And passes every node)."""

    _word = "and"

    def __call__(self, un: UsefulNode) -> bool:
        return all(f(un) for f in self.children)


class Or(_Group):
    """Any child passes (an empty Or passes none)."""

    _word = "or"

    def __call__(self, un: UsefulNode) -> bool:
        return any(f(un) for f in self.children)


@dataclass(frozen=True)
class Not(Filter):
    child: Filter

    def __call__(self, un: UsefulNode) -> bool:
        return not self.child(un)

    def describe(self) -> str:
        return f" not({self.child.describe()})"


@dataclass(frozen=True)
class Name(Filter):
    """The node's name equals `name` (`P18L0H0`)."""

    name: str

    def __call__(self, un: UsefulNode) -> bool:
        return un.name == self.name

    def describe(self) -> str:
        return f" is {self.name}"


@dataclass(frozen=True)
class Head(Filter):
    def __call__(self, un: UsefulNode) -> bool:
        return un.node.is_head

    def describe(self) -> str:
        return " IsHead"


@dataclass(frozen=True)
class Neuron(Filter):
    """An MLP node: a whole MLP layer at a position or a single neuron."""

    def __call__(self, un: UsefulNode) -> bool:
        return un.node.is_mlp

    def describe(self) -> str:
        return " IsNeuron"


@dataclass(frozen=True)
class Position(Filter):
    """MUST: position == pos; NOT: !=; MAX: <=; MIN: >=; MAY: any position."""

    pos: int
    cond: Cond = Cond.MUST

    def __post_init__(self) -> None:
        object.__setattr__(self, "cond", _cond(self.cond, positional=True))

    def __call__(self, un: UsefulNode) -> bool:
        p = un.node.position
        return {Cond.MUST: p == self.pos, Cond.NOT: p != self.pos, Cond.MAX: p <= self.pos,
                Cond.MIN: p >= self.pos, Cond.MAY: True}[self.cond]

    def describe(self) -> str:
        return f" {self.cond} P{self.pos}"


@dataclass(frozen=True)
class Layer(Filter):
    layer: int

    def __call__(self, un: UsefulNode) -> bool:
        return un.node.layer == self.layer

    def describe(self) -> str:
        return f" L{self.layer}"


@dataclass(frozen=True)
class Attention(Filter):
    """Has an `Attn` tag for exactly position `pos` with percentage >= `min_pct`."""

    pos: int
    min_pct: int = 10
    cond: Cond = Cond.MUST
    reference_compat: bool = False  # substring `P{pos}` in any Attn tag; no threshold (§6.6)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cond", _cond(self.cond))

    def __call__(self, un: UsefulNode) -> bool:
        if self.reference_compat:
            fact = any(f"P{self.pos}" in str(t) for t in un.tags if t.major == Major.ATTN)
        else:
            fact = un.attention().get(self.pos, -1) >= self.min_pct
        return _apply(self.cond, fact)

    def describe(self) -> str:
        threshold = "" if self.reference_compat else f">={self.min_pct}"
        return f" {self.cond} Attn P{self.pos}{threshold}"


@dataclass(frozen=True)
class Impact(Filter):
    """Has an `Impact` tag whose answer digits include `digit` (`Impact(3)` matches `Impact:A43210`)."""

    digit: int
    cond: Cond = Cond.MUST
    reference_compat: bool = False  # substring `A{digit}` of the Impact tag (§6.6)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cond", _cond(self.cond))

    def __call__(self, un: UsefulNode) -> bool:
        tags = [t for t in un.tags if t.major == Major.IMPACT]
        if self.reference_compat:
            fact = any(f"A{self.digit}" in str(t) for t in tags)
        else:
            fact = any(self.digit in t.impact_digits for t in tags)
        return _apply(self.cond, fact)

    def describe(self) -> str:
        return f" {self.cond} Impact A{self.digit}"


def _minor_matches(value: str, minor: str, prefix: bool) -> bool:
    return value.startswith(minor) if prefix else value == minor


@dataclass(frozen=True)
class Contains(Filter):
    """Has a tag of `major` whose value starts with `minor` (or equals it when `exact`).

    `Contains(Major.MATH_SUB, "M")` matches `Math.Sub:M123` but not a node whose only Math.Sub tag is
    the PCA tag `Math.Sub:A0.MP`; `Contains(Major.MATH_ADD, "S1", exact=True)` matches only `S1`.
    An empty `minor` matches any tag of the major.
    """

    major: Major
    minor: str = ""
    cond: Cond = Cond.MUST
    exact: bool = False
    reference_compat: bool = False  # tag string starts with the major and contains `minor` anywhere

    def __post_init__(self) -> None:
        object.__setattr__(self, "major", Major(self.major))
        object.__setattr__(self, "cond", _cond(self.cond))

    def __call__(self, un: UsefulNode) -> bool:
        if self.reference_compat:
            fact = any(str(t).startswith(self.major.value) and self.minor in str(t) for t in un.tags)
        else:
            fact = any(_minor_matches(v, self.minor, not self.exact) for v in un.values(self.major))
        return _apply(self.cond, fact)

    def describe(self) -> str:
        wildcard = "" if self.exact or self.reference_compat else "*"
        return f" {self.cond} {self.major} {self.minor}{wildcard}"


@dataclass(frozen=True)
class Algo(Filter):
    """Has an `Algo` tag: any (`minor=""`), exactly `minor` (`A1.SC`), or starting with it (`prefix`).

    Weak-pass tags carry the intervened impact (`A5.ND.A5`): `Algo("A5.ND", prefix=True)` finds them.
    """

    minor: str = ""
    cond: Cond = Cond.MUST
    prefix: bool = False
    reference_compat: bool = False  # `minor` anywhere in the whole `Algo:...` string

    def __post_init__(self) -> None:
        object.__setattr__(self, "cond", _cond(self.cond))

    def __call__(self, un: UsefulNode) -> bool:
        values = un.values(Major.ALGO)
        if self.reference_compat:
            fact = any(self.minor in f"{Major.ALGO}:{v}" for v in values)
        elif not self.minor:
            fact = bool(values)
        else:
            fact = any(_minor_matches(v, self.minor, self.prefix) for v in values)
        return _apply(self.cond, fact)

    def describe(self) -> str:
        wildcard = "*" if self.prefix or not self.minor else ""
        return f" {self.cond} Algo {self.minor}{wildcard}"


def filter_nodes(nodes: Iterable[UsefulNode], flt: Filter) -> NodeList:
    """The nodes that pass `flt`, as a (sorted) NodeList sharing the same UsefulNode objects."""
    return NodeList(un for un in nodes if flt(un))
