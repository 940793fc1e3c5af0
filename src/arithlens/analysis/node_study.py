"""The node study: is one head doing several jobs? (the founding notebook's question; `arithlens node`)

For one head (`P18L0H0`) or whole MLP layer (`P18L0MLP`) of an addition/subtraction model, on seeded
question sets, with one forward pass per question set (plus the cheap partial runs of the engine):

1. Attention (heads): mean attention from the node's position to every earlier position, per qtype, on a
   uniform set mixed like the training data. The node computes answer digit k = layout.answer_digit_at(pos)
   (A2 at P18); its candidate digits are k-1 (carry/borrow: A{k-1}.SC / .MB / .NB), k (base: SA / MD / ND)
   and whatever operand digit pairs (Dj, D'j) the head actually attends to. The *study digit* t is the
   most-attended pair when it holds >= ATTEND_MIN of the attention, else k-1 (or `digit=` if given).
2. Necessity: tricase sets at digit t with the qtype fixed by the higher digits (high="decide", so
   carries and borrows do leave digit t), `questions` per qtype x class, split again by the real
   carry/borrow out of t. The node is replaced by (a) its mean over the mixed set, (b) its value on a random
   question of the mixed set (resampling), (c) the mean over this qtype's questions of the *same* real
   carry class and (d) of the *other* class. Per group: failure rate (the useful-node failure criterion) with a
   Wilson 95% CI and the wrong rate of every answer token. (c) and (d) test what the node carries:
   if it carries the carry predicate, (c) breaks little and (d) breaks the digit t+1.
   `mean_position`: where the mixed-set mean lies on each qtype's no-carry (0) -> carry (1) axis; it
   explains why mean ablation may break only one class (or none) of a qtype.
3. Sufficiency: `pairs` clean/store pairs per qtype that differ only in the digit-t pair, chosen so the
   real carry/borrow out of t flips (carry-in and every other digit kept). The node's activation is
   patched from store into clean; success = every answer token equals the clean answer with digit t+1
   recomputed (task layer) with the store's carry/borrow. Clean questions are ones the model gets right.
   Control: the same patch through every other head of the layer.
4. Representation: the node's output (hook_z . W_O, i.e. hook_result; for an MLP hook_post . W_out) on
   `per_case` rows per qtype x class. Per qtype: PCA (EVR), silhouette of the T classes and of the real
   carry, and 5-fold cross-validated logistic probes (with a `permutations` label-shuffle
   null) for the real carry/borrow out of t and for the pair predicate (ADD Dt+D't >= 10, SUB Dt < D't,
   NEG Dt > D't). A node that sees only (Dt, D't) cannot know the carry into t, so the real-carry probe
   is bounded by `carry_ceiling_from_pair` (the best any function of the pair does).
5. Shared or separate: cosines between the qtypes' carry-vs-no-carry class-mean directions and between
   their probe weight vectors (in whitened output coordinates), each with a null from shuffled labels;
   probe transfer (trained on one qtype, scored on another: near 1 or near 0 means one axis, near 0.5
   different axes).
6. Operator blindness (§14.2 item 6): the 10x10 grid of mean outputs over (Dt, D't) per qtype and the
   share of output variance explained by the pair, by the qtype and by pair x qtype cells.

Decision rules (constants below):
- encodes(op): max(real-carry probe, pair-predicate probe) accuracy >= PROBE_MIN with permutation
  p <= P_MAX (so it needs >= 99 permutations). Gives the PCA tag `Math.Add:A{t}.SP` /
  `Math.Sub:A{t}.MP` / `Math.Neg:A{t}.NP`.
- necessary(op): the rate of a wrong A(t+1) (the digit a carry/borrow out of t changes) under resample
  ablation, over the qtype's questions, has a Wilson lower bound above the clean rate's upper bound, and
  exceeds the clean rate by at least NECESSARY_MIN (5 points): with 3,000 questions per qtype a 1% effect is
  significant, but a qtype whose answers break that rarely does not rely on the node for the job.
- sufficient(op): patching success (exact answer) >= SUFFICIENT_MIN.
- role(op) = encodes(op) and (necessary(op) or sufficient(op)); the node computes A{t}.SC for ADD,
  A{t}.MB for SUB, A{t}.NB for NEG where it has the role.
- polysemantic: a role for >= 2 qtypes. Shared direction: every pair of role qtypes has
  |cos(class-mean directions)| >= SHARED_COS_MIN with null p <= P_MAX. Operator-blind: pair x qtype
  cells explain at most OPERATOR_BLIND_MAX more variance than the pair alone.
- A study digit t equal to k (the node reads the base pair of the digit it predicts) gets no role: a
  carry/borrow out of t changes A(t+1), which is predicted before the node's position.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from arithlens.analysis import stats
from arithlens.analysis.interventions import Engine, Intervention, patch_from, record
from arithlens.analysis.nodes import Major, Node, Tag
from arithlens.arith.generators import uniform
from arithlens.arith.questions import QType, QuestionBatch
from arithlens.arith.tricase import CASES, tricase, tricase_count
from arithlens.errors import ArithLensError

OPS = (QType.ADD, QType.SUB, QType.NEG)
CARRY = {QType.ADD: "SC", QType.SUB: "MB", QType.NEG: "NB"}  # real carry / borrow out of a digit
WORD = {QType.ADD: "carry", QType.SUB: "borrow", QType.NEG: "borrow"}
PAIR_RULE = {QType.ADD: "Dt+D't>=10", QType.SUB: "Dt<D't", QType.NEG: "Dt>D't"}
PCA_TAG = {QType.ADD: (Major.MATH_ADD, "SP"), QType.SUB: (Major.MATH_SUB, "MP"), QType.NEG: (Major.MATH_NEG, "NP")}
ABLATIONS = ("mean", "resample", "same_class_mean", "other_class_mean")

ATTEND_MIN = 0.5
PROBE_MIN = 0.95
P_MAX = 0.01
SUFFICIENT_MIN = 0.8
NECESSARY_MIN = 0.05
SHARED_COS_MIN = 0.5
OPERATOR_BLIND_MAX = 0.05
PROBE_COMPONENTS = 32  # probes see the top principal components (a head's output has rank <= d_head)
PCA_COMPONENTS = 6


@dataclass(frozen=True)
class StudyOptions:
    questions: int = 1000  # necessity: questions per qtype x T class
    pairs: int = 200  # sufficiency: clean/store pairs per qtype
    per_case: int = 300  # representation: rows per qtype x T class
    mixed: int = 1000  # mixed set: attention, means, resampling
    permutations: int = 100  # permutation null of probes and cosines
    seed: int = 0
    digit: int | None = None  # study digit; None: from attention (heads) or k-1

    def __post_init__(self) -> None:
        for name, low in (("questions", 10), ("pairs", 10), ("per_case", 10), ("mixed", 10), ("permutations", 0)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ArithLensError(f"{name} must be an integer >= {low}, not {value!r}")


@dataclass(frozen=True)
class NodeStudy:
    """A finished study: `data` is the JSON object (every number), `verdict` its plain-words summary."""

    node: Node
    data: dict

    @property
    def verdict(self) -> str:
        return self.data["verdict"]["text"]

    @property
    def tags(self) -> list[Tag]:
        return [Tag.parse(t) for t in self.data["tags"]]

    def to_json(self) -> str:
        return json.dumps(self.data, indent=1, allow_nan=False) + "\n"

    def save(self, out_dir: str | Path) -> Path:
        from arithlens.io import write_atomic

        path = Path(out_dir) / f"{self.node.name}_study.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, self.to_json().encode())
        return path

    def summary(self) -> str:
        return summarise(self.data)


# ---------------------------------------------------------------------------------------------------
# The node as a site in the model


@dataclass(frozen=True)
class _Site:
    node: Node

    @property
    def hook(self) -> str:
        layer = self.node.layer
        return f"blocks.{layer}.attn.hook_z" if self.node.is_head else f"blocks.{layer}.mlp.hook_post"

    @property
    def head(self) -> int | None:
        return self.node.num if self.node.is_head else None

    def take(self, acts: torch.Tensor, positions) -> torch.Tensor:
        """Full activation (batch, pos, ...) -> the node's (batch, d_site)."""
        i = list(positions).index(self.node.position)
        return acts[:, i, self.head] if self.node.is_head else acts[:, i]

    def output(self, model, acts: np.ndarray) -> np.ndarray:
        """(batch, d_site) -> the node's write to the residual stream (batch, d_model), bias excluded."""
        block = model.blocks[self.node.layer]
        w = block.attn.W_O[self.head] if self.node.is_head else block.mlp.W_out  # (d_site, d_model)
        return acts @ w.detach().double().cpu().numpy()

    def replace(self, value: np.ndarray | torch.Tensor, kind: str) -> Intervention:
        """Set the node to `value` ((1 or batch, d_site)) at its position."""
        v = torch.as_tensor(value, dtype=torch.float32)[:, None]  # (batch, 1, d_site)
        return Intervention(self.hook, (self.node.position,), self.head, None, kind, v)


