"""The edge-masked forward: the model's logits when each receiver reads, from each sender whose edge is masked out,
the sender's ablated value instead of its value in this run; a pure, differentiable function of the mask.

Every receiver input is this run's residual stream at the position it reads minus, over its masked-out edges,
(1 - mask) * (sender output - ablated sender value); layer norms are recomputed on each edited input. A head's
key and value inputs are edited per (query, key) pair, so the key at q read by query p may differ from the key
at q read by p'. Receivers outside the graph (before its `min_position`) read this run's residual unedited.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from arithlens.analysis.edges.graph import EdgeGraph, Group
from arithlens.errors import ArithLensError
from arithlens.interventions import compute_means
from arithlens.model.hooks import act_name
from arithlens.model.transformer import LN_EPS, HookedTransformer

ABLATION_KINDS = ("mean", "zero", "resample")
MEANS_CHUNK = 256


def _output_sites(model: HookedTransformer) -> list[str]:
    return [act_name("z", layer) for layer in range(model.spec.n_layers)] + [
        act_name("post", layer) for layer in range(model.spec.n_layers)]


def _project(model: HookedTransformer, acts, tokens: Tensor) -> Tensor:
    """(batch, n_senders, pos, d_model) from the z and post activations `acts` (batch, pos, ...) of `tokens`' run
    (or their means, batch 1, with the embedding averaged over `tokens` too)."""
    embed = model.embed.W_E[tokens.to(model.device)] + model.pos_embed.W_pos[: tokens.shape[1]]  # (B, P, D)
    first = acts[act_name("z", 0)]
    if first.shape[0] == 1 and len(tokens) != 1:
        embed = embed.double().mean(0, keepdim=True).to(first.dtype)
    outs = [embed]
    for layer, block in enumerate(model.blocks):
        z = acts[act_name("z", layer)]  # (B, P, H, dh)
        outs += list(torch.einsum("bphe,hed->hbpd", z, block.attn.W_O))  # H x (B, P, D)
        outs.append(acts[act_name("post", layer)] @ block.mlp.W_out)
    return torch.stack(outs, 1)


def sender_outputs(model: HookedTransformer, tokens: Tensor, *, chunk: int = 1024) -> Tensor:
    """(batch, n_senders, pos, d_model): each sender's write to the residual stream in a clean run (the embedding
    token + position; a head's z . W_O[head]; an MLP's post . W_out), biases excluded."""
    parts = []
    with torch.no_grad():
        for start in range(0, len(tokens), chunk):
            part = tokens[start : start + chunk].to(model.device)
            _, cache = model.run_with_cache(part, _output_sites(model), logit_positions=[0])
            parts.append(_project(model, cache, part))
    return torch.cat(parts)


def ablation_values(model: HookedTransformer, reference: Tensor, kind: str = "mean", *, batch: int | None = None,
                    rng: np.random.Generator | None = None) -> Tensor:
    """What an ablated edge carries, (1 or batch, n_senders, pos, d_model): each sender's mean output per position
    over the `reference` tokens (`mean`), zero (`zero`), or the output on a reference question drawn per row with
    `rng` (`resample`, needs `batch`)."""
    if kind not in ABLATION_KINDS:
        raise ArithLensError(f"edge ablation {kind!r} is not one of {', '.join(ABLATION_KINDS)}")
    if kind == "zero":
        spec = model.spec
        return torch.zeros(1, 1 + spec.n_layers * (spec.n_heads + 1), spec.n_ctx, spec.d_model, device=model.device,
                           dtype=model.embed.W_E.dtype)
    if len(reference) == 0:
        raise ArithLensError("edge ablation values need at least one reference question")
    if kind == "mean":  # outputs are linear in z, post and the embedding: their means suffice
        with torch.no_grad():  # 256 questions a run: a whole 2,048-question run's activations were most of the peak
            return _project(model, compute_means(model, reference, _output_sites(model), chunk=MEANS_CHUNK),
                            reference)
    if batch is None or rng is None:
        raise ArithLensError("resample edge ablation needs the batch size and a random generator")
    rows = torch.from_numpy(rng.integers(0, len(reference), size=batch))
    return sender_outputs(model, reference[rows])


def _dense_off(group: Group, mask: Tensor) -> Tensor | None:
    """(rows, *group.shape): 1 - mask scattered into the group's dense block (0 where no edge is); None when every
    edge of the group is kept and no gradient is wanted (nothing to subtract)."""
    part = mask[:, group.start : group.stop]
    if not part.requires_grad and bool((part == 1).all()):
        return None
    rows = part.shape[0]
    size = math.prod(group.shape)
    off = torch.zeros(rows, size, device=mask.device, dtype=mask.dtype)
    off = off.index_copy(1, group.flat.to(mask.device), 1 - part)
    return off.view(rows, *group.shape)


def _removed(off: Tensor, diff: Tensor) -> Tensor:
    """sum_s off[s, p, ...] * diff[s, p]: what the masked-out edges take from each receiver input, (B, P, ..., D)
    for off (rows, S, P, ...) and diff (B, S, P, D). A mask shared by every row is contracted as one batched
    matmul over the positions (einsum would broadcast it over the batch first, copying more than it computes)."""
    if off.shape[0] != 1 or off.requires_grad:
        return torch.einsum("bsp...,bspd->bp...d", off, diff)
    B, S, P, D = diff.shape
    extra = off.shape[3:]
    lhs = off[0].reshape(S, P, -1).permute(1, 2, 0)  # (P, E, S)
    out = lhs @ diff.permute(2, 1, 0, 3).reshape(P, S, B * D)  # (P, E, B*D)
    return out.view(P, *extra, B, D).movedim(-2, 0)  # (B, P, ..., D)


def _ln(x: Tensor, ln) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], ln.w, ln.b, LN_EPS)


def _pair_inputs(resid: Tensor, diff: Tensor, off: Tensor, ln, W: Tensor, b: Tensor) -> Tensor:
    """LN(x) @ W[h] + b[h] for every (query w, key q, head h) input x = resid[q] - sum_s off[s, w, q, h] diff[s, q],
    (B, W, Pk, H, d_head), without forming the (B, W, Pk, H, d_model) inputs: the projection is linear, and the
    layer norm's mean and variance follow from the senders' means, dot products and Gram matrix per position.

    resid (B, Pk, D); diff (B, S, Pk, D); off (rows, S, W, Pk, H); W (H, D, d_head); b (H, d_head). The edge-masked
    forward's shared-mask checks use `_pair_stats` directly, never forming this tensor."""
    D = resid.shape[-1]
    Ww = ln.w[None, :, None] * W  # (H, D, dh): the layer norm's gain folded in
    col = Ww.sum(1)  # (H, dh): what the centring subtracts per unit of mean
    r_mean, d_mean = resid.mean(-1), diff.mean(-1)  # (B, Pk), (B, S, Pk)
    # centred projections of the residual and of each sender's difference, then one contraction over the senders
    # with the residual as one more sender of coefficient 1: centred = rW' - sum_s off_s dW'_s
    rW = torch.einsum("bqd,hde->bqhe", resid, Ww) - r_mean[..., None, None] * col  # (B, Pk, H, dh)
    dW = torch.einsum("bsqd,hde->bsqhe", diff, Ww) - d_mean[..., None, None] * col  # (B, S, Pk, H, dh)
    rows = off.shape[0]
    coef = torch.cat([off.new_ones((rows, 1, *off.shape[2:])), -off], 1)  # (rows, 1 + S, W, Pk, H)
    centred = torch.einsum("bswqh,bsqhe->bwqhe", coef, torch.cat([rW.unsqueeze(1), dW], 1))  # (B, W, Pk, H, dh)
    mean = r_mean[:, None, :, None] - torch.einsum("bswqh,bsq->bwqh", off, d_mean)  # (B, W, Pk, H)
    rd = torch.einsum("bqd,bsqd->bsq", resid, diff)  # (B, S, Pk)
    gram = torch.einsum("bsqd,btqd->bstq", diff, diff)  # (B, S, S, Pk)
    sq = ((resid * resid).sum(-1)[:, None, :, None] - 2 * torch.einsum("bswqh,bsq->bwqh", off, rd)
          + torch.einsum("bswqh,btwqh,bstq->bwqh", off, off, gram)) / D  # (B, W, Pk, H): mean of x^2
    scale = (sq - mean * mean).clamp_min(0.0).add(LN_EPS).rsqrt()
    return torch.addcmul(torch.einsum("d,hde->he", ln.b, W) + b, centred, scale[..., None])


