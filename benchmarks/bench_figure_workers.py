"""Memory one figure worker of `arithlens analyze` adds: the node-study figures of an analysis folder drawn by a
`JobPool` forked from a process that has loaded torch and the model, as `analyze` forks its workers.

    python benchmarks/bench_figure_workers.py DIR [--workers 2] [--studies 8]

DIR holds `<node>_study.json` files (an `arithlens analyze --out DIR` folder). Each worker's unique memory (USS:
the pages only it holds, what it adds to the process tree's PSS sum) and PSS are polled every 20 ms; the peaks
are printed per worker, with the tree's PSS sum before the workers start and at its peak. `validate.py`'s
FIGURE_WORKER_BYTES is set from this.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import psutil


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--studies", type=int, default=8, help="the first N studies (default 8)")
    args = parser.parse_args()
    files = sorted(args.folder.glob("*_study.json"))[: args.studies]
    if not files:
        raise SystemExit(f"error: no *_study.json in {args.folder}")

    # the parent as `analyze` has it when it forks: torch, the package and a model loaded
    from arithlens.model import load_checkpoint
    from arithlens.model.zoo import resolve_model
    from arithlens.report.figures import JobPool
    from arithlens.report.node_figures import node_figure_jobs

    load_checkpoint(resolve_model(None))
    studies = [json.loads(f.read_text()) for f in files]
    me = psutil.Process()
    tree_pss = lambda: sum(p.memory_full_info().pss for p in [me, *me.children()])  # noqa: E731
    before = tree_pss()
    uss: dict[int, int] = {}
    pss: dict[int, int] = {}
    peak_tree = [before]
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                for child in me.children():
                    info = child.memory_full_info()
                    uss[child.pid] = max(uss.get(child.pid, 0), info.uss)
                    pss[child.pid] = max(pss.get(child.pid, 0), info.pss)
                peak_tree[0] = max(peak_tree[0], tree_pss())
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.02)

    threading.Thread(target=poll, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="bench_figure_workers.") as tmp, JobPool(args.workers) as pool:
        futures = [pool.submit(job) for data in studies for job in node_figure_jobs(data, Path(tmp), ("png",)).values()]
        for future in futures:
            future.result()
        time.sleep(0.1)  # one more poll with the workers alive
        stop.set()
    mb = lambda b: f"{b / 1e6:,.0f} MB"  # noqa: E731
    print(f"{len(futures)} figures of {len(studies)} studies on {args.workers} workers")
    for pid in sorted(uss):
        print(f"  worker {pid}: peak USS {mb(uss[pid])}, peak PSS {mb(pss[pid])}")
    print(f"tree PSS before the workers {mb(before)}, at its peak {mb(peak_tree[0])}: "
          f"{mb((peak_tree[0] - before) / max(len(uss), 1))} per worker")


if __name__ == "__main__":
    main()
