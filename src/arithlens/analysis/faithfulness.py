"""Faithfulness of a node set: the model run with every head and MLP layer (or neuron) outside the set ablated
at once, scored per question type and per answer digit against the clean model and against everything ablated.

A node set is an explanation only with this beside it: a set whose nodes each matter alone can still leave
out nodes that matter together (backup heads), and only ablating the whole outside at once shows that.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from arithlens.analysis.memory import release_freed_memory
from arithlens.analysis.nodes import Node
from arithlens.arith.generators import uniform
from arithlens.arith.questions import QType, QuestionBatch
from arithlens.errors import ArithLensError
from arithlens.interventions import (
    MaskedAblation,
    compute_means,
    run_with_interventions,
)
from arithlens.model.fast_block import LN_EPS
from arithlens.model.hooks import act_name, output_sites
from arithlens.model.spec import ModelSpec
from arithlens.model.transformer import HookedTransformer
from arithlens.results.circuits import Faithfulness, QTypeFaithfulness  # noqa: F401  (re-exported)

ABLATIONS = ("mean", "resample")
REFERENCE_QUESTIONS = 2048  # the mixed batch whose per-position means (or rows, for resample) replace a node
FAITHFULNESS_SEED = 140_014
# Questions per forward pass: bounds the memory of the pass and its per-question ablation values. At 2,048 the
# faithfulness stage of `arithlens faithfulness --nodes useful` peaked at 1.56 GB (budget 1.5 GB). Below 1,024 it
# gains nothing once the sweep's pages are released: 1,157 MB at 1,024, 1,161 MB at 512
# (`benchmarks/bench_faithfulness_memory.py --chunk N`, benchmarks/results/faithfulness_memory.txt).
CHUNK = 1024
# Reference questions per pass of `mean_values`: all 2,048 in one pass rose 554-654 MB over the process, 256 at a time
# 75-146 MB, with bitwise the same means (float64 sums; `python benchmarks/bench_circuit_memory.py --means`)
MEANS_CHUNK = 256
DRAW_BLOCK = 2048  # resample rows are drawn this many questions at a time (the earlier chunk): a seed keeps its rows
# Independent random streams per seed: np.random.default_rng([seed, stream]).
STREAM_EVAL, STREAM_REFERENCE, STREAM_RESAMPLE, STREAM_SEARCH, STREAM_MINIMALITY = range(5)


def supported_qtypes(spec: ModelSpec) -> list[QType]:
    """The question types a model was trained on (as `evaluate` has them)."""
    out = [QType.ADD] if spec.perc_add else []
    out += [QType.SUB, QType.NEG] if spec.perc_sub else []
    return out + ([QType.MUL] if spec.perc_mul else [])


def all_nodes(spec: ModelSpec) -> list[Node]:
    """Every head and every whole MLP layer at every position: the nodes a set is a subset of."""
    return sorted([Node(p, layer, False, h) for p in range(spec.n_ctx) for layer in range(spec.n_layers)
                   for h in range(spec.n_heads)]
                  + [Node(p, layer, True, -1) for p in range(spec.n_ctx) for layer in range(spec.n_layers)])


def answer_digit_names(spec: ModelSpec) -> list[str]:
    """Answer token j (0 = the sign) is answer digit A(n+1-j)."""
    n = spec.n_digits
    return [f"A{n + 1 - j}" for j in range(n + 2)]


# ---------------------------------------------------------------------------------------------------
# Questions


def rng_for(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def fresh_questions(spec: ModelSpec, per_qtype: int, rng: np.random.Generator,
                    exclude: QuestionBatch | None = None) -> QuestionBatch:
    """`per_qtype` uniform questions of each supported qtype; rows that also occur in `exclude` are dropped
    (so a held-out set shares no question with the set a search used)."""
    if per_qtype < 1:
        raise ArithLensError(f"the question count per qtype must be positive, not {per_qtype}")
    batch = QuestionBatch.concat([uniform(spec.n_digits, per_qtype, rng, qtypes={q.name.lower(): 1.0})
                                  for q in supported_qtypes(spec)])
    if exclude is not None and len(exclude):
        seen = set(zip(exclude.a.tolist(), exclude.op.tolist(), exclude.b.tolist()))
        keep = np.array([k not in seen for k in zip(batch.a.tolist(), batch.op.tolist(), batch.b.tolist())])
        batch = batch.select(keep)
    return batch


def reference_questions(spec: ModelSpec, count: int, rng: np.random.Generator) -> QuestionBatch:
    """A mixed batch in the model's training mix of operations: the source of the ablation values."""
    weights = {k: float(v) for k, v in (("add", spec.perc_add), ("minus", spec.perc_sub), ("mul", spec.perc_mul))
               if v}
    return uniform(spec.n_digits, count, rng, qtypes=weights)


