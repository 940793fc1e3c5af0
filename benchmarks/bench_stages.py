"""The useful, faithfulness and search stages of `arithlens analyze`, run as `analyze` runs them, with each stage's
CPU seconds, and their decisions written to a JSON file that `--compare` checks against another run's.

    PYTHONPATH=src python benchmarks/bench_stages.py --out /tmp/after.json [--model NAME] [--stages useful,...]
    python benchmarks/bench_stages.py --compare /tmp/before.json /tmp/after.json
    python benchmarks/bench_stages.py --search-ab SC,MB,SS [--rounds 2]

Run it once with the code before a change (e.g. `git archive` of that commit, PYTHONPATH pointing at it) and
once after, one after the other on the same machine; CPU seconds (`time.process_time()`, every thread of the
process) are what compares on a shared machine. `--compare` checks decisions exactly (the useful node set and
every tag, position failures, the search's Algo tags and cells' tagged lists, the claims' outcomes) and the
faithfulness rates within their Wilson 95% intervals; it prints the differences and exits 1 when any.
`--search-ab` times the search judging every pair against its sequential test in one process (same load).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# As the CLI does (arithlens.cli.main): a short OpenMP spin, so idle torch threads do not burn a busy core.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")


def run_stages(model_name: str | None, stages: list[str]) -> dict:
    import arithlens as al
    from arithlens.analysis import analyze as A
    from arithlens.analysis.useful import find_useful, varied_questions

    model = al.load_model(model_name)
    model.eval()
    say = lambda *args: None  # noqa: E731
    out: dict = {"model": model.spec.name, "cpu_s": {}, "wall_s": {}}
    t0, c0 = time.perf_counter(), time.process_time()
    useful = find_useful(model, varied_questions(model.spec))
    out["wall_s"]["useful"], out["cpu_s"]["useful"] = time.perf_counter() - t0, time.process_time() - c0
    out["useful"] = {"nodes": {un.name: [str(t) for t in un.tags] for un in useful.nodes},
                     "position_failures": useful.position_failures, "power_found": list(useful.power_found),
                     "power_questions": useful.power_questions, "n_questions": len(useful.questions),
                     "failures": {k: {q: list(v) for q, v in per.items()} for k, per in useful.failures.items()}}
    result = A.Analysis(model.spec, A.AnalyzeOptions(), useful, useful.nodes)
    if "faithfulness" in stages:
        t0, c0 = time.perf_counter(), time.process_time()
        A._faithfulness(model, result, say)
        out["wall_s"]["faithfulness"], out["cpu_s"]["faithfulness"] = time.perf_counter() - t0, time.process_time() - c0
        out["faithfulness"] = A.faithfulness_record(result.faithfulness, brief=True)
    if "search" in stages:
        t0, c0 = time.perf_counter(), time.process_time()
        A._search(model, result, say)
        out["wall_s"]["search"], out["cpu_s"]["search"] = time.perf_counter() - t0, time.process_time() - c0
        search = result.search
        out["search"] = {"tags": search.algo_tags(), "coverage": search.coverage.to_dict(),
                         "cells": [{"tag": c.tag, "tagged": c.tagged, "valid": c.valid, "candidates": c.candidates}
                                   for c in search.cells],
                         "nodes": {un.name: [str(t) for t in un.tags] for un in result.nodes},
                         "claims": [c.line() for c in result.claims],
                         "trials": len(search.trials),
                         "stopped_early": sum(getattr(t, "pairs_valid", None) is not None and t.valid < t.pairs_valid
                                              for t in search.trials)}
    out["load_average"] = os.getloadavg()
    return out


def search_ab(model_name: str | None, tasks: list[str], rounds: int) -> None:
    """The search over the useful nodes judging every pair (`sequential=False`) and with the sequential test,
    alternating in one process (the first way first in odd rounds), on the sub-tasks `tasks`: CPU seconds each,
    and whether the tags and every trial's verdict agree."""
    import arithlens as al
    from arithlens.analysis.search import search_model
    from arithlens.analysis.subtasks import tasks_for
    from arithlens.analysis.useful import find_useful, varied_questions

    model = al.load_model(model_name)
    model.eval()
    spec = model.spec
    chosen = [t for t in tasks_for(spec.perc_add, spec.perc_sub, spec.perc_mul) if t.name in tasks]
    nodes = find_useful(model, varied_questions(spec)).nodes
    seconds: dict[bool, list[float]] = {False: [], True: []}
    verdicts = {}
    for r in range(rounds):
        for sequential in ((False, True) if r % 2 == 0 else (True, False)):
            c0 = time.process_time()
            result = search_model(model, nodes, n_pairs=100, seed=0, tasks=chosen, sequential=sequential)
            seconds[sequential].append(time.process_time() - c0)
            verdicts[sequential] = (result.algo_tags(), [(t.name, t.tag, t.tagged) for t in result.trials])
            stopped = sum(t.valid < (t.pairs_valid or t.valid) for t in result.trials)
            print(f"round {r + 1} sequential={sequential}: CPU {seconds[sequential][-1]:.1f} s, "
                  f"{len(result.trials)} trials, {stopped} stopped early", flush=True)
    full, seq = sum(seconds[False]), sum(seconds[True])
    print(f"tasks {','.join(t.name for t in chosen)}: every pair {full:.1f} s CPU, sequential {seq:.1f} s "
          f"({full / seq:.2f}x); verdicts equal: {verdicts[False] == verdicts[True]}; load average "
          f"{os.getloadavg()[0]:.1f}")


