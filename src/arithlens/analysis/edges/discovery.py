"""Edge-circuit discovery: rank the edges by an attribution (EAP by default), keep the fewest top edges that are
>= the target exact on the search questions, prune greedily (drop low-ranked edges in blocks while the search set
stays so), then repair against held-out questions (add the next edges by rank until every qtype's 95% Wilson lower
bound is >= the target).

A question counts as exact when the argmax at every answer position is the answer token (as `faithfulness` has
it); ablated edges carry the senders' mean outputs (per position) over reference questions, or a resampled row.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from arithlens.analysis.edges.forward import ablation_values, edge_forward, mask_blocks
from arithlens.analysis.edges.graph import EdgeGraph, Sender
from arithlens.analysis.edges.scores import EAP_IG_STEPS, eap_ig_scores, eap_scores, exact_scores
from arithlens.analysis.faithfulness import (
    FAITHFULNESS_SEED, REFERENCE_QUESTIONS, fresh_questions, reference_questions, rng_for, supported_qtypes,
)
from arithlens.analysis.stats import wilson
from arithlens.arith.questions import QuestionBatch
from arithlens.errors import ArithLensError
from arithlens.model.transformer import HookedTransformer

TARGET = 0.99
METHODS = ("eap_ig", "eap", "exact")
# EAP: on the default model its top-k passes the held-out check at once (6,443 edges, 35 s CPU); EAP-IG's smaller
# top-k needs repairs there (7,987 edges, 144 s CPU; docs/edges.md)
DEFAULT_METHOD = "eap"
SEARCH_PER_QTYPE = 100
# 1,000 held-out questions per qtype allow 3 wrong answers at a 95% Wilson lower bound >= 99% (an observed rate
# >= 99.7%): the margin that lets the circuit hold on 10,000 questions it never saw
HELD_OUT_PER_QTYPE = 1000
FIRST_GUESS_MASS = 0.99  # EAP: the top 7,914 of 21,104 edges on the default model
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


def allowed_errors(n: int, target: float) -> int:
    """The most wrong answers of `n` whose 95% Wilson lower bound on the exact rate is still >= `target`
    (-1 when even none is: `n` is too small to certify it)."""
    k = int(n * (1 - target))
    while k >= 0 and wilson(n - k, n)[0] < target:
        k -= 1
    return k


@dataclass(frozen=True)
class CheckSet:
    """Questions a circuit is checked on, interleaved by qtype so every chunk holds each qtype's share (a check
    can stop at the first chunk that pushes one qtype over its `allowed` errors)."""

    tokens: Tensor  # (n, n_ctx)
    targets: Tensor  # (n, n_answer)
    qtype: np.ndarray  # (n,) index into `names`
    names: tuple[str, ...]
    allowed: np.ndarray  # (n_qtypes,) wrong answers a passing circuit may have per qtype
    ablated: Tensor  # (1 or n, n_senders, pos, d_model)

    @classmethod
    def build(cls, model: HookedTransformer, questions: QuestionBatch, ablated: Tensor, allowed) -> CheckSet:
        """`allowed(n)`: the wrong answers allowed among a qtype's n questions."""
        qts = [qt for qt in supported_qtypes(model.spec) if (questions.qtype == qt).any()]
        rank = np.zeros(len(questions), dtype=np.int64)  # a row's place among its qtype's rows
        code = np.full(len(questions), -1, dtype=np.int64)
        for i, qt in enumerate(qts):
            rows = np.flatnonzero(questions.qtype == qt)
            rank[rows], code[rows] = np.arange(len(rows)), i
        # round-robin over the qtypes, scaled so a qtype with fewer rows is spread evenly too
        counts = np.bincount(code, minlength=len(qts))
        order = np.lexsort((code, rank / counts[code]))
        tokens = questions.torch_tokens(str(model.device))[torch.as_tensor(order)]
        answer = model.spec.layout.answer_logit_positions
        return cls(tokens, tokens[:, answer.start + 1 : answer.stop + 1], code[order], tuple(q.name for q in qts),
                   np.array([allowed(int(c)) for c in counts]),
                   ablated if ablated.shape[0] == 1 else ablated[torch.as_tensor(order, device=ablated.device)])

    def __len__(self) -> int:
        return len(self.tokens)

    def wrong(self, model: HookedTransformer, graph: EdgeGraph, mask: Tensor, *, stop_early: bool = True,
              chunk: int = 32) -> np.ndarray | None:
        """(n_qtypes,) wrong answers per qtype with the edges of `mask` kept; None as soon as one qtype has more
        than it is allowed (when `stop_early`: the decision is the same as a full count's, for less work)."""
        wrong = np.zeros(len(self.names), dtype=np.int64)
        with torch.no_grad():
            blocks = mask_blocks(graph, mask.to(model.device, model.embed.W_E.dtype))  # made once for every chunk
            for start in range(0, len(self), chunk):
                abl = self.ablated if self.ablated.shape[0] == 1 else self.ablated[start : start + chunk]
                logits = edge_forward(model, graph, self.tokens[start : start + chunk], abl, mask, chunk=chunk,
                                      offs=blocks)
                bad = ~(logits.argmax(-1) == self.targets[start : start + chunk]).all(-1).cpu().numpy()
                wrong += np.bincount(self.qtype[start : start + chunk][bad], minlength=len(self.names))
                if stop_early and (wrong > self.allowed).any():
                    return None
        return wrong

    def rates(self, wrong: np.ndarray) -> dict[str, float]:
        counts = np.bincount(self.qtype, minlength=len(self.names))
        return {name: float((c - w) / c) for name, w, c in zip(self.names, wrong, counts)}


