"""Optional bridge to TransformerLens: our weights as a TL model and back, for TL 3.x and 4.x.

3.x gets a `HookedTransformer`; 4.x (which removed it) gets a `TransformerBridge` over TL's own native
model (`TransformerBridge.boot_native`, TL's path for HookedTransformer-format weights; no Hugging Face
model, no download). Needs the `tl` extra; TransformerLens is imported only when a function here runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import torch
from torch import Tensor

from arithlens.errors import ArithLensError
from arithlens.model.checkpoint import model_from_state_dict, spec_from_state_dict
from arithlens.model.spec import ModelSpec
from arithlens.model.transformer import HookedTransformer

SUPPORTED_MAJORS = (3, 4)
INSTALL_HINT = "pip install 'arithlens[tl]' (transformer-lens>=3,<5)"
# The cfg every arithlens model has; a TL model that differs computes something else.
REQUIRED_CFG = {
    "normalization_type": "LN",
    "positional_embedding_type": "standard",
    "attention_dir": "causal",
    "attn_only": False,
    "use_attn_scale": True,
}


def tl_major() -> int:
    """The installed TransformerLens major version (3 or 4); an ArithLensError if it is missing or another."""
    try:
        version = metadata.version("transformer-lens")
    except metadata.PackageNotFoundError:
        raise ArithLensError(f"TransformerLens is not installed: {INSTALL_HINT}") from None
    major = int(version.split(".")[0])
    if major not in SUPPORTED_MAJORS:
        raise ArithLensError(f"transformer-lens {version} is not supported (3.x or 4.x are): {INSTALL_HINT}")
    return major


def tl_config(spec: ModelSpec, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Any:
    """The TL config of `spec` (GPT-2 style, LayerNorm, ReLU, no BOS): 3.x `HookedTransformerConfig`,
    4.x `TransformerBridgeConfig`."""
    major = tl_major()
    import transformer_lens

    config_class = transformer_lens.HookedTransformerConfig if major == 3 else transformer_lens.TransformerBridgeConfig
    return config_class(
        n_layers=spec.n_layers,
        n_heads=spec.n_heads,
        d_model=spec.d_model,
        d_head=spec.d_head,
        d_mlp=spec.d_mlp,
        act_fn=spec.act_fn,
        normalization_type="LN",
        positional_embedding_type="standard",
        d_vocab=spec.d_vocab,
        d_vocab_out=spec.d_vocab,
        n_ctx=spec.n_ctx,
        default_prepend_bos=False,
        seed=spec.seed,
        device=str(device),
        dtype=dtype,
        model_name=spec.name,
    )


def to_transformer_lens(model: HookedTransformer, *, compatibility_mode: bool = True) -> Any:
    """A TransformerLens model holding a copy of `model`'s weights, on the same device and dtype.

    TL 3.x: a `HookedTransformer`. TL 4.x: a `TransformerBridge`; with `compatibility_mode` (the default)
    its legacy aliases are on via `enable_compatibility_mode(no_processing=True)`, which leaves the weights
    as they are (TL's default processing would fold LayerNorm and centre weights: other logits).
    """
    dtype = model.embed.W_E.dtype
    cfg = tl_config(model.spec, device=model.device, dtype=dtype)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if tl_major() == 3:
        import transformer_lens

        with warnings.catch_warnings():  # 3.x warns that HookedTransformer leaves in 4.0
            warnings.simplefilter("ignore", DeprecationWarning)
            tl_model = transformer_lens.HookedTransformer(cfg)
        full = tl_model.state_dict()  # keeps TL's own buffers (attn.IGNORE, attn.mask)
        full.update(state)
        tl_model.load_state_dict(full, strict=True)
        return tl_model
    return _bridge(cfg, state, compatibility_mode=compatibility_mode)


def _bridge(cfg: Any, state: Mapping[str, Tensor], *, compatibility_mode: bool) -> Any:
    """A TL 4 native bridge for `cfg` holding `state` (HookedTransformer-format or bridge-format keys)."""
    from transformer_lens import TransformerBridge
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    bridge = TransformerBridge.boot_native(cfg, device=cfg.device, dtype=cfg.dtype, model_name=cfg.model_name)
    if "embed.W_E" in state:
        state = convert_tl_checkpoint(dict(state), bridge.cfg)
    try:
        bridge.load_state_dict(dict(state), strict=True)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()
        raise ArithLensError(f"the weights do not fit {cfg.model_name}: {first[-1].strip()}") from None
    if compatibility_mode:
        bridge.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    return bridge


def from_transformer_lens(source: Any, spec: ModelSpec | str | None = None) -> HookedTransformer:
    """Our model holding a copy of a TransformerLens model's weights, or of a state dict's.

    `source`: a TL 3.x `HookedTransformer`, a TL 4.x `TransformerBridge` (native or over a Hugging Face
    GPT-2), or a state dict (HookedTransformer keys `blocks.0.attn.W_Q`, or a native bridge's
    `blocks.0.attn.q.weight`, which needs TL 4 and `spec`: flat weights do not say how many heads).
    The spec is `spec` (a ModelSpec or a model name), else the cfg's `model_name` if it is one, else the shapes.
    """
    if isinstance(source, Mapping):
        return _from_state_dict(source, spec)
    if not hasattr(source, "cfg") or not callable(getattr(source, "state_dict", None)):
        raise ArithLensError(f"cannot read a {type(source).__name__} as a TransformerLens model or state dict")
    cfg = source.cfg
    is_bridge = callable(getattr(source, "get_params", None))
    for key, want in REQUIRED_CFG.items():
        got = getattr(cfg, key, want)
        if got != want:
            raise ArithLensError(f"TransformerLens model has {key}={got!r}; arithlens models need {want!r}")
    if is_bridge and getattr(source, "_weights_processed", False):
        raise ArithLensError("this TransformerBridge's weights were processed (LayerNorm folded, weights centred) "
                             "by enable_compatibility_mode(); convert the bridge before that, or call it with "
                             "no_processing=True")
    # A bridge's get_params() gives HookedTransformer-format weights whatever model it wraps.
    state = source.get_params() if is_bridge else source.state_dict()
    spec = _spec(state, spec, getattr(cfg, "model_name", None))
    if cfg.act_fn != spec.act_fn:
        raise ArithLensError(f"TransformerLens model has act_fn={cfg.act_fn!r}; the spec says {spec.act_fn!r}")
    device = next(iter(state.values())).device
    return model_from_state_dict(state, spec, device=device, dtype=state["embed.W_E"].dtype)


def _from_state_dict(state: Mapping[str, Tensor], spec: ModelSpec | str | None) -> HookedTransformer:
    if "embed.W_E" in state:  # HookedTransformer format: ours
        spec = _spec(state, spec, None)
        return model_from_state_dict(state, spec, device=state["embed.W_E"].device, dtype=state["embed.W_E"].dtype)
    if "embed.weight" not in state:
        raise ArithLensError("state dict has neither 'embed.W_E' (HookedTransformer) nor 'embed.weight' "
                             "(TransformerBridge): not a TransformerLens state dict")
    if spec is None:
        raise ArithLensError("a TransformerBridge state dict does not say how many heads the model has; "
                             "pass the model name as spec (e.g. mix_d6_l3_h4_t10K_s372001)")
    if tl_major() != 4:
        raise ArithLensError(f"reading a TransformerBridge state dict needs transformer-lens 4.x: {INSTALL_HINT}")
    d_vocab, d_model = state["embed.weight"].shape
    d_mlp = state["blocks.0.mlp.in.weight"].shape[0]
    if isinstance(spec, str):
        n_heads = ModelSpec.parse(spec).n_heads
        spec = ModelSpec.parse(spec, d_model=d_model, d_head=state["blocks.0.attn.q.weight"].shape[0] // n_heads,
                               d_mlp=d_mlp)
    weights = state["embed.weight"]
    bridge = _bridge(tl_config(spec, device=weights.device, dtype=weights.dtype), state, compatibility_mode=False)
    return from_transformer_lens(bridge, spec)


def _spec(state: Mapping[str, Tensor], spec: ModelSpec | str | None, model_name: str | None) -> ModelSpec:
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, str):
        return spec_from_state_dict(state, name=spec)
    if model_name:
        try:
            return spec_from_state_dict(state, name=model_name)
        except ArithLensError:
            pass
    return spec_from_state_dict(state)
