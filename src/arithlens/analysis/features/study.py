"""A dictionary of one site, end to end (train, quality, meaning, optional sweep: `dictionary_record`), and the
founding question from below (`features_record`): how many features carry the carry, the borrows and the
operands, whether one feature serves carry and borrow at once, what editing each does, and the same facts from
a linear probe and a difference-of-means direction beside them. Plain dicts out (JSON); no sentences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
from threadpoolctl import threadpool_limits

from arithlens.analysis import stats
from arithlens.analysis.features import dictionary as dic
from arithlens.analysis.features import effects, meaning, quality
from arithlens.analysis.features.activations import Site, qtypes_of, site_acts, training_questions
from arithlens.interventions import Engine
from arithlens.arith.questions import QType
from arithlens.errors import ArithLensError

EFFECT_MIN = 0.05  # an edit "moves" a qtype when its target digit goes wrong on >= 5 points more than clean
SHARED_COS_MIN = 0.5  # |cos| between two supervised directions that counts as one shared axis
PROBE_MIN = 0.95  # a probe "reads" a label at this held-out accuracy (and p <= P_MAX)
PROBE_COMPONENTS = 32  # probes see the top principal components, as in the node study
CARRY_OPS = (QType.ADD, QType.SUB, QType.NEG)


@dataclass(frozen=True)
class SAEOptions:
    """What `al.sae` / `al.feature_study` train and on how much: `questions` fresh training questions and
    `eval_questions` held-out ones (both half uniform, half enriched, over the model's qtypes), the dictionary
    (`arch`, `size`, `k`, `l1`, `steps`, ...; size and k default from the site's width), `permutations` label
    shuffles for every null, and `sweep` for the Pareto curve (sizes x sparsities, half the steps)."""

    arch: str = "topk"
    size: int | None = None  # default: 4 x d_site, between 64 and 1024
    k: int | None = None  # default: max(4, d_site // 32)
    l1: float = 0.05
    steps: int = 3000
    batch: int = 256
    lr: float = 2e-3
    questions: int = 20_000
    eval_questions: int = 3000
    permutations: int = 100
    seed: int = 0
    sweep: bool = False
    digit: int | None = None  # the carry/borrow digit of the founding question; default: the one into the
    # answer digit the site's position predicts
    trainer: str = "arithlens"  # or "saelens" (SAELens's SAETrainer; the `sae` extra)

    def __post_init__(self) -> None:
        for name, low in (("questions", 20), ("eval_questions", 20), ("permutations", 0), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ArithLensError(f"{name} must be an integer >= {low}, not {value!r}")
        self.train_options(32)  # checks arch, size, k, l1, steps, batch, lr

    def train_options(self, d_site: int) -> dic.TrainOptions:
        size = self.size if self.size is not None else int(min(1024, max(64, 4 * d_site)))
        k = self.k if self.k is not None else min(size, max(4, d_site // 32))
        return dic.TrainOptions(arch=self.arch, size=size, k=k, l1=self.l1, steps=self.steps,
                                batch=self.batch, lr=self.lr, seed=self.seed, trainer=self.trainer)


@dataclass
class Trained:
    """A trained dictionary with what it was trained and judged on (kept out of the JSON)."""

    site: Site
    sae: dic.SparseAutoencoder
    options: dic.TrainOptions
    train_x: np.ndarray
    eval_batch: object
    eval_x: np.ndarray
    eval_f: np.ndarray
    engine: Engine | None = None  # the held-out questions' engine, made once
    table: dict | None = None  # the AUROC table, computed once


def train(model, site_name, options: SAEOptions, say: Callable[[str], None] = lambda _m: None) -> Trained:
    spec = model.spec
    site = Site.parse(site_name, spec)
    say(f"activations of {site.name} on {options.questions} training questions")
    train_batch = training_questions(spec, options.questions, options.seed)
    eval_batch = training_questions(spec, options.eval_questions, options.seed + 1)
    train_x = site_acts(model, site, train_batch)
    eval_x = site_acts(model, site, eval_batch)
    topt = options.train_options(train_x.shape[1])
    say(f"training a {topt.arch} dictionary: {topt.size} features, {topt.steps} steps")
    sae = dic.train_dictionary(train_x, topt)
    return Trained(site, sae, topt, train_x, eval_batch, eval_x, dic.encode(sae, eval_x))


def _recon(t: Trained) -> np.ndarray:
    return t.eval_f @ t.sae.W_dec.detach().double().numpy() + t.sae.b_dec.detach().double().numpy()


def dictionary_record(model, t: Trained, options: SAEOptions, say: Callable[[str], None] = lambda _m: None) -> dict:
    """Quality, meaning and (with options.sweep) the Pareto sweep of a trained dictionary, as JSON."""
    spec = model.spec
    batch = t.eval_batch
    say("quality: reconstruction and spliced accuracy")
    recon = quality.reconstruction_stats(t.eval_x, _recon(t), t.eval_f)
    train_recon = quality.reconstruction_stats(
        t.train_x, dic.encode(t.sae, t.train_x) @ t.sae.W_dec.detach().double().numpy()
        + t.sae.b_dec.detach().double().numpy(), dic.encode(t.sae, t.train_x))
    if t.engine is None:
        t.engine = Engine(model, batch)
    spliced = quality.spliced_accuracy(t.engine, t.site, batch, t.eval_x, _recon(t))
    say(f"meaning: AUROC of every live feature for every label ({options.permutations} permutations)")
    live = (t.eval_f > 0).any(0)
    table = _table(t, options, live)
    cards = meaning.feature_cards(t.eval_f, batch, table, live)
    record = {
        "site": t.site.name, "hook": t.site.hook, "position": t.site.position, "head": t.site.head,
        "model": spec.name, "d_in": t.sae.d_in, "arch": t.options.arch, "size": t.options.size,
        "k": t.options.k if t.options.arch != "l1" else None, "l1": t.options.l1 if t.options.arch == "l1" else None,
        "train": asdict(t.options), "options": asdict(options),
        "questions": {"train": len(t.train_x), "eval": len(batch),
                      "qtypes": [q.name for q in qtypes_of(spec)], "kinds": "half uniform, half enriched"},
        "quality": {**recon, "train": train_recon, "accuracy": spliced},
        "meaning": {"auroc_min": meaning.AUROC_MIN, "p_max": meaning.P_MAX, "permutations": options.permutations,
                    "null": "per label, the best |AUROC - 0.5| over all live features with the label shuffled",
                    "interval": "Hanley-McNeil 95%", "live": int(live.sum()),
                    "cross_qtype": [c["feature"] for c in cards if c["cross_qtype"]],
                    "labels": _label_summary(table, live)},
        "features": cards,
        "sweep": _sweep(t, options, say) if options.sweep else [],
    }
    return record


def _table(t: Trained, options: SAEOptions, live: np.ndarray) -> dict:
    """The AUROC table over all features (dead ones nan), computed on the live ones (once per dictionary)."""
    if t.table is not None:
        return t.table
    with threadpool_limits(limits=1, user_api="blas"):
        sub = meaning.auroc_table(t.eval_f[:, live], t.eval_batch, permutations=options.permutations,
                                  seed=options.seed)
    full = dict(sub)
    for key in ("auroc", "lo", "hi", "p"):
        arr = np.full((t.eval_f.shape[1], len(sub["labels"])), np.nan)
        arr[live] = sub[key]
        full[key] = arr
    t.table = full
    return full


def _label_summary(table: dict, live: np.ndarray) -> list[dict]:
    """Per label: its best feature and how many features carry it."""
    out = []
    for label in table["labels"]:
        best = meaning.best_feature(table, label, live)
        out.append({"label": label, "carriers": meaning.carriers(table, label, live), "best": best})
    return out


def _sweep(t: Trained, options: SAEOptions, say: Callable[[str], None]) -> list[dict]:
    """L0 against explained variance over sizes (half and the chosen) x three sparsities, half the steps each."""
    base = t.options
    sizes = sorted({max(base.k + 1, base.size // 2), base.size})
    points = []
    for size in sizes:
        for factor in (0.5, 1.0, 2.0):
            if base.arch == "l1":
                opt = replace(base, size=size, l1=base.l1 * factor, steps=max(1, base.steps // 2))
            else:
                opt = replace(base, size=size, k=int(min(size, max(1, round(base.k * factor)))),
                              steps=max(1, base.steps // 2))
            say(f"sweep: size {opt.size}, {'l1 ' + format(opt.l1, 'g') if base.arch == 'l1' else 'k ' + str(opt.k)}")
            sae = dic.train_dictionary(t.train_x, opt)
            f = dic.encode(sae, t.eval_x)
            x_hat = f @ sae.W_dec.detach().double().numpy() + sae.b_dec.detach().double().numpy()
            s = quality.reconstruction_stats(t.eval_x, x_hat, f)
            points.append({"size": opt.size, "k": opt.k if base.arch != "l1" else None,
                           "l1": opt.l1 if base.arch == "l1" else None, "steps": opt.steps,
                           "l0": s["l0"], "explained_variance": s["explained_variance"], "mse": s["mse"],
                           "dead_share": s["dead_share"]})
    return points


# ---------------------------------------------------------------------------------------------------
# The founding question from below


def study_digit(spec, site: Site, digit: int | None) -> int:
    """The carry / borrow digit: `digit`, else the one whose carry reaches the answer digit predicted here."""
    n = spec.n_digits
    if digit is not None:
        if not isinstance(digit, (int, np.integer)) or not 0 <= digit < n:
            raise ArithLensError(f"digit must be 0..{n - 1}, not {digit!r}")
        return int(digit)
    k = spec.layout.answer_digit_at(site.position)
    if k is None or not 1 <= k <= n:
        raise ArithLensError(f"{site.name} predicts no answer digit with a carry into it; give digit=")
    return k - 1


def features_record(model, t: Trained, record: dict, options: SAEOptions,
                    say: Callable[[str], None] = lambda _m: None) -> dict:
    """The "features" part of a node study: carry / borrow / operand carriers at the study digit, the
    shared-feature question, each matched feature's causal effect, and the probe and direction beside them."""
    spec = model.spec
    batch = t.eval_batch
    digit = study_digit(spec, t.site, options.digit)
    n = spec.n_digits
    answer_names = [f"A{d}" for d in reversed(range(n + 2))]  # sign first
    target = answer_names.index(f"A{digit + 1}")  # the token a carry / borrow out of `digit` changes
    ops = [op for op in CARRY_OPS if op in qtypes_of(spec)]
    live = (t.eval_f > 0).any(0)
    table = _table(t, options, live)
    labels, matrix, _ = meaning.question_labels(batch)
    w_dec = t.sae.W_dec.detach().double().numpy()
    groups = batch.qtype
    x = t.eval_x.astype(np.float64)

    per_label, edits, probes, directions = {}, {}, {}, {}
    say(f"founding question at digit {digit}: carriers, probes, directions")
    pcs = stats.pca(x, min(PROBE_COMPONENTS, x.shape[1]))
    white = pcs.scores / np.sqrt(np.maximum(pcs.scores.var(0), 1e-12))
    for op in ops:
        # the real carry (cascades included) and the pair's own predicate (all a layer-0 head can see): the
        # study follows whichever a feature separates better, as the node study takes the better probe
        real = f"{op.name}.{meaning.CARRY[op]}{digit}"
        candidates = (real, real + ".pair")
        bests = {lab: meaning.best_feature(table, lab, live) for lab in candidates}
        label = max(candidates, key=lambda lab: -1.0 if bests[lab] is None else bests[lab]["strength"])
        y = matrix[:, labels.index(label)]
        rows = groups == op
        best = bests[label]
        per_label[op.name] = {"label": label, "best": best,
                              "carriers": sorted({i for lab in candidates for i in meaning.carriers(table, lab, live)}),
                              "by_label": {lab: {"best": bests[lab], "carriers": meaning.carriers(table, lab, live)}
                                           for lab in candidates}}
        if best is not None:
            i = best["feature"]
            edits[f"feature {i} ablate"] = effects.feature_edit(x, t.eval_f, w_dec, i, "ablate")
            edits[f"{op.name} feature {i} flip"] = effects.feature_edit(x, t.eval_f, w_dec, i, "flip", y, groups)
        fitted = {}
        with threadpool_limits(limits=1, user_api="blas"):
            for lab in candidates:
                fitted[lab] = stats.probe_accuracy(white[rows], matrix[rows, labels.index(lab)],
                                                   permutations=options.permutations, random_state=options.seed)
        top = max(candidates, key=lambda lab: -1.0 if np.isnan(fitted[lab].accuracy) else fitted[lab].accuracy)
        probe = fitted[top]
        probes[op.name] = {**probe.to_dict(), "label": top,
                           "reads": bool(probe.accuracy >= PROBE_MIN and probe.p_value <= meaning.P_MAX),
                           "by_label": {lab: {"accuracy": _finite(p.accuracy), "p_value": _finite(p.p_value)}
                                        for lab, p in fitted.items()}}
        d = stats.mean_difference(x[rows], y[rows])
        directions[op.name] = d
        if np.isfinite(d).all() and np.linalg.norm(d) > 0:
            edits[f"{op.name} direction ablate"] = effects.direction_edit(x, d, "ablate", y, groups)
            edits[f"{op.name} direction flip"] = effects.direction_edit(x, d, "flip", y, groups)
    say(f"effects: {len(edits)} edits of the site, one engine run each")
    if t.engine is None:
        t.engine = Engine(model, batch)
    effect = effects.run_edits(t.engine, t.site, edits, batch, answer_names, target)

    operand_labels = [f"{side}{digit}={v}" for side in ("D", "D'") for v in range(10)]
    operand_carriers = sorted({i for lab in operand_labels for i in meaning.carriers(table, lab, live)})
    carry_sets = {op: set(per_label[op]["carriers"]) for op in per_label}
    shared_features = sorted(carry_sets.get("ADD", set()) & (carry_sets.get("SUB", set()) | carry_sets.get("NEG", set())))
    comparisons = {}
    for op in ops:
        best = per_label[op.name]["best"]
        d = directions[op.name]
        flip = effect.get(f"{op.name} feature {best['feature']} flip") if best else None
        dflip = effect.get(f"{op.name} direction flip")
        comparisons[op.name] = {
            "feature_encodes": bool(best and best["passes"]),
            "probe_reads": probes[op.name]["reads"],
            "feature_moves": _moves(flip, op.name),
            "direction_moves": _moves(dflip, op.name),
            "feature_direction_cosine": (stats.cosine(w_dec[best["feature"]], d)
                                         if best and np.isfinite(d).all() else None),
        }
        c = comparisons[op.name]
        c["encoding_agrees"] = c["feature_encodes"] == c["probe_reads"]
        c["use_agrees"] = c["feature_moves"] == c["direction_moves"]
    direction_cos = {}
    for a, b in (("ADD", "SUB"), ("ADD", "NEG"), ("SUB", "NEG")):
        if a in directions and b in directions:
            direction_cos[f"{a}~{b}"] = _finite(stats.cosine(directions[a], directions[b]))
    shared_by_direction = any(v is not None and abs(v) >= SHARED_COS_MIN and k.startswith("ADD")
                              for k, v in direction_cos.items())
    return {
        "site": t.site.name, "digit": digit, "target_digit": f"A{digit + 1}", "answer_names": answer_names,
        "thresholds": {"auroc_min": meaning.AUROC_MIN, "p_max": meaning.P_MAX, "effect_min": EFFECT_MIN,
                       "probe_min": PROBE_MIN, "shared_cos_min": SHARED_COS_MIN},
        "carry_borrow": per_label, "operand_carriers": operand_carriers,
        "shared_features": shared_features, "one_feature_for_carry_and_borrow": bool(shared_features),
        "effects": effect, "probes": probes,
        "directions": {"cosines": direction_cos, "shared_axis": shared_by_direction,
                       "method": "difference of class means (carry vs none) within each qtype"},
        "comparison": comparisons,
    }


def study_features(model, node, options: SAEOptions | None = None,
                   progress: Callable[[str], None] | None = None) -> tuple[dict, dic.SparseAutoencoder]:
    """The node study's "features" part for one node, as JSON ({"site", "model", "dictionary", "features"}),
    and the trained dictionary. Deterministic for `options.seed`."""
    options = options or SAEOptions()
    say = progress or (lambda _m: None)
    trained = train(model, node, options, say)
    record = dictionary_record(model, trained, options, say)
    found = features_record(model, trained, record, options, say)
    return {"site": trained.site.name, "model": model.spec.name, "dictionary": record, "features": found}, trained.sae


def _moves(effect: dict | None, op: str) -> bool:
    if not effect or op not in effect:
        return False
    rec = effect[op]
    return bool(rec["target_wrong"]["rate"] - rec["clean_target_wrong"] >= EFFECT_MIN)


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


__all__ = ["SAEOptions", "Trained", "dictionary_record", "features_record", "study_digit", "study_features", "train"]
