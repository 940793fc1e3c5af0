"""Seed sweeps: the recipe they take, resuming a stopped sweep, skipping finished models, and the same bytes from
local processes and from a Dask cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import arithlens_here
from safetensors.torch import load_file

from arithlens.analysis.atlas import atlas, load_result
from arithlens.errors import ArithLensError
from arithlens.executor import executor
from arithlens.model.spec import ModelSpec
from arithlens.model.train import TrainConfig, train
from arithlens.sweep import WORK_DIR, drop_timings, parse_seeds, run_seed, run_sweep, sweep_tasks

FAMILY = "add_d1_l1_h2_t40"
SEEDS = [372001, 372002, 372003]
_STUDY = {"questions": 10, "pairs": 10, "per_case": 10, "mixed": 20, "permutations": 99}
TINY = {"spec": {"d_model": 16, "d_head": 8, "d_mlp": 32}, "lr": 0.01, "batch_size": 64, "eval_every": 40,
        "eval_questions": 50, "checkpoint_every": 10, "warmup_steps": 5,
        "analysis": {"questions": 16, "pairs": 10, "max_studies": 1, "study": _STUDY, "founding_study": _STUDY,
                     "faithfulness": 300}}


def test_seed_ranges_are_inclusive_and_lists_keep_their_order():
    assert parse_seeds("372001..372003") == [372001, 372002, 372003]
    assert parse_seeds("372005,372001") == [372005, 372001]
    assert parse_seeds("7") == [7]
    for bad in ("372003..372001", "1,1", "abc", "1000000"):
        with pytest.raises(ArithLensError):
            parse_seeds(bad)


def test_a_family_with_a_shipped_model_takes_its_sizes_and_recipe(tmp_path):
    tasks, provenance = sweep_tasks("mix_d6_l3_h4_t10K", [372003, 372004], tmp_path)
    shipped = json.loads((Path(__file__).parents[1] / "src/arithlens/models/mix_d6_l3_h4_t10K_s372001/"
                          "train_config.json").read_text())
    assert provenance["recipe_from"] == "mix_d6_l3_h4_t10K_s372001"
    assert [t.name for t in tasks] == ["mix_d6_l3_h4_t10K_s372003", "mix_d6_l3_h4_t10K_s372004"]
    assert tasks[0].spec["d_model"] == 128 and tasks[0].spec["d_head"] == 32
    assert all(tasks[0].recipe[k] == v for k, v in shipped.items()) and tasks[0].recipe["steps"] == 10_000
    # A config and --steps override the shipped recipe; a seed in the spec is replaced by the swept ones.
    tasks, _ = sweep_tasks("mix_d6_l3_h4_t10K_s372001", [372009], tmp_path, config={"lr": 5e-4}, steps=50)
    assert tasks[0].name == "mix_d6_l3_h4_t10K_s372009" and tasks[0].recipe["lr"] == 5e-4
    assert tasks[0].recipe["steps"] == 50


def test_the_committed_15k_candidate_recipe_is_the_shipped_one_with_more_steps(tmp_path):
    """examples/recipes/mix_d6_l3_h4_t15K.json: the shipped mixed model's sizes and data shares, 15K steps."""
    root = Path(__file__).parents[1]
    config = json.loads((root / "examples/recipes/mix_d6_l3_h4_t15K.json").read_text())
    tasks, provenance = sweep_tasks("mix_d6_l3_h4_t15K", [372001], tmp_path, config=config, evaluate=1_000_000)
    shipped, _ = sweep_tasks("mix_d6_l3_h4_t10K", [372001], tmp_path)
    assert provenance["recipe_from"] is None and tasks[0].evaluate == 1_000_000
    assert tasks[0].recipe == {**shipped[0].recipe, "steps": 15_000}
    assert tasks[0].spec == {**shipped[0].spec, "name": "mix_d6_l3_h4_t15K_s372001", "training_steps": 15_000}


def test_a_bad_sweep_request_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    code, _, err = arithlens_here(monkeypatch, capsys, "sweep", "--spec", FAMILY, "--seeds", "5..3",
                                  "--out", str(tmp_path))
    assert code == 2 and err.strip() == "error: bad --seeds '5..3': 3 is below 5"
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"analysis": {"questionz": 3}}))
    code, _, err = arithlens_here(monkeypatch, capsys, "sweep", "--spec", FAMILY, "--seeds", "372001",
                                  "--out", str(tmp_path / "o"), "--config", str(config))
    assert code == 2 and err.startswith("error: bad analysis options in the config") and len(err.splitlines()) == 1


