"""Training time and peak memory of the default dictionaries on the shipped model (2 CPU threads by default).

    PYTHONPATH=src python benchmarks/bench_sae.py [--sites P18L0H3,P18L0MLP] [--threads 2] [--arch topk]

Each site runs in a fresh child process (so its peak resident memory is its own): the activations of the default
20,000 training questions, then the default training (3,000 steps of 256 rows). Printed per site: seconds for the
activations and for the training, ms per step, and the process's peak resident memory before and after training
(ru_maxrss; the model, torch and the activations come before). The machine's load average is printed beside them:
on a shared machine the seconds mean most next to each other, as ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace


def one(site: str, threads: int, arch: str) -> dict:
    import torch

    import arithlens as al
    from arithlens.analysis.features.activations import Site, site_acts, training_questions
    from arithlens.analysis.features.dictionary import train_dictionary
    from arithlens.analysis.features.study import SAEOptions

    torch.set_num_threads(threads)
    model = al.load_model()
    options = SAEOptions(arch=arch)
    start = time.perf_counter()
    where = Site.parse(site, model.spec)
    x = site_acts(model, where, training_questions(model.spec, options.questions, options.seed))
    acts_s = time.perf_counter() - start
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    topt = options.train_options(x.shape[1])
    train_dictionary(x, replace(topt, steps=1))  # the first Adam step imports torch's compiler stack: not timed
    start = time.perf_counter()
    train_dictionary(x, topt)
    train_s = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"site": site, "arch": arch, "d_in": int(x.shape[1]), "size": topt.size, "k": topt.k, "steps": topt.steps,
            "questions": options.questions, "activations_s": acts_s, "train_s": train_s,
            "ms_per_step": 1000 * train_s / topt.steps, "peak_rss_mb_before_training": before,
            "peak_rss_mb": after, "threads": threads, "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default="P18L0H3,P18L0MLP")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arch", default="topk")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.threads, args.arch)))
        return
    rows = []
    for site in args.sites.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", site, "--threads", str(args.threads), "--arch",
                              args.arch], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'site':10s} {'d_in':>5s} {'size':>5s} {'k':>3s} {'acts s':>7s} {'train s':>8s} {'ms/step':>8s} "
          f"{'peak MB':>8s} {'(before)':>9s}  load")
    for r in rows:
        print(f"{r['site']:10s} {r['d_in']:5d} {r['size']:5d} {r['k']:3d} {r['activations_s']:7.1f} "
              f"{r['train_s']:8.1f} {r['ms_per_step']:8.2f} {r['peak_rss_mb']:8.0f} "
              f"{r['peak_rss_mb_before_training']:9.0f}  {r['load_average'][0]:.1f}")
    if len(rows) > 1:
        print(f"training time ratio {rows[1]['site']} / {rows[0]['site']}: {rows[1]['train_s'] / rows[0]['train_s']:.1f}x")


if __name__ == "__main__":
    main()
