"""Milliseconds per training step (forward + backward + AdamW, batch 64, n_digits 6): ours vs TransformerLens.

    PYTHONPATH=src python benchmarks/bench_forward.py [--rounds 5] [--steps 4] [--sizes small,reference] [--threads N]

Variants, timed in interleaved rounds in one process (median of the rounds):
  ours      full logits, loss on the answer positions (what a TL training loop does)
  ours-ans  logits only at the answer positions (`logit_positions`)
  tl        TransformerLens HookedTransformer with the same weights (skipped if not importable)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import statistics
import time

import torch
import torch.nn.functional as F

from arithlens.model import HookedTransformer, ModelSpec

SIZES = {
    "small": dict(d_model=128, d_head=32, d_mlp=512),
    "reference": dict(d_model=510, d_head=170, d_mlp=2040),
}
NAME = "add_d6_l3_h4_t15K_s372001"
BATCH = 64


def make_step(model: torch.nn.Module, tokens: torch.Tensor, answer: range, *, only_answer: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=8e-5, weight_decay=0.1)
    targets = tokens[:, answer.start + 1 : answer.stop + 1]  # (B, n_answer)

    def step() -> None:
        # (B, n_answer, V) either way
        logits = model(tokens, logit_positions=answer) if only_answer else model(tokens)[:, answer.start : answer.stop]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="steps per round")
    ap.add_argument("--sizes", default="small,reference")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        import transformer_lens  # noqa: F401

        from arithlens.model.tl_adapter import to_transformer_lens

        tl_version = importlib.metadata.version("transformer-lens")
    except ImportError:
        to_transformer_lens, tl_version = None, None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, transformer-lens {tl_version or 'absent'}")

    for size in args.sizes.split(","):
        spec = ModelSpec.parse(NAME, **SIZES[size])
        tokens = torch.randint(0, spec.d_vocab, (BATCH, spec.n_ctx), generator=torch.Generator().manual_seed(0))
        answer = spec.layout.answer_logit_positions
        ours = HookedTransformer(spec)
        steps = {
            "ours": make_step(ours, tokens, answer, only_answer=False),
            "ours-ans": make_step(HookedTransformer(spec), tokens, answer, only_answer=True),
        }
        if to_transformer_lens is not None:
            steps["tl"] = make_step(to_transformer_lens(HookedTransformer(spec)), tokens, answer, only_answer=False)
        for step in steps.values():  # warm-up
            step()
        times: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(args.rounds):
            for key, step in steps.items():
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step()
                times[key].append((time.perf_counter() - t0) * 1000 / args.steps)
        ms = {k: statistics.median(v) for k, v in times.items()}
        n_params = sum(p.numel() for p in ours.parameters())
        print(
            f"\n{size}: d_model {spec.d_model} d_head {spec.d_head} l{spec.n_layers} h{spec.n_heads} "
            f"d_mlp {spec.d_mlp}, {n_params / 1e6:.2f}M params, batch {BATCH}"
        )
        for key, value in ms.items():
            ratio = f"  ({ms['tl'] / value:.2f}x TL's speed)" if "tl" in ms and key != "tl" else ""
            print(f"  {key:9s} {value:8.1f} ms/step{ratio}")


if __name__ == "__main__":
    main()
