"""Sparse autoencoders (TopK, BatchTopK, L1-ReLU) in plain torch, their seeded training, and SAELens's on-disk form.

Parameter names, shapes and encodings are SAELens's (`W_enc` (d_in, d_sae), `W_dec` (d_sae, d_in), `b_enc`,
`b_dec`, and `threshold` for a BatchTopK dictionary, which SAELens stores as JumpReLU), so a saved dictionary
(`cfg.json` + `sae_weights.safetensors`) loads with `sae_lens.SAE.load_from_disk` and encodes the same.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from arithlens.errors import ArithLensError

ARCHS = ("topk", "batchtopk", "l1")
TRAINERS = ("arithlens", "saelens")
# SAELens's architecture name for each of ours: a BatchTopK dictionary is a JumpReLU one at inference
SAELENS_ARCH = {"topk": "topk", "batchtopk": "jumprelu", "l1": "standard"}
WEIGHTS_FILE, CFG_FILE = "sae_weights.safetensors", "cfg.json"
DEAD_STEPS = 200  # TopK / BatchTopK: a feature silent this many steps gets the auxiliary (AuxK) loss ...
AUX_COEF = 1 / 32  # ... at this weight (Gao et al. 2024's choices: k_aux = d_in / 2, 1/32)


@dataclass(frozen=True)
class TrainOptions:
    """How a dictionary is trained: its size (`size` features), sparsity (`k` for TopK/BatchTopK, `l1` for L1),
    Adam at `lr` over `steps` minibatches of `batch` rows drawn (seeded) from the activations."""

    arch: str = "topk"
    size: int = 128
    k: int = 4
    l1: float = 0.05
    steps: int = 3000
    batch: int = 256
    lr: float = 2e-3
    seed: int = 0
    trainer: str = "arithlens"  # or "saelens": SAELens's SAETrainer and training classes (the `sae` extra)

    def __post_init__(self) -> None:
        if self.trainer not in TRAINERS:
            raise ArithLensError(f"unknown trainer {self.trainer!r}; expected one of {', '.join(TRAINERS)}")
        if self.arch not in ARCHS:
            raise ArithLensError(f"unknown dictionary architecture {self.arch!r}; expected one of {', '.join(ARCHS)}")
        for name, low in (("size", 1), ("k", 1), ("steps", 1), ("batch", 1), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ArithLensError(f"dictionary {name} must be an integer >= {low}, not {value!r}")
        if self.k > self.size:
            raise ArithLensError(f"k ({self.k}) cannot exceed the dictionary size ({self.size})")
        for name in ("l1", "lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ArithLensError(f"dictionary {name} must be a finite number >= 0, not {value!r}")


class SparseAutoencoder(nn.Module):
    """x (batch, d_in) -> features f (batch, d_sae) -> x_hat = f @ W_dec + b_dec, SAELens's encodings:

    - topk: pre = (x - b_dec) @ W_enc + b_enc; keep each row's k largest, ReLU.
    - batchtopk (inference): JumpReLU, f = pre * (pre > threshold); in training the k * batch largest of the
      batch are kept and `threshold` tracks the smallest kept activation (SAELens's BatchTopK, one value
      for every feature).
    - l1: f = ReLU(pre); trained with an L1 penalty weighted by the decoder row norms.
    """

    def __init__(self, d_in: int, d_sae: int, arch: str = "topk", k: int = 4):
        super().__init__()
        if arch not in ARCHS:
            raise ArithLensError(f"unknown dictionary architecture {arch!r}; expected one of {', '.join(ARCHS)}")
        self.arch, self.k = arch, int(k)
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        if arch == "batchtopk":
            self.threshold = nn.Parameter(torch.zeros(d_sae), requires_grad=False)

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    def pre(self, x: Tensor) -> Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc  # (batch, d_sae)

    def encode(self, x: Tensor, *, training: bool = False) -> Tensor:
        return self.activate(self.pre(x), training=training)

    def activate(self, pre: Tensor, *, training: bool = False) -> Tensor:
        """Pre-activations (batch, d_sae) -> features, by the architecture's rule."""
        if self.arch == "l1":
            return torch.relu(pre)
        if self.arch == "topk":
            return _topk_rows(pre, self.k)
        if training:  # batchtopk: the k * batch largest over the whole batch
            flat = torch.relu(pre).flatten()
            keep = torch.topk(flat, min(self.k * len(pre), flat.numel()), sorted=False)
            out = torch.zeros_like(flat).scatter(0, keep.indices, keep.values)
            return out.view_as(pre)
        return pre * (pre > self.threshold)  # JumpReLU, as SAELens runs a BatchTopK dictionary

    def decode(self, f: Tensor) -> Tensor:
        return f @ self.W_dec + self.b_dec  # (batch, d_in)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


