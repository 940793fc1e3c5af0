"""CPU seconds to draw and save the node-study figures of an `arithlens analyze` folder, per figure, as they are
drawn now and as they were drawn before each of two changes, in one run (alternating, best of `--repeats`):
titles placed by matplotlib (before titles were set at `TITLE_Y`) and a constrained layout (before fixed margins).

    python benchmarks/bench_figures.py DIR [--studies 8] [--repeats 2]

DIR holds `<node>_study.json` files (an `arithlens analyze --out DIR` folder). Process CPU time, not wall time, is
compared, so other jobs on the machine move the columns alike; the PNGs go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from matplotlib.axes import Axes

from arithlens.report import node_figures
from arithlens.report.figures import fixed_margins


def constrained(fig, **margins):
    """The earlier layout: a constrained layout engine instead of fixed margins."""
    fig.set_layout_engine("constrained")
    return fig


@contextmanager
def variant(name: str):
    """Draw as `name` does: "now", "placed titles" (no y given to set_title) or "constrained" (and placed titles)."""
    set_title = Axes.set_title
    if name != "now":
        Axes.set_title = lambda self, label, *args, y=None, **kwargs: set_title(self, label, *args, **kwargs)
    if name == "constrained":
        node_figures.fixed_margins = constrained
    try:
        yield
    finally:
        Axes.set_title = set_title
        node_figures.fixed_margins = fixed_margins


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
    labels = ("constrained", "placed titles", "now")
    best: dict[str, dict[str, float]] = {label: {} for label in labels}
    with tempfile.TemporaryDirectory(prefix="bench_figures.") as tmp:
        for _ in range(args.repeats):
            for label in labels:
                with variant(label):
                    for name, s in draw_all(studies, Path(tmp)).items():
                        best[label][name] = min(best[label].get(name, float("inf")), s)
    names = list(best["now"])
    print(f"{len(studies)} studies from {args.folder}, CPU seconds (best of {args.repeats}); ratios against now")
    print(f"{'figure':<12}" + "".join(f"{label:>15}" for label in labels) + f"{'placed/now':>12}{'constr./now':>13}")
    for name in [*names, "all"]:
        cpu = {label: sum(best[label].values()) if name == "all" else best[label][name] for label in labels}
        print(f"{name:<12}" + "".join(f"{cpu[label]:>15.2f}" for label in labels)
              + f"{cpu['placed titles'] / cpu['now']:>11.2f}x{cpu['constrained'] / cpu['now']:>12.2f}x")


if __name__ == "__main__":
    main()
