"""The arithmetic transformer: GPT-2 style, with TransformerLens's parameter names and hook names.

Pre-LayerNorm blocks (centre, divide by sqrt(var + 1e-5), then w and b), ReLU MLP, learned positions,
causal attention scaled by 1/sqrt(d_head), no BOS. The state dict has exactly the keys and shapes of
TransformerLens's `HookedTransformer` (`embed.W_E`, `blocks.0.attn.W_Q` [n_heads, d_model, d_head], ...),
and every activation is offered under its TransformerLens hook name (`model.hook_names`).

Hooks live for one call (`run_with_hooks`, `run_with_cache`, `forward_from`) or one `with model.hooks(...)`
block; a hook function is called as `fn(activation, hook)` and returns a replacement or None, where
`hook.name` is the hook name and `hook.positions` the absolute token positions along the pos axis
(the query axis for `hook_attn_scores` / `hook_pattern`, whose key axis always starts at position 0).
A block with nothing hooked or cached in it runs the fast kernels of `fast_block.py` (fused attention, no per-head
result; the same values), unless `model.fast_kernels` is False; hook plumbing lives in `hook_points.py`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arithlens.errors import ArithLensError
from arithlens.model.fast_block import LN_EPS, fast_block, fast_ok
from arithlens.model.hook_points import (  # noqa: F401  (patch_*: importable from here, as before)
    Hook, HookFn, HookPoint, Names, _Run, _span, patch_head, patch_neuron, patch_pos,
)
from arithlens.model.spec import ModelSpec


def _site(run: _Run | None, name: str, x: Tensor, positions: Sequence[int]) -> Tensor:
    return x if run is None else run(name, x, positions)


def _wants(run: _Run | None, names: Iterable[str]) -> bool:
    return run is not None and not run.wanted.isdisjoint(names)


# ---------------------------------------------------------------------------------------------------
# Modules (attribute names = TransformerLens state-dict keys)


class Embed(nn.Module):
    def __init__(self, d_vocab: int, d_model: int):
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(d_vocab, d_model))


class PosEmbed(nn.Module):
    def __init__(self, n_ctx: int, d_model: int):
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(n_ctx, d_model))


class LayerNorm(nn.Module):
    def __init__(self, d_model: int, prefix: str):
        super().__init__()
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))
        self.hook_scale, self.hook_normalized = f"{prefix}hook_scale", f"{prefix}hook_normalized"

    def forward(self, x: Tensor, run: _Run | None, positions: Sequence[int]) -> Tensor:
        if not _wants(run, (self.hook_scale, self.hook_normalized)):
            return F.layer_norm(x, x.shape[-1:], self.w, self.b, LN_EPS)
        # TransformerLens's order: hook_normalized is before w and b.
        x = x - x.mean(-1, keepdim=True)  # (B, T, D)
        scale = _site(run, self.hook_scale, (x.pow(2).mean(-1, keepdim=True) + LN_EPS).sqrt(), positions)  # (B, T, 1)
        x = _site(run, self.hook_normalized, x / scale, positions)
        return x * self.w + self.b


class Attention(nn.Module):
    def __init__(self, n_heads: int, d_model: int, d_head: int, prefix: str):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_head
        # Registration order = TransformerLens's, so one seed draws the same weights as TL's init.
        self.W_Q = nn.Parameter(torch.empty(n_heads, d_model, d_head))
        self.W_O = nn.Parameter(torch.empty(n_heads, d_head, d_model))
        self.b_Q = nn.Parameter(torch.zeros(n_heads, d_head))
        self.b_O = nn.Parameter(torch.zeros(d_model))
        self.W_K = nn.Parameter(torch.empty(n_heads, d_model, d_head))
        self.W_V = nn.Parameter(torch.empty(n_heads, d_model, d_head))
        self.b_K = nn.Parameter(torch.zeros(n_heads, d_head))
        self.b_V = nn.Parameter(torch.zeros(n_heads, d_head))
        self.hook_q, self.hook_k, self.hook_v = prefix + "hook_q", prefix + "hook_k", prefix + "hook_v"
        self.hook_attn_scores, self.hook_pattern = prefix + "hook_attn_scores", prefix + "hook_pattern"
        self.hook_z, self.hook_result = prefix + "hook_z", prefix + "hook_result"

    def forward(
        self,
        x: Tensor,  # (B, T, D) normalised residual at query positions `positions`
        run: _Run | None,
        positions: range,
        kv_prefix: tuple[Tensor, Tensor] | None,  # keys, values of positions < positions.start: (B, P, H, d_head)
    ) -> Tensor:
        B, T, D = x.shape
        H, dh = self.n_heads, self.d_head
        # One matmul for q, k and v of every head.
        w_qkv = torch.cat([self.W_Q, self.W_K, self.W_V]).permute(1, 0, 2).reshape(D, 3 * H * dh)  # (D, 3*H*dh)
        b_qkv = torch.cat([self.b_Q, self.b_K, self.b_V]).reshape(3 * H * dh)
        qkv = torch.addmm(b_qkv, x.reshape(B * T, D), w_qkv).view(B, T, 3 * H, dh)
        q, k, v = qkv.split(H, dim=2)  # each (B, T, H, dh)
        q = _site(run, self.hook_q, q, positions)
        k = _site(run, self.hook_k, k, positions)
        v = _site(run, self.hook_v, v, positions)
        if kv_prefix is not None:
            k_pre, v_pre = kv_prefix
            k = torch.cat([k_pre.expand(B, -1, -1, -1), k], dim=1)  # (B, Tk, H, dh)
            v = torch.cat([v_pre.expand(B, -1, -1, -1), v], dim=1)
        qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T or Tk, dh)
        start = positions.start
        # Query at absolute position start+i sees keys 0..start+i.
        mask = None if start == 0 else torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
        if _wants(run, (self.hook_attn_scores, self.hook_pattern)):
            scores = qh @ kh.transpose(-1, -2) / math.sqrt(dh)  # (B, H, T, Tk)
            if mask is None:
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            scores = _site(run, self.hook_attn_scores, scores.masked_fill(~mask, float("-inf")), positions)
            pattern = scores.softmax(-1)
            pattern = _site(run, self.hook_pattern, torch.where(pattern.isnan(), 0.0, pattern), positions)
            zh = pattern @ vh  # (B, H, T, dh)
        else:
            zh = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, is_causal=mask is None)
        z = _site(run, self.hook_z, zh.transpose(1, 2), positions)  # (B, T, H, dh)
        if _wants(run, (self.hook_result,)):
            result = torch.einsum("bthe,hed->bthd", z, self.W_O)  # (B, T, H, D)
            return _site(run, self.hook_result, result, positions).sum(2) + self.b_O
        return torch.addmm(self.b_O, z.reshape(B * T, H * dh), self.W_O.reshape(H * dh, D)).view(B, T, D)


class MLP(nn.Module):
    def __init__(self, d_model: int, d_mlp: int, prefix: str):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(d_model, d_mlp))
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.empty(d_mlp, d_model))
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.hook_pre, self.hook_post = f"{prefix}hook_pre", f"{prefix}hook_post"

    def forward(self, x: Tensor, run: _Run | None, positions: Sequence[int]) -> Tensor:
        B, T, D = x.shape
        pre = torch.addmm(self.b_in, x.reshape(B * T, D), self.W_in).view(B, T, -1)  # (B, T, d_mlp)
        pre = _site(run, self.hook_pre, pre, positions)
        post = _site(run, self.hook_post, F.relu(pre), positions)  # (B, T, d_mlp)
        return torch.addmm(self.b_out, post.reshape(B * T, -1), self.W_out).view(B, T, D)


class TransformerBlock(nn.Module):
    def __init__(self, spec: ModelSpec, layer: int):
        super().__init__()
        p = f"blocks.{layer}."
        self.layer = layer
        self.ln1 = LayerNorm(spec.d_model, p + "ln1.")
        self.ln2 = LayerNorm(spec.d_model, p + "ln2.")  # before attn, as in TransformerLens
        self.attn = Attention(spec.n_heads, spec.d_model, spec.d_head, p + "attn.")
        self.mlp = MLP(spec.d_model, spec.d_mlp, p + "mlp.")
        self.hook_resid_pre, self.hook_attn_out, self.hook_resid_mid, self.hook_mlp_out, self.hook_resid_post = (
            p + n for n in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post")
        )

    def forward(
        self, resid: Tensor, run: _Run | None, positions: range, kv_prefix: tuple[Tensor, Tensor] | None
    ) -> Tensor:
        resid = _site(run, self.hook_resid_pre, resid, positions)  # (B, T, D)
        attn_out = self.attn(self.ln1(resid, run, positions), run, positions, kv_prefix)
        resid = _site(run, self.hook_resid_mid, resid + _site(run, self.hook_attn_out, attn_out, positions), positions)
        mlp_out = _site(run, self.hook_mlp_out, self.mlp(self.ln2(resid, run, positions), run, positions), positions)
        return _site(run, self.hook_resid_post, resid + mlp_out, positions)

    def fast(self, resid: Tensor, positions: range, kv_prefix: tuple[Tensor, Tensor] | None = None,
             **options) -> Tensor:
        """This block on the fast kernels (`model.fast_block.fast_block`): `forward`'s values, nothing hooked."""
        return fast_block(self, resid, positions, kv_prefix, **options)


