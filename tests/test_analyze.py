"""`arithlens analyze`: which heads get a node study, the pipeline on a tiny hand-built model, the files and the
offline report it writes, and bad models (exit 2, nothing written)."""

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import arithlens

from arithlens.analysis.analyze import (
    AnalyzeOptions,
    analyze,
    carry_like_tags,
    study_targets,
)
from arithlens.analysis.node_study import StudyOptions
from arithlens.analysis.nodes import Node, NodeList, UsefulNode
from arithlens.errors import ArithLensError
from arithlens.model import HookedTransformer, ModelSpec, save_checkpoint
from arithlens.report.html import write_report

# 2 digits: D1 D0 OPR D'1 D'0 = A3 A2 A1 A0 at P0..P9; A2 is computed at P6.
TINY = ModelSpec.parse("mix_d2_l1_h2_t1K_s000001", d_model=100, d_head=16, d_mlp=16)
SMALL = StudyOptions(questions=30, pairs=10, per_case=20, mixed=100, permutations=99)
FAST = AnalyzeOptions(questions=3000, pairs=20, study=SMALL, founding_study=SMALL)


def tiny_model() -> HookedTransformer:
    """test_useful's planted copy model (head 0 copies D0 to P8, head 1 copies D1 to P7; the sign and A2 = 0 come
    from position embeddings) as a mixed model: it answers a + 0 and a - 0 right, and nothing else."""
    from test_useful import planted_model

    model = HookedTransformer(TINY)
    model.load_state_dict(planted_model().state_dict())
    return model.eval()


def tiny_analysis_report(out: Path) -> Path:
    """The analysis of the tiny model and its report.html in `out` (a second or two)."""
    analysis = analyze(tiny_model(), FAST)
    return write_report(analysis, out, card={"training": {"steps": 1000}}, source="tiny planted model").report


def useful(name: str, *tags: str) -> UsefulNode:
    un = UsefulNode(Node.parse(name))
    for tag in tags:
        un.add(tag)
    return un


# ---------------------------------------------------------------------------------------------------
# Which heads are studied


def test_carry_like_tags_are_grouped_by_operation_strong_and_weak_alike():
    un = useful("P18L0H0", "Algo:A1.SC", "Algo:A1.MB.A2", "Algo:A2.SA", "Algo:OPR", "Algo:A1.NZ")
    assert carry_like_tags(un) == {"ADD": ["A1.SC"], "SUB": ["A1.MB.A2"], "NEG": ["A1.NZ"]}
    assert carry_like_tags(useful("P18L0H2", "Algo:A2.SA", "Algo:A2.MD", "Algo:A2.ND")) == {}


def test_study_targets_are_the_layer0_heads_at_a2_then_every_multi_operation_carry_head():
    spec = ModelSpec.parse("mix_d6_l3_h4_t15K_s372001", d_model=128, d_head=32)
    nodes = NodeList([
        useful("P18L0H0", "Algo:A1.SC", "Algo:A1.MB", "Algo:A1.NB"),
        useful("P10L0H2", "Algo:A2.ST", "Algo:A2.MT.A3"),  # a weak tag counts
        useful("P15L2H2", "Algo:A4.SS", "Algo:A4.SC", "Algo:A4.NZ"),
        useful("P19L0H1", "Algo:A0.SC"),  # one operation only
        useful("P16L0H0", "Algo:A4.SA", "Algo:A4.MD", "Algo:A4.ND"),  # base digits, not carries
        useful("P17L0MLP", "Algo:A2.SC", "Algo:A2.MB"),  # not a head
    ])
    targets = study_targets(nodes, spec)
    assert [t.node.name for t in targets] == ["P18L0H0", "P18L0H1", "P18L0H2", "P18L0H3", "P10L0H2", "P15L2H2"]
    first = targets[0]
    assert first.reasons[0].startswith("layer-0 head at P18, where A2 is computed")
    assert first.reasons[1] == "carry/borrow-like tags for 3 operations: A1.SC A1.MB A1.NB"
    assert first.operations == ("ADD", "SUB", "NEG") and first.digit == 1
    assert targets[1].reasons == ("layer-0 head at P18, where A2 is computed",) and targets[1].digit is None
    assert [t.founding for t in targets] == [True] * 4 + [False] * 2
    assert targets[4].operations == ("ADD", "SUB") and targets[4].digit == 2
    # A4.SS passes on a carry made by digit 3; A4.SC and A4.NZ: digits 4 and 3. The most common wins, ties low.
    assert targets[5].tags == ("A4.SS", "A4.SC", "A4.NZ") and targets[5].digit == 3


