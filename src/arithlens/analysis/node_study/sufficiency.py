"""Sufficiency: patch the node from store questions whose carry / borrow out of the study digit differs, and
compare with the answer that carry / borrow should give; the other heads of the layer are the control."""

from __future__ import annotations

import numpy as np
import torch

from arithlens.analysis import stats
from arithlens.analysis.node_study.options import CARRY, WORD, StudyOptions
from arithlens.analysis.node_study.runs import Site, StudyCache, question_key
from arithlens.arith.questions import QType, QuestionBatch
from arithlens.interventions import Engine, patch_from, record
from arithlens.model.hooks import act_name


def _carry_out(op: QType, x, y, c):
    if op == QType.ADD:
        return x + y + c >= 10
    if op == QType.SUB:
        return x - y - c < 0
    return y - x - c < 0  # NEG: the magnitude b - a borrows where Dt > D't


def sufficiency(model, site: Site, ops, t: int, sets, options: StudyOptions, rng,
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
    z_name = act_name("z", layer)
    names = tuple(sorted({z_name, site.hook}))
    if cache is None:
        stored, eng = record(model, store, names), Engine(model, clean)
    else:  # (the engine runs unhooked: every node studied at digit t shares it)
        stored = cache.get(("record", names, question_key(store)), lambda: record(model, store, names))
        eng = cache.get(("engine", question_key(clean)), lambda: Engine(model, clean))
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
    eng.release_scratch()  # (it may stay cached)
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

