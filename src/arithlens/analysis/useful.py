"""Useful positions and useful nodes (as the predecessor defines them): mean-ablate each position's residual stream, then
each head, MLP layer (and optionally neuron) at the useful positions, and tag what fails with typed tags.

"Unused" comes with its statistical power: after the screen on the varied set, every position and node that
failed nothing there is tried on fresh uniform questions, enough per qtype (598 by default) that a node
failing >= 0.5% of one qtype fails at least one of them with 95% probability; each node's failure rate
per qtype is reported with its one-sided 95% upper bound."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from arithlens.analysis.nodes import Major, Node, NodeList, Tag, impact_string
from arithlens.arith.curated import curated
from arithlens.arith.generators import uniform
from arithlens.arith.questions import QType, QuestionBatch
from arithlens.arith.vocab import tokens_to_string
from arithlens.errors import ArithLensError
from arithlens.interventions import (
    LOSS_THRESHOLD, Engine, Intervention, Means, Outcome, clean_caches, compute_means, mean_ablate, score,
)
from arithlens.model.hooks import act_names, node_site, output_sites
from arithlens.model.spec import ModelSpec
from arithlens.model.transformer import HookedTransformer

ANALYSIS_SEED = 345621  # the predecessor's analysis seed
RANDOM_QUESTIONS = 256  # the random part of the varied set for 3-layer 4-head models (the predecessor's default)
ATTN_TAGS = 4  # keys tagged per head (the predecessor declared 5 but stored 4)
MIN_ATTN_PERCENT = 1.0
# Questions per engine: bounds the memory of the cached clean run and of the threads' working copies. At 4,096
# the power stage's 1,794 questions ran as one engine and `arithlens useful` peaked at 1.84 GB; at 512 it peaks at
# 0.96 GB with the same tags and failure counts and no more CPU time (256 gains nothing more; see docs/speed.md).
CHUNK = 512
DETECT_RATE = 0.005  # the power stage finds a node failing this share of one qtype ...
DETECT_POWER = 0.95  # ... with this probability
CONFIDENCE = 0.95  # of the upper bounds on failure rates

# complexity class prefix and tag major per question type
_MATH = ((QType.ADD, "S", Major.MATH_ADD), (QType.SUB, "M", Major.MATH_SUB), (QType.NEG, "N", Major.MATH_NEG))

Progress = Callable[[str, int, int], None]  # (stage, done, total)
# (spec, count per qtype, rng, questions to leave out) -> questions: the power stage's source
QuestionSource = Callable[[ModelSpec, int, np.random.Generator, "QuestionBatch | None"], QuestionBatch]


def questions_for_power(rate: float = DETECT_RATE, power: float = DETECT_POWER) -> int:
    """Questions per qtype such that a node failing `rate` of them fails at least one with probability
    `power`: the smallest n with (1 - rate)^n <= 1 - power (598 for 0.5% at 95%)."""
    if not (0 < rate < 1 and 0 < power < 1):
        raise ArithLensError(f"rate and power must be in (0, 1), not {rate} and {power}")
    return math.ceil(math.log(1 - power) / math.log(1 - rate))


def upper_bound(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided exact (Clopper-Pearson) upper confidence bound of a binomial rate: the p at which
    P(X <= k | n, p) = 1 - confidence (for k = 0: 1 - (1 - confidence)^(1/n)); 1 when n == 0."""
    if n == 0 or k >= n:
        return 1.0
    alpha = 1 - confidence
    if k == 0:
        return 1 - alpha ** (1 / n)

    def cdf(p: float) -> float:
        logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
                + (n - i) * math.log1p(-p) for i in range(k + 1)]
        top = max(logs)
        return math.exp(top) * sum(math.exp(v - top) for v in logs)

    lo, hi = k / n, 1.0
    for _ in range(60):  # bisection: cdf falls as p rises
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > alpha else (lo, mid)
    return hi


def power_questions(spec: ModelSpec, count: int, rng: np.random.Generator,
                    exclude: QuestionBatch | None = None) -> QuestionBatch:
    """`count` uniform questions per qtype the model was trained on (the power stage's default source)."""
    from arithlens.analysis.faithfulness import fresh_questions

    return fresh_questions(spec, count, rng, exclude)


# ---------------------------------------------------------------------------------------------------
# The test questions


