"""The table of the founding question across seeds (docs/many-models.md), from an atlas folder (no model runs here).

    arithlens atlas --models mix_d6_l3_h4_t10K_s372001 ... add_d6_l2_h3_t8K_s372001 --out runs/atlas
    python scripts/atlas_seeds.py runs/atlas --store          # benchmarks/results/atlas_seeds.json
    python scripts/atlas_seeds.py --write-doc                 # the docs/many-models.md block from the stored file

For each model: where it was trained (its card), the heads at A2's position whose node study gives them the
carry into A2 (A1.SC) or a borrow (A1.MB for SUB, A1.NB for NEG), in any layer, with the resample-ablation and
patching figures behind each (95% Wilson intervals), whether one layer-0 head holds both the carry and a borrow
(the atlas's founding test), the useful set's faithfulness (its worst qtype) and the role count. The stored
JSON is the committed example output; `tests/test_readme_figures.py` checks the docs/many-models.md block is its rendering.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts beside this one, also when loaded by path
from circuit_figures import replace_block, store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "atlas_seeds.json"
DOC = ROOT / "docs" / "many-models.md"  # the page whose block this table fills
START, END = "<!-- atlas-seeds:start -->", "<!-- atlas-seeds:end -->"
FEATURES = {"A1.SC": "ADD", "A1.MB": "SUB", "A1.NB": "NEG"}


def _rate(r: dict | None) -> dict | None:
    return None if r is None else {"rate": round(r["rate"], 6), "ci": [round(x, 6) for x in r["ci"]], "n": r["n"]}


def holders(folder: Path, position: str) -> list[dict]:
    """The studied heads at `position` whose study verdict gives them A1.SC, A1.MB or A1.NB."""
    out = []
    for path in sorted(folder.glob(f"{position}L*_study.json")):
        study = json.loads(path.read_text())
        roles = [r for r in study["verdict"]["roles"] if r in FEATURES]
        if not roles or study["kind"] != "head":
            continue
        per = {}
        for feature in roles:
            op = FEATURES[feature]
            nec = study["necessity"]["per_qtype"][op]["all"]["resample"]["target_wrong"]
            suff = study["sufficiency"].get("per_qtype", {}).get(op, {}).get("success")
            per[feature] = {"qtype": op, "resample_wrong": _rate(nec), "patching": _rate(suff)}
        cosines = {pair: round(c["cosine"], 2) for pair, c in study["shared"]["direction_cosines"].items()}
        cosine = study["shared"]["direction_cosines"].get("SUB~NEG")
        out.append({"node": study["node"], "layer": study["layer"], "roles": roles,
                    "polysemantic": study["verdict"]["polysemantic"], "geometry": study["verdict"]["pair_geometry"],
                    "cosines": cosines,
                    "sub_neg": None if cosine is None or not {"A1.MB", "A1.NB"} <= set(roles) else
                    {"cosine": round(cosine["cosine"], 2), "geometry": study["verdict"]["pair_geometry"]["SUB~NEG"]},
                    "per_feature": per})
    return out


def _acceptance(name: str, card: dict) -> dict | None:
    """The acceptance suite's count from the shipped model's card (authoritative), else the analysed card's."""
    from arithlens.model.zoo import list_models

    shipped = {m.name: m.card for m in list_models()}
    accuracy = shipped.get(name, card).get("accuracy") or card.get("accuracy")
    if not accuracy or "wrong" not in accuracy:
        return None
    return {"questions": accuracy["questions"], "wrong": accuracy["wrong"], "failures": accuracy.get("failures", [])}