def test_founding_heads_get_the_node_command_s_own_study_sizes():
    spec = ModelSpec.parse("mix_d6_l3_h4_t15K_s372001", d_model=128, d_head=32)
    first, extra = study_targets(NodeList([useful("P10L0H2", "Algo:A2.ST", "Algo:A2.MT")]), spec)[::4]
    options = AnalyzeOptions(seed=7)
    assert options.study_options(first) == StudyOptions(seed=7)
    assert options.study_options(extra, 2) == replace(options.study, seed=7, digit=2)
    assert options.study_options(extra).questions < StudyOptions().questions
    with pytest.raises(ArithLensError, match="30 permutations cannot give a p-value <= 0.01"):
        AnalyzeOptions(study=StudyOptions(permutations=30))


# ---------------------------------------------------------------------------------------------------
# The pipeline


def test_analyze_tags_the_copy_heads_and_studies_the_heads_at_p6_with_progress():
    seen = []
    analysis = analyze(tiny_model(), FAST, progress=lambda stage, done, total, detail: seen.append((stage, detail)))
    assert analysis.useful.useful_positions == [7, 8]
    assert analysis.nodes.names == ["P7L0H1", "P8L0H0"]
    assert [e.name for e in analysis.studies] == ["P6L0H0", "P6L0H1"]
    assert all(e.error is None and e.data["node"] == e.name for e in analysis.studies)
    # Both heads read the constant operator token at P6: they carry no carry or borrow.
    assert not any(e.data["verdict"]["polysemantic"] for e in analysis.studies)
    assert analysis.search is not None and analysis.search_note is None
    assert {"positions", "nodes", "search", "studies"} <= {stage for stage, _ in seen}
    assert ("studies", "P6L0H1") in seen
    assert set(analysis.timings) == {"useful", "faithfulness", "edges", "search", "studies"}
    summary = analysis.summary()
    assert summary["useful_positions"] == [7, 8] and summary["heads"] == 2 and summary["mlps"] == 0
    assert [s["node"] for s in summary["studies"]] == ["P6L0H0", "P6L0H1"]


def test_max_studies_keeps_the_founding_heads_first_and_lists_the_rest():
    analysis = analyze(tiny_model(), AnalyzeOptions(**{**vars(FAST), "max_studies": 1, "search": False}))
    assert [e.name for e in analysis.studies] == ["P6L0H0"]
    assert [t.node.name for t in analysis.skipped_studies] == ["P6L0H1"]
    assert analysis.search is None and "not run" in analysis.search_note


def test_report_is_one_offline_page_with_every_section(tmp_path):
    report = tiny_analysis_report(tmp_path)
    page = report.read_text()
    assert report.name == "report.html"
    assert not re.search(r"https?://", page), "the page must not name any network resource"
    assert "<script" not in page.lower()
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith(("data:", "#")) for s in sources)
    for section in ("card", "summary", "positions", "maps", "quanta", "studies", "search", "timings"):
        assert f'<section id="{section}">' in page
    # the page opens (in its header, before any section) with the founding question answered for this model
    answer = page.index('<p class="answer"><b>In mix_d2_l1_h2_t1K_s000001 no layer-0 head at P6 does carry and '
                        'borrow; ')
    assert answer < page.index("<section")
    assert page.count('class="figure-pca"') == 2 and page.count('class="quanta-map"') >= 4
    assert "Quanta at P7 (A2, predicts A1)" in page and "Quanta at P8 (A1, predicts A0)" in page
    # The figures are written beside the page too.
    assert (tmp_path / "P6L0H0_pca.png").is_file() and (tmp_path / "P6L0H1_grid.png").is_file()


