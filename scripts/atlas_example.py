"""The numbers of the atlas example in docs/many-models.md, read from an atlas folder (no model is run here).

    arithlens atlas --models mix_d6_l3_h4_t10K_s372001 add_d6_l2_h3_t8K_s372001 --out runs/atlas --jobs 1
    python scripts/atlas_example.py runs/atlas

Prints the headline, the carry head of each model (the layer-0 head at A2's position whose study or search
tag says A1.SC) with its probe, resample-ablation and patching figures
(95% Wilson intervals, with their question counts), the heads holding A2's base digit pair, the roles shared
with the reference (the adder) by kind and layer, and the useful-set faithfulness per model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}"


def rate(r: dict, digits: int = 1) -> str:
    lo, hi = r["ci"]
    return f"{pct(r['rate'], digits)}% [{pct(lo, digits)}, {pct(hi, digits)}] of {r['n']:,}"


def main(folder: str) -> None:
    root = Path(folder)
    atlas = json.loads((root / "atlas.json").read_text())
    print("headline:", atlas["headline"], f"(atlas wall time {atlas['wall_seconds']:.0f} s)")
    for model in atlas["models"]:
        name = model["name"]
        f = model["faithfulness"]
        qtypes = ", ".join(f"{q} {pct(r['exact'])}% [{pct(r['ci'][0])}, {pct(r['ci'][1])}]"
                           for q, r in f["qtypes"].items())
        print(f"{name}: {f['n_nodes']} useful nodes of {f['n_all']} alone answer {qtypes} "
              f"(n = {next(iter(f['qtypes'].values()))['n']:,} per qtype)")
    for found in atlas["founding"]:
        name = found["model"]
        folder_ = root / "models" / name
        for head in found["heads"]:
            if "A1.SC" not in head["roles"] and "A1.SC" not in head["tags"]:
                continue  # neither the study nor the search gives it the carry into A2
            study = json.loads((folder_ / f"{head['node']}_study.json").read_text())
            for op in study["qtypes"]:
                rep = study["representation"][op]
                nec = study["necessity"]["per_qtype"][op]["all"]["resample"]["target_wrong"]
                suff = study["sufficiency"].get("per_qtype", {}).get(op, {}).get("success")
                # the atlas's probe figure: the better of the carry-out probe and the digit-pair probe
                probe = max(rep["probe_carry"]["accuracy"] or 0.0, rep["probe_pair"]["accuracy"] or 0.0)
                print(f"{name} carry head {head['node']} (study roles {head['roles']}, search tags {head['tags']}) "
                      f"{op}: probe {pct(probe)}%, "
                      f"resample ablation makes {study['necessity']['target_digit']} wrong in {rate(nec)}, "
                      f"patching moves it as predicted in {rate(suff, 0) if suff else 'n/a'}")
        nodes = json.loads(next(folder_.glob("*_algorithm.json")).read_text())
        base = [r for r in nodes if r.get("position") == 18 and any(t.startswith("Algo:A2.SA") or t == "Algo:A2.SA"
                                                                     for t in r.get("tags", []))]
        print(f"{name}: heads tagged A2.SA at P18:",
              [f"P{r['position']}L{r['layer']}H{r['num']}" for r in base if r.get("is_head", True)])
    shared = atlas["roles_shared_with_reference"]
    roles = {r["label"]: r for r in atlas["roles"]}
    kinds = {}
    for label in shared:
        r = roles[label]
        kinds.setdefault((r["kind"], r["layer"]), []).append(label)
    main_models = [m["name"] for m in atlas["models"] if not m["reference"]]
    reference = [m["name"] for m in atlas["models"] if m["reference"]]
    print(f"{len(shared)} roles shared with the reference:",
          {f"{kind} L{layer}": len(v) for (kind, layer), v in sorted(kinds.items())})
    for m in main_models:
        own = [r for r in atlas["roles"] if m in r["models"]]
        print(f"{m}: {len(own)} roles, {sum(r['label'] in shared for r in own)} of them shared with the reference")
    print(f"roles in every one of {len(main_models)} models: {atlas['roles_in_every_model']}")
    for m in reference:
        print(f"{m}: {len([r for r in atlas['roles'] if m in r['models']])} roles")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/atlas")
