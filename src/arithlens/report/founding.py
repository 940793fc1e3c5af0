"""The founding question answered in one sentence for the model at hand: does one layer-0 head at the position
computing A2 do carry (ADD) and borrow (SUB, NEG), and if not, which studied head does? Read from node-study
records (`<node>_study.json` objects), so the command line, the report and scripts say the same thing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Optional

CARRY, BORROWS = "SC", ("MB", "NB")  # the study's role features: A1.SC (ADD), A1.MB (SUB), A1.NB (NEG)
FOUNDING_DIGIT = 2  # the question is asked of A2, whose carry/borrow comes from digit 1


@dataclass(frozen=True)
class Holder:
    """A studied head and the carry/borrow roles its verdict gives it."""

    node: str
    layer: int
    carry: bool
    borrow: bool
    axes: str  # how the carry's class direction lies to the borrows': "separate axes", "one axis", ...

    @property
    def both(self) -> bool:
        return self.carry and self.borrow


@dataclass(frozen=True)
class FoundingAnswer:
    model: str
    position: int
    layer0_studied: tuple[str, ...]
    layer0_heads: Optional[int]  # how many layer-0 heads the model has (None: unknown)
    holders: tuple[Holder, ...] = field(default_factory=tuple)

    @property
    def layer0_both(self) -> list[Holder]:
        return [h for h in self.holders if h.layer == 0 and h.both]

    @property
    def later_both(self) -> list[Holder]:
        return [h for h in self.holders if h.layer > 0 and h.both]

    def sentence(self) -> str:
        """One sentence: the answer for layer 0 (saying which heads were studied when not all were), then where
        the two jobs are done instead, or that no studied head does them."""
        where = f"P{self.position}"
        first = self.layer0_both
        complete = self.layer0_heads is None or len(self.layer0_studied) >= self.layer0_heads
        if first:
            parts = [f"In {self.model} {_names(first)} {_verb(first)} carry and borrow at {where}, {_axes(first)}"]
        elif complete:
            parts = [f"In {self.model} no layer-0 head at {where} does carry and borrow"]
        elif self.layer0_studied:
            parts = [f"In {self.model} no studied layer-0 head at {where} ({' '.join(self.layer0_studied)}; "
                     f"{len(self.layer0_studied)} of {self.layer0_heads}) does carry and borrow"]
        else:
            parts = [f"In {self.model} no layer-0 head at {where} was studied"]
        if not first:
            later = self.later_both
            carry = [h.node for h in self.holders if h.carry]
            borrow = [h.node for h in self.holders if h.borrow]
            if later:
                parts.append(f"{_names(later)} {_verb(later)} both, {_axes(later)}")
            elif carry or borrow:
                parts.append(f"carry is done by {' and '.join(carry) or 'no studied head'}, borrow by "
                             f"{' and '.join(borrow) or 'no studied head'}")
            else:
                parts.append(f"no studied head at {where} does either")
        return "; ".join(parts) + "."


def founding_answer(studies: Iterable[dict], n_heads: Optional[int] = None) -> Optional[FoundingAnswer]:
    """The answer from node-study records; None when the question does not apply (no studied head where A2 is
    computed, or the model does not both add and subtract)."""
    at_a2 = [s for s in studies if s.get("kind") == "head" and s.get("answer_digit") == FOUNDING_DIGIT]
    at_a2 = [s for s in at_a2 if "ADD" in s.get("qtypes", ()) and {"SUB", "NEG"} & set(s.get("qtypes", ()))]
    if not at_a2:
        return None
    position, model = at_a2[0]["position"], at_a2[0].get("model") or "this model"
    at_a2 = sorted((s for s in at_a2 if s["position"] == position), key=lambda s: (s["layer"], s["node"]))
    holders = []
    for s in at_a2:
        roles = [r.split(".")[-1] for r in s["verdict"]["roles"] if r.startswith(f"A{FOUNDING_DIGIT - 1}.")]
        carry, borrow = CARRY in roles, any(b in roles for b in BORROWS)
        if carry or borrow:
            holders.append(Holder(s["node"], s["layer"], carry, borrow, _axes_of(s["verdict"])))
    layer0 = tuple(s["node"] for s in at_a2 if s["layer"] == 0)
    return FoundingAnswer(model, position, layer0, n_heads, tuple(holders))


def founding_sentence(analysis) -> Optional[str]:
    """The sentence for an `analyze` result (its node studies), None when the question does not apply."""
    answer = founding_answer((e.data for e in analysis.studies if e.data is not None), analysis.spec.n_heads)
    return answer.sentence() if answer else None


def _axes_of(verdict: dict) -> str:
    """The carry's direction against the borrows' (ADD~SUB, ADD~NEG) from the verdict's pair geometry, else from
    its shared-direction flag."""
    kinds = sorted({g for pair, g in verdict.get("pair_geometry", {}).items() if "ADD" in pair.split("~")})
    if kinds:
        return "on separate axes" if kinds == ["separate"] else "on " + " / ".join(kinds)
    return {True: "on one shared axis", False: "on separate axes"}.get(verdict.get("shared_direction"),
                                                                      "axes not measured")


def _axes(holders: list[Holder]) -> str:
    kinds = sorted({h.axes for h in holders})
    return kinds[0] if len(kinds) == 1 else "; ".join(f"{h.node} {h.axes}" for h in holders)


def _names(holders: list[Holder]) -> str:
    return " and ".join(h.node for h in holders)


def _verb(holders: list[Holder]) -> str:
    return "does" if len(holders) == 1 else "do"


__all__ = ["FoundingAnswer", "Holder", "founding_answer", "founding_sentence"]
