"""The executor: the `Engine` runs interventions on one question set without recomputing what they cannot
change, from one base run (clean, or with masked ablations), with the failure criterion (`score`).

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from arithlens.arith.questions import QuestionBatch
from arithlens.errors import ArithLensError
from arithlens.interventions.cache import as_tokens
from arithlens.interventions.values import LOSS_THRESHOLD, Ablation, Intervention
from arithlens.model.hooks import act_name, act_names
from arithlens.model.transformer import HookedTransformer

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
        self.tokens = as_tokens(questions, model.device)
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

    def rows(self, rows: slice) -> Engine:
        """This engine over a contiguous block of its questions: views of the clean run's caches, nothing
        recomputed, so its runs equal this engine's on those rows (a sequential test judges a first block of
        questions, then the rest only for what is not settled yet). Per-question interventions must be cut to
        the block too (`Intervention.rows`)."""
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise ArithLensError(f"an engine's rows are a contiguous slice, not {rows!r}")
        if any(not isinstance(iv, Intervention) and iv.value.shape[0] != 1 for iv in self.base):
            raise ArithLensError("an engine whose base has per-question masked ablations cannot be cut into rows")
        out = copy.copy(self)
        out.tokens, out.targets, out.clean_logits = self.tokens[rows], self.targets[rows], self.clean_logits[rows]
        if len(out.tokens) == 0:
            raise ArithLensError(f"rows {rows.start}:{rows.stop} of an engine over {len(self)} questions are empty")
        out.base = tuple(iv.rows(rows) if isinstance(iv, Intervention) else iv for iv in self.base)
        out._resid = [t[rows] for t in self._resid]
        out._q = None if self._q is None else [t[rows] for t in self._q]
        out._kv_clean = {n: t[rows] for n, t in self._kv_clean.items()}
        out._local, out._tiles, out._scratch_of = threading.local(), None, None
        out.clean = score(out.clean_logits, out.targets, self.threshold)
        return out

    def outcome(self, interventions: Sequence[Ablation]) -> Outcome:
        return score(self.answer_logits(interventions), self.targets, self.threshold)

    def outcomes(self, ablations: Iterable[Sequence[Ablation]], *, workers: int | None = None,
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

    def release_scratch(self) -> None:
        """Drop the threads' working copies of the keys and values (half again the clean run's size); the next run
        makes them anew. An engine kept for later (the node studies' cache) then holds only its clean run."""
        self._local = threading.local()

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

    def _one_position(self, interventions: list[Ablation], p: int) -> Tensor:
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
