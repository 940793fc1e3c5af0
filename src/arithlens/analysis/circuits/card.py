"""The ablation card: a circuit's exact rate (with Wilson intervals) and logit difference recovered per qtype
under each ablation (mean per position, one mean, resample draws, zero), so a reader sees whether its
faithfulness survives the choice of ablation."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

import numpy as np

from arithlens.analysis.circuits.results import AblationCard, CardRow
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


def ablation_card(runner: CircuitRunner, kept: Collection[str], *, model: str, label: str, unit: str = "node",
                  ablations: Sequence[Ablation] | None = None, seed: int = 0, reference: int = 0) -> AblationCard:
    """The card of the circuit `kept` (a subset of `runner.units`) on the runner's questions: per ablation one
    run of the clean model, the empty circuit and the circuit, sharing that ablation's values."""
    t0 = time.perf_counter()
    rows: list[CardRow] = []
    for ablation in card_ablations() if ablations is None else ablations:
        clean, empty, circuit = runner.run([None, (), kept], ablation)
        rows += card_rows(ablation, runner.qtypes, circuit, clean, empty)
    return AblationCard(model, label, unit, tuple(sorted(kept)), len(runner.units), seed, reference, tuple(rows),
                        time.perf_counter() - t0)
