"""Nodes (`P18L0H0`, `P18L0MLP`, `P18L0M123`), typed tags (`Attn:P4=50`) and node lists with JSON I/O.

A tag is a (major, value) pair rendered `Major:value` exactly like the predecessor's strings, so its
`<model>_behavior.json` files read and write unchanged. Matching is exact: `Attn` tags are parsed into
(position, percent), `Impact` into a set of answer digits; nothing is matched by substring.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from arithlens.errors import ArgumentTypeError, ArithLensError, ParseError

# ASCII digits only: `\d` would also take fullwidth or Arabic-Indic digits (P١٨L0H0 read as P18L0H0).
_NODE_RE = re.compile(r"P(?P<pos>[0-9]+)L(?P<layer>[0-9]+)(?:H(?P<head>[0-9]+)|(?P<mlp>MLP)|M(?P<neuron>[0-9]+))")


@dataclass(frozen=True, order=True)
class Node:
    """A head (`P18L0H0`), a whole MLP layer at a position (`P18L0MLP`, num -1) or one neuron (`P18L0M123`).

    Sorts by position, layer, heads before MLP, then number.
    """

    position: int
    layer: int
    is_mlp: bool = False  # False sorts first: heads before MLP nodes
    num: int = 0  # head index; neuron index; -1 for the whole MLP layer

    @property
    def is_head(self) -> bool:
        return not self.is_mlp

    @property
    def is_neuron(self) -> bool:
        return self.is_mlp and self.num >= 0

    @property
    def name(self) -> str:
        return f"P{self.position}{self.row_name}"

    @property
    def row_name(self) -> str:
        """The name without the position (`L0H0`, `L1MLP`): the row of a quanta map."""
        if self.is_head:
            return f"L{self.layer}H{self.num}"
        return f"L{self.layer}MLP" if self.num < 0 else f"L{self.layer}M{self.num}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, text: str, *, n_ctx: int | None = None, n_layers: int | None = None,
              n_heads: int | None = None, d_mlp: int | None = None) -> Node:
        """Parse a node name exactly as written (ASCII, no surrounding spaces); with model sizes, check it exists
        (one-line ParseError otherwise; ArgumentTypeError for a name that is not a string)."""
        if not isinstance(text, str):
            raise ArgumentTypeError(f"a node name must be a string such as 'P18L0H0', not {type(text).__name__} "
                                    f"{text!r}")
        m = _NODE_RE.fullmatch(text)
        if m is None:
            raise ParseError(f"unknown node {text!r}: expected a name like P18L0H0, P18L0MLP or P18L0M123")
        pos, layer = int(m["pos"]), int(m["layer"])
        if m["head"] is not None:
            node = cls(pos, layer, False, int(m["head"]))
        elif m["mlp"]:
            node = cls(pos, layer, True, -1)
        else:
            node = cls(pos, layer, True, int(m["neuron"]))
        checks = [("position", pos, n_ctx), ("layer", layer, n_layers)]
        if node.is_head:
            checks.append(("head", node.num, n_heads))
        elif node.is_neuron:
            checks.append(("neuron", node.num, d_mlp))
        for what, value, limit in checks:
            if limit is not None and not 0 <= value < limit:
                raise ParseError(f"unknown node {text!r}: {what} {value} is outside 0..{limit - 1}")
        return node

    @classmethod
    def for_model(cls, text: str, spec) -> Node:
        """Parse and check against a `ModelSpec`."""
        return cls.parse(text, n_ctx=spec.n_ctx, n_layers=spec.n_layers, n_heads=spec.n_heads, d_mlp=spec.d_mlp)


class Major(str, Enum):
    """Tag majors, spelled as the predecessor's JSON spells them."""

    FAIL = "Fail%"
    IMPACT = "Impact"
    ATTN = "Attn"
    ALGO = "Algo"
    MATH_ADD = "Math.Add"
    MATH_SUB = "Math.Sub"
    MATH_NEG = "Math.Neg"
    MATH_MUL = "Math.Mul"
    POSN = "Posn"
    UNKNOWN = "Unknown"

    def __str__(self) -> str:
        return self.value


# The predecessor's older majors, read for compatibility.
_LEGACY_MAJORS = {"Fail": Major.FAIL, "MathAdd": Major.MATH_ADD, "MathSub": Major.MATH_SUB, "MathNeg": Major.MATH_NEG}
_ATTN_RE = re.compile(r"P(\d+)=(\d+)")
_IMPACT_RE = re.compile(r"A(\d+)")


@dataclass(frozen=True, order=True)
class Tag:
    major: Major
    value: str

    def __str__(self) -> str:
        return f"{self.major.value}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> Tag:
        major, sep, value = text.partition(":")
        if not sep:
            raise ParseError(f"tag {text!r} has no ':' (expected e.g. Attn:P4=50)")
        if major in _LEGACY_MAJORS:
            return cls(_LEGACY_MAJORS[major], value)
        if major == "PCA":  # oldest files: PCA tags under their own major; they belong to Math.Add
            return cls(Major.MATH_ADD, value)
        try:
            return cls(Major(major), value)
        except ValueError:
            raise ParseError(f"tag {text!r} has an unknown major {major!r}") from None

    # Typed views of the value.
    @property
    def attention(self) -> tuple[int, int]:
        """`Attn:P4=50` -> (4, 50)."""
        m = _ATTN_RE.fullmatch(self.value)
        if self.major != Major.ATTN or m is None:
            raise ArithLensError(f"{self} is not an attention tag")
        return int(m[1]), int(m[2])

    @property
    def impact_digits(self) -> tuple[int, ...]:
        """`Impact:A43210` -> (4, 3, 2, 1, 0); handles two-digit names like A10 only via separators."""
        if self.major != Major.IMPACT:
            raise ArithLensError(f"{self} is not an impact tag")
        return impact_digits(self.value)


