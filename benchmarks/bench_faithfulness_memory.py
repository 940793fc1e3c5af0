"""The faithfulness stage's peak memory after a useful sweep, with and without handing the sweep's freed pages back
to the system first (`analysis.faithfulness.release_freed_memory`), at a given chunk size.

    python benchmarks/bench_faithfulness_memory.py [--questions 256] [--power 0] [--per-qtype 1500] [--chunk 1024]
        [--no-release]

One process, as `arithlens faithfulness --nodes useful` runs: the useful sweep, then the faithfulness check of the
useful set. Resident memory (RSS) is polled every 50 ms; printed after loading, after the sweep, after the
release, and the check's own peak. Run it once with and once without --no-release to compare.
"""

from __future__ import annotations

import argparse
import threading
import time

import psutil
import torch

from arithlens.analysis import faithfulness
from arithlens.api.nodes import find_useful
from arithlens.model import load_checkpoint
from arithlens.model.zoo import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--questions", type=int, default=256, help="random questions of the useful sweep")
    parser.add_argument("--power", type=int, default=0, help="the sweep's power-stage questions per qtype")
    parser.add_argument("--per-qtype", type=int, default=1500, help="faithfulness questions per qtype")
    parser.add_argument("--chunk", type=int, default=faithfulness.CHUNK)
    parser.add_argument("--no-release", action="store_true", help="keep the freed pages (the code before)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    proc, peak = psutil.Process(), [0]

    def poll() -> None:
        while True:
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.05)

    threading.Thread(target=poll, daemon=True).start()
    mb = lambda b: f"{b / 1e6:,.0f} MB"  # noqa: E731
    model = load_checkpoint(resolve_model(args.model)).model.eval()
    print(f"loaded {mb(proc.memory_info().rss)}", flush=True)
    useful = find_useful(model, questions=args.questions, power=args.power)
    print(f"after the useful sweep {mb(proc.memory_info().rss)} (its peak {mb(peak[0])})", flush=True)
    if args.no_release:
        faithfulness.release_freed_memory = lambda: False
    elif faithfulness.release_freed_memory():
        print(f"after the release {mb(proc.memory_info().rss)}", flush=True)
    peak[0] = 0
    faithfulness.CHUNK = args.chunk
    faithfulness.measure_faithfulness(model, {"useful": [u.node for u in useful.nodes]},
                                      questions_per_qtype=args.per_qtype)
    print(f"faithfulness check (chunk {args.chunk}, {args.per_qtype} per qtype, "
          f"{'kept' if args.no_release else 'released'} pages): peak {mb(peak[0])}", flush=True)


if __name__ == "__main__":
    main()
