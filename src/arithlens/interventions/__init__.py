"""The intervention layer: interventions as values (`values`), activation caches of clean runs (`cache`) and
the one executor that runs them (`engine`), with the partial rerun written once (`Engine.rerun`)."""

from arithlens.interventions.cache import Means, clean_caches, compute_means, record, record_with_logits
from arithlens.interventions.engine import Engine, Outcome, run_with_interventions, score
from arithlens.interventions.values import (
    KINDS, LOSS_THRESHOLD, Ablation, Intervention, MaskedAblation, mean_ablate, patch_from, resample_ablate,
    zero_ablate,
)

__all__ = [
    "KINDS", "LOSS_THRESHOLD", "Ablation", "Engine", "Intervention", "MaskedAblation", "Means", "Outcome",
    "clean_caches", "compute_means", "mean_ablate", "patch_from", "record", "record_with_logits", "resample_ablate",
    "run_with_interventions", "score", "zero_ablate",
]
