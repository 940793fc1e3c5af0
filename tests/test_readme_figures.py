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


@pytest.mark.slow
def test_stored_figures_match_a_fresh_run_of_the_shipped_model():
    fresh = figures.compute()
    assert _without_times(fresh) == pytest.approx(_without_times(_stored()))
