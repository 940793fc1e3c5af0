"""The numbers of docs/transformer-lens.md: the shipped model through the installed TransformerLens and back.

    HF_HUB_OFFLINE=1 python scripts/tl_parity.py [--questions 10000] [--seed 770041]

Prints the TL version, then per dtype (float32, float64) the largest logit, the largest |ours - TL| logit
difference, each one's distance from the float64 logits, and the answer positions whose argmax differs.
"""

from __future__ import annotations

import argparse
from importlib import metadata

import torch

import arithlens as al
from arithlens.model import from_transformer_lens, to_transformer_lens


def main(questions: int, seed: int) -> None:
    print(f"transformer-lens {metadata.version('transformer-lens')}, torch {torch.__version__}")
    batch = al.questions(questions, seed=seed)
    tokens = torch.as_tensor(batch.tokens, dtype=torch.long)
    truth = al.load_model().to(torch.float64)
    answers = list(truth.spec.layout.answer_logit_positions)
    for dtype in (torch.float32, torch.float64):
        ours = al.load_model().to(dtype)
        theirs = to_transformer_lens(ours)
        back = from_transformer_lens(theirs)
        same = all(torch.equal(v, back.state_dict()[k]) for k, v in ours.state_dict().items())
        biggest = diff = ours_err = tl_err = 0.0
        argmax_differs = 0
        with torch.no_grad():
            for rows in torch.split(tokens, 1000):
                exact, mine, tl = truth(rows), ours(rows).double(), theirs(rows).double()
                biggest = max(biggest, float(exact.abs().max()))
                diff = max(diff, float((mine - tl).abs().max()))
                ours_err = max(ours_err, float((mine - exact).abs().max()))
                tl_err = max(tl_err, float((tl - exact).abs().max()))
                argmax_differs += int((mine[:, answers].argmax(-1) != tl[:, answers].argmax(-1)).sum())
        print(f"{str(dtype).removeprefix('torch.')}: {questions:,} questions (seed {seed}), max |logit| {biggest:.1f}; "
              f"max |ours - TL| {diff:.2e}; from float64: ours {ours_err:.2e}, TL {tl_err:.2e}; "
              f"answer argmax differs at {argmax_differs} of {questions * len(answers):,}; "
              f"weights back unchanged: {same}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=770041)
    args = parser.parse_args()
    main(args.questions, args.seed)