def _topk_rows(pre: Tensor, k: int) -> Tensor:
    top = torch.topk(pre, k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))


def train_dictionary(acts: np.ndarray | Tensor, options: TrainOptions,
                     progress: Callable[[int, int], None] | None = None) -> SparseAutoencoder:
    """A dictionary trained on `acts` (n, d_in); the same seed and activations give the same weights.

    Decoder rows start as random unit vectors, the encoder as their transpose and `b_dec` as the activations'
    geometric median (the usual start: where most rows sit when few features fire, so features grow out of
    the "nothing on" point rather than the mean); TopK decoder rows are kept at unit norm so the sparsity
    lives in `k` alone."""
    x = torch.as_tensor(np.asarray(acts), dtype=torch.float32)
    if x.ndim != 2 or len(x) < 2:
        raise ArithLensError(f"a dictionary trains on (n >= 2, d_in) activations, not shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ArithLensError("the activations hold NaN or infinite values")
    if options.trainer == "saelens":
        return _train_with_saelens(x, options)
    gen = torch.Generator().manual_seed(int(options.seed))
    sae = SparseAutoencoder(x.shape[1], options.size, options.arch, options.k)
    with torch.no_grad():
        w = torch.randn(options.size, x.shape[1], generator=gen)
        w /= w.norm(dim=1, keepdim=True)
        sae.W_dec.copy_(w)
        sae.W_enc.copy_(w.T)
        sae.b_dec.copy_(geometric_median(x))
    scale = float((x - x.mean(0)).pow(2).sum(1).mean().clamp_min(1e-12))  # losses in units of the variance
    opt = torch.optim.Adam([p for p in sae.parameters() if p.requires_grad], lr=options.lr)
    threshold = None  # batchtopk: one running threshold for all features, as SAELens keeps it
    idle = torch.zeros(options.size, dtype=torch.long)  # steps since each feature last fired
    k_aux = max(1, x.shape[1] // 2)
    for step in range(options.steps):
        rows = torch.randint(0, len(x), (min(options.batch, len(x)),), generator=gen)
        xb = x[rows]
        pre = sae.pre(xb)
        f = sae.activate(pre, training=True)
        err = (sae.decode(f) - xb).pow(2).sum(1).mean() / scale
        loss = err
        idle = torch.where((f > 0).any(0), 0, idle + 1)
        dead = idle > DEAD_STEPS
        if options.arch != "l1" and dead.any():
            # AuxK (Gao et al. 2024): the dead features' k_aux largest pre-activations model what the live ones
            # missed, so a dead feature gets a gradient towards the error and can come back
            resid = (xb - sae.decode(f)).detach()
            aux = _topk_rows(pre.masked_fill(~dead, -torch.inf), min(k_aux, int(dead.sum())))
            loss = loss + AUX_COEF * (aux @ sae.W_dec - resid).pow(2).sum(1).mean() / scale
        if options.arch == "l1":
            loss = err + options.l1 * (f * sae.W_dec.norm(dim=1)).sum(1).mean() / math.sqrt(scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if options.arch != "l1":
            _drop_parallel_gradient(sae.W_dec)
        opt.step()
        with torch.no_grad():
            if options.arch != "l1":
                sae.W_dec /= sae.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
            if options.arch == "batchtopk" and (f > 0).any():
                # SAELens's rule: a running average of the smallest activation the batch kept
                smallest = f[f > 0].min()
                threshold = smallest if threshold is None else 0.99 * threshold + 0.01 * smallest
        if progress is not None and (step + 1) % 100 == 0:
            progress(step + 1, options.steps)
    if options.arch == "batchtopk":
        with torch.no_grad():
            sae.threshold.fill_(0.0 if threshold is None else float(threshold))
    return sae.eval()


def _train_with_saelens(x: Tensor, options: TrainOptions) -> SparseAutoencoder:
    """SAELens's own trainer and training classes on our activations (an iterator of seeded minibatches), saved
    as SAELens saves an inference model and read back: the same architecture, SAELens's recipe (its
    initialisation, AuxK, decoder-norm rescaling, which is folded into the weights on loading)."""
    import contextlib
    import io
    import tempfile

    try:
        import sae_lens
        from sae_lens.config import LoggingConfig, SAETrainerConfig
    except ImportError:
        raise ArithLensError("the saelens trainer needs SAELens: pip install 'arithlens[sae]'") from None
    common = {"d_in": x.shape[1], "d_sae": options.size, "device": "cpu"}
    made = {"topk": lambda: sae_lens.TopKTrainingSAE(sae_lens.TopKTrainingSAEConfig(k=options.k, **common)),
            "batchtopk": lambda: sae_lens.BatchTopKTrainingSAE(sae_lens.BatchTopKTrainingSAEConfig(k=options.k,
                                                                                                  **common)),
            "l1": lambda: sae_lens.StandardTrainingSAE(sae_lens.StandardTrainingSAEConfig(
                l1_coefficient=options.l1, **common))}
    gen = torch.Generator().manual_seed(int(options.seed))

    def batches():
        while True:
            yield x[torch.randint(0, len(x), (options.batch,), generator=gen)]

    config = SAETrainerConfig(total_training_samples=options.batch * options.steps,
                              train_batch_size_samples=options.batch, lr=options.lr, lr_end=options.lr, device="cpu",
                              logger=LoggingConfig(log_to_wandb=False, eval_every_n_wandb_logs=2**31 - 1),
                              n_batches_for_norm_estimate=10)
    with torch.random.fork_rng(), contextlib.redirect_stderr(io.StringIO()):  # its progress bar would mix with ours
        torch.manual_seed(int(options.seed))  # SAELens initialises from torch's global generator
        trained = sae_lens.SAETrainer(cfg=config, sae=made[options.arch](), data_provider=batches()).fit()
    with tempfile.TemporaryDirectory() as tmp:
        trained.save_inference_model(tmp)
        return load_dictionary(tmp)[0]


def geometric_median(x: Tensor, iterations: int = 50) -> Tensor:
    """The point minimising the summed distance to the rows of x (Weiszfeld's iterations from the mean)."""
    x = x.double()
    m = x.mean(0)
    for _ in range(iterations):
        w = 1.0 / (x - m).norm(dim=1).clamp_min(1e-9)  # (n,)
        new = (w[:, None] * x).sum(0) / w.sum()
        if (new - m).norm() <= 1e-7 * (1 + m.norm()):
            m = new
            break
        m = new
    return m.float()


def _drop_parallel_gradient(w_dec: nn.Parameter) -> None:
    """Keep unit-norm decoder rows on the sphere: remove the gradient along each row (as SAELens does)."""
    if w_dec.grad is not None:
        w_dec.grad -= (w_dec.grad * w_dec.data).sum(1, keepdim=True) * w_dec.data


def encode(sae: SparseAutoencoder, acts: np.ndarray | Tensor, chunk: int = 8192) -> np.ndarray:
    """Feature activations (n, d_sae) float64 at inference."""
    x = torch.as_tensor(np.asarray(acts), dtype=torch.float32)
    with torch.inference_mode():
        parts = [sae.encode(x[i:i + chunk]).double() for i in range(0, len(x), chunk)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, sae.d_sae))


# ---------------------------------------------------------------------------------------------------
# SAELens's on-disk form


def saelens_cfg(sae: SparseAutoencoder, hook_name: str, model_name: str, extra: dict | None = None) -> dict:
    """`cfg.json` as SAELens 6 writes it for this architecture (its `SAE.load_from_disk` reads it)."""
    cfg = {
        "architecture": SAELENS_ARCH[sae.arch], "d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": "float32",
        "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"model_name": model_name, "hook_name": hook_name, "hook_head_index": None,
                     "prepend_bos": False, "context_size": None, "dataset_path": None,
                     "sae_lens_training_version": None, "model_class_name": "HookedTransformer",
                     "hook_name_out": None, "model_from_pretrained_kwargs": {}},
    }
    if sae.arch == "topk":
        cfg["k"] = sae.k
        cfg["rescale_acts_by_decoder_norm"] = False
    cfg["arithlens"] = {"arch": sae.arch, "k": sae.k, **(extra or {})}
    return cfg


def save_dictionary(sae: SparseAutoencoder, directory: str | Path, *, hook_name: str, model_name: str,
                    extra: dict | None = None) -> list[Path]:
    """Write `cfg.json` and `sae_weights.safetensors` (SAELens's names) into `directory`; returns the paths.
    Callers writing a user's `--out` stage it first (io.OutputTarget); the files themselves are written whole."""
    from safetensors.torch import save_file

    from arithlens.io import write_atomic

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: p.detach().float().contiguous().clone() for name, p in sae.named_parameters()}
    weights = directory / WEIGHTS_FILE
    tmp = directory / f".{WEIGHTS_FILE}.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(weights)
    cfg = directory / CFG_FILE
    write_atomic(cfg, (json.dumps(saelens_cfg(sae, hook_name, model_name, extra), indent=1) + "\n").encode())
    return [cfg, weights]


