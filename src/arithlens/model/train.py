"""Training: one function that reads top to bottom: data, model, optimiser, loop, log, checkpoint.

AdamW with linear warm-up and cosine decay; enriched questions from the task layer with the spec's
per-qtype mix; periodic atomic checkpoints holding everything a bit-identical resume needs (weights,
AdamW moments, the data generator's state, the loss history); insert mode from a smaller model. For
multiplication: a curriculum over operand length, an auxiliary loss on the running sum of partial products
(a training-only linear head, never saved with the model) and per-answer-digit held-out MUL accuracy.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open

from arithlens.arith import QType, QuestionBatch, enriched, uniform
from arithlens.arith.mul import MUL_COLUMN_LABELS, mul_columns
from arithlens.arith.questions import mul_operand_digits
from arithlens.errors import ArithLensError, CheckpointError, TrainingDivergedError
from arithlens.io import write_atomic
from arithlens.model.checkpoint import load_checkpoint, safetensors_canonical, save_checkpoint
from arithlens.model.spec import ModelSpec
from arithlens.model.transformer import HookedTransformer

STATE_FILE = "train_state.safetensors"
HISTORY_FILE = "training.json"


@dataclass(frozen=True)
class TrainConfig:
    """The recipe. Defaults: the fast CPU recipe measured for issue #4 (not the reference's lr 8e-5)."""

    steps: int
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 200
    min_lr: float = 1e-5
    weight_decay: float = 0.1  # matrices only
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 1.0
    cascade: float = 0.4  # share of rows with a forced carry/borrow cascade
    equal: float = 0.01  # share of SUB rows with a == b
    shared_low: float = 0.0  # share of SUB/NEG rows whose operands share their low digits
    near_cascade: float = 0.0  # share of cascade rows whose run of 9s (equal pairs) gets no carry (borrow)
    shared_high: float = 0.0  # share of ADD/SUB/NEG rows whose operands share their top digits
    init_from: str | None = None  # fine-tune: start from this checkpoint's weights (same spec shape)
    eval_every: int = 500
    eval_questions: int = 2000  # held-out uniform + as many enriched
    checkpoint_every: int = 1000
    data_seed: int | None = None  # None -> the spec's seed
    insert_from: str | None = None  # checkpoint of a smaller model to start from
    insert_freeze: bool = False  # mask the gradients of every inserted weight
    insert_reset_every: int = 0  # re-copy the inserted weights every N steps (the reference's ins3)
    curriculum_steps: int = 0  # MUL operands grow 1 -> full length in equal stages over these steps
    aux_loss: float = 0.0  # weight of the MUL running-sum loss (Bai et al. 2025); 0 = off
    aux_layer: int | None = None  # the aux head reads blocks.{aux_layer}.hook_resid_post; None -> n_layers - 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "training config") -> TrainConfig:
        """A config from JSON-like data, every field checked for type and range (one-line errors naming it)."""
        from arithlens.validate import train_config

        return cls(**train_config(data, where))


# Fields a state file written before they existed lacks: it resumes as if it had held their defaults.
_CONFIG_DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}


def qtype_mix(spec: ModelSpec) -> dict[str, float]:
    """Row shares per qtype from the spec's percentages; subtraction splits evenly into SUB and NEG."""
    mix = {"add": spec.perc_add / 100, "sub": spec.perc_sub / 200, "neg": spec.perc_sub / 200,
           "mul": spec.perc_mul / 100}
    return {k: v for k, v in mix.items() if v > 0}


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up from lr/100, then cosine to min_lr; a pure function of the step (resume-safe)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (0.01 + 0.99 * step / max(1, cfg.warmup_steps))
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def answer_loss(model: HookedTransformer, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, per-question per-answer-position loss). log_softmax in float64 so tiny losses count."""
    positions = model.spec.layout.answer_logit_positions
    nll = _answer_nll(model(tokens, logit_positions=positions), tokens, positions)
    return nll.mean(), nll.detach()


def _answer_nll(logits: torch.Tensor, tokens: torch.Tensor, positions: range) -> torch.Tensor:
    """logits (batch, n_answer, d_vocab) at `positions` -> (batch, n_answer) nll of the next tokens."""
    targets = tokens[:, positions.start + 1 : positions.stop + 1]
    logp = F.log_softmax(logits.double(), dim=-1)
    return -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def count_wrong(model: HookedTransformer, batch: QuestionBatch, device, chunk: int = 4096) -> int:
    """Teacher-forced exact check: wrong if any answer position's argmax differs."""
    positions = model.spec.layout.answer_logit_positions
    wrong = 0
    with torch.inference_mode():
        for start in range(0, len(batch), chunk):
            tokens = batch.select(slice(start, start + chunk)).torch_tokens(device)
            pred = model(tokens, logit_positions=positions).argmax(-1)
            wrong += int((pred != tokens[:, positions.start + 1 : positions.stop + 1]).any(-1).sum())
    return wrong