@dataclass(frozen=True)
class _PairStats:
    """A layer norm + projection input edited per (query, key, head) with one mask shared by every row, factored
    so that no (B, W, Pk, H, d_head) tensor is formed: input(b, w, q, h) = const[h] + scale[b, w, q, h] *
    (rW[b, q, h] - sum_s off[s, w, q, h] dW[b, s, q, h]), each term a d_head vector."""

    const: Tensor  # (H, dh): ln.b . W + b
    scale: Tensor  # (B, W, Pk, H): the layer norm's 1 / std of each edited input
    rW: Tensor  # (B, H, Pk, dh): the centred residual, projected
    dW: Tensor  # (B, H, S, Pk, dh): each sender's centred difference, projected
    off: Tensor  # (H, W, S, Pk): 1 - mask per (query, sender, key)

    def scores(self, q: Tensor) -> Tensor:
        """(B, H, W, Pk): q . key input for the window's queries q (B, W, H, dh)."""
        qh = q.transpose(1, 2)  # (B, H, W, dh)
        base = qh @ self.rW.transpose(-1, -2)  # (B, H, W, Pk)
        B, H, S, Pk, dh = self.dW.shape
        qd = (qh @ self.dW.reshape(B, H, S * Pk, dh).transpose(-1, -2)).view(B, H, -1, S, Pk)  # (B, H, W, S, Pk)
        cut = (qd * self.off).sum(3)  # (B, H, W, Pk)
        return (qh * self.const[:, None]).sum(-1, keepdim=True) + self.scale.permute(0, 3, 1, 2) * (base - cut)

    def values(self, pattern: Tensor) -> Tensor:
        """(B, W, H, dh): the window's attention `pattern` (B, H, W, Pk) over the edited value inputs."""
        B, H, S, Pk, dh = self.dW.shape
        ps = pattern * self.scale.permute(0, 3, 1, 2)  # (B, H, W, Pk)
        out = pattern.sum(-1, keepdim=True) * self.const[:, None] + ps @ self.rW  # (B, H, W, dh)
        weights = (ps.unsqueeze(3) * self.off).view(B, H, -1, S * Pk)  # (B, H, W, S*Pk)
        out = out - weights @ self.dW.view(B, H, S * Pk, dh)
        return out.transpose(1, 2)


