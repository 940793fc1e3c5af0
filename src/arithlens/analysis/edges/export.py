"""Edge circuits as EAP-IG / MIB graph JSON (`cfg`, `nodes`, `edges` keyed `a0.h1->a2.h0<k>` with `score` and
`in_graph`), positions summed so their tools read ours, plus our positioned edges under `arithlens` so ours
round-trip exactly; a MIB JSON without that key reads back with every position of a kept MIB edge kept."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from arithlens.analysis.edges.graph import EdgeGraph
from arithlens.errors import ArithLensError

FORMAT = "arithlens-positioned-edges/1"


def to_mib_json(graph: EdgeGraph, kept: np.ndarray, scores: np.ndarray, *, d_model: int) -> dict:
    """The circuit `kept` (n_edges,) bool with `scores` (n_edges,) as a MIB / EAP-IG graph dict. A MIB edge's score
    is the sum of its positioned edges' scores; it is in the graph when any of them is."""
    kept, scores = np.asarray(kept, dtype=bool), np.asarray(scores, dtype=np.float64)
    if kept.shape != (graph.n_edges,) or scores.shape != (graph.n_edges,):
        raise ArithLensError(f"a circuit has one keep flag and one score per edge ({graph.n_edges})")
    edges: dict[str, dict] = {}
    for name, k, s in zip(graph.mib_names, kept, scores):
        row = edges.setdefault(name, {"score": 0.0, "in_graph": False})
        row["score"] += 0.0 if np.isnan(s) else float(s)
        row["in_graph"] = row["in_graph"] or bool(k)
    nodes = {"input": {"in_graph": True}}
    for layer in range(graph.n_layers):
        for h in range(graph.n_heads):
            nodes[f"a{layer}.h{h}"] = {"in_graph": False}
        nodes[f"m{layer}"] = {"in_graph": False}
    for name, row in edges.items():
        if row["in_graph"]:
            nodes[name.split("->")[0]]["in_graph"] = True
    nodes["logits"] = {"in_graph": True}
    positioned = {n: {"score": None if np.isnan(s) else float(s), "in_graph": bool(k)}
                  for n, k, s in zip(graph.names, kept, scores)}
    return {"cfg": {"n_layers": graph.n_layers, "n_heads": graph.n_heads, "parallel_attn_mlp": False,
                    "d_model": int(d_model)},
            "nodes": nodes, "edges": edges,
            "arithlens": {"format": FORMAT, "n_ctx": graph.n_ctx, "min_position": graph.min_position,
                          "edges": positioned}}


def from_mib_json(data: Mapping, spec) -> tuple[EdgeGraph, np.ndarray, np.ndarray]:
    """(graph, kept, scores) from `to_mib_json`'s dict, or from a plain MIB / EAP-IG graph of a model with `spec`'s
    sizes (every positioned edge of a kept MIB edge kept; scores NaN, positions being unknown)."""
    if not isinstance(data, Mapping) or not {"cfg", "edges"} <= data.keys():
        raise ArithLensError("not a MIB / EAP-IG graph: it needs 'cfg' and 'edges'")
    cfg = data["cfg"]
    if (cfg.get("n_layers"), cfg.get("n_heads")) != (spec.n_layers, spec.n_heads):
        raise ArithLensError(f"the graph is for {cfg.get('n_layers')} layers x {cfg.get('n_heads')} heads, the "
                             f"model has {spec.n_layers} x {spec.n_heads}")
    ours = data.get("arithlens")
    if ours is not None:
        if ours.get("format") != FORMAT:
            raise ArithLensError(f"unknown positioned-edge format {ours.get('format')!r}; expected {FORMAT!r}")
        graph = EdgeGraph.build(spec, min_position=int(ours["min_position"]))
        rows = ours["edges"]
        if set(rows) != set(graph.names):
            raise ArithLensError(f"the positioned edges are not those of this model's graph ({len(rows)} against "
                                 f"{graph.n_edges})")
        kept = np.array([bool(rows[n]["in_graph"]) for n in graph.names])
        scores = np.array([np.nan if rows[n]["score"] is None else rows[n]["score"] for n in graph.names], dtype=float)
        return graph, kept, scores
    graph = EdgeGraph.build(spec)
    unknown = set(data["edges"]) - set(graph.mib_names)
    if unknown:
        raise ArithLensError(f"edge {sorted(unknown)[0]!r} is not an edge of this model")
    kept = np.array([bool(data["edges"].get(n, {}).get("in_graph", False)) for n in graph.mib_names])
    return graph, kept, np.full(graph.n_edges, np.nan)


__all__ = ["FORMAT", "from_mib_json", "to_mib_json"]