# ---------------------------------------------------------------------------------------------------
# Masks and ablation values


@dataclass(frozen=True, eq=False)
class KeepMask:
    """Which activations run clean: heads (layer, pos, head) and MLP neurons (layer, pos, neuron), bool."""

    heads: Tensor
    mlp: Tensor

    @classmethod
    def of(cls, spec: ModelSpec, nodes: Iterable[Node], device: torch.device | str = "cpu") -> KeepMask:
        heads = torch.zeros(spec.n_layers, spec.n_ctx, spec.n_heads, dtype=torch.bool)
        mlp = torch.zeros(spec.n_layers, spec.n_ctx, spec.d_mlp, dtype=torch.bool)
        for node in nodes:
            if not (0 <= node.position < spec.n_ctx and 0 <= node.layer < spec.n_layers):
                raise ArithLensError(f"node {node} is outside the model ({spec.n_ctx} positions, {spec.n_layers} layers)")
            if node.is_head:
                if not 0 <= node.num < spec.n_heads:
                    raise ArithLensError(f"node {node}: head {node.num} is outside 0..{spec.n_heads - 1}")
                heads[node.layer, node.position, node.num] = True
            elif node.is_neuron:
                if node.num >= spec.d_mlp:
                    raise ArithLensError(f"node {node}: neuron {node.num} is outside 0..{spec.d_mlp - 1}")
                mlp[node.layer, node.position, node.num] = True
            else:
                mlp[node.layer, node.position] = True
        return cls(heads.to(device), mlp.to(device))

    @property
    def keeps_nothing(self) -> bool:
        """Every head and every neuron ablated: the baseline a node set's faithfulness is measured against."""
        return not bool(self.heads.any()) and not bool(self.mlp.any())

    def ablations(self, spec: ModelSpec, values: Mapping[str, Tensor]) -> list[MaskedAblation]:
        """The interventions that replace every activation outside this mask with `values` ({site: (1 or batch,
        pos, ...)}), one per site that ablates anything, lowest layer first."""
        out = []
        for layer in range(spec.n_layers):
            for name, mask in ((act_name("z", layer), self.heads[layer]), (act_name("post", layer), self.mlp[layer])):
                if not bool(mask.all()):
                    out.append(MaskedAblation(name, mask, values[name]))
        return out


def ablation_hook_names(spec: ModelSpec) -> list[str]:
    """The sites every node's output lives at (`output_sites`): what a keep mask ablates."""
    return output_sites(spec.n_layers)


def mean_values(model: HookedTransformer, reference: QuestionBatch) -> dict[str, Tensor]:
    """Per-layer, per-position means of every head's z and every MLP neuron: {hook: (1, pos, ...)}."""
    means = compute_means(model, reference, ablation_hook_names(model.spec), chunk=MEANS_CHUNK)
    return {n: means[n] for n in ablation_hook_names(model.spec)}


def resample_values(model: HookedTransformer, reference: QuestionBatch, rows: np.ndarray) -> dict[str, Tensor]:
    """Each question's replacement from a clean run of reference question `rows[i]`: {hook: (batch, pos, ...)}."""
    tokens = reference.torch_tokens(str(model.device))[torch.from_numpy(rows).to(model.device)]
    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens, ablation_hook_names(model.spec), logit_positions=[0])
    return cache


# ---------------------------------------------------------------------------------------------------
# Scores


@dataclass(frozen=True, eq=False)
class RunScores:
    """Per question: which answer tokens are wrong, mean answer NLL, mean logit difference (the right token's
    logit minus the best other one's, averaged over the answer tokens)."""

    wrong: np.ndarray  # (batch, n_answer) bool
    loss: np.ndarray  # (batch,) float64
    logit_diff: np.ndarray  # (batch,) float64

    @staticmethod
    def of(logits: Tensor, targets: Tensor) -> RunScores:
        wide = logits.double()
        right = wide.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        nll = torch.logsumexp(wide, -1) - right
        other = wide.scatter(-1, targets.unsqueeze(-1), float("-inf")).amax(-1)
        return RunScores((logits.argmax(-1) != targets).cpu().numpy(), nll.mean(-1).cpu().numpy(),
                         (right - other).mean(-1).cpu().numpy())

    @staticmethod
    def concat(parts: Sequence[RunScores]) -> RunScores:
        return RunScores(np.concatenate([p.wrong for p in parts]), np.concatenate([p.loss for p in parts]),
                         np.concatenate([p.logit_diff for p in parts]))