def digit_accuracy(model: HookedTransformer, batch: QuestionBatch, device, chunk: int = 4096) -> dict[str, float]:
    """Share of rows right at each answer token (keys A7..A0 for 6 digits, A7 the sign) and `exact` (all right)."""
    layout = model.spec.layout
    positions = layout.answer_logit_positions
    right = torch.zeros(layout.n_answer, dtype=torch.float64)
    exact = 0
    with torch.inference_mode():
        for start in range(0, len(batch), chunk):
            tokens = batch.select(slice(start, start + chunk)).torch_tokens(device)
            ok = model(tokens, logit_positions=positions).argmax(-1) == tokens[:, positions.start + 1 : positions.stop + 1]
            right += ok.sum(0).double().cpu()
            exact += int(ok.all(-1).sum())
    names = [f"A{k}" for k in range(layout.n_digits + 1, -1, -1)]
    out = {name: float(r) / max(1, len(batch)) for name, r in zip(names, right)}
    out["exact"] = exact / max(1, len(batch))
    return out


# ---------------------------------------------------------------------------------------------------
# Multiplication: curriculum over operand length and the auxiliary running-sum loss


def mul_operand_length(cfg: TrainConfig, spec: ModelSpec, step: int) -> int:
    """MUL operand digits at `step`: 1, 2, .. full in equal stages over `curriculum_steps`, then full."""
    full = mul_operand_digits(spec.n_digits)
    if step >= cfg.curriculum_steps:
        return full
    return 1 + step * full // cfg.curriculum_steps


def curriculum_batch(batch: QuestionBatch, length: int, rng: np.random.Generator) -> QuestionBatch:
    """`batch` with every MUL row's operands redrawn uniformly below 10**length (other rows kept)."""
    rows = np.flatnonzero(batch.qtype == QType.MUL)
    a, b = batch.a.copy(), batch.b.copy()
    a[rows] = rng.integers(0, 10**length, len(rows), dtype=np.int64)
    b[rows] = rng.integers(0, 10**length, len(rows), dtype=np.int64)
    return QuestionBatch(batch.n_digits, a, batch.op, b)


# Targets are scaled to about unit size: a column sum reaches 243 for 3-digit operands, a carry 26.
AUX_SCALE = {"column_sum": 100.0, "carry_in": 10.0, "running": 100.0}


class AuxHead(torch.nn.Module):
    """Linear read-out of MUL column quantities from the residual at each magnitude answer digit's position.

    Training only: it lives beside the model, so the saved model is the plain transformer."""

    def __init__(self, spec: ModelSpec, layer: int | None, seed: int):
        super().__init__()
        self.layer = max(0, spec.n_layers - 2) if layer is None else layer
        if not 0 <= self.layer < spec.n_layers:
            raise ArithLensError(f"aux_layer {layer} is outside 0..{spec.n_layers - 1} for {spec.name}")
        self.proj = torch.nn.Linear(spec.d_model, len(MUL_COLUMN_LABELS))
        gen = torch.Generator().manual_seed(seed)  # its own stream: the model's initial weights do not move
        with torch.no_grad():
            self.proj.weight.normal_(0.0, 0.02, generator=gen)
            self.proj.bias.zero_()

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.hook_resid_post"