class _Recorder:
    """A drawer that only records what `analyze` hands it, and when."""

    def __init__(self):
        self.calls = []

    def tagged(self, analysis):
        self.calls.append(("tagged", analysis.search is not None, len(analysis.studies)))

    def studied(self, entry):
        self.calls.append(("studied", entry.name, entry.data is not None))


def test_analyze_hands_the_drawer_the_tagged_nodes_then_each_study_as_it_finishes():
    recorder = _Recorder()
    analysis = analyze(tiny_model(), FAST, drawer=recorder)
    # maps are queued after the search (the nodes' final tags), before any study; each study right after it ran
    assert recorder.calls == [("tagged", True, 0), ("studied", "P6L0H0", True), ("studied", "P6L0H1", True)]
    assert [e.data for e in analysis.studies] == [e.data for e in analyze(tiny_model(), FAST).studies]


@pytest.mark.parametrize("workers, overlap", [(1, True), (2, True), (2, False)])
def test_figures_drawn_during_the_analysis_are_the_files_drawn_after_it(tmp_path, workers, overlap):
    from arithlens.report.html import ReportDrawer

    after = tiny_analysis_report(tmp_path / "after").parent
    with ReportDrawer(tmp_path / "during", workers=workers, overlap=overlap) as drawer:
        analysis = analyze(tiny_model(), FAST, drawer=drawer)
        files = write_report(analysis, tmp_path / "during", card={"training": {"steps": 1000}},
                             source="tiny planted model", drawer=drawer)
    names = sorted(p.name for p in after.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "during").iterdir()) and len(names) > 10
    for name in names:
        if name != "report.html":  # the page carries its creation time
            assert (after / name).read_bytes() == (tmp_path / "during" / name).read_bytes(), name
    assert set(files.figures) == {"P6L0H0", "P6L0H1"} and {"maps", "figures", "report"} == set(files.timings)
    assert drawer._waiting == []  # held-back jobs were all handed over
    with pytest.raises(ArithLensError, match="draws into"):
        write_report(analysis, tmp_path / "elsewhere", drawer=ReportDrawer(tmp_path / "during"))


def test_without_a_spare_core_the_drawer_holds_every_job_until_the_end(tmp_path):
    from arithlens.report.html import ReportDrawer

    with ReportDrawer(tmp_path / "out", workers=2, overlap=False) as drawer:
        analysis = analyze(tiny_model(), FAST, drawer=drawer)
        assert drawer.pool._pool is None  # no worker started while the analysis ran
        held = len(drawer._waiting)
        write_report(analysis, tmp_path / "out", drawer=drawer)
    # every map and table (and the position-failure chart), the edge circuit's graph, then four figures for each of
    # the two studies
    from arithlens.report.quanta_maps import map_jobs

    assert analysis.edge_circuit is not None  # analyze finds the edge circuit by default
    assert held == len(map_jobs(analysis.nodes, TINY, tmp_path)) + 1 + 1 + 2 * 4
    assert (tmp_path / "out" / "P6L0H1_grid.png").is_file()


def test_a_failed_analysis_cancels_the_drawing_not_yet_started(tmp_path):
    from arithlens.report.html import ReportDrawer

    class Boom(Exception):
        pass

    drawer = ReportDrawer(tmp_path / "out", workers=2)
    with pytest.raises(Boom), drawer:
        drawer.tagged(analyze(tiny_model(), AnalyzeOptions(**{**vars(FAST), "max_studies": 0})))
        raise Boom
    assert drawer.pool._pool is None  # shut down: no worker process left behind


# ---------------------------------------------------------------------------------------------------
# The command


