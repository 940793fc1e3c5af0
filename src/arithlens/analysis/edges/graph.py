"""The edge graph over positioned nodes: who can send to whom, one stable name per edge (`P14L0H1 -> P18L2H0.k@14`)
and its EAP-IG / MIB name (`a0.h1->a2.h0<k>`), and the flat edge order every mask and score vector uses.

Senders at position q: the embedding (`P14EMB`, token + position), each head's output (`P14L0H1`, z . W_O, no
bias) and each MLP's output (`P14L0MLP`, post . W_out, no bias). Receivers: a head at query position p through
its query (`P18L2H0.q`, reads position p), its key or value at key position q <= p (`P18L2H0.k@14`: the key at
14 *as read by the query at 18*, which may differ from the key at 14 read by another query), an MLP at p
(`P18L1MLP`) and the logits at an answer position p (`P18LOGITS`). An edge runs from a sender at q to a receiver
reading q, in an earlier layer (a head's sender may be an MLP or head of an earlier layer; an MLP's also the
heads of its own layer; the logits read every sender). Biases (b_O, b_out) are never ablated.

A mask is a float tensor over the edges in `EdgeGraph.edges` order, (n_edges,) or (batch, n_edges): 1 keeps
the edge (the receiver reads the sender's value in this run), 0 ablates it (the receiver reads the sender's
ablated value instead), values between interpolate (EAP-IG). The scoring side works against this interface:
  graph.py     `EdgeGraph.build(spec, min_position=...)`, `.edges`, `.names`, `.index(name)`, `.mask(kept)`,
               `.node_mask(removed_nodes)`, `.receiver_layer`, `.mib_names`, `parse_edge`
  forward.py   `sender_outputs(model, tokens)`, `ablation_values(model, reference, kind, ...)`,
               `edge_forward(model, graph, tokens, ablated, mask)` -> answer logits (batch, n_answer, vocab)
  scores.py    `exact_scores`, `eap_scores`, `eap_ig_scores` -> (n_edges,) float64 metric changes
  discovery.py `discover(model, ...)` -> `EdgeCircuit`;  export.py `to_mib_json`, `from_mib_json`
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from arithlens.errors import ArithLensError, ParseError

RECEIVER_KINDS = ("q", "k", "v", "mlp", "logits")


@dataclass(frozen=True, order=True)
class Sender:
    """A positioned sender: the embedding (layer -1), a head (`head` >= 0) or an MLP (`head` -1) at `position`."""

    position: int
    layer: int  # -1: the embedding
    head: int = -1  # -1: the MLP (or the embedding)

    @property
    def kind(self) -> str:
        return "embed" if self.layer < 0 else ("mlp" if self.head < 0 else "head")

    @property
    def name(self) -> str:
        if self.layer < 0:
            return f"P{self.position}EMB"
        return f"P{self.position}L{self.layer}" + ("MLP" if self.head < 0 else f"H{self.head}")

    @property
    def mib_name(self) -> str:
        """EAP-IG / MIB's name for the same unit, positions summed: `input`, `a0.h1`, `m0`."""
        if self.layer < 0:
            return "input"
        return f"m{self.layer}" if self.head < 0 else f"a{self.layer}.h{self.head}"

    def index(self, n_heads: int) -> int:
        """Its place among the senders of one position: the embedding, then per layer its heads and its MLP."""
        if self.layer < 0:
            return 0
        return 1 + self.layer * (n_heads + 1) + (n_heads if self.head < 0 else self.head)


@dataclass(frozen=True, order=True)
class Receiver:
    """A positioned receiver input: head `head` of `layer` at query `position` through `kind` (q, k, v; `key` is
    the position a k or v input reads), the MLP of `layer` at `position`, or the logits at `position`."""

    position: int
    layer: int  # n_layers for the logits
    kind: str
    head: int = -1
    key: int = -1  # k, v: the key position read; otherwise `position`

    @property
    def reads(self) -> int:
        """The position whose residual stream this input reads."""
        return self.key if self.kind in ("k", "v") else self.position

    @property
    def name(self) -> str:
        if self.kind == "logits":
            return f"P{self.position}LOGITS"
        if self.kind == "mlp":
            return f"P{self.position}L{self.layer}MLP"
        suffix = f"@{self.key}" if self.kind in ("k", "v") else ""
        return f"P{self.position}L{self.layer}H{self.head}.{self.kind}{suffix}"

    @property
    def mib_name(self) -> str:
        """EAP-IG / MIB's name: `a2.h0<k>`, `m1`, `logits`."""
        if self.kind == "logits":
            return "logits"
        if self.kind == "mlp":
            return f"m{self.layer}"
        return f"a{self.layer}.h{self.head}<{self.kind}>"