def varied_questions(spec: ModelSpec, *, count: int = RANDOM_QUESTIONS, seed: int = ANALYSIS_SEED) -> QuestionBatch:
    """A seeded random batch split by the model's operation mix, then the curated sets of the operations it
    was trained on (the predecessor's varied set: 256 + 214 = 470 questions for a 6-digit mixed model)."""
    if count < 0:
        raise ArithLensError(f"the random question count must be >= 0, not {count}")
    rng = np.random.default_rng(seed)
    n_sub, n_mul = count * spec.perc_sub // 100, count * spec.perc_mul // 100
    parts = [uniform(spec.n_digits, k, rng, op=op)
             for op, k in (("add", count - n_sub - n_mul), ("sub", n_sub), ("mul", n_mul)) if k > 0]
    keep = ([QType.ADD] if spec.perc_add > 0 else []) + ([QType.SUB, QType.NEG] if spec.perc_sub > 0 else [])
    hand = curated(spec.n_digits).batch
    parts.append(hand.select(np.isin(hand.qtype, keep)))
    return QuestionBatch.concat([p for p in parts if len(p)])


@dataclass(frozen=True)
class CleanCheck:
    """The questions the clean model answers right (the rest are dropped, as the predecessor did)."""

    kept: QuestionBatch
    dropped: list[str]  # "question answer -> model's answer"
    mean_loss: float  # mean answer NLL of the clean model over all the questions (< 0.04 is good)


def clean_check(model: HookedTransformer, questions: QuestionBatch) -> CleanCheck:
    tokens = questions.torch_tokens(str(model.device))
    answer = model.spec.layout.answer_logit_positions
    losses, wrongs, preds = [], [], []
    with torch.inference_mode():
        for start in range(0, len(tokens), CHUNK):
            t = tokens[start : start + CHUNK]
            logits = model(t, logit_positions=answer)
            out = score(logits, t[:, answer.start + 1 : answer.stop + 1])
            losses.append(out.loss), wrongs.append(out.wrong.any(1)), preds.append(logits.argmax(-1).cpu().numpy())
    wrong = np.concatenate(wrongs) if wrongs else np.zeros(0, bool)
    pred = np.concatenate(preds) if preds else np.zeros((0, len(answer)), int)
    dropped = [f"{questions.question_string(i)}{questions.answer_string(i)} -> {tokens_to_string(pred[i])}"
               for i in np.flatnonzero(wrong)]
    loss = float(np.concatenate(losses).mean()) if losses else float("nan")
    return CleanCheck(questions.select(~wrong), dropped, loss)


# ---------------------------------------------------------------------------------------------------
# Tags


