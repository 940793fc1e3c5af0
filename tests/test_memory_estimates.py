"""Each command's memory estimate: within 1.5x of the peak benchmarks/bench_memory.py measured, sized by what is
in memory at once (chunked work is not refused for its total), and a refusal names the option and the most
that fits."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import pytest
import typer

from arithlens import validate
from arithlens.errors import ResourceError
from arithlens.model import ModelSpec

ROOT = Path(__file__).resolve().parent.parent
MEASURED = ROOT / "benchmarks" / "results" / "memory.json"
DEFAULT = ModelSpec.parse("mix_d6_l3_h4_t10K_s372001", d_model=128, d_head=32, d_mlp=512)


def test_estimates_are_within_1_5x_of_the_measured_peaks():
    """The committed measurements (default model) against today's estimates for the same options: a change of
    the estimate's terms without re-measuring fails here."""
    cases = json.loads(MEASURED.read_text())["cases"]
    assert {c["command"] for c in cases.values() if c["default"]} == {"analyze", "node", "circuit", "faithfulness", "useful",
                                                                     "search"}
    assert {c["command"] for c in cases.values() if not c["default"]} >= {"useful", "node", "faithfulness"}
    for name, case in cases.items():
        if case.get("stale"):  # measured before a change that moves its peak (memory.md says so): rerun to check
            continue
        options = {k: v for k, v in case["options"].items() if k != "args"}
        if case["command"] == "analyze":
            options["figure_workers"] = case.get("figure_workers", 0)
        estimate = validate.command_memory(case["command"], DEFAULT, options)
        assert case["peak_bytes"] / 1.5 <= estimate <= 1.5 * case["peak_bytes"], (name, estimate, case["peak_bytes"])


def _defaults(command: str) -> dict:
    """The defaults a registered command declares for its options (typer.Option objects in its signature)."""
    from arithlens.cli import app

    (info,) = [c for c in app.registered_commands if (c.name or c.callback.__name__) == command]
    found = {}
    for name, param in inspect.signature(info.callback).parameters.items():
        default = param.default
        found[name] = default.default if isinstance(default, (typer.models.OptionInfo,)) else default
    return found


@pytest.mark.parametrize("command", sorted(validate.COMMAND_DEFAULTS))
def test_estimate_defaults_are_the_commands_defaults(command):
    import arithlens.cli  # noqa: F401  (registers the commands)

    declared = _defaults(command)
    for key, value in validate.COMMAND_DEFAULTS[command].items():
        assert declared[key] == value, (command, key)


def test_the_curated_share_of_the_useful_sweep_is_counted():
    from arithlens.analysis.useful import varied_questions

    assert len(varied_questions(DEFAULT, count=0)) == validate.CURATED_QUESTIONS


def test_chunked_work_is_sized_by_one_chunk_and_refusals_name_the_option(monkeypatch):
    f = validate.command_memory
    assert f("faithfulness", DEFAULT, {"questions": 10**7}) == f("faithfulness", DEFAULT, {"questions": 10**4})
    assert f("circuit", DEFAULT, {"held_out": 10**7}) == f("circuit", DEFAULT, {"held_out": 10**4})
    assert f("node", DEFAULT, {"questions": 2000}) > f("node", DEFAULT, {"questions": 1000})
    # the useful sweep's power stage runs its 3 x 598 questions (or any more) one chunk at a time
    assert f("useful", DEFAULT, {"power": 10**6}) == f("useful", DEFAULT, {"power": 598}) > f("useful", DEFAULT,
                                                                                              {"power": 0})
    monkeypatch.setattr(validate, "available_memory", lambda: 4e9)  # 3.2 GB may be asked for
    assert validate.check_command_memory("faithfulness", DEFAULT, {"questions": 10**7}, {}) < 3.2e9
    with pytest.raises(ResourceError) as refused:
        validate.check_command_memory("node", DEFAULT, {"questions": 10**6, "pairs": 200},
                                      {"questions": "the necessity questions", "pairs": "the patching pairs"})
    message = str(refused.value)
    assert message.startswith("--questions 1,000,000 needs about ") and "for the necessity questions" in message
    most = int(message.rsplit("at most about ", 1)[1].replace(",", ""))
    assert f("node", DEFAULT, {"questions": most, "pairs": 200}) <= 3.2e9 < f("node", DEFAULT, {"questions": most + 1,
                                                                                                   "pairs": 200})
    monkeypatch.setattr(validate, "available_memory", lambda: 1e8)  # not even the process itself fits
    with pytest.raises(ResourceError, match="does not fit even at 1|even for one chunk"):
        validate.check_command_memory("search", DEFAULT, {"pairs": 100}, {"pairs": "the patching pairs"})


