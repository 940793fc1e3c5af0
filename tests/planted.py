"""Hand-built test models with a planted mechanism, so a test knows the right answer.

`backup_heads_model`: a 1-digit, 1-layer adder that answers `a+0=+0a` (the sign and the middle digit come
from position embeddings; the last digit is copied from the first operand by three heads H0, H1, H2 at the
position predicting A0, against a constant pull towards 9 that any two heads outvote and one does not).
So ablating H0 or H1 alone fails no question, ablating both fails about nine in ten (all but a = 9), and
a circuit without H2 needs both H0 and H1: they back each other up.
"""

from __future__ import annotations

import numpy as np
import torch

from arithlens.arith.questions import QuestionBatch
from arithlens.arith.vocab import D_VOCAB, PLUS
from arithlens.model.spec import ModelSpec
from arithlens.model.transformer import HookedTransformer

BACKUP_SPEC = ModelSpec(n_digits=1, n_layers=1, n_heads=3, d_model=32, d_head=16, d_mlp=4, op="add")
# Residual dimensions: 0-9 answer digits (read by the unembed), 10 the "+" sign, 12-21 operand digit
# embeddings, 22 "copy here" (the query), 23 "copy from here" (the key), 24-28 the other tokens' unembed rows.
_DIGIT, _SIGN, _EMBED, _QUERY, _KEY, _OTHER = 0, 10, 12, 22, 23, 24


def backup_heads_model() -> HookedTransformer:
    spec = BACKUP_SPEC
    layout = spec.layout
    sign_at = layout.answer_logit_positions.start  # predicts the sign
    middle_at, copy_at = sign_at + 1, sign_at + 2  # predict A1 (always 0 here) and A0 (= a)
    model = HookedTransformer(spec)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ln in (model.blocks[0].ln1, model.blocks[0].ln2, model.ln_final):
            ln.w.fill_(1.0)
        for d in range(10):
            model.embed.W_E[d, _EMBED + d] = 5.0
        model.pos_embed.W_pos[0, _KEY] = 5.0  # the first operand's digit is the one to copy
        model.pos_embed.W_pos[copy_at, _QUERY] = 5.0
        model.pos_embed.W_pos[copy_at, _DIGIT + 9] = 17.0  # one head writes ~11.6 for its digit, two ~23
        model.pos_embed.W_pos[sign_at, _SIGN] = 40.0
        model.pos_embed.W_pos[middle_at, _DIGIT + 0] = 40.0
        attn = model.blocks[0].attn
        for h in range(spec.n_heads):
            attn.W_Q[h, _QUERY, 15] = 3.0
            attn.W_K[h, _KEY, 15] = 3.0
            for d in range(10):
                attn.W_V[h, _EMBED + d, d] = 1.0
                attn.W_O[h, d, _DIGIT + d] = 3.0
        for t in range(D_VOCAB):  # every token reads its own dimension, so no token's logit is a constant 0
            model.unembed.W_U[_DIGIT + t if t < 10 else (_SIGN if t == PLUS else _OTHER + t - 11), t] = 1.0
    return model.eval()


def plus_zero_questions(spec: ModelSpec, count: int, rng: np.random.Generator,
                        exclude: QuestionBatch | None = None) -> QuestionBatch:
    """`count` questions `a+0` with a uniform (the only ten the planted adder answers); `exclude` is ignored:
    ten questions leave nothing to hold out."""
    a = rng.integers(0, 10, size=count)
    return QuestionBatch(spec.n_digits, a, np.full(count, PLUS), np.zeros(count, dtype=np.int64))