def _capture(model, site: _Site, questions: QuestionBatch, *, engine: bool, pattern: bool = False,
             cache: StudyCache | None = None):
    """One clean forward pass: the node's activation (batch, d_site) float64, optionally the head's attention
    row (batch, pos+1), and an `Engine` on these questions when asked (the pass is the engine's own).

    The pass records the whole hooked activations, so with a `cache` the heads of one layer share it: the key is
    the questions and the hooks (which decide the forward's arithmetic), so a hit is exactly a re-run."""
    pattern_name = f"blocks.{site.node.layer}.attn.hook_pattern"
    names = (site.hook,) + ((pattern_name,) if pattern else ())

    def run():
        got: dict[str, tuple[torch.Tensor, list[int]]] = {}

        def grab(x, hook):
            got[hook.name] = (x.detach().clone(), list(hook.positions))

        with model.hooks([(name, grab) for name in names]), torch.inference_mode():
            eng = Engine(model, questions) if engine else model(questions.torch_tokens(str(model.device)),
                                                                 logit_positions=[0])
        return got, (eng if engine else None)

    key = ("capture", names, engine, _question_key(questions))
    got, eng = run() if cache is None else cache.get(key, run)
    x, positions = got[site.hook]
    act = site.take(x, positions).double().cpu().numpy()
    patt = None
    if pattern:
        x, positions = got[pattern_name]
        p = site.node.position
        patt = x[:, site.head, positions.index(p), : p + 1].double().cpu().numpy()
    return act, patt, eng


def _question_key(questions: QuestionBatch) -> tuple:
    """The questions themselves, as a cache key."""
    rows = np.concatenate([questions.a, questions.op.astype(np.int64), questions.b])
    return questions.n_digits, len(questions), hashlib.sha256(rows.tobytes()).hexdigest()


class StudyCache:
    """Clean runs (activations, engines, stores) that the studies of one analysis share: heads of one layer
    studied at one digit run the same questions with the same hooks. A run is kept under its questions and
    hooks, so a hit gives exactly what running again would; beyond `max_bytes` the least recently used go."""

    def __init__(self, max_bytes: int = 2**30):
        self.max_bytes = max_bytes
        self._runs: OrderedDict[tuple, tuple[object, int]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: tuple, make: Callable[[], object]):
        if key in self._runs:
            self._runs.move_to_end(key)
            self.hits += 1
            return self._runs[key][0]
        self.misses += 1
        value = make()
        self._runs[key] = (value, _nbytes(value))
        while len(self._runs) > 1 and sum(size for _, size in self._runs.values()) > self.max_bytes:
            self._runs.popitem(last=False)
        return value


def _nbytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, Engine):
        return _nbytes([value._resid, value._q, value._kv_clean, value.clean_logits])
    return 0


# ---------------------------------------------------------------------------------------------------
# The study


