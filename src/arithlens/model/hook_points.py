"""The hook vocabulary of one call: what a hook function is told (`HookPoint`), a call's hooks and cache
(`_Run`), and hook helpers that edit a copy of an activation (`patch_head`, `patch_neuron`, `patch_pos`), as in
TransformerLens's `hook_points.py`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from torch import Tensor

from arithlens.errors import ArithLensError


@dataclass(frozen=True)
class HookPoint:
    """What a hook function is told about the activation it receives."""

    name: str
    positions: Sequence[int]  # absolute token position of each index along the pos (query) axis

    def index(self, pos: int) -> int:
        """Index of absolute position `pos` along the pos axis; an error if this run does not compute it."""
        try:
            return self.positions.index(pos)
        except ValueError:
            raise ArithLensError(
                f"position {pos} is not computed at {self.name} in this run (positions {_span(self.positions)})"
            ) from None


HookFn = Callable[[Tensor, HookPoint], Tensor | None]
Hook = tuple[str, HookFn]
Names = str | Iterable[str] | Callable[[str], bool]  # one name, several, or a predicate on names


class _Run:
    """One call's hooks and cache. The modules receive `None` instead of a _Run on the fast path."""

    def __init__(self, hooks: Iterable[Hook], cache_names: Iterable[str], detach: bool):
        self.hooks: dict[str, list[HookFn]] = {}
        for name, fn in hooks:
            self.hooks.setdefault(name, []).append(fn)
        self.cache_names = frozenset(cache_names)
        self.wanted = self.cache_names | self.hooks.keys()
        self.detach = detach
        self.cache: dict[str, Tensor] = {}

    def __call__(self, name: str, x: Tensor, positions: Sequence[int]) -> Tensor:
        for fn in self.hooks.get(name, ()):
            out = fn(x, HookPoint(name, positions))
            if out is not None:
                if out.shape != x.shape:
                    raise ArithLensError(f"hook on {name} returned shape {tuple(out.shape)}, expected {tuple(x.shape)}")
                x = out
        if name in self.cache_names:
            self.cache[name] = x.detach() if self.detach else x
        return x


# ---------------------------------------------------------------------------------------------------
# Hook helpers: each returns a (name, fn) pair that edits a copy of the activation.

_HEAD_HOOKS = ("hook_q", "hook_k", "hook_v", "hook_z", "hook_result")
_NEURON_HOOKS = ("hook_pre", "hook_post")


def patch_head(name: str, pos: int | None, head: int, value: Tensor | float) -> Hook:
    """Set head `head` at absolute position `pos` (None: every position) of a (batch, pos, head, ...) activation.

    `value` broadcasts against (batch, d) for one position, (batch, pos, d) for all: 0.0 zero-ablates.
    """
    if name.rsplit(".", 1)[-1] not in _HEAD_HOOKS:
        raise ArithLensError(f"patch_head needs one of {', '.join(_HEAD_HOOKS)}, not {name!r}")
    return _setter(name, pos, (head,), value)


def patch_neuron(name: str, pos: int | None, neuron: int, value: Tensor | float) -> Hook:
    """Set MLP neuron `neuron` at position `pos` (None: every position) of `blocks.{l}.mlp.hook_pre/post`."""
    if name.rsplit(".", 1)[-1] not in _NEURON_HOOKS:
        raise ArithLensError(f"patch_neuron needs one of {', '.join(_NEURON_HOOKS)}, not {name!r}")
    return _setter(name, pos, (neuron,), value)


def patch_pos(name: str, pos: int, value: Tensor | float) -> Hook:
    """Set the whole vector at position `pos` of a (batch, pos, ...) activation such as `hook_resid_pre`."""
    if name.endswith(("hook_attn_scores", "hook_pattern")):
        raise ArithLensError(f"patch_pos edits (batch, pos, ...) activations; {name!r} is (batch, head, q, k)")
    return _setter(name, pos, (), value)


def _setter(name: str, pos: int | None, rest: tuple[int, ...], value: Tensor | float) -> Hook:
    def fn(x: Tensor, hook: HookPoint) -> Tensor:
        x = x.clone()
        x[(slice(None), slice(None) if pos is None else hook.index(pos), *rest)] = value
        return x

    return name, fn


def _span(positions: Sequence[int]) -> str:
    if isinstance(positions, range) and positions.step == 1 and len(positions):
        return f"{positions.start}..{positions.stop - 1}"
    return str(list(positions))