def everything_ablated_logits(model: HookedTransformer, tokens: Tensor, values: Mapping[str, Tensor]) -> Tensor:
    """Answer logits (batch, n_answer, vocab) with every head's z and every MLP neuron replaced by `values` ({site:
    (1 or batch, pos, ...)}), the run `KeepMask.of(spec, [])` asks for: the residual stream is then the embeddings
    plus each layer's output of those values, so no LayerNorm, attention or MLP input runs (their results would
    all be replaced). The same sums in the same order as the hooked run."""
    spec = model.spec
    B, T = tokens.shape
    resid = F.embedding(tokens, model.embed.W_E) + model.pos_embed.W_pos[:T].expand(B, T, -1)  # (B, T, D)
    for layer, block in enumerate(model.blocks):
        z = values[act_name("z", layer)][:, :T]  # (1 or B, T, H, d_head)
        post = values[act_name("post", layer)][:, :T]  # (1 or B, T, d_mlp)
        attn = torch.addmm(block.attn.b_O, z.reshape(-1, spec.n_heads * spec.d_head).to(resid.dtype),
                           block.attn.W_O.reshape(spec.n_heads * spec.d_head, spec.d_model))
        resid = resid + attn.view(z.shape[0], T, spec.d_model)
        mlp = torch.addmm(block.mlp.b_out, post.reshape(-1, spec.d_mlp).to(resid.dtype), block.mlp.W_out)
        resid = resid + mlp.view(post.shape[0], T, spec.d_model)
    x = F.layer_norm(resid[:, spec.layout.answer_logit_positions], (spec.d_model,), model.ln_final.w,
                     model.ln_final.b, LN_EPS)  # (B, n_answer, D)
    return torch.addmm(model.unembed.b_U, x.reshape(-1, spec.d_model), model.unembed.W_U).view(B, x.shape[1], -1)


def targets_of(tokens: Tensor, spec: ModelSpec) -> Tensor:
    answer = spec.layout.answer_logit_positions
    return tokens[:, answer.start + 1 : answer.stop + 1]


def run_masked(model: HookedTransformer, questions: QuestionBatch, keeps: Sequence[KeepMask | None], *,
               ablation: str = "mean", means: Mapping[str, Tensor] | None = None,
               reference: QuestionBatch | None = None, rng: np.random.Generator | None = None,
               chunk: int | None = None) -> list[RunScores]:
    """Scores of each keep mask (None: the clean model) over `questions`, `chunk` questions at a time.
    Resample ablation draws each question's reference row with `rng` (DRAW_BLOCK rows at a time, whatever the
    chunk), shared by every mask."""
    if ablation not in ABLATIONS:
        raise ArithLensError(f"ablation {ablation!r} is not one of {', '.join(ABLATIONS)}")
    if ablation == "mean" and means is None:
        raise ArithLensError("mean ablation needs the means (mean_values)")
    if ablation == "resample" and (reference is None or rng is None):
        raise ArithLensError("resample ablation needs the reference questions and an rng")
    spec = model.spec
    chunk = CHUNK if chunk is None else chunk
    tokens = questions.torch_tokens(str(model.device))
    parts: list[list[RunScores]] = [[] for _ in keeps]
    resample = ablation == "resample" and any(k is not None for k in keeps)
    if resample:
        rows = [rng.integers(0, len(reference), size=min(DRAW_BLOCK, len(tokens) - s))
                for s in range(0, len(tokens), DRAW_BLOCK)]
        rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    reach = spec.layout.answer_logit_positions.stop  # later positions change no answer logit: not run
    with torch.inference_mode():
        for start in range(0, len(tokens), chunk):
            targets = targets_of(tokens[start : start + chunk], spec)
            part = tokens[start : start + chunk, :reach]
            if resample:
                values = resample_values(model, reference, rows[start : start + len(part)])
            else:
                values = means
            for k, keep in enumerate(keeps):
                if keep is not None and keep.keeps_nothing:
                    logits = everything_ablated_logits(model, part, values)
                else:
                    logits = run_with_interventions(model, part, [] if keep is None else keep.ablations(spec, values))
                parts[k].append(RunScores.of(logits, targets))
    return [RunScores.concat(p) for p in parts]


