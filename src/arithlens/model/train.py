"""Training: one function that reads top to bottom: data, model, optimiser, loop, log, checkpoint.

AdamW with linear warm-up and cosine decay; enriched questions from the task layer with the spec's
per-qtype mix; periodic atomic checkpoints holding everything a bit-identical resume needs (weights,
AdamW moments, the data generator's state, the loss history); insert mode from a smaller model.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open

from arithlens.arith import QType, QuestionBatch, enriched, uniform
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "training config") -> TrainConfig:
        """A config from JSON-like data, every field checked for type and range (one-line errors naming it)."""
        from arithlens.validate import train_config

        return cls(**train_config(data, where))


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
    logits = model(tokens, logit_positions=positions)  # (batch, n_answer, d_vocab)
    targets = tokens[:, positions.start + 1 : positions.stop + 1]
    logp = F.log_softmax(logits.double(), dim=-1)
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (batch, n_answer)
    return nll.mean(), nll.detach()


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


def _optimizer(model: HookedTransformer, cfg: TrainConfig) -> torch.optim.AdamW:
    matrices = [p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1].startswith("W_")]
    others = [p for n, p in model.named_parameters() if not n.rsplit(".", 1)[-1].startswith("W_")]
    return torch.optim.AdamW(
        [{"params": matrices, "weight_decay": cfg.weight_decay}, {"params": others, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
    )


def _heldout(spec: ModelSpec, cfg: TrainConfig) -> QuestionBatch:
    # Its own seed stream, so evaluation never shifts the training data.
    rng = np.random.default_rng([spec.seed, 1])
    mix = qtype_mix(spec)
    return QuestionBatch.concat([
        uniform(spec.n_digits, cfg.eval_questions, rng, qtypes=mix),
        enriched(spec.n_digits, cfg.eval_questions, rng, qtypes=mix, cascade=1.0),
    ])


def _save_state(out: Path, model, opt, rng: np.random.Generator, step: int, history: dict, cfg, spec) -> None:
    """One atomic file holds everything a resume needs: weights, AdamW moments, data RNG, history."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
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


def _load_state(out: Path, model, opt, spec: ModelSpec, cfg: TrainConfig):
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
    if meta["spec"] != spec.to_dict() or meta["config"] != cfg.to_dict():
        raise CheckpointError(f"cannot resume from '{out}': it was trained with another spec or config")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    params = dict(model.named_parameters())
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
    opt = _optimizer(model, cfg)
    mix = qtype_mix(spec)
    heldout = _heldout(spec, cfg)
    history: dict[str, Any] = {"loss": [], "loss_by_position": [], "loss_by_qtype": {k: [] for k in mix},
                               "eval": [], "answer_names": [f"A{k}" for k in range(spec.n_digits + 1, -1, -1)]}
    step = 0
    rng = np.random.default_rng(spec.seed if cfg.data_seed is None else cfg.data_seed)
    if resume:
        if out is None:
            raise ArithLensError("--resume needs --out")
        step, rng, history = _load_state(out, model, opt, spec, cfg)
    started = time.perf_counter()
    elapsed_before = history.get("seconds", 0.0)
    model.train()
    while step < cfg.steps:
        batch = enriched(spec.n_digits, cfg.batch_size, rng, qtypes=mix, cascade=cfg.cascade, equal=cfg.equal,
                         shared_low=cfg.shared_low, near_cascade=cfg.near_cascade, shared_high=cfg.shared_high)
        tokens = batch.torch_tokens(device)
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        loss, nll = answer_loss(model, tokens)
        if not bool(torch.isfinite(loss)):
            _diverged(out, step + 1, float(loss.detach()), cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
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
            model.train()
            history["eval"].append({"step": step, "wrong": wrong, "questions": len(heldout)})
            info["heldout_wrong"] = wrong
        history["seconds"] = elapsed_before + time.perf_counter() - started
        if out is not None and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            if not _finite_weights(model):  # a step can blow the weights up while its own loss was finite
                _diverged(out, step, float("nan"), cfg, what="weights")
            _save_state(out, model, opt, rng, step, history, cfg, spec)
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
