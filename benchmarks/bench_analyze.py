"""`arithlens analyze` before and after: the same command run with an earlier commit's code and with this tree's,
one after the other in one run, stage times side by side, and every JSON file compared (timings aside).

    python benchmarks/bench_analyze.py [--before d10bade] [--model NAME] [--threads N] [-- more analyze options]

The earlier code is `git archive <before> src` unpacked into a temporary directory; both runs use this
interpreter and the same options, so they differ only in the code. The machine's load average is printed
before and after each run (a shared machine slows both; the ratio means most when the loads are alike).
Exit code 1 when a JSON output differs (beyond timings), so this doubles as the check that a speed-up kept
the results. What only the newer code writes (a file, or a key of a file both write, such as the faithfulness
stage's) is listed as added and is not a difference; `--after-args "--faithfulness 0"` skips that work on the
newer side, so both runs do the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "d10bade"  # main before issue 15 (the 204 s measured in the issue)
# Keys that hold wall times, the machine's state or where the files came from: never compared.
VOLATILE = {"timings", "load_average", "threads", "seconds", "source"}


def unpack(ref: str, into: Path) -> Path:
    """`git archive ref src` unpacked under `into`; returns the directory to put on PYTHONPATH."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref, "src"], check=True,
                             capture_output=True).stdout
    tar = into / "src.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    return into / "src"


def run(src: Path, out: Path, args: list[str]) -> tuple[dict, float, tuple[float, float]]:
    """One `analyze` run with `src` first on the path: (analysis.json, wall seconds, load before/after)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "arithlens.cli", "analyze", "--out", str(out), "--quiet", "--json",
                    *args], check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    return json.loads((out / "analysis.json").read_text()), wall, (load0, os.getloadavg()[0])


def strip(value):
    """The JSON without its volatile keys."""
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def old_keys_only(before, after):
    """`after` without the dict keys `before` lacks (recursively): what the newer code adds is not a difference."""
    if isinstance(before, dict) and isinstance(after, dict):
        return {k: old_keys_only(before[k], v) for k, v in after.items() if k in before}
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [old_keys_only(b, a) for b, a in zip(before, after)]
    return after


def compare(a: Path, b: Path) -> tuple[list[str], list[str]]:
    """(JSON files that differ or exist before only, files or keys only the newer code writes), timings aside."""
    names = sorted({p.name for p in a.glob("*.json")} | {p.name for p in b.glob("*.json")})
    bad, added = [], []
    for name in names:
        pa, pb = a / name, b / name
        if not pb.exists():
            bad.append(f"{name} (only before)")
        elif not pa.exists():
            added.append(name)
        else:
            old, new = strip(json.loads(pa.read_text())), strip(json.loads(pb.read_text()))
            if old != old_keys_only(old, new):
                bad.append(name)
            elif old != new:
                added.append(f"keys in {name}")
    return bad, added


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=BEFORE, help="git ref of the code to compare against")
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep both output directories here")
    parser.add_argument("--after-args", default="", help="options for the newer run only, e.g. '--faithfulness 0'")
    parser.add_argument("extra", nargs="*", help="more `arithlens analyze` options (after --)")
    args = parser.parse_args()
    extra = [*(["--model", args.model] if args.model else []),
             *(["--threads", str(args.threads)] if args.threads else []), *args.extra]
    with tempfile.TemporaryDirectory(prefix="bench_analyze.") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        old_src = unpack(args.before, Path(tmp))
        print(f"cores {os.cpu_count()}, analyze {' '.join(extra) or '(defaults)'}; before = {args.before}")
        before, wall_b, load_b = run(old_src, work / "before", extra)
        after, wall_a, load_a = run(ROOT / "src", work / "after", [*extra, *args.after_args.split()])
        tb, ta = before["timings"], after["timings"]
        print(f"{'stage':<10}{'before s':>10}{'after s':>10}{'ratio':>8}")
        for stage in [*tb, *(s for s in ta if s not in tb)]:
            b, a = tb.get(stage), ta.get(stage)
            ratio = f"{b / a:.1f}x" if b and a else ""
            print(f"{stage:<10}{'' if b is None else f'{b:.1f}':>10}{'' if a is None else f'{a:.1f}':>10}{ratio:>8}")
        print(f"{'wall':<10}{wall_b:>10.1f}{wall_a:>10.1f}{wall_b / wall_a:>7.1f}x  (process start included)")
        print(f"load average (1 min) before run: {load_b[0]:.2f} -> {load_b[1]:.2f}; after run: "
              f"{load_a[0]:.2f} -> {load_a[1]:.2f}")
        bad, added = compare(work / "before", work / "after")
        print("JSON outputs: " + (f"DIFFER: {', '.join(bad)}" if bad else
                                  f"identical, timings aside ({len(list((work / 'after').glob('*.json')))} files)")
              + (f"; added by the newer code: {', '.join(added)}" if added else ""))
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