def test_the_node_estimate_counts_one_necessity_chunk_and_what_each_question_keeps():
    """The node study runs one qtype's necessity set a chunk at a time: past one chunk, more --questions add only
    what every question keeps (its labels, activation, output, outcomes), not engines."""
    from arithlens.analysis.node_study.necessity import CHUNK

    f, fb = validate.command_memory, validate.forward_bytes(DEFAULT)
    per_qtype = 3 * 2000  # 3 T classes of --questions 2000: six chunks of 1,000 a qtype
    assert per_qtype > CHUNK == 1000
    held = validate.STUDY_HELD_EACH * 3 * 3 * 1000 * fb  # 1,000 more --questions: 9,000 more questions kept
    assert f("node", DEFAULT, {"questions": 2000}) - f("node", DEFAULT, {"questions": 1000}) == pytest.approx(held,
                                                                                                          abs=1)
    # below one chunk a qtype's set is one engine, which grows with it
    small = f("node", DEFAULT, {"questions": 200}) - f("node", DEFAULT, {"questions": 100})
    assert small == pytest.approx((validate.STUDY_CHUNK_EACH * 300 + validate.STUDY_HELD_EACH * 900) * fb, abs=1)


def test_analyze_checks_its_memory_with_max_studies(monkeypatch, tmp_path, capsys):
    """`analyze --max-studies N` is checked for what it runs: at most the founding heads leave the study cache out."""
    import arithlens.validate as v
    from arithlens.cli import main

    seen = {}

    def refuse(command, spec, options, scaled_by):
        seen.update(options)
        raise ResourceError("stop here")

    monkeypatch.setattr(v, "check_command_memory", refuse)
    with pytest.raises(SystemExit) as stopped:
        main(["analyze", "--out", str(tmp_path / "out"), "--max-studies", "1", "--quiet"])
    assert stopped.value.code == 2 and "stop here" in capsys.readouterr().err
    assert seen["max_studies"] == 1 and not (tmp_path / "out").exists()
    # with the cache left out, the studies' stage no longer sets the default model's estimate
    options = {k: v for k, v in seen.items() if k != "figure_workers"}
    assert validate.command_memory("analyze", DEFAULT, options) < validate.command_memory(
        "analyze", DEFAULT, {**options, "max_studies": None})


def _bench_memory():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_memory", ROOT / "benchmarks" / "bench_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_memory_table_is_its_data_with_every_row_current_and_in_pss():
    bench = _bench_memory()
    results = json.loads(MEASURED.read_text())
    assert MEASURED.with_suffix(".md").read_text() == bench.render(results)
    for name, case in results["cases"].items():
        assert not case.get("stale") and case.get("measure", "PSS") == "PSS", name
        assert case["exit_code"] == 0, name
    assert set(results["cases"]) <= {bench.case_name(c, o) for c, o, _ in bench.CASES}  # each row can be rerun


def test_bench_memory_runs_only_the_named_cases_and_keeps_the_largest_of_its_repeats(monkeypatch, tmp_path):
    bench = _bench_memory()
    peaks = iter([300e6, 500e6, 400e6])
    ran = []

    def measure(command, options):
        ran.append(bench.case_name(command, options))
        peak = next(peaks)
        return {"command": command, "options": options, "peak_bytes": peak, "peak_rss_sum_bytes": peak,
                "largest_process_bytes": peak, "seconds": len(ran), "exit_code": 0, "estimate_bytes": 450e6,
                "figure_workers": 0, "model": "m", "ratio": round(450e6 / peak, 2)}

    monkeypatch.setattr(bench, "measure", measure)
    into = tmp_path / "memory.json"
    name = "faithfulness --nodes P18L0H0 P18L2H0 --questions 500"
    monkeypatch.setattr(sys, "argv", ["bench_memory.py", "--into", str(into), "--case", name, "--repeat", "3"])
    bench.main()
    assert ran == [name] * 3
    row = json.loads(into.read_text())["cases"][name]
    assert (row["peak_bytes"], row["seconds"], row["ratio"], row["runs"]) == (500e6, 2, 0.9, [300e6, 500e6, 400e6])
    table = into.with_suffix(".md").read_text()
    assert "| 500 MB (largest of 3 runs, least 300 MB) | 500 MB | 450 MB | 0.90 |" in table
    monkeypatch.setattr(sys, "argv", ["bench_memory.py", "--into", str(into), "--case", "faithfulness --questions 1"])
    with pytest.raises(SystemExit, match="no case 'faithfulness --questions 1'"):
        bench.main()
