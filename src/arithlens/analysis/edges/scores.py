"""Edge scores: exact (each edge ablated alone, the metric's change), EAP (the first-order estimate at mask 1)
and EAP-IG (gradients averaged along the mask from 1 towards 0), and their rank agreement with exact, per layer.

Every score is the change of the metric's mean over questions when the edge is ablated (ablated minus clean), so
a negative logit-difference score marks an edge the answer needs. EAP's estimate is -dM/dmask at mask 1, i.e.
(ablated - clean sender value) . dM/d(receiver input); EAP-IG's is -dM/dmask averaged at masks 1, 1 - 1/steps,
..., 1/steps (every edge moved together, left Riemann sum: `steps=1` is EAP).
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import Tensor

from arithlens.analysis.edges.forward import METRICS, edge_forward, sender_outputs
from arithlens.analysis.edges.graph import EdgeGraph
from arithlens.errors import ArithLensError
from arithlens.interventions import Engine, Intervention
from arithlens.model.hooks import act_name
from arithlens.model.transformer import LN_EPS, HookedTransformer

EAP_IG_STEPS = 5


def _metric(name: str):
    if name not in METRICS:
        raise ArithLensError(f"edge metric {name!r} is not one of {', '.join(METRICS)}")
    return METRICS[name]


def _targets(model: HookedTransformer, tokens: Tensor) -> Tensor:
    answer = model.spec.layout.answer_logit_positions
    return tokens[:, answer.start + 1 : answer.stop + 1].to(model.device)


def exact_scores(model: HookedTransformer, graph: EdgeGraph, tokens: Tensor, ablated: Tensor, *,
                 metric: str = "logit_diff", edges: np.ndarray | None = None, rows: int = 2048,
                 base: Tensor | None = None) -> np.ndarray:
    """(n_edges,) float64: the mean metric change when each edge alone is ablated from `base` (default: every
    edge kept); NaN for edges not in `edges` (default: all).

    From the full model, an edge changes only its receiver's output at one position: that output is recomputed
    from the clean run's caches for every edge into the receiver at once, and the intervention engine reruns only
    what it changes (edges stacked along the batch axis, `rows` question-rows at a time). From a `base` circuit,
    each edge is one edge-masked forward, stacked the same way."""
    fn = _metric(metric)
    tokens = tokens.to(model.device)
    todo = np.arange(graph.n_edges) if edges is None else np.asarray(edges, dtype=np.int64)
    if base is not None:
        return _exact_from_base(model, graph, tokens, ablated, fn, todo, rows, base)
    return _exact_from_clean(model, graph, tokens, ablated, fn, todo, rows)


def _exact_from_base(model, graph, tokens, ablated, fn, todo, rows, base) -> np.ndarray:
    B = len(tokens)
    targets = _targets(model, tokens)
    base = base.to(model.device).float()
    out = np.full(graph.n_edges, np.nan)
    per = max(1, rows // B)  # edges per forward
    with torch.no_grad():
        clean = fn(edge_forward(model, graph, tokens, ablated, base), targets).double().mean().item()
        for start in range(0, len(todo), per):
            ids = torch.as_tensor(todo[start : start + per], device=model.device)
            m = len(ids)
            mask = base.repeat(m * B, 1)  # row j * B + i: question i with edge ids[j] ablated
            mask[torch.arange(m * B, device=model.device), ids.repeat_interleave(B)] = 0.0
            abl = ablated if ablated.shape[0] == 1 else ablated.repeat(m, 1, 1, 1)
            got = fn(edge_forward(model, graph, tokens.repeat(m, 1), abl, mask), targets.repeat(m, 1))
            out[todo[start : start + per]] = got.double().view(m, B).mean(1).cpu().numpy() - clean
    return out


def _exact_from_clean(model, graph, tokens, ablated, fn, todo, rows) -> np.ndarray:
    spec = model.spec
    B, L = len(tokens), spec.n_layers
    dh = spec.d_head
    targets = _targets(model, tokens)
    engine = Engine(model, tokens)
    names = [act_name(n, layer) for layer in range(L) for n in ("resid_pre", "resid_mid", "q", "k", "v", "pattern")]
    last = act_name("resid_post", L - 1)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, [*names, last])
        diff = sender_outputs(model, tokens) - ablated.to(model.device)  # (B, S, P, D)
    clean = fn(engine.clean_logits, targets).double().mean().item()
    out = np.full(graph.n_edges, np.nan)
    wanted = np.zeros(graph.n_edges, dtype=bool)
    wanted[todo] = True
    answer0 = graph.answer.start

    def run(ids: list[int], receiver, values: Tensor) -> None:
        """values (m, B, ...): the receiver's new output (a head's z, an MLP's post, or the logits at p)."""
        m = len(ids)
        if receiver.kind == "logits":
            logits = engine.clean_logits.repeat(m, 1, 1)
            logits[:, receiver.position - answer0] = values.reshape(m * B, -1)
        else:
            site = act_name("post" if receiver.kind == "mlp" else "z", receiver.layer)
            iv = Intervention(site, (receiver.position,), None if receiver.kind == "mlp" else receiver.head, None,
                              "patch", values.reshape(m * B, 1, -1))
            logits = engine.tiled(m).answer_logits([iv])
        got = fn(logits, targets.repeat(m, 1)).double().view(m, B).mean(1).cpu().numpy()
        out[ids] = got - clean

    by_receiver: dict[tuple, list[int]] = {}
    for i in np.flatnonzero(wanted):
        r = graph.edges[i].receiver
        by_receiver.setdefault((r.layer, r.position, r.head, r.kind in ("q", "k", "v"), r.kind == "logits"),
                               []).append(int(i))
    per = max(1, rows // B)
    with torch.no_grad():
        for ids_all in by_receiver.values():
            for start in range(0, len(ids_all), per):
                ids = ids_all[start : start + per]
                r = graph.edges[ids[0]].receiver
                senders = [graph.edges[i].sender for i in ids]
                s_idx = torch.tensor([snd.index(graph.n_heads) for snd in senders], device=model.device)
                reads = torch.tensor([graph.edges[i].receiver.reads for i in ids], device=model.device)
                d = diff[:, s_idx, reads].transpose(0, 1)  # (m, B, D): what each edge's ablation subtracts
                if r.kind == "logits":
                    x = cache[last][:, r.position] - d
                    run(ids, r, F.layer_norm(x, x.shape[-1:], model.ln_final.w, model.ln_final.b, LN_EPS)
                        @ model.unembed.W_U + model.unembed.b_U)
                    continue
                block = model.blocks[r.layer]
                if r.kind == "mlp":
                    x = cache[act_name("resid_mid", r.layer)][:, r.position] - d
                    x = F.layer_norm(x, x.shape[-1:], block.ln2.w, block.ln2.b, LN_EPS)
                    run(ids, r, F.relu(x @ block.mlp.W_in + block.mlp.b_in))
                    continue
                run(ids, r, _head_z(block, cache, r, [graph.edges[i].receiver for i in ids], d, dh))
    return out


def _head_z(block, cache, receiver, receivers, d: Tensor, dh: int) -> Tensor:
    """(m, B, d_head): head `receiver.head`'s z at `receiver.position` with each edge's input edited alone."""
    layer, p, h = receiver.layer, receiver.position, receiver.head
    a = block.attn
    resid = cache[act_name("resid_pre", layer)]  # (B, P, D)
    q = cache[act_name("q", layer)][:, p, h]  # (B, dh)
    k = cache[act_name("k", layer)][:, : p + 1, h]  # (B, p+1, dh)
    v = cache[act_name("v", layer)][:, : p + 1, h]
    pattern = cache[act_name("pattern", layer)][:, h, p, : p + 1]  # (B, p+1)
    m = len(receivers)
    kinds = [r.kind for r in receivers]
    reads = torch.tensor([r.reads for r in receivers], device=resid.device)
    x = resid[:, reads].transpose(0, 1) - d  # (m, B, D): each edited input
    x = F.layer_norm(x, x.shape[-1:], block.ln1.w, block.ln1.b, LN_EPS)
    z = torch.empty(m, *q.shape, device=q.device, dtype=q.dtype)
    for kind, W, b in (("q", a.W_Q, a.b_Q), ("k", a.W_K, a.b_K), ("v", a.W_V, a.b_V)):
        sel = [j for j, kd in enumerate(kinds) if kd == kind]
        if not sel:
            continue
        new = x[sel] @ W[h] + b[h]  # (n, B, dh)
        cols = reads[sel]
        if kind == "q":
            scores = torch.einsum("nbe,bqe->nbq", new, k) / math.sqrt(dh)  # (n, B, p+1)
            z[sel] = torch.einsum("nbq,bqe->nbe", scores.softmax(-1), v)
        elif kind == "k":
            scores = (torch.einsum("be,bqe->bq", q, k) / math.sqrt(dh)).repeat(len(sel), 1, 1)  # (n, B, p+1)
            rows = torch.arange(len(sel), device=q.device)
            scores[rows, :, cols] = torch.einsum("be,nbe->nb", q, new) / math.sqrt(dh)
            z[sel] = torch.einsum("nbq,bqe->nbe", scores.softmax(-1), v)
        else:
            z_clean = torch.einsum("bq,bqe->be", pattern, v)
            z[sel] = z_clean + pattern[:, cols].T.unsqueeze(-1) * (new - v[:, cols].transpose(0, 1))
    return z


def _grad_at(model: HookedTransformer, graph: EdgeGraph, tokens: Tensor, ablated: Tensor, level: float,
             metric: str, chunk: int) -> Tensor:
    """d mean-metric / d mask at a mask of `level` everywhere, (n_edges,) float64."""
    fn = _metric(metric)
    targets = _targets(model, tokens)
    grad = torch.zeros(graph.n_edges, dtype=torch.float64, device=model.device)
    for start in range(0, len(tokens), chunk):
        part = tokens[start : start + chunk]
        mask = torch.full((graph.n_edges,), float(level), device=model.device, requires_grad=True)
        abl = ablated if ablated.shape[0] == 1 else ablated[start : start + chunk]
        total = fn(edge_forward(model, graph, part, abl, mask, chunk=chunk), targets[start : start + chunk]).sum()
        (g,) = torch.autograd.grad(total, mask)
        grad += g.double()
    return grad / len(tokens)


def eap_scores(model: HookedTransformer, graph: EdgeGraph, tokens: Tensor, ablated: Tensor, *,
               metric: str = "logit_diff", chunk: int = 64) -> np.ndarray:
    """(n_edges,) float64: EAP's estimate of each edge's exact score (one forward and one backward pass)."""
    return eap_ig_scores(model, graph, tokens, ablated, metric=metric, steps=1, chunk=chunk)


def eap_ig_scores(model: HookedTransformer, graph: EdgeGraph, tokens: Tensor, ablated: Tensor, *,
                  metric: str = "logit_diff", steps: int = EAP_IG_STEPS, chunk: int = 64) -> np.ndarray:
    """(n_edges,) float64: EAP-IG's estimate, gradients averaged over `steps` masks from 1 towards 0."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ArithLensError(f"EAP-IG steps must be a positive integer, not {steps!r}")
    tokens = tokens.to(model.device)
    total = sum(_grad_at(model, graph, tokens, ablated, 1.0 - k / steps, metric, chunk) for k in range(steps))
    return (-total / steps).cpu().numpy()


@dataclass(frozen=True)
class Agreement:
    """How well an attribution ranks edges like exact patching, over the edges of one receiver layer."""

    layer: int  # receiver layer; n_layers is the logits; -1 all edges together
    n_edges: int
    spearman: float  # rank correlation of |scores|
    top_k: int
    overlap: float  # |top-k by attribution & top-k by exact| / k (by |score|)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "n_edges": self.n_edges, "spearman": self.spearman, "top_k": self.top_k,
                "overlap": self.overlap}


def _agree(att: np.ndarray, exact: np.ndarray, layer: int, k: int) -> Agreement:
    a, e = np.abs(att), np.abs(exact)
    k = min(k, len(a))
    rho = float(spearmanr(a, e).statistic) if len(a) > 1 else float("nan")
    top_a, top_e = set(np.argsort(-a, kind="stable")[:k]), set(np.argsort(-e, kind="stable")[:k])
    return Agreement(layer, len(a), rho, k, len(top_a & top_e) / k if k else float("nan"))


def rank_agreement(graph: EdgeGraph, attribution: np.ndarray, exact: np.ndarray, *,
                   top_k: int = 100) -> list[Agreement]:
    """Spearman correlation and top-k overlap of |attribution| against |exact|, for all scored edges (layer -1)
    and per receiver layer; edges with a NaN exact score are left out."""
    if attribution.shape != (graph.n_edges,) or exact.shape != (graph.n_edges,):
        raise ArithLensError(f"scores are one per edge ({graph.n_edges})")
    scored = ~np.isnan(exact)
    out = [_agree(attribution[scored], exact[scored], -1, top_k)]
    for layer in range(graph.n_layers + 1):
        m = scored & (graph.receiver_layer == layer)
        if m.any():
            out.append(_agree(attribution[m], exact[m], layer, top_k))
    return out


__all__ = ["EAP_IG_STEPS", "Agreement", "eap_ig_scores", "eap_scores", "exact_scores", "rank_agreement"]
