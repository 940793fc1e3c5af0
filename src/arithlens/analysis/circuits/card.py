"""The ablation card: a circuit's exact rate (with Wilson intervals) and logit difference recovered per qtype
under each ablation (mean per position, one mean, resample draws, zero), so a reader sees whether its
faithfulness survives the choice of ablation; computable in question slices that are run apart and joined."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from arithlens.analysis.circuits import CARD_SEED, STREAM_CARD
from arithlens.results.circuits import AblationCard, CardRow
from arithlens.analysis.circuits.runner import Ablation, CircuitRunner, card_ablations
from arithlens.analysis.faithfulness import RunScores
from arithlens.errors import ArithLensError

CLEAN, EMPTY = "(clean)", "(empty)"  # keys of the clean model's and the empty circuit's scores in `card_runs`


def card_rows(ablation: Ablation, qtypes: Sequence[tuple[str, np.ndarray]], circuit: RunScores, clean: RunScores,
              empty: RunScores) -> list[CardRow]:
    """One `CardRow` per qtype from per-question scores of the circuit, the clean model and the empty circuit."""
    rows = []
    for name, mask in qtypes:
        n = int(mask.sum())

        def right(s: RunScores) -> int:
            return int((~s.wrong[mask]).all(1).sum())

        def mean_diff(s: RunScores) -> float:
            return float(s.logit_diff[mask].mean()) if n else float("nan")

        rows.append(CardRow(ablation.label, name, n, right(circuit), right(clean), right(empty),
                            mean_diff(circuit), mean_diff(clean), mean_diff(empty)))
    return rows


def card_runs(runner: CircuitRunner, circuits: Mapping[str, Collection[str]], ablation: Ablation, *,
              clean: bool = False) -> dict[str, RunScores]:
    """Per-question scores under one ablation of the empty circuit (`EMPTY`), each named circuit and (`clean`) the
    clean model (`CLEAN`), all in one `runner.run` so they share the ablation's values and resample rows."""
    keys = [CLEAN] * clean + [EMPTY, *circuits]
    runs = runner.run([None] * clean + [(), *circuits.values()], ablation)
    return dict(zip(keys, runs))


def joined_runs(parts: Sequence[Mapping[str, RunScores]]) -> dict[str, RunScores]:
    """The runs of question slices, in slice order, as the runs of their concatenated questions."""
    return {key: RunScores.concat([p[key] for p in parts]) for key in parts[0]}


def cards_from_runs(runs: Mapping[str, Mapping[str, RunScores]], qtypes: Sequence[tuple[str, np.ndarray]],
                    circuits: Mapping[str, Collection[str]], *, model: str, unit: str, n_all: int, seed: int = 0,
                    reference: int = 0, seconds: float = 0.0) -> dict[str, AblationCard]:
    """The card of each named circuit from `card_runs` per ablation label (in column order); the clean model's
    scores come from whichever ablation's runs hold them (no ablation changes the clean model)."""
    clean = next((r[CLEAN] for r in runs.values() if CLEAN in r), None)
    if clean is None:
        raise ArithLensError("an ablation card needs the clean model's run under one of its ablations")
    rows: dict[str, list[CardRow]] = {label: [] for label in circuits}
    for label, by_key in runs.items():
        for name in circuits:
            rows[name] += card_rows(Ablation.parse(label), qtypes, by_key[name], clean, by_key[EMPTY])
    return {name: AblationCard(model, name, unit, tuple(sorted(kept)), n_all, seed, reference, tuple(rows[name]),
                               seconds)
            for name, kept in circuits.items()}


def qtype_slices(qtypes: Sequence[tuple[str, np.ndarray]], per_qtype: int) -> list[np.ndarray]:
    """Row indices of consecutive slices holding `per_qtype` questions of each qtype (the last may hold fewer), in
    row order: slice k holds each qtype's rows k*per_qtype .. (k+1)*per_qtype - 1, so the first k slices are
    always a balanced prefix of the question set."""
    if per_qtype < 1:
        raise ArithLensError(f"a slice needs at least one question per qtype, not {per_qtype}")
    rows = [np.flatnonzero(mask) for _, mask in qtypes]
    count = max((len(r) for r in rows), default=0)
    return [np.sort(np.concatenate([r[start : start + per_qtype] for r in rows]))
            for start in range(0, count, per_qtype)]


def ablation_cards(runner: CircuitRunner, circuits: Mapping[str, Collection[str]], *, model: str, unit: str = "node",
                   ablations: Sequence[Ablation] | None = None, seed: int = 0, reference: int = 0
                   ) -> dict[str, AblationCard]:
    """The card of each named circuit (a subset of `runner.units`) on the runner's questions: per ablation one
    run of the empty circuit and every circuit, sharing that ablation's values; the clean model's run (which no
    ablation changes) once, with the first ablation."""
    t0 = time.perf_counter()
    chosen = card_ablations() if ablations is None else ablations
    runs = {a.label: card_runs(runner, circuits, a, clean=k == 0) for k, a in enumerate(chosen)}
    return cards_from_runs(runs, runner.qtypes, circuits, model=model, unit=unit, n_all=len(runner.units), seed=seed,
                           reference=reference, seconds=time.perf_counter() - t0)


def card_questions(spec, questions: int, seed: int = CARD_SEED):
    """(the card's `questions` fresh questions per qtype, its mean reference set) under `seed`: what every card
    of nodes or edges is scored on."""
    from arithlens.analysis.faithfulness import (
        REFERENCE_QUESTIONS, STREAM_REFERENCE, fresh_questions, reference_questions, rng_for,
    )

    return (fresh_questions(spec, questions, rng_for(seed, STREAM_CARD)),
            reference_questions(spec, REFERENCE_QUESTIONS, rng_for(seed, STREAM_REFERENCE)))


def edge_cards(model, circuits: Mapping[str, object], *, questions: int, ablations: Sequence[Ablation],
               seed: int = CARD_SEED) -> dict[str, AblationCard]:
    """The card of each named `EdgeCircuit` (all on one graph) on `questions` fresh questions per qtype (the
    card's stream under `seed`) with the project's mean reference set, under `ablations`."""
    from arithlens.analysis.circuits.edge_runner import EdgeRunner

    graphs = {(c.graph.min_position, c.graph.n_edges) for c in circuits.values()}
    if len(graphs) != 1:
        raise ArithLensError("the edge circuits of one card must share a graph (receivers from one position)")
    graph = next(iter(circuits.values())).graph
    spec = model.spec
    if (graph.n_layers, graph.n_heads, graph.n_ctx) != (spec.n_layers, spec.n_heads, spec.n_ctx):
        raise ArithLensError(f"the edge circuit's graph ({graph.n_layers} layers, {graph.n_heads} heads, "
                             f"{graph.n_ctx} positions) is not {spec.name}'s")
    batch, reference = card_questions(spec, questions, seed)
    runner = EdgeRunner(model, batch, reference, graph=graph, seed=seed)
    return ablation_cards(runner, {k: c.edges for k, c in circuits.items()}, model=spec.name, unit="edge",
                          ablations=ablations, seed=seed, reference=len(reference))


def ablation_card(runner: CircuitRunner, kept: Collection[str], *, label: str, **kwargs) -> AblationCard:
    """`ablation_cards` of one circuit."""
    return ablation_cards(runner, {label: kept}, **kwargs)[label]
