"""The public API (`import arithlens as al`): models, labelled questions, typed results that read and write
the CLI's JSON, notebook views and figures that write no file, the hook names, the interactive figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import arithlens as al
from arithlens.errors import ArithLensError
from arithlens.results import NodeStudy, UsefulNodes
from helpers import assert_json_close, json_layout

REFERENCE = Path(__file__).parent / "data" / "cli_reference"
SMALL = {"questions": 30, "pairs": 20, "permutations": 5}  # the options the reference study was made with


@pytest.fixture(scope="module")
def model():
    return al.load_model()


@pytest.fixture(scope="module")
def study(model):
    return al.study_node(model, "P18L0H3", **SMALL)


def test_import_arithlens_and_its_api_load_no_torch_until_a_model_is_used():
    code = ("import sys, arithlens; assert 'torch' not in sys.modules; "
            "assert callable(arithlens.load_model) and 'torch' not in sys.modules; print(len(arithlens.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) > 30


def test_every_public_name_resolves():
    for name in al.__all__:
        assert getattr(al, name) is not None, name
    with pytest.raises(AttributeError):
        al.no_such_name  # noqa: B018


def test_load_model_names_the_default_shipped_model_and_models_lists_both(model):
    names = [m.name for m in al.models()]
    assert model.spec.name in names and len(names) >= 2
    assert not model.training
    assert al.load_model("add").spec.op == "add"
    with pytest.raises(ArithLensError, match="unknown model"):
        al.load_model("no_such_model")


def test_tricase_gives_the_seeds_sets_labelled_by_row():
    batch = al.tricase(1)
    assert len(batch) == 900
    cols = batch.columns()
    assert {k: int((cols["qtype"] == k).sum()) for k in ("ADD", "SUB", "NEG")} == {"ADD": 300, "SUB": 300, "NEG": 300}
    for qtype, carry in (("ADD", "SC"), ("SUB", "MB"), ("NEG", "NB")):
        rows = cols["qtype"] == qtype
        assert sorted(set(cols["tricase_case"][rows].tolist())) == [8, 9, 10]
        assert (cols["tricase_case"][rows] == 8).sum() == 100
        # the row's carry label is the real carry/borrow out of digit 1, recomputed from the operands
        a, b = cols["a"][rows], cols["b"][rows]
        if qtype == "ADD":
            expected = (a % 100 + b % 100) >= 100
        elif qtype == "SUB":
            expected = (a % 100) < (b % 100)
        else:
            expected = (b % 100) < (a % 100)
        assert (cols["carry_out"][rows] == expected).all()
        assert (cols[f"{carry}1_real"][rows] == cols["carry_out"][rows]).all()
    assert all(q.endswith("=") and len(q) == 14 for q in cols["question"])
    one = al.tricase(2, {"neg": 7}, seed=3)
    assert len(one) == 7 and set(one.qtype.tolist()) == {int(al.QType.NEG)}
    assert np.array_equal(one.a, al.tricase(2, {"neg": 7}, seed=3).a)


def test_to_pandas_has_a_column_per_label():
    pd = pytest.importorskip("pandas")
    frame = al.tricase(0, {"ADD": 30}).to_pandas()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 30
    assert {"question", "answer", "qtype", "tricase_case", "carry_out", "SC0", "SC0_real"} <= set(frame.columns)
    assert (frame["a"] + frame["b"] == frame["result"]).all()


def test_questions_kinds():
    assert len(al.questions(50, op="sub", seed=1)) == 50
    assert set(al.questions(40, qtypes={"neg": 1}).qtype.tolist()) == {int(al.QType.NEG)}
    assert len(al.questions(kind="curated")) > 100
    with pytest.raises(ArithLensError, match="unknown question kind"):
        al.questions(kind="bogus")


# ---- the node study: typed, and the JSON the CLI writes -------------------------------------------


def test_study_json_is_the_cli_reference_and_round_trips(study):
    # floats within helpers.REL_TOL (summation order differs between CPU families), the rest exactly; the text
    # is laid out as the CLI's file is, number for number
    reference_text = (REFERENCE / "P18L0H3_study.json").read_text()
    assert_json_close(json.loads(study.to_json()), json.loads(reference_text))
    assert json_layout(study.to_json()) == json_layout(reference_text)
    again = NodeStudy.from_json(study.to_json())
    assert again == study and again.data == study.data
    stored = NodeStudy.from_json(REFERENCE / "P18L0H3_study.json")
    assert stored.node == study.node
    assert_json_close(stored.data, study.data)


def test_study_fields_are_typed_views_of_the_json(study):
    d = study.data
    assert study.node == "P18L0H3" and study.study_digit == d["study_digit"] == 1
    assert study.verdict.text == d["verdict"]["text"] and study.verdict.polysemantic is d["verdict"]["polysemantic"]
    assert study.verdict.per_qtype["SUB"].necessary is d["verdict"]["per_qtype"]["SUB"]["necessary"]
    resample = study.necessity.per_qtype["NEG"]["all"].rates["resample"].target_wrong
    assert (resample.k, resample.n) == (d["necessity"]["per_qtype"]["NEG"]["all"]["resample"]["target_wrong"]["k"], 90)
    assert study.sufficiency.per_qtype["ADD"].success.rate == d["sufficiency"]["per_qtype"]["ADD"]["success"]["rate"]
    assert study.representation["ADD"].probe_pair.accuracy == d["representation"]["ADD"]["probe_pair"]["accuracy"]
    assert study.attention.top[0].meaning in ("D1", "D'1")
    assert study.grid.r2_pair == d["grid"]["r2_pair"]
    assert len(study.necessity.groups) == len(d["necessity"]["groups"])
    with pytest.raises(Exception):
        study.node = "P0L0H0"  # frozen


def test_study_html_shows_the_verdict_and_a_row_per_qtype(study):
    page = study._repr_html_()
    assert "verdict" in page and "not polysemantic" in page
    assert page.count("<tr>") == 1 + len(study.qtypes)
    wrong = study.data["necessity"]["per_qtype"]["ADD"]["all"]["resample"]["target_wrong"]
    assert wrong["n"] == 90 and f"{100 * wrong['k'] / wrong['n']:.1f}%" in page  # ADD's resample-ablation row


def test_plots_return_figures_and_write_nothing(study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for plot in (study.plot_pca, study.plot_attention, study.plot_necessity, study.plot_grid):
        assert isinstance(plot(), Figure)
    assert list(tmp_path.iterdir()) == []


def test_from_json_refuses_what_is_not_a_study(tmp_path):
    with pytest.raises(ArithLensError, match="no JSON file"):
        NodeStudy.from_json(tmp_path / "missing.json")
    with pytest.raises(ArithLensError):
        NodeStudy.from_json('{"node": "P18L0H3"}')


# ---- PCA and the intervention primitives ----------------------------------------------------------


def test_node_output_is_the_heads_hook_result(model):
    batch = al.tricase(1, {"ADD": 30, "SUB": 30})
    out = al.node_output(model, "P18L0H3", batch)
    _, cache = al.run_with_cache(model, batch, [al.act_name("result", 0)])
    expected = cache["blocks.0.attn.hook_result"][:, 18, 3].double().numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_pca_labels_every_row_and_round_trips(model):
    batch = al.tricase(1, {"ADD": 90})
    p = al.pca(model, "P18L0H3", batch)
    assert p.n == 90 and p.digit == 1 and set(p.case) == {8, 9, 10}
    assert p.question[0] == batch.question_string(0) and p.answer[0] == batch.answer_string(0)
    x = p.array()
    assert abs(x[:, 0].mean()) < 1e-3 and x[:, 0].var() >= x[:, 1].var()
    assert 0 < p.evr[1] <= p.evr[0] <= 1
    assert al.NodePCA.from_json(p.to_json()) == p
    assert isinstance(p.plot(), Figure)
    assert "90 questions" in p._repr_html_()


def test_ablate_breaks_questions_only_when_the_node_matters(model):
    batch = al.tricase(1, {"ADD": 60})
    zero = al.zero_ablate(al.act_name("z", 0), 18, head=0)  # P18L0H0 copies D2, the base digit of A2
    fails = al.ablate(model, batch, [zero])
    assert fails.dtype == bool and fails.shape == (60,) and fails.any()
    assert not al.ablate(model, batch, []).any()


def test_act_name_spells_transformer_lens_hook_names():
    assert al.act_name("z", 0) == "blocks.0.attn.hook_z"
    assert al.act_name("pattern", 2) == "blocks.2.attn.hook_pattern"
    assert al.act_name("resid_pre", 1) == "blocks.1.hook_resid_pre"
    assert al.act_name("post", 1) == "blocks.1.mlp.hook_post"
    assert al.act_name("embed") == "hook_embed"
    assert al.node_site(al.Node.parse("P18L2H1")) == ("blocks.2.attn.hook_z", 1, None)
    assert al.node_site(al.Node.parse("P11L1MLP")) == ("blocks.1.mlp.hook_post", None, None)
    with pytest.raises(ArithLensError):
        al.act_name("z")


# ---- useful nodes --------------------------------------------------------------------------------


@pytest.mark.slow
def test_useful_nodes_match_the_cli_behaviour_file_and_round_trip(model):
    useful = al.useful_nodes(model)
    reference = (REFERENCE / "mix_d6_l3_h4_t10K_s372001_behavior.json").read_text()
    assert_json_close(json.loads(useful.behavior_json()), json.loads(reference))  # floats to helpers.REL_TOL
    assert UsefulNodes.from_json(useful.to_json()) == useful
    read = UsefulNodes.from_json(REFERENCE / "mix_d6_l3_h4_t10K_s372001_behavior.json")
    assert read.nodes == useful.nodes
    assert 18 in useful.useful_positions and any(n.name == "P18L0H3" for n in useful.nodes)
    assert isinstance(useful.plot_map("FailureFrequency"), Figure)
    assert "useful nodes" in useful._repr_html_()


# ---- interactive figures -------------------------------------------------------------------------


def test_interactive_pca_hover_shows_question_answer_and_class(model):
    pytest.importorskip("plotly")
    p = al.pca(model, "P18L0H3", al.tricase(1, {"SUB": 30}))
    fig = p.plot(interactive=True)
    hover = [t for trace in fig.data for t in trace.text]
    assert len(hover) == 30
    first = next(t for t in hover if t.startswith(p.question[0]))
    assert p.answer[0] in first and "SUB T" in first and "borrow out" in first


def test_interactive_map_hover_lists_the_node_tags():
    pytest.importorskip("plotly")
    useful = UsefulNodes.from_json(REFERENCE / "mix_d6_l3_h4_t10K_s372001_behavior.json")
    fig = useful.plot_map("FailureFrequency", interactive=True)
    hover = [h for row in fig.data[0].customdata for h in row if h]
    p18 = next(h for h in hover if h.startswith("<b>P18L0H3</b>"))
    tags = next(n.tags for n in useful.nodes if n.name == "P18L0H3")
    assert all(t in p18 for t in tags)


def test_report_embeds_plotly_once_and_loads_nothing_from_the_network(study):
    pytest.importorskip("plotly")
    from types import SimpleNamespace

    from arithlens.analysis.analyze import StudyEntry, StudyTarget
    from arithlens.report.interactive import report_section

    useful = UsefulNodes.from_json(REFERENCE / "mix_d6_l3_h4_t10K_s372001_behavior.json")
    entries = [StudyEntry(StudyTarget(al.Node.parse(n), ("test",)), study.data) for n in ("P18L0H3", "P18L0H3")]
    analysis = SimpleNamespace(spec=al.ModelSpec.parse("mix_d6_l3_h4_t10K_s372001"), nodes=useful.node_list(),
                               studies=entries)
    page = report_section(analysis)
    assert page.count("<script type=\"text/javascript\">/**") == 1  # plotly.js itself, once
    # the failure map (the behaviour file has no Algo tags, so no purpose map) and two PCA figures
    assert page.count('class="plotly-graph-div"') == 3
    assert " src=\"http" not in page


def test_every_short_hook_name_is_a_hook_of_the_model(model):
    from arithlens.model.hooks import _BLOCK, _GLOBAL

    names = set(model.hook_names)
    for short in _BLOCK:
        for layer in range(model.spec.n_layers):
            assert al.act_name(short, layer) in names, short
    assert {al.act_name(short) for short in _GLOBAL} <= names


def test_analysis_report_round_trips_and_reads_an_analysis_json(study):
    from arithlens.results import AnalysisReport

    useful = UsefulNodes.from_json(REFERENCE / "mix_d6_l3_h4_t10K_s372001_behavior.json")
    summary = {"model": study.model, "heads": 64, "mlps": 33,
               "studies": [{"node": study.node, "study_digit": 1, "polysemantic": False, "roles": [],
                            "verdict": study.verdict.text}]}
    data = {"model": study.model, "summary": summary, "useful": useful.data, "search": None,
            "studies": [study.data]}
    report = AnalysisReport.from_json(json.dumps(data))
    assert report.study("P18L0H3") == study and report.useful.nodes == useful.nodes
    assert AnalysisReport.from_json(report.to_json()) == report
    assert "P18L0H3" in report._repr_html_() and "64 useful heads" in report._repr_html_()
    only_summary = AnalysisReport.from_json(json.dumps(summary))
    assert only_summary.summary == summary and only_summary.studies == ()
    with pytest.raises(ArithLensError, match="no study"):
        report.study("P0L0H0")