EVAL_QUESTIONS = 60  # the acceptance suite, scaled down: uniform questions per question type


def _tasks(out: Path):
    return sweep_tasks(FAMILY, SEEDS, out, config=json.loads(json.dumps(TINY)), evaluate=EVAL_QUESTIONS)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """A sweep of three tiny models on two local processes, the first stopped at step 20 of 40 beforehand."""
    out = tmp_path_factory.mktemp("local")
    tasks, provenance = _tasks(out)
    first = tasks[0]

    def stop(step, info):
        if step == 20:
            raise KeyboardInterrupt  # what a killed sweep leaves: checkpoints up to step 20, no model folder

    with pytest.raises(KeyboardInterrupt):
        train(ModelSpec.from_dict(first.spec), TrainConfig.from_dict(first.recipe), out / WORK_DIR / first.name,
              progress=stop)
    assert not (out / first.name).exists()
    with executor(jobs=2) as pool:
        result = run_sweep(tasks, pool, provenance=provenance, executor_name="local")
    return out, result


def test_a_stopped_sweep_resumes_and_ends_with_the_uninterrupted_weights(local_sweep):
    out, result = local_sweep
    assert result.errors == {}
    statuses = {name: run["status"] for name, run in result.summary["run"]["models"].items()}
    assert statuses == {f"{FAMILY}_s{SEEDS[0]}": "resumed", f"{FAMILY}_s{SEEDS[1]}": "trained",
                        f"{FAMILY}_s{SEEDS[2]}": "trained"}
    name = f"{FAMILY}_s{SEEDS[0]}"
    assert len(json.loads((out / name / "training.json").read_text())["loss"]) == 40
    tasks, _ = _tasks(out)
    whole = train(ModelSpec.from_dict(tasks[0].spec), TrainConfig.from_dict(tasks[0].recipe)).model
    saved = load_file(str(out / name / "model.safetensors"))
    assert saved.keys() == whole.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in whole.state_dict().items())
    assert not (out / WORK_DIR).exists()  # nothing left half-done
    assert [r["model"] for r in result.records] == [t.name for t in tasks]
    assert json.loads((out / "sweep.json").read_text())["seeds"] == SEEDS


def test_each_model_carries_its_acceptance_suite_result(local_sweep):
    """--eval: evaluation.json in each model's folder, equal to evaluating the saved weights afresh; its count in
    the summary record."""
    from arithlens.model import load_checkpoint
    from arithlens.model.evaluate import evaluate_suite, suite_size

    out, result = local_sweep
    assert result.summary["evaluate"] == EVAL_QUESTIONS and result.summary["device"] == "cpu"
    for record in result.records:
        folder = out / record["model"]
        saved = json.loads((folder / "evaluation.json").read_text())
        ck = load_checkpoint(folder)
        fresh = evaluate_suite(ck.model, ck.spec, questions=EVAL_QUESTIONS, precision="fp32").to_dict()
        assert saved == drop_timings(fresh) and "seconds" not in saved
        assert saved["questions"] == suite_size(ck.spec, questions=EVAL_QUESTIONS) > EVAL_QUESTIONS
        assert record["evaluation"] == {"questions": saved["questions"], "wrong": saved["wrong"],
                                        "failures": saved["failures"]}
    # 40 steps of a tiny model: not exact, and the files say so rather than hiding it
    assert any(r["evaluation"]["wrong"] > 0 for r in result.records)
    assert "evaluate" in result.summary["run"]["models"][result.records[1]["model"]]["seconds"]


def test_a_device_the_sweep_cannot_use_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = arithlens_here(monkeypatch, capsys, "sweep", "--spec", FAMILY, "--seeds", "372001",
                                  "--out", str(tmp_path / "o"), "--device", "cuda")
    assert code == 2 and err.strip() == "error: --device cuda: no CUDA device is available on this machine"
    code, _, err = arithlens_here(monkeypatch, capsys, "sweep", "--spec", FAMILY, "--seeds", "372001",
                                  "--out", str(tmp_path / "o"), "--device", "auto", "--scheduler", "tcp://h:1")
    assert code == 2 and "--device auto with --scheduler" in err and len(err.splitlines()) == 1
    code, _, err = arithlens_here(monkeypatch, capsys, "sweep", "--spec", FAMILY, "--seeds", "372001",
                                  "--out", str(tmp_path / "o"), "--eval", "--eval-questions", "0")
    assert code == 2 and err.strip() == "error: --eval-questions must be at least 1, not 0"
    assert not (tmp_path / "o").exists()
    tasks, _ = sweep_tasks(FAMILY, [372001], tmp_path, config=json.loads(json.dumps(TINY)), device="cuda")
    with pytest.raises(ArithLensError, match="no CUDA device"):  # a worker without CUDA, in a cluster
        run_seed(tasks[0])


