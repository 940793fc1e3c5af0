"""Per-answer-digit held-out MUL accuracy against steps, read from training runs' training.json (no model is run).

    python scripts/mul_curves.py runs/mul_base runs/mul_curr runs/mul_aux --figure docs/figures/mul_curves.png

Prints, per run, a markdown table (step, exact share, then A6..A0 and the sign A7) and the wall time and steps/s
the run recorded; with --figure, draws the exact share and the weakest digit's accuracy against steps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(run: Path) -> dict:
    history = json.loads((run / "training.json").read_text())
    evals = [e for e in history["eval"] if "mul_digits" in e]
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


def figure(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_exact, ax_digit) = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for run in runs:
        steps = [e["step"] for e in run["evals"]]
        ax_exact.plot(steps, [100 * e["mul_digits"]["exact"] for e in run["evals"]], marker="o", label=run["name"])
        worst = [100 * min(v for k, v in e["mul_digits"].items() if k != "exact") for e in run["evals"]]
        ax_digit.plot(steps, worst, marker="o", label=run["name"])
    ax_exact.set(title="held-out MUL questions exactly right", xlabel="step", ylabel="%", ylim=(0, 100))
    ax_digit.set(title="weakest answer digit", xlabel="step", ylabel="% right", ylim=(0, 100))
    ax_exact.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()
    runs = [load(r) for r in args.runs]
    for run in runs:
        rate = f", {run['steps'] / run['seconds']:.2f} steps/s" if run["seconds"] else ""
        print(f"### {run['name']} ({run['steps']:,} steps in {run['seconds'] or 0:.0f} s{rate})\n")
        print(table(run) + "\n")
    if args.figure:
        figure(runs, args.figure)


if __name__ == "__main__":
    main()
