"""How much EAP's edge ranking depends on the questions it is scored on (docs/edges.md, "EAP's ranking depends on
its sample"): the default model's EAP scores on discovery's own scoring questions (A) and on another fresh sample of
the same size (B), their rank agreement, and the exact rate of each ranking's top 20 / 31 / 50% of edges, every other
edge mean-ablated, on 300 other fresh questions per qtype.

    python scripts/eap_stability.py [--threads 2]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import spearmanr

import arithlens as al
from arithlens.analysis.edges.discovery import STREAM_EDGE_REFERENCE, STREAM_EDGE_SEARCH, exact_rates
from arithlens.analysis.edges.forward import ablation_values
from arithlens.analysis.edges.graph import EdgeGraph
from arithlens.analysis.edges.scores import eap_scores
from arithlens.analysis.faithfulness import (
    FAITHFULNESS_SEED, REFERENCE_QUESTIONS, STREAM_SEARCH, fresh_questions, reference_questions, rng_for,
    supported_qtypes,
)

OTHER_SEED, CHECK_SEED = 12345, 777  # sample B and the checking questions: streams no discovery step draws


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = al.load_model()
    spec = model.spec
    graph = EdgeGraph.build(spec, min_position=spec.layout.answer_logit_positions.start)
    ref = reference_questions(spec, REFERENCE_QUESTIONS, rng_for(FAITHFULNESS_SEED, STREAM_EDGE_REFERENCE))
    mean = ablation_values(model, ref.torch_tokens("cpu"), "mean")
    # A: discovery's scoring questions (the first 32 per qtype of its search set); B: 32 other fresh ones per qtype
    search = fresh_questions(spec, 100, rng_for(FAITHFULNESS_SEED, STREAM_EDGE_SEARCH))
    pick = np.concatenate([np.flatnonzero(search.qtype == qt)[:32] for qt in supported_qtypes(spec)])
    samples = {"A (discovery's)": search.torch_tokens("cpu")[torch.as_tensor(pick)],
               "B (other)": fresh_questions(spec, 32, rng_for(OTHER_SEED, STREAM_SEARCH)).torch_tokens("cpu")}
    with torch.enable_grad():
        scores = {name: eap_scores(model, graph, tokens, mean) for name, tokens in samples.items()}
    a, b = scores.values()
    print(f"Spearman of |EAP| between the samples: {spearmanr(np.abs(a), np.abs(b)).correlation:.3f} "
          f"({graph.n_edges:,} edges)")
    check = fresh_questions(spec, 300, rng_for(CHECK_SEED, STREAM_SEARCH))
    print("| sample | top share | edges | " + " | ".join(qt.name for qt in supported_qtypes(spec)) + " |")
    for name, s in scores.items():
        order = np.argsort(-np.abs(s), kind="stable")
        for share in (0.2, 0.31, 0.5):
            kept = np.zeros(graph.n_edges, dtype=bool)
            kept[order[: int(share * graph.n_edges)]] = True
            rates = exact_rates(model, graph, check, mean, torch.as_tensor(kept, dtype=torch.float32))
            print(f"| {name} | {share:.0%} | {int(kept.sum()):,} | "
                  + " | ".join(f"{100 * r:.1f}%" for r in rates.values()) + " |")


if __name__ == "__main__":
    main()
