"""Exact-evaluation speed: our batched evaluator vs one forward per question, and its FLOP rate as a share
of plain `torch.mm` on the same matrix shapes, measured in one run.

    PYTHONPATH=src python benchmarks/bench_eval.py [--questions 16384] [--rounds 3] [--batches 64,128,256,1024,4096]
        [--workers 1,2] [--model PATH]

Model: random 3-layer, 4-head, d_model 128, d_head 32, d_mlp 512, 6-digit mixed add/sub (the weights do not
change the fp32 speed; with bf16 they change how many rows the guard re-checks in fp32, so `--model` times a
real checkpoint's bf16 pass too). Every figure is the median of interleaved rounds. Rates are given per
wall-clock second and per CPU-second (process CPU time): on a machine other jobs share, the CPU-second rate
is what the code costs, the wall rate what you saw. Matmul FLOPs per question count q/k/v, the output
projection, both MLP matrices, attention scores and mixing, and the unembedding at the answer positions,
as the evaluator computes them: its last layer runs queries, the output projection and the MLP at the answer
positions only (nothing else there reaches a logit), so those FLOPs are not counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

# As the CLI does (arithlens.cli.main): a short OpenMP spin, so idle torch threads do not burn a busy core.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from arithlens.arith import uniform
from arithlens.model import HookedTransformer, ModelSpec, load_checkpoint
from arithlens.model.evaluate import Bf16Guard, evaluate

NAME = "mix_d6_l3_h4_t10K_s372001"
SIZE = dict(d_model=128, d_head=32, d_mlp=512)
NO_RECHECK = Bf16Guard(rel=0.0, abs=0.0, audit_rows=0)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def matmul_shapes(spec: ModelSpec, batch: int) -> list[tuple[int, int, int, int]]:
    """(m, k, n, times) of every dense matmul of one teacher-forced batch, as the evaluator runs it: the last
    token dropped, and in the last layer q/k/v at every position but the rest at the answer positions only."""
    t, d, hd = spec.n_ctx - 1, spec.d_model, spec.n_heads * spec.d_head
    rows, answer = batch * t, batch * len(spec.layout.answer_logit_positions)
    early, last = spec.n_layers - 1, 1
    out = [(rows, d, 3 * hd, early + last)]
    for m, times in ((rows, early), (answer, last)):
        out += [(m, hd, d, times), (m, d, spec.d_mlp, times), (m, spec.d_mlp, d, times)]
    return out + [(answer, d, spec.d_vocab, 1)]


def flops_per_question(spec: ModelSpec) -> float:
    t, answer = spec.n_ctx - 1, spec.layout.answer_logit_positions
    dense = sum(2 * m * k * n * times for m, k, n, times in matmul_shapes(spec, 1))
    keys = (spec.n_layers - 1) * t * (t + 1) / 2 + sum(p + 1 for p in answer)  # causal (query, key) pairs
    return dense + spec.n_heads * 2 * 2 * spec.d_head * keys  # q.k and pattern.v


def matmul_rate(spec: ModelSpec, batch: int, dtype: torch.dtype, repeat: int = 1) -> float:
    """FLOP per CPU-second of torch.mm on one thread over the model's matmul shapes for `batch` questions."""
    gen = torch.Generator().manual_seed(0)
    mats = [(torch.randn(m, k, generator=gen).to(dtype), torch.randn(k, n, generator=gen).to(dtype), times)
            for m, k, n, times in matmul_shapes(spec, batch)]
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] * times for a, b, times in mats)

    def run() -> None:
        for a, b, times in mats:
            for _ in range(times):
                torch.mm(a, b)

    run()
    # This thread's CPU time: torch.mm on one thread runs here, and idle OpenMP threads left spinning by an
    # earlier multi-threaded call must not count against it.
    cpu = []
    for _ in range(repeat):
        start = time.thread_time()
        run()
        cpu.append(time.thread_time() - start)
    return flops / statistics.median(cpu)


