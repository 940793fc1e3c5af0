"""What one feature (or one supervised direction) does: edit it inside the site's activation, keeping the
dictionary's error term, and count which answer digits go wrong for which qtype.

With x = x_hat + error and x_hat = f @ W_dec + b_dec, setting feature i to v gives x + (v - f_i) W_dec[i]:
"ablate" is v = 0; "flip" is v = the feature's mean over the rows of the *other* class of a label (within the
row's qtype), the feature-level version of the node study's class-mean patch. A direction d (a difference of
class means) is edited the same way along d / |d|: "ablate" sets each row's coordinate to its qtype's mean,
"flip" moves it to the other class's mean.
"""

from __future__ import annotations

import numpy as np

from arithlens.analysis import stats
from arithlens.analysis.features.activations import Site
from arithlens.interventions import Engine, Outcome
from arithlens.arith.questions import QType, QuestionBatch

MODES = ("ablate", "flip")


def _other_class_mean(values: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per row: the mean of `values` over rows of its group whose label differs (the row's own value when
    its group has no such row)."""
    out = values.copy()
    for g in np.unique(groups):
        rows = groups == g
        for c in (False, True):
            own, other = rows & (y == c), rows & (y != c)
            if own.any() and other.any():
                out[own] = values[other].mean()
    return out


def feature_edit(x: np.ndarray, f: np.ndarray, w_dec: np.ndarray, feature: int, mode: str,
                 y: np.ndarray | None = None, groups: np.ndarray | None = None) -> np.ndarray:
    """x (n, d) with feature `feature` set to 0 ("ablate") or to the other class's mean ("flip", needs the
    label `y` and the `groups` (qtype) within which classes are compared); error term kept."""
    v = _target(f[:, feature], mode, y, groups)
    return x + (v - f[:, feature])[:, None] * w_dec[feature][None, :]


def direction_edit(x: np.ndarray, direction: np.ndarray, mode: str, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """x (n, d) with its coordinate along `direction` set to its group's mean ("ablate") or to the other
    class's mean ("flip")."""
    u = direction / np.linalg.norm(direction)
    c = x @ u  # (n,)
    if mode == "ablate":
        v = c.copy()
        for g in np.unique(groups):
            v[groups == g] = c[groups == g].mean()
    else:
        v = _other_class_mean(c, y, groups)
    return x + (v - c)[:, None] * u[None, :]


def _target(values: np.ndarray, mode: str, y, groups) -> np.ndarray:
    if mode == "ablate":
        return np.zeros_like(values)
    if mode == "flip":
        if y is None or groups is None:
            raise ValueError("a flip needs the label and the groups")
        return _other_class_mean(values, np.asarray(y, bool), groups)
    raise ValueError(f"mode must be one of {MODES}, not {mode!r}")


def effect_record(outcome: Outcome, clean: Outcome, batch: QuestionBatch, answer_names: list[str],
                  target: int | None) -> dict:
    """Per qtype: exact-failure rate (Wilson), wrong rate of every answer token, the target token's wrong rate,
    and the clean rates to compare."""
    out = {}
    for q in np.unique(batch.qtype):
        rows = batch.qtype == q
        n = int(rows.sum())
        fails = outcome.wrong[rows].any(1)
        rec = {"n": n, "fail": stats.rate(int(fails.sum()), n),
               "clean_fail": stats.rate(int(clean.wrong[rows].any(1).sum()), n),
               "wrong_by_answer": dict(zip(answer_names, outcome.wrong[rows].mean(0).tolist())),
               "digits_failing": [a for a, w, c in zip(answer_names, outcome.wrong[rows].mean(0),
                                                      clean.wrong[rows].mean(0)) if w - c >= 0.01]}
        if target is not None:
            rec["target_wrong"] = stats.rate(int(outcome.wrong[rows, target].sum()), n)
            rec["clean_target_wrong"] = float(clean.wrong[rows, target].mean()) if n else 0.0
        out[QType(int(q)).name] = rec
    return out


def run_edits(engine: Engine, site: Site, edits: dict[str, np.ndarray], batch: QuestionBatch,
              answer_names: list[str], target: int | None) -> dict[str, dict]:
    """{edit name: effect_record} for each edited activation (n, d_site), one engine run each."""
    return {name: effect_record(engine.outcome([site.replace(x)]), engine.clean, batch, answer_names, target)
            for name, x in edits.items()}


__all__ = ["MODES", "direction_edit", "effect_record", "feature_edit", "run_edits"]