def study_node(model, node: Node | str, options: StudyOptions | None = None,
               progress: Callable[[str], None] | None = None, cache: StudyCache | None = None) -> NodeStudy:
    """Run the study (module docstring) on `model` for `node`; deterministic for `options.seed`. Studies given
    one `cache` share their clean runs (same results, less time)."""
    options = options or StudyOptions()
    say = progress or (lambda _msg: None)
    spec = model.spec
    node = Node.for_model(node, spec) if isinstance(node, str) else node
    if node.is_neuron:
        raise ArithLensError(f"node studies are for heads and whole MLP layers (P18L0H0, P18L0MLP), not {node}")
    ops = tuple(op for op in OPS if (spec.perc_add > 0 if op == QType.ADD else spec.perc_sub > 0))
    if not ops:
        raise ArithLensError(f"{spec.name} does no addition or subtraction; node studies need one of them")
    layout = spec.layout
    n = spec.n_digits
    site = _Site(node)
    seeds = np.random.SeedSequence(options.seed).spawn(6)
    rng_mixed, rng_tricase, rng_resample, rng_rep, rng_pairs, rng_stats = (np.random.default_rng(s) for s in seeds)
    stat_seed = int(rng_stats.integers(0, 2**31 - 1))
    model.eval()

    say("mixed set: attention, means")
    weights = {"add": spec.perc_add, "minus": spec.perc_sub}
    mixed = uniform(n, options.mixed, rng_mixed, qtypes={k: v for k, v in weights.items() if v > 0})
    mixed_act, pattern, _ = _capture(model, site, mixed, engine=False, pattern=node.is_head, cache=cache)
    mixed_mean = mixed_act.mean(0, keepdims=True)
    attention = _attention(pattern, mixed, ops, layout) if node.is_head else None
    k = layout.answer_digit_at(node.position)
    t, t_source = _study_digit(options.digit, attention, k, n)
    candidates = _candidates(attention, k, t, n)

    say(f"necessity: {len(ops)} qtypes x 3 classes at digit {t}")
    necessity, sets = _necessity(model, site, ops, t, options, rng_tricase, rng_resample, mixed_act, mixed_mean,
                                 cache)

    say("representation: PCA, probes")
    # Small dense algebra: one BLAS thread is faster, and much faster on a busy machine.
    with threadpool_limits(limits=1, user_api="blas"):
        out_all = {op: site.output(model, sets[op]["act"]) for op in ops}
        representation, rep_rows, white, weights = _representation(out_all, sets, ops, t, options, rng_rep,
                                                                   stat_seed)
        necessity["mean_position"] = {
            op.name: stats.position_on_axis(site.output(model, mixed_mean)[0], out_all[op], sets[op]["carry"])
            for op in ops}
        shared = _shared(out_all, white, sets, rep_rows, weights, ops, options, stat_seed)
        grid = _grid(out_all, sets, ops, t)

    say("sufficiency: patching clean/store pairs")
    sufficiency = _sufficiency(model, site, ops, t, sets, options, rng_pairs, cache)

    data = {
        "node": node.name, "model": spec.name, "kind": "head" if node.is_head else "mlp",
        "position": node.position, "layer": node.layer, "head": site.head,
        "position_token": layout.meaning(node.position),
        "answer_digit": k, "study_digit": t, "study_digit_source": t_source,
        "options": asdict(options), "qtypes": [op.name for op in ops],
        "thresholds": {"attend_min": ATTEND_MIN, "probe_min": PROBE_MIN, "p_max": P_MAX,
                       "sufficient_min": SUFFICIENT_MIN, "shared_cos_min": SHARED_COS_MIN,
                       "operator_blind_max": OPERATOR_BLIND_MAX},
        "candidates": candidates, "attention": attention, "necessity": necessity,
        "sufficiency": sufficiency, "representation": representation, "shared": shared, "grid": grid,
    }
    data = _clean_json(data)
    data["verdict"], data["tags"] = _verdict(data, ops, t)
    return NodeStudy(node, _clean_json(data))


# ---------------------------------------------------------------------------------------------------
# Attention and candidate digits


def _attention(pattern: np.ndarray, mixed: QuestionBatch, ops, layout) -> dict:
    pos = pattern.shape[1] - 1
    per = {op.name: pattern[mixed.qtype == op].mean(0).tolist() for op in ops if (mixed.qtype == op).any()}
    overall = np.mean([per[name] for name in per], axis=0)
    order = np.argsort(-overall, kind="stable")[:4]
    n = layout.n_digits

    def seen(p: int) -> float:  # a query sees positions up to its own
        return float(overall[p]) if p <= pos else 0.0

    digit_mass = [seen(layout.d_pos(j)) + seen(layout.dp_pos(j)) for j in range(n)]
    return {
        "positions": list(range(pos + 1)), "meanings": [layout.meaning(p) for p in range(pos + 1)],
        "per_qtype": per, "mean": overall.tolist(),
        "top": [{"position": int(p), "meaning": layout.meaning(int(p)), "weight": float(overall[p])}
                for p in order if overall[p] >= 0.01],
        "digit_pair_mass": digit_mass,
        "operator": float(overall[layout.opr_pos]) if layout.opr_pos <= pos else 0.0,
    }


def _study_digit(digit: int | None, attention: dict | None, k: int | None, n: int) -> tuple[int, str]:
    if digit is not None:
        if not 0 <= digit < n:
            raise ArithLensError(f"--digit {digit} is outside 0..{n - 1}")
        return digit, "given"
    if attention is not None and attention["digit_pair_mass"]:
        mass = attention["digit_pair_mass"]
        j = int(np.argmax(mass))
        if mass[j] >= ATTEND_MIN:
            return j, "attention"
    if k is not None and 1 <= k <= n:
        return k - 1, "carry candidate (k-1)"
    raise ArithLensError("this node neither computes an answer digit nor attends to a digit pair: give --digit")


def _candidates(attention: dict | None, k: int | None, t: int, n: int) -> list[dict]:
    mass = attention["digit_pair_mass"] if attention else []
    out = []
    for j in range(n):
        role = ("carry" if k is not None and j == k - 1 else "base" if j == k else "attended")
        m = mass[j] if j < len(mass) else None
        if role == "attended" and (m is None or m < 0.1) and j != t:
            continue
        out.append({"digit": j, "role": role, "attention": m, "study": j == t})
    return sorted(out, key=lambda c: -(c["attention"] or 0.0))


# ---------------------------------------------------------------------------------------------------
# Necessity


