"""Peak memory and wall time of each command, measured, with the command's own estimate beside it.

    python benchmarks/bench_memory.py                       # every case (the defaults of analyze and circuit: ~10 min each)
    python benchmarks/bench_memory.py --only node,useful    # cases whose command is listed
    python benchmarks/bench_memory.py --case "node P18L0H0,search --pairs 20"  # cases named as in memory.md
    python benchmarks/bench_memory.py --case "search --pairs 20" --repeat 3  # the largest peak of 3 runs
    python benchmarks/bench_memory.py --calibrate           # only the small sizes (minutes)

Each case runs `arithlens ...` in a fresh process. Peak memory is the largest sum of PSS (proportional set size:
shared pages split between the processes that share them) over the process and all its descendants (figure
workers, ...), seen by psutil polling every 50 ms; the largest sum of RSS and the largest single process's RSS
are recorded beside it. A spike shorter than a poll can be missed, so the peaks are lower bounds to within one
poll. The estimate is `arithlens.validate.command_memory`
for the same options: what the command checks against the memory available before it starts. Results are merged
by case into benchmarks/results/memory.json (so `--only` reruns update their rows) and rendered as
benchmarks/results/memory.md. The same case's peak differs from run to run (`faithfulness --nodes useful
--questions 3000`: from 894 to 1,205 MB in six runs), so `--repeat N` runs each case N times and keeps the run with
the largest peak, listing every run's peak beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil  # this process imports no arithlens and no torch: sharing torch's pages would halve the PSS it sees

RESULTS = Path(__file__).parent / "results"
POLL_SECONDS = 0.05

# (command, options, default?): the options are the command's flags (underscores for dashes) and what
# command_memory reads; `args` are positional arguments. Defaults last, since analyze and circuit take minutes.
CASES: list[tuple[str, dict, bool]] = [
    ("useful", {"questions": 32, "power": 0}, False),
    ("useful", {"questions": 256, "power": 0}, False),
    ("search", {"pairs": 20}, False),
    ("node", {"args": ["P18L0H0"], "questions": 100, "pairs": 20, "permutations": 5}, False),
    ("node", {"args": ["P18L0H0"], "questions": 300, "pairs": 60, "permutations": 5}, False),
    ("faithfulness", {"nodes": "useful", "questions": 500}, False),
    ("faithfulness", {"nodes": "useful", "questions": 3000}, False),
    ("faithfulness", {"nodes": "P18L0H0 P18L2H0", "questions": 500}, False),
    ("faithfulness", {"nodes": "P18L0H0 P18L2H0", "questions": 3000}, False),
    ("circuit", {"search_questions": 100, "held_out": 500}, False),
    ("analyze", {"questions": 32, "pairs": 20, "faithfulness": 200, "max_studies": 1}, False),
    ("useful", {}, True),
    ("search", {}, True),
    ("node", {"args": ["P18L0H0"]}, True),
    ("faithfulness", {"nodes": "useful"}, True),
    ("circuit", {}, True),
    ("analyze", {}, True),
]
WRITES_A_FOLDER = {"useful", "search", "circuit", "analyze"}


def case_name(command: str, options: dict) -> str:
    shown = [*options.get("args", []), *(f"--{k.replace('_', '-')} {v}" for k, v in options.items() if k != "args")]
    return " ".join([command, *shown])


def argv(command: str, options: dict, out: Path) -> list[str]:
    """The command line; a `nodes` option other than useful/circuit is a list of node names, written to a file."""
    args = [command, *options.get("args", [])]
    for key, value in options.items():
        if key == "nodes" and value not in ("useful", "circuit"):
            out.parent.mkdir(parents=True, exist_ok=True)
            (out.parent / "nodes.txt").write_text(str(value) + "\n")
            value = out.parent / "nodes.txt"
        if key != "args":
            args += [f"--{key.replace('_', '-')}", str(value)]
    if command in WRITES_A_FOLDER:
        args += ["--out", str(out)]
    return [sys.executable, "-m", "arithlens.cli", *args, "--quiet"]


def peak_tree_memory(cmd: list[str]) -> dict:
    """Run `cmd`; its peak memory summed over its process tree (PSS: a page shared by a forked figure worker
    and its parent counts once, split between them; RSS would count it in both), the same as a sum of RSS,
    the peak RSS of its largest single process, wall seconds and exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak_pss = peak_rss = peak_one = 0
    while proc.poll() is None:
        pss = rss = 0
        try:
            members = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in members:
            try:
                info = p.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            pss += getattr(info, "pss", info.rss)
            rss += info.rss
            peak_one = max(peak_one, info.rss)
        peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        time.sleep(POLL_SECONDS)
    err = proc.stderr.read()
    code = proc.wait()
    if code != 0:
        print(f"  failed ({code}): {err.strip().splitlines()[-1:]}", file=sys.stderr)
    return {"peak_bytes": peak_pss, "peak_rss_sum_bytes": peak_rss, "largest_process_bytes": peak_one,
            "seconds": round(time.perf_counter() - start, 1), "exit_code": code}


