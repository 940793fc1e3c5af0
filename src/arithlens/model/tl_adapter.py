"""Optional bridge to TransformerLens 3.x: the same weights as a TL `HookedTransformer`, and back.

Needs the `tl` extra (`pip install 'arithlens[tl]'`, i.e. transformer-lens>=3,<4); TransformerLens is
imported only when a function here is called.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from arithlens.errors import ArithLensError
from arithlens.model.checkpoint import model_from_state_dict, spec_from_state_dict
from arithlens.model.spec import ModelSpec
from arithlens.model.transformer import HookedTransformer


def _transformer_lens() -> Any:
    try:
        import transformer_lens
    except ImportError:
        raise ArithLensError(
            "TransformerLens is not installed: pip install 'arithlens[tl]' (transformer-lens>=3,<4)"
        ) from None
    if not hasattr(transformer_lens, "HookedTransformer"):
        version = getattr(transformer_lens, "__version__", "?")
        raise ArithLensError(f"transformer-lens {version} has no HookedTransformer (removed in 4.x); install >=3,<4")
    return transformer_lens


def tl_config(spec: ModelSpec, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Any:
    """The `HookedTransformerConfig` of the reference models (GPT-2 style, LayerNorm, ReLU, no BOS) for `spec`."""
    tl = _transformer_lens()
    return tl.HookedTransformerConfig(
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
    )


def to_transformer_lens(model: HookedTransformer) -> Any:
    """A TransformerLens `HookedTransformer` holding a copy of `model`'s weights, on the same device."""
    tl = _transformer_lens()
    dtype = model.embed.W_E.dtype
    with warnings.catch_warnings():  # 3.x warns that HookedTransformer leaves in 4.0: we pin <4
        warnings.simplefilter("ignore", DeprecationWarning)
        tl_model = tl.HookedTransformer(tl_config(model.spec, device=model.device, dtype=dtype))
    state = tl_model.state_dict()  # keeps TL's own buffers (attn.IGNORE, attn.mask)
    state.update({k: v.detach().clone() for k, v in model.state_dict().items()})
    tl_model.load_state_dict(state, strict=True)
    return tl_model


def from_transformer_lens(tl_model: Any, spec: ModelSpec | str | None = None) -> HookedTransformer:
    """Our model holding a copy of a TL `HookedTransformer`'s weights.

    The spec is `spec` (a ModelSpec or a model name), else the cfg's `model_name` if it is one, else the shapes.
    """
    cfg = tl_model.cfg
    wrong = {
        "normalization_type": (cfg.normalization_type, "LN"),
        "positional_embedding_type": (cfg.positional_embedding_type, "standard"),
        "attention_dir": (cfg.attention_dir, "causal"),
        "attn_only": (cfg.attn_only, False),
        "use_attn_scale": (cfg.use_attn_scale, True),
    }
    for key, (got, want) in wrong.items():
        if got != want:
            raise ArithLensError(f"TransformerLens model has {key}={got!r}; arithlens models need {want!r}")
    state = tl_model.state_dict()
    if isinstance(spec, str):
        spec = spec_from_state_dict(state, name=spec)
    elif spec is None:
        try:
            spec = spec_from_state_dict(state, name=cfg.model_name)
        except ArithLensError:
            spec = spec_from_state_dict(state)
    if cfg.act_fn != spec.act_fn:
        raise ArithLensError(f"TransformerLens model has act_fn={cfg.act_fn!r}; the spec says {spec.act_fn!r}")
    return model_from_state_dict(state, spec, device=cfg.device, dtype=cfg.dtype)
