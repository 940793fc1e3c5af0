"""The studies stage of `arithlens analyze` alone: wall and CPU seconds per study, the study JSONs, and a comparison
of two runs' decisions (verdicts and tags must match; numbers may move).

    PYTHONPATH=src python benchmarks/bench_studies.py --out /tmp/studies-new [--targets /tmp/targets.json]
        [--only P18L0H0,P18L0H2] [--profile] [--threads 2]
    PYTHONPATH=src python benchmarks/bench_studies.py --compare /tmp/studies-base /tmp/studies-new

The targets (the heads analyze studies, from the useful sweep and the search) are computed once and kept in
`--targets`, so reruns time the studies stage only. CPU seconds (this process, every thread) compare between runs
on a shared machine; wall seconds only within one.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path

os.environ.setdefault("GOMP_SPINCOUNT", "10000")  # as the CLI does

import torch  # noqa: E402

from arithlens.analysis.analyze import AnalyzeOptions, StudyTarget, analyze, study_all, study_targets  # noqa: E402
from arithlens.analysis.memory import freeze_long_lived_objects  # noqa: E402
from arithlens.analysis.nodes import Node  # noqa: E402
from arithlens.model import load_checkpoint  # noqa: E402
from arithlens.model.zoo import resolve_model  # noqa: E402


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def targets_of(model, path: Path | None) -> list[StudyTarget]:
    """analyze's study targets (kept in `path` as JSON; computed there when it does not exist yet)."""
    if path is not None and path.exists():
        rows = json.loads(path.read_text())
    else:
        analysis = analyze(model, AnalyzeOptions(faithfulness=0, edges=False, max_studies=0))
        rows = [{"node": t.node.name, "reasons": list(t.reasons), "operations": list(t.operations),
                 "tags": list(t.tags), "digit": t.digit, "founding": t.founding}
                for t in study_targets(analysis.nodes, model.spec)]
        if path is not None:
            path.write_text(json.dumps(rows, indent=1) + "\n")
    return [StudyTarget(Node.for_model(r["node"], model.spec), tuple(r["reasons"]), tuple(r["operations"]),
                        tuple(r["tags"]), r["digit"], r["founding"]) for r in rows]


def decisions(data: dict) -> dict:
    """What must not change: the study digit, the verdict's decisions (every boolean and role) and the tags."""
    verdict = {k: v for k, v in data["verdict"].items() if k not in ("text", "features")}
    return {"study_digit": data["study_digit"], "verdict": verdict, "tags": data["tags"]}


def compare(base: Path, new: Path) -> int:
    names = sorted(p.name for p in base.glob("*_study.json"))
    differ = 0
    for name in names:
        a, b = json.loads((base / name).read_text()), json.loads((new / name).read_text())
        same = decisions(a) == decisions(b)
        differ += not same
        text_a, text_b = a["verdict"]["text"], b["verdict"]["text"]
        print(f"{name[:-11]:<9} decisions {'same' if same else 'DIFFER'}; verdict text "
              f"{'same' if text_a == text_b else 'changed: ' + text_b}")
    times = [json.loads((d / "timings.json").read_text()) for d in (base, new)]
    print(f"studies: {len(names)}, decisions differ in {differ}; CPU s {times[0]['cpu_s']:.1f} -> "
          f"{times[1]['cpu_s']:.1f}, wall s {times[0]['wall_s']:.1f} -> {times[1]['wall_s']:.1f}")
    return 1 if differ else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--streams", type=int, default=None, help="study threads for the non-founding heads "
                        "(default: --threads; 1: one after another on --threads torch threads)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the study JSONs and timings.json")
    parser.add_argument("--targets", type=Path, default=None, help="the targets as JSON (made when missing)")
    parser.add_argument("--only", default=None, help="comma-separated nodes to study (of the targets)")
    parser.add_argument("--profile", action="store_true", help="cProfile the studies (with --only: one study)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BASE", "NEW"))
    args = parser.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    torch.set_num_threads(args.threads)
    model = load_checkpoint(resolve_model(args.model)).model.eval()
    freeze_long_lived_objects()  # as `arithlens analyze` does after loading
    targets = targets_of(model, args.targets)
    if args.only:
        keep = set(args.only.split(","))
        targets = [t for t in targets if t.node.name in keep]
    options = AnalyzeOptions()
    per: dict[str, dict] = {}
    mark = [time.perf_counter(), cpu_seconds()]

    def progress(stage, done, total, detail):
        now, cpu = time.perf_counter(), cpu_seconds()
        if detail:
            per[detail] = {"start": (now, cpu)}
        mark[:] = [now, cpu]

    class Timer:  # a Drawer: told when each study ends
        def tagged(self, analysis):
            pass

        def studied(self, entry):
            now, cpu = time.perf_counter(), cpu_seconds()
            w0, c0 = per[entry.name]["start"]
            per[entry.name] = {"wall_s": round(now - w0, 2), "cpu_s": round(cpu - c0, 2)}

    t0, cpu0 = time.perf_counter(), cpu_seconds()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
    entries = study_all(model, targets, options, progress, Timer(), streams=args.streams)
    if args.profile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    for e in entries:
        print(f"{e.name:<9} wall {per[e.name]['wall_s']:6.1f} s  CPU {per[e.name]['cpu_s']:6.1f} s  "
              f"{e.error or e.data['verdict']['text'][:90]}")
    print(f"studies: {len(entries)}, wall {wall:.1f} s, CPU {cpu:.1f} s, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for e in entries:
            if e.data is not None:
                (args.out / f"{e.name}_study.json").write_text(json.dumps(e.data, indent=1) + "\n")
        (args.out / "timings.json").write_text(json.dumps(
            {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "per_study": per,
             "load_average": [round(x, 2) for x in os.getloadavg()]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