def _pair_stats(resid: Tensor, diff: Tensor, off: Tensor, ln, W: Tensor, b: Tensor,
                diff_w: Tensor | None = None) -> _PairStats:
    """`_pair_inputs`' sums for one mask shared by every row, off (S, W, Pk, H) and no gradient, factored
    (`_PairStats`); the contractions with the mask are batched matmuls over the (key, head) pairs with the
    questions folded into their columns (broadcasting the mask over the batch costs more copying than arithmetic).
    `diff_w`: diff already projected by the gain-folded W, (B, S, Pk, H*dh), when the caller has it more cheaply
    (`_projected_diff`)."""
    B, Pk, D = resid.shape
    S, Wn, _, H = off.shape
    dh = W.shape[-1]
    Ww = (ln.w[None, :, None] * W).permute(1, 0, 2).reshape(D, H * dh)  # (D, H*dh): the gain folded in
    col = Ww.sum(0).view(H, dh)  # what the centring subtracts per unit of mean
    r_mean, d_mean = resid.mean(-1), diff.mean(-1)  # (B, Pk), (B, S, Pk)
    rW = (resid @ Ww).view(B, Pk, H, dh) - r_mean[..., None, None] * col  # (B, Pk, H, dh)
    if diff_w is None:
        diff_w = diff @ Ww
    dW = diff_w.view(B, S, Pk, H, dh) - d_mean[..., None, None] * col  # (B, S, Pk, H, dh)
    off_q = off.permute(2, 3, 1, 0).reshape(Pk, H * Wn, S)  # (Pk, H*W, S)
    # the senders' means and dot products with the residual, both contracted with the mask at once
    rd = (diff * resid.unsqueeze(1)).sum(-1)  # (B, S, Pk)
    lin = off_q @ torch.stack([d_mean, rd], 0).permute(3, 2, 0, 1).reshape(Pk, S, 2 * B)  # (Pk, H*W, 2B)
    lin = lin.view(Pk, H, Wn, 2, B).permute(3, 4, 2, 0, 1)  # (2, B, W, Pk, H)
    mean = r_mean[:, None, :, None] - lin[0]  # (B, W, Pk, H)
    gram = diff.permute(2, 0, 1, 3) @ diff.permute(2, 0, 3, 1)  # (Pk, B, S, S)
    quad = off_q @ gram.permute(0, 2, 1, 3).reshape(Pk, S, B * S)  # (Pk, H*W, B*S): sum_s off_s gram_st
    quad = (quad.view(Pk, H * Wn, B, S) * off_q.unsqueeze(2)).sum(-1)  # (Pk, H*W, B)
    quad = quad.view(Pk, H, Wn, B).permute(3, 2, 0, 1)  # (B, W, Pk, H)
    sq = ((resid * resid).sum(-1)[:, None, :, None] - 2 * lin[1] + quad) / D  # (B, W, Pk, H): mean of x^2
    scale = (sq - mean * mean).clamp_min(0.0).add(LN_EPS).rsqrt()
    return _PairStats(torch.einsum("d,hde->he", ln.b, W) + b, scale, rW.transpose(1, 2).contiguous(),
                      dW.permute(0, 3, 1, 2, 4).contiguous(), off.permute(3, 1, 0, 2).contiguous())


