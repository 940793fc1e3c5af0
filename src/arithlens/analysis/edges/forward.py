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

    resid (B, Pk, D); diff (B, S, Pk, D); off (rows, S, W, Pk, H); W (H, D, d_head); b (H, d_head)."""
    if off.shape[0] == 1 and not off.requires_grad:
        return _pair_inputs_shared(resid, diff, off[0], ln, W, b)
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


def _pair_inputs_shared(resid: Tensor, diff: Tensor, off: Tensor, ln, W: Tensor, b: Tensor) -> Tensor:
    """`_pair_inputs` for one mask shared by every row, off (S, W, Pk, H) and no gradient: the same sums, each
    written as one batched matmul over the (key, head) pairs with the questions folded into its columns (the
    general form broadcasts the mask over the batch, which costs more copying than arithmetic)."""
    B, Pk, D = resid.shape
    S, Wn, _, H = off.shape
    dh = W.shape[-1]
    Ww = (ln.w[None, :, None] * W).permute(1, 0, 2).reshape(D, H * dh)  # (D, H*dh): the gain folded in
    col = Ww.sum(0).view(H, dh)  # what the centring subtracts per unit of mean
    r_mean, d_mean = resid.mean(-1), diff.mean(-1)  # (B, Pk), (B, S, Pk)
    rW = (resid @ Ww).view(B, Pk, H, dh) - r_mean[..., None, None] * col  # (B, Pk, H, dh)
    dW = (diff @ Ww).view(B, S, Pk, H, dh) - d_mean[..., None, None] * col  # (B, S, Pk, H, dh)
    off_qh = off.permute(2, 3, 1, 0)  # (Pk, H, W, S)
    sub = off_qh @ dW.permute(2, 3, 1, 0, 4).reshape(Pk, H, S, B * dh)  # (Pk, H, W, B*dh)
    centred = rW.unsqueeze(1) - sub.view(Pk, H, Wn, B, dh).permute(3, 2, 0, 1, 4)  # (B, W, Pk, H, dh)
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
    return torch.addcmul(torch.einsum("d,hde->he", ln.b, W) + b, centred, scale[..., None])


def _chunk_forward(model: HookedTransformer, graph: EdgeGraph, tokens: Tensor, ablated: Tensor,
                   mask: Tensor) -> Tensor:
    spec = model.spec
    B, P = tokens.shape
    H, dh = spec.n_heads, spec.d_head
    groups = {(g.kind, g.layer): g for g in graph.groups}
    w0, w1 = graph.min_position, graph.answer.stop  # queries whose key / value inputs may be edited
    outs = [model.embed.W_E[tokens] + model.pos_embed.W_pos[:P]]  # sender outputs of this run, each (B, P, D)
    resid = outs[0]
    causal = torch.ones(P, P, dtype=torch.bool, device=tokens.device).tril()

    def diffs(n: int) -> Tensor:
        """(B, n, P, D): the first n senders' output in this run minus their ablated value."""
        return torch.stack(outs[:n], 1) - ablated[:, :n]

    for layer, block in enumerate(model.blocks):
        a = block.attn
        ns = 1 + layer * (H + 1)
        off_q, off_k, off_v = (_dense_off(groups[kind, layer], mask) for kind in ("q", "k", "v"))
        diff = diffs(ns) if any(o is not None for o in (off_q, off_k, off_v)) else None
        xq = resid.unsqueeze(2).expand(B, P, H, -1)  # (B, P, H, D): each head's query input
        if off_q is not None:
            xq = xq - _removed(off_q, diff)
        q = torch.einsum("bphd,hde->bphe", _ln(xq, block.ln1), a.W_Q) + a.b_Q  # (B, P, H, dh)
        plain = _ln(resid, block.ln1)  # (B, P, D): the input of every unedited key and value
        k = torch.einsum("bqd,hde->bqhe", plain, a.W_K) + a.b_K  # (B, Pk, H, dh)
        v = torch.einsum("bqd,hde->bqhe", plain, a.W_V) + a.b_V
        scores = torch.einsum("bphe,bqhe->bhpq", q, k)  # (B, H, Pq, Pk)
        if off_k is not None:  # the window's queries read their own keys
            k_pair = _pair_inputs(resid, diff, off_k[:, :, w0:w1], block.ln1, a.W_K, a.b_K)  # (B, W, Pk, H, dh)
            inner = torch.einsum("bwhe,bwqhe->bhwq", q[:, w0:w1], k_pair)
            scores = torch.cat([scores[:, :, :w0], inner, scores[:, :, w1:]], 2)
        pattern = (scores / math.sqrt(dh)).masked_fill(~causal, float("-inf")).softmax(-1)  # (B, H, Pq, Pk)
        z = torch.einsum("bhpq,bqhe->bphe", pattern, v)  # (B, P, H, dh)
        if off_v is not None:
            v_pair = _pair_inputs(resid, diff, off_v[:, :, w0:w1], block.ln1, a.W_V, a.b_V)
            inner = torch.einsum("bhwq,bwqhe->bwhe", pattern[:, :, w0:w1], v_pair)
            z = torch.cat([z[:, :w0], inner, z[:, w1:]], 1)
        heads = torch.einsum("bphe,hed->hbpd", z, a.W_O)  # (H, B, P, D)
        outs += list(heads)
        resid = resid + heads.sum(0) + a.b_O
        x = resid
        if (off := _dense_off(groups["mlp", layer], mask)) is not None:
            x = x - _removed(off, diffs(ns + H))
        out = F.relu(_ln(x, block.ln2) @ block.mlp.W_in + block.mlp.b_in) @ block.mlp.W_out  # (B, P, D)
        outs.append(out)
        resid = resid + out + block.mlp.b_out
    x = resid[:, graph.answer.start : graph.answer.stop]
    if (off := _dense_off(groups["logits", spec.n_layers], mask)) is not None:
        a0, a1 = graph.answer.start, graph.answer.stop
        x = x - _removed(off[:, :, a0:a1], diffs(len(outs))[:, :, a0:a1])
    return _ln(x, model.ln_final) @ model.unembed.W_U + model.unembed.b_U  # (B, n_answer, vocab)


def edge_forward(model: HookedTransformer, graph: EdgeGraph, tokens: Tensor, ablated: Tensor, mask: Tensor, *,
                 chunk: int = 256) -> Tensor:
    """Answer logits (batch, n_answer, vocab) with the edges weighted by `mask` ((n_edges,) or (batch, n_edges),
    1 keeps an edge) and `ablated` (1 or batch, n_senders, pos, d_model) what a masked edge carries. Differentiable
    in `mask` (and the weights) unless called under no_grad; run `chunk` questions at a time on the model's device."""
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

    return torch.cat([_chunk_forward(model, graph, tokens[s : s + chunk], rows(ablated, s), rows(mask, s))
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
           "sender_outputs"]
