"""Edge scores: exact (each edge ablated alone, the metric's change), EAP (the first-order estimate at mask 1)
and EAP-IG (gradients averaged along the mask from 1 towards 0), and their rank agreement with exact, per layer.

Every score is the change of the metric's mean over questions when the edge is ablated (ablated minus clean), so
a negative logit-difference score marks an edge the answer needs. EAP's estimate is -dM/dmask at mask 1, i.e.
(ablated - clean sender value) . dM/d(receiver input); EAP-IG's is -dM/dmask averaged at masks 1, 1 - 1/steps,
..., 1/steps (every edge moved together, left Riemann sum: `steps=1` is EAP).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor

from arithlens.analysis.edges.forward import METRICS, edge_forward
from arithlens.analysis.edges.graph import EdgeGraph
from arithlens.errors import ArithLensError
from arithlens.model.transformer import HookedTransformer

EAP_IG_STEPS = 5


def _metric(name: str):
    if name not in METRICS:
        raise ArithLensError(f"edge metric {name!r} is not one of {', '.join(METRICS)}")
    return METRICS[name]


def _targets(model: HookedTransformer, tokens: Tensor) -> Tensor:
    answer = model.spec.layout.answer_logit_positions
    return tokens[:, answer.start + 1 : answer.stop + 1].to(model.device)


def exact_scores(model: HookedTransformer, graph: EdgeGraph, tokens: Tensor, ablated: Tensor, *,
                 metric: str = "logit_diff", edges: np.ndarray | None = None, rows: int = 512,
                 base: Tensor | None = None) -> np.ndarray:
    """(n_edges,) float64: the mean metric change when each edge alone is ablated from `base` (default: every
    edge kept); NaN for edges not in `edges` (default: all). Several edges run per forward, stacked along the
    batch axis (`rows` question-rows at a time)."""
    fn = _metric(metric)
    tokens = tokens.to(model.device)
    B = len(tokens)
    targets = _targets(model, tokens)
    todo = np.arange(graph.n_edges) if edges is None else np.asarray(edges, dtype=np.int64)
    base = torch.ones(graph.n_edges, device=model.device) if base is None else base.to(model.device).float()
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