def _kv_weights(block) -> Tensor:
    """(D, 2*H*d_head): the layer's W_K and W_V side by side, each head's columns scaled by the ln1 gain."""
    a = block.attn
    return torch.cat([(block.ln1.w[None, :, None] * W).permute(1, 0, 2).flatten(1) for W in (a.W_K, a.W_V)], 1)


def _projected_diff(model: HookedTransformer, tokens: Tensor, zs: list[Tensor], mlps: list[Tensor],
                    ablated: Tensor, n: int, w_kv: Tensor) -> Tensor:
    """(B, n, P, 2*H*d_head): the first n senders' output in this run minus their ablated value, times `w_kv`.
    Projected through the senders' own factors: a head's output z . W_O[h] as z . (W_O[h] w_kv), d_model / d_head
    times fewer multiply-adds than projecting the d_model-wide output, and the embedding by a table lookup."""
    B, P = tokens.shape
    parts = [(model.embed.W_E @ w_kv)[tokens] + model.pos_embed.W_pos[:P] @ w_kv]  # (B, P, F)
    for layer, (z, mlp) in enumerate(zip(zs, mlps)):  # each earlier layer's heads, then its MLP
        parts += list(torch.einsum("bphe,hef->hbpf", z, model.blocks[layer].attn.W_O @ w_kv))  # H x (B, P, F)
        parts.append(mlp @ w_kv)
    away = ablated[:, :n] @ w_kv  # (1 or B, n, P, F)
    out = away.new_empty(B, n, P, w_kv.shape[1])
    for s in range(n):  # one pass per sender, where stacking and then subtracting took two
        torch.sub(parts[s], away[:, s], out=out[:, s])
    return out


def mask_blocks(graph: EdgeGraph, mask: Tensor) -> dict[tuple[str, int], Tensor | None]:
    """1 - mask as each group's dense block (`_dense_off`), by (kind, layer); mask (n_edges,) or (rows, n_edges) on
    the model's device and dtype."""
    mask = mask if mask.ndim == 2 else mask.unsqueeze(0)
    return {(g.kind, g.layer): _dense_off(g, mask) for g in graph.groups}


