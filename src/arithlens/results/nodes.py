"""Useful nodes and their tags as values (what `arithlens useful` writes), with the quanta maps' node list."""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from arithlens.errors import ArithLensError
from arithlens.results._base import _convert, _hidden, _JsonResult


@dataclass(frozen=True)
class NodeTags:
    name: str
    tags: tuple[str, ...]


def _node_list(nodes: tuple[NodeTags, ...]):
    from arithlens.analysis.nodes import Node, NodeList, Tag, UsefulNode

    return NodeList(UsefulNode(Node.parse(n.name), [Tag.parse(t) for t in n.tags]) for n in nodes)


class _Maps:
    """Quanta maps of a result's tagged nodes."""

    nodes: tuple[NodeTags, ...]
    model: str

    def node_list(self):
        """The tagged nodes as an `arithlens.analysis.nodes.NodeList` (what the map and search code takes)."""
        return _node_list(self.nodes)

    def plot_map(self, name: str = "MathsPurposePerNode", interactive: bool = False, n_digits: int | None = None):
        from arithlens.report.result_views import map_plot

        return map_plot(self, name=name, interactive=interactive, n_digits=n_digits)

    @staticmethod
    def map_names() -> list[str]:
        from arithlens.arith.layout import Layout
        from arithlens.report.quanta_maps import catalogue

        return list(catalogue(Layout(6)))


def _digits_of(model: str) -> int:
    from arithlens.model.spec import ModelSpec

    try:
        return ModelSpec.parse(model).n_digits
    except Exception:  # a model name outside the grammar (a converted file): the default layout
        return 6


def _check_useful(data: Any) -> None:
    """A useful-nodes object: a model name and a list of {name, tags} whose names and tags parse."""
    from arithlens.analysis.nodes import Node, Tag

    if not isinstance(data, Mapping):
        raise ArithLensError(f"UsefulNodes: expected a JSON object or a behaviour list, not {type(data).__name__}")
    if not isinstance(data.get("nodes"), list) or not isinstance(data.get("model", ""), str):
        raise ArithLensError("UsefulNodes: the JSON object needs a 'model' name and a 'nodes' list of {name, tags} "
                             "(is it the output of `arithlens useful`?)")
    for entry in data["nodes"]:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("tags", []), list):
            raise ArithLensError(f"UsefulNodes: a node entry must be {{name, tags}}, not {entry!r}")
        Node.parse(entry.get("name"))
        for tag in entry.get("tags", []):
            if not isinstance(tag, str):
                raise ArithLensError(f"UsefulNodes: tag {tag!r} of {entry['name']} is not a string")
            Tag.parse(tag)


@dataclass(frozen=True)
class UsefulNodes(_JsonResult, _Maps):
    """Useful positions and nodes by mean ablation, each node with its tags (`arithlens useful`).

    `from_json` reads the `--json` object or the `<model>_behavior.json` file (nodes and tags only)."""

    model: str
    nodes: tuple[NodeTags, ...]
    questions: int = 0
    dropped: tuple[str, ...] = ()
    clean_loss: float | None = None
    useful_positions: tuple[int, ...] = ()
    position_failures: tuple[int, ...] = ()
    reference_compat: bool = False
    data: dict = _hidden()

    @classmethod
    def from_dict(cls, data) -> UsefulNodes:
        if isinstance(data, list):  # the behaviour file: records of (position, layer, is_head, num, tags)
            from arithlens.analysis.nodes import NodeList

            listed = NodeList.from_records(data)
            data = {"model": "", "nodes": [{"name": un.name, "tags": [str(t) for t in un.tags]} for un in listed]}
        _check_useful(data)
        data = {k: v for k, v in data.items() if k not in ("files", "note", "seconds")}
        hints = typing.get_type_hints(cls)
        kwargs = {f.name: _convert(hints[f.name], data[f.name]) for f in dataclasses.fields(cls)
                  if f.name != "data" and f.name in data}
        return cls(**kwargs, data=data)

    def behavior_json(self) -> str:
        """The `<model>_behavior.json` text (the predecessor's schema) of these nodes."""
        return json.dumps(self.node_list().to_records(), indent=1) + "\n"

    def _repr_html_(self) -> str:
        from arithlens.report.result_views import useful_html

        return useful_html(self)
