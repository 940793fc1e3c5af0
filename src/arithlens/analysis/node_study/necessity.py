"""Necessity: tricase questions at the study digit with the node replaced (mean, resample, same / other class mean)."""

from __future__ import annotations

import numpy as np

from arithlens.analysis import stats
from arithlens.analysis.node_study.options import ABLATIONS, CARRY, WORD, StudyOptions
from arithlens.analysis.node_study.runs import Site, StudyCache, capture
from arithlens.arith.questions import QuestionBatch
from arithlens.arith.tricase import CASES, tricase, tricase_count
from arithlens.errors import ArithLensError


def necessity(model, site: Site, ops, t: int, options: StudyOptions, rng_tricase, rng_resample,
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
        act, _, eng = capture(model, site, qs, engine=True, cache=cache)
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
        eng.release_scratch()  # the engine may stay cached for the next head: its clean run only
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