def extract(folder: str | Path) -> dict:
    root = Path(folder)
    atlas = json.loads((root / "atlas.json").read_text())
    founding = {f["model"]: f for f in atlas["founding"]}
    models = []
    for m in atlas["models"]:
        name = m["name"]
        card = json.loads((root / "models" / name / "model.json").read_text())
        training = card.get("training", {})
        f = m["faithfulness"]
        worst = min(f["qtypes"].items(), key=lambda kv: kv[1]["exact"]) if f and f.get("qtypes") else None
        entry = {"name": name, "reference": m["reference"], "device": training.get("device", "cpu"),
                 "acceptance": _acceptance(name, card),
                 "roles": sum(name in r["models"] for r in atlas["roles"]),
                 "useful_alone": None if worst is None else {
                     "nodes": f["n_nodes"], "of": f["n_all"], "qtype": worst[0], "exact": round(worst[1]["exact"], 6),
                     "ci": [round(x, 6) for x in worst[1]["ci"]], "n": worst[1]["n"]}}
        if name in founding:
            entry["one_layer0_head_carry_and_borrow"] = founding[name]["one_head_carry_and_borrow"]
            entry["holders"] = holders(root / "models" / name, founding[name]["position"])
        models.append(entry)
    return {"command": "arithlens atlas --models " + " ".join(m["name"] for m in atlas["models"]) + " --out DIR",
            "headline": atlas["headline"], "across_seeds": across(models), "functions_line": atlas.get("functions_line"), "roles_in_every_model": len(atlas["roles_in_every_model"]),
            "roles_shared_with_reference": len(atlas["roles_shared_with_reference"]), "models": models}


def across(models: list[dict]) -> dict:
    """What recurs over the mixed models: heads holding the carry with a borrow, and in which geometry; heads
    holding SUB's and NEG's borrows on one axis with opposite signs."""
    mixed = [m for m in models if not m["reference"]]
    exact = [m for m in mixed if m["acceptance"] is not None and m["acceptance"]["wrong"] == 0]
    carry_borrow, one_axis = [], []
    for m in mixed:
        for h in m.get("holders", []):
            roles = set(h["roles"])
            if "A1.SC" in roles and roles & {"A1.MB", "A1.NB"}:
                pairs = [p for p, f in (("ADD~SUB", "A1.MB"), ("ADD~NEG", "A1.NB")) if f in roles]
                carry_borrow.append({"model": m["name"], "node": h["node"],
                                     "geometry": sorted({h["geometry"][p] for p in pairs}),
                                     "max_abs_cosine": max(abs(h["cosines"][p]) for p in pairs)})
            if h["sub_neg"] is not None and h["sub_neg"]["geometry"] == "one axis, opposite signs":
                one_axis.append({"model": m["name"], "node": h["node"], "layer": h["layer"],
                                 "cosine": h["sub_neg"]["cosine"]})
    return {"mixed_models": len(mixed), "exact_models": len(exact),
            "exact_with_one_layer0_head": sum(bool(m.get("one_layer0_head_carry_and_borrow")) for m in exact),
            "carry_with_borrow": carry_borrow, "borrows_one_axis": one_axis}


def _across_text(a: dict) -> str:
    n = a["mixed_models"]
    cb, ax = a["carry_with_borrow"], a["borrows_one_axis"]
    parts = []
    if cb:
        geometries = sorted({g for h in cb for g in h["geometry"]})
        parts.append(f"{len(cb)} heads in {len({h['model'] for h in cb})} of {n} mixed models hold the carry together "
                     f"with a borrow; the carry's direction is {' / '.join(geometries)} from the borrow's in every one "
                     f"(|cos| at most {max(h['max_abs_cosine'] for h in cb):.2f})")
    if ax:
        seeds = sorted({h["model"] for h in ax})
        layers = sorted({h["layer"] for h in ax})
        cos = sorted(h["cosine"] for h in ax)
        parts.append(f"{len(seeds)} of {n} hold SUB's and NEG's borrows on one axis with opposite signs in one head "
                     f"({len(ax)} heads, in layer {' or '.join(str(x) for x in layers)}; cos {cos[0]:+.2f} to "
                     f"{cos[-1]:+.2f})")
    return "Across the seeds: " + "; ".join(parts) + "." if parts else ""


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}"


def _interval(r: dict | None, digits: int = 1) -> str:
    if r is None:
        return "n/a"
    return f"{_pct(r['rate'], digits)}% [{_pct(r['ci'][0], digits)}, {_pct(r['ci'][1], digits)}]"