def aux_targets(batch: QuestionBatch, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets (batch, n+1, 3) scaled, MUL row mask (batch,)), columns ordered A(n)..A0 like the answer."""
    cols = mul_columns(np.where(batch.qtype == QType.MUL, batch.a, 0), np.where(batch.qtype == QType.MUL, batch.b, 0),
                       batch.n_digits)
    stacked = np.stack([cols[k][:, ::-1] / AUX_SCALE[k] for k in MUL_COLUMN_LABELS], axis=-1)  # (batch, n+1, 3)
    mask = torch.from_numpy(batch.qtype == QType.MUL).to(device)
    return torch.from_numpy(np.ascontiguousarray(stacked)).to(device=device, dtype=torch.float32), mask


def answer_and_aux_loss(model: HookedTransformer, head: AuxHead, tokens: torch.Tensor, batch: QuestionBatch):
    """(answer loss, per-position nll, aux MSE): the aux head reads the residual where each magnitude digit is
    predicted (A(n) at the sign's position .. A0 at the last); non-MUL rows add nothing to the aux loss."""
    positions = model.spec.layout.answer_logit_positions
    logits, cache = model.run_with_cache(tokens, head.hook_name, logit_positions=positions, detach=False)
    nll = _answer_nll(logits, tokens, positions)  # (batch, n_answer)
    digit_pos = list(positions)[1:]  # the sign position predicts A(n), ..., the last predicts A0
    resid = cache[head.hook_name][:, digit_pos]  # (batch, n+1, d_model)
    want, mask = aux_targets(batch, tokens.device)
    err = ((head.proj(resid) - want) ** 2).mean((1, 2))  # (batch,)
    aux = (err * mask).sum() / mask.sum().clamp(min=1)
    return nll.mean(), nll.detach(), aux


# ---------------------------------------------------------------------------------------------------
# Insert mode


def insert_slices(small: ModelSpec, big: ModelSpec) -> dict[str, tuple[slice, ...]]:
    """Parameter name -> the slice of the big model's tensor that receives the small model's tensor.

    The small model goes into the first layers and the first head / neuron slots. Unlike the
    reference, W_O/b_O, ln2, ln_final.b and b_U are copied too.
    """
    if (small.d_model, small.d_head, small.n_digits) != (big.d_model, big.d_head, big.n_digits):
        raise ArithLensError(
            f"cannot insert {small.name} into {big.name}: d_model, d_head and n_digits must match "
            f"({small.d_model}/{small.d_head}/{small.n_digits} vs {big.d_model}/{big.d_head}/{big.n_digits})")
    if small.n_layers > big.n_layers or small.n_heads > big.n_heads or small.d_mlp > big.d_mlp:
        raise ArithLensError(f"cannot insert {small.name} into {big.name}: the inserted model must not be larger")
    h, m, full = slice(0, small.n_heads), slice(0, small.d_mlp), slice(None)
    out: dict[str, tuple[slice, ...]] = {
        "embed.W_E": (full,), "pos_embed.W_pos": (full,), "ln_final.w": (full,), "ln_final.b": (full,),
        "unembed.W_U": (full,), "unembed.b_U": (full,),
    }
    for layer in range(small.n_layers):
        p = f"blocks.{layer}."
        for name in ("ln1.w", "ln1.b", "ln2.w", "ln2.b", "attn.b_O", "mlp.b_out"):
            out[p + name] = (full,)
        for name in ("attn.W_Q", "attn.W_K", "attn.W_V", "attn.b_Q", "attn.b_K", "attn.b_V", "attn.W_O"):
            out[p + name] = (h,)
        out[p + "mlp.W_in"] = (full, m)
        out[p + "mlp.b_in"] = (m,)
        out[p + "mlp.W_out"] = (m,)
    return out


@torch.no_grad()
def insert_model(big: HookedTransformer, small: HookedTransformer) -> dict[str, tuple[slice, ...]]:
    slices = insert_slices(small.spec, big.spec)
    params = dict(big.named_parameters())
    for name, tensor in small.state_dict().items():
        if name in slices:
            params[name][slices[name]] = tensor.to(params[name].device, params[name].dtype)
    return slices


# ---------------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainResult:
    model: HookedTransformer
    history: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None


def _optimizer(model: HookedTransformer, cfg: TrainConfig, aux: AuxHead | None = None) -> torch.optim.AdamW:
    matrices = [p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1].startswith("W_")]
    others = [p for n, p in model.named_parameters() if not n.rsplit(".", 1)[-1].startswith("W_")]
    groups = [{"params": matrices, "weight_decay": cfg.weight_decay}, {"params": others, "weight_decay": 0.0}]
    if aux is not None:  # a group of its own, so the model's groups are those of a run without it
        groups.append({"params": list(aux.parameters()), "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def _trained_params(model: HookedTransformer, aux: AuxHead | None) -> dict[str, torch.nn.Parameter]:
    """Every trained parameter by its state-file name: the model's as they are, the aux head's under `aux.`."""
    params = dict(model.named_parameters())
    if aux is not None:
        params.update({f"aux.{n}": p for n, p in aux.named_parameters()})
    return params


def _heldout_mul(spec: ModelSpec, cfg: TrainConfig) -> QuestionBatch | None:
    """Uniform full-length MUL questions for the per-digit curve; a seed stream of their own."""
    if "mul" not in qtype_mix(spec):
        return None
    return uniform(spec.n_digits, cfg.eval_questions, np.random.default_rng([spec.seed, 2]), qtypes={"mul": 1.0})


def _heldout(spec: ModelSpec, cfg: TrainConfig) -> QuestionBatch:
    # Its own seed stream, so evaluation never shifts the training data.
    rng = np.random.default_rng([spec.seed, 1])
    mix = qtype_mix(spec)
    return QuestionBatch.concat([
        uniform(spec.n_digits, cfg.eval_questions, rng, qtypes=mix),
        enriched(spec.n_digits, cfg.eval_questions, rng, qtypes=mix, cascade=1.0),
    ])


def _save_state(out: Path, model, opt, rng: np.random.Generator, step: int, history: dict, cfg, spec,
                aux: AuxHead | None = None) -> None:
    """One atomic file holds everything a resume needs: weights, AdamW moments, data RNG, history (and the
    aux head's weights, which only this file holds)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if aux is not None:
        tensors.update({f"aux.{k}": v.detach().cpu().contiguous() for k, v in aux.state_dict().items()})
    names = {id(p): n for n, p in _trained_params(model, aux).items()}
    adam_steps = {}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p)
            if st:
                n = names[id(p)]
                tensors[f"exp_avg.{n}"] = st["exp_avg"].detach().cpu().contiguous()
                tensors[f"exp_avg_sq.{n}"] = st["exp_avg_sq"].detach().cpu().contiguous()
                adam_steps[n] = float(st["step"])
    meta = {"step": step, "rng": rng.bit_generator.state, "config": cfg.to_dict(), "spec": spec.to_dict(),
            "adam_steps": adam_steps}
    metadata = {"meta": json.dumps(meta, default=int), "history": json.dumps(history)}
    write_atomic(out / STATE_FILE, safetensors_canonical(tensors, metadata))
    write_atomic(out / HISTORY_FILE, (json.dumps(history) + "\n").encode())


def _load_state(out: Path, model, opt, spec: ModelSpec, cfg: TrainConfig, aux: AuxHead | None = None):
    path = out / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"nothing to resume in '{out}': no {STATE_FILE}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta, history = json.loads(metadata["meta"]), json.loads(metadata["history"])
    except Exception as exc:  # a corrupt or foreign file
        raise CheckpointError(f"cannot resume from '{path}': {type(exc).__name__}: {exc}") from None
    if meta["spec"] != spec.to_dict() or {**_CONFIG_DEFAULTS, **meta["config"]} != cfg.to_dict():
        raise CheckpointError(f"cannot resume from '{out}': it was trained with another spec or config")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if aux is not None:
        aux.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("aux.")})
    params = _trained_params(model, aux)
    for n, steps in meta["adam_steps"].items():
        p = params[n]
        opt.state[p] = {"step": torch.tensor(steps), "exp_avg": tensors[f"exp_avg.{n}"].to(p.device),
                        "exp_avg_sq": tensors[f"exp_avg_sq.{n}"].to(p.device)}
    rng = np.random.default_rng()
    rng.bit_generator.state = meta["rng"]
    return meta["step"], rng, history


def train(
    spec: ModelSpec,
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    device: str = "cpu",
    resume: bool = False,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train `spec` with `cfg`; with `out_dir`, checkpoint every `cfg.checkpoint_every` steps and at the end.

    On CUDA the run uses PyTorch's deterministic algorithms (and cuBLAS's fixed workspace), so a seed gives the
    same weights on every run on the same GPU and software; CPU and GPU runs of a seed still differ (other
    kernels, other rounding)."""
    with _deterministic(device):
        return _train(spec, cfg, out_dir, device=device, resume=resume, progress=progress)


@contextlib.contextmanager
def _deterministic(device: str):
    """Deterministic kernels while training on CUDA; the caller's setting is restored after."""
    if not str(device).startswith("cuda"):
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS first starts in the process
    before, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn)


def _machine(device: str) -> str:
    text = f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}"
    if str(device).startswith("cuda"):
        text += f", {torch.cuda.get_device_name(torch.device(device))} (CUDA {torch.version.cuda}, deterministic)"
    return text