def per_question_baseline(model: HookedTransformer, tokens: torch.Tensor) -> None:
    """One full forward per question, argmax at the answer positions (what a naive loop does), on one
    thread: its fastest setting (more threads only wait on one 22-token sequence)."""
    pos = model.spec.layout.answer_logit_positions
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.inference_mode():
        for row in tokens:
            logits = model(row[None])  # (1, n_ctx, V)
            bool((logits[0, pos.start : pos.stop].argmax(-1) == row[pos.start + 1 :]).all())
    torch.set_num_threads(threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=8192)
    ap.add_argument("--baseline-questions", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", default="64,128,256,1024,4096")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--model", default=None, help="also time bf16 on this checkpoint (its re-check share)")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    spec = ModelSpec.parse(NAME, **SIZE)
    model = HookedTransformer(spec, seed=1).requires_grad_(False)
    q = uniform(spec.n_digits, args.questions, np.random.default_rng(0), op="mix")
    tokens = q.torch_tokens()
    batches = [int(b) for b in args.batches.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    fpq = flops_per_question(spec)
    print(f"torch {torch.__version__}, {cores} cores, load average {os.getloadavg()[0]:.1f}; {NAME} "
          f"d_model 128 d_head 32 d_mlp 512; {fpq / 1e6:.1f} MFLOP per question (matmuls + attention)")

    variants: dict[str, Callable[[], object]] = {
        "per-question": lambda: per_question_baseline(model, tokens[: args.baseline_questions]),
    }
    for w in workers:
        for b in batches:
            variants[f"fp32 batch {b} workers {w}"] = (
                lambda b=b, w=w: evaluate(model, q, precision="fp32", batch_size=b, workers=w))
            # A random model's logits are all near ties, so the guard would re-check every row: time the
            # bf16 pass itself here (what a trained model with clear margins costs) and see --model.
            variants[f"bf16 batch {b} workers {w}"] = (
                lambda b=b, w=w: evaluate(model, q, precision="bf16", batch_size=b, workers=w, guard=NO_RECHECK))
    counts = {k: (args.baseline_questions if k == "per-question" else args.questions) for k in variants}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    # The matmul reference runs inside every round too, so a slow spell of the machine hits both sides.
    mm_rates: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for key, fn in variants.items():
            w, c = timed(fn)
            wall[key].append(counts[key] / w)
            cpu[key].append(counts[key] / c)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            for b in batches:
                mm_rates.setdefault((precision, b), []).append(matmul_rate(spec, b, dtype, repeat=5))
        torch.set_num_threads(threads)
    rate = {k: statistics.median(v) for k, v in wall.items()}
    rate_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    base = rate["per-question"]
    print(f"\n{'variant':<28}{'q/s wall':>10}{'q/cpu-s':>10}{'x per-q':>9}{'1M s':>8}{'GFLOP/cpu-s':>13}")
    for key in variants:
        print(f"{key:<28}{rate[key]:>10,.0f}{rate_cpu[key]:>10,.0f}{rate[key] / base:>9.1f}"
              f"{1e6 / rate[key]:>8.0f}{rate_cpu[key] * fpq / 1e9:>13.1f}")

    # The matmul reference, per core, at the best fp32 and bf16 batch sizes of one worker.
    print("\nFLOP rate as a share of torch.mm on the same shapes (per CPU-second, 1 thread, median of the rounds):")
    for precision in ("fp32", "bf16"):
        best = max((k for k in variants if k.startswith(precision) and k.endswith("workers 1")), key=rate_cpu.get)
        b = int(best.split()[2])
        mm = statistics.median(mm_rates[(precision, b)])
        ours = rate_cpu[best] * fpq
        print(f"  {precision}: {best}: {ours / 1e9:.1f} GFLOP/s of {mm / 1e9:.1f} GFLOP/s torch.mm = "
              f"{100 * ours / mm:.0f}%")

    best = max((k for k in variants if k != "per-question"), key=rate.get)
    print(f"\nfastest here: {best}: {rate[best]:,.0f} q/s wall = {rate[best] / base:.0f}x the per-question loop; "
          f"1M questions in {1e6 / rate[best]:.0f} s; a mixed model's suite (3M uniform + 100K enriched) in "
          f"{3.1e6 / rate[best]:.0f} s")
    best_cpu = max((k for k in variants if k != "per-question"), key=rate_cpu.get)
    print(f"cheapest per CPU-second: {best_cpu}: {rate_cpu[best_cpu]:,.0f} q/cpu-s; on {cores} idle cores "
          f"1M questions would take ~{1e6 / (rate_cpu[best_cpu] * cores):.0f} s")

    if args.model:
        ck = load_checkpoint(args.model)
        op = ck.spec.op if ck.spec.op in ("add", "sub", "mix") else "mix"
        qm = uniform(ck.spec.n_digits, args.questions, np.random.default_rng(0), op=op)
        b = int(best.split()[2])
        for precision in ("fp32", "bf16"):
            res = evaluate(ck.model, qm, precision=precision, batch_size=b)
            w, c = timed(lambda p=precision: evaluate(ck.model, qm, precision=p, batch_size=b))
            extra = f", {res.rechecked / res.questions:.1%} rows re-checked in fp32" if precision == "bf16" else ""
            print(f"{args.model} {precision} batch {b}: {args.questions / w:,.0f} q/s wall, "
                  f"{args.questions / c:,.0f} q/cpu-s, {res.wrong} wrong{extra}")


if __name__ == "__main__":
    main()
