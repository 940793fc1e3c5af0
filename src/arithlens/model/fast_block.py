"""The fast kernels: one transformer block's arithmetic with nothing hooked in it, without gradients or autocast
(fused bias and ReLU, the residual added inside the matmul, in place where allowed). The model takes this
path for a block only when nothing is hooked or cached in it (`HookedTransformer.fast_kernels` turns it off);
`tests/test_transformer.py` keeps it equal to the hooked path."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from arithlens.model.transformer import TransformerBlock

LN_EPS = 1e-5  # LayerNorm epsilon, TransformerLens's default


def fast_ok(x: Tensor) -> bool:
    """Whether the in-place fast path may run: no gradients wanted, no autocast."""
    return not torch.is_grad_enabled() and not torch.is_autocast_enabled(x.device.type)


def _linear(x: Tensor, weight: Tensor, bias: Tensor, relu: bool = False) -> Tensor:
    """x @ weight.T + bias, then ReLU if asked. On a CPU in fp32 with at least ONEDNN_MIN_ROWS rows, one oneDNN
    call with the bias and ReLU fused (measured at 1,344-2,688 rows: 6-13% faster than a matmul plus the two
    passes); with fewer rows its per-call set-up costs more than it saves (20 rows: 1.8x slower)."""
    global _ONEDNN
    if _ONEDNN and x.shape[0] >= ONEDNN_MIN_ROWS and x.device.type == "cpu" and x.dtype == torch.float32:
        try:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu" if relu else "none", [], "")
        except (AttributeError, RuntimeError, NotImplementedError):  # an internal op: fall back for good
            _ONEDNN = False
    out = torch.mm(x, weight.t()).add_(bias)
    return out.relu_() if relu else out


_ONEDNN = torch.backends.mkldnn.is_available()
ONEDNN_MIN_ROWS = 1024


def fast_block(
    block: TransformerBlock,
    resid: Tensor,
    positions: range,
    kv_prefix: tuple[Tensor, Tensor] | None = None,
    *,
    out: slice | None = None,
    qkv: tuple[Tensor, Tensor, Tensor] | None = None,
    owned: bool = False,
    cache: dict[str, Tensor] | None = None,
) -> Tensor:
    """Block `block` with nothing hooked in it, without gradients or autocast: `forward`'s arithmetic with fewer
    memory passes (fused bias and ReLU, the residual added inside the matmul, in place where `owned` says
    `resid` may be overwritten).

    `out`: a slice of `positions`' indices; the queries, the MLP and the result are computed there only (keys
    and values at every position). `qkv`: this layer's q, k, v (B, T, H, d_head) at `positions`, when
    `resid` is the residual they were computed from: LayerNorm 1 and the projections are skipped. `cache`
    receives this layer's hook_k and hook_v when given."""
    a, B, T, D = block.attn, *resid.shape
    H, dh = a.n_heads, a.d_head
    if qkv is None:
        x = F.layer_norm(resid, (D,), block.ln1.w, block.ln1.b, LN_EPS).view(B * T, D)
        w_qkv = torch.cat([a.W_Q, a.W_K, a.W_V]).transpose(1, 2).reshape(3 * H * dh, D)  # (out, in)
        q, k, v = _linear(x, w_qkv, torch.cat([a.b_Q, a.b_K, a.b_V]).view(3 * H * dh)).view(B, T, 3 * H, dh).split(
            H, dim=2)  # each (B, T, H, dh)
    else:
        q, k, v = qkv
    if cache is not None:
        cache[a.hook_k], cache[a.hook_v] = k, v
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, dh)
    queries = positions
    if out is not None:
        qh, resid, queries = qh[:, :, out], resid[:, out], positions[out]
    if kv_prefix is None and out is None:
        zh = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True)
    else:
        if kv_prefix is not None:
            kh = torch.cat([kv_prefix[0].transpose(1, 2).expand(B, -1, -1, -1), kh], dim=2)  # (B, H, Tk, dh)
            vh = torch.cat([kv_prefix[1].transpose(1, 2).expand(B, -1, -1, -1), vh], dim=2)
        first_key = 0 if kv_prefix is not None else positions.start
        keys = torch.arange(first_key, first_key + kh.shape[2], device=resid.device)
        mask = keys[None, :] <= torch.tensor(queries, device=resid.device)[:, None]
        zh = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
    T = resid.shape[1]
    z = zh.transpose(1, 2).reshape(B * T, H * dh)
    if owned and resid.is_contiguous():
        flat = resid.view(B * T, D).addmm_(z, a.W_O.reshape(H * dh, D))
    else:
        flat = torch.addmm(resid.reshape(B * T, D), z, a.W_O.reshape(H * dh, D))
    flat.add_(a.b_O)
    x = F.layer_norm(flat, (D,), block.ln2.w, block.ln2.b, LN_EPS)
    hidden = _linear(x, block.mlp.W_in.t(), block.mlp.b_in, relu=True)  # (B*T, d_mlp)
    flat.addmm_(hidden, block.mlp.W_out).add_(block.mlp.b_out)
    return flat.view(B, T, D)