def _chunk_forward(model: HookedTransformer, graph: EdgeGraph, tokens: Tensor, ablated: Tensor,
                   mask: Tensor, offs: dict[tuple[str, int], Tensor | None] | None = None) -> Tensor:
    """`edge_forward` of one chunk; `offs`: `mask_blocks(graph, mask)` when the caller shares it between chunks."""
    spec = model.spec
    B, P = tokens.shape
    H, dh = spec.n_heads, spec.d_head
    offs = mask_blocks(graph, mask) if offs is None else offs
    w0, w1 = graph.min_position, graph.answer.stop  # queries whose key / value inputs may be edited
    outs: list[Tensor] = []  # sender outputs of this run, each (B, P, D)
    resid = model.embed.W_E[tokens] + model.pos_embed.W_pos[:P]
    zs: list[Tensor] = []  # each layer's z and MLP output, (B, P, H, dh) and (B, P, D): the senders' factors
    mlps: list[Tensor] = []
    # one mask for every row and no gradient to it: the checks' factored key and value inputs (`_PairStats`)
    shared = mask.shape[0] == 1 and not (mask.requires_grad and torch.is_grad_enabled())
    causal = torch.ones(P, P, dtype=torch.bool, device=tokens.device).tril()

    # Without gradients each sender's difference is taken once, into one buffer that every later receiver reads a
    # prefix of (stacking the outputs again for each layer copied and subtracted the early senders four times over).
    buffer = None if torch.is_grad_enabled() else resid.new_empty(B, graph.n_senders, P, resid.shape[-1])

    def send(*outputs: Tensor) -> None:
        for out in outputs:
            if buffer is not None:
                torch.sub(out, ablated[:, len(outs)], out=buffer[:, len(outs)])
            outs.append(out)

    def diffs(n: int) -> Tensor:
        """(B, n, P, D): the first n senders' output in this run minus their ablated value."""
        return buffer[:, :n] if buffer is not None else torch.stack(outs[:n], 1) - ablated[:, :n]

    send(resid)
    for layer, block in enumerate(model.blocks):
        a = block.attn
        ns = 1 + layer * (H + 1)
        off_q, off_k, off_v = (offs[kind, layer] for kind in ("q", "k", "v"))
        diff = diffs(ns) if any(o is not None for o in (off_q, off_k, off_v)) else None
        xq = resid.unsqueeze(2).expand(B, P, H, -1)  # (B, P, H, D): each head's query input
        if off_q is not None:
            xq = xq - _removed(off_q, diff)
        q = torch.einsum("bphd,hde->bphe", _ln(xq, block.ln1), a.W_Q) + a.b_Q  # (B, P, H, dh)
        plain = _ln(resid, block.ln1)  # (B, P, D): the input of every unedited key and value
        k = torch.einsum("bqd,hde->bqhe", plain, a.W_K) + a.b_K  # (B, Pk, H, dh)
        v = torch.einsum("bqd,hde->bqhe", plain, a.W_V) + a.b_V
        scores = torch.einsum("bphe,bqhe->bhpq", q, k)  # (B, H, Pq, Pk)
        diff_k = diff_v = None
        if shared and (off_k is not None or off_v is not None):
            diff_k, diff_v = _projected_diff(model, tokens, zs, mlps, ablated, ns, _kv_weights(block)).chunk(2, -1)
        if off_k is not None:  # the window's queries read their own keys
            if shared:
                inner = _pair_stats(resid, diff, off_k[0, :, w0:w1], block.ln1, a.W_K, a.b_K, diff_k).scores(
                    q[:, w0:w1])  # (B, H, W, Pk)
            else:
                k_pair = _pair_inputs(resid, diff, off_k[:, :, w0:w1], block.ln1, a.W_K, a.b_K)  # (B, W, Pk, H, dh)
                inner = torch.einsum("bwhe,bwqhe->bhwq", q[:, w0:w1], k_pair)
            scores = torch.cat([scores[:, :, :w0], inner, scores[:, :, w1:]], 2)
        pattern = (scores / math.sqrt(dh)).masked_fill(~causal, float("-inf")).softmax(-1)  # (B, H, Pq, Pk)
        z = torch.einsum("bhpq,bqhe->bphe", pattern, v)  # (B, P, H, dh)
        if off_v is not None:
            if shared:
                inner = _pair_stats(resid, diff, off_v[0, :, w0:w1], block.ln1, a.W_V, a.b_V, diff_v).values(
                    pattern[:, :, w0:w1])  # (B, W, H, dh)
            else:
                v_pair = _pair_inputs(resid, diff, off_v[:, :, w0:w1], block.ln1, a.W_V, a.b_V)
                inner = torch.einsum("bhwq,bwqhe->bwhe", pattern[:, :, w0:w1], v_pair)
            z = torch.cat([z[:, :w0], inner, z[:, w1:]], 1)
        heads = torch.einsum("bphe,hed->hbpd", z, a.W_O)  # (H, B, P, D)
        send(*heads)
        zs.append(z)
        resid = resid + heads.sum(0) + a.b_O
        x = resid
        if (off := offs["mlp", layer]) is not None:
            x = x - _removed(off, diffs(ns + H))
        out = F.relu(_ln(x, block.ln2) @ block.mlp.W_in + block.mlp.b_in) @ block.mlp.W_out  # (B, P, D)
        send(out)
        mlps.append(out)
        resid = resid + out + block.mlp.b_out
    x = resid[:, graph.answer.start : graph.answer.stop]
    if (off := offs["logits", spec.n_layers]) is not None:
        a0, a1 = graph.answer.start, graph.answer.stop
        x = x - _removed(off[:, :, a0:a1], diffs(len(outs))[:, :, a0:a1])
    return _ln(x, model.ln_final) @ model.unembed.W_U + model.unembed.b_U  # (B, n_answer, vocab)