def compare(before: dict, after: dict) -> list[str]:
    """Decisions that differ (exactly), and faithfulness rates outside the other run's Wilson interval."""
    diffs = []
    for key in ("nodes", "position_failures", "power_found"):
        if before["useful"][key] != after["useful"][key]:
            diffs.append(f"useful.{key} differs")
    for stage in ("search",):
        if stage in before and stage in after:
            for key in ("tags", "coverage", "cells", "nodes", "claims"):
                b, a = before[stage][key], after[stage][key]
                if key == "cells":  # the count of judged pairs may fall with an early stop; the decisions may not
                    b = [{k: v for k, v in c.items() if k != "valid"} for c in b]
                    a = [{k: v for k, v in c.items() if k != "valid"} for c in a]
                if b != a:
                    diffs.append(f"search.{key} differs")
    if "faithfulness" in before and "faithfulness" in after:
        for qt, b in before["faithfulness"]["qtypes"].items():
            a = after["faithfulness"]["qtypes"][qt]
            lo, hi = b["ci"]
            if not lo <= a["exact"] <= hi:
                diffs.append(f"faithfulness {qt}: {a['exact']} outside the before run's interval [{lo}, {hi}]")
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a shipped model name or checkpoint (default: the default model)")
    ap.add_argument("--stages", default="useful,faithfulness,search", help="useful always runs; add faithfulness, "
                    "search")
    ap.add_argument("--out", default=None, help="write the decisions and CPU seconds as JSON here")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two --out files")
    ap.add_argument("--search-ab", metavar="TASKS", help="instead: the search judging every pair against the "
                    "sequential test, alternating in this process, on these sub-tasks (e.g. SC,MB,SS)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of --search-ab")
    args = ap.parse_args()
    if args.search_ab:
        search_ab(args.model, args.search_ab.split(","), args.rounds)
        return
    if args.compare:
        before, after = (json.load(open(p)) for p in args.compare)
        diffs = compare(before, after)
        for stage in before["cpu_s"]:
            if stage in after["cpu_s"]:
                print(f"{stage:13s} CPU {before['cpu_s'][stage]:7.1f} s -> {after['cpu_s'][stage]:7.1f} s "
                      f"({before['cpu_s'][stage] / after['cpu_s'][stage]:.2f}x); wall {before['wall_s'][stage]:6.1f}"
                      f" -> {after['wall_s'][stage]:6.1f} s")
        for name, data in (("before", before), ("after", after)):
            if "search" in data:
                print(f"{name}: {data['search'].get('trials', '?')} search trials, "
                      f"{data['search'].get('stopped_early', 0)} stopped early by the sequential test")
            if "faithfulness" in data:
                print(f"{name}: faithfulness " + ", ".join(f"{q} {r['exact']:.4f} [{r['ci'][0]:.4f}, {r['ci'][1]:.4f}]"
                                                          f" n={r['n']}" for q, r in
                                                          data["faithfulness"]["qtypes"].items()))
        print("decisions identical" if not diffs else "DIFFERENCES:\n  " + "\n  ".join(diffs))
        sys.exit(1 if diffs else 0)
    data = run_stages(args.model, args.stages.split(","))
    for stage, cpu in data["cpu_s"].items():
        print(f"{stage:13s} CPU {cpu:7.1f} s, wall {data['wall_s'][stage]:6.1f} s")
    if args.out:
        from arithlens.io import write_atomic

        write_atomic(args.out, json.dumps(data, indent=1).encode())


if __name__ == "__main__":
    main()
