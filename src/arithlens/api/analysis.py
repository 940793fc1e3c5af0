"""The whole analysis of one model through the front door (`arithlens analyze` without the files)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from arithlens.api._checks import check_model
from arithlens.api.nodes import search_record, useful_record
from arithlens.results import AnalysisReport, NodeStudy
from arithlens.validate import check_count, check_int, check_seed

if TYPE_CHECKING:
    from arithlens.model.transformer import HookedTransformer


def analyze(model: HookedTransformer, *, questions: int = 256, pairs: int = 100, seed: int | None = None,
            max_studies: int | None = None, run_search: bool = True, faithfulness: int = 2000, circuit: bool = False,
            edges: bool = True, edge_card: int = 100, progress: Callable[..., None] | None = None) -> AnalysisReport:
    """The main job of `arithlens analyze` without the files: useful nodes, searches, node studies, and the useful
    set's faithfulness on `faithfulness` questions per qtype (0: skip; `report.data["faithfulness"]`) and, with
    `circuit` (slow), a circuit as `circuit()` finds one (`report.data["circuit"]`); with `edges`, the edge circuit
    as `edge_circuit()` finds it (`report.data["edge_circuit"]`, a brief record) and its ablation card on
    `edge_card` fresh questions per qtype (0: skip; `report.data["edge_card"]`).
    `atlas([analyze(m1), analyze(m2)])` aligns such reports by role."""
    check_model(model)
    check_count("questions", questions, low=1)
    check_count("pairs", pairs, low=1)
    check_count("faithfulness", faithfulness, low=0)
    check_count("edge_card", edge_card, low=0)
    check_seed(seed, "seed")
    check_int("max_studies", max_studies, low=0)
    result = run_analysis(model, questions=questions, pairs=pairs, seed=seed, max_studies=max_studies,
                          search=run_search, faithfulness=faithfulness, circuit=circuit, edges=edges,
                          edge_card=edge_card, progress=progress)
    useful = useful_record(result.useful)
    found = None
    if result.search is not None:
        found = search_record(model.spec, result.search, result.claims)
    studies = [NodeStudy.from_dict(e.data) for e in result.studies if e.data is not None]
    data = {"model": model.spec.name, "summary": result.summary(), "useful": useful.data,
            "search": None if found is None else found.data,
            "studies": [s.data for s in studies],
            "faithfulness": None if result.faithfulness is None else faithfulness_record(result.faithfulness),
            "circuit": None if result.circuit is None else circuit_record(result.circuit),
            **{k: v for k, v in result.summary().items() if k in ("edge_circuit", "edge_card")}}
    return AnalysisReport(model.spec.name, data["summary"], useful, found, tuple(studies), data=data)


def run_analysis(model: HookedTransformer, *, progress: Callable[..., None] | None = None, drawer=None,
                 **options):
    """The pipeline's whole record (`analysis.analyze.Analysis`: useful nodes, search, claims, studies,
    faithfulness, circuit, timings) for `AnalyzeOptions` fields `options`; `drawer` draws figures while it runs.
    What `arithlens analyze` writes and `analyze` summarises."""
    from arithlens.analysis.analyze import AnalyzeOptions
    from arithlens.analysis.analyze import analyze as run

    return run(model, AnalyzeOptions(**options), progress, drawer)


def faithfulness_record(result, *, brief: bool = False) -> dict:
    """A Faithfulness as `faithfulness.json` holds it."""
    from arithlens.analysis.analyze import faithfulness_record as record

    return record(result, brief=brief)


def circuit_record(result, *, brief: bool = False) -> dict:
    """A Circuit as `circuit.json` holds it."""
    from arithlens.analysis.analyze import circuit_record as record

    return record(result, brief=brief)