def edge_forward(model: HookedTransformer, graph: EdgeGraph, tokens: Tensor, ablated: Tensor, mask: Tensor, *,
                 chunk: int = 256, offs: dict | None = None) -> Tensor:
    """Answer logits (batch, n_answer, vocab) with the edges weighted by `mask` ((n_edges,) or (batch, n_edges),
    1 keeps an edge) and `ablated` (1 or batch, n_senders, pos, d_model) what a masked edge carries. Differentiable
    in `mask` (and the weights) unless called under no_grad; run `chunk` questions at a time on the model's device.
    `offs`: `mask_blocks(graph, mask)` of this (shared) mask, for a caller that runs it on many small batches."""
    tokens = tokens.to(model.device)
    B = len(tokens)
    S = graph.n_senders
    if tokens.ndim != 2 or tokens.shape[1] != graph.n_ctx:
        raise ArithLensError(f"tokens must be (batch, {graph.n_ctx}), not {tuple(tokens.shape)}")
    if mask.ndim == 1:
        mask = mask.unsqueeze(0)
    if mask.ndim != 2 or mask.shape[1] != graph.n_edges or mask.shape[0] not in (1, B):
        raise ArithLensError(f"an edge mask is (n_edges,) or (batch, n_edges) = ({B}, {graph.n_edges}), "
                             f"not {tuple(mask.shape)}")
    if ablated.ndim != 4 or ablated.shape[1:3] != (S, graph.n_ctx) or ablated.shape[0] not in (1, B):
        raise ArithLensError(f"ablated sender values are (1 or {B}, {S}, {graph.n_ctx}, d_model), "
                             f"not {tuple(ablated.shape)}")
    mask = mask.to(model.device, model.embed.W_E.dtype)
    ablated = ablated.to(model.device)

    def rows(t: Tensor, start: int) -> Tensor:
        return t if t.shape[0] == 1 else t[start : start + chunk]

    if offs is None and mask.shape[0] == 1:  # one mask for every chunk: its blocks made once
        offs = mask_blocks(graph, mask)
    return torch.cat([_chunk_forward(model, graph, tokens[s : s + chunk], rows(ablated, s), rows(mask, s), offs)
                      for s in range(0, B, chunk)])


Metric = Callable[[Tensor, Tensor], Tensor]  # (logits (batch, n_answer, vocab), targets (batch, n_answer)) -> (batch,)


def logit_diff(logits: Tensor, targets: Tensor) -> Tensor:
    """(batch,): the correct answer token's logit minus the best wrong one's, summed over answer positions."""
    right = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, n_answer)
    wrong = logits.scatter(-1, targets.unsqueeze(-1), float("-inf")).amax(-1)
    return (right - wrong).sum(-1)


def answer_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """(batch,): the mean negative log-likelihood of the answer tokens (the engine's failure loss)."""
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(-1)


METRICS: dict[str, Metric] = {"logit_diff": logit_diff, "loss": answer_loss}

__all__ = ["ABLATION_KINDS", "METRICS", "Metric", "ablation_values", "answer_loss", "edge_forward", "logit_diff",
           "mask_blocks", "sender_outputs"]
