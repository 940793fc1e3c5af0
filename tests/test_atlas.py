"""The atlas: nodes aligned across models by role (not by head index), the founding question per model, the
adder as a reference, and the files `arithlens atlas` writes. Planted analyses, no training."""

from __future__ import annotations

import json

import pytest
from helpers import arithlens_here

from arithlens.analysis.atlas import ModelResult, atlas, founding_question, load_result, node_role
from arithlens.analysis.nodes import NodeList
from arithlens.errors import ArithLensError
from arithlens.model.spec import ModelSpec

MIX = "mix_d6_l3_h4_t10K_s3720{:02d}"
ADDER = "add_d6_l2_h3_t8K_s372001"
# Six digits: D2 at P3, D1 at P4, OPR at P6, D'1 at P11, D0 at P5; A2 is computed at P18, A0 at P20.
CARRY_TAGS = ["Algo:A1.SC", "Algo:A1.MB", "Algo:A1.NB", "Attn:P4=55", "Attn:P11=44"]
DIGIT_TAGS = ["Algo:A2.SA", "Algo:A2.MD", "Algo:A2.ND", "Attn:P3=90"]
OPR_TAGS = ["Algo:OPR", "Attn:P6=80", "Attn:P18=15"]


def _head(position: int, head: int, tags: list[str], layer: int = 0) -> dict:
    return {"position": position, "layer": layer, "is_head": True, "num": head, "tags": ["Fail%:10", *tags]}


def _study(node: str, roles: list[str], shared: bool | None) -> dict:
    """The parts of a node study's data the atlas reads."""
    features = {"ADD": "A1.SC", "SUB": "A1.MB", "NEG": "A1.NB"}
    per = {qt: {"role": f in roles, "feature": f} for qt, f in features.items()}

    def probe(acc):
        return {"accuracy": acc, "p_value": 0.0099}

    return {
        "node": node, "study_digit": 1,
        "verdict": {"polysemantic": len(roles) >= 2, "roles": roles, "shared_direction": shared,
                    "operator_blind": True, "per_qtype": per, "text": "planted"},
        "representation": {qt: {"probe_carry": probe(0.99 if per[qt]["role"] else 0.7), "probe_pair": probe(0.8)}
                           for qt in per},
        "necessity": {"per_qtype": {qt: {"all": {"resample": {"target_wrong": {"rate": 0.3}}}} for qt in per}},
        "sufficiency": {"applicable": True, "per_qtype": {qt: {"success": {"rate": 0.9}} for qt in per}},
        "shared": {"direction_cosines": {p: {"cosine": 0.9 if shared else 0.1} for p in ("ADD~SUB", "ADD~NEG", "SUB~NEG")}},
    }


def _result(name: str, records: list[dict], studies: list[dict] = ()) -> ModelResult:
    return ModelResult(ModelSpec.parse(name), NodeList.from_records(records), {s["node"]: s for s in studies})


def planted() -> list[ModelResult]:
    """Three mixed seeds with the same three layer-0 roles at P18 on permuted head indices, and an adder."""
    a = _result(MIX.format(1), [_head(18, 3, CARRY_TAGS), _head(18, 0, DIGIT_TAGS), _head(18, 1, OPR_TAGS)],
                [_study("P18L0H3", ["A1.SC", "A1.MB", "A1.NB"], True)])
    b = _result(MIX.format(2), [_head(18, 1, CARRY_TAGS), _head(18, 2, DIGIT_TAGS), _head(18, 0, OPR_TAGS)],
                [_study("P18L0H1", ["A1.SC", "A1.MB"], False)])
    c = _result(MIX.format(3), [_head(18, 2, CARRY_TAGS), _head(18, 3, DIGIT_TAGS), _head(18, 0, OPR_TAGS),
                                _head(20, 0, ["Algo:A0.SA", "Attn:P5=70"], layer=1)],
                [_study("P18L0H2", ["A1.SC"], None)])
    adder = _result(ADDER, [_head(18, 2, ["Algo:A1.SC", "Attn:P4=50", "Attn:P11=49"]),
                            _head(18, 0, ["Algo:A2.SA", "Attn:P3=88"])])
    return [a, b, c, adder]