def _necessity(model, site: _Site, ops, t: int, options: StudyOptions, rng_tricase, rng_resample,
               mixed_act: np.ndarray, mixed_mean: np.ndarray, cache: StudyCache | None = None) -> tuple[dict, dict]:
    n = model.spec.n_digits
    answer_names = [f"A{d}" for d in reversed(range(n + 2))]
    target = answer_names.index(f"A{t + 1}")  # the answer token a carry/borrow out of t changes
    groups, per_op, sets = [], {}, {}
    for op in ops:
        parts = []
        for case in CASES:
            have = tricase_count(n, t, op, case, high="decide")
            if have:
                parts.append(tricase(n, t, op, case, min(options.questions, have), rng_tricase, high="decide"))
        if not parts:  # high="decide" makes every qtype possible at every digit; kept as a guard
            raise ArithLensError(f"no {op.name} tricase question exists at digit {t}")
        qs = QuestionBatch.concat(parts)
        act, _, eng = _capture(model, site, qs, engine=True, cache=cache)
        carry = qs.labels["carry_out"].astype(np.int8)
        pair = qs.features.pair[CARRY[op]][:, t].astype(np.int8)
        outcomes = {"clean": eng.clean}
        outcomes["mean"] = eng.outcome([site.replace(mixed_mean, "mean")])
        pick = rng_resample.integers(0, len(mixed_act), len(qs))
        outcomes["resample"] = eng.outcome([site.replace(mixed_act[pick], "resample")])
        if 0 < carry.sum() < len(carry):
            means = np.stack([act[carry == 0].mean(0), act[carry == 1].mean(0)])  # (2, d_site)
            outcomes["same_class_mean"] = eng.outcome([site.replace(means[carry], "mean")])
            outcomes["other_class_mean"] = eng.outcome([site.replace(means[1 - carry], "mean")])
        del eng
        sets[op] = {"questions": qs, "act": act, "carry": carry, "pair": pair,
                    "case": qs.labels["tricase_case"].astype(np.int8), "carry_in": qs.labels["carry_in"],
                    "clean_ok": ~outcomes["clean"].wrong.any(1)}
        for case in CASES:
            for c in (0, 1):
                rows = (sets[op]["case"] == case) & (carry == c)
                if rows.any():
                    groups.append({"qtype": op.name, "case": f"T{case}", "carry_out": c,
                                   **_rates(outcomes, rows, target)})
        per_op[op.name] = {"all": _rates(outcomes, np.ones(len(qs), bool), target),
                           WORD[op]: _rates(outcomes, carry == 1, target),
                           f"no_{WORD[op]}": _rates(outcomes, carry == 0, target)}
    return {"answer_names": answer_names, "target_digit": f"A{t + 1}", "ablations": list(ABLATIONS),
            "groups": groups, "per_qtype": per_op}, sets


def _rates(outcomes: dict, rows: np.ndarray, target: int) -> dict:
    """Per outcome: question failure rate, the rate of a wrong A(t+1) token (index `target`), each with a
    Wilson CI, and the wrong rate of every answer token."""
    n = int(rows.sum())
    out = {"n": n}
    for name, o in outcomes.items():
        out[name] = {"fail": stats.rate(int(o.fails[rows].sum()), n),
                     "target_wrong": stats.rate(int(o.wrong[rows, target].sum()), n),
                     "wrong_by_answer": o.wrong[rows].mean(0).tolist() if n else [None] * o.wrong.shape[1]}
    return out


# ---------------------------------------------------------------------------------------------------
# Representation and shared directions


def _representation(out_all, sets, ops, t, options, rng_rep, stat_seed):
    """Per-qtype PCA, silhouettes and probes on `per_case` rows per class. Probes (and the shared-direction
    tests) work in whitened coordinates: the top principal components of the pooled outputs, each scaled to
    unit variance, so that a random label split gives a direction near-uniform on the sphere (in raw
    coordinates it would lean on the largest component and every cosine would look 'shared')."""
    rows = {}
    for op in ops:
        picks = []
        for case in CASES:
            idx = np.flatnonzero(sets[op]["case"] == case)
            picks.append(np.sort(rng_rep.choice(idx, size=min(options.per_case, len(idx)), replace=False)))
        rows[op] = np.concatenate(picks)
    pooled = stats.rank_components(np.concatenate([out_all[op][rows[op]] for op in ops]), PROBE_COMPONENTS)
    scale = pooled.scores.std(0)
    result, white, weights = {}, {}, {}
    for op in ops:
        out = out_all[op][rows[op]]
        s = sets[op]
        case, carry, pair = s["case"][rows[op]], s["carry"][rows[op]], s["pair"][rows[op]]
        white[op] = (out - pooled.mean) @ pooled.components.T / scale
        p = stats.pca(out, PCA_COMPONENTS)
        q = s["questions"].select(rows[op])
        keys = np.stack([q.digits_a[:, t], q.digits_b[:, t]], 1)
        probe_carry = stats.probe_accuracy(white[op], carry, permutations=options.permutations,
                                           random_state=stat_seed)
        probe_pair = stats.probe_accuracy(white[op], pair, permutations=options.permutations, random_state=stat_seed)
        weights[op] = (probe_carry.coef, probe_carry.null_coefs)
        result[op.name] = {
            "n": len(out), "evr": p.explained_variance_ratio.tolist(),
            "silhouette_class": stats.silhouette(out, case),
            "silhouette_carry": stats.silhouette(out, carry),
            "probe_carry": probe_carry.to_dict(), "probe_pair": probe_pair.to_dict(),
            "pair_rule": PAIR_RULE[op], "carry_ceiling_from_pair": stats.lookup_ceiling(keys, carry),
            "scores": np.round(p.scores[:, :2], 5).tolist(), "case": case.tolist(), "carry": carry.tolist(),
        }
    return result, rows, white, weights


