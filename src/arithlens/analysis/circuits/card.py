"""The ablation card: a circuit's exact rate (with Wilson intervals) and logit difference recovered per qtype
under each ablation (mean per position, one mean, resample draws, zero), so a reader sees whether its
faithfulness survives the choice of ablation."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from arithlens.results.circuits import AblationCard, CardRow
from arithlens.analysis.circuits.runner import Ablation, CircuitRunner, card_ablations
from arithlens.analysis.faithfulness import RunScores


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


def ablation_cards(runner: CircuitRunner, circuits: Mapping[str, Collection[str]], *, model: str, unit: str = "node",
                   ablations: Sequence[Ablation] | None = None, seed: int = 0, reference: int = 0
                   ) -> dict[str, AblationCard]:
    """The card of each named circuit (a subset of `runner.units`) on the runner's questions: per ablation one
    run of the empty circuit and every circuit, sharing that ablation's values; the clean model's run (which no
    ablation changes) once, with the first ablation."""
    t0 = time.perf_counter()
    rows: dict[str, list[CardRow]] = {label: [] for label in circuits}
    clean = None
    for ablation in card_ablations() if ablations is None else ablations:
        if clean is None:
            clean, empty, *runs = runner.run([None, (), *circuits.values()], ablation)
        else:
            empty, *runs = runner.run([(), *circuits.values()], ablation)
        for label, scores in zip(circuits, runs):
            rows[label] += card_rows(ablation, runner.qtypes, scores, clean, empty)
    seconds = time.perf_counter() - t0
    return {label: AblationCard(model, label, unit, tuple(sorted(kept)), len(runner.units), seed, reference,
                                tuple(rows[label]), seconds)
            for label, kept in circuits.items()}


def ablation_card(runner: CircuitRunner, kept: Collection[str], *, label: str, **kwargs) -> AblationCard:
    """`ablation_cards` of one circuit."""
    return ablation_cards(runner, {label: kept}, **kwargs)[label]
