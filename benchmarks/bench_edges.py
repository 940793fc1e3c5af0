"""Edge-circuit discovery on the default model, timed in one run: wall and process CPU seconds of `discover(model)`
at its defaults, its peak memory beside the model's, and the edge-masked forward's cost per question with one mask
shared by every row (the discovery's checks) against the same mask given per row, and against the plain forward.

    python benchmarks/bench_edges.py                   # one torch thread (the shared machine's fair share)
    python benchmarks/bench_edges.py --threads 2       # an idle 2-core machine
    python benchmarks/bench_edges.py --against 086f774 # also the edge-masked forward of that commit, in one run

With --against REV, `analysis/edges/forward.py` as it was at git revision REV is loaded beside today's, and the
discovery and the forward costs run with each in turn (alternating, twice each): CPU seconds before and after
in one run, and whether both find the same circuit.

Prints one JSON object. On a machine other jobs share, process CPU seconds (`time.process_time()`; torch uses at most
--threads threads) stand in for the wall time an idle machine would take.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import numpy as np
import psutil
import torch

from arithlens.analysis.edges.discovery import discover
from arithlens.analysis.edges.forward import ablation_values, edge_forward
from arithlens.analysis.edges.graph import EdgeGraph
from arithlens.analysis.faithfulness import fresh_questions, reference_questions, rng_for
from arithlens.api import load_model


class PeakRSS:
    """The largest resident set size of this process while the block runs (polled every 20 ms)."""

    def __enter__(self) -> PeakRSS:
        self.proc, self.peak, self.done = psutil.Process(), 0, threading.Event()
        self.start = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def forward_costs(model, repeats: int = 3, questions: int = 96, edge_forward=edge_forward) -> dict:
    """CPU ms per question of the edge-masked forward (a mask keeping ~47% of the edges, shared or per row) and of
    the plain forward, interleaved so load changes hit all three alike."""
    spec = model.spec
    graph = EdgeGraph.build(spec, min_position=spec.layout.answer_logit_positions.start)
    tokens = fresh_questions(spec, questions // 3, rng_for(1, 1)).torch_tokens(str(model.device))
    ablated = ablation_values(model, reference_questions(spec, 512, rng_for(1, 2)).torch_tokens(str(model.device)))
    mask = torch.as_tensor(np.random.default_rng(0).random(graph.n_edges) < 0.47, dtype=torch.float32)
    cpu = {"shared_mask": 0.0, "per_row_mask": 0.0, "model": 0.0}
    with torch.no_grad():
        same = torch.equal(edge_forward(model, graph, tokens, ablated, mask).argmax(-1),
                           edge_forward(model, graph, tokens, ablated, mask.expand(len(tokens), -1)).argmax(-1))
        for _ in range(repeats):
            for name, run in (("shared_mask", lambda: edge_forward(model, graph, tokens, ablated, mask, chunk=32)),
                              ("per_row_mask", lambda: edge_forward(model, graph, tokens, ablated,
                                                                    mask.expand(len(tokens), -1), chunk=32)),
                              ("model", lambda: model(tokens))):
                c = time.process_time()
                run()
                cpu[name] += time.process_time() - c
    ms = {k: 1e3 * v / repeats / len(tokens) for k, v in cpu.items()}
    return {"cpu_ms_per_question": {k: round(v, 3) for k, v in ms.items()}, "same_answers": same,
            "per_row_over_shared": round(ms["per_row_mask"] / ms["shared_mask"], 2),
            "shared_over_model": round(ms["shared_mask"] / ms["model"], 2)}


def forward_at(rev: str):
    """`arithlens.analysis.edges.forward` as it was at git revision `rev` (a module loaded from `git show`)."""
    import importlib.util
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = subprocess.run(["git", "show", f"{rev}:src/arithlens/analysis/edges/forward.py"], cwd=root, check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="bench_edges.")) / "forward_at.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"forward_at_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def against(model, rev: str, method: str | None) -> dict:
    """Discovery's CPU seconds and the forward's CPU ms per question with today's edge-masked forward and with
    `rev`'s, alternating (twice each), and whether the circuits are the same edges."""
    import hashlib

    from arithlens.analysis.edges import discovery

    old = forward_at(rev)
    today = discovery.edge_forward
    variants = {"before": lambda *a, offs=None, **k: old.edge_forward(*a, **k), "after": today}
    cpu: dict[str, list[float]] = {"before": [], "after": []}
    edges: dict[str, set[str]] = {}
    try:
        for _ in range(2):
            for name, fn in variants.items():
                discovery.edge_forward = fn
                c = time.process_time()
                circuit = discover(model, **({} if method is None else {"method": method}))
                cpu[name].append(round(time.process_time() - c, 1))
                edges.setdefault(name, set()).add(hashlib.sha1(circuit.kept.tobytes()).hexdigest())
    finally:
        discovery.edge_forward = today
    ms = {name: forward_costs(model, edge_forward=fn)["cpu_ms_per_question"]["shared_mask"]
          for name, fn in (("before", old.edge_forward), ("after", today))}
    return {"revision": rev, "discovery_cpu_s": cpu,
            "discovery_ratio": round(sum(cpu["before"]) / sum(cpu["after"]), 2),
            "same_circuit": len(edges["before"] | edges["after"]) == 1,
            "shared_mask_cpu_ms_per_question": ms, "forward_ratio": round(ms["before"] / ms["after"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--method", default=None, help="ranking (default: discover's)")
    parser.add_argument("--against", metavar="REV", default=None,
                        help="also the edge-masked forward of this git revision, before/after in one run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model()
    load = os.getloadavg()
    with PeakRSS() as mem:
        wall, cpu = time.perf_counter(), time.process_time()
        circuit = discover(model, **({} if args.method is None else {"method": args.method}))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = {
        "model": model.spec.name, "threads": args.threads, "method": circuit.method,
        "discovery": {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "n_edges": circuit.n_edges,
                      "exact_held_out": circuit.exact, "stages": circuit.stages},
        "memory": {"rss_before_mb": round(mem.start / 1e6), "peak_rss_mb": round(mem.peak / 1e6),
                   "stage_mb": round((mem.peak - mem.start) / 1e6)},
        "forward": forward_costs(model),
        "load_average": {"before": [round(x, 2) for x in load], "after": [round(x, 2) for x in os.getloadavg()]},
    }
    if args.against:
        result["against"] = against(model, args.against, args.method)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
