"""A hand-built 2-layer model with a known edge circuit, so a test knows which edges exact patching must find.

It answers `a+0=+0a` (a 1-digit adder on a+0 questions). At the position predicting A0 (P5) three paths write
the digit a against a constant pull of 17 towards 9: heads L0H0 and L0H1 each copy a from P0 (12 each: a
redundant pair, either one is enough beside the third path), and head L0H2 copies a into private dimensions that
only the layer-1 MLP reads (a path that matters only through one receiver: L0H2 sends nothing the logits read),
the MLP then writing 12 for a. Two residual dimensions hold +-1000 at every position, so every layer norm is
linear to within ~1e-4 and an edge the weights do not read has (almost) no effect; every other signal sums to
zero over the dimensions, so no centring leaks it either. Under mean ablation only edges from senders that vary
with a can matter: the seven of `PLANTED_EDGES`.
"""

from __future__ import annotations

import math

import torch

from arithlens.arith.vocab import D_VOCAB, PLUS
from arithlens.model.spec import ModelSpec
from arithlens.model.transformer import HookedTransformer

EDGE_SPEC = ModelSpec(n_digits=1, n_layers=2, n_heads=3, d_model=64, d_head=16, d_mlp=10, op="add")
COPY_AT = 5  # the position predicting A0
PLANTED_EDGES = (
    "P0EMB -> P5L0H0.v@0", "P0EMB -> P5L0H1.v@0", "P0EMB -> P5L0H2.v@0",
    "P5L0H0 -> P5LOGITS", "P5L0H1 -> P5LOGITS",
    "P5L0H2 -> P5L1MLP", "P5L1MLP -> P5LOGITS",
)
# Residual dimensions: 0-9 answer digits (read by the unembed), 10 the sign, 11-20 / 21-30 a digit's embedding
# (+5 / -5), 31-40 / 41-50 L0H2's private copy (+g / -g), 51 query, 52 key (P0), 53 default key (P1),
# 54-57 other tokens' unembed rows, 60 the balance of the constant signals, 62 / 63 the +-1000 pair.
_DIGIT, _SIGN, _EMB, _EMB_NEG, _PRIV, _PRIV_NEG, _QUERY, _KEY, _KEY_DEFAULT = 0, 10, 11, 21, 31, 41, 51, 52, 53
_OTHER, _BALANCE, _BIG = 54, 60, 62
_HUGE = 1000.0


def _put(vec: torch.Tensor, entries: dict[int, float]) -> None:
    """Write `entries` and their negated sum at the balance dimension, so the vector sums to zero."""
    for dim, value in entries.items():
        vec[dim] += value
    vec[_BALANCE] -= sum(entries.values())


def edge_circuit_model() -> HookedTransformer:
    spec = EDGE_SPEC
    model = HookedTransformer(spec)
    scale = math.sqrt(2 * _HUGE**2 / spec.d_model)  # the layer norms' divisor, which w undoes
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ln in (model.blocks[0].ln1, model.blocks[0].ln2, model.blocks[1].ln1, model.blocks[1].ln2, model.ln_final):
            ln.w.fill_(scale)
        for d in range(10):
            model.embed.W_E[d, _EMB + d] = 5.0
            model.embed.W_E[d, _EMB_NEG + d] = -5.0
        W_pos = model.pos_embed.W_pos
        W_pos[:, _BIG] = _HUGE
        W_pos[:, _BIG + 1] = -_HUGE
        sign_at = spec.layout.answer_logit_positions.start
        _put(W_pos[0], {_KEY: 5.0})
        _put(W_pos[1], {_KEY_DEFAULT: 5.0})  # the "+": every query attends here unless told otherwise
        _put(W_pos[sign_at], {_SIGN: 40.0})
        _put(W_pos[sign_at + 1], {_DIGIT + 0: 40.0})
        _put(W_pos[COPY_AT], {_QUERY: 5.0, _DIGIT + 9: 17.0})
        attn = model.blocks[0].attn
        for h in range(3):
            attn.b_Q[h, 15] = 3.0
            attn.W_K[h, _KEY_DEFAULT, 15] = 3.0
            attn.W_Q[h, _QUERY, 14] = 3.0
            attn.W_K[h, _KEY, 14] = 3.0
            for d in range(10):
                attn.W_V[h, _EMB + d, d] = 0.1
                attn.W_V[h, _EMB_NEG + d, d] = -0.1  # v = digit one-hot
        for h in (0, 1):
            for d in range(10):
                attn.W_O[h, d, _DIGIT + d] = 12.0
                attn.W_O[h, d, _BALANCE] = -12.0
        for d in range(10):
            attn.W_O[2, d, _PRIV + d] = 4.0
            attn.W_O[2, d, _PRIV_NEG + d] = -4.0
        mlp = model.blocks[1].mlp
        for d in range(10):  # neuron d fires (2) when the private copy says d, and writes 12 for d
            mlp.W_in[_PRIV + d, d] = 1.0
            mlp.b_in[d] = -2.0
            mlp.W_out[d, _DIGIT + d] = 6.0
            mlp.W_out[d, _BALANCE] = -6.0
        for t in range(D_VOCAB):  # every token reads its own dimension
            model.unembed.W_U[_DIGIT + t if t < 10 else (_SIGN if t == PLUS else _OTHER + (t - 11)), t] = 1.0
    return model.eval()
