"""Dictionary features as values: a trained sparse autoencoder's quality and label matches, and the feature
study of a node (the founding question asked of its features)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arithlens.errors import ArithLensError
from arithlens.results._base import _from_dict, _hidden, _JsonResult
from arithlens.results.node_study import Rate


@dataclass(frozen=True)
class DictionaryQuality:
    """Reconstruction on held-out questions and exact accuracy per qtype (clean / spliced / mean-ablated)."""

    explained_variance: float
    mse: float
    l0: float
    dead: int
    dead_share: float
    dense: int
    dense_share: float
    n: int
    accuracy: dict[str, dict[str, Rate]] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelMatch:
    """The feature that separates a label best: AUROC, Hanley-McNeil interval, permutation p-value."""

    label: str
    feature: int
    auroc: float
    strength: float
    ci: tuple[float, ...]
    p_value: float | None
    fires_on: str
    positives: int
    n: int
    passes: bool


@dataclass(frozen=True)
class FeatureDictionary(_JsonResult):
    """A sparse autoencoder trained on one site (`al.sae`, `arithlens sae`): its quality, every live feature's
    meaning (`features`: firing, histogram, best labels, top questions) and the sweep's Pareto points. The
    trained module rides along as `sae` (not in the JSON); `save_dictionary(dir)` writes it in SAELens's form."""

    site: str
    model: str
    arch: str
    size: int
    d_in: int
    quality: DictionaryQuality
    k: int | None = None
    l1: float | None = None
    sweep: tuple[dict, ...] = ()
    data: dict = _hidden()
    sae: Any = field(default=None, repr=False, compare=False)

    @property
    def features(self) -> list[dict]:
        return self.data.get("features", [])

    def match(self, label: str) -> LabelMatch | None:
        """The best feature for a label (`ADD.SC1`, `SUB.MB1.pair`, `D1=7`, `qtype=NEG`), or None."""
        for rec in self.data.get("meaning", {}).get("labels", []):
            if rec["label"] == label:
                return _from_dict(LabelMatch, rec["best"]) if rec.get("best") else None
        raise ArithLensError(f"no label {label!r}; labels look like ADD.SC1, SUB.MB1.pair, NEG.NT1=8, D1=7")

    def save_dictionary(self, directory: str | Path) -> list[Path]:
        """`cfg.json` + `sae_weights.safetensors` (SAELens's format) into `directory`."""
        if self.sae is None:
            raise ArithLensError("this result was read from JSON: it has no trained weights to save")
        from arithlens.analysis.features.dictionary import save_dictionary

        return save_dictionary(self.sae, directory, hook_name=self.data["hook"], model_name=self.model,
                               extra={"site": self.site, "position": self.data["position"],
                                      "head": self.data["head"]})

    def summary(self) -> str:
        from arithlens.report.features import dictionary_text

        return dictionary_text(self.data)

    def plot_pareto(self):
        from arithlens.report.features import pareto_figure

        return pareto_figure(self.data)

    def plot_feature(self, feature: int, interactive: bool = False):
        """One feature's dashboard: top questions, activation histogram, AUROC of its best labels."""
        from arithlens.report.features import feature_dashboard

        return feature_dashboard(self.data, feature, interactive=interactive)

    def _repr_html_(self) -> str:
        from arithlens.report.result_views import dictionary_html

        return dictionary_html(self)


@dataclass(frozen=True)
class FeatureStudy(_JsonResult):
    """The founding question from below for one site (`al.feature_study`): its dictionary, the features that
    carry the carry / borrows / operands at the study digit, whether one serves carry and borrow at once, each
    one's causal effect, and a probe and a difference-of-means direction beside them (`comparison`)."""

    site: str
    model: str
    digit: int
    dictionary: FeatureDictionary
    one_feature_for_carry_and_borrow: bool
    shared_features: tuple[int, ...] = ()
    operand_carriers: tuple[int, ...] = ()
    data: dict = _hidden()

    @classmethod
    def from_dict(cls, data: Mapping) -> FeatureStudy:
        features = data["features"]
        return cls(data["site"], data["model"], features["digit"], FeatureDictionary.from_dict(data["dictionary"]),
                   bool(features["one_feature_for_carry_and_borrow"]), tuple(features["shared_features"]),
                   tuple(features["operand_carriers"]), data=dict(data))

    @property
    def features(self) -> dict:
        """The node study's "features" part (what `node_study` should include)."""
        return self.data["features"]

    def summary(self) -> str:
        from arithlens.report.features import study_text

        return study_text(self.data)

    def _repr_html_(self) -> str:
        from arithlens.report.result_views import feature_study_html

        return feature_study_html(self)


