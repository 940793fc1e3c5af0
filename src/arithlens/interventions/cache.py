"""Activation caches of clean runs: stored runs to patch from (`record`) and per-layer means (`compute_means`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import Tensor

from arithlens.arith.questions import QuestionBatch
from arithlens.errors import ArithLensError
from arithlens.model.hooks import site_at, split_name
from arithlens.model.transformer import HookedTransformer


def as_tokens(questions: QuestionBatch | Tensor, device: torch.device) -> Tensor:
    """(batch, pos) tokens on `device`, from a question batch or a token tensor."""
    if isinstance(questions, QuestionBatch):
        return questions.torch_tokens(str(device))
    return questions.to(device)


def clean_caches(model: HookedTransformer, questions: QuestionBatch | Tensor, hook_names: Iterable[str],
                 *, chunk: int = 2048) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
    """(tokens, {name: activation}) of a clean run, `chunk` questions at a time."""
    names = list(hook_names)
    tokens = as_tokens(questions, model.device)
    with torch.inference_mode():
        for start in range(0, len(tokens), chunk):
            part = tokens[start : start + chunk]
            yield part, model.run_with_cache(part, names, logit_positions=[0])[1]


def record(model: HookedTransformer, questions: QuestionBatch | Tensor, hook_names: Iterable[str],
           *, chunk: int = 2048) -> dict[str, Tensor]:
    """Activations of a clean run at `hook_names`: {name: (batch, pos, ...)} (a store for patching)."""
    return record_with_logits(model, questions, hook_names, [0], chunk=chunk)[0]


def record_with_logits(model: HookedTransformer, questions: QuestionBatch | Tensor, hook_names: Iterable[str],
                       logit_positions: Sequence[int], *, chunk: int = 2048) -> tuple[dict[str, Tensor], Tensor]:
    """`record` and the same run's logits at `logit_positions` (batch, len, vocab): one pass instead of two."""
    names = list(hook_names)
    tokens = as_tokens(questions, model.device)
    parts: dict[str, list[Tensor]] = {n: [] for n in names}
    logits = []
    with torch.inference_mode():
        for start in range(0, len(tokens), chunk):
            out, cache = model.run_with_cache(tokens[start : start + chunk], names, logit_positions=logit_positions)
            logits.append(out)
            for n in names:
                parts[n].append(cache[n])
    return {n: torch.cat(v) for n, v in parts.items()}, torch.cat(logits)


@dataclass(frozen=True, eq=False)
class Means:
    """Mean activation per hook over a question set: {hook name: (1, pos, ...)}, each layer its own."""

    values: Mapping[str, Tensor]
    n_questions: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    def __getitem__(self, hook_name: str) -> Tensor:
        if hook_name not in self.values:
            raise ArithLensError(f"no mean for {hook_name!r}; compute_means(..., hook_names) must include it")
        return self.values[hook_name]

    def __contains__(self, hook_name: str) -> bool:
        return hook_name in self.values

    def layer0_for_all(self) -> Means:
        """The predecessor's means: layer 0's value used for every layer (a bug of the predecessor's, kept for comparison)."""
        out = {}
        for name in self.values:
            layer, site = split_name(name)
            zero = site_at(site, 0)
            if layer is not None and zero not in self.values:
                raise ArithLensError(f"reference-compat means need {zero!r} as well as {name!r}")
            out[name] = self.values[name] if layer is None else self.values[zero]
        return Means(out, self.n_questions)


def compute_means(model: HookedTransformer, questions: QuestionBatch | Tensor, hook_names: Iterable[str],
                  *, chunk: int = 2048) -> Means:
    """Per-hook, per-layer means over `questions` (float64 sums, returned in the model's dtype)."""
    names = list(hook_names)
    sums: dict[str, Tensor] = {}
    count = 0
    for part, cache in clean_caches(model, questions, names, chunk=chunk):
        count += len(part)
        for n in names:
            s = cache[n].double().sum(0, keepdim=True)
            sums[n] = s if n not in sums else sums[n] + s
    if count == 0:
        raise ArithLensError("means need at least one question")
    dtype = model.embed.W_E.dtype
    return Means({n: (s / count).to(dtype) for n, s in sums.items()}, count)
