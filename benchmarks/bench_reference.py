"""`arithlens analyze` on a model of the predecessor's reference size (d_model 510, d_head 170, d_mlp 2040,
3 layers x 4 heads, 6 digits): what a user of its checkpoints should expect, stage by stage.

    python benchmarks/bench_reference.py [--threads N] [--keep DIR] [-- more analyze options]

The weights are the shipped default model's function embedded exactly into the reference shape, so the
analysis has real work to do (a random model has no useful node): d_head and d_mlp are padded with zeros (W_Q
scaled by sqrt(170/32) so the attention scores keep their 1/sqrt(d_head)); the 128-wide residual stream is
mapped into 510 dimensions by c*E*P, where P removes the mean (LayerNorm's centring), E has orthonormal columns
orthogonal to the all-ones vector (seeded) and c = sqrt(510/128) keeps every LayerNorm's variance, so each
LayerNorm sees the same normalised vector; its w and b are folded into the weights that read it. The file is
a TransformerLens-layout `.pth` (`mix_d6_l3_h4_t10K_s372001.pth`, sizes read from the tensors). Before timing,
the answers of both models are compared on 2,000 questions (argmax equal, largest logit difference printed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from arithlens.arith import uniform
from arithlens.model import load_checkpoint
from arithlens.model.zoo import resolve_model

D_MODEL, D_HEAD, D_MLP = 510, 170, 2040
SEED = 510


def embed_state(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """The shipped model's state dict (d_model 128) as an exactly equivalent reference-size one (float64 maths)."""
    s = {k: v.double() for k, v in state.items()}
    d, d_head = s["embed.W_E"].shape[1], s["blocks.0.attn.W_Q"].shape[2]
    # E: orthonormal columns spanning a d-dim subspace orthogonal to ones(510).
    rng = np.random.default_rng(SEED)
    basis = np.column_stack([np.ones(D_MODEL), rng.standard_normal((D_MODEL, d))])
    q, _ = np.linalg.qr(basis)
    E = torch.from_numpy(q[:, 1:])  # (510, d)
    P = torch.eye(d, dtype=torch.float64) - torch.ones(d, d, dtype=torch.float64) / d
    c = math.sqrt(D_MODEL / d)
    write = lambda x: c * (x @ P) @ E.T  # rows in the 128-dim residual -> rows in the 510-dim one  # noqa: E731

    def read(w: torch.Tensor, ln: str) -> torch.Tensor:  # (..., d, k) weights reading LayerNorm `ln`'s output
        return (E @ (s[f"{ln}.w"][:, None] * w)) / c

    out = {"embed.W_E": write(s["embed.W_E"]), "pos_embed.W_pos": write(s["pos_embed.W_pos"])}
    scale = math.sqrt(D_HEAD / d_head)  # q.k / sqrt(170) == (old q.k) / sqrt(32)
    for i in range(n_layers):
        p = f"blocks.{i}."
        for name in ("ln1", "ln2"):
            out[f"{p}{name}.w"], out[f"{p}{name}.b"] = torch.ones(D_MODEL), torch.zeros(D_MODEL)
        for m in "QKV":
            w, b = s[f"{p}attn.W_{m}"], s[f"{p}attn.b_{m}"]  # (H, d, dh), (H, dh)
            b = b + torch.einsum("d,hde->he", s[f"{p}ln1.b"], w)
            w = torch.stack([read(w[h], f"{p}ln1") for h in range(w.shape[0])])
            if m == "Q":
                w, b = w * scale, b * scale
            out[f"{p}attn.W_{m}"] = torch.nn.functional.pad(w, (0, D_HEAD - d_head))
            out[f"{p}attn.b_{m}"] = torch.nn.functional.pad(b, (0, D_HEAD - d_head))
        w_o = torch.stack([write(w) for w in s[f"{p}attn.W_O"]])  # (H, dh, 510)
        out[f"{p}attn.W_O"] = torch.nn.functional.pad(w_o, (0, 0, 0, D_HEAD - d_head))
        out[f"{p}attn.b_O"] = write(s[f"{p}attn.b_O"][None])[0]
        w_in = s[f"{p}mlp.W_in"]
        out[f"{p}mlp.W_in"] = torch.nn.functional.pad(read(w_in, f"{p}ln2"), (0, D_MLP - w_in.shape[1]))
        out[f"{p}mlp.b_in"] = torch.nn.functional.pad(s[f"{p}mlp.b_in"] + s[f"{p}ln2.b"] @ w_in,
                                                      (0, D_MLP - w_in.shape[1]))
        out[f"{p}mlp.W_out"] = torch.nn.functional.pad(write(s[f"{p}mlp.W_out"]), (0, 0, 0, D_MLP - w_in.shape[1]))
        out[f"{p}mlp.b_out"] = write(s[f"{p}mlp.b_out"][None])[0]
    out["ln_final.w"], out["ln_final.b"] = torch.ones(D_MODEL), torch.zeros(D_MODEL)
    out["unembed.W_U"] = read(s["unembed.W_U"], "ln_final")
    out["unembed.b_U"] = s["unembed.b_U"] + s["ln_final.b"] @ s["unembed.W_U"]
    return {k: v.float().contiguous() for k, v in out.items()}


