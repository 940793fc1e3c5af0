"""Edge-circuit discovery: rank the edges by an attribution (EAP-IG by default), keep the fewest top edges that are
exact on the search questions, repair against held-out questions (add the next edges by rank until every qtype is
>= the target exact), then prune greedily (drop low-ranked edges in blocks while the search set stays exact), and repair again.

A question counts as exact when the argmax at every answer position is the answer token (as `faithfulness` has
it); ablated edges carry the senders' mean outputs (per position) over reference questions, or a resampled row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from arithlens.analysis.edges.forward import ablation_values, edge_forward
from arithlens.analysis.edges.graph import EdgeGraph, Sender
from arithlens.analysis.edges.scores import EAP_IG_STEPS, eap_ig_scores, eap_scores, exact_scores
from arithlens.analysis.faithfulness import (
    FAITHFULNESS_SEED, REFERENCE_QUESTIONS, fresh_questions, reference_questions, rng_for, supported_qtypes,
)
from arithlens.arith.questions import QuestionBatch
from arithlens.errors import ArithLensError
from arithlens.model.transformer import HookedTransformer

TARGET = 0.99
METHODS = ("eap_ig", "eap", "exact")
STREAM_EDGE_SEARCH, STREAM_EDGE_HELD_OUT, STREAM_EDGE_REFERENCE, STREAM_EDGE_RESAMPLE = 28_001, 28_002, 28_003, 28_004

Progress = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class EdgeCircuit:
    """A set of edges with the ranking it came from and its exact rate per qtype on held-out questions."""

    graph: EdgeGraph = field(repr=False)
    kept: np.ndarray = field(repr=False)  # (n_edges,) bool
    scores: np.ndarray = field(repr=False)  # (n_edges,) the ranking's scores (metric change when ablated)
    method: str
    ablation: str
    exact: dict[str, float]  # qtype -> fraction of held-out questions exact with only the circuit's edges
    n_held_out: int  # held-out questions per qtype (the fewest of any qtype)
    stages: dict[str, int]  # edges after top-k, repair and pruning
    seconds: float  # wall time of the discovery

    @property
    def n_edges(self) -> int:
        return int(self.kept.sum())

    @property
    def edges(self) -> list[str]:
        return [n for n, k in zip(self.graph.names, self.kept) if k]

    @property
    def senders(self) -> list[Sender]:
        return self.graph.senders_in(self.kept)

    @property
    def nodes(self) -> list[str]:
        """Heads and MLPs that send a kept edge or receive one (the embedding and the logits left out)."""
        names = {s.name for s in self.senders if s.layer >= 0}
        for e, k in zip(self.graph.edges, self.kept):
            r = e.receiver
            if k and r.kind != "logits":
                names.add(f"P{r.position}L{r.layer}" + ("MLP" if r.kind == "mlp" else f"H{r.head}"))
        return sorted(names)

    def mask(self, device: str | torch.device = "cpu") -> Tensor:
        return torch.as_tensor(self.kept, dtype=torch.float32, device=device)

    def to_dict(self) -> dict:
        return {"method": self.method, "ablation": self.ablation, "n_edges": self.n_edges,
                "n_edges_all": self.graph.n_edges, "min_position": self.graph.min_position, "edges": self.edges,
                "nodes": self.nodes, "exact": dict(self.exact), "n_held_out": self.n_held_out,
                "stages": dict(self.stages), "seconds": self.seconds,
                "scores": [None if np.isnan(x) else float(x) for x in self.scores]}

    @classmethod
    def from_dict(cls, data: dict, spec) -> EdgeCircuit:
        """The circuit `to_dict` wrote, for a model with `spec`'s sizes (its edges checked against the graph)."""
        graph = EdgeGraph.build(spec, min_position=int(data["min_position"]))
        if len(data["scores"]) != graph.n_edges:
            raise ArithLensError(f"the circuit scores {len(data['scores'])} edges; this model's graph has "
                                 f"{graph.n_edges}")
        kept = graph.mask(data["edges"]).numpy() > 0.5
        scores = np.array([np.nan if x is None else x for x in data["scores"]], dtype=np.float64)
        return cls(graph, kept, scores, data["method"], data["ablation"], dict(data["exact"]), int(data["n_held_out"]),
                   dict(data["stages"]), float(data["seconds"]))


