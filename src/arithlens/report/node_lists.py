"""The node-list files: `<model>_behavior.json` (every useful node and its tags) and `<model>_algorithm.json`
(the Algo tags alone), both in the predecessor's schema."""

from __future__ import annotations

from pathlib import Path

from arithlens.analysis.nodes import Major


def write_behavior(nodes, path: str | Path) -> Path:
    """Write a NodeList with every tag; returns the path."""
    return nodes.save(path)


def write_algorithm(nodes, path: str | Path) -> Path:
    """Write a NodeList's algorithm (Algo) tags only; returns the path."""
    return nodes.save(path, majors=[Major.ALGO])