def _qtype_rows(questions: QuestionBatch, spec: ModelSpec, scores: RunScores, clean: RunScores,
                ablated: RunScores) -> tuple[QTypeFaithfulness, ...]:
    digits = answer_digit_names(spec)
    rows = []
    for qt in supported_qtypes(spec):
        m = questions.qtype == qt
        n = int(m.sum())

        def mean(x: np.ndarray) -> float:
            return float(x[m].mean()) if n else float("nan")

        right = ~scores.wrong[m]
        rows.append(QTypeFaithfulness(
            qt.name, n, int(right.all(1).sum()), int((~clean.wrong[m]).all(1).sum()),
            int((~ablated.wrong[m]).all(1).sum()), tuple((d, int(right[:, j].sum())) for j, d in enumerate(digits)),
            mean(scores.loss), mean(clean.loss), mean(ablated.loss),
            mean(scores.logit_diff), mean(clean.logit_diff), mean(ablated.logit_diff)))
    return tuple(rows)


def measure_faithfulness(
    model: HookedTransformer,
    node_sets: Mapping[str, Iterable[Node]],
    *,
    questions_per_qtype: int = 10_000,
    seed: int = FAITHFULNESS_SEED,
    ablation: str = "mean",
    reference: int = REFERENCE_QUESTIONS,
    exclude: QuestionBatch | None = None,
    questions: QuestionBatch | None = None,
) -> dict[str, Faithfulness]:
    """Faithfulness of each named node set on the same fresh questions (`questions_per_qtype` uniform ones per
    qtype, none of them in `exclude`; or `questions` as given), with the same ablation values. The clean and
    all-ablated baselines are run once for all the sets."""
    t0 = time.perf_counter()
    release_freed_memory()  # what the stage before (the useful sweep, a circuit's pruner) freed
    spec = model.spec
    sets = {label: sorted(set(nodes)) for label, nodes in node_sets.items()}
    if questions is None:
        questions = fresh_questions(spec, questions_per_qtype, rng_for(seed, STREAM_EVAL), exclude)
    ref = reference_questions(spec, reference, rng_for(seed, STREAM_REFERENCE))
    means = mean_values(model, ref) if ablation == "mean" else None
    keeps = [None, KeepMask.of(spec, [], model.device)] + [KeepMask.of(spec, s, model.device) for s in sets.values()]
    scores = run_masked(model, questions, keeps, ablation=ablation, means=means, reference=ref,
                        rng=rng_for(seed, STREAM_RESAMPLE))
    clean, ablated = scores[0], scores[1]
    seconds = time.perf_counter() - t0
    n_all = len(all_nodes(spec))
    return {label: Faithfulness(spec.name, label, tuple(n.name for n in nodes), n_all, ablation, reference, seed,
                                _qtype_rows(questions, spec, s, clean, ablated), seconds)
            for (label, nodes), s in zip(sets.items(), scores[2:])}


# ---------------------------------------------------------------------------------------------------
# Node set files


def read_node_set(path: str | Path, spec: ModelSpec) -> list[Node]:
    """Nodes from a file: a behaviour JSON (list of node records), a circuit / faithfulness JSON (with a
    "nodes" list of names), or plain text with one node name per line or separated by spaces or commas."""
    from arithlens.analysis.nodes import NodeList

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ArithLensError(f"cannot read node set '{path}': {exc.strerror or exc}") from None
    stripped = text.lstrip()
    if stripped.startswith("[") or stripped.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ArithLensError(f"node set '{path}' is not valid JSON: {exc}") from None
        if isinstance(data, dict):
            names = data.get("nodes")
            if not isinstance(names, list):
                raise ArithLensError(f"node set '{path}' has no \"nodes\" list")
            return sorted({Node.for_model(str(n), spec) for n in names})
        if data and all(isinstance(x, str) for x in data):
            return sorted({Node.for_model(n, spec) for n in data})
        return sorted({Node.for_model(n.name, spec) for n in NodeList.from_records(data)})
    names = [w for line in text.splitlines() for w in line.partition("#")[0].replace(",", " ").split()]
    return sorted({Node.for_model(n, spec) for n in names})
