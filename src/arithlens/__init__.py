"""arithlens: mechanistic interpretability of transformers that do integer arithmetic.

The public API (`arithlens.api`, typed results in `arithlens.results`) is importable from here; names load on
first use, so `import arithlens` stays fast (no torch until a model is needed):

    import arithlens as al
    model = al.load_model()                      # the default shipped model
    study = al.study_node(model, "P18L0H3")      # a NodeStudy: .verdict, .necessity, .plot_pca(), ...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    # models and questions
    "load_model": "arithlens.api", "models": "arithlens.api", "questions": "arithlens.api",
    "tricase": "arithlens.api", "DEFAULT_TRICASE_COUNTS": "arithlens.api",
    "QuestionBatch": "arithlens.arith.questions", "QType": "arithlens.arith.questions",
    "HookedTransformer": "arithlens.model.transformer", "ModelSpec": "arithlens.model.spec",
    "Node": "arithlens.analysis.nodes",
    # analyses (each returns a typed result)
    "useful_nodes": "arithlens.api", "search": "arithlens.api", "study_node": "arithlens.api",
    "pca": "arithlens.api", "analyze": "arithlens.api", "node_output": "arithlens.api",
    "faithfulness": "arithlens.api", "circuit": "arithlens.api", "atlas": "arithlens.analysis.atlas",
    # results
    "NodeStudy": "arithlens.results", "NodePCA": "arithlens.results", "UsefulNodes": "arithlens.results",
    "SearchReport": "arithlens.results", "AnalysisReport": "arithlens.results", "Verdict": "arithlens.results",
    "Faithfulness": "arithlens.results", "Circuit": "arithlens.results",
    # intervention primitives
    "run_with_cache": "arithlens.api", "ablate": "arithlens.api", "act_name": "arithlens.model.hooks",
    "node_site": "arithlens.model.hooks", "Intervention": "arithlens.interventions",
    "zero_ablate": "arithlens.interventions", "mean_ablate": "arithlens.interventions",
    "resample_ablate": "arithlens.interventions", "patch_from": "arithlens.interventions",
    "compute_means": "arithlens.interventions", "record": "arithlens.interventions",
    "run_with_interventions": "arithlens.interventions", "Engine": "arithlens.interventions",
    "ArithLensError": "arithlens.errors",
    # dictionary features (sparse autoencoders)
    "sae": "arithlens.api", "feature_study": "arithlens.api", "FeatureDictionary": "arithlens.results",
    "FeatureStudy": "arithlens.results", "load_dictionary": "arithlens.analysis.features.dictionary",
    # circuits the field can compare: edges, and the ablation card
    "edge_circuit": "arithlens.api", "edge_circuit_mib": "arithlens.api", "circuit_card": "arithlens.api",
    "edge_card": "arithlens.api", "load_edge_circuit": "arithlens.api",
    "circuit_purposes": "arithlens.api", "CircuitPurposes": "arithlens.results",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'arithlens' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from arithlens.interventions import (
        Engine, Intervention, compute_means, mean_ablate, patch_from, record, resample_ablate,
        run_with_interventions, zero_ablate,
    )
    from arithlens.analysis.atlas import atlas
    from arithlens.analysis.nodes import Node
    from arithlens.api import (
        DEFAULT_TRICASE_COUNTS, ablate, analyze, circuit, faithfulness, load_model, models, node_output, pca, questions, run_with_cache,
        search, study_node, tricase, useful_nodes,
    )
    from arithlens.arith.questions import QType, QuestionBatch
    from arithlens.errors import ArithLensError
    from arithlens.model.hooks import act_name, node_site
    from arithlens.model.spec import ModelSpec
    from arithlens.model.transformer import HookedTransformer
    from arithlens.results import (
        AnalysisReport, Circuit, Faithfulness, NodePCA, NodeStudy, SearchReport, UsefulNodes, Verdict,
    )
    from arithlens.analysis.features.dictionary import load_dictionary
    from arithlens.api import (
        circuit_card, edge_card, edge_circuit, edge_circuit_mib, feature_study, load_edge_circuit, sae,
    )
    from arithlens.results import FeatureDictionary, FeatureStudy
    from arithlens.api import circuit_purposes
    from arithlens.results import CircuitPurposes