def _shared(out_all, white, sets, rows, weights, ops, options, stat_seed) -> dict:
    """Cosines (whitened coordinates) of class-mean directions and of probe weights between qtypes, with nulls,
    and probe transfer: the carry probe of qtype a (its weight direction, threshold midway between a's class
    means) scored on qtype b's rows."""
    directions, probes, transfer = {}, {}, {}
    data = {op: (white[op], sets[op]["carry"][rows[op]]) for op in ops}
    raw = {op: out_all[op][rows[op]] for op in ops}  # cosine_raw: in d_model space, for reference (no null)
    for i, a in enumerate(ops):
        for b in ops[i + 1:]:
            key = f"{a.name}~{b.name}"
            (xa, ya), (xb, yb) = data[a], data[b]
            directions[key] = stats.direction_cosine_null(xa, ya, xb, yb, permutations=options.permutations,
                                                          random_state=stat_seed)
            directions[key]["cosine_raw"] = stats.cosine(stats.mean_difference(raw[a], ya),
                                                         stats.mean_difference(raw[b], yb))
            (wa, null_a), (wb, null_b) = weights[a], weights[b]
            observed = stats.cosine(wa, wb)
            null = np.array([stats.cosine(wa, v) for v in null_b] + [stats.cosine(v, wb) for v in null_a])
            null = null[np.isfinite(null)]
            probes[key] = {"cosine": observed,
                           "null_abs_q95": float(np.quantile(np.abs(null), 0.95)) if len(null) else math.nan,
                           "p_value": (1 + int((np.abs(null) >= abs(observed)).sum())) / (1 + len(null))
                           if len(null) and np.isfinite(observed) else math.nan}
    for a in ops:
        w = weights[a][0]
        xa, ya = data[a]
        threshold = _midpoint(xa @ w, ya) if np.isfinite(w).all() else math.nan
        transfer[a.name] = {b.name: float(((data[b][0] @ w > threshold) == data[b][1].astype(bool)).mean())
                            if np.isfinite(threshold) else math.nan for b in ops}
    return {"direction_cosines": directions, "probe_cosines": probes, "probe_transfer": transfer}


def _midpoint(score: np.ndarray, y: np.ndarray) -> float:
    y = y.astype(bool)
    if y.all() or not y.any():
        return 0.0
    return float((score[y].mean() + score[~y].mean()) / 2)


def _grid(out_all, sets, ops, t) -> dict:
    """Mean output per (Dt, D't) per qtype, projected on the top 2 PCs of all the cell means; R^2 split."""
    cells, grids = [], {}
    for op in ops:
        q = sets[op]["questions"]
        key = q.digits_a[:, t].astype(np.int64) * 10 + q.digits_b[:, t]
        counts = np.bincount(key, minlength=100)
        sums = np.zeros((100, out_all[op].shape[1]))
        np.add.at(sums, key, out_all[op])
        means = np.divide(sums, np.maximum(counts, 1)[:, None])
        grids[op] = (means, counts)
        cells.append(means[counts > 0])
    p = stats.pca(np.concatenate(cells), 2)
    projection = {}
    for op in ops:
        means, counts = grids[op]
        proj = (means - p.mean) @ p.components.T  # (100, 2)
        proj[counts == 0] = np.nan
        projection[op.name] = {"pc0": proj[:, 0].reshape(10, 10).tolist(), "pc1": proj[:, 1].reshape(10, 10).tolist(),
                               "count": counts.reshape(10, 10).tolist()}
    out = np.concatenate([out_all[op] for op in ops])
    pair = np.concatenate([np.stack([sets[op]["questions"].digits_a[:, t], sets[op]["questions"].digits_b[:, t]], 1)
                           for op in ops])
    qtype = np.concatenate([np.full(len(out_all[op]), int(op)) for op in ops])
    r2_pair = stats.group_r2(out, pair)
    r2_cells = stats.group_r2(out, np.column_stack([pair, qtype]))
    return {"digit": t, "rows": "Dt (first operand digit)", "columns": "D't (second operand digit)",
            "evr": p.explained_variance_ratio.tolist(), "projection": projection,
            "r2_pair": r2_pair, "r2_qtype": stats.group_r2(out, qtype), "r2_pair_x_qtype": r2_cells,
            "qtype_beyond_pair": r2_cells - r2_pair, "n": len(out)}


# ---------------------------------------------------------------------------------------------------
# Sufficiency


def _carry_out(op: QType, x, y, c):
    if op == QType.ADD:
        return x + y + c >= 10
    if op == QType.SUB:
        return x - y - c < 0
    return y - x - c < 0  # NEG: the magnitude b - a borrows where Dt > D't