def _cell(holder_list: list[dict], features: tuple[str, ...]) -> str:
    parts = []
    for h in holder_list:
        mine = [f for f in features if f in h["roles"]]
        if not mine:
            continue
        figures = "; ".join(f"{FEATURES[f]} wrong {_interval(h['per_feature'][f]['resample_wrong'])}, patching "
                            f"{_interval(h['per_feature'][f]['patching'], 0)}" for f in mine)
        axis = ""
        if h["sub_neg"] is not None and len(mine) == 2:
            axis = f", MB/NB {h['sub_neg']['geometry']} (cos {h['sub_neg']['cosine']:+.2f})"
        parts.append(f"`{h['node']}` ({figures}{axis})")
    return "<br>".join(parts) or "none studied"


def render(data: dict) -> str:
    a = data["across_seeds"]
    exact_line = ""
    if a["exact_models"] != a["mixed_models"]:
        exact_line = (f" Of the {a['exact_models']} models exact on the acceptance suite, "
                      f"{a['exact_with_one_layer0_head']} {'does' if a['exact_with_one_layer0_head'] == 1 else 'do'}.")
    lines = [f"**{data['headline']}.**{exact_line} Per model, the heads at A2's position whose node study gives them the carry "
             "into A2 (A1.SC, for ADD) or a borrow (A1.MB for SUB, A1.NB for NEG), any layer; \"wrong\" is how often "
             "resample ablation of the head makes A2 wrong for that qtype, \"patching\" how often patching it "
             "moves A2 as predicted (95% Wilson intervals; sizes as in the founding section). "
             f"Roles found in every mixed model: {data['roles_in_every_model']}; roles that the adder shares with at "
             f"least one mixed model: {data['roles_shared_with_reference']}."
             + (f" Aligned by function instead {data['functions_line'][len('by function '):]}."
                if data.get("functions_line") else ""),
             "",
             "| model | trained on, acceptance suite | carry into A2 (A1.SC) | borrows into A2 (A1.MB / A1.NB) "
             "| one layer-0 head for both? | useful set alone, worst qtype | roles |",
             "|---|---|---|---|---|---|---|"]
    for m in data["models"]:
        u = m["useful_alone"]
        useful = "not measured" if u is None else (f"{u['qtype']} {_pct(u['exact'])}% [{_pct(u['ci'][0])}, "
                                                   f"{_pct(u['ci'][1])}] ({u['nodes']} nodes, n = {u['n']:,})")
        device = "GPU" if str(m["device"]).startswith("cuda") else "CPU"
        acc = m.get("acceptance")
        if acc is not None:
            wrong = "0 wrong" if acc["wrong"] == 0 else f"**{acc['wrong']:,} wrong**"
            device += f", {wrong} of {acc['questions']:,}"
        if m["reference"]:
            lines.append(f"| `{m['name']}` (reference) | {device} | - | - | - | {useful} | {m['roles']} |")
            continue
        both = "yes" if m.get("one_layer0_head_carry_and_borrow") else "no"
        lines.append(f"| `{m['name']}` | {device} | {_cell(m['holders'], ('A1.SC',))} | "
                     f"{_cell(m['holders'], ('A1.MB', 'A1.NB'))} | {both} | {useful} | {m['roles']} |")
    text = _across_text(data["across_seeds"])
    if text:
        lines += ["", text]
    return "\n".join(lines)


def write_doc(data: dict) -> None:
    replace_block(DOC, START, END, render(data))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="an atlas folder (atlas.json, models/)")
    parser.add_argument("--store", action="store_true", help=f"write {RESULTS.relative_to(ROOT)}")
    parser.add_argument("--write-doc", action="store_true", help="render the stored file into docs/many-models.md")
    args = parser.parse_args(argv)
    if args.folder:
        data = extract(args.folder)
        print(render(data))
        if args.store:
            store(RESULTS, data)
    if args.write_doc:
        write_doc(json.loads(RESULTS.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
