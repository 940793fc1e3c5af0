"""The useful-node sweep at several chunk sizes (questions per engine): peak memory, CPU and wall time of each, and
a check that every size finds the same nodes, tags and failure counts.

    python benchmarks/bench_chunks.py [--chunks 4096,512,256] [--model NAME] [--threads 2]

Each size runs `find_useful` on the default varied set (power stage included) in a fresh process, one after the
other, so the peaks (ru_maxrss of that process: RSS, not PSS) do not mix. Exit code 1 when a size's result differs
from the first size's. CPU time (user + sys of the process) is printed beside wall: on a shared machine it is the
steadier of the two.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = """
import json, resource, sys, time
import torch
import arithlens.analysis.useful as useful
from arithlens.model import load_checkpoint
from arithlens.model.zoo import resolve_model

chunk, model_name, threads = int(sys.argv[1]), sys.argv[2] or None, int(sys.argv[3])
useful.CHUNK = chunk
torch.set_num_threads(threads)
model = load_checkpoint(resolve_model(model_name)).model.eval()
before = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
result = useful.find_useful(model, useful.varied_questions(model.spec))
wall = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
print(json.dumps({"chunk": chunk, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                  "peak_mb": round(after.ru_maxrss / 1e3), "before_mb": round(before.ru_maxrss / 1e3),
                  "nodes": {un.name: [str(t) for t in un.tags] for un in result.nodes},
                  "failures": result.failures, "position_failures": result.position_failures,
                  "power_found": list(result.power_found)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", default="4096,512,256")
    parser.add_argument("--model", default="")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    runs = []
    for chunk in (int(c) for c in args.chunks.split(",")):
        out = subprocess.run([sys.executable, "-c", CHILD, str(chunk), args.model, str(args.threads)],
                             capture_output=True, text=True, check=True).stdout
        run = json.loads(out.strip().splitlines()[-1])
        runs.append(run)
        same = all(run[k] == runs[0][k] for k in ("nodes", "failures", "position_failures", "power_found"))
        print(f"chunk {chunk:5d}: peak {run['peak_mb']:,} MB (model loaded: {run['before_mb']:,} MB), "
              f"CPU {run['cpu_s']} s, wall {run['wall_s']} s, {len(run['nodes'])} useful nodes, "
              f"{'same result' if same else 'DIFFERENT RESULT'} as chunk {runs[0]['chunk']}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")
    if not all(all(r[k] == runs[0][k] for k in ("nodes", "failures", "position_failures", "power_found"))
               for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
