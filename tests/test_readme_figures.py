"""The README's circuit figures: the block matches the stored results, and (slow) the stored results match a
fresh run on the shipped default model."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("circuit_figures", ROOT / "scripts" / "circuit_figures.py")
figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(figures)


def _stored() -> dict:
    return json.loads(figures.RESULTS.read_text())


def test_readme_block_is_rendered_from_the_stored_figures():
    text = (ROOT / "README.md").read_text()
    block = re.search(re.escape(figures.START) + r"\n(.*?)\n" + re.escape(figures.END), text, re.S)
    assert block is not None
    assert block[1] == figures.render(_stored())


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _same(a, b, path: str = "") -> list[str]:
    """Where two JSON values differ (floats to 1e-9 relative: the same CPU run gives the same bits)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a for d in _same(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _same(x, y, f"{path}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        return [] if a == pytest.approx(b, rel=1e-9, nan_ok=True) else [f"{path}: {a} vs {b}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def test_comparison_finds_a_changed_figure():
    stored = _without_times(_stored())
    assert _same(stored, stored) == []
    changed = json.loads(json.dumps(stored))
    changed["circuit"]["validation"][0]["qtypes"][0]["correct"] += 1
    changed["table"][1]["qtypes"][2]["loss"] *= 1.001
    assert len(_same(stored, changed)) == 2


@pytest.mark.regen  # ~10 min on 2 idle cores: `python -m pytest -m regen`
def test_stored_figures_match_a_fresh_run_of_the_shipped_model():
    fresh = figures.compute()
    assert _same(_without_times(fresh), _without_times(_stored())) == []