@dataclass(frozen=True, order=True)
class Edge:
    """A sender at position q feeding a receiver that reads q."""

    sender: Sender
    receiver: Receiver

    @property
    def name(self) -> str:
        return f"{self.sender.name} -> {self.receiver.name}"

    @property
    def mib_name(self) -> str:
        """EAP-IG / MIB's edge name, positions summed (`a0.h1->a2.h0<k>`): many positioned edges share one."""
        r = self.receiver
        child = r.mib_name
        if r.kind in ("q", "k", "v"):
            child = f"a{r.layer}.h{r.head}"
            return f"{self.sender.mib_name}->{child}<{r.kind}>"
        return f"{self.sender.mib_name}->{child}"


_SENDER_RE = re.compile(r"P(?P<pos>[0-9]+)(?:EMB|L(?P<layer>[0-9]+)(?:H(?P<head>[0-9]+)|MLP))")
_RECEIVER_RE = re.compile(
    r"P(?P<pos>[0-9]+)(?:LOGITS|L(?P<layer>[0-9]+)(?:(?P<mlp>MLP)|H(?P<head>[0-9]+)\.(?P<kind>[qkv])(?:@(?P<key>[0-9]+))?))"
)


def parse_sender(text: str) -> Sender:
    m = _SENDER_RE.fullmatch(text)
    if m is None:
        raise ParseError(f"unknown edge sender {text!r}: expected a name like P14EMB, P14L0H1 or P14L0MLP")
    if m["layer"] is None:
        return Sender(int(m["pos"]), -1)
    return Sender(int(m["pos"]), int(m["layer"]), -1 if m["head"] is None else int(m["head"]))


def parse_receiver(text: str, n_layers: int | None = None) -> Receiver:
    m = _RECEIVER_RE.fullmatch(text)
    if m is None or (m["kind"] in ("k", "v")) != (m["key"] is not None):
        raise ParseError(f"unknown edge receiver {text!r}: expected a name like P18L2H0.q, P18L2H0.k@14, P18L1MLP "
                         "or P18LOGITS")
    pos = int(m["pos"])
    if m["layer"] is None:
        return Receiver(pos, -1 if n_layers is None else n_layers, "logits")
    if m["mlp"]:
        return Receiver(pos, int(m["layer"]), "mlp")
    return Receiver(pos, int(m["layer"]), m["kind"], int(m["head"]), -1 if m["key"] is None else int(m["key"]))


def parse_edge(text: str, n_layers: int | None = None) -> Edge:
    """`P14L0H1 -> P18L2H0.k@14` -> `Edge` (spaces around the arrow optional); `n_layers` fills the logits' layer."""
    if not isinstance(text, str) or "->" not in text:
        raise ParseError(f"unknown edge {text!r}: expected 'SENDER -> RECEIVER' such as 'P14L0H1 -> P18L2H0.k@14'")
    left, right = (s.strip() for s in text.split("->", 1))
    return Edge(parse_sender(left), parse_receiver(right, n_layers))


@dataclass(frozen=True)
class Group:
    """The edges into one kind of receiver input of one layer, as a dense block the forward reads:
    q (senders, query, head), k / v (senders, query, key, head), mlp (senders, pos), logits (senders, pos).
    `flat` holds each edge's index into the flattened block; the group's edges are `edges[start:stop]`."""

    kind: str
    layer: int
    shape: tuple[int, ...]
    flat: Tensor  # (n,) int64
    start: int
    stop: int