def load_dictionary(directory: str | Path) -> tuple[SparseAutoencoder, dict]:
    """A dictionary saved by `save_dictionary` (or by SAELens, for the topk / jumprelu / standard
    architectures), and its cfg."""
    from safetensors.torch import load_file

    directory = Path(directory)
    try:
        cfg = json.loads((directory / CFG_FILE).read_text())
        tensors = load_file(str(directory / WEIGHTS_FILE))
    except (OSError, ValueError) as exc:
        raise ArithLensError(f"no readable dictionary in {directory}: {exc}") from None
    ours = cfg.get("arithlens", {})
    arch = ours.get("arch") or {v: k for k, v in SAELENS_ARCH.items()}.get(cfg.get("architecture"))
    if arch is None:
        raise ArithLensError(f"dictionary architecture {cfg.get('architecture')!r} is not topk, jumprelu or standard")
    if cfg.get("normalize_activations", "none") != "none" or not cfg.get("apply_b_dec_to_input", True):
        raise ArithLensError("only dictionaries without activation normalisation and with b_dec applied to the "
                             "input are read")
    sae = SparseAutoencoder(int(cfg["d_in"]), int(cfg["d_sae"]), arch, int(cfg.get("k", ours.get("k", 1))))
    missing = {name for name, _ in sae.named_parameters()} - set(tensors)
    if missing:
        raise ArithLensError(f"{directory / WEIGHTS_FILE} lacks {', '.join(sorted(missing))}")
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if tuple(tensors[name].shape) != tuple(p.shape):
                raise ArithLensError(f"{name} has shape {tuple(tensors[name].shape)}, cfg says {tuple(p.shape)}")
            p.copy_(tensors[name])
        if cfg.get("rescale_acts_by_decoder_norm"):
            # SAELens scales pre-activations by |W_dec[i]| and features by 1 / |W_dec[i]| on decoding: the same
            # map with the norms folded into W_enc, b_enc and unit decoder rows
            norm = sae.W_dec.norm(dim=1)
            sae.W_enc.mul_(norm)
            sae.b_enc.mul_(norm)
            sae.W_dec.div_(norm[:, None])
    return sae.eval(), cfg


def options_dict(options: TrainOptions) -> dict:
    return asdict(options)


__all__ = ["ARCHS", "SparseAutoencoder", "TrainOptions", "encode", "load_dictionary", "save_dictionary",
           "saelens_cfg", "train_dictionary"]
