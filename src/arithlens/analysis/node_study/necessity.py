"""Necessity: tricase questions at the study digit with the node replaced (mean, resample, same / other class mean)."""

from __future__ import annotations

import numpy as np

from arithlens.analysis import stats
from arithlens.analysis.node_study.options import ABLATIONS, CARRY, WORD, StudyOptions
from arithlens.analysis.node_study.runs import Site, StudyCache, array_key, capture, question_key
from arithlens.arith.questions import QuestionBatch
from arithlens.arith.tricase import CASES, tricase, tricase_count
from arithlens.errors import ArithLensError
from arithlens.interventions import Engine, Intervention, Outcome

# Questions per engine: a qtype's necessity set (3 T classes x `questions`) runs this many at a time, so a study
# holds one chunk's clean run (~0.2 GB with its scratch on the default model) instead of the whole set's (~0.6 GB
# at the founding 3,000): `arithlens node P18L0H0` peaked at 1.26 GB in one batch, 0.75 GB in chunks
# (benchmarks/results/memory.md). At analyze's STUDY_DEFAULTS (900 a qtype) a set is one chunk, shared as before.
CHUNK = 1000


def necessity(model, site: Site, ops, t: int, options: StudyOptions, rng_tricase, rng_resample,
               mixed_act: np.ndarray, mixed_mean: np.ndarray, cache: StudyCache | None = None,
               chunk: int | None = None, companions: tuple[tuple[Site, np.ndarray], ...] = ()) -> tuple[dict, dict]:
    """The necessity part of the study and the question sets the later steps use. `companions`: (site, mixed-set
    activations) of nodes whose studies come next at this digit with these options (so on these questions): their
    replacements run on this study's clean runs, and their outcomes wait in `cache` for their own studies."""
    n, chunk = model.spec.n_digits, chunk or CHUNK
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
        pick = rng_resample.integers(0, len(mixed_act), len(qs))
        act, outcomes = _replaced_runs(model, site, qs, pick, mixed_act, mixed_mean, chunk, cache,
                                       companions)
        carry = qs.labels["carry_out"].astype(np.int8)
        pair = qs.features.pair[CARRY[op]][:, t].astype(np.int8)
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


def _replaced_runs(model, site: Site, qs: QuestionBatch, pick: np.ndarray, mixed_act: np.ndarray,
                   mixed_mean: np.ndarray, chunk: int, cache: StudyCache | None,
                   companions=()) -> tuple[np.ndarray, dict]:
    """The node's activations on `qs` (batch, d_site) and the outcome of each replacement: clean, mean, resample
    (row i takes mixed row pick[i]) and, where both carry classes occur, the same / other class mean. The runs go
    `chunk` questions at a time; each question's outcome is its own row's, so the result is the one-batch one.
    The companions' replacements run on the same clean runs (the same questions) and their outcomes go to
    `cache`; a study whose outcomes are there already runs no replacement."""
    spans = [slice(s, min(s + chunk, len(qs))) for s in range(0, len(qs), chunk)]

    def acts(of: Site) -> tuple[np.ndarray, Engine | None]:
        if len(spans) == 1:  # the capture's pass is the engine's own (and shared through the cache)
            act, _, eng = capture(model, of, qs, engine=True, cache=cache)
            return act, eng
        # the class means need every row's activation before any chunk's engine runs
        return np.concatenate([capture(model, of, qs.select(s), engine=False, cache=cache)[0] for s in spans]), None

    act, eng = acts(site)
    key = _outcomes_key(site, qs, pick, mixed_act, chunk)
    done = None if cache is None else cache.find(key)
    if done is not None:  # a companion's study ran them
        return act, done
    carry = qs.labels["carry_out"].astype(np.int8)
    sites = [(site, act, mixed_act, mixed_mean)] + [
        (s, acts(s)[0], m, m.mean(0, keepdims=True)) for s, m in (companions if cache is not None else ())
        if s.hook == site.hook and s.node != site.node]
    both = 0 < carry.sum() < len(carry)
    sites = [(s, a, m, mean, np.stack([a[carry == 0].mean(0), a[carry == 1].mean(0)]) if both else None)
             for s, a, m, mean in sites]  # the class means (2, d_site) where both classes occur
    parts: list[dict[str, list[Outcome]]] = [{} for _ in sites]
    for span in spans:
        if eng is None:
            eng = Engine(model, qs.select(span))
        for got in parts:
            got.setdefault("clean", []).append(eng.clean)
        for (s, _, m, mean, means), got in zip(sites, parts):
            for name, ivs in _replacements(s, m[pick[span]], mean, means, carry[span]).items():
                got.setdefault(name, []).append(eng.outcome(ivs))
        eng.release_scratch()  # the engine may stay cached for the next head: its clean run only
        eng = None  # freed before the next chunk's is built
    outcomes = [{name: Outcome(np.concatenate([o.loss for o in os]), np.concatenate([o.wrong for o in os]),
                               os[0].threshold) for name, os in got.items()} for got in parts]
    for (s, _, m, _, _), o in zip(sites[1:], outcomes[1:]):
        cache.put(_outcomes_key(s, qs, pick, m, chunk), o)
    return act, outcomes[0]


def _replacements(site: Site, resampled: np.ndarray, mean: np.ndarray, means: np.ndarray | None,
                  carry: np.ndarray) -> dict[str, list[Intervention]]:
    """One chunk's replacements of the node: the mixed-set `mean`, the `resampled` mixed rows and, where both
    classes occur, the class `means` (2, d_site) by the chunk's `carry`."""
    out = {"mean": [site.replace(mean, "mean")], "resample": [site.replace(resampled, "resample")]}
    if means is not None:
        out["same_class_mean"] = [site.replace(means[carry], "mean")]
        out["other_class_mean"] = [site.replace(means[1 - carry], "mean")]
    return out


def _outcomes_key(site: Site, qs: QuestionBatch, pick: np.ndarray, mixed_act: np.ndarray, chunk: int) -> tuple:
    """What a node's replacement outcomes on `qs` depend on (besides the model): the node, the questions, the
    resampled rows and the mixed-set activations they come from, and the chunking (the batch of each run)."""
    return ("outcomes", site.node, question_key(qs), array_key(pick, mixed_act), chunk)


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