def test_a_finished_model_is_skipped(local_sweep):
    out, _ = local_sweep
    tasks, _ = _tasks(out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / tasks[1].name).iterdir()}
    record = run_seed(tasks[1])
    assert record["run"]["status"] == "done before"
    assert {p.name: p.stat().st_mtime_ns for p in (out / tasks[1].name).iterdir()} == before


def test_the_atlas_reads_a_sweep_folder(local_sweep):
    out, _ = local_sweep
    data = atlas([load_result(out / f"{FAMILY}_s{s}") for s in SEEDS])
    assert [m["name"] for m in data["models"]] == [f"{FAMILY}_s{s}" for s in SEEDS]
    # One-digit questions: A1 (the top answer digit) is computed at P4, where the founding heads sit.
    assert {f["position"] for f in data["founding"]} == {"P4"}
    assert all(f["evidence"] == "node study" for f in data["founding"])  # max_studies 1: P4L0H0 was studied
    assert data["headline"].startswith("no model does both")  # adders: the question does not apply
    for row in data["roles"]:
        assert row["in_models"] == len(row["models"])
        assert row["everywhere"] == (row["in_models"] == 3)

    # Each model's useful set, scored alone on the config's 300 questions per qtype, is in its folder and the atlas.
    for seed, model in zip(SEEDS, data["models"]):
        folder = out / f"{FAMILY}_s{seed}"
        written = json.loads((folder / "faithfulness.json").read_text())
        behaviour = json.loads((folder / f"{FAMILY}_s{seed}_behavior.json").read_text())
        assert len(written["nodes"]) == len(behaviour) == model["faithfulness"]["n_nodes"]
        add = written["qtypes"][0]
        assert model["faithfulness"]["qtypes"] == {"ADD": {k: add[k] for k in ("exact", "ci", "n", "correct",
                                                                                "clean_correct")}}
        assert add["n"] == 300 and add["exact"] == add["correct"] / 300
        record = next(r for r in json.loads((out / "sweep.json").read_text())["models"] if r["model"] == model["name"])
        assert record["faithfulness"]["qtypes"]["ADD"]["correct"] == add["correct"]


def _json_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.suffix in (".json", ".safetensors") and p.name != "timings.json"}


def test_a_dask_cluster_gives_the_bytes_of_local_processes(local_sweep, tmp_path):
    distributed = pytest.importorskip("distributed")
    local_out, _ = local_sweep
    tasks, provenance = _tasks(tmp_path)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        with executor(scheduler=cluster.scheduler_address) as pool:
            result = run_sweep(tasks, pool, provenance=provenance, executor_name="dask")
    assert result.errors == {}
    assert {r["status"] for r in result.summary["run"]["models"].values()} == {"trained"}
    ours, theirs = _json_files(tmp_path), _json_files(local_out)
    assert ours.keys() == theirs.keys() and len(ours) >= 3 * 7 + 1
    assert sum(name.endswith("faithfulness.json") for name in ours) == 3
    for name, data in ours.items():
        if name.endswith(".safetensors"):
            assert data == theirs[name], name
            continue
        mine, other = json.loads(data), json.loads(theirs[name])
        if drop_timings(mine) == mine:  # no wall time inside: the very bytes
            assert data == theirs[name], name
        else:
            assert drop_timings(mine) == drop_timings(other), name


def test_an_unreachable_scheduler_is_a_one_line_error(monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("arithlens.executor.CONNECT_TIMEOUT", "1s")
    with pytest.raises(ArithLensError, match="cannot reach the Dask scheduler"):
        with executor(scheduler="tcp://127.0.0.1:9"):
            pass


def test_zero_jobs_is_refused():
    with pytest.raises(ArithLensError, match="--jobs must be at least 1"):
        with executor(jobs=0):
            pass
