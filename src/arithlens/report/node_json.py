"""A node study's file: `<out>/<node>_study.json`, its JSON object written atomically."""

from __future__ import annotations

from pathlib import Path

from arithlens.io import write_atomic


def write_study(study, out_dir: str | Path) -> Path:
    """Write `study` (an `analysis.node_study.NodeStudy`) as `<out_dir>/<node>_study.json`; returns the path."""
    path = Path(out_dir) / f"{study.node.name}_study.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, study.to_json().encode())
    return path