def _row(data: dict, label: str) -> dict:
    rows = [r for r in data["roles"] if r["label"] == label]
    assert len(rows) == 1, [r["label"] for r in data["roles"]]
    return rows[0]


def _nodes(row: dict) -> dict[str, list[str]]:
    return {m: [c["node"] for c in cells] for m, cells in row["models"].items()}


def test_the_same_role_on_different_head_indices_is_one_row():
    data = atlas(planted())
    carry = _row(data, "A2 L0 head A1.MB A1.NB A1.SC | attends D'1 D1")
    assert _nodes(carry) == {MIX.format(1): ["P18L0H3"], MIX.format(2): ["P18L0H1"], MIX.format(3): ["P18L0H2"]}
    assert carry["everywhere"] and carry["in_models"] == 3
    digit = _row(data, "A2 L0 head A2.MD A2.ND A2.SA | attends D2")
    assert _nodes(digit) == {MIX.format(1): ["P18L0H0"], MIX.format(2): ["P18L0H2"], MIX.format(3): ["P18L0H3"]}
    operator = _row(data, "A2 L0 head OPR | attends OPR")
    assert [c[0] for c in _nodes(operator).values()] == ["P18L0H1", "P18L0H0", "P18L0H0"]
    # Head 0 of the first two models plays two different roles.
    rows_of_h0 = {r["label"] for r in data["roles"] if "P18L0H0" in _nodes(r).get(MIX.format(1), [])
                  or "P18L0H0" in _nodes(r).get(MIX.format(2), [])}
    assert len(rows_of_h0) == 2
    only_c = _row(data, "A0 L1 head A0.SA | attends D0")
    assert only_c["in_models"] == 1 and not only_c["everywhere"]
    assert data["roles_in_some_models"] == 1
    assert sorted(data["roles_in_every_model"]) == sorted([carry["label"], digit["label"], operator["label"]])


def test_functions_align_by_tag_whatever_node_carries_them():
    """By function (answer digit + one strong tag), the carry into A2 is one function in all three planted seeds
    although it sits on three head indices; a function at layer 0 in two seeds and layer 2 in a third is found in
    every model but not in one place; the adder's own functions are not counted."""
    models = planted()
    moved = _result(MIX.format(3), [_head(18, 2, CARRY_TAGS, layer=2), _head(18, 3, DIGIT_TAGS),
                                    _head(18, 0, OPR_TAGS)])
    data = atlas([models[0], models[1], moved, models[3]])
    by = {f["label"]: f for f in data["functions"]}
    sc = by["A2 A1.SC"]
    assert sc["everywhere"] and sc["in_models"] == 3 and sc["same_place_everywhere"] == []
    assert {m: [c["node"] for c in v] for m, v in sc["models"].items()} == {
        MIX.format(1): ["P18L0H3"], MIX.format(2): ["P18L0H1"], MIX.format(3): ["P18L2H2"], ADDER: ["P18L0H2"]}
    assert by["A2 A2.SA"]["same_place_everywhere"] == ["L0 head"]
    # every main model has A1.SC/MB/NB, A2.SA/MD/ND and OPR at A2: 7 functions, 4 of them in one place
    assert data["functions_line"].startswith("by function (answer digit and one strong sub-task tag, any node): 7 of 7 "
                                             "functions are found in every one of the 3 models; 4 of those sit in one "
                                             "layer and node kind in every model")


