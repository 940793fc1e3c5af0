"""The example notebooks run in a fresh kernel without an error, compute what they say, and the committed
(executed) copies are small and agree with a fresh run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

import arithlens as al  # noqa: E402
from helpers import assert_json_close  # noqa: E402

ROUNDED_TO_6 = 2e-6  # tolerance for figures the notebooks round to 6 decimals
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
from build_notebooks import NOTEBOOKS, build, execute  # noqa: E402


def results(nb) -> dict:
    """The `RESULTS {json}` line the notebook's last cell prints."""
    for output in nb.cells[-1].get("outputs", []):
        for line in output.get("text", "").splitlines():
            if line.startswith("RESULTS "):
                return json.loads(line[len("RESULTS "):])
    raise AssertionError("the notebook printed no RESULTS line")


def committed(name: str) -> dict:
    return results(nbformat.read(EXAMPLES / name, as_version=4))


@pytest.fixture(scope="module")
def model():
    return al.load_model()


def _check_pca(evr: dict, model) -> None:
    """The notebook's explained-variance ratios are those of `al.pca` on the same seeded sets."""
    assert len(evr) == 4 * 3
    for head, qtype in (("P18L0H3", "ADD"), ("P18L0H0", "NEG")):
        p = al.pca(model, head, al.tricase(1, {qtype: 300}, seed=0))
        assert evr[f"{head} {qtype}"] == pytest.approx(p.evr[0], abs=1e-6)


@pytest.mark.slow
def test_l0h0_study_notebook_runs_and_computes_the_founding_sets_and_verdict(model):
    nb = execute(build(NOTEBOOKS["l0h0_study.ipynb"]))
    got = results(nb)
    assert got["model"] == model.spec.name and (got["position"], got["digit"]) == (18, 1)
    assert got["counts"] == {q: {"T8": 100, "T9": 100, "T10": 100} for q in ("ADD", "SUB", "NEG")}
    _check_pca(got["evr"], model)
    assert got["study_digit"] == 1 and isinstance(got["polysemantic"], bool)
    assert got["verdict"].startswith(("polysemantic", "not polysemantic"))
    assert got["n_purpose_nodes"] > 50  # heads and MLPs the search gave a purpose (of 97 useful nodes)
    saved = committed("l0h0_study.ipynb")
    # the committed copy ran on another machine: floats within 2e-6 (the notebook rounds EVRs to 6 decimals, and a
    # summation-order change can flip the last one), the rest exactly
    assert_json_close({k: got[k] for k in ("counts", "evr", "study_digit")},
                      {k: saved[k] for k in ("counts", "evr", "study_digit")}, abs_tol=ROUNDED_TO_6)


@pytest.mark.slow
def test_your_checkpoint_notebook_loads_a_pth_and_repeats_the_study(model):
    nb = execute(build(NOTEBOOKS["your_checkpoint.ipynb"]))
    got = results(nb)
    assert got["model"] == model.spec.name and got["identical"] is True
    assert got["counts"] == {"ADD": 300, "SUB": 300, "NEG": 300}
    _check_pca(got["evr"], model)
    assert 18 in got["useful_positions"] and got["n_useful"] > 20
    assert got["study_digit"] == 1
    saved = committed("your_checkpoint.ipynb")
    assert_json_close(got["evr"], saved["evr"], abs_tol=ROUNDED_TO_6)
    assert saved["useful_positions"] == got["useful_positions"]


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_committed_notebooks_are_executed_and_small(name):
    path = EXAMPLES / name
    assert path.stat().st_size < 3_000_000
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "committed notebooks are executed"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert [c.source for c in nb.cells] == [src for _, src in NOTEBOOKS[name]], "regenerate: build_notebooks.py"