@dataclass(frozen=True, eq=False)
class EdgeGraph:
    """Every edge of a model whose receivers sit at `positions` (those that can reach an answer logit, from
    `min_position` on), in a fixed order: for each layer the q, k, v and MLP groups, then the logits."""

    n_layers: int
    n_heads: int
    n_ctx: int
    answer: range  # positions that predict answer tokens (the logits' positions)
    min_position: int
    groups: tuple[Group, ...]
    edges: tuple[Edge, ...] = field(repr=False)

    @classmethod
    def build(cls, spec, *, min_position: int = 0) -> EdgeGraph:
        """The graph of a model with `spec`'s sizes. Receivers before `min_position` are left out (they always read
        this run's values): the count falls from 26,759 to 21,104 on the default model with the first answer
        position (13). Positions after the last answer position reach no logit and are never receivers."""
        L, H, P = spec.n_layers, spec.n_heads, spec.n_ctx
        answer = spec.layout.answer_logit_positions
        if not isinstance(min_position, (int, np.integer)) or isinstance(min_position, bool) or not (
                0 <= min_position <= answer.stop - 1):
            raise ArithLensError(f"min_position must be an integer in 0..{answer.stop - 1}, not {min_position!r}")
        n_send = [1 + layer * (H + 1) for layer in range(L + 1)]  # senders before layer l's heads

        at = [[Sender(q, -1)] + [Sender(q, layer, h) for layer in range(L) for h in [*range(H), -1]]
              for q in range(P)]  # the senders of each position, in `Sender.index` order

        def live(layer: int, p: int) -> bool:  # the last layer only matters at answer positions
            return min_position <= p < answer.stop and (layer < L - 1 or p in answer)

        groups, edges = [], []

        def add(kind: str, layer: int, shape: tuple[int, ...], items: list[tuple[tuple[int, ...], Edge]]) -> None:
            flat = np.ravel_multi_index(np.array([ix for ix, _ in items]).T, shape) if items else np.zeros(0, int)
            groups.append(Group(kind, layer, shape, torch.as_tensor(flat, dtype=torch.long), len(edges),
                                len(edges) + len(items)))
            edges.extend(e for _, e in items)

        for layer in range(L):
            ns = n_send[layer]
            items = [((s, p, h), Edge(at[p][s], Receiver(p, layer, "q", h, -1)))
                     for s in range(ns) for p in range(P) if live(layer, p) for h in range(H)]
            add("q", layer, (ns, P, H), items)
            for kind in ("k", "v"):
                items = [((s, p, q, h), Edge(at[q][s], Receiver(p, layer, kind, h, q)))
                         for s in range(ns) for p in range(P) if live(layer, p) for q in range(p + 1) for h in range(H)]
                add(kind, layer, (ns, P, P, H), items)
            nm = ns + H
            items = [((s, p), Edge(at[p][s], Receiver(p, layer, "mlp")))
                     for s in range(nm) for p in range(P) if live(layer, p)]
            add("mlp", layer, (nm, P), items)
        items = [((s, p), Edge(at[p][s], Receiver(p, L, "logits")))
                 for s in range(n_send[L]) for p in answer if p >= min_position]
        add("logits", L, (n_send[L], P), items)
        return cls(L, H, P, answer, int(min_position), tuple(groups), tuple(edges))

    def __len__(self) -> int:
        return len(self.edges)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def n_senders(self) -> int:
        """Senders at one position: the embedding, then each layer's heads and MLP."""
        return 1 + self.n_layers * (self.n_heads + 1)

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.edges)

    @cached_property
    def mib_names(self) -> tuple[str, ...]:
        return tuple(e.mib_name for e in self.edges)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    @cached_property
    def receiver_layer(self) -> np.ndarray:
        """(n_edges,) the receiver's layer (n_layers for the logits): for per-layer rank agreement."""
        return np.array([e.receiver.layer for e in self.edges], dtype=np.int64)

    @cached_property
    def receiver_kind(self) -> np.ndarray:
        """(n_edges,) the receiver input's kind, one of RECEIVER_KINDS."""
        return np.array([e.receiver.kind for e in self.edges])

    def index(self, edge: str | Edge) -> int:
        """The edge's place in every mask and score vector; a one-line error for an edge not in this graph."""
        name = edge.name if isinstance(edge, Edge) else parse_edge(edge, self.n_layers).name
        if name not in self._index:
            raise ArithLensError(f"edge {name!r} is not in this graph (receivers from position {self.min_position}, "
                                 f"{self.n_layers} layers, {self.n_heads} heads)")
        return self._index[name]

    def mask(self, kept: Iterable[str | Edge] | np.ndarray | Tensor, *, device: str | torch.device = "cpu") -> Tensor:
        """(n_edges,) float32 mask keeping exactly `kept` (edge names, `Edge`s or a bool array)."""
        if isinstance(kept, (np.ndarray, Tensor)):
            arr = torch.as_tensor(np.asarray(kept.cpu() if isinstance(kept, Tensor) else kept))
            if arr.shape != (self.n_edges,):
                raise ArithLensError(f"an edge selection has one entry per edge ({self.n_edges}), not {tuple(arr.shape)}")
            return arr.to(device=device, dtype=torch.float32)
        out = torch.zeros(self.n_edges, dtype=torch.float32)
        out[[self.index(e) for e in kept]] = 1.0
        return out.to(device)

    def node_mask(self, removed: Iterable, *, device: str | torch.device = "cpu") -> Tensor:
        """The node circuit as an edge mask: every edge out of a removed node (`Node` or `Sender`) is 0."""
        drop = {self._sender_of(n) for n in removed}
        return torch.tensor([e.sender not in drop for e in self.edges], dtype=torch.float32, device=device)

    def _sender_of(self, node) -> Sender:
        if isinstance(node, Sender):
            return node
        if getattr(node, "is_neuron", False):
            raise ArithLensError(f"edges run between heads and whole MLP layers; {node} is a neuron")
        return Sender(node.position, node.layer, -1 if node.is_mlp else node.num)

    def senders_in(self, mask: Tensor | np.ndarray) -> list[Sender]:
        """The senders with at least one kept edge, sorted."""
        keep = np.asarray(mask.detach().cpu() if isinstance(mask, Tensor) else mask) > 0.5
        return sorted({e.sender for e, k in zip(self.edges, keep) if k})

    def group_edges(self, group: Group) -> Sequence[Edge]:
        return self.edges[group.start : group.stop]


__all__ = ["RECEIVER_KINDS", "Edge", "EdgeGraph", "Group", "Receiver", "Sender", "parse_edge", "parse_receiver",
           "parse_sender"]
