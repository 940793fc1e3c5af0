"""The sub-task searches as values: every patch trial, tags, coverage and claims (`<model>_search.json`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from arithlens.results._base import _hidden, _JsonResult
from arithlens.results.node_study import Rate
from arithlens.results.nodes import NodeTags, _Maps, _node_list


@dataclass(frozen=True)
class SearchTrial:
    node: str
    task: str
    digit: int
    tag: str
    strong: Rate
    weak: Rate
    tagged: str | None = None


@dataclass(frozen=True)
class SearchReport(_JsonResult, _Maps):
    """Sub-task searches (`arithlens search`): Algo tags backed by patching success rates.

    `from_json` reads `<model>_search.json`; `nodes` (every tag, for the maps) is empty then."""

    rule: str
    coverage: dict[str, Any]
    tags: dict[str, tuple[str, ...]]
    trials: tuple[SearchTrial, ...] = field(repr=False, default=())
    model: str = ""
    nodes: tuple[NodeTags, ...] = field(repr=False, default=())
    data: dict = _hidden()

    def node_list(self):
        """Every node's tags; read from a `<model>_search.json` (which keeps the Algo tags only), those."""
        if self.nodes:
            return _node_list(self.nodes)
        return _node_list(tuple(NodeTags(name, tuple(f"Algo:{v}" for v in values))
                                for name, values in self.tags.items()))

    def _repr_html_(self) -> str:
        from arithlens.report.result_views import search_html

        return search_html(self)