def check(small, big, n: int = 2000) -> tuple[float, float]:
    """(share of answer tokens whose argmax agrees, largest |logit difference|) on `n` uniform questions."""
    questions = uniform(small.spec.n_digits, n, np.random.default_rng(0))
    positions = small.spec.layout.answer_logit_positions
    with torch.inference_mode():
        tokens = questions.torch_tokens("cpu")
        a, b = small(tokens, logit_positions=positions), big(tokens, logit_positions=positions)
    return float((a.argmax(-1) == b.argmax(-1)).float().mean()), float((a - b).abs().max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep the .pth and the analysis here")
    parser.add_argument("extra", nargs="*", help="more `arithlens analyze` options (after --)")
    args = parser.parse_args()
    source = resolve_model(None)
    small = load_checkpoint(source).model.eval()
    with tempfile.TemporaryDirectory(prefix="bench_reference.") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        pth = work / f"{small.spec.name}.pth"
        torch.save(embed_state(small.state_dict(), small.spec.n_layers), pth)
        big = load_checkpoint(pth).model.eval()
        s = big.spec
        agree, diff = check(small, big)
        print(f"reference-size model {pth.name}: d_model {s.d_model}, d_head {s.d_head}, d_mlp {s.d_mlp}, "
              f"{s.n_layers} layers x {s.n_heads} heads; answer argmax agrees with {source.name} on "
              f"{100 * agree:.2f}% of tokens (2,000 questions), largest logit difference {diff:.2e}")
        command = [sys.executable, "-m", "arithlens.cli", "analyze", "--model", str(pth), "--out",
                   str(work / "analysis"), "--quiet", "--json",
                   *(["--threads", str(args.threads)] if args.threads else []), *args.extra]
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        load1 = os.getloadavg()
        summary = json.loads((work / "analysis" / "analysis.json").read_text())
        print(f"cores {os.cpu_count()}, torch threads {summary['threads']}; command: arithlens analyze --model "
              f"{pth.name} --out DIR {' '.join(command[9:])}".rstrip())
        print("| stage | seconds |\n|---|---:|")
        for stage, seconds in summary["timings"].items():
            print(f"| {stage} | {seconds:.1f} |")
        print(f"wall (process start included) {wall:.1f} s; load average (1, 5, 15 min) before "
              f"{', '.join(f'{x:.2f}' for x in load0)}, after {', '.join(f'{x:.2f}' for x in load1)}; "
              f"{len(summary['studies'])} node studies, {summary['heads']} useful heads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
