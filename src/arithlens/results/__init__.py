"""Every result of the API as a frozen, typed dataclass with one `to_dict` / `from_dict`, by domain: node studies,
PCA, useful nodes, searches, the whole analysis, faithfulness and circuits, dictionary features.

The JSON-backed results (`_JsonResult`) keep the object they were built from (`data`), so `to_json()` is
byte-for-byte what the CLI writes and fields a later version adds survive a round trip. Notebook views
(`_repr_html_`, `plot_*`, `summary()`) delegate to `arithlens.report`; nothing here draws, words or writes.
"""

from __future__ import annotations

from arithlens.results.analysis import AnalysisReport
from arithlens.results.circuits import (
    AblationCard,
    CardRow,
    Circuit,
    CurveQType,
    Faithfulness,
    FaithfulnessCurve,
    NodeCost,
    QTypeFaithfulness,
    RobustCircuit,
)
from arithlens.results.features import (
    DictionaryQuality,
    FeatureDictionary,
    FeatureStudy,
    LabelMatch,
)
from arithlens.results.node_study import (
    AblationRates,
    Attention,
    AttentionPeak,
    Candidate,
    CosineTest,
    Grid,
    Necessity,
    NecessityRow,
    NodeStudy,
    PatchRates,
    Probe,
    QTypeRepresentation,
    QTypeVerdict,
    Rate,
    Shared,
    Sufficiency,
    Verdict,
)
from arithlens.results.nodes import NodeTags, UsefulNodes
from arithlens.results.pca import NodePCA
from arithlens.results.purposes import CircuitPurposes, NodePurpose
from arithlens.results.search import SearchReport, SearchTrial

__all__ = [
    "AblationCard", "AblationRates", "AnalysisReport", "Attention", "AttentionPeak", "Candidate", "CardRow", "Circuit",
    "CosineTest", "CurveQType", "DictionaryQuality", "Faithfulness", "FaithfulnessCurve", "FeatureDictionary", "FeatureStudy", "Grid", "LabelMatch", "Necessity",
    "NecessityRow", "NodeCost", "NodePCA", "NodeStudy", "NodeTags", "PatchRates", "Probe", "QTypeFaithfulness",
    "QTypeRepresentation", "QTypeVerdict", "Rate", "RobustCircuit", "SearchReport", "SearchTrial", "Shared", "Sufficiency",
    "UsefulNodes", "Verdict",
]
__all__ += ["CircuitPurposes", "NodePurpose"]
