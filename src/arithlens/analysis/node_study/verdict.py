"""The verdict rules: from a study's numbers to its decisions (encodes, necessary, sufficient, role per qtype;
polysemantic, shared direction, operator-blind), as data. The words are `report.node_text`'s."""

from __future__ import annotations

from arithlens.analysis.node_study.options import (
    CARRY, NECESSARY_MIN, OPERATOR_BLIND_MAX, P_MAX, PCA_TAG, PROBE_MIN, SHARED_COS_MIN, SUFFICIENT_MIN,
)
from arithlens.analysis.nodes import Tag


def decide(data: dict, ops, t: int) -> tuple[dict, list[str]]:
    """The verdict as data (the rules of the package docstring) and the node's PCA tags, from a study's cleaned
    JSON object; `report.node_text.verdict_text` puts it in words."""
    rep, nec, suf, grid = data["representation"], data["necessity"], data["sufficiency"], data["grid"]
    per: dict[str, dict] = {}
    tags: list[str] = []
    roles = []
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
                    key = f"{a.name}~{b.name}"
                    geometry[key] = pair_geometry(data["shared"]["direction_cosines"][key])
        shared = all(g != "separate" for g in geometry.values())
    blind = grid["qtype_beyond_pair"] is not None and grid["qtype_beyond_pair"] <= OPERATOR_BLIND_MAX
    polysemantic = len(roles) >= 2
    return {"polysemantic": polysemantic, "roles": [f"A{t}.{CARRY[op]}" for op in roles],
            "shared_direction": shared, "pair_geometry": geometry, "operator_blind": blind, "per_qtype": per}, tags


def pair_geometry(cos: dict) -> str:
    """"same axis" / "one axis, opposite signs" when |cos| >= SHARED_COS_MIN with null p <= P_MAX, else "separate"."""
    c = cos["cosine"] or 0.0
    if abs(c) < SHARED_COS_MIN or (cos["p_value"] or 1.0) > P_MAX:
        return "separate"
    return "same axis" if c > 0 else "one axis, opposite signs"


def features_verdict(record: dict) -> dict:
    """The dictionary's answer beside the node study's, as data: how many features carry each qtype's carry or
    borrow at the study digit, whether one feature serves carry and borrow at once, and per qtype whether the
    features, the probe and the supervised direction agree (on encoding and on use)."""
    f, quality = record["features"], record["dictionary"]["quality"]
    return {
        "carriers": {op: len(rec["carriers"]) for op, rec in f["carry_borrow"].items()},
        "operand_carriers": len(f["operand_carriers"]),
        "one_feature_for_carry_and_borrow": bool(f["one_feature_for_carry_and_borrow"]),
        "methods_agree": {op: bool(c["encoding_agrees"] and c["use_agrees"]) for op, c in f["comparison"].items()},
        "explained_variance": quality["explained_variance"], "l0": quality["l0"],
    }
