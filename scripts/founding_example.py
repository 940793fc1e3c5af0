"""The numbers of docs/founding-question.md, read from an `arithlens analyze` folder (no model runs).

    arithlens analyze --out runs/analyze
    python scripts/founding_example.py runs/analyze

Prints, for the layer-0 heads at the position that computes A2: what each attends, the sub-task groups they
are tagged in (with each member's rate alone), and the node study's numbers (operator share, probes, resample
ablation with 95% Wilson intervals, verdict). Then every polysemantic head the analysis studied, with its
probes and the class-mean cosine of each pair of qtypes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from atlas_example import pct as number  # the script beside this one (run as `python scripts/...`)
from atlas_example import rate as interval  # "3.4% [2.8, 4.1] of 3,000"


def pct(x: float, digits: int = 1) -> str:
    return f"{number(x, digits)}%"


def probes(study: dict) -> str:
    """The better of the carry-out probe and the digit-pair probe per qtype, as the verdict and the atlas read them."""
    rep = study["representation"]
    best = {op: max(rep[op]["probe_carry"]["accuracy"] or 0.0, rep[op]["probe_pair"]["accuracy"] or 0.0)
            for op in study["qtypes"] if op in rep}
    return " / ".join(f"{op} {pct(x)}" for op, x in best.items())


def cosines(study: dict) -> str:
    pairs = study.get("shared", {}).get("direction_cosines", {})
    return ", ".join(f"{k} {v['cosine']:+.2f} (p = {v['p_value']:.2f})" for k, v in pairs.items())


def main(folder: str) -> None:
    root = Path(folder)
    analysis = json.loads((root / "analysis.json").read_text())
    model = analysis["model"]
    search = json.loads((root / f"{model}_search.json").read_text())
    studies = {p.name[: -len("_study.json")]: json.loads(p.read_text()) for p in root.glob("*_study.json")}
    print(f"model {model}; {search['coverage']['line']}")
    a2 = 18  # A2 is computed at the position of A3 (for 6 digits)
    for name, study in sorted(studies.items()):
        if study["position"] != a2 or study["layer"] != 0 or study["kind"] != "head":
            continue
        attention = ", ".join(f"{t['meaning']} {pct(t['weight'], 0)}" for t in study["attention"]["top"])
        print(f"\n{name}: attends {attention}; search tags {search['tags'].get(name, [])}")
        for trial in search["trials"]:
            members = trial["node"].split("+")
            if len(members) > 1 and name in members and trial["tagged"]:
                alone = ", ".join(f"without {m} {pct(w['strong']['rate'], 0)}" for m, w in trial["without"].items())
                print(f"  group {trial['node']} {trial['tag']}: {pct(trial['strong']['rate'], 0)} of "
                      f"{trial['strong']['n']} pairs ({alone})")
        nec = study["necessity"]
        wrong = " / ".join(f"{op} {interval(nec['per_qtype'][op]['all']['resample']['target_wrong'])}"
                           for op in study["qtypes"])
        verdict = study["verdict"]
        suff = study["sufficiency"].get("per_qtype", {})
        moved = " / ".join(f"{op} {pct(suff[op]['success']['rate'])}" for op in study["qtypes"] if op in suff)
        print(f"  patching moves {study['sufficiency'].get('target_digit')} as predicted in: {moved or 'n/a'}")
        print(f"  probes (carry/borrow out of digit {study['study_digit']}, or its pair rule): {probes(study)}")
        print(f"  resample ablation makes {nec['target_digit']} wrong in: {wrong}")
        print(f"  operator-blind {verdict.get('operator_blind')}; attention to OPR "
              f"{pct(study['attention']['operator'])}; polysemantic {verdict['polysemantic']}, roles {verdict['roles']}")
        print(f"  verdict: {verdict['text'][:400]}")
    print("\npolysemantic heads studied:")
    for name, study in sorted(studies.items(), key=lambda kv: (kv[1]["position"], kv[0])):
        verdict = study["verdict"]
        if not verdict["polysemantic"]:
            continue
        suff = study["sufficiency"].get("per_qtype", {})
        moved = " / ".join(f"{op} {pct(suff[op]['success']['rate'], 0)}" for op in study["qtypes"] if op in suff)
        nec = study["necessity"]
        wrong = " / ".join(f"{op} {interval(nec['per_qtype'][op]['all']['resample']['target_wrong'])}"
                           for op in study["qtypes"])
        print(f"  {name}: roles {verdict['roles']}; probes {probes(study)}; geometry {verdict.get('pair_geometry')}; "
              f"class-mean cosines {cosines(study)}; patching moves {moved}; resample ablation makes "
              f"{nec['target_digit']} wrong in {wrong}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/analyze")
