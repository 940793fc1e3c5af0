"""The whole analysis of a model as values (`arithlens analyze`): useful nodes, search, node studies, summary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from arithlens.errors import ArithLensError
from arithlens.results._base import _from_dict, _hidden, _JsonResult
from arithlens.results.node_study import NodeStudy
from arithlens.results.nodes import UsefulNodes
from arithlens.results.search import SearchReport


@dataclass(frozen=True)
class AnalysisReport(_JsonResult):
    """`arithlens analyze` as values: useful nodes, the search, the node studies and the summary numbers.

    `from_json` also reads an `analysis.json` (the summary alone: `useful`, `search` and `studies` stay empty)."""

    model: str
    summary: dict[str, Any]
    useful: UsefulNodes | None = None
    search: SearchReport | None = None
    studies: tuple[NodeStudy, ...] = ()
    data: dict = _hidden()

    @classmethod
    def from_dict(cls, data: Mapping) -> AnalysisReport:
        if "summary" not in data:  # an analysis.json
            return cls(data["model"], dict(data), data=dict(data))
        return cls(data["model"], data["summary"],
                   UsefulNodes.from_dict(data["useful"]) if data.get("useful") else None,
                   _from_dict(SearchReport, data["search"]) if data.get("search") else None,
                   tuple(_from_dict(NodeStudy, s) for s in data.get("studies", ())), data=dict(data))

    def study(self, node: str) -> NodeStudy:
        for s in self.studies:
            if s.node == node:
                return s
        raise ArithLensError(f"no study of {node!r} here; studied: {', '.join(s.node for s in self.studies)}")

    def _repr_html_(self) -> str:
        from arithlens.report.result_views import analysis_html

        return analysis_html(self)


# ---------------------------------------------------------------------------------------------------
# HTML helpers