def _train(
    spec: ModelSpec,
    cfg: TrainConfig,
    out_dir: str | Path | None,
    *,
    device: str,
    resume: bool,
    progress: Callable[[int, dict[str, float]], None] | None,
) -> TrainResult:
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    model = HookedTransformer(spec, device=device)
    inserted: dict[str, tuple[slice, ...]] = {}
    small = None
    if cfg.insert_from:
        small = load_checkpoint(cfg.insert_from, device=device).model
        inserted = insert_model(model, small)
        if cfg.insert_freeze:
            _freeze(model, inserted)
    if cfg.init_from:
        start = load_checkpoint(cfg.init_from, device=device).model
        if start.spec.layout != spec.layout or start.state_dict().keys() != model.state_dict().keys():
            raise ArithLensError(f"--init-from {cfg.init_from}: its shape differs from {spec.name}")
        model.load_state_dict(start.state_dict())
    aux = AuxHead(spec, cfg.aux_layer, seed=spec.seed + 1).to(device) if cfg.aux_loss > 0 else None
    opt = _optimizer(model, cfg, aux)
    mix = qtype_mix(spec)
    heldout, heldout_mul = _heldout(spec, cfg), _heldout_mul(spec, cfg)
    history: dict[str, Any] = {"loss": [], "loss_by_position": [], "loss_by_qtype": {k: [] for k in mix},
                               "eval": [], "answer_names": [f"A{k}" for k in range(spec.n_digits + 1, -1, -1)]}
    step = 0
    rng = np.random.default_rng(spec.seed if cfg.data_seed is None else cfg.data_seed)
    if resume:
        if out is None:
            raise ArithLensError("--resume needs --out")
        step, rng, history = _load_state(out, model, opt, spec, cfg, aux)
    started = time.perf_counter()
    elapsed_before = history.get("seconds", 0.0)
    model.train()
    while step < cfg.steps:
        batch = enriched(spec.n_digits, cfg.batch_size, rng, qtypes=mix, cascade=cfg.cascade, equal=cfg.equal,
                         shared_low=cfg.shared_low, near_cascade=cfg.near_cascade, shared_high=cfg.shared_high)
        if "mul" in mix and mul_operand_length(cfg, spec, step) < mul_operand_digits(spec.n_digits):
            batch = curriculum_batch(batch, mul_operand_length(cfg, spec, step), rng)
        tokens = batch.torch_tokens(device)
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        if aux is None:
            loss, nll = answer_loss(model, tokens)
            total = loss
        else:  # the history's loss stays the answer loss, comparable with runs without the aux head
            loss, nll, aux_mse = answer_and_aux_loss(model, aux, tokens, batch)
            history.setdefault("aux_loss", []).append(float(aux_mse.detach()))
            total = loss + cfg.aux_loss * aux_mse
        if not bool(torch.isfinite(total)):
            _diverged(out, step + 1, float(total.detach()), cfg)
        opt.zero_grad(set_to_none=True)
        total.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(list(_trained_params(model, aux).values()), cfg.grad_clip)
        opt.step()
        step += 1
        if small is not None and (cfg.insert_freeze or (cfg.insert_reset_every and step % cfg.insert_reset_every == 0)):
            insert_model(model, small)  # freeze: gradients are masked and weight decay is undone here
        history["loss"].append(float(loss.detach()))
        history["loss_by_position"].append([float(x) for x in nll.mean(0).cpu()])
        per_q = nll.mean(1).cpu().numpy()
        for name in mix:
            rows = batch.qtype == QType.parse(name)
            history["loss_by_qtype"][name].append(float(per_q[rows].mean()) if rows.any() else None)
        info = {"loss": float(loss.detach()), "lr": lr_at(cfg, step - 1)}
        if step % cfg.eval_every == 0 or step == cfg.steps:
            model.eval()
            wrong = count_wrong(model, heldout, device)
            history["eval"].append({"step": step, "wrong": wrong, "questions": len(heldout)})
            if heldout_mul is not None:
                history["eval"][-1]["mul_digits"] = digit_accuracy(model, heldout_mul, device)
            model.train()
            info["heldout_wrong"] = wrong
        history["seconds"] = elapsed_before + time.perf_counter() - started
        if out is not None and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            if not _finite_weights(model):  # a step can blow the weights up while its own loss was finite
                _diverged(out, step, float("nan"), cfg, what="weights")
            _save_state(out, model, opt, rng, step, history, cfg, spec, aux)
            if step < cfg.steps:  # a loadable snapshot while training runs
                save_checkpoint(model, spec, out, {"training": {"steps": step, "partial": True}})
        if progress is not None:
            progress(step, info)
    model.eval()
    if not _finite_weights(model):
        _diverged(out, step, float("nan"), cfg, what="weights")
    last = history["loss"][-5:]
    history["final_loss"] = history["loss"][-1] if history["loss"] else None
    history["avg_final_loss"] = float(np.mean(last)) if last else None
    if out is not None:
        summary = {"steps": step, "seconds": round(history["seconds"], 1), "final_loss": history["final_loss"],
                   "avg_final_loss": history["avg_final_loss"], "config": cfg.to_dict(),
                   "heldout": history["eval"][-1] if history["eval"] else None,
                   "machine": _machine(device),
                   "device": str(device)}
        save_checkpoint(model, spec, out, {"training": summary})
    return TrainResult(model=model, history=history, out_dir=out)


