"""Interventions as small frozen values: replace one slice (zero / mean / resample / patch: `Intervention`) or
every unit outside a kept set (`MaskedAblation`); each gives the model a scoped `(name, fn)` hook."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from arithlens.errors import ArithLensError
from arithlens.model.hooks import block_site, split_name
from arithlens.model.transformer import Hook, HookPoint

if TYPE_CHECKING:
    from arithlens.interventions.cache import Means

KINDS = ("zero", "mean", "resample", "patch")
LOSS_THRESHOLD = 0.01  # the predecessor's rule: a question fails when its mean answer NLL is above this ...
# ... and some answer position's argmax is wrong.

_HEAD_HOOKS = tuple(block_site(n) for n in ("q", "k", "v", "z", "result"))
_NEURON_HOOKS = tuple(block_site(n) for n in ("pre", "post"))
_QK_HOOKS = tuple(block_site(n) for n in ("attn_scores", "pattern"))
# Hooks whose edit at position p reaches later positions of the same layer (through that layer's keys and
# values). Every other block hook changes its layer at position p only.
_SPREADING = tuple(block_site(n) for n in ("resid_pre", "scale_ln1", "normalized_ln1", "k", "v"))


class _AtHook:
    """Where an edit at `hook_name` sits, which decides where the executor's rerun starts."""

    hook_name: str

    @property
    def layer(self) -> int | None:
        """The block the hook is in (None for hook_embed, hook_pos_embed, ln_final)."""
        return split_name(self.hook_name)[0]

    @property
    def spreads(self) -> bool:
        """True when the edit at p reaches later positions of its own layer (keys / values of that layer)."""
        return split_name(self.hook_name)[1] in _SPREADING