def _sufficiency(model, site: _Site, ops, t: int, sets, options: StudyOptions, rng,
                 cache: StudyCache | None = None) -> dict:
    spec = model.spec
    n, layout = spec.n_digits, spec.layout
    k = t + 1
    if k > n or site.node.position > layout.computed_at(k):
        return {"applicable": False,
                "reason": f"A{k} is predicted at P{layout.computed_at(min(k, n + 1))}, before the node's position"}
    cleans, stores, ops_of = [], [], []
    dropped = {}
    for op in ops:
        s = sets[op]
        ok = np.flatnonzero(s["clean_ok"])
        rows = np.sort(rng.choice(ok, size=min(options.pairs, len(ok)), replace=False))
        q = s["questions"].select(rows)
        c_in, c_out = q.labels["carry_in"].astype(np.int64), q.labels["carry_out"].astype(np.int64)
        grid_x, grid_y = np.divmod(np.arange(100), 10)
        flips = _carry_out(op, grid_x[None], grid_y[None], c_in[:, None]) != c_out[:, None].astype(bool)  # (rows, 100)
        choice = np.argmax(rng.random(flips.shape) * flips, axis=1)
        x, y = grid_x[choice], grid_y[choice]
        scale = 10**t
        a = q.a + (x - q.digits_a[:, t]) * scale
        b = q.b + (y - q.digits_b[:, t]) * scale
        store = QuestionBatch(n, a, q.op, b)
        keep = (store.qtype == op) & flips.any(1)
        dropped[op.name] = int((~keep).sum())
        cleans.append(q.select(keep))
        stores.append(store.select(keep))
        ops_of.append(np.full(int(keep.sum()), int(op)))
    clean, store, op_of = QuestionBatch.concat(cleans), QuestionBatch.concat(stores), np.concatenate(ops_of)
    if len(clean) == 0:
        return {"applicable": False, "reason": "the model answers none of the candidate clean questions right"}
    expected = expected_answer(clean, store, op_of, t)  # (batch, n_answer)
    layer = site.node.layer
    z_name = f"blocks.{layer}.attn.hook_z"
    names = tuple(sorted({z_name, site.hook}))
    if cache is None:
        stored, eng = record(model, store, names), Engine(model, clean)
    else:  # (the engine runs unhooked: every node studied at digit t shares it)
        stored = cache.get(("record", names, _question_key(store)), lambda: record(model, store, names))
        eng = cache.get(("engine", _question_key(clean)), lambda: Engine(model, clean))
    target_index = n + 1 - k  # answer tokens are sign, A_n .. A_0

    def judge(logits: torch.Tensor) -> dict:
        pred = logits.argmax(-1).cpu().numpy()
        exact = (pred == expected).all(1)
        target = pred[:, target_index] == expected[:, target_index]
        unchanged = (pred == clean.tokens[:, 2 * n + 2:]).all(1)
        return {op.name: {"success": stats.rate(int(exact[op_of == op].sum()), int((op_of == op).sum())),
                          "target_digit": stats.rate(int(target[op_of == op].sum()), int((op_of == op).sum())),
                          "unchanged": stats.rate(int(unchanged[op_of == op].sum()), int((op_of == op).sum()))}
                for op in ops}

    node_result = judge(eng.answer_logits([patch_from(stored, site.hook, site.node.position, head=site.head)]))
    controls = {}
    for h in range(spec.n_heads):
        if site.node.is_head and h == site.head:
            continue
        name = f"P{site.node.position}L{layer}H{h}"
        controls[name] = judge(eng.answer_logits([patch_from(stored, z_name, site.node.position, head=h)]))
    return {"applicable": True, "target_digit": k, "per_qtype": node_result, "controls": controls,
            "dropped_pairs": dropped,
            "rule": f"clean and store differ only in (D{t}, D'{t}); the real {'/'.join(sorted(set(WORD.values())))} "
                    f"out of digit {t} flips; success = every answer token as the clean answer with A{k} "
                    f"recomputed with the store's carry/borrow"}


def expected_answer(clean: QuestionBatch, store: QuestionBatch, op_of: np.ndarray, t: int) -> np.ndarray:
    """The answer tokens (sign, A_n .. A_0) a patch of the carry/borrow out of digit t should give: the clean
    answer with A(t+1) recomputed from the clean digits and the store's real carry/borrow out of t (NEG in
    b - a semantics). Higher answer digits stay as they are: their logits come before the patched position."""
    n = clean.n_digits
    k = t + 1
    tokens = clean.tokens[:, 2 * n + 2:].astype(np.int64).copy()  # sign, A_n .. A_0
    digit = np.zeros(len(clean), np.int64)
    for op in (QType.ADD, QType.SUB, QType.NEG):
        rows = op_of == op
        if not rows.any():
            continue
        c = store.features.real[CARRY[op]][rows, t].astype(np.int64)
        if k < n:
            base = clean.features.pair[{QType.ADD: "SA", QType.SUB: "MD", QType.NEG: "ND"}[op]][rows, k]
            base = base.astype(np.int64)
        else:
            base = np.zeros(int(rows.sum()), np.int64)
        digit[rows] = (base + c) % 10 if op == QType.ADD else (base - c) % 10
    tokens[:, n + 1 - k] = digit
    return tokens


# ---------------------------------------------------------------------------------------------------
# Verdict


def _verdict(data: dict, ops, t: int) -> tuple[dict, list[str]]:
    rep, nec, suf, grid = data["representation"], data["necessity"], data["sufficiency"], data["grid"]
    per, tags, roles = {}, [], []
    for op in ops:
        r = rep[op.name]
        best = max((r["probe_carry"], r["probe_pair"]), key=lambda p: p["accuracy"] or 0.0)
        encodes = (best["accuracy"] or 0.0) >= PROBE_MIN and (best["p_value"] or 1.0) <= P_MAX
        allq = nec["per_qtype"][op.name]["all"]
        broken, clean = allq["resample"]["target_wrong"], allq["clean"]["target_wrong"]
        necessary = (broken["ci"][0] > clean["ci"][1]
                     and (broken["rate"] or 0.0) - (clean["rate"] or 0.0) >= NECESSARY_MIN)
        success = suf["per_qtype"][op.name]["success"]["rate"] if suf.get("applicable") else None
        sufficient = success is not None and success >= SUFFICIENT_MIN
        role = encodes and (necessary or sufficient)
        name = f"A{t}.{CARRY[op]}"
        per[op.name] = {"encodes": encodes, "necessary": necessary, "sufficient": sufficient, "role": role,
                        "feature": name}
        if encodes:
            major, minor = PCA_TAG[op]
            tags.append(str(Tag(major, f"A{t}.{minor}")))
        if role:
            roles.append(op)
    shared, geometry = None, {}
    if len(roles) >= 2:
        # Judged per pair of role qtypes: one axis (same or opposite signs) or separate directions.
        for i, a in enumerate(ops):
            for b in ops[i + 1:]:
                if a in roles and b in roles:
                    geometry[f"{a.name}~{b.name}"] = _pair_geometry(data["shared"]["direction_cosines"][f"{a.name}~{b.name}"])
        shared = all(g != "separate" for g in geometry.values())
    blind = grid["qtype_beyond_pair"] is not None and grid["qtype_beyond_pair"] <= OPERATOR_BLIND_MAX
    polysemantic = len(roles) >= 2
    text = _verdict_text(data, ops, t, per, roles, polysemantic, shared, blind, geometry)
    return {"polysemantic": polysemantic, "roles": [f"A{t}.{CARRY[op]}" for op in roles],
            "shared_direction": shared, "pair_geometry": geometry, "operator_blind": blind, "per_qtype": per,
            "text": text}, tags


def _pair_geometry(cos: dict) -> str:
    """"same axis" / "one axis, opposite signs" when |cos| >= SHARED_COS_MIN with null p <= P_MAX, else "separate"."""
    c = cos["cosine"] or 0.0
    if abs(c) < SHARED_COS_MIN or (cos["p_value"] or 1.0) > P_MAX:
        return "separate"
    return "same axis" if c > 0 else "one axis, opposite signs"