def _finite_weights(model: HookedTransformer) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _diverged(out: Path | None, step: int, loss: float, cfg: TrainConfig, what: str = "loss") -> None:
    """Stop: a non-finite loss (or weights) trains nothing more, and a model saved from it would be NaN."""
    kept = "nothing was saved"
    if out is not None and (out / STATE_FILE).is_file():
        try:
            with safe_open(str(out / STATE_FILE), framework="pt") as f:
                step_kept = json.loads(f.metadata()["meta"])["step"]
            kept = f"the last finite checkpoint (step {step_kept}) is kept in '{out}'"
        except Exception:  # an unreadable state file is reported by --resume, not here
            kept = f"the last checkpoint is kept in '{out}'"
    shown = "NaN or infinite" if what == "weights" else str(loss)
    raise TrainingDivergedError(f"training diverged at step {step}: the {what} became {shown} (lr {cfg.lr:g}); "
                                f"stopped, {kept}; train again with a lower --lr or a stronger grad_clip")


def _freeze(model: HookedTransformer, inserted: dict[str, tuple[slice, ...]]) -> None:
    """Real freezing: zero the gradient of every inserted slice, so Adam's moments for it stay zero.

    Decoupled weight decay would still shrink those weights; the loop re-copies them after each step."""
    params = dict(model.named_parameters())
    for name, sl in inserted.items():
        mask = torch.ones_like(params[name])
        mask[sl] = 0

        def hook(grad, mask=mask):
            return grad * mask

        params[name].register_hook(hook)