def test_the_adder_is_a_reference_whose_shared_roles_are_marked():
    data = atlas(planted())
    assert [m["reference"] for m in data["models"]] == [False, False, False, True]
    carry = _row(data, "A2 L0 head A1.MB A1.NB A1.SC | attends D'1 D1")
    assert carry["reference_shares"] == [ADDER]  # the adder's A1.SC head is the mixed head restricted to ADD
    assert [c["node"] for c in carry["reference_cells"][ADDER]] == ["P18L0H2"]
    assert _row(data, "A2 L0 head A2.MD A2.ND A2.SA | attends D2")["reference_shares"] == [ADDER]
    assert _row(data, "A2 L0 head OPR | attends OPR")["reference_shares"] == []
    own = _row(data, "A2 L0 head A1.SC | attends D'1 D1")  # the adder's own row does not count as a main model
    assert own["in_models"] == 0 and not own["everywhere"] and own["reference_shares"] == []
    assert len(data["roles_shared_with_reference"]) == 2


def test_the_founding_question_is_answered_per_model_from_the_studies():
    data = atlas(planted())
    found = {f["model"]: f for f in data["founding"]}
    assert data["headline"] == "2 of 3 models use one layer-0 head for carry and borrow at A2"
    a, b, c = (found[MIX.format(i)] for i in (1, 2, 3))
    assert (a["carry_and_borrow_heads"], b["carry_and_borrow_heads"], c["carry_and_borrow_heads"]) == (
        ["P18L0H3"], ["P18L0H1"], [])
    assert "one shared axis" in a["text"] and "separate axes" in b["text"]
    assert c["holders_by_study"] == {"A1.SC": ["P18L0H2"], "A1.MB": [], "A1.NB": []}
    assert c["holders_by_tag"]["A1.MB"] == ["P18L0H2"]  # the search's tag alone would have said yes
    head = next(h for h in a["heads"] if h["node"] == "P18L0H3")
    assert head["per_qtype"]["ADD"] == {"probe": 0.99, "resample_wrong": 0.3, "patch_success": 0.9, "role": True}
    assert head["direction_cosines"]["ADD~SUB"] == 0.9
    assert found[ADDER]["position"] == "P18" and not found[ADDER]["one_head_carry_and_borrow"]


def test_carry_and_borrow_made_in_a_later_layer_are_listed_beside_layer_0():
    """A model whose layer-0 heads at P18 hold nothing but whose layer-2 heads there hold the carry and borrows:
    the headline (about layer 0) stays no, and `later_layers` names the heads with their numbers; a studied head
    at another position or with no founding role is not listed."""
    model = _result(MIX.format(6), [_head(18, 1, DIGIT_TAGS), _head(18, 0, CARRY_TAGS, layer=2),
                                    _head(18, 2, CARRY_TAGS, layer=2)],
                    [_study("P18L0H1", [], None), _study("P18L2H0", ["A1.SC", "A1.MB", "A1.NB"], False),
                     _study("P18L2H2", ["A1.NB"], None), _study("P17L2H0", ["A1.SC"], None),
                     _study("P18L1H3", [], None)])
    answer = founding_question(model)
    assert not answer["one_head_carry_and_borrow"] and answer["carry_and_borrow_heads"] == []
    assert [(h["node"], h["layer"], h["roles"]) for h in answer["later_layers"]] == [
        ("P18L2H0", 2, ["A1.SC", "A1.MB", "A1.NB"]), ("P18L2H2", 2, ["A1.NB"])]
    assert answer["later_layers"][0]["per_qtype"]["SUB"]["resample_wrong"] == 0.3
    assert answer["text"].endswith("in layer 2: P18L2H0 holds A1.SC and A1.MB and A1.NB, separate axes; "
                                   "in layer 2: P18L2H2 holds A1.NB")
    assert atlas([model])["headline"] == "0 of 1 models use one layer-0 head for carry and borrow at A2"


