"""Interventions as small frozen values (zero / mean / resample / patch), per-layer means, and the `Engine`
that runs many single interventions on one question set without recomputing what they cannot change.

An edit at position p in layer l leaves every position before p and every layer below l as it was, and an
edit after layer l's attention mixing (a head's `hook_z`, the MLP, `hook_resid_post`) leaves layer l at the
other positions as it was too. So the engine runs position p alone from the cached residual at layer l
(with the cached keys and values of earlier positions), then the later positions from layer l + 1 with
position p's new keys and values spliced in (their q, k, v at layer l + 1 are the clean ones, reused), with
the last layer computing keys and values only except at answer positions, and unembeds only answer
positions; everything else is read from the one clean run. Interventions are run one at a time: on these
CPUs stacking them along the batch axis was measured slower (0.53x with 8 copies, 0.40x with 32 on the default model); `Engine.outcomes` runs
several on worker threads instead, one core each. Where the per-call cost dominates (a GPU), `Engine.tiled` and
row-masked interventions (`row_mask`) stack several along the batch axis (the search's `EngineRunner`).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch
from torch import Tensor

from arithlens.arith.questions import QuestionBatch
from arithlens.errors import ArithLensError
from arithlens.model.hooks import act_name, act_names, block_site, site_at, split_name
from arithlens.model.transformer import Hook, HookedTransformer, HookPoint

KINDS = ("zero", "mean", "resample", "patch")
LOSS_THRESHOLD = 0.01  # the predecessor's rule: a question fails when its mean answer NLL is above this ...
# ... and some answer position's argmax is wrong.

_HEAD_HOOKS = tuple(block_site(n) for n in ("q", "k", "v", "z", "result"))
_NEURON_HOOKS = tuple(block_site(n) for n in ("pre", "post"))
_QK_HOOKS = tuple(block_site(n) for n in ("attn_scores", "pattern"))
# Hooks whose edit at position p reaches later positions of the same layer (through that layer's keys and
# values). Every other block hook changes its layer at position p only.
_SPREADING = tuple(block_site(n) for n in ("resid_pre", "scale_ln1", "normalized_ln1", "k", "v"))
_split = split_name


@dataclass(frozen=True, eq=False)
class Intervention:
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
        layer, site = _split(self.hook_name)
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

    @property
    def layer(self) -> int | None:
        """The block the hook is in (None for hook_embed, hook_pos_embed, ln_final)."""
        return _split(self.hook_name)[0]

    @property
    def spreads(self) -> bool:
        """True when the edit at p reaches later positions of its own layer (keys / values of that layer)."""
        return _split(self.hook_name)[1] in _SPREADING

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
class MaskedAblation:
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
    def layer(self) -> int | None:
        return split_name(self.hook_name)[0]

    @property
    def spreads(self) -> bool:
        return split_name(self.hook_name)[1] in _SPREADING

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


# ---------------------------------------------------------------------------------------------------
# Stored runs and means


def _tokens(questions: QuestionBatch | Tensor, device: torch.device) -> Tensor:
    if isinstance(questions, QuestionBatch):
        return questions.torch_tokens(str(device))
    return questions.to(device)


def clean_caches(model: HookedTransformer, questions: QuestionBatch | Tensor, hook_names: Iterable[str],
                 *, chunk: int = 2048) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
    """(tokens, {name: activation}) of a clean run, `chunk` questions at a time."""
    names = list(hook_names)
    tokens = _tokens(questions, model.device)
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
    tokens = _tokens(questions, model.device)
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
            layer, site = _split(name)
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


# ---------------------------------------------------------------------------------------------------
# Outcomes: the failure criterion


@dataclass(frozen=True, eq=False)
class Outcome:
    """Per-question verdict of one run, teacher forced (mean answer loss above the threshold and a wrong token)."""

    loss: np.ndarray  # (batch,) float64: mean NLL over the answer positions
    wrong: np.ndarray  # (batch, n_answer) bool: argmax differs from the answer token (sign first)
    threshold: float

    @property
    def fails(self) -> np.ndarray:
        """(batch,) bool: loss above the threshold and at least one answer token wrong."""
        return (self.loss > self.threshold) & self.wrong.any(1)

    @property
    def n_fails(self) -> int:
        return int(self.fails.sum())


def score(logits: Tensor, targets: Tensor, threshold: float = LOSS_THRESHOLD) -> Outcome:
    """logits (batch, n_answer, vocab) against targets (batch, n_answer) -> `Outcome`."""
    wide = logits.double()  # float64 so losses near the threshold are exact enough
    nll = torch.logsumexp(wide, -1) - wide.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (batch, n_answer)
    wrong = logits.argmax(-1) != targets
    return Outcome(nll.mean(-1).cpu().numpy(), wrong.cpu().numpy(), threshold)


def run_with_interventions(model: HookedTransformer, tokens: Tensor,
                           interventions: Sequence[Ablation]) -> Tensor:
    """Answer logits (batch, n_answer, vocab) of one full forward with every intervention hooked: the
    plain way, which `Engine` must agree with."""
    with torch.inference_mode():
        return model.run_with_hooks(tokens, [iv.hook() for iv in interventions],
                                    logit_positions=model.spec.layout.answer_logit_positions)


# ---------------------------------------------------------------------------------------------------
# The engine


def _head_major(t: Tensor) -> Tensor:
    """The same (batch, pos, head, d_head) values laid out as (batch, head, pos, d_head)."""
    return t.transpose(1, 2).contiguous().transpose(1, 2)


class Engine:
    """One question set, one base run (the clean run, or the run with `base` ablations); then
    `answer_logits(interventions)` / `outcome(interventions)`, and for greedy searches `rerun` + `splice`.

    `targets` (batch, n_answer) default to the answer tokens (teacher forcing). Key/value scratch buffers are
    per thread, so threads may share one engine (`outcomes` runs ablations on several).
    """

    def __init__(self, model: HookedTransformer, questions: QuestionBatch | Tensor, *,
                 targets: Tensor | None = None, threshold: float = LOSS_THRESHOLD, base: Sequence[Ablation] = ()):
        self.model = model
        self.base = tuple(base)
        spec = model.spec
        self.n_layers = spec.n_layers
        self.tokens = _tokens(questions, model.device)
        if self.tokens.ndim != 2 or self.tokens.shape[1] != spec.n_ctx:
            raise ArithLensError(f"questions must be (batch, {spec.n_ctx}) tokens, not {tuple(self.tokens.shape)}")
        answer = spec.layout.answer_logit_positions
        self.answer = answer  # logit positions, sign first
        self.last = answer.stop - 1  # positions after this one reach no answer logit
        teacher = self.tokens[:, answer.start + 1 : answer.stop + 1]  # the answer tokens
        self.targets = teacher if targets is None else targets.to(model.device)
        self.threshold = threshold
        resid_names = act_names("resid_pre", self.n_layers)
        q_names = act_names("q", self.n_layers)
        with torch.inference_mode():
            logits, cache = model.run_with_cache(self.tokens, resid_names + q_names + model.kv_names(0),
                                                 logit_positions=answer, hooks=[iv.hook() for iv in self.base])
        self.clean_logits = logits  # (batch, n_answer, vocab)
        self._resid = [cache[n] for n in resid_names]  # (batch, pos, d_model) per layer
        # q, k, v: (batch, pos, head, d_head) stored head-major, so one head's (pos, d_head) block is contiguous:
        # the model reads a prefix of them in place (a matmul over batch x head) instead of copying it.
        self._q: list[Tensor] | None = [_head_major(cache[n]) for n in q_names]  # None once spliced
        self._kv_clean = {n: _head_major(cache[n]) for n in model.kv_names(0)}
        self._local = threading.local()  # per thread: key/value scratch, clean but for one position
        self._tiles: Engine | None = None  # `tiled`'s largest copy
        self._scratch_of: Engine | None = None  # a tiled view's: the engine whose scratch it shares
        self.clean = score(self.clean_logits, self.targets, threshold)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def nbytes(self) -> int:
        """Bytes the clean run's caches hold: what keeping this engine costs."""
        kept = [*self._resid, *(self._q or []), *self._kv_clean.values(), self.clean_logits]
        return sum(t.element_size() * t.nelement() for t in kept)

    def tiled(self, copies: int) -> Engine:
        """This engine over its questions repeated `copies` times (row i + j * len(self) is row i), for running
        several interventions in one batch with row-masked values. The clean run's caches are repeated, not
        recomputed, so every copy starts from exactly this engine's clean values."""
        if copies < 1:
            raise ArithLensError(f"copies must be positive, not {copies}")

        def rep(t: Tensor) -> Tensor:
            return t.repeat(copies, *[1] * (t.ndim - 1))

        rows = copies * len(self)
        big = self._tiles
        if big is None or len(big) < rows:  # the largest tiling asked for is kept; smaller ones are views of it
            big = copy.copy(self)
            big.tokens, big.targets, big.clean_logits = rep(self.tokens), rep(self.targets), rep(self.clean_logits)
            big._resid = [rep(t) for t in self._resid]
            big._q = None if self._q is None else [_head_major(rep(t)) for t in self._q]
            big._kv_clean = {n: _head_major(rep(t)) for n, t in self._kv_clean.items()}
            big._local, big._tiles, big._scratch_of = threading.local(), None, None
            big.clean = score(big.clean_logits, big.targets, self.threshold)
            self._tiles = big
        if len(big) == rows:
            return big
        out = copy.copy(big)  # the first `rows` rows, as views (batch is the outer axis of every cache)
        out.tokens, out.targets, out.clean_logits = big.tokens[:rows], big.targets[:rows], big.clean_logits[:rows]
        out._resid = [t[:rows] for t in big._resid]
        out._q = None if big._q is None else [t[:rows] for t in big._q]
        out._kv_clean = {n: t[:rows] for n, t in big._kv_clean.items()}
        out._scratch_of = big  # its scratch's first rows: restored after every run, so views may share it
        out.clean = score(out.clean_logits, out.targets, self.threshold)
        return out

    def outcome(self, interventions: Sequence[Intervention]) -> Outcome:
        return score(self.answer_logits(interventions), self.targets, self.threshold)

    def outcomes(self, ablations: Iterable[Sequence[Intervention]], *, workers: int | None = None,
                 progress: Callable[[int], None] | None = None) -> list[Outcome]:
        """`outcome` of each ablation (a list of interventions applied together), in order.

        On a CPU they run on `workers` threads of one torch thread each (default: `torch.get_num_threads()`;
        the process's torch thread count is 1 meanwhile, restored after). Each ablation is a few small
        matmuls, which one thread runs better than two share (as in `evaluate`). `progress(done)` is called
        in order as each finishes."""
        ablations = [list(ivs) for ivs in ablations]
        cpu = self.tokens.device.type == "cpu"
        workers = (torch.get_num_threads() if workers is None else workers) if cpu else 1
        if workers < 1:
            raise ArithLensError(f"workers must be positive, not {workers}")
        out: list[Outcome] = []
        threads = torch.get_num_threads()
        pool = None
        if workers > 1 and len(ablations) > 1:
            torch.set_num_threads(1)
            pool = ThreadPoolExecutor(workers, thread_name_prefix="arithlens-engine")
        try:
            results = pool.map(self.outcome, ablations) if pool is not None else map(self.outcome, ablations)
            for result in results:
                out.append(result)
                if progress is not None:
                    progress(len(out))
        finally:
            if pool is not None:
                pool.shutdown()
            torch.set_num_threads(threads)
        return out

    def _scratch(self) -> dict[str, Tensor]:
        """This thread's copy of the clean keys and values (edited at one position during a run, then restored)."""
        if self._scratch_of is not None:
            return {n: t[: len(self)] for n, t in self._scratch_of._scratch().items()}
        kv = getattr(self._local, "kv", None)
        if kv is None:
            kv = self._local.kv = {n: t.clone() for n, t in self._kv_clean.items()}
        return kv

    def answer_logits(self, interventions: Sequence[Ablation]) -> Tensor:
        """(batch, n_answer, vocab) with all `interventions` applied together (on top of the base's)."""
        interventions = list(interventions)
        if not interventions:
            return self.clean_logits.clone()
        if any(iv.layer is None for iv in interventions):  # embeddings / final LayerNorm: no saving to make
            return run_with_interventions(self.model, self.tokens, [*self.base, *interventions])
        positions = {p for iv in interventions for p in iv.positions}
        if max(positions) >= self.model.spec.n_ctx:
            raise ArithLensError(f"intervention position {max(positions)} is outside 0..{self.model.spec.n_ctx - 1}")
        start = min(positions)
        if start > self.last:
            return self.clean_logits.clone()
        with torch.inference_mode():
            if len(positions) == 1 and not self.base and self._q is not None:
                return self._one_position(interventions, start)
            return self._from(interventions, start)

    def _from(self, interventions: list[Ablation], start: int) -> Tensor:
        """The general case: every position from `start`, every layer from the lowest edited one."""
        layer = min(iv.layer for iv in interventions)
        base = [iv for iv in self.base if iv.layer >= layer]  # (the base's edits below `layer` are in its cache)
        out = self.rerun([*base, *interventions], layer, start)
        logits = self.clean_logits.clone()
        logits[:, max(start, self.answer.start) - self.answer.start :] = out
        return logits

    def rerun(self, interventions: Sequence[Ablation], layer: int, start: int, *,
              keep: bool = False) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The partial rerun, written once: positions `start`.. from block `layer` on, from the base run's residual
        at `layer` and its keys and values before `start`, with `interventions` hooked (they replace the base's
        own from `layer` on: pass those that still apply). An edit at position p and layer l changes nothing
        before p or below l, so with start <= p and layer <= l this equals a full run.

        Returns the logits (batch, n, vocab) of answer positions from max(start, first answer position) on; with
        `keep`, also what `splice` needs to make this run the base."""
        resid = self._resid[layer][:, start : self.last + 1]
        logit_positions = range(max(start, self.answer.start), self.last + 1)
        names = (act_names("resid_pre", self.n_layers)[layer + 1 :] + self.model.kv_names(layer)) if keep else None
        with torch.inference_mode():
            return self.model.forward_from(resid, layer, start_pos=start, kv_prefix=self._kv_clean,
                                           logit_positions=logit_positions, hooks=[iv.hook() for iv in interventions],
                                           names=names)

    def splice(self, base: Sequence[Ablation], layer: int, start: int, logits: Tensor,
               cache: Mapping[str, Tensor]) -> None:
        """Make a `rerun(base, layer, start, keep=True)` the base run: its residuals, keys, values and logits
        replace the cached ones from `layer` and `start` on. (The queries are not kept, so single-position
        runs take the general path from then on.)"""
        for k in range(layer + 1, self.n_layers):
            name = act_name("resid_pre", k)
            if name in cache:
                self._resid[k] = self._resid[k].clone()
                self._resid[k][:, start : start + cache[name].shape[1]] = cache[name]
        for name in self.model.kv_names(layer):
            if name in cache:
                self._kv_clean[name] = self._kv_clean[name].clone()
                self._kv_clean[name][:, start : start + cache[name].shape[1]] = cache[name]
        self.clean_logits = self.clean_logits.clone()
        self.clean_logits[:, max(start, self.answer.start) - self.answer.start :] = logits
        self.clean = score(self.clean_logits, self.targets, self.threshold)
        self.base = tuple(base)
        self._q, self._tiles, self._local = None, None, threading.local()

    def _one_position(self, interventions: list[Intervention], p: int) -> Tensor:
        """Every edit at position p: run p alone through the layers, then the later positions from the first
        layer whose keys or values at p changed."""
        layer = min(iv.layer for iv in interventions)
        first = layer if any(iv.spreads for iv in interventions if iv.layer == layer) else layer + 1
        answers_after = range(max(p + 1, self.answer.start), self.last + 1)
        if p not in self.answer and (first == self.n_layers or not answers_after):
            return self.clean_logits.clone()  # only p's own, non-answer logits could change
        kv_names = self.model.kv_names(first) if first < self.n_layers and answers_after else []
        logits_p, cache = self.model.forward_from(
            self._resid[layer][:, p : p + 1], layer, start_pos=p, kv_prefix=self._kv_clean,
            hooks=[iv.hook() for iv in interventions], names=kv_names,
        )
        logits = self.clean_logits.clone()
        if p in self.answer:
            logits[:, p - self.answer.start] = logits_p[:, 0]
        if not kv_names:
            return logits
        # Positions after p enter layer `first` unchanged; if it is the last layer, only answer positions
        # need computing there (the others' keys and values are the clean ones).
        start = answers_after.start if first == self.n_layers - 1 else p + 1
        scratch = self._scratch()
        try:
            for n in kv_names:
                scratch[n][:, p] = cache[n][:, 0]
            # Layer `first` at positions >= start sees its clean input: its q, k and v there are the clean ones.
            span = slice(start, self.last + 1)
            clean_qkv = (self._q[first][:, span], *(self._kv_clean[n][:, span] for n in kv_names[:2]))
            out = self.model.forward_from(self._resid[first][:, span], first, start_pos=start, kv_prefix=scratch,
                                          logit_positions=answers_after, start_qkv=clean_qkv)
        finally:
            for n in kv_names:
                scratch[n][:, p] = self._kv_clean[n][:, p]
        logits[:, answers_after.start - self.answer.start :] = out
        return logits
