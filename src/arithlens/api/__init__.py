"""The front door: load a model, build labelled questions, run the studies, get typed results back.

Everything public here is re-exported by `arithlens` (`import arithlens as al; al.study_node(al.load_model(),
"P18L0H3")`). Each analysis is a function of (model, options) returning a frozen result from `arithlens.results`;
the CLI commands call these same functions (checks, device resolution and defaults live here once) and write
what they return with `arithlens.io` / `arithlens.report`. Nothing here prints or writes files.

Submodules by domain: `checkpoints` (models: load, resolve, save), `question_sets`, `nodes` (useful nodes,
searches, node studies, faithfulness, circuits), `analysis` (the whole pipeline), `features` (sparse
autoencoders), `primitives` (a node's output, PCA, cached runs, ablations), `training` (train, evaluate),
`many` (sweeps, atlas).
"""

from __future__ import annotations

from arithlens.analysis.memory import freeze_long_lived_objects
from arithlens.api.analysis import (
    analyze,
    circuit_record,
    faithfulness_record,
    run_analysis,
)
from arithlens.api.checkpoints import (
    checkpoint_files,
    default_model_name,
    load_checkpoint,
    load_model,
    models,
    read_checkpoint,
    resolve_device,
    resolve_model,
    save_checkpoint,
)
from arithlens.api.circuits import circuit_card, edge_card, edge_circuit, edge_circuit_mib, load_edge_circuit
from arithlens.api.circuit_purposes import circuit_purposes
from arithlens.api.features import check_sae, feature_study, sae
from arithlens.api.many import (
    analyse_checkpoints,
    atlas_of,
    check_analysis_options,
    sweep,
)
from arithlens.api.nodes import (
    circuit,
    discover_circuit,
    faithfulness,
    faithfulness_of,
    find_useful,
    load_node_list,
    parse_node,
    read_node_set,
    run_search,
    run_study,
    search,
    search_options,
    study_node,
    useful_nodes,
)
from arithlens.api.primitives import ablate, node_output, pca, run_with_cache
from arithlens.api.question_sets import (
    DEFAULT_TRICASE_COUNTS,
    MAX_DIGITS,
    question_stream,
    questions,
    tricase,
)
from arithlens.api.training import (
    evaluate,
    parse_spec,
    suite_kinds,
    suite_size,
    train,
    train_config,
)

# The Python API proper (what `import arithlens as al` offers); the rest above serves the commands.
__all__ = [
    "DEFAULT_TRICASE_COUNTS", "ablate", "analyze", "check_sae", "circuit", "circuit_card", "edge_card", "edge_circuit",
    "load_edge_circuit",
    "edge_circuit_mib", "faithfulness", "feature_study",
    "load_model", "models", "node_output", "pca", "questions", "run_with_cache", "sae", "search", "study_node",
    "tricase", "useful_nodes",
]
# What the commands need beyond that: the records they write, checkpoints as files, runs over many models.
__all__ += [
    "MAX_DIGITS", "analyse_checkpoints", "atlas_of", "check_analysis_options", "checkpoint_files", "circuit_record",
    "default_model_name", "discover_circuit", "evaluate", "faithfulness_of", "faithfulness_record", "find_useful",
    "load_checkpoint", "load_node_list", "parse_node", "parse_spec", "question_stream", "read_checkpoint",
    "read_node_set", "resolve_device", "resolve_model", "run_analysis", "run_search", "run_study",
    "save_checkpoint", "search_options", "suite_kinds", "suite_size", "sweep", "train", "train_config",
]
__all__ += ["circuit_purposes"]  # purposes on an edge circuit (issue 28)
__all__ += ["freeze_long_lived_objects"]  # a long command, after its model load