def test_cli_writes_the_report_and_the_json_files(tmp_path):
    save_checkpoint(tiny_model(), TINY, tmp_path / "tiny")
    out = tmp_path / "out"
    proc = arithlens("analyze", "--model", str(tmp_path / "tiny"), "--out", str(out), "--questions", "3000", "--pairs", "20",
                   "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary == json.loads((out / "analysis.json").read_text())
    base = TINY.base_name
    for name in ("report.html", "analysis.json", f"{base}_behavior.json", f"{base}_algorithm.json",
                 f"{base}_search.json", "P6L0H0_study.json", "P6L0H1_study.json", "faithfulness.json"):
        assert name in summary["files"] and (out / name).is_file(), name
    assert sorted(p.name for p in out.iterdir()) == sorted(summary["files"])  # nothing else, no staging left
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    behaviour = json.loads((out / f"{base}_behavior.json").read_text())
    assert [(r["position"], r["num"]) for r in behaviour] == [(7, 1), (8, 0)]
    study = json.loads((out / "P6L0H0_study.json").read_text())
    assert study["node"] == "P6L0H0" and study["verdict"]["text"] == summary["studies"][0]["verdict"]
    assert {"model", "useful", "faithfulness", "search", "studies", "maps", "figures", "report",
            "total"} <= set(summary["timings"])
    faithful = json.loads((out / "faithfulness.json").read_text())
    assert faithful["nodes"] == ["P7L0H1", "P8L0H0"] and [r["n"] for r in faithful["qtypes"]] == [2000] * 3
    assert summary["faithfulness"]["qtypes"]["ADD"]["correct"] == faithful["qtypes"][0]["correct"]


def test_cli_prints_a_short_summary(tmp_path):
    save_checkpoint(tiny_model(), TINY, tmp_path / "tiny")
    proc = arithlens("analyze", "--model", str(tmp_path / "tiny"), "--out", str(tmp_path / "out"), "--questions", "3000",
                   "--no-search", "--max-studies", "1", "--threads", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    answer, *lines = proc.stdout.splitlines()
    # the founding question first: one of the two layer-0 heads at A2's position was studied, and has no role
    assert answer == (f"In {TINY.name} no studied layer-0 head at P6 (P6L0H0; 1 of 2) does carry and borrow; no "
                      "studied head at P6 does either.")
    assert lines[0].startswith(f"{TINY.name}: ") and "2 useful positions, 2 useful heads" in lines[0]
    assert lines[1] == "search not run (--no-search)"
    assert lines[2].startswith("faithfulness, useful (2 of 30 nodes, mean): ADD ") and "n=2000" in lines[2]
    assert lines[3] == "node studies (1):" and lines[4].startswith("  P6L0H0    not polysemantic")
    assert lines[5] == "  not studied (--max-studies): P6L0H1"
    assert lines[-1].startswith(f"report: {tmp_path / 'out' / 'report.html'}")
    assert "studies" not in proc.stderr and "\u2501" not in proc.stderr  # --quiet: no progress bars
    assert not (tmp_path / "out" / f"{TINY.base_name}_algorithm.json").exists()


def random_model_dir(tmp_path: Path) -> Path:
    save_checkpoint(HookedTransformer(TINY, seed=5).eval(), TINY, tmp_path / "random")
    return tmp_path / "random"


def corrupt_model_dir(tmp_path: Path) -> Path:
    save_checkpoint(tiny_model(), TINY, tmp_path / "corrupt")
    (tmp_path / "corrupt" / "model.safetensors").write_bytes(b"not a safetensors file")
    return tmp_path / "corrupt"


@pytest.mark.parametrize("make_model, message", [
    (lambda tmp: Path("no/such/model/dir"), "unknown model 'no/such/model/dir'"),
    (corrupt_model_dir, "is corrupt or unreadable"),
    (random_model_dir, "answers none of the"),  # nothing to ablate
])
def test_bad_model_is_one_line_error_exit_2_and_writes_nothing(tmp_path, make_model, message):
    model = make_model(tmp_path)
    out = tmp_path / "out"
    proc = arithlens("analyze", "--model", str(model), "--out", str(out), "--questions", "50", "--quiet")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and message in proc.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_bad_options_fail_before_any_work(tmp_path):
    proc = arithlens("analyze", "--model", "no/such/model", "--out", str(tmp_path / "out"), "--pairs", "0")
    assert proc.returncode == 2 and proc.stderr == "error: --pairs must be at least 1, not 0\n"
    assert not (tmp_path / "out").exists()
    (tmp_path / "file").write_text("x")
    proc = arithlens("analyze", "--model", "no/such/model", "--out", str(tmp_path / "file"))
    assert proc.returncode == 2 and proc.stderr == f"error: --out '{tmp_path / 'file'}' is a file, not a directory\n"
