"""Optional dependencies: what needs an extra says which one, and the extra provides it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import arithlens as al
from arithlens.errors import ArithLensError

ROOT = Path(__file__).resolve().parent.parent


def test_to_pandas_without_pandas_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now raises ImportError
    with pytest.raises(ArithLensError, match=r"pip install 'arithlens\[notebooks\]'"):
        al.questions(5, seed=1).to_pandas()


def test_notebooks_extra_installs_pandas_and_a_way_to_run_notebooks():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {req.split(">")[0].split("=")[0].split("[")[0] for req in extras["notebooks"]}
    assert {"pandas", "ipykernel", "nbconvert"} <= names