def behaviour_tags(outcome: Outcome, questions: QuestionBatch) -> list[Tag]:
    """`Fail%`, `Impact` and `Math.Add/Sub/Neg` tags of one ablation; empty when no question fails."""
    fails = outcome.fails
    if not fails.any():
        return []
    n = questions.n_digits
    tags = [Tag(Major.FAIL, str(100 * int(fails.sum()) // len(fails)))]
    # Answer token j (0 = sign) is answer digit A(n+1-j).
    wrong_tokens = np.flatnonzero(outcome.wrong[fails].any(0))
    tags.append(Tag(Major.IMPACT, impact_string(n + 1 - j for j in wrong_tokens)))
    for qtype, prefix, major in _MATH:
        classes = questions.complexity[fails & (questions.qtype == qtype)]
        digits = sorted({c[1] for c in classes if len(c) > 1 and c[1].isdigit()})  # "M4+" gives "4"
        if digits:
            tags.append(Tag(major, prefix + "".join(digits)))
    return tags


def mean_attention(model: HookedTransformer, questions: QuestionBatch | torch.Tensor) -> torch.Tensor:
    """(layer, head, query, key) attention pattern averaged over the questions."""
    names = act_names("pattern", model.spec.n_layers)
    total, count = None, 0
    for part, cache in clean_caches(model, questions, names, chunk=CHUNK):
        s = torch.stack([cache[n].double().sum(0) for n in names])  # (layer, head, query, key)
        total, count = (s if total is None else total + s), count + len(part)
    return total / count


def attention_tags(pattern: torch.Tensor, node: Node) -> list[Tag]:
    """`Attn:P{key}={pct}` for the head's top keys at its position, strongest first, pct >= 1."""
    row = pattern[node.layer, node.num, node.position, : node.position + 1].double()
    pct = (row / row.sum() * 100).tolist()
    top = sorted(range(len(pct)), key=lambda k: (-pct[k], k))[:ATTN_TAGS]
    return [Tag(Major.ATTN, f"P{k}={pct[k]:.0f}") for k in top if pct[k] >= MIN_ATTN_PERCENT]


# ---------------------------------------------------------------------------------------------------
# Ablations


def residual_hooks(spec: ModelSpec) -> list[str]:
    return act_names("resid_post", spec.n_layers)


def node_hooks(spec: ModelSpec) -> list[str]:
    return output_sites(spec.n_layers)


def position_ablation(means: Means, spec: ModelSpec, position: int) -> list[Intervention]:
    """The residual stream at `position` mean-ablated after every layer."""
    return [mean_ablate(means, name, position) for name in residual_hooks(spec)]


def node_ablation(means: Means, node: Node) -> list[Intervention]:
    """The node's site (`node_site`: a head's `hook_z`, an MLP layer's or neuron's `hook_post`) at its position."""
    site = node_site(node)
    return [mean_ablate(means, site.hook, node.position, head=site.head, neuron=site.neuron)]


def sweep(model: HookedTransformer, questions: QuestionBatch, ablations: Sequence[list[Intervention]], *,
          threshold: float = LOSS_THRESHOLD, progress: Progress | None = None, stage: str = "ablate") -> list[Outcome]:
    """One `Outcome` per ablation (each a list of interventions applied together), over all the questions."""
    parts: list[list[Outcome]] = [[] for _ in ablations]
    chunks = range(0, len(questions), CHUNK)
    done, total = 0, len(chunks) * len(ablations)
    for start in chunks:
        rows = slice(start, start + CHUNK)
        engine = Engine(model, questions.select(rows), threshold=threshold)
        before = done

        def tick(n: int) -> None:
            if progress is not None:
                progress(stage, before + n, total)

        outcomes = engine.outcomes([[iv.rows(rows) for iv in ivs] for ivs in ablations], progress=tick)
        for k, outcome in enumerate(outcomes):
            parts[k].append(outcome)
        done += len(ablations)
    return [Outcome(np.concatenate([o.loss for o in p]), np.concatenate([o.wrong for o in p]), threshold)
            for p in parts]


@dataclass(frozen=True)
class UsefulResult:
    spec: ModelSpec
    questions: QuestionBatch  # the questions tested (those the clean model gets right)
    dropped: list[str]  # questions the clean model gets wrong, removed first
    clean_loss: float
    position_failures: list[int]  # failing questions when each position's residual stream is ablated
    nodes: NodeList
    reference_compat: bool
    seconds: float
    # Failures per tried node and qtype, screen and power stage together: {node name: {qtype: (failed, tried)}}
    failures: Mapping[str, Mapping[str, tuple[int, int]]] = field(default_factory=dict)
    power_questions: int = 0  # fresh questions per qtype the screen's unused positions and nodes were tried on
    power_found: tuple[str, ...] = ()  # positions (P7) and nodes the screen missed and the power stage found

    @property
    def useful_positions(self) -> list[int]:
        return [p for p, count in enumerate(self.position_failures) if count > 0]

    def verdict(self, node: Node | str) -> str:
        """`useful: fails 2.2% of NEG (66/3000)` or `unused: < 0.50% of each of ADD, SUB, NEG at 95%`."""
        name = node.name if isinstance(node, Node) else Node.parse(node).name
        counts = self.failures.get(name)
        if counts is None:
            return "not tried (not at a useful position)"
        if name in self.nodes:
            qt, (k, n) = max(counts.items(), key=lambda kv: (kv[1][0] / kv[1][1] if kv[1][1] else 0.0, kv[0]))
            return f"useful: fails {100 * k / n:.2g}% of {qt} ({k}/{n})"
        bound = max(upper_bound(k, n) for k, n in counts.values())
        return f"unused: < {100 * bound:.2f}% of each of {', '.join(counts)} at {100 * CONFIDENCE:.0f}%"


def find_useful(
    model: HookedTransformer,
    questions: QuestionBatch,
    *,
    neurons: bool = False,
    reference_compat: bool = False,
    positions: Iterable[int] | None = None,
    threshold: float = LOSS_THRESHOLD,
    power: int | None = None,
    power_seed: int = ANALYSIS_SEED,
    power_source: QuestionSource = power_questions,
    progress: Progress | None = None,
) -> UsefulResult:
    """Useful positions, then useful heads and MLP layers (and, with `neurons`, the neurons of useful MLP
    layers) at those positions, each tagged. `positions` overrides which positions' nodes are tried.

    Questions the clean model gets wrong are dropped first. Means are per layer; `reference_compat` uses
    layer 0's means for every layer, as the predecessor did. Then the power stage:
    positions and nodes that failed nothing are tried on `power` fresh questions per qtype (default
    `questions_for_power()`; 0 skips it) from `power_source`, with the same means; what fails there is
    useful too (tagged from those questions).
    """
    t0 = time.perf_counter()
    spec = model.spec
    power = questions_for_power() if power is None else power
    if power < 0:
        raise ArithLensError(f"the power stage's question count must be >= 0, not {power}")
    check = clean_check(model, questions)
    tested = check.kept
    if len(tested) == 0:
        raise ArithLensError(f"the model answers none of the {len(questions)} questions right: nothing to ablate")
    means = compute_means(model, tested, residual_hooks(spec) + node_hooks(spec))
    if reference_compat:
        means = means.layer0_for_all()
    extra = None
    if power > 0:
        extra = clean_check(model, power_source(spec, power, np.random.default_rng([power_seed, 1]), tested)).kept
        extra = extra if len(extra) else None
    found: list[str] = []

    by_position = sweep(model, tested, [position_ablation(means, spec, p) for p in range(spec.n_ctx)],
                        threshold=threshold, progress=progress, stage="positions")
    failures = [o.n_fails for o in by_position]
    if extra is not None and positions is None:
        quiet = [p for p, count in enumerate(failures) if count == 0]
        for p, outcome in zip(quiet, sweep(model, extra, [position_ablation(means, spec, p) for p in quiet],
                                           threshold=threshold, progress=progress, stage="power-pos")):
            if outcome.n_fails:
                failures[p] += outcome.n_fails
                found.append(f"P{p}")
    if positions is None:
        positions = [p for p, count in enumerate(failures) if count > 0]
    positions = sorted(set(positions))
    for p in positions:
        if not 0 <= p < spec.n_ctx:
            raise ArithLensError(f"position {p} is outside 0..{spec.n_ctx - 1}")

    candidates = [Node(p, layer, False, h) for p in positions for layer in range(spec.n_layers)
                  for h in range(spec.n_heads)]
    candidates += [Node(p, layer, True, -1) for p in positions for layer in range(spec.n_layers)]
    nodes, counts = _tag(model, tested, means, candidates, threshold, progress, "nodes")
    if extra is not None:
        unused = [n for n in candidates if n not in nodes]
        more, more_counts = _tag(model, extra, means, unused, threshold, progress, "power")
        for un in more:
            found.append(un.name)
            target = nodes.ensure(un.node)
            for tag in un.tags:
                target.add(tag)
        counts = _merge_counts(counts, more_counts)
    if neurons:
        cells = [n.node for n in nodes.mlps]
        found_neurons, neuron_counts = _tag(model, tested, means, [Node(c.position, c.layer, True, k) for c in cells
                                                                  for k in range(spec.d_mlp)],
                                            threshold, progress, "neurons")
        nodes = NodeList([*nodes, *found_neurons])
        counts = _merge_counts(counts, neuron_counts)
    if nodes.heads:
        pattern = mean_attention(model, tested)
        for un in nodes.heads:
            for tag in attention_tags(pattern, un.node):
                un.add(tag)
    return UsefulResult(spec, tested, check.dropped, check.mean_loss, failures, nodes, reference_compat,
                        time.perf_counter() - t0, counts, power if extra is not None else 0, tuple(found))


Counts = dict[str, dict[str, tuple[int, int]]]


def _merge_counts(a: Counts, b: Counts) -> Counts:
    out = {name: dict(per) for name, per in a.items()}
    for name, per in b.items():
        mine = out.setdefault(name, {})
        for qt, (k, n) in per.items():
            k0, n0 = mine.get(qt, (0, 0))
            mine[qt] = (k0 + k, n0 + n)
    return out


def _tag(model, questions, means, candidates: list[Node], threshold, progress, stage) -> tuple[NodeList, Counts]:
    """The candidates that fail a question, tagged; and every candidate's failures per qtype."""
    outcomes = sweep(model, questions, [node_ablation(means, n) for n in candidates],
                     threshold=threshold, progress=progress, stage=stage)
    qtypes = [(qt.name, questions.qtype == qt) for qt in QType if (questions.qtype == qt).any()]
    found = NodeList()
    counts: Counts = {}
    for node, outcome in zip(candidates, outcomes):
        fails = outcome.fails
        counts[node.name] = {name: (int(fails[m].sum()), int(m.sum())) for name, m in qtypes}
        tags = behaviour_tags(outcome, questions)
        if tags:
            un = found.ensure(node)
            for tag in tags:
                un.add(tag)
    return found, counts
