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
    """A TL 4 native bridge for `cfg` holding `state` (HookedTransformer-format keys)."""
    from transformer_lens import TransformerBridge
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    bridge = TransformerBridge.boot_native(cfg, device=cfg.device, dtype=cfg.dtype, model_name=cfg.model_name)
    bridge.load_state_dict(convert_tl_checkpoint(dict(state), bridge.cfg), strict=True)
    if compatibility_mode:
        bridge.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    return bridge


def from_transformer_lens(source: Any, spec: ModelSpec | str | None = None) -> HookedTransformer:
    """Our model holding a copy of a TransformerLens model's weights, or of a state dict's.

    `source`: a TL 3.x `HookedTransformer`, a TL 4.x `TransformerBridge` (native or over a Hugging Face
    GPT-2), or a state dict (HookedTransformer keys `blocks.0.attn.W_Q`, or a native bridge's
    `blocks.0.attn.q.weight`, which needs `spec`: flat weights do not say how many heads; TL not needed).
    The spec is `spec` (a ModelSpec or a model name), else the cfg's `model_name` if it is one, else the shapes.
    """
    if isinstance(source, Mapping):
        return _from_state_dict(source, spec)
    if not hasattr(source, "cfg") or not callable(getattr(source, "state_dict", None)):
        raise ArithLensError(f"cannot read a {type(source).__name__} as a TransformerLens model or state dict")
    cfg = source.cfg
    is_bridge = _is_bridge(source)
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


def _is_bridge(source: Any) -> bool:
    try:  # TL 3.x has TransformerBridge too (beside HookedTransformer), 4.x only it
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:
        return False
    return isinstance(source, TransformerBridge)


def _from_state_dict(state: Mapping[str, Tensor], spec: ModelSpec | str | None) -> HookedTransformer:
    if "embed.weight" in state:  # a TL 4 bridge's own keys
        if spec is None:
            raise ArithLensError("a TransformerBridge state dict does not say how many heads the model has; "
                                 "give the model name (e.g. mix_d6_l3_h4_t10K_s372001)")
        n_heads = spec.n_heads if isinstance(spec, ModelSpec) else ModelSpec.parse(spec).n_heads
        state = hooked_state_dict(state, n_heads)
    if "embed.W_E" not in state:
        raise ArithLensError("state dict has neither 'embed.W_E' (HookedTransformer) nor 'embed.weight' "
                             "(TransformerBridge): not a TransformerLens state dict")
    weights = state["embed.W_E"]
    return model_from_state_dict(state, _spec(state, spec, None), device=weights.device, dtype=weights.dtype)


def is_bridge_state_dict(state: Mapping[str, Tensor]) -> bool:
    """Whether `state` has a TL 4 native bridge's keys (`blocks.0.attn.q.weight`), not HookedTransformer's."""
    return "embed.weight" in state and "embed.W_E" not in state


# A native bridge's key suffix -> (HookedTransformer's suffix, how its tensor becomes ours).
_FROM_BRIDGE = {
    "attn.q.weight": ("attn.W_Q", "heads_in"), "attn.k.weight": ("attn.W_K", "heads_in"),
    "attn.v.weight": ("attn.W_V", "heads_in"), "attn.o.weight": ("attn.W_O", "heads_out"),
    "attn.q.bias": ("attn.b_Q", "heads"), "attn.k.bias": ("attn.b_K", "heads"), "attn.v.bias": ("attn.b_V", "heads"),
    "attn.o.bias": ("attn.b_O", "same"), "mlp.in.weight": ("mlp.W_in", "transpose"), "mlp.in.bias": ("mlp.b_in", "same"),
    "mlp.out.weight": ("mlp.W_out", "transpose"), "mlp.out.bias": ("mlp.b_out", "same"),
    "embed.weight": ("embed.W_E", "same"), "pos_embed.weight": ("pos_embed.W_pos", "same"),
    "unembed.weight": ("unembed.W_U", "transpose"), "unembed.bias": ("unembed.b_U", "same"),
    **{f"{ln}.{kind}": (f"{ln}.{kind[0]}", "same") for ln in ("ln1", "ln2", "ln_final") for kind in ("weight", "bias")},
}  # fmt: skip


def hooked_state_dict(state: Mapping[str, Tensor], n_heads: int) -> dict[str, Tensor]:
    """A TL 4 native bridge's state dict (`bridge.state_dict()`) in HookedTransformer's layout, without TL:
    the inverse of TL's `convert_tl_checkpoint` for the GPT-2 style models we make."""
    out = {}
    for key, t in state.items():
        suffix = next((s for s in _FROM_BRIDGE if key == s or key.endswith("." + s)), None)
        if suffix is None:
            raise ArithLensError(f"TransformerBridge state dict has key {key!r}, which arithlens models do not have")
        ours, how = _FROM_BRIDGE[suffix]
        if how.startswith("heads") and t.shape[-1 if how == "heads_out" else 0] % n_heads:
            raise ArithLensError(f"TransformerBridge tensor {key!r} of shape {tuple(t.shape)} does not split into "
                                 f"{n_heads} heads; is the model name right?")
        if how == "heads_in":  # (n_heads * d_head, d_model) -> (n_heads, d_model, d_head)
            t = t.reshape(n_heads, -1, t.shape[-1]).transpose(1, 2)
        elif how == "heads_out":  # (d_model, n_heads * d_head) -> (n_heads, d_head, d_model)
            t = t.reshape(t.shape[0], n_heads, -1).permute(1, 2, 0)
        elif how == "heads":  # (n_heads * d_head,) -> (n_heads, d_head)
            t = t.reshape(n_heads, -1)
        elif how == "transpose":
            t = t.T
        out[key[: len(key) - len(suffix)] + ours] = t.contiguous()
    return out


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
