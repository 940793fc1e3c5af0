"""CPU seconds to draw and save the node-study figures of an `arithlens analyze` folder, per figure, with the fixed
margins they use and with the constrained layout they used before, in one run (alternating, best of `--repeats`).

    python benchmarks/bench_figures.py DIR [--studies 8] [--repeats 2]

DIR holds `<node>_study.json` files (an `arithlens analyze --out DIR` folder). Process CPU time, not wall time, is
compared, so other jobs on the machine move the two columns alike; the PNGs go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from arithlens.report import node_figures
from arithlens.report.figures import fixed_margins


def constrained(fig, **margins):
    """The earlier layout: a constrained layout engine instead of fixed margins."""
    fig.set_layout_engine("constrained")
    return fig


def draw_all(studies: list[dict], out: Path) -> dict[str, float]:
    """CPU seconds per figure name over every study (drawn and saved as PNG, as `analyze` does)."""
    seconds: dict[str, float] = {}
    for data in studies:
        for name, (fn, args) in node_figures.node_figure_jobs(data, out, ("png",)).items():
            t0 = time.process_time()
            fn(*args)
            seconds[name] = seconds.get(name, 0.0) + time.process_time() - t0
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--studies", type=int, default=None, help="only the first N studies (default: all)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    files = sorted(args.folder.glob("*_study.json"))[: args.studies]
    if not files:
        raise SystemExit(f"error: no *_study.json in {args.folder}")
    studies = [json.loads(f.read_text()) for f in files]
    best: dict[str, dict[str, float]] = {"fixed margins": {}, "constrained layout": {}}
    with tempfile.TemporaryDirectory(prefix="bench_figures.") as tmp:
        for _ in range(args.repeats):
            for label, layout in (("constrained layout", constrained), ("fixed margins", fixed_margins)):
                node_figures.fixed_margins = layout
                for name, s in draw_all(studies, Path(tmp)).items():
                    best[label][name] = min(best[label].get(name, float("inf")), s)
    node_figures.fixed_margins = fixed_margins
    names = list(best["fixed margins"])
    print(f"{len(studies)} studies from {args.folder}, CPU seconds (best of {args.repeats})")
    print(f"{'figure':<12}{'constrained':>13}{'fixed':>9}{'ratio':>8}")
    for name in [*names, "all"]:
        before = sum(best["constrained layout"].values()) if name == "all" else best["constrained layout"][name]
        after = sum(best["fixed margins"].values()) if name == "all" else best["fixed margins"][name]
        print(f"{name:<12}{before:>13.2f}{after:>9.2f}{before / after:>7.2f}x")


if __name__ == "__main__":
    main()