@dataclass(frozen=True, eq=False)
class Intervention(_AtHook):
    """Replace one activation slice: `hook_name` at absolute `positions`, optionally one `head` or `neuron`.

    `value` is the replacement (None for "zero"), broadcast against the slice `x[:, positions]`,
    `x[:, positions, head]` or `x[:, positions, neuron]`: shape (1 or batch, len(positions), ...).
    `row_mask` (batch,) bool, when given, limits the edit to those rows; the others pass through untouched
    (several patches stacked along the batch axis, each on its own block of rows).
    Build one with `zero_ablate`, `mean_ablate`, `resample_ablate` or `patch_from`.
    """

    hook_name: str
    positions: tuple[int, ...]
    head: int | None = None
    neuron: int | None = None
    kind: str = "zero"
    value: Tensor | None = None
    row_mask: Tensor | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", _positions(self.positions))
        layer, site = split_name(self.hook_name)
        if self.kind not in KINDS:
            raise ArithLensError(f"intervention kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if site in _QK_HOOKS:
            raise ArithLensError(f"{self.hook_name!r} is (batch, head, query, key): use a hook function there")
        if self.head is not None and self.neuron is not None:
            raise ArithLensError("an intervention names a head or a neuron, not both")
        if self.head is not None and site not in _HEAD_HOOKS:
            raise ArithLensError(f"a head is chosen at {', '.join(_HEAD_HOOKS)}; {self.hook_name!r} is not one")
        if self.neuron is not None and site not in _NEURON_HOOKS:
            raise ArithLensError(f"a neuron is chosen at {', '.join(_NEURON_HOOKS)}; {self.hook_name!r} is not one")
        if (self.kind == "zero") != (self.value is None):
            raise ArithLensError(f"a {self.kind} intervention {'takes no' if self.kind == 'zero' else 'needs a'} value")
        if self.value is not None and (self.value.ndim < 2 or self.value.shape[1] != len(self.positions)):
            raise ArithLensError(
                f"intervention value has shape {tuple(self.value.shape)}; need (1 or batch, {len(self.positions)}, ...)"
            )
        if self.row_mask is not None and (self.row_mask.ndim != 1 or self.row_mask.dtype != torch.bool or (
                self.value is not None and self.value.shape[0] not in (1, len(self.row_mask)))):
            raise ArithLensError(f"an intervention's row mask is (batch,) bool, not {tuple(self.row_mask.shape)} "
                                 f"{self.row_mask.dtype}")

    def hook(self) -> Hook:
        """`(name, fn)` for the model's scoped hook API. Positions a run does not compute are left alone
        (the engine skips positions that cannot reach an answer logit)."""
        positions, value, row_mask = self.positions, self.value, self.row_mask
        rest = tuple(k for k in (self.head, self.neuron) if k is not None)  # both index the axis after pos

        def fn(x: Tensor, hook: HookPoint) -> Tensor | None:
            keep = [(j, i) for j, p in enumerate(positions) if (i := _index(hook.positions, p)) is not None]
            if not keep:
                return None
            x = x.clone()
            where = (slice(None), [i for _, i in keep], *rest)
            if value is None:
                new = torch.zeros((), device=x.device, dtype=x.dtype)
            else:
                # (a no-op unless the value was made elsewhere, e.g. from numpy on the CPU for a GPU model)
                new = (value if len(keep) == len(positions) else value[:, [j for j, _ in keep]]).to(x.device, x.dtype)
            if row_mask is not None:  # a selection, not arithmetic: the other rows keep their exact values
                old = x[where]
                new = torch.where(row_mask.to(x.device).view(-1, *[1] * (old.ndim - 1)), new, old)
            x[where] = new
            return x

        return self.hook_name, fn

    def rows(self, rows: slice | np.ndarray | Tensor) -> Intervention:
        """The same intervention for a sub-batch (a per-question value or a row mask keeps only those rows)."""
        per_row = self.value is not None and self.value.shape[0] != 1
        if not per_row and self.row_mask is None:
            return self
        return Intervention(self.hook_name, self.positions, self.head, self.neuron, self.kind,
                            self.value[rows] if per_row else self.value,
                            None if self.row_mask is None else self.row_mask[rows])


@dataclass(frozen=True, eq=False)
class MaskedAblation(_AtHook):
    """Keep `hook_name` where `keep` is True and replace it with `value` elsewhere: every node outside a set
    ablated at once (one per site; `faithfulness.KeepMask.ablations` builds them).

    `keep` is (pos, head) at a head site (`hook_z`), (pos, neuron) at an MLP site; `value` (1 or batch, pos, ...)
    has the activation's shape. Positions a run does not compute are left alone, as with `Intervention`."""

    hook_name: str
    keep: Tensor
    value: Tensor

    def __post_init__(self) -> None:
        if self.keep.dtype != torch.bool or self.keep.ndim != 2 or self.value.ndim not in (3, 4):
            raise ArithLensError(f"a masked ablation keeps a (pos, unit) bool mask, not {tuple(self.keep.shape)} "
                                 f"{self.keep.dtype}, against a (batch, pos, ...) value")

    @property
    def positions(self) -> tuple[int, ...]:
        """The positions where something is replaced."""
        return tuple(int(p) for p in torch.nonzero(~self.keep.all(-1)).flatten().tolist())

    def hook(self) -> Hook:
        mask, value = self.keep, self.value
        head_axis = value.ndim == mask.ndim + 2  # (batch, pos, head, d_head) against (pos, head)

        def fn(x: Tensor, hook: HookPoint) -> Tensor:
            pos = hook.positions
            span = slice(pos.start, pos.stop) if isinstance(pos, range) and pos.step == 1 else list(pos)
            m = mask[span]
            if head_axis:
                m = m.unsqueeze(-1)
            return torch.where(m, x, value[:, span].to(x.dtype))

        return self.hook_name, fn


Ablation = Intervention | MaskedAblation  # what the executor runs


def _positions(positions: int | Iterable[int]) -> tuple[int, ...]:
    out = (positions,) if isinstance(positions, (int, np.integer)) else tuple(positions)
    if not out or any(not isinstance(p, (int, np.integer)) or p < 0 for p in out) or len(set(out)) != len(out):
        raise ArithLensError(f"intervention positions must be distinct non-negative integers, not {positions!r}")
    return tuple(int(p) for p in out)


def _index(positions: Sequence[int], p: int) -> int | None:
    if isinstance(positions, range) and positions.step == 1:
        return p - positions.start if p in positions else None
    try:
        return list(positions).index(p)
    except ValueError:
        return None


def _slice(acts: Tensor, positions: tuple[int, ...], head: int | None, neuron: int | None) -> Tensor:
    """acts (batch, pos, ...) -> the slice an intervention replaces, keeping the batch and position axes."""
    out = acts[:, list(positions)]
    if head is not None:
        out = out[:, :, head]
    elif neuron is not None:
        out = out[..., neuron]
    return out


def zero_ablate(hook_name: str, positions: int | Iterable[int], *, head: int | None = None,
                neuron: int | None = None) -> Intervention:
    return Intervention(hook_name, _positions(positions), head, neuron, "zero")


def mean_ablate(means: Means, hook_name: str, positions: int | Iterable[int], *, head: int | None = None,
                neuron: int | None = None) -> Intervention:
    """Replace the slice with its mean over the question set `means` was computed on."""
    pos = _positions(positions)
    return Intervention(hook_name, pos, head, neuron, "mean", _slice(means[hook_name], pos, head, neuron))


def patch_from(stored: Mapping[str, Tensor], hook_name: str, positions: int | Iterable[int], *,
               head: int | None = None, neuron: int | None = None) -> Intervention:
    """Replace each question's slice with the same row of a stored run (`record`) on paired questions."""
    if hook_name not in stored:
        raise ArithLensError(f"the stored run has no {hook_name!r}; record it first")
    pos = _positions(positions)
    return Intervention(hook_name, pos, head, neuron, "patch", _slice(stored[hook_name], pos, head, neuron))


def resample_ablate(stored: Mapping[str, Tensor], hook_name: str, positions: int | Iterable[int], *,
                    batch_size: int, rng: np.random.Generator, head: int | None = None,
                    neuron: int | None = None) -> Intervention:
    """Replace each question's slice with that of a question drawn at random (with `rng`) from another set."""
    if hook_name not in stored:
        raise ArithLensError(f"the stored run has no {hook_name!r}; record it first")
    rows = torch.from_numpy(rng.integers(0, stored[hook_name].shape[0], size=batch_size))
    pos = _positions(positions)
    return Intervention(hook_name, pos, head, neuron, "resample", _slice(stored[hook_name][rows], pos, head, neuron))