class Unembed(nn.Module):
    def __init__(self, d_model: int, d_vocab: int):
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(d_model, d_vocab))
        self.b_U = nn.Parameter(torch.zeros(d_vocab))


# ---------------------------------------------------------------------------------------------------


class _HookContext(threading.local):
    """A model's open `with model.hooks(...)` blocks, one stack per thread; copied or pickled empty."""

    def __init__(self) -> None:
        self.stack: list[list[Hook]] = []

    def __reduce__(self):
        return _HookContext, ()

    def __deepcopy__(self, memo) -> _HookContext:
        return _HookContext()


class HookedTransformer(nn.Module):
    """The model. `HookedTransformer(spec, seed=..., device=..., dtype=...)`; `model(tokens)` -> logits.

    Weights start as TransformerLens's "gpt2" init: every `W_*` ~ N(0, (0.8 / sqrt(d_model))^2), biases 0,
    LayerNorm w 1, drawn on the CPU from `torch.Generator().manual_seed(seed)` (default `spec.seed`) in
    TL's parameter order: the same weights on every device, and the same as a TL `HookedTransformer`
    built on the CPU with that seed. `device="meta"` builds the shapes only (for loading a checkpoint
    without paying for an init).
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.spec = spec
        meta = device is not None and torch.device(device).type == "meta"
        with torch.device("meta" if meta else "cpu"):
            self.embed = Embed(spec.d_vocab, spec.d_model)
            self.pos_embed = PosEmbed(spec.n_ctx, spec.d_model)
            self.blocks = nn.ModuleList(TransformerBlock(spec, layer) for layer in range(spec.n_layers))
            self.ln_final = LayerNorm(spec.d_model, "ln_final.")
            self.unembed = Unembed(spec.d_model, spec.d_vocab)
        self._hook_context = _HookContext()  # `with model.hooks(...)` blocks, per thread
        # The one switch between the two paths: blocks with nothing hooked in them run `fast_block`'s kernels
        # (same values; tests/test_transformer.py); False runs every block through the hooked modules.
        self.fast_kernels = True
        self._layer_names = [frozenset(self._block_hook_names(layer)) for layer in range(spec.n_layers)]
        self._kv_names = [frozenset(self.kv_names(layer)[:2]) for layer in range(spec.n_layers)]
        self.hook_names: tuple[str, ...] = (
            ("hook_embed", "hook_pos_embed")
            + tuple(n for layer in range(spec.n_layers) for n in self._block_hook_names(layer))
            + (self.ln_final.hook_scale, self.ln_final.hook_normalized)
        )
        if not meta:
            self.init_weights(spec.seed if seed is None else seed)
            self.to(device=device, dtype=dtype)

    def _block_hook_names(self, layer: int) -> tuple[str, ...]:
        b = self.blocks[layer]
        return (
            b.hook_resid_pre, b.ln1.hook_scale, b.ln1.hook_normalized,
            b.attn.hook_q, b.attn.hook_k, b.attn.hook_v, b.attn.hook_attn_scores, b.attn.hook_pattern,
            b.attn.hook_z, b.attn.hook_result, b.hook_attn_out, b.hook_resid_mid,
            b.ln2.hook_scale, b.ln2.hook_normalized, b.mlp.hook_pre, b.mlp.hook_post, b.hook_mlp_out,
            b.hook_resid_post,
        )  # fmt: skip

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        std = 0.8 / math.sqrt(self.spec.d_model)
        for name, p in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("W_"):
                p.copy_(torch.empty(p.shape).normal_(0.0, std, generator=gen))
            else:
                p.fill_(1.0 if leaf == "w" else 0.0)

    @property
    def _context_hooks(self) -> list[list[Hook]]:
        """The hooks of this thread's open `with model.hooks(...)` blocks (another thread's calls do not see them)."""
        return self._hook_context.stack

    @property
    def device(self) -> torch.device:
        return self.embed.W_E.device

    def kv_names(self, start_layer: int = 0) -> list[str]:
        """The cache names `forward_from(..., start_pos=p, kv_prefix=cache)` needs from `start_layer` on."""
        return [n for b in self.blocks[start_layer:] for n in (b.attn.hook_k, b.attn.hook_v)]

    # ---- running ----

    def forward(self, tokens: Tensor, *, logit_positions: Sequence[int] | None = None) -> Tensor:
        """tokens (batch, pos) -> logits (batch, pos, d_vocab); only `logit_positions` when given."""
        run = self._make_run([], None, True, start_layer=0) if self._context_hooks else None
        return self._forward(tokens, run, logit_positions)

    def run_with_hooks(
        self, tokens: Tensor, hooks: Iterable[Hook], *, logit_positions: Sequence[int] | None = None
    ) -> Tensor:
        """Logits with each `(name, fn)` hook applied for this call only."""
        return self._forward(tokens, self._make_run(hooks, None, True, start_layer=0), logit_positions)

    def run_with_cache(
        self,
        tokens: Tensor,
        names: Names,
        *,
        hooks: Iterable[Hook] = (),
        logit_positions: Sequence[int] | None = None,
        detach: bool = True,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(logits, {name: activation}) for the requested names only (a name, a list, or a predicate).

        A cached activation is the value after this call's hooks at that name.
        """
        run = self._make_run(hooks, names, detach, start_layer=0)
        return self._forward(tokens, run, logit_positions), run.cache

    def forward_from(
        self,
        resid: Tensor,
        start_layer: int,
        *,
        start_pos: int = 0,
        kv_prefix: Mapping[str, Tensor] | None = None,
        logit_positions: Sequence[int] | None = None,
        hooks: Iterable[Hook] = (),
        names: Names | None = None,
        detach: bool = True,
        start_qkv: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Run blocks `start_layer`.. from a stored residual; logits, or (logits, cache) when `names` is given.

        `resid` (batch, pos, d_model) is `blocks.{start_layer}.hook_resid_pre` at positions `start_pos`.. (so
        `cache[name][:, start_pos:]` of a full run). With `start_pos` > 0 only those query positions are
        computed; the keys and values of positions < start_pos come from `kv_prefix`, a mapping holding
        `blocks.{l}.attn.hook_k` / `hook_v` for l >= start_layer (see `kv_names`) over at least the first
        `start_pos` positions, with the same batch size as `resid` or batch size 1. Hooks see absolute
        positions in `hook.positions`; a hook at a layer below `start_layer` is an error, not a no-op.

        `start_qkv`: (q, k, v), each (batch, pos, head, d_head), of layer `start_layer` at the positions of
        `resid`, computed from that very residual (a clean run's): the layer then reuses them instead of
        recomputing them. Used without gradients or autocast and with nothing hooked or cached in that layer
        but its keys and values (exact there: the same values); otherwise ignored.
        """
        if not 0 <= start_layer < self.spec.n_layers:
            raise ArithLensError(f"start layer {start_layer} is outside 0..{self.spec.n_layers - 1}")
        if resid.ndim != 3 or resid.shape[-1] != self.spec.d_model:
            raise ArithLensError(f"resid must be (batch, pos, {self.spec.d_model}), not {tuple(resid.shape)}")
        positions = self._positions(start_pos, resid.shape[1])
        prefix = self._kv_prefix(kv_prefix, start_layer, start_pos, resid.shape[0])
        run = self._make_run([*hooks], names, detach, start_layer=start_layer)
        if start_qkv is not None and any(t.shape[:2] != resid.shape[:2] for t in start_qkv):
            raise ArithLensError(f"start_qkv must be (batch, pos) = {tuple(resid.shape[:2])} like resid, not "
                                 f"{[tuple(t.shape) for t in start_qkv]}")
        logits = self._blocks_from(resid, start_layer, positions, prefix, logit_positions, run, start_qkv)
        return logits if names is None else (logits, run.cache)

    @contextmanager
    def hooks(self, hooks: Iterable[Hook]) -> Iterator[HookedTransformer]:
        """`with model.hooks([...]):` every call inside applies these hooks; they are gone on exit, error or not.
        The block is the opening thread's: calls from other threads (e.g. a study on another worker thread) do not
        see its hooks."""
        hooks = list(hooks)
        self._check_names([name for name, _ in hooks], start_layer=0, what="hook")
        self._context_hooks.append(hooks)
        try:
            yield self
        finally:
            idx = next(i for i, h in enumerate(self._context_hooks) if h is hooks)
            del self._context_hooks[idx]

    # ---- internals ----

    def _forward(self, tokens: Tensor, run: _Run | None, logit_positions: Sequence[int] | None) -> Tensor:
        if tokens.ndim != 2:
            raise ArithLensError(f"tokens must be (batch, pos), not {tuple(tokens.shape)}")
        B, T = tokens.shape
        positions = self._positions(0, T)
        embed = _site(run, "hook_embed", F.embedding(tokens, self.embed.W_E), positions)  # (B, T, D)
        pos_embed = _site(run, "hook_pos_embed", self.pos_embed.W_pos[:T].expand(B, T, -1), positions)
        return self._blocks_from(embed + pos_embed, 0, positions, None, logit_positions, run, owned=True)

    def _blocks_from(
        self,
        resid: Tensor,
        start_layer: int,
        positions: range,
        kv_prefix: list[tuple[Tensor, Tensor]] | None,
        logit_positions: Sequence[int] | None,
        run: _Run | None,
        start_qkv: tuple[Tensor, Tensor, Tensor] | None = None,
        owned: bool = False,  # whether `resid` is this call's own tensor (a caller's is never written)
    ) -> Tensor:
        blocks = self.blocks[start_layer:]
        for i, block in enumerate(blocks):
            prefix = None if kv_prefix is None else kv_prefix[i]
            if not self._fast_block(run, block.layer, resid):  # hooked or cached here: every activation offered
                resid, owned = block(resid, run, positions, prefix), True
                continue
            out = self._fast_out(positions, logit_positions) if i == len(blocks) - 1 else None
            kv: dict[str, Tensor] = {}
            resid = block.fast(resid, positions, prefix, out=out, qkv=start_qkv if i == 0 else None, owned=owned,
                               cache=kv)
            owned = True
            if run is not None:
                run.cache.update((name, t) for name, t in kv.items() if name in run.cache_names)
            if out is not None:
                positions = logit_positions
        if logit_positions is not None and positions is not logit_positions:
            resid = resid[:, self._logit_index(positions, logit_positions, resid.device)]
            positions = logit_positions
        x = self.ln_final(resid, run, positions)  # (B, T', D)
        return torch.addmm(self.unembed.b_U, x.reshape(-1, x.shape[-1]), self.unembed.W_U).view(*x.shape[:2], -1)

    def _fast_block(self, run: _Run | None, layer: int, resid: Tensor) -> bool:
        """Whether block `layer` may take the fast path: the kernels on, no gradients or autocast, nothing hooked
        in it, and nothing cached in it but its keys and values."""
        if not self.fast_kernels or not fast_ok(resid):
            return False
        if run is None:
            return True
        names = self._layer_names[layer]
        return run.hooks.keys().isdisjoint(names) and run.cache_names.isdisjoint(names - self._kv_names[layer])

    @staticmethod
    def _fast_out(positions: range, logit_positions: Sequence[int] | None) -> slice | None:
        """The indices of `positions` the last block must compute when only `logit_positions` are unembedded."""
        if not isinstance(logit_positions, range) or logit_positions.step != 1 or not len(logit_positions):
            return None
        if logit_positions.start < positions.start or logit_positions.stop > positions.stop:
            return None
        return slice(logit_positions.start - positions.start, logit_positions.stop - positions.start)

    def _positions(self, start_pos: int, n: int) -> range:
        if start_pos < 0 or n < 1 or start_pos + n > self.spec.n_ctx:
            raise ArithLensError(
                f"positions {start_pos}..{start_pos + n - 1} do not fit the context 0..{self.spec.n_ctx - 1}"
            )
        return range(start_pos, start_pos + n)

    @staticmethod
    def _logit_index(positions: range, logit_positions: Sequence[int], device: torch.device) -> slice | Tensor:
        missing = [p for p in logit_positions if p not in positions]
        if missing or len(logit_positions) == 0:
            hint = " (logits before start_pos are unchanged: take them from the clean run)" if positions.start else ""
            raise ArithLensError(f"logit positions {list(logit_positions)} are not all in {_span(positions)}{hint}")
        if isinstance(logit_positions, range) and logit_positions.step == 1:
            return slice(logit_positions.start - positions.start, logit_positions.stop - positions.start)
        return torch.tensor([p - positions.start for p in logit_positions], device=device)

    def _kv_prefix(
        self, cache: Mapping[str, Tensor] | None, start_layer: int, start_pos: int, batch: int
    ) -> list[tuple[Tensor, Tensor]] | None:
        if start_pos == 0:
            return None
        if cache is None:
            raise ArithLensError(f"start_pos {start_pos} needs kv_prefix: the keys and values of earlier positions")
        out = []
        for block in self.blocks[start_layer:]:
            pair = []
            for name in (block.attn.hook_k, block.attn.hook_v):
                if name not in cache:
                    raise ArithLensError(f"kv_prefix lacks {name!r} (cache model.kv_names({start_layer}))")
                t = cache[name]
                if t.ndim != 4 or t.shape[0] not in (1, batch) or t.shape[1] < start_pos:
                    raise ArithLensError(
                        f"kv_prefix {name!r} has shape {tuple(t.shape)};"
                        f" need ({batch} or 1, >= {start_pos}, heads, d_head)"
                    )
                pair.append(t[:, :start_pos])
            out.append((pair[0], pair[1]))
        return out

    def _make_run(self, hooks: Iterable[Hook], names: Names | None, detach: bool, *, start_layer: int) -> _Run:
        hooks = [h for ctx in self._context_hooks for h in ctx] + list(hooks)
        self._check_names([name for name, _ in hooks], start_layer=start_layer, what="hook")
        if names is None:
            cache_names: list[str] = []
        elif callable(names):
            cache_names = [n for n in self._names_from(start_layer) if names(n)]
        else:
            cache_names = [names] if isinstance(names, str) else list(names)
            self._check_names(cache_names, start_layer=start_layer, what="cache name")
        return _Run(hooks, cache_names, detach)

    def _names_from(self, start_layer: int) -> tuple[str, ...]:
        skip = {name for names in self._layer_names[:start_layer] for name in names}
        if start_layer:
            skip |= {"hook_embed", "hook_pos_embed"}
        return tuple(n for n in self.hook_names if n not in skip)

    def _check_names(self, names: Iterable[str], *, start_layer: int, what: str) -> None:
        known = set(self.hook_names)
        for name in names:
            if name not in known:
                raise ArithLensError(
                    f"unknown {what} {name!r}; names look like 'blocks.0.attn.hook_z' (model.hook_names)"
                )
        if start_layer:
            runs = set(self._names_from(start_layer))
            for name in names:
                if name not in runs:
                    raise ArithLensError(f"{what} {name!r} does not run when starting at layer {start_layer}")
