"""The sub-task search's patched runs as they were (one node set per forward, in turn: `batch_rows=0,
workers=1`) vs now (`EngineRunner`'s defaults, or --batch-rows / --workers).

    PYTHONPATH=src python benchmarks/bench_search.py [--model NAME] [--useful FILE] [--threads 1] [--rounds 1]
                                                     [--batch-rows N] [--workers N] [--out FILE]

The default search (`arithlens.search`: 100 pairs, seed 0) over the useful nodes of the shipped default model
(or --model), both ways in one process, alternating (the old way first in odd rounds, the new first in even
ones), so background load hits both alike; the search records (`SearchResult.to_json()`) are asserted equal.
By default the new way on a CPU runs the sets on --threads worker threads (one torch thread each) without
stacking; --batch-rows 2048 stacks sets along the batch axis (what a GPU gets by default).
--useful caches the useful nodes in a JSON file (computed and written when missing). Prints the seconds
of each way per round, their ratio, the patched sets and forwards, and the machine's load average;
--out writes the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# As the CLI does (arithlens.cli.main): a short OpenMP spin, so idle torch threads do not burn a busy core.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import torch  # noqa: E402

import arithlens as al  # noqa: E402
from arithlens.analysis import search as S  # noqa: E402
from arithlens.io import write_atomic  # noqa: E402
from arithlens.results import UsefulNodes  # noqa: E402


def useful_nodes(model, path: str | None) -> UsefulNodes:
    if path and Path(path).exists():
        return UsefulNodes.from_dict(json.loads(Path(path).read_text()))
    nodes = al.useful_nodes(model)
    if path:
        write_atomic(path, json.dumps(nodes.to_dict()).encode())
    return nodes


class Counting(S.EngineRunner):
    """An engine runner that counts the node sets it patches and the forwards it runs for them."""

    sets = forwards = 0

    def patched(self, nodes):
        Counting.sets += 1
        Counting.forwards += 1
        return super().patched(nodes)

    def stacked_logits(self, node_sets):
        Counting.sets += len(node_sets)
        Counting.forwards += 1
        return super().stacked_logits(node_sets)


def run(model, nodes, batch_rows: int | None, workers: int | None) -> tuple[float, dict, int, int]:
    Counting.sets = Counting.forwards = 0
    start = time.perf_counter()
    result = S.search(nodes.node_list(), model.spec,
                      lambda pairs: Counting(model, pairs, batch_rows=batch_rows, workers=workers), n_pairs=100, seed=0)
    return time.perf_counter() - start, result.to_json(), Counting.sets, Counting.forwards


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a shipped model name or checkpoint (default: the default model)")
    ap.add_argument("--useful", default=None, help="JSON file caching the useful nodes (written when missing)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of both ways")
    ap.add_argument("--batch-rows", type=int, default=None, help="the new way's rows per stacked forward "
                    "(default: EngineRunner's, 0 on a CPU)")
    ap.add_argument("--workers", type=int, default=None, help="the new way's worker threads (default: --threads)")
    ap.add_argument("--out", default=None, help="write the timings as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = al.load_model(args.model)
    nodes = useful_nodes(model, args.useful)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"old": [], "new": []}
    counts = {}
    records = {}
    for r in range(args.rounds):
        order = (("old", 0, 1), ("new", args.batch_rows, args.workers))
        for name, rows, workers in order if r % 2 == 0 else order[::-1]:
            seconds, record, sets, forwards = run(model, nodes, rows, workers)
            times[name].append(seconds)
            counts[name] = {"sets": sets, "forwards": forwards}
            records.setdefault(name, record)
            print(f"round {r + 1} {name:3s} {seconds:7.1f} s  {sets} sets in {forwards} forwards", flush=True)
    equal = records["new"] == records["old"]
    if not equal:
        differ = sum(a != b for a, b in zip(records["new"]["trials"], records["old"]["trials"]))
        print(f"search records DIFFER: {differ} of {len(records['old']['trials'])} trials")
    total = {name: sum(v) for name, v in times.items()}
    ratio = total["old"] / total["new"]
    load_after = os.getloadavg()
    print(f"model {model.spec.name}, {len(nodes.node_list())} useful nodes, {args.threads} torch thread(s), "
          f"new: batch_rows {args.batch_rows}, workers {args.workers} (None: defaults): old {total['old']:.1f} s, "
          f"new {total['new']:.1f} s, "
          f"speed-up {ratio:.2f}x; records equal: {equal}; load average before {load_before[0]:.2f}, "
          f"after {load_after[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    if args.out:
        write_atomic(args.out, json.dumps({
            "model": model.spec.name, "threads": args.threads, "batch_rows": args.batch_rows,
            "workers": args.workers, "times_s": times,
            "speedup": round(ratio, 3), "counts": counts, "records_equal": equal,
            "load_before": load_before, "load_after": load_after, "cpus": os.cpu_count()}, indent=1).encode())
    if not equal:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