ESTIMATE = """
import json, sys
from arithlens.model.zoo import resolve_model
from arithlens.model import load_checkpoint
from arithlens.report.figures import MAX_WORKERS, figure_workers
from arithlens.validate import command_memory
command, options = json.loads(sys.argv[1])
spec = load_checkpoint(resolve_model(None)).spec
if command == "analyze":
    options["figure_workers"] = figure_workers(MAX_WORKERS)
print(json.dumps({"estimate": command_memory(command, spec, options), "model": spec.name,
                  "figure_workers": options.get("figure_workers", 0)}))
"""


def estimate(command: str, options: dict) -> dict:
    """`arithlens.validate.command_memory` for the default model, asked in a child process (see the import note)."""
    plain = {k: v for k, v in options.items() if k != "args"}
    out = subprocess.run([sys.executable, "-c", ESTIMATE, json.dumps([command, plain])], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)


def measure(command: str, options: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        row = peak_tree_memory(argv(command, options, Path(tmp) / "out"))
    est = estimate(command, options)
    return {"command": command, "options": options, **row, "estimate_bytes": est["estimate"],
            "figure_workers": est["figure_workers"], "model": est["model"],
            "ratio": round(est["estimate"] / row["peak_bytes"], 2) if row["peak_bytes"] else None}


def render(results: dict) -> str:
    lines = [("| case | default | wall (s) | load | peak, all processes (PSS) | largest process (RSS) | estimate | "
              "estimate / peak |"), "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results["cases"].items():
        stale = " (stale: measured before a change that lowers it; rerun)" if r.get("stale") else ""
        lines.append(f"| `arithlens {name}`{stale} | {'yes' if r['default'] else ''} | {r['seconds']:.0f} | "
                     f"{r.get('load_average') or '?'} | "
                     f"{r['peak_bytes'] / 1e6:,.0f} MB{' (RSS)' if r.get('measure') == 'RSS' else ''}"
                     f"{runs(r)} | "
                     f"{r['largest_process_bytes'] / 1e6:,.0f} MB | "
                     f"{r['estimate_bytes'] / 1e6:,.0f} MB | {r['ratio']:.2f} |")
    machine = results.get("machine", {})
    repeated = any(len(r.get("runs", [])) > 1 for r in results["cases"].values())
    any_rss = any(r.get("measure") == "RSS" for r in results["cases"].values())
    return ("# Peak memory per command\n\nMeasured by `python benchmarks/bench_memory.py` on the default model "
            f"({machine.get('model', '?')}; {machine.get('cpus', '?')} CPUs, {machine.get('memory_gb', '?')} GB; wall "
            "times depend on the load average at each case's start, shown beside them). Peak: memory summed over the command's "
            "process tree (PSS, psutil, polled every 50 ms). Estimate: `arithlens.validate.command_memory`, which the "
            "command checks against the memory available before it starts. A process's PSS splits the shared "
            "libraries' pages with every other process that maps them, other people's torch processes on the machine "
            "included: while one ran, `node P18L0H0 --questions 100 ...` read 343-353 MB instead of 431 MB (its RSS "
            "437-456 MB, unmoved)."
            + (" Rows marked (RSS) were measured as RSS, before PSS was recorded (single-process commands: the two "
               "differ by the shared libraries' pages, ~70 MB here)." if any_rss else "")
            + (" Where a case ran several times, its row is the run with the largest peak; the least of the runs' "
               "peaks is shown beside it." if repeated else "") + "\n\n" + "\n".join(lines) + "\n")


def runs(row: dict) -> str:
    """' (largest of N runs, least X MB)' where the case ran N > 1 times, else nothing."""
    peaks = row.get("runs", [])
    return f" (largest of {len(peaks)} runs, least {min(peaks) / 1e6:,.0f} MB)" if len(peaks) > 1 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="Comma-separated commands to run (default: all).")
    parser.add_argument("--case", default="",
                        help="Comma-separated case names to run (as in memory.md, without `arithlens `; default: all).")
    parser.add_argument("--repeat", type=int, default=1,
                        help="Run each case this many times, one after another; its row is the run with the largest "
                             "peak, with every run's peak beside it.")
    parser.add_argument("--calibrate", action="store_true", help="Only the small (non-default) sizes.")
    parser.add_argument("--defaults", action="store_true", help="Only the commands at their defaults.")
    parser.add_argument("--into", type=Path, default=RESULTS / "memory.json",
                        help="Results file to merge into (runs in parallel each take their own; --merge joins them).")
    parser.add_argument("--merge", type=Path, nargs="*", default=[], help="Merge these results files' cases in (and run nothing, unless --only, --calibrate or --defaults).")
    parser.add_argument("--stale", default="",
                        help="Run nothing: mark these comma-separated case names (as in memory.md, without "
                             "`arithlens `) as measured before a change that moves their peak, until rerun.")
    parser.add_argument("--reestimate", action="store_true",
                        help="Run nothing: recompute the stored cases' estimates (after the estimate's terms change).")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    cases = [name.strip() for name in args.case.split(",") if name.strip()]
    unknown = [name for name in cases if name not in {case_name(c, o) for c, o, _ in CASES}]
    if unknown:
        sys.exit(f"error: no case {unknown[0]!r} in bench_memory.py's CASES")
    path = args.into
    results = json.loads(path.read_text()) if path.exists() else {"cases": {}}
    for other in args.merge:
        results["cases"].update(json.loads(other.read_text())["cases"])
    results.setdefault("machine", {}).update(cpus=os.cpu_count(), memory_gb=round(psutil.virtual_memory().total / 1e9, 1))
    if args.stale:
        for name in args.stale.split(","):
            if name not in results["cases"]:
                sys.exit(f"error: no case {name!r} in {path}")
            results["cases"][name]["stale"] = True
        save(results, path)
        return
    if args.merge and not (only or cases or args.calibrate or args.defaults):  # only joining results: run nothing
        save(results, path)
        return
    if args.reestimate:
        for row in results["cases"].values():
            est = estimate(row["command"], row["options"])
            row.update(estimate_bytes=est["estimate"], figure_workers=est["figure_workers"],
                       ratio=round(est["estimate"] / row["peak_bytes"], 2))
        save(results, path)
        return
    for command, options, default in CASES:
        name = case_name(command, options)
        if ((only and command not in only) or (cases and name not in cases) or (args.calibrate and default)
                or (args.defaults and not default)):
            continue
        print(f"{name} ...", file=sys.stderr, flush=True)
        measured = []
        for _ in range(max(1, args.repeat)):
            load = round(os.getloadavg()[0], 1)
            row = {**measure(command, options), "default": default, "load_average": load}
            print(f"  peak {row['peak_bytes'] / 1e6:,.0f} MB "
                  f"(largest process {row['largest_process_bytes'] / 1e6:,.0f}), "
                  f"estimate {row['estimate_bytes'] / 1e6:,.0f} MB, {row['seconds']} s", file=sys.stderr, flush=True)
            measured.append(row)
        row = max(measured, key=lambda r: r["peak_bytes"])
        if len(measured) > 1:
            row["runs"] = [r["peak_bytes"] for r in measured]
        results["machine"]["model"] = row["model"]
        results["cases"][name] = row
        save(results, path)
    if args.merge:
        save(results, path)


def save(results: dict, path: Path) -> None:
    """The JSON, and the table beside it (memory.md for memory.json)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    path.with_suffix(".md").write_text(render(results))


if __name__ == "__main__":
    main()
