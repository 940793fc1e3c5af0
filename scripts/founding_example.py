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

from arithlens.report.founding import founding_answer


def pct(x: float, digits: int = 1) -> str:
    return f"{number(x, digits)}%"


def probes(study: dict) -> str:
    """Per qtype the better of the carry-out probe and the digit-pair probe, as the verdict and the atlas read
    them, each labelled with the probe it comes from (the two can differ a lot: 85.7% carry vs 99.3% pair)."""
    rep = study["representation"]
    shown = []
    for op in study["qtypes"]:
        if op not in rep:
            continue
        carry, pair = rep[op]["probe_carry"]["accuracy"] or 0.0, rep[op]["probe_pair"]["accuracy"] or 0.0
        which, best = ("carry", carry) if carry >= pair else ("pair", pair)
        shown.append(f"{op} {pct(best)} ({which} probe)")
    return " / ".join(shown)


def patching(study: dict, digits: int = 1) -> str:
    """What patching the studied digit's inputs moves, per qtype; why not, when the study could not patch."""
    suff = study["sufficiency"]
    if not suff.get("applicable"):
        return f"patching not applicable: {suff.get('reason', 'no reason recorded')}"
    moved = " / ".join(f"{op} {pct(suff['per_qtype'][op]['success']['rate'], digits)}"
                       for op in study["qtypes"] if op in suff.get("per_qtype", {}))
    return f"patching moves A{suff['target_digit']} as predicted in: {moved or 'n/a'}"


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
    # analysis.json holds the sentence since the report opens with it; older folders: read it from the studies
    answer = founding_answer(studies.values())
    print(analysis.get("founding") or (answer.sentence() if answer else "the founding question does not apply"))
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
        print(f"  {patching(study)}")
        print(f"  best probe per qtype (carry/borrow out of digit {study['study_digit']}, or its pair rule): "
              f"{probes(study)}")
        print(f"  resample ablation makes {nec['target_digit']} wrong in: {wrong}")
        print(f"  operator-blind {verdict.get('operator_blind')}; attention to OPR "
              f"{pct(study['attention']['operator'])}; polysemantic {verdict['polysemantic']}, roles {verdict['roles']}")
        print(f"  verdict: {verdict['text'][:400]}")
    print("\npolysemantic heads studied:")
    for name, study in sorted(studies.items(), key=lambda kv: (kv[1]["position"], kv[0])):
        verdict = study["verdict"]
        if not verdict["polysemantic"]:
            continue
        nec = study["necessity"]
        wrong = " / ".join(f"{op} {interval(nec['per_qtype'][op]['all']['resample']['target_wrong'])}"
                           for op in study["qtypes"])
        print(f"  {name}: roles {verdict['roles']}; probes {probes(study)}; geometry {verdict.get('pair_geometry')}; "
              f"class-mean cosines {cosines(study)}; {patching(study, 0)}; resample ablation makes "
              f"{nec['target_digit']} wrong in {wrong}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/analyze")
