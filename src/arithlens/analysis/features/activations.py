"""Where a dictionary reads (a node's site: head `hook_z`, MLP `hook_post`, or any hook at one position), the
fresh question set it trains on, and the site's activations on those questions.

A site is named by a node (`P18L0H3`, `P18L0MLP`) or by a hook at a position (`blocks.1.hook_resid_pre@P18`);
its activation is (batch, d_site): the head's d_head slice of `hook_z`, the layer's `hook_post`, the hook's vector.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from arithlens.interventions import Intervention, clean_caches
from arithlens.analysis.nodes import Node
from arithlens.arith.generators import enriched, uniform
from arithlens.arith.questions import QType, QuestionBatch
from arithlens.errors import ArithLensError
from arithlens.model.hooks import act_name, is_per_head, node_site, split_name

_HOOK_AT = re.compile(r"(?P<hook>[A-Za-z0-9_.]+)@P(?P<pos>\d+)")


@dataclass(frozen=True)
class Site:
    """One activation vector per question: `hook` at `position`, the `head`'s slice when given."""

    name: str  # what the user called it: P18L0H3, P18L0MLP or blocks.1.hook_resid_pre@P18
    hook: str
    position: int
    head: int | None = None
    node: Node | None = None

    @classmethod
    def parse(cls, text: str | Node, spec) -> Site:
        if isinstance(text, Node):
            text = text.name
        match = _HOOK_AT.fullmatch(text.strip())
        if match is None:
            node = Node.for_model(text, spec)
            if node.is_neuron:
                raise ArithLensError(f"a dictionary reads a head or a whole MLP layer (P18L0H0, P18L0MLP), not one "
                                     f"neuron ({node})")
            where = node_site(node)
            return cls(node.name, where.hook, node.position, where.head, node)
        hook, position = act_name(match["hook"]), int(match["pos"])
        if not 0 <= position < spec.n_ctx:
            raise ArithLensError(f"unknown site {text!r}: position {position} is outside 0..{spec.n_ctx - 1}")
        layer = split_name(hook)[0]
        if layer is not None and layer >= spec.n_layers:
            raise ArithLensError(f"unknown site {text!r}: layer {layer} is outside 0..{spec.n_layers - 1}")
        if is_per_head(hook):
            raise ArithLensError(f"site {text!r}: name a head as a node (P18L0H3); a per-head hook needs its head")
        return cls(f"{hook}@P{position}", hook, position)

    def take(self, acts: torch.Tensor) -> torch.Tensor:
        """A recorded (batch, pos, ...) activation -> (batch, d_site)."""
        x = acts[:, self.position]
        return x[:, self.head] if self.head is not None else x

    def replace(self, value: np.ndarray | torch.Tensor) -> Intervention:
        """Set the site to `value` (batch, d_site) on each question (a patch from a computed value)."""
        v = torch.tensor(np.asarray(value), dtype=torch.float32)[:, None]  # (batch, 1, d_site)
        return Intervention(self.hook, (self.position,), self.head, None, "patch", v)


def qtypes_of(spec) -> tuple[QType, ...]:
    """The qtypes the model was trained on."""
    out = []
    if spec.perc_add > 0:
        out.append(QType.ADD)
    if spec.perc_sub > 0:
        out += [QType.SUB, QType.NEG]
    if spec.perc_mul > 0:
        out.append(QType.MUL)
    return tuple(out)


def training_questions(spec, count: int, seed: int) -> QuestionBatch:
    """`count` fresh questions: half uniform, half enriched (carry / borrow cascades), each half split evenly
    over the qtypes the model knows (so rare carries and borrows are there to be found)."""
    if not isinstance(count, (int, np.integer)) or count < 20:
        raise ArithLensError(f"a dictionary needs at least 20 questions, not {count!r}")
    ops = qtypes_of(spec)
    weights = {op.name.lower(): 1.0 for op in ops}
    rng = np.random.default_rng(seed)
    half = count // 2
    return QuestionBatch.concat([uniform(spec.n_digits, half, rng, qtypes=weights),
                                 enriched(spec.n_digits, count - half, rng, qtypes=weights)])


def site_acts(model, site: Site, batch: QuestionBatch, chunk: int = 4096) -> np.ndarray:
    """The site's activation on each question (batch, d_site) float32, one clean run."""
    parts = [site.take(cache[site.hook]).float().cpu().numpy()
             for _, cache in clean_caches(model, batch, [site.hook], chunk=chunk)]  # only the slice is kept
    return np.concatenate(parts)


__all__ = ["Site", "qtypes_of", "site_acts", "training_questions"]
