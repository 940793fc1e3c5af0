"""How much model work each stage of `arithlens analyze` does, and the least time it could take on this machine.

    PYTHONPATH=src python benchmarks/bench_work.py [--model NAME_OR_DIR] [--threads 2] [--max-studies N]
        [--no-report] [--json benchmarks/results/analyze_work.json]

Runs the analysis (the API, default options) with every transformer block call counted: its rows x
query positions ("block-positions": one layer at one position for one question). Then measures this machine's
rate on the plainest work there is, full forward passes of 4,096 questions with no hooks, in block-positions per
second, and divides: the ideal seconds of a stage are the time its block work would take at that rate, with no
overhead of any kind (no hooks, caching, statistics or Python). A stage far above its ideal has overhead to win;
a stage near it is compute-bound, and only less work (fewer questions, a smaller set) makes it faster.
Both numbers come from one run, so background load hits them alike.

The edge circuit's edge-masked forward (`analysis.edges.forward`) calls no transformer block: it recomputes every
receiver input with the masked-out senders' differences taken away. Its work is counted as what it computes: the
multiply-adds of its matrix products (torch's FlopCounterMode, replayed after the timed run once per distinct
batch size and mask kind, so the count costs the timed run nothing), in block-positions at the multiply-adds of
one block-position of the plain forward.

Then (unless --no-report) the report is drawn as `arithlens analyze` draws it (maps, study figures, report.html into
a temporary folder), so the total is the command's wall time less loading the model and writing the JSON. Each
stage's CPU seconds (this process and its finished children, e.g. figure workers) are printed beside its wall
time: on a shared machine CPU seconds compare between runs, wall times only within one. The whole table goes to
`--json` (the floor is the ideal of the model work; the goal is 120 s and 1.5x the floor).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GOMP_SPINCOUNT", "10000")  # as the CLI does

import torch  # noqa: E402

from arithlens.analysis.analyze import AnalyzeOptions, analyze  # noqa: E402
from arithlens.analysis.edges import forward as edge_forward_module  # noqa: E402
from arithlens.analysis.memory import freeze_long_lived_objects  # noqa: E402
from arithlens.arith import uniform  # noqa: E402
from arithlens.model.transformer import TransformerBlock  # noqa: E402
from arithlens.model import load_checkpoint  # noqa: E402
from arithlens.model.zoo import resolve_model  # noqa: E402

COUNTS: dict[str, int] = {}
STAGE = ["model"]
GOAL_SECONDS, GOAL_RATIO = 120.0, 1.5  # issue 24: the main job in two minutes, within 1.5x of this floor
# Progress stages folded into one row: the useful sweep reports its positions, nodes and power-stage passes.
USEFUL_PARTS = {"positions", "nodes", "power-pos", "power"}


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have finished (figure workers once their pool closed)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _counting(method):
    def wrapped(self, x, *args, **kwargs):
        COUNTS[STAGE[0]] = COUNTS.get(STAGE[0], 0) + x.shape[0] * x.shape[1]
        return method(self, x, *args, **kwargs)
    return wrapped


# Edge-masked forward calls per (stage, batch rows, mask rows, gradient, ablated rows), with the first call's
# arguments kept to replay it under a FLOP counter after the timed run.
MASKED_CALLS: dict[tuple, list] = {}


def _recording(chunk_forward):
    def wrapped(model, graph, tokens, ablated, mask, offs=None):
        key = (STAGE[0], tokens.shape[0], mask.shape[0], mask.requires_grad, ablated.shape[0])
        if key in MASKED_CALLS:
            MASKED_CALLS[key][0] += 1
        else:
            MASKED_CALLS[key] = [1, (model, graph, tokens, ablated.detach(), mask.detach())]
        return chunk_forward(model, graph, tokens, ablated, mask, offs)
    return wrapped


def _matmul_flops(run) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def masked_block_positions(model, chunk_forward) -> tuple[dict[str, float], float]:
    """({stage: the edge-masked forward's matrix-product FLOPs (and a gradient call's backward pass) over all its
    calls, in block-positions of the plain forward}, the plain forward's FLOPs per block-position)."""
    import numpy as np

    qs = uniform(model.spec.n_digits, 64, np.random.default_rng(0))
    tokens = qs.torch_tokens(str(model.device))
    fast, model.fast_kernels = model.fast_kernels, False  # the counter sees the plain path's products, not the fused
    try:
        with torch.inference_mode():
            per_block_position = _matmul_flops(lambda: model(tokens)) / (len(tokens) * tokens.shape[1] *
                                                                          model.spec.n_layers)
    finally:
        model.fast_kernels = fast
    out: dict[str, float] = {}
    for (stage, _, _, grad, _), (count, (m, graph, toks, ablated, mask)) in MASKED_CALLS.items():
        if grad:  # EAP's calls: the backward pass to the mask counts too
            def run():
                grad_mask = mask.clone().requires_grad_(True)
                torch.autograd.grad(chunk_forward(m, graph, toks, ablated, grad_mask).sum(), grad_mask)
        else:
            def run():
                with torch.no_grad():
                    chunk_forward(m, graph, toks, ablated, mask)
        out[stage] = out.get(stage, 0.0) + count * _matmul_flops(run) / per_block_position
    return out, per_block_position


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
    parser.add_argument("--no-report", action="store_true", help="skip drawing the maps, figures and report")
    parser.add_argument("--edge-card", type=int, default=None, metavar="N",
                        help="questions per qtype of the edge circuit's ablation card (default: analyze's; 0 skips)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here (e.g. "
                        "benchmarks/results/analyze_work.json)")
    parser.add_argument("--also-rate", default=None, metavar="MODEL",
                        help="also this model's plain forward rate, and the same work's ideal time at it (valid for "
                             "a model doing the same work, e.g. bench_reference.py's embedded reference-size copy, "
                             "which has the same useful nodes and studies)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_checkpoint(resolve_model(args.model)).model.eval()
    freeze_long_lived_objects()  # as `arithlens analyze` does after loading
    TransformerBlock.forward = _counting(TransformerBlock.forward)
    TransformerBlock.fast = _counting(TransformerBlock.fast)
    chunk_forward = edge_forward_module._chunk_forward
    edge_forward_module._chunk_forward = _recording(chunk_forward)

    walls: dict[str, float] = {}
    cpus: dict[str, float] = {}
    mark = [time.perf_counter(), cpu_seconds()]
    order: list[str] = []

    def switch(stage: str) -> None:
        now, cpu = time.perf_counter(), cpu_seconds()
        walls[STAGE[0]] = walls.get(STAGE[0], 0.0) + now - mark[0]
        cpus[STAGE[0]] = cpus.get(STAGE[0], 0.0) + cpu - mark[1]
        mark[:] = [now, cpu]
        STAGE[0] = stage
        if stage not in order:
            order.append(stage)

    def progress(stage: str, done: int, total: int, detail: str) -> None:
        stage = "useful" if stage in USEFUL_PARTS else stage  # other stages (edges, circuit, ...) keep their name
        if stage == "edges" and detail.startswith("ablation card"):
            stage = "edge card"  # the edge circuit's ablation card, apart from its discovery
        if stage != STAGE[0]:
            switch(stage)

    STAGE[0] = "useful"
    order.append("useful")
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    card = {} if args.edge_card is None else {"edge_card": args.edge_card}
    analysis = analyze(model, AnalyzeOptions(max_studies=args.max_studies, **card), progress=progress)
    if not args.no_report:
        from arithlens.report.html import write_report

        switch("report")
        with tempfile.TemporaryDirectory(prefix="bench_work.") as out:
            write_report(analysis, out)
    switch("rate")
    total, total_cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    rate = forward_rate(model)
    COUNTS.pop("rate", None)
    edge_forward_module._chunk_forward = chunk_forward
    masked, flops_per_block_position = masked_block_positions(model, chunk_forward)
    for stage, work in masked.items():
        COUNTS[stage] = COUNTS.get(stage, 0) + round(work)

    load = os.getloadavg()
    print(f"{model.spec.name}, {torch.get_num_threads()} torch threads, load average "
          f"{', '.join(f'{x:.1f}' for x in load)}; {len(analysis.studies)} studies")
    print(f"plain forward rate: {rate / 1e6:.2f} M block-positions/s; the edge-masked forward counted at "
          f"{flops_per_block_position:,.0f} matrix-product FLOPs per block-position")
    print(f"{'stage':<14}{'block-pos (M)':>14}{'floor (s)':>11}{'wall (s)':>10}{'CPU (s)':>9}{'wall/floor':>12}"
          f"{'  of it masked (M)':>18}")
    rows = []
    for stage in order:
        if stage == "rate":
            continue
        work = COUNTS.get(stage, 0)
        ideal = work / rate
        wall = analysis.timings.get(stage, walls.get(stage, 0.0)) if stage != "report" else walls.get(stage, 0.0)
        ratio = f"{wall / ideal:.1f}" if ideal else "-"
        print(f"{stage:<14}{work / 1e6:>14.1f}{ideal:>11.1f}{wall:>10.1f}{cpus.get(stage, 0.0):>9.1f}{ratio:>12}"
              f"{masked.get(stage, 0.0) / 1e6:>18.1f}")
        rows.append({"stage": stage, "block_positions": work, "ideal_s": round(ideal, 2), "wall_s": round(wall, 2),
                     "cpu_s": round(cpus.get(stage, 0.0), 2),
                     "masked_forward_block_positions": round(masked.get(stage, 0.0))})
    work = sum(COUNTS.get(s, 0) for s in order if s not in ("rate", "report"))
    floor = work / rate
    print(f"{'analyze':<14}{work / 1e6:>14.1f}{floor:>11.1f}{total:>10.1f}{total_cpu:>9.1f}{total / floor:>12.1f}")
    print(f"goal: {GOAL_SECONDS:.0f} s and {GOAL_RATIO}x the floor ({GOAL_RATIO * floor:.0f} s): "
          f"{'met' if total <= min(GOAL_SECONDS, GOAL_RATIO * floor) else 'not met'} at {total:.0f} s")
    if args.json:
        record = {"model": model.spec.name, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                  "load_average": [round(x, 2) for x in load], "studies": len(analysis.studies),
                  "max_studies": args.max_studies, "report": not args.no_report,
                  "rate_block_positions_per_s": round(rate),
                  "flops_per_block_position": round(flops_per_block_position), "stages": rows, "floor_s": round(floor, 2),
                  "wall_s": round(total, 2), "cpu_s": round(total_cpu, 2), "wall_over_floor": round(total / floor, 2),
                  "goal_s": GOAL_SECONDS, "goal_ratio": GOAL_RATIO}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    if args.also_rate:
        other = load_checkpoint(resolve_model(args.also_rate)).model.eval()
        other_rate = forward_rate(other)
        print(f"{other.spec.name} (d_model {other.spec.d_model}, d_mlp {other.spec.d_mlp}): plain forward rate "
              f"{other_rate / 1e6:.3f} M block-positions/s, {rate / other_rate:.1f}x slower; the same "
              f"{work / 1e6:.1f} M block-positions would take at least {work / other_rate:.0f} s there")


if __name__ == "__main__":
    main()
