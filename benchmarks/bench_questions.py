"""Benchmark: 1M enriched mixed 6-digit questions with every label (goal < 2 s on 2 cores).

Run: python benchmarks/bench_questions.py [--count 1000000]
Prints seconds per stage and the ratio to a per-row Python baseline measured in the same run.
"""

import argparse
import time

import numpy as np

from arithlens.arith import enriched
from arithlens.arith.questions import QuestionBatch


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    best = None
    for _ in range(args.repeats):
        stages = {}
        batch, stages["generate"] = timed(lambda: enriched(6, args.count, np.random.default_rng(0)))
        _, stages["tokens"] = timed(lambda: batch.tokens)
        _, stages["features"] = timed(lambda: batch.features)
        _, stages["complexity"] = timed(lambda: (batch.complexity, batch.complexity_true))
        total = sum(stages.values())
        if best is None or total < best[0]:
            best = (total, stages)
    total, stages = best
    print(f"{args.count} enriched mixed 6-digit questions with all labels: {total:.2f} s (best of {args.repeats})")
    for name, seconds in stages.items():
        print(f"  {name:<10} {seconds:.3f} s")
    # Per-row baseline: build 20K rows one at a time (question string + answer), scale to the count.
    rows = 20_000
    sample = enriched(6, rows, np.random.default_rng(1))

    def per_row():
        for i in range(rows):
            QuestionBatch(6, sample.a[i:i + 1], sample.op[i:i + 1], sample.b[i:i + 1]).complexity

    _, slow = timed(per_row)
    projected = slow * args.count / rows
    print(f"per-row baseline projected for {args.count}: {projected:.1f} s; vectorised is {projected / total:.0f}x faster")


if __name__ == "__main__":
    main()
