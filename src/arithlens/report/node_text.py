"""The node study in words: the verdict paragraph (from the decisions `analysis.node_study.verdict` makes) and
the summary `arithlens node` prints. Reads a study's JSON object; computes nothing new."""

from __future__ import annotations

import math

import numpy as np

from arithlens.analysis.node_study.options import ABLATIONS, CARRY, WORD
from arithlens.arith.questions import QType


def geometry_text(data: dict, t: int, geometry: dict) -> str:
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


def verdict_text(data: dict) -> str:
    """The verdict in one paragraph, from a study's JSON object and its decisions (`data["verdict"]`, the rules
    of `analysis.node_study.verdict`)."""
    verdict = data["verdict"]
    ops = [QType[name] for name in data["qtypes"]]
    t, per = data["study_digit"], verdict["per_qtype"]
    roles = [op for op in ops if per[op.name]["role"]]
    polysemantic, blind, geometry = verdict["polysemantic"], verdict["operator_blind"], verdict["pair_geometry"]
    rep, nec, suf, grid = data["representation"], data["necessity"], data["sufficiency"], data["grid"]
    features = ", ".join(f"A{t}.{CARRY[op]} for {op.name}" for op in roles)
    k, pos = data["answer_digit"], data["position"]
    if t == k:
        head = (f"not polysemantic: reads {_reads(data, t)} of (D{t}, D'{t}), the base digit pair of A{k} (the digit "
                f"it predicts); a carry or borrow out of digit {t} only changes A{t + 1}, predicted before P{pos}")
    elif polysemantic:
        head = f"polysemantic: computes {features}: {geometry_text(data, t, geometry or {})}"
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
    text = text if t == k else text + " " + " ".join(mean_ablation_notes(data, ops))
    return text + (" " + features_sentence(verdict["features"]) if "features" in verdict else "")


def features_sentence(found: dict) -> str:
    """The dictionary's answer in one sentence (the decisions of `analysis.node_study.verdict.features_verdict`)."""
    carriers = ", ".join(f"{op} {n}" for op, n in found["carriers"].items())
    agree = [op for op, ok in found["methods_agree"].items() if ok]
    differ = [op for op, ok in found["methods_agree"].items() if not ok]
    return (f"Dictionary features (explained variance {_pct(found['explained_variance'])}, L0 {found['l0']:.1f}): "
            f"features carrying the carry/borrow {carriers}; {found['operand_carriers']} carry an operand digit; "
            f"one feature for carry and borrow at once: {'yes' if found['one_feature_for_carry_and_borrow'] else 'no'}; "
            "features, probe and direction " + (f"agree for {'/'.join(agree)}" if agree else "agree for no qtype")
            + (f", disagree for {'/'.join(differ)}" if differ else "") + ".")


def mean_ablation_notes(data, ops) -> list[str]:
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