def _geometry_text(data: dict, t: int, geometry: dict) -> str:
    """`A3.MB and A3.NB on one axis with opposite signs (cos -0.97); A3.SC separate from both (cos +0.04, -0.02)`."""
    cos = data["shared"]["direction_cosines"]
    feature = {op.name: f"A{t}.{CARRY[op]}" for op in CARRY}
    together = [k for k, g in geometry.items() if g != "separate"]
    if not together:
        return "in separate directions (cos " + ", ".join(
            f"{feature[a]}~{feature[b]} {_num(cos[f'{a}~{b}']['cosine'], '+.2f')}"
            for a, b in (k.split("~") for k in geometry)) + ")"
    parts = []
    for key in together:
        a, b = key.split("~")
        how = "on one axis with the same sign" if geometry[key] == "same axis" else "on one axis with opposite signs"
        parts.append(f"{feature[a]} and {feature[b]} {how} (cos {_num(cos[key]['cosine'], '+.2f')})")
    joined = {q for k in together for q in k.split("~")}
    names = sorted({q for k in geometry for q in k.split("~")}, key=lambda q: list(feature).index(q))
    for q in names:
        if q in joined:
            continue
        others = [k for k in geometry if q in k.split("~")]
        parts.append(f"{feature[q]} separate" + (" from both" if len(others) == 2 else "")
                     + " (cos " + ", ".join(_num(cos[k]["cosine"], "+.2f") for k in others) + ")")
    return "; ".join(parts)