def impact_digits(text: str) -> tuple[int, ...]:
    """`A43210` -> (4, 3, 2, 1, 0). Single digits per answer token (n <= 8 digits gives A0..A9)."""
    if not text.startswith("A") or not text[1:].isdigit():
        return ()
    return tuple(int(c) for c in text[1:])


def impact_string(digits: Iterable[int]) -> str:
    """(0, 2, 4, 3) -> `A4320`: descending, unique."""
    unique = sorted(set(int(d) for d in digits), reverse=True)
    return "A" + "".join(str(d) for d in unique) if unique else ""


def compact_impact(text: str) -> str:
    """A descending consecutive run longer than 2 is compacted: `A43210` -> `A4..0`, `A7543` stays."""
    digits = impact_digits(text)
    if len(digits) > 2 and all(a - b == 1 for a, b in zip(digits, digits[1:])):
        return f"A{digits[0]}..{digits[-1]}"
    return text


@dataclass
class UsefulNode:
    node: Node
    tags: list[Tag] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.node.name

    def add(self, tag: Tag | str) -> bool:
        tag = Tag.parse(tag) if isinstance(tag, str) else tag
        if tag in self.tags:
            return False
        self.tags.append(tag)
        return True

    def values(self, major: Major) -> list[str]:
        return [t.value for t in self.tags if t.major == major]

    def remove(self, major: Major, predicate=None) -> None:
        self.tags = [t for t in self.tags if t.major != major or (predicate is not None and not predicate(t.value))]

    def attention(self) -> dict[int, int]:
        """Attended position -> percent."""
        return dict(t.attention for t in self.tags if t.major == Major.ATTN)

    def min_value(self, major: Major) -> str | None:
        vals = self.values(major)
        return min(vals) if vals else None


class NodeList:
    """Useful nodes in sorted order, with their tags; the unit of JSON interchange."""

    def __init__(self, nodes: Iterable[UsefulNode] = ()):
        self._nodes: dict[Node, UsefulNode] = {}
        for un in nodes:
            self._nodes[un.node] = un

    def __iter__(self) -> Iterator[UsefulNode]:
        return iter(self._nodes[k] for k in sorted(self._nodes))

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node: Node | str) -> bool:
        return (Node.parse(node) if isinstance(node, str) else node) in self._nodes

    def get(self, node: Node | str) -> UsefulNode:
        key = Node.parse(node) if isinstance(node, str) else node
        if key not in self._nodes:
            raise ArithLensError(f"node {key} is not in the list")
        return self._nodes[key]

    def add_tag(self, node: Node, tag: Tag | str) -> bool:
        un = self._nodes.setdefault(node, UsefulNode(node))
        return un.add(tag)

    def ensure(self, node: Node) -> UsefulNode:
        return self._nodes.setdefault(node, UsefulNode(node))

    @property
    def heads(self) -> list[UsefulNode]:
        return [n for n in self if n.node.is_head]

    @property
    def mlps(self) -> list[UsefulNode]:
        return [n for n in self if n.node.is_mlp]

    @property
    def names(self) -> list[str]:
        return [n.name for n in self]

    # ---- JSON (the predecessor's `_behavior.json` / `_maths.json` schema) ----

    def to_records(self, majors: Iterable[Major] | None = None) -> list[dict]:
        keep = set(majors) if majors is not None else None
        records = []
        for n in self:
            # The predecessor writes a whole MLP layer as num 0 (its one "slice"); single neurons
            # (ours only) keep their index and say so.
            rec = {"position": n.node.position, "layer": n.node.layer, "is_head": n.node.is_head,
                   "num": max(n.node.num, 0), "tags": [str(t) for t in n.tags if keep is None or t.major in keep]}
            if n.node.is_neuron:
                rec["neuron"] = True
            records.append(rec)
        return records

    @classmethod
    def from_records(cls, records: list[dict]) -> NodeList:
        out = cls()
        if not isinstance(records, list):
            raise ArithLensError("a behaviour JSON file must hold a list of node objects")
        for i, rec in enumerate(records):
            try:
                is_head = bool(rec["is_head"])
                num = int(rec["num"])
                # The predecessor wrote MLP nodes with num 0 ("slice 0" of 1): the whole layer.
                whole = not is_head and not rec.get("neuron", False)
                node = Node(int(rec["position"]), int(rec["layer"]), not is_head, -1 if whole else num)
                un = out.ensure(node)
                for t in rec.get("tags", []):
                    un.add(Tag.parse(t))
            except (KeyError, TypeError, ValueError) as exc:
                raise ArithLensError(f"node record {i} is malformed: {exc}") from None
        return out

    def save(self, path: str | Path, majors: Iterable[Major] | None = None) -> Path:
        from arithlens.io import write_atomic

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(p, (json.dumps(self.to_records(majors), indent=1) + "\n").encode())
        return p

    @classmethod
    def load(cls, path: str | Path) -> NodeList:
        try:
            return cls.from_records(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise ArithLensError(f"cannot read node list '{path}': {exc}") from None
