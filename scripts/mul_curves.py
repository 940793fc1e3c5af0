"""Per-answer-digit held-out MUL accuracy against steps: stored from training runs, rendered into the docs.

    python scripts/mul_curves.py store runs/mul_base runs/mul_curriculum runs/mul_aux runs/mul_curriculum_aux
    python scripts/mul_curves.py render --figure docs/figures/mul_curves.png

`store` reads each run's training.json (the `mul_digits` of every evaluation, steps and wall time) into
benchmarks/results/mul_curves.json; `render` writes the block of docs/multiplication.md between its markers
from that file (a markdown table per run: step, exact share, A6..A0 and the sign A7, and the run's steps/s) and,
with --figure, draws the exact share and the weakest digit's accuracy against steps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "mul_curves.json"
DOC = ROOT / "docs" / "multiplication.md"
START, END = "<!-- mul-curves:start -->", "<!-- mul-curves:end -->"


def load(run: Path) -> dict:
    """One run's curve: name, steps trained, wall seconds, and its evaluations that hold `mul_digits`."""
    history = json.loads((run / "training.json").read_text())
    evals = [{"step": e["step"], "mul_digits": e["mul_digits"]} for e in history["eval"] if "mul_digits" in e]
    if not evals:
        raise SystemExit(f"error: {run} has no per-digit MUL evaluations (trained before they were recorded?)")
    return {"name": run.name, "evals": evals, "seconds": history.get("seconds"), "steps": len(history["loss"])}


def table(run: dict) -> str:
    digits = [k for k in run["evals"][0]["mul_digits"] if k != "exact"]
    sign, magnitude = digits[0], digits[1:]  # the first answer token is the sign
    head = ["step", "exact"] + magnitude + [f"{sign} (sign)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in run["evals"]:
        acc = e["mul_digits"]
        cells = [f"{e['step']:,}", f"{100 * acc['exact']:.1f}"] + [f"{100 * acc[d]:.1f}" for d in magnitude + [sign]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(runs: list[dict]) -> str:
    """The docs block: per run a heading with its pace, then its table (percent of held-out MUL questions)."""
    parts = []
    for run in runs:
        pace = f", {run['steps'] / run['seconds']:.2f} steps/s" if run["seconds"] else ""
        parts.append(f"**{run['name']}** ({run['steps']:,} steps in {run['seconds']:.0f} s{pace})\n\n{table(run)}")
    return "\n\n".join(parts)


def write_doc(text: str, doc: Path = DOC) -> None:
    page = doc.read_text()
    head, sep, rest = page.partition(START)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"error: {doc} has no {START} ... {END} block")
    doc.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def figure(runs: list[dict], path: Path) -> None:
    """One panel per run: each magnitude digit's accuracy against steps (A6 and the sign, always 0 and + for
    3-digit operands, are left out), chance (10%) dotted, the last exact share in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(3.2 * len(runs), 3.4), sharey=True, squeeze=False)
    for ax, run in zip(axes[0], runs):
        steps = [e["step"] for e in run["evals"]]
        digits = [k for k in run["evals"][0]["mul_digits"] if k not in ("exact", "A6", "A7")]
        for digit in digits:
            ax.plot(steps, [100 * e["mul_digits"][digit] for e in run["evals"]], marker="o", label=digit)
        ax.axhline(10, color="grey", linestyle=":", linewidth=1)
        last = run["evals"][-1]["mul_digits"]["exact"]
        ax.set(title=f"{run['name']}\nexact {100 * last:.1f}% at step {steps[-1]:,}", xlabel="step", ylim=(0, 102))
    axes[0][0].set_ylabel("% of held-out MUL right at the digit")
    axes[0][-1].legend(fontsize=7, loc="center right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    store = sub.add_parser("store", help="read runs' training.json into the results file")
    store.add_argument("runs", nargs="+", type=Path)
    draw = sub.add_parser("render", help="write the docs block (and a figure) from the results file")
    draw.add_argument("--figure", type=Path)
    args = parser.parse_args()
    if args.command == "store":
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps([load(r) for r in args.runs], indent=1) + "\n")
        return
    runs = json.loads(RESULTS.read_text())
    write_doc(render(runs))
    print(render(runs))
    if args.figure:
        figure(runs, args.figure)


if __name__ == "__main__":
    main()
