"""The batched teacher-forced check behind exact evaluation: forward passes on worker threads of one core each,
logits only at the answer positions, and reduced precision (bf16) trusted only where the guard says so."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor

from arithlens.arith import QuestionBatch
from arithlens.errors import ArithLensError
from arithlens.model.transformer import HookedTransformer

PRECISIONS = ("auto", "fp32", "bf16")
# benchmarks/bench_eval.py, d_model 128 on Sapphire Rapids: per CPU-second batch 64-128 beat 256 by ~10%
# and 4096 by 2x (activations stay in the 2 MB L2). The GPU size is a guess that keeps a GPU busy.
CPU_BATCH, GPU_BATCH = 128, 8192

Progress = Callable[[int, str], None]  # (questions just checked, label of the current stream)


@dataclass(frozen=True)
class Bf16Guard:
    """When a bf16 verdict is trusted. A row is re-checked in fp32 if at any answer position
    top1 - top2 < rel * max|logit| + abs. `audit_rows` more rows are checked in fp32 anyway, in every
    batch that re-checks rows and in every `audit_every`-th batch (an fp32 call per batch cost 10%); the
    run falls back to fp32 if an audited position's error reaches `audit_limit` of what a flip needs."""

    rel: float = 0.25
    abs: float = 0.5
    audit_rows: int = 4
    audit_every: int = 16
    audit_limit: float = 0.75


def has_amx() -> bool:
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check and check())


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ArithLensError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        # bf16 pays off only where the CPU multiplies bf16 in hardware (measured: ~2x with AMX).
        return "bf16" if device.type == "cpu" and has_amx() else "fp32"
    return precision


class Checker:
    """Runs the forward passes, on `workers` threads of one core each; keeps the bf16 bookkeeping.

    Worker threads, not torch's intra-op threads: with batches small enough to stay in cache, OpenMP's
    barriers cost more than they save, and on a loaded machine they spin (measured on 2 busy cores: 2
    intra-op threads did 3.5-4x less work per CPU-second than 1; two 1-thread workers ~10% less)."""

    def __init__(self, model: HookedTransformer, precision: str, batch_size: int | None, margins: bool,
                 guard: Bf16Guard, workers: int | None = None):
        self.model, self.guard, self.margins = model, guard, margins
        precision = resolve_precision(precision, model.device)
        self.precision_used = precision
        self.bf16 = precision == "bf16"
        cpu = model.device.type == "cpu"
        self.batch_size = (CPU_BATCH if cpu else GPU_BATCH) if batch_size is None else batch_size
        if self.batch_size < 1:
            raise ArithLensError(f"batch size must be positive, not {self.batch_size}")
        self.workers = (torch.get_num_threads() if workers is None else workers) if cpu else 1
        if self.workers < 1:
            raise ArithLensError(f"workers must be positive, not {self.workers}")
        self.positions = model.spec.layout.answer_logit_positions
        self.rechecked = self.audited = self._batches = 0
        self.closest = 0.0
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._threads = 0

    def __enter__(self) -> Checker:
        if self.model.device.type == "cpu":
            self._threads = torch.get_num_threads()
            torch.set_num_threads(1)  # process-wide; restored on exit
        if self.workers > 1:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="arithlens-eval")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._threads:
            torch.set_num_threads(self._threads)

    def check(self, batch: QuestionBatch, progress: Progress | None, label: str):
        """(pred (B, P) int64 predicted answer tokens, wrong (B, P) bool, margin (B,) float or None)."""
        tokens = batch.torch_tokens(self.model.device)  # (B, n_ctx)
        parts = [tokens[s : s + self.batch_size] for s in range(0, len(tokens), self.batch_size)]
        done = self._pool.map(self._check_rows, parts) if self._pool is not None else map(self._check_rows, parts)
        preds, wrongs, margins = [], [], []
        for rows, (pred, wrong, margin) in zip(parts, done):  # in order, as each finishes
            preds.append(pred)
            wrongs.append(wrong)
            margins.append(margin)
            if progress is not None:
                progress(len(rows), label)
        margin = torch.cat(margins).numpy() if self.margins else None
        return torch.cat(preds).numpy(), torch.cat(wrongs).numpy(), margin

    def _check_rows(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        # The last answer token predicts nothing and no earlier position attends to it: drop it.
        inputs, targets = rows[:, : self.positions.stop], rows[:, self.positions.start + 1 :]  # (b, T-1), (b, P)
        with torch.inference_mode():  # thread-local, like autocast: entered in the worker
            logits = self._logits_bf16(inputs) if self.bf16 else self._logits(inputs)  # (b, P, V) fp32
            pred = logits.argmax(-1)  # (b, P)
            margin = answer_margin(logits, targets).cpu() if self.margins else None
            return pred.cpu(), (pred != targets).cpu(), margin

    def _logits(self, inputs: Tensor) -> Tensor:
        return self.model(inputs, logit_positions=self.positions).float()

    def _logits_bf16(self, inputs: Tensor) -> Tensor:
        g = self.guard
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16):
            low = self.model(inputs, logit_positions=self.positions).float()  # (b, P, V)
        top2 = low.topk(2, dim=-1).values  # (b, P, 2)
        margin = top2[..., 0] - top2[..., 1]  # (b, P)
        band = g.rel * low.abs().amax(-1) + g.abs  # (b, P)
        flagged = (margin < band).any(-1)  # (b,)
        with self._lock:
            self._batches += 1
            audit = bool(flagged.any()) or self._batches % g.audit_every == 0
        sample = torch.zeros_like(flagged)
        sample[: g.audit_rows if audit else 0] = True
        sample &= ~flagged
        idx = torch.nonzero(flagged | sample).squeeze(1)
        closest = 0.0
        if len(idx):
            exact = self._logits(inputs[idx])  # (k, P, V)
            # How near did a position the guard let through come to flipping? 2 * error / margin >= 1 could.
            err = (exact - low[idx]).abs().amax(-1)  # (k, P)
            through = margin[idx] >= band[idx]
            closest = float(torch.where(through, 2 * err / margin[idx].clamp_min(1e-30), 0.0).max())
            low[idx] = exact
        with self._lock:
            self.rechecked += int(flagged.sum())
            self.audited += int(sample.sum())
            self.closest = max(self.closest, closest)
            if closest >= g.audit_limit:
                self.bf16, self.precision_used = False, "bf16->fp32"
        return self._logits(inputs) if closest >= g.audit_limit else low


def answer_margin(logits: Tensor, targets: Tensor) -> Tensor:
    """(b,) min over answer positions of (true token's logit - best other logit): > 0 iff the row is right."""
    true = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (b, P)
    other = logits.scatter(-1, targets.unsqueeze(-1), float("-inf")).amax(-1)  # (b, P)
    return (true - other).amin(-1)
