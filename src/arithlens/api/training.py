"""Training and exact evaluation through the front door: a recipe checked and trained, a model scored on the
acceptance suite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arithlens.model.spec import ModelSpec
    from arithlens.model.train import TrainConfig, TrainResult
    from arithlens.model.transformer import HookedTransformer


def parse_spec(name: str, **overrides: Any) -> ModelSpec:
    """A model spec from its name (`mix_d6_l3_h4_t12K_s372001`) with size overrides (`d_model=128`)."""
    from arithlens.model.spec import ModelSpec

    return ModelSpec.parse(name, **overrides)


def train_config(recipe: dict, where: str = "training config") -> TrainConfig:
    """A training recipe checked field by field (errors name `where`: a config file, or the defaults)."""
    from arithlens.model.train import TrainConfig

    return TrainConfig.from_dict(recipe, where=where)


def train(spec: ModelSpec, cfg: TrainConfig, out_dir: str | Path | None = None, *, device: str = "cpu",
          resume: bool = False, progress: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train `spec` with `cfg` (resumably, into `out_dir`): weights, model card, loss history."""
    import arithlens.model.train as training  # looked up at call time: tests stand in for it

    return training.train(spec, cfg, out_dir, device=device, resume=resume, progress=progress)


def suite_kinds() -> tuple[str, ...]:
    """The question kinds of the acceptance suite."""
    from arithlens.model.evaluate import KINDS

    return tuple(KINDS)


def suite_size(spec: ModelSpec, **options: Any) -> int:
    """How many questions `evaluate(...)` with these options asks."""
    from arithlens.model.evaluate import suite_size as size

    return size(spec, **options)


def evaluate(model: HookedTransformer, spec: ModelSpec, **options: Any):
    """The exact (teacher-forced) evaluation suite's record (`model.evaluate.SuiteResult`, `.to_dict()`)."""
    import arithlens.model.evaluate as evaluation  # looked up at call time: tests stand in for it

    return evaluation.evaluate_suite(model, spec, **options)