def _reads(data: dict, t: int) -> str:
    """`D2 (97%)` or `D'2 (41%) and D2 (27%)`: which of the digit-t operand positions the head attends to."""
    att = data["attention"]
    if not att:
        return "both"
    names = {f"D{t}", f"D'{t}"}
    seen = [f"{e['meaning']} ({_pct(e['weight'])})" for e in att["top"] if e["meaning"] in names and e["weight"] >= 0.05]
    return " and ".join(seen) or "neither"


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _num(x, fmt: str = ".2f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _verdict_text(data, ops, t, per, roles, polysemantic, shared, blind, geometry=None) -> str:
    rep, nec, suf, grid = data["representation"], data["necessity"], data["sufficiency"], data["grid"]
    features = ", ".join(f"A{t}.{CARRY[op]} for {op.name}" for op in roles)
    k, pos = data["answer_digit"], data["position"]
    if t == k:
        head = (f"not polysemantic: reads {_reads(data, t)} of (D{t}, D'{t}), the base digit pair of A{k} (the digit "
                f"it predicts); a carry or borrow out of digit {t} only changes A{t + 1}, predicted before P{pos}")
    elif polysemantic:
        head = f"polysemantic: computes {features}: {_geometry_text(data, t, geometry or {})}"
    elif roles:
        head = f"not polysemantic: computes only {features}"
    else:
        enc = [op.name for op in ops if per[op.name]["encodes"]]
        head = ("not polysemantic: no carry/borrow role at digit "
                f"{t}" + (f" (encodes it for {', '.join(enc)} but ablation and patching show no use)" if enc else ""))
    parts = [head]
    unused = [op for op in ops if per[op.name]["encodes"] and not per[op.name]["role"]]
    if roles and unused and t != k:  # (with no role at all the head line says it already)
        one = len(unused) == 1
        parts.append("/".join(op.name for op in unused) + (" encodes it too but does" if one else " encode it too but do")
                     + f" not use it (resample ablation makes {nec['target_digit']} wrong in "
                     + "/".join(_pct(nec["per_qtype"][op.name]["all"]["resample"]["target_wrong"]["rate"])
                                for op in unused) + ")")
    used_only = [op for op in ops
                 if not per[op.name]["role"] and (per[op.name]["necessary"] or per[op.name]["sufficient"])]
    if used_only and t != k:
        names = "/".join(op.name for op in used_only)
        probe = "/".join(_pct(max(rep[op.name]["probe_carry"]["accuracy"] or 0,
                                  rep[op.name]["probe_pair"]["accuracy"] or 0)) for op in used_only)
        parts.append(f"{names} also use it (resample ablation makes {nec['target_digit']} wrong in "
                     + "/".join(_pct(nec["per_qtype"][op.name]["all"]["resample"]["target_wrong"]["rate"])
                                for op in used_only)
                     + f") but their {'/'.join(sorted({WORD[op] for op in used_only}))} is only {probe} "
                     "linearly readable from it: for them it passes on the digit pair rather than the predicate")
    cos = data["shared"]["direction_cosines"]
    if cos and t != k:
        parts.append("class-mean cosines " + ", ".join(f"{k} {_num(v['cosine'], '+.2f')}" for k, v in cos.items()))
    if len(ops) > 1:
        opr = f" (attention to OPR {_pct(data['attention']['operator'])})" if data["attention"] else ""
        parts.append(f"{'operator-blind' if blind else 'operator-aware'}{opr}: the pair (D{t}, D'{t}) explains "
                     f"{_pct(grid['r2_pair'])} of the output variance, the qtype adds "
                     f"{_pct(grid['qtype_beyond_pair'])}")
    else:
        parts.append(f"the pair (D{t}, D'{t}) explains {_pct(grid['r2_pair'])} of the output variance")
    if t != k:
        acc = "/".join(_pct(max(rep[op.name]["probe_carry"]["accuracy"] or 0,
                                rep[op.name]["probe_pair"]["accuracy"] or 0)) for op in ops)
        parts.append(f"probe accuracy {acc} ({'/'.join(op.name for op in ops)})")
    if suf.get("applicable"):
        control = max((r["success"]["rate"] or 0.0 for c in suf["controls"].values() for r in c.values()), default=None)
        parts.append("patching success " + "/".join(_pct(suf["per_qtype"][op.name]["success"]["rate"]) for op in ops)
                     + (f" (at most {_pct(control)} through any other head)" if control is not None else ""))
    shown = nec["target_digit"] if t != k else f"A{k}"
    index = nec["answer_names"].index(shown)
    parts.append(f"resample ablation makes {shown} wrong in " + "/".join(
        _pct(nec["per_qtype"][op.name]["all"]["resample"]["wrong_by_answer"][index]) for op in ops) + " of questions")
    text = "; ".join(parts) + "."
    return text if t == k else text + " " + " ".join(_mean_ablation_notes(data, ops))


def _mean_ablation_notes(data, ops) -> list[str]:
    """Why mean ablation may break a qtype's questions little or not at all (the NEG puzzle of §14.2 item 3),
    read off the class-conditional ablations: the mixed-set mean, either class's mean, another question's
    value (resampling) and a patched store value."""
    notes = []
    nec, suf = data["necessity"], data["sufficiency"]
    digit = nec["target_digit"]
    for op in ops:
        word = WORD[op]
        p = nec["per_qtype"][op.name]
        yes, no = p[word], p[f"no_{word}"]
        if "other_class_mean" not in yes:
            continue
        m_yes, m_no = yes["mean"]["target_wrong"]["rate"], no["mean"]["target_wrong"]["rate"]
        flip = p["all"]["other_class_mean"]["target_wrong"]["rate"] or 0.0
        resample = p["all"]["resample"]["target_wrong"]["rate"] or 0.0
        patch = suf["per_qtype"][op.name]["success"]["rate"] if suf.get("applicable") else None
        lam = nec["mean_position"][op.name]
        note = (f"{op.name}: mean ablation makes {digit} wrong in {_pct(m_yes)} of {word} and {_pct(m_no)} of "
                f"no-{word} questions (the mixed-set mean lies at {_num(lam)} on the no-{word}(0)->{word}(1) axis)")
        if max(m_yes or 0.0, m_no or 0.0) >= 0.01:
            side = word if (m_yes or 0.0) > (m_no or 0.0) else f"no-{word}"
            note += (f": the mean reads as the other class to the {side} questions it breaks; the other class's "
                     f"mean breaks {_pct(flip)}.")
        elif flip >= 0.1:
            note += (f", yet the other class's mean breaks {_pct(flip)}: the mean carries no class, another path "
                     f"supplies the {word}, and only an actively wrong {word} signal from this node misleads the "
                     "model.")
        elif resample >= 0.05 or (patch or 0.0) >= 0.2:
            note += (f"; the mean of either class breaks nothing either (other class: {_pct(flip)}), yet another "
                     f"question's value breaks {_pct(resample)}" + (f" and patching flips {digit} as predicted in "
                                                                    f"{_pct(patch)}" if patch is not None else "")
                     + f": {op.name} reads the specific digit pair from this node, not a {word} flag; a mean (a "
                     "blurred pair) is ignored and other paths take over.")
        else:
            note += f" and no replacement breaks it (other class's mean {_pct(flip)}): {op.name} does not rely on it."
        notes.append(note)
    return notes


# ---------------------------------------------------------------------------------------------------
# Text and JSON


def summarise(data: dict) -> str:
    """The readable stdout summary."""
    lines = []
    kind = "head" if data["kind"] == "head" else "MLP layer"
    k = data["answer_digit"]
    lines.append(f"{data['node']} of {data['model']}: {kind} at P{data['position']} (token {data['position_token']}"
                 + (f", predicts A{k})" if k is not None else ")")
                 + f"; study digit {data['study_digit']} ({data['study_digit_source']})")
    att = data["attention"]
    if att:
        for name, row in att["per_qtype"].items():
            top = np.argsort(row)[::-1][:3]
            lines.append(f"  attention {name:<4} " + "  ".join(f"{att['meanings'][p]} {100 * row[p]:.0f}%"
                                                             for p in top if row[p] >= 0.01))
    cands = ", ".join(f"D{c['digit']} ({c['role']}" + (f", {100 * c['attention']:.0f}%" if c["attention"] is not None
                                                       else "") + ")" for c in data["candidates"])
    lines.append(f"  candidates: {cands}")
    nec = data["necessity"]
    lines.append("  necessity (failure rate)          clean    mean   resample  same-class  other-class")
    for g in nec["groups"]:
        word = "carry" if g["qtype"] == "ADD" else "borrow"
        label = f"{g['qtype']} {g['case']} {'' if g['carry_out'] else 'no '}{word}"
        cells = [g[a]["fail"]["rate"] if a in g else None for a in ("clean",) + ABLATIONS]
        lines.append(f"    {label:<28} n={g['n']:<5}" + "".join(f"{_pct(c):>10}" for c in cells))
    suf = data["sufficiency"]
    if suf.get("applicable"):
        for op, r in suf["per_qtype"].items():
            s = r["success"]
            ctrl = ", ".join(f"{h} {_pct(c[op]['success']['rate'])}" for h, c in suf["controls"].items())
            lines.append(f"  patching {op:<4} success {_pct(s['rate'])} [{_pct(s['ci'][0])}, {_pct(s['ci'][1])}] "
                         f"n={s['n']}; controls: {ctrl}")
    else:
        lines.append(f"  patching: not applicable ({suf.get('reason')})")
    for op, r in data["representation"].items():
        pc, pp = r["probe_carry"], r["probe_pair"]
        lines.append(f"  representation {op:<4} EVR0 {_pct(r['evr'][0])}  silhouette T {_num(r['silhouette_class'])}"
                     f" carry {_num(r['silhouette_carry'])}  probe carry {_pct(pc['accuracy'])} "
                     f"(p={_num(pc['p_value'], '.3g')},"
                     f" ceiling {_pct(r['carry_ceiling_from_pair'])})  pair {r['pair_rule']} {_pct(pp['accuracy'])}")
    grid = data["grid"]
    lines.append(f"  variance explained: pair {_pct(grid['r2_pair'])}, qtype {_pct(grid['r2_qtype'])}, "
                 f"pair x qtype {_pct(grid['r2_pair_x_qtype'])}")
    lines.append(f"verdict: {data['verdict']['text']}")
    lines.append(f"tags: {' '.join(data['tags']) or '(none)'}")
    return "\n".join(lines)


def _clean_json(value):
    """numpy -> Python, NaN/inf -> None, so the JSON is strict and stable."""
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean_json(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value
