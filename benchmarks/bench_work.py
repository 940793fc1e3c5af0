"""How much model work each stage of `arithlens analyze` does, and the least time it could take on this machine.

    PYTHONPATH=src python benchmarks/bench_work.py [--model NAME_OR_DIR] [--threads 2] [--max-studies N]

Runs the analysis (the API, default options, no figures) with every transformer block call counted: its rows x
query positions ("block-positions": one layer at one position for one question). Then measures this machine's
rate on the plainest work there is, full forward passes of 4,096 questions with no hooks, in block-positions per
second, and divides: the ideal seconds of a stage are the time its block work would take at that rate, with no
overhead of any kind (no hooks, caching, statistics or Python). A stage far above its ideal has overhead to win;
a stage near it is compute-bound, and only less work (fewer questions, a smaller set) makes it faster.
Both numbers come from one run, so background load hits them alike.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("GOMP_SPINCOUNT", "10000")  # as the CLI does

import torch  # noqa: E402

from arithlens.analysis.analyze import AnalyzeOptions, analyze  # noqa: E402
from arithlens.arith import uniform  # noqa: E402
from arithlens.model.transformer import TransformerBlock  # noqa: E402
from arithlens.model import load_checkpoint  # noqa: E402
from arithlens.model.zoo import resolve_model  # noqa: E402

COUNTS: dict[str, int] = {}
STAGE = ["model"]


def _counting(method):
    def wrapped(self, x, *args, **kwargs):
        COUNTS[STAGE[0]] = COUNTS.get(STAGE[0], 0) + x.shape[0] * x.shape[1]
        return method(self, x, *args, **kwargs)
    return wrapped


def forward_rate(model, n: int = 4096, repeats: int = 5) -> float:
    """Block-positions per second of plain full forward passes (the best of `repeats`)."""
    import numpy as np

    qs = uniform(model.spec.n_digits, n, np.random.default_rng(0))
    tokens = qs.torch_tokens(str(model.device))
    best = float("inf")
    with torch.inference_mode():
        model(tokens)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(tokens)
            best = min(best, time.perf_counter() - t0)
    return n * tokens.shape[1] * model.spec.n_layers / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model name or checkpoint (default: the shipped model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-studies", type=int, default=None)
    parser.add_argument("--also-rate", default=None, metavar="MODEL",
                        help="also this model's plain forward rate, and the same work's ideal time at it (valid for "
                             "a model doing the same work, e.g. bench_reference.py's embedded reference-size copy, "
                             "which has the same useful nodes and studies)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_checkpoint(resolve_model(args.model)).model.eval()
    TransformerBlock.forward = _counting(TransformerBlock.forward)
    TransformerBlock.fast = _counting(TransformerBlock.fast)

    walls: dict[str, float] = {}
    mark = [time.perf_counter()]

    def progress(stage: str, done: int, total: int, detail: str) -> None:
        if stage not in ("faithfulness", "circuit", "search", "studies"):
            stage = "useful"  # positions, nodes and the power stage's passes
        if stage != STAGE[0]:
            now = time.perf_counter()
            walls[STAGE[0]] = walls.get(STAGE[0], 0.0) + now - mark[0]
            mark[0], STAGE[0] = now, stage

    t0 = time.perf_counter()
    analysis = analyze(model, AnalyzeOptions(max_studies=args.max_studies), progress=progress)
    walls[STAGE[0]] = walls.get(STAGE[0], 0.0) + time.perf_counter() - mark[0]
    total = time.perf_counter() - t0
    STAGE[0] = "rate"
    rate = forward_rate(model)
    COUNTS.pop("rate", None)

    print(f"{model.spec.name}, {torch.get_num_threads()} torch threads, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; {len(analysis.studies)} studies")
    print(f"plain forward rate: {rate / 1e6:.2f} M block-positions/s")
    print(f"{'stage':<14}{'block-pos (M)':>14}{'ideal (s)':>11}{'wall (s)':>10}{'wall/ideal':>12}")
    for stage in ("useful", "faithfulness", "search", "studies"):
        work = COUNTS.get(stage, 0)
        ideal = work / rate
        wall = analysis.timings.get(stage, walls.get(stage, 0.0))
        ratio = f"{wall / ideal:.1f}" if ideal else "-"
        print(f"{stage:<14}{work / 1e6:>14.1f}{ideal:>11.1f}{wall:>10.1f}{ratio:>12}")
    work = sum(COUNTS.get(s, 0) for s in ("useful", "faithfulness", "search", "studies"))
    print(f"{'analysis':<14}{work / 1e6:>14.1f}{work / rate:>11.1f}{total:>10.1f}{total / (work / rate):>12.1f}")
    if args.also_rate:
        other = load_checkpoint(resolve_model(args.also_rate)).model.eval()
        other_rate = forward_rate(other)
        print(f"{other.spec.name} (d_model {other.spec.d_model}, d_mlp {other.spec.d_mlp}): plain forward rate "
              f"{other_rate / 1e6:.3f} M block-positions/s, {rate / other_rate:.1f}x slower; the same "
              f"{work / 1e6:.1f} M block-positions would take at least {work / other_rate:.0f} s there")


if __name__ == "__main__":
    main()