def exact_rates(model: HookedTransformer, graph: EdgeGraph, questions: QuestionBatch, ablated: Tensor,
                mask: Tensor, *, chunk: int = 64) -> dict[str, float]:
    """qtype -> fraction of `questions` answered exactly right with the edges of `mask` kept."""
    tokens = questions.torch_tokens(str(model.device))
    answer = model.spec.layout.answer_logit_positions
    targets = tokens[:, answer.start + 1 : answer.stop + 1]
    with torch.no_grad():
        logits = edge_forward(model, graph, tokens, ablated, mask, chunk=chunk)
    right = (logits.argmax(-1) == targets).all(-1).cpu().numpy()
    return {qt.name: float(right[questions.qtype == qt].mean()) for qt in supported_qtypes(model.spec)
            if (questions.qtype == qt).any()}


def _scores(method: str, model, graph, tokens, ablated, steps: int) -> np.ndarray:
    if method == "eap_ig":
        return eap_ig_scores(model, graph, tokens, ablated, steps=steps)
    if method == "eap":
        return eap_scores(model, graph, tokens, ablated)
    return exact_scores(model, graph, tokens, ablated)


def discover(model: HookedTransformer, *, method: str = "eap_ig", ablation: str = "mean", target: float = TARGET,
             min_position: int | None = None, search_per_qtype: int = 100, score_per_qtype: int = 32,
             held_out_per_qtype: int = 400, steps: int = EAP_IG_STEPS, prune_passes: int = 12,
             seed: int = FAITHFULNESS_SEED, search: QuestionBatch | None = None,
             held_out: QuestionBatch | None = None, reference: QuestionBatch | None = None,
             progress: Progress | None = None) -> EdgeCircuit:
    """An edge circuit of `model` that is >= `target` exact per qtype on `held_out_per_qtype` fresh questions.

    `min_position`: the first receiver position (default: the first answer position). Edges are ranked by
    `method` on `score_per_qtype` questions per qtype; top-k and pruning use `search_per_qtype`; pruning stops
    after `prune_passes` trial removals (a count, not a time, so a seed gives one circuit). Mean ablation uses `REFERENCE_QUESTIONS` reference questions; resample draws a row per
    question. `search`, `held_out`, `reference`: question sets to use instead of fresh ones (a planted model's)."""
    if method not in METHODS:
        raise ArithLensError(f"edge method {method!r} is not one of {', '.join(METHODS)}")
    if ablation not in ("mean", "resample"):
        raise ArithLensError(f"edge circuits are found under mean or resample ablation, not {ablation!r}")
    if not 0.0 < target <= 1.0:
        raise ArithLensError(f"target must be in (0, 1], not {target!r}")
    say = progress or (lambda _: None)
    t0 = time.perf_counter()
    spec = model.spec
    graph = EdgeGraph.build(spec, min_position=spec.layout.answer_logit_positions.start if min_position is None
                            else min_position)
    if search is None:
        search = fresh_questions(spec, search_per_qtype, rng_for(seed, STREAM_EDGE_SEARCH))
    held = held_out if held_out is not None else fresh_questions(spec, held_out_per_qtype,
                                                                 rng_for(seed, STREAM_EDGE_HELD_OUT), exclude=search)
    if reference is None:
        reference = reference_questions(spec, REFERENCE_QUESTIONS, rng_for(seed, STREAM_EDGE_REFERENCE))
    ref_tokens = reference.torch_tokens(str(model.device))
    rs = rng_for(seed, STREAM_EDGE_RESAMPLE)

    def values(batch: int) -> Tensor:
        return ablation_values(model, ref_tokens, ablation, batch=batch, rng=rs)

    abl_search = values(len(search)) if ablation == "resample" else ablation_values(model, ref_tokens, "mean")
    abl_held = values(len(held)) if ablation == "resample" else abl_search
    # the scoring set: the first `score_per_qtype` search questions of each qtype
    pick = np.concatenate([np.flatnonzero(search.qtype == qt)[:score_per_qtype] for qt in supported_qtypes(spec)])
    score_tokens = search.torch_tokens(str(model.device))[torch.as_tensor(pick)]
    abl_score = abl_search if abl_search.shape[0] == 1 else abl_search[torch.as_tensor(pick)]
    scores = _scores(method, model, graph, score_tokens, abl_score, steps)
    order = np.argsort(-np.abs(scores), kind="stable")
    say(f"scored {graph.n_edges} edges by {method} in {time.perf_counter() - t0:.1f}s")

    def mask_of(kept: np.ndarray) -> Tensor:
        return torch.as_tensor(kept, dtype=torch.float32, device=model.device)

    def top(k: int) -> np.ndarray:
        kept = np.zeros(graph.n_edges, dtype=bool)
        kept[order[:k]] = True
        return kept

    def passes(kept: np.ndarray, questions: QuestionBatch, abl: Tensor) -> bool:
        return min(exact_rates(model, graph, questions, abl, mask_of(kept)).values()) >= target

    # top-k: double, then bisect (assumes more top edges never hurt, which the repair step backs up)
    hi = 16
    while hi < graph.n_edges and not passes(top(hi), search, abl_search):
        hi *= 2
    hi = min(hi, graph.n_edges)
    lo = hi // 2 if hi > 16 else 0
    while hi - lo > max(1, hi // 64):
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if passes(top(mid), search, abl_search) else (mid, hi)
    kept = top(hi)
    stages = {"top_k": int(hi)}
    say(f"top-k: {hi} edges at {time.perf_counter() - t0:.1f}s")

    def repair(kept: np.ndarray) -> np.ndarray:
        """Add the best-ranked missing edges until the held-out set passes: steps of 2%, 4%, 8%, ... of the
        circuit, then bisect the last step (few passes over the held-out set)."""
        if passes(kept, held, abl_held):
            return kept
        missing = order[~kept[order]]
        step, lo = max(8, int(kept.sum()) // 50), 0
        while True:
            hi = min(lo + step, len(missing))
            trial = kept.copy()
            trial[missing[:hi]] = True
            if hi == len(missing) or passes(trial, held, abl_held):
                break
            lo, step = hi, 2 * step
        while hi - lo > max(1, hi // 50):
            mid = (lo + hi) // 2
            trial = kept.copy()
            trial[missing[:mid]] = True
            lo, hi = (lo, mid) if passes(trial, held, abl_held) else (mid, hi)
        kept = kept.copy()
        kept[missing[:hi]] = True
        return kept

    kept = repair(kept)
    stages["repair"] = int(kept.sum())
    say(f"repair: {kept.sum()} edges at {time.perf_counter() - t0:.1f}s")
    # prune: lowest-ranked kept edges first, in blocks that halve on failure
    tried = 0
    queue = [order[kept[order]][::-1]]  # one block: every kept edge, lowest rank first
    block = max(1, int(kept.sum()) // 8)
    queue = [queue[0][i : i + block] for i in range(0, len(queue[0]), block)]
    while queue and tried < prune_passes:
        part = queue.pop(0)
        tried += 1
        trial = kept.copy()
        trial[part] = False
        if passes(trial, search, abl_search):
            kept = trial
        elif len(part) > 1:
            queue[:0] = [part[: len(part) // 2], part[len(part) // 2 :]]
    stages["prune"] = int(kept.sum())
    kept = repair(kept)
    stages["final"] = int(kept.sum())
    exact = exact_rates(model, graph, held, abl_held, mask_of(kept))
    say(f"final: {kept.sum()} edges, exact {exact} at {time.perf_counter() - t0:.1f}s")
    n_held = min(int((held.qtype == qt).sum()) for qt in supported_qtypes(spec) if (held.qtype == qt).any())
    return EdgeCircuit(graph, kept, scores, method, ablation, exact, n_held, stages,
                       time.perf_counter() - t0)


__all__ = ["METHODS", "TARGET", "EdgeCircuit", "discover", "exact_rates"]