def test_without_studies_the_founding_question_falls_back_to_algo_tags():
    bare = _result(MIX.format(4), [_head(18, 1, CARRY_TAGS)])
    answer = founding_question(bare)
    assert answer["evidence"] == "Algo tags" and answer["carry_and_borrow_heads"] == ["P18L0H1"]


def test_attention_below_the_threshold_is_not_part_of_a_role():
    result = _result(MIX.format(5), [_head(18, 1, ["Algo:A1.SC", "Attn:P4=70", "Attn:P11=19"])])
    assert node_role(next(iter(result.nodes)), result.spec).attends == ("D1",)


def test_a_model_given_twice_is_refused():
    a = planted()[0]
    with pytest.raises(ArithLensError, match="given twice"):
        atlas([a, a])


def _write_folder(result: ModelResult, directory):
    directory.mkdir()
    (directory / "analysis.json").write_text(json.dumps({"model": result.name}))
    result.nodes.save(directory / f"{result.spec.base_name}_behavior.json")
    for node, data in result.studies.items():
        (directory / f"{node}_study.json").write_text(json.dumps(data))


def test_the_command_reads_analysis_folders_and_writes_json_figure_and_page(monkeypatch, capsys, tmp_path):
    folders = []
    for i, result in enumerate(planted()):
        _write_folder(result, tmp_path / f"m{i}")
        folders.append(str(tmp_path / f"m{i}"))
    assert load_result(folders[0]).studies.keys() == {"P18L0H3"}
    code, out, err = arithlens_here(monkeypatch, capsys, "atlas", "--models", *folders, "--out", str(tmp_path / "at"))
    assert code == 0, err
    assert out.splitlines()[0] == "2 of 3 models use one layer-0 head for carry and borrow at A2"
    data = json.loads((tmp_path / "at" / "atlas.json").read_text())
    assert len(data["models"]) == 4 and data["roles_in_every_model"]
    assert (tmp_path / "at" / "atlas.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "at" / "atlas.html").read_text()
    assert "not measured" in out  # planted folders hold no faithfulness.json
    assert "2 of 3 models use one layer-0 head" in page and page.count("<tr") == len(data["roles"]) + 1 + 4 + 1 + 4 + 1


def test_a_folder_without_an_analysis_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    code, _, err = arithlens_here(monkeypatch, capsys, "atlas", "--models", str(tmp_path), "--out", str(tmp_path / "o"))
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1


# ---------------------------------------------------------------------------------------------------
# Each model's useful set, alone: measured by the analysis, written beside it, read back, shown in the atlas


@pytest.fixture(scope="module")
def tiny_analysis():
    """The tiny planted copy model of test_analyze (two copy heads, P7L0H1 and P8L0H0, do all the work) analysed
    without search or studies, its useful set scored on 400 fresh questions per qtype."""
    from dataclasses import replace

    from test_analyze import FAST, tiny_model

    from arithlens.analysis.analyze import analyze

    model = tiny_model()
    return model, analyze(model, replace(FAST, search=False, max_studies=0, faithfulness=400))


def test_the_useful_set_alone_scores_what_ablating_everything_else_by_hand_scores(tiny_analysis):
    from arithlens.analysis.faithfulness import (FAITHFULNESS_SEED, REFERENCE_QUESTIONS, STREAM_EVAL,
                                                 STREAM_REFERENCE, ablation_hook_names, fresh_questions,
                                                 reference_questions, rng_for)
    from arithlens.interventions import Engine, compute_means, mean_ablate

    model, analysis = tiny_analysis
    spec, found = model.spec, analysis.faithfulness
    assert found.label == "useful" and found.nodes == ("P7L0H1", "P8L0H0") and found.seed == FAITHFULNESS_SEED
    # By hand: the same questions and means, every other head and both MLP layers mean-ablated through the engine.
    questions = fresh_questions(spec, 400, rng_for(FAITHFULNESS_SEED, STREAM_EVAL))
    means = compute_means(model, reference_questions(spec, REFERENCE_QUESTIONS,
                                                     rng_for(FAITHFULNESS_SEED, STREAM_REFERENCE)),
                          ablation_hook_names(spec))
    kept = {(7, 1), (8, 0)}
    ivs = [mean_ablate(means, "blocks.0.attn.hook_z", [p for p in range(spec.n_ctx) if (p, h) not in kept], head=h)
           for h in range(spec.n_heads)]
    ivs.append(mean_ablate(means, "blocks.0.mlp.hook_post", range(spec.n_ctx)))
    engine = Engine(model, questions)
    right, clean = ~engine.outcome(ivs).wrong.any(1), ~engine.outcome([]).wrong.any(1)
    for qtype, code in (("ADD", 0), ("SUB", 1), ("NEG", 2)):
        rows = questions.qtype == code
        row = found[qtype]
        assert row.n == int(rows.sum()) == 400
        assert row.correct == int(right[rows].sum()) and row.clean_correct == int(clean[rows].sum())
    # The two copy heads are the whole mechanism: alone they answer every question the model answers (a +- 0).
    assert [r.correct for r in found.qtypes] == [r.clean_correct for r in found.qtypes]
    assert found["ADD"].correct > found["ADD"].ablated_correct
    assert analysis.summary()["faithfulness"]["qtypes"]["SUB"]["correct"] == found["SUB"].correct
    assert "faithfulness" in analysis.timings


def test_faithfulness_json_round_trips_and_an_older_folder_still_loads(tiny_analysis, tmp_path):
    from arithlens.analysis.analyze import faithfulness_record
    from arithlens.analysis.atlas import FAITHFULNESS_FILE, result_from_analysis
    from arithlens.report.atlas import write_atlas
    from arithlens.sweep import write_analysis

    model, analysis = tiny_analysis
    folder = tmp_path / model.spec.name
    folder.mkdir()
    write_analysis(analysis, folder, source="tiny")
    written = json.loads((folder / FAITHFULNESS_FILE).read_text())
    assert "seconds" not in written  # no wall time: a sweep's files repeat byte for byte
    assert written == faithfulness_record(analysis.faithfulness) == result_from_analysis(analysis).faithfulness
    assert written["qtypes"][0]["correct"] == analysis.faithfulness["ADD"].correct
    loaded = load_result(folder)
    assert loaded.faithfulness == written
    data = atlas([loaded])
    entry = data["models"][0]["faithfulness"]
    add = analysis.faithfulness["ADD"]
    assert entry["n_nodes"] == 2 and entry["n_all"] == model.spec.n_ctx * (2 + 1)  # 2 heads and the MLP a position
    assert entry["qtypes"]["ADD"] == {"exact": add.exact, "ci": list(add.ci), "n": 400, "correct": add.correct,
                                      "clean_correct": add.clean_correct}
    assert entry["min_exact"] == min(r.exact for r in analysis.faithfulness.qtypes)
    assert f"{model.spec.name} 2 nodes" in data["faithfulness_line"]
    page = write_atlas(data, tmp_path / "atlas")[2].read_text()
    assert f"2 of {written['n_all']}" in page and f"{100 * add.exact:.1f}% [{100 * add.ci[0]:.1f}" in page
    # A folder analysed before faithfulness was measured: it loads, and the atlas says so.
    (folder / FAITHFULNESS_FILE).unlink()
    older = atlas([load_result(folder)])
    assert older["models"][0]["faithfulness"] is None and "not measured" in older["faithfulness_line"]
    assert "not measured" in write_atlas(older, tmp_path / "older")[2].read_text()


def test_the_api_atlas_takes_analyses_and_keeps_their_faithfulness(tiny_analysis):
    import arithlens as al

    model, analysis = tiny_analysis
    report = al.analyze(model, questions=3000, pairs=20, max_studies=0, run_search=False, faithfulness=400,
                        edge_card=20)
    assert report.data["faithfulness"]["qtypes"][1]["correct"] == analysis.faithfulness["SUB"].correct
    # the front door's record holds the edge circuit and its ablation card, as analysis.json does
    assert report.data["edge_circuit"]["n_edges"] > 0 and report.data["edge_card"]["n_edges"] == report.data[
        "edge_circuit"]["n_edges"]
    assert {r["n"] for r in report.data["edge_card"]["rows"]} <= set(range(1, 21))
    from_report, from_analysis = al.atlas([report]), al.atlas([analysis])
    assert from_report["models"][0]["faithfulness"] == from_analysis["models"][0]["faithfulness"]
    assert from_report["models"][0]["faithfulness"]["qtypes"]["NEG"]["correct"] == analysis.faithfulness["NEG"].correct
    with pytest.raises(ArithLensError, match="not int"):
        al.atlas([3])


def test_with_circuit_each_model_shows_the_circuit_the_planted_backup_heads_make(monkeypatch, tmp_path):
    """The planted backup-head adder: no head is useful alone, so the useful set alone is the all-ablated model,
    while its circuit is the two heads that back each other up (found and validated on its a+0 questions)."""
    from functools import partial

    from planted import BACKUP_SPEC, backup_heads_model, plus_zero_questions

    import arithlens.analysis.circuit as circuit_module
    from test_analyze import SMALL

    from arithlens.analysis.analyze import AnalyzeOptions, analyze, circuit_record
    from arithlens.analysis.atlas import CIRCUIT_FILE
    from arithlens.report.atlas import write_atlas
    from arithlens.sweep import write_analysis

    find = partial(circuit_module.discover_circuit, make_questions=plus_zero_questions, search_questions=400)
    monkeypatch.setattr(circuit_module, "discover_circuit", find)
    model = backup_heads_model()
    options = AnalyzeOptions(questions=200, pairs=10, search=False, max_studies=0, faithfulness=300, circuit=True,
                             study=SMALL, founding_study=SMALL)
    analysis = analyze(model, options)
    copy_at = BACKUP_SPEC.layout.answer_logit_positions.start + 2
    backups = [f"P{copy_at}L0H0", f"P{copy_at}L0H1"]
    assert analysis.useful.nodes.names == [] and analysis.circuit.nodes == tuple(backups)
    assert circuit_record(analysis.circuit) == circuit_record(find(model, [], held_out_questions=300))
    folder = tmp_path / BACKUP_SPEC.name
    folder.mkdir()
    write_analysis(analysis, folder, source="planted")
    text = (folder / CIRCUIT_FILE).read_text()
    assert "seconds" not in text
    loaded = load_result(folder)
    assert loaded.circuit == json.loads(text)
    data = atlas([loaded])
    entry = data["models"][0]["circuit"]
    assert entry["nodes"] == backups and entry["only_together"] == backups
    assert entry["qtypes"]["ADD"]["n"] == 300 and entry["qtypes"]["ADD"]["correct"] == 300
    useful_alone = data["models"][0]["faithfulness"]["qtypes"]["ADD"]
    assert useful_alone["correct"] < 0.2 * useful_alone["n"]  # the backup pair is ablated with everything else
    assert f"circuits: {BACKUP_SPEC.name} 2 nodes, worst qtype 100.0%" in data["faithfulness_line"]
    assert f"2 nodes, 100.0%: {' '.join(backups)}" in write_atlas(data, tmp_path / "atlas")[2].read_text()


def test_a_model_below_the_circuit_target_keeps_its_analysis_and_says_why(tiny_analysis):
    from dataclasses import replace

    from arithlens.analysis.analyze import analyze

    model, analysis = tiny_analysis
    again = analyze(model, replace(analysis.options, circuit=True))
    assert again.circuit is None and again.circuit_note.startswith("circuit not found: the whole model is below 99%")
    assert again.summary()["circuit"] is None and again.faithfulness is not None