def _scores(method: str, model, graph, tokens, ablated, steps: int) -> np.ndarray:
    if method == "eap_ig":
        return eap_ig_scores(model, graph, tokens, ablated, steps=steps)
    if method == "eap":
        return eap_scores(model, graph, tokens, ablated)
    return exact_scores(model, graph, tokens, ablated)


def first_guess(scores: np.ndarray, order: np.ndarray, mass: float) -> int:
    """The fewest top edges (by |score|) that hold `mass` of the total |score|: where the top-k search starts."""
    cum = np.cumsum(np.nan_to_num(np.abs(scores[order])))
    if cum[-1] <= 0:
        return len(order)
    return int(min(len(order), np.searchsorted(cum, mass * cum[-1]) + 1))


def discover(model: HookedTransformer, *, method: str = DEFAULT_METHOD, ablation: str = "mean",
             target: float = TARGET, min_position: int | None = None, search_per_qtype: int = SEARCH_PER_QTYPE,
             score_per_qtype: int = 32, held_out_per_qtype: int = HELD_OUT_PER_QTYPE, steps: int = EAP_IG_STEPS,
             prune_passes: int = 12, mass: float = FIRST_GUESS_MASS, seed: int = FAITHFULNESS_SEED,
             search: QuestionBatch | None = None, held_out: QuestionBatch | None = None,
             reference: QuestionBatch | None = None, start: EdgeCircuit | None = None,
             progress: Progress | None = None) -> EdgeCircuit:
    """An edge circuit of `model` whose exact rate on `held_out_per_qtype` fresh questions per qtype has a 95%
    Wilson lower bound >= `target` for every qtype (so it holds on more questions than it was checked on).

    `min_position`: the first receiver position (default: the first answer position). Edges are ranked by
    `method` on `score_per_qtype` questions per qtype; the top-k search starts from the fewest top edges holding
    `mass` of the total |score| and uses `search_per_qtype` questions, as do the `prune_passes` trial removals
    (a count, not a time, so a seed gives one circuit); a circuit passes the search set when each qtype is
    >= `target` exact there, and the repair then adds edges until the held-out bound holds. Mean ablation uses `REFERENCE_QUESTIONS` reference
    questions; resample draws a row per question. `search`, `held_out`, `reference`: question sets to use
    instead of fresh ones (a planted model's; a given held-out set is checked against `target` itself, not its
    Wilson bound, since it may be small).

    `start`: a circuit of this model (found under another ablation, e.g. the mean one) to repair instead of a top-k
    search: its edges are kept, the best-ranked missing ones (ranked by `method` under `ablation`) are added until
    the held-out set passes under `ablation` and under `start`'s own ablation too, so the result holds under both."""
    if method not in METHODS:
        raise ArithLensError(f"edge method {method!r} is not one of {', '.join(METHODS)}")
    if ablation not in ("mean", "resample"):
        raise ArithLensError(f"edge circuits are found under mean or resample ablation, not {ablation!r}")
    if not 0.0 < target <= 1.0:
        raise ArithLensError(f"target must be in (0, 1], not {target!r}")
    if not 0.0 < mass <= 1.0:
        raise ArithLensError(f"mass must be in (0, 1], not {mass!r}")
    say = progress or (lambda _: None)
    t0 = time.perf_counter()
    spec = model.spec
    if start is not None and min_position is None:
        min_position = start.graph.min_position
    graph = EdgeGraph.build(spec, min_position=spec.layout.answer_logit_positions.start if min_position is None
                            else min_position)
    if start is not None and (start.graph.min_position != graph.min_position
                              or start.graph.n_edges != graph.n_edges):
        raise ArithLensError(f"the start circuit's graph ({start.graph.n_edges:,} edges, receivers from "
                             f"P{start.graph.min_position}) is not this model's graph from P{graph.min_position} "
                             f"({graph.n_edges:,} edges)")
    if search is None:
        search = fresh_questions(spec, search_per_qtype, rng_for(seed, STREAM_EDGE_SEARCH))
    certify = held_out is None
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

    def held_allowed(n: int) -> int:
        if not certify:
            return int(n * (1 - target) + 1e-9)
        k = allowed_errors(n, target)
        if k < 0:
            raise ArithLensError(f"{n} held-out questions per qtype cannot certify {target:.1%} (a 95% Wilson "
                                 f"lower bound needs at least {math.ceil(3.84 * target / (1 - target))})"
                                 if target < 1 else "a target of 100% cannot be certified on a sample")
        return k

    held_set = CheckSet.build(model, held, abl_held, held_allowed)
    # repairing a circuit found under another ablation: the held-out check asks for both
    also_held = None
    if start is not None and start.ablation != ablation:
        other = ablation_values(model, ref_tokens, start.ablation, batch=len(held), rng=rs)
        also_held = CheckSet.build(model, held, other, held_allowed)
    # the search set allows `target`'s share of wrong answers: its circuit is the repair's starting point
    search_set = CheckSet.build(model, search, abl_search, lambda n: int(n * (1 - target) + 1e-9))
    # the scoring set: the first `score_per_qtype` search questions of each qtype
    pick = np.concatenate([np.flatnonzero(search.qtype == qt)[:score_per_qtype] for qt in supported_qtypes(spec)])
    score_tokens = search.torch_tokens(str(model.device))[torch.as_tensor(pick)]
    abl_score = abl_search if abl_search.shape[0] == 1 else abl_search[torch.as_tensor(pick)]
    scores = _scores(method, model, graph, score_tokens, abl_score, steps)
    order = np.argsort(-np.abs(scores), kind="stable")
    say(f"scored {graph.n_edges} edges by {method} in {time.perf_counter() - t0:.1f}s")
    n_checks = [0, 0]  # forward checks run on the search and held-out sets

    def mask_of(kept: np.ndarray) -> Tensor:
        return torch.as_tensor(kept, dtype=torch.float32, device=model.device)

    def top(k: int) -> np.ndarray:
        kept = np.zeros(graph.n_edges, dtype=bool)
        kept[order[:k]] = True
        return kept

    passed: dict[bytes, np.ndarray] = {}  # held-out wrong counts of the circuits that passed, by their edges

    def passes(kept: np.ndarray, held_out: bool = False) -> bool:
        n_checks[held_out] += 1
        if held_out and also_held is not None and also_held.wrong(model, graph, mask_of(kept)) is None:
            return False
        wrong = (held_set if held_out else search_set).wrong(model, graph, mask_of(kept))
        if held_out and wrong is not None:
            passed[kept.tobytes()] = wrong
        return wrong is not None

    def repair(kept: np.ndarray) -> np.ndarray:
        """Add the best-ranked missing edges until the held-out set passes: steps of 2%, 4%, 8%, ... of the
        circuit, then bisect the last step (few passes over the held-out set)."""
        if passes(kept, True):
            return kept
        missing = order[~kept[order]]
        step, lo = max(8, int(kept.sum()) // 50), 0
        while True:
            hi = min(lo + step, len(missing))
            trial = kept.copy()
            trial[missing[:hi]] = True
            if hi == len(missing) or passes(trial, True):
                break
            lo, step = hi, 2 * step
        while hi - lo > max(1, hi // 50):
            mid = (lo + hi) // 2
            trial = kept.copy()
            trial[missing[:mid]] = True
            lo, hi = (lo, mid) if passes(trial, True) else (mid, hi)
        kept = kept.copy()
        kept[missing[:hi]] = True
        return kept

    n = graph.n_edges
    if start is not None:  # repair only: no top-k search, no pruning
        kept, stages = start.kept.copy(), {"start": int(start.n_edges)}
    else:
        # top-k: gallop from the first guess by factors of 5/4, then bisect to 1/64 of k (assumes more top edges
        # never hurt, which the repair step backs up)
        k = first_guess(scores, order, mass)
        if passes(top(k)):
            hi, lo = k, 0
            while hi > 16:
                trial = max(16, hi * 4 // 5)
                if not passes(top(trial)):
                    lo = trial
                    break
                hi = trial
        else:
            lo, hi = k, n
            while lo < n:
                trial = min(n, max(lo + 1, lo * 5 // 4))
                if trial == n or passes(top(trial)):
                    hi = trial
                    break
                lo = trial
        while hi - lo > max(1, hi // 64):
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if passes(top(mid)) else (mid, hi)
        kept = top(hi)
        stages = {"first_guess": int(k), "top_k": int(hi)}
        say(f"top-k: {hi} edges (first guess {k}) at {time.perf_counter() - t0:.1f}s")

        # prune first, on the search set (lowest-ranked kept edges first, in blocks that halve on failure), then one
        # repair against the held-out set
        tried = 0
        queue = [order[kept[order]][::-1]]  # one block: every kept edge, lowest rank first
        block = max(1, int(kept.sum()) // 8)
        queue = [queue[0][i : i + block] for i in range(0, len(queue[0]), block)]
        while queue and tried < prune_passes:
            part = queue.pop(0)
            tried += 1
            trial = kept.copy()
            trial[part] = False
            if passes(trial):
                kept = trial
            elif len(part) > 1:
                queue[:0] = [part[: len(part) // 2], part[len(part) // 2 :]]
        stages["prune"] = int(kept.sum())
        say(f"prune: {kept.sum()} edges at {time.perf_counter() - t0:.1f}s")
    kept = repair(kept)
    stages["final"] = int(kept.sum())
    wrong = passed.get(kept.tobytes())  # the last held-out check counted every question when it passed
    if wrong is None:
        n_checks[1] += 1
        wrong = held_set.wrong(model, graph, mask_of(kept), stop_early=False)
    exact = held_set.rates(wrong)
    say(f"final: {kept.sum()} edges, exact {exact} at {time.perf_counter() - t0:.1f}s "
        f"({n_checks[0]} search and {n_checks[1]} held-out checks)")
    n_held = int(np.bincount(held_set.qtype).min())
    if (wrong > held_set.allowed).any():  # every edge kept and still short: the model itself misses the target
        say(f"no circuit reaches the target: even the whole model is {exact} on the held-out set")
    return EdgeCircuit(graph, kept, scores, method, ablation, exact, n_held, stages, time.perf_counter() - t0)


__all__ = ["HELD_OUT_PER_QTYPE", "METHODS", "TARGET", "CheckSet", "EdgeCircuit", "allowed_errors", "discover", "exact_rates",
           "first_guess"]
