"""Where `arithlens circuit` holds its peak memory: resident memory (RSS) polled every 20 ms through each stage
of the node circuit's discovery, as the command runs it (the useful sweep, the pruning, the minimality pruner,
the held-out check).

    python benchmarks/bench_circuit_memory.py [--search-questions 600] [--held-out 10000] [--useful FILE]
    python benchmarks/bench_circuit_memory.py --means      # the ablation means' pass alone, by chunk size

`--useful FILE` reads the useful nodes from a node-set file instead of running the sweep (faster, but the sweep's
freed pages are then not there to count). Prints each stage's RSS at its start and its peak, and the node set, so
a change can be checked to keep the circuit identical. `--means` measures the reference means (`mean_values`, the
first thing the discovery and its held-out check compute) at several chunk sizes and checks they are bitwise equal.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import psutil
import torch

from arithlens.analysis import circuit as circuit_module
from arithlens.analysis import faithfulness
from arithlens.model import load_checkpoint
from arithlens.model.zoo import resolve_model


class StagePeaks:
    """RSS polled on a thread; `stage(name)` starts a new stage; `peaks` maps each stage to (RSS at start, peak)."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.name = "load"
        self.peaks: dict[str, list[int]] = {"load": [self.rss(), self.rss()]}
        self._lock = threading.Lock()
        threading.Thread(target=self._poll, daemon=True).start()

    def rss(self) -> int:
        return self.proc.memory_info().rss

    def _poll(self) -> None:
        while True:
            rss = self.rss()
            with self._lock:
                self.peaks[self.name][1] = max(self.peaks[self.name][1], rss)
            time.sleep(0.02)

    def stage(self, name: str) -> None:
        with self._lock:
            if name != self.name:
                rss = self.rss()
                self.peaks[self.name][1] = max(self.peaks[self.name][1], rss)
                self.name = name
                self.peaks.setdefault(name, [rss, rss])


def means_by_chunk(model, chunks=(2048, 512, 256)) -> None:
    """RSS over the start while `compute_means` runs the reference batch `chunk` questions at a time."""
    from arithlens.analysis.faithfulness import (FAITHFULNESS_SEED, REFERENCE_QUESTIONS, STREAM_REFERENCE,
                                                 ablation_hook_names, reference_questions, rng_for)
    from arithlens.interventions.cache import compute_means

    spec = model.spec
    ref = reference_questions(spec, REFERENCE_QUESTIONS, rng_for(FAITHFULNESS_SEED, STREAM_REFERENCE))
    peaks, means = StagePeaks(), {}
    for chunk in chunks:
        peaks.stage(f"chunk {chunk}")
        means[chunk] = compute_means(model, ref, ablation_hook_names(spec), chunk=chunk).values
        time.sleep(0.05)
        peaks.stage(f"after {chunk}")
    for chunk in chunks:
        start, peak = peaks.peaks[f"chunk {chunk}"]
        same = all(torch.equal(means[chunk][n], means[chunks[0]][n]) for n in means[chunk])
        print(f"means of {len(ref)} reference questions, {chunk} at a time: {(peak - start) / 1e6:,.0f} MB over the "
              f"start; bitwise equal to {chunks[0]} at a time: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--search-questions", type=int, default=circuit_module.SEARCH_QUESTIONS)
    parser.add_argument("--held-out", type=int, default=circuit_module.HELD_OUT_QUESTIONS)
    parser.add_argument("--target", type=float, default=circuit_module.TARGET, help="(below 0.99 only for a quick try)")
    parser.add_argument("--useful", default=None, help="node-set file of the useful nodes (skips the sweep)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the stages' peaks and the circuit here")
    parser.add_argument("--means", action="store_true", help="only the reference means' pass, by chunk size")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.means:
        means_by_chunk(load_checkpoint(resolve_model(args.model)).model.eval())
        return
    peaks = StagePeaks()
    model = load_checkpoint(resolve_model(args.model)).model.eval()
    if args.useful:
        useful = faithfulness.read_node_set(args.useful, model.spec)
    else:
        from arithlens.api import find_useful

        peaks.stage("useful")
        useful = [u.node for u in find_useful(model).nodes]

    def progress(stage: str, done: int, total: int) -> None:
        peaks.stage("minimality" if stage == "minimality" else "pruning")
        if stage == "minimality" and done == total:
            peaks.stage("held-out")

    measure = circuit_module.measure_faithfulness

    def held_out(*a, **k):
        peaks.stage("held-out")
        return measure(*a, **k)

    circuit_module.measure_faithfulness = held_out
    t0 = time.process_time()
    found = circuit_module.discover_circuit(model, useful, search_questions=args.search_questions,
                                            held_out_questions=args.held_out, target=args.target,
                                            progress=progress)
    cpu = time.process_time() - t0
    peaks.stage("done")
    for name, (start, peak) in peaks.peaks.items():
        print(f"{name:<11} start {start / 1e6:7,.0f} MB  peak {peak / 1e6:7,.0f} MB")
    exact = {f.label: {q.qtype: q.exact for q in f.qtypes} for f in found.validation}
    print(f"circuit ({len(found.nodes)} nodes, {found.passes} passes, CPU {cpu:.0f} s): {' '.join(found.nodes)}")
    print(f"held-out exact: {exact}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"stages": {k: {"start_bytes": s, "peak_bytes": p} for k, (s, p) in peaks.peaks.items()},
                       "nodes": list(found.nodes), "held_out_exact": exact, "passes": found.passes,
                       "search_exact": dict(found.search_exact), "cpu_seconds": cpu}, f, indent=1)


if __name__ == "__main__":
    main()
