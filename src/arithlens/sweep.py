"""Seed sweeps: train (resumably), optionally evaluate, and analyse one model per seed of a recipe, each run a task of
`arithlens.executor`, each model's files moved into `DIR/<model name>/` in one rename when all are written.

A sweep's JSON is a function of the spec, the seeds, the recipe and the analysis options: the same seeds give
byte-identical files whichever executor ran them, except the keys that hold wall times ("seconds", "timings",
and the summary's "run") and `timings.json`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arithlens.errors import ArithLensError

SUMMARY_FILE = "sweep.json"
WORK_DIR = ".work"  # DIR/.work/<model name>/: training checkpoints until the model is finished
TIMING_KEYS = frozenset({"seconds", "timings", "run"})  # keys whose values are wall times, not results
_SEED_SUFFIX = re.compile(r"_s\d{6}$")
MODEL_FILES = ("model.safetensors", "model.json", "training.json")
EVALUATION_FILE = "evaluation.json"  # the acceptance suite's result, when the sweep ran it


@dataclass(frozen=True)
class SweepTask:
    """One seed's work, sent to a worker: plain data only (a spec dict, a recipe dict, options)."""

    spec: dict[str, Any]  # ModelSpec.to_dict()
    recipe: dict[str, Any]  # TrainConfig.to_dict()
    out: str  # the sweep directory
    analysis: dict[str, Any] = field(default_factory=dict)  # AnalyzeOptions fields; study options as dicts
    threads: int = 1  # torch threads in the worker: fixed, so results do not depend on the worker's core count
    report: bool = False  # also draw the maps and report.html
    device: str = "cpu"  # where the model trains (and is evaluated); the analysis always runs on the CPU
    evaluate: int = 0  # uniform questions per qtype of the acceptance suite (0: none); evaluation.json

    @property
    def name(self) -> str:
        return self.spec["name"]


# ---------------------------------------------------------------------------------------------------
# What to run


def parse_seeds(text: str) -> list[int]:
    """`372001..372010` (inclusive), `372001,372005` or one seed; six digits each, as model names need."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*\.\.\s*(\d+)|(\d+)", part)
        if not m:
            raise ArithLensError(f"bad --seeds '{text}': use FIRST..LAST, a comma-separated list or one seed")
        low, high = (int(m[1]), int(m[2])) if m[3] is None else (int(m[3]), int(m[3]))
        if high < low:
            raise ArithLensError(f"bad --seeds '{text}': {high} is below {low}")
        seeds.extend(range(low, high + 1))
    bad = [s for s in seeds if s > 999_999]
    if bad:
        raise ArithLensError(f"seed {bad[0]} has more than six digits (model names end in _sNNNNNN)")
    if len(set(seeds)) != len(seeds):
        raise ArithLensError(f"--seeds '{text}' names a seed twice")
    return seeds


def sweep_tasks(spec: str, seeds: list[int], out: str | os.PathLike, *, config: dict | None = None,
                steps: int | None = None, threads: int = 1, report: bool = False, device: str = "cpu",
                evaluate: int = 0) -> tuple[list[SweepTask], dict]:
    """The tasks of a sweep and where their recipe came from.

    The recipe is the shipped model's of the same family when there is one (its sizes and `train_config.json`:
    the recipe the shipped model was trained with), then `config` (recipe fields, a "spec" dict of size
    overrides and an "analysis" dict of AnalyzeOptions fields), then `steps`. `device` is where each model trains
    (CUDA and CPU kernels give different weights for one seed, so it is part of the provenance); `evaluate`,
    when above 0, runs the acceptance suite (that many uniform questions per question type, the curated set,
    enriched and stress questions) on each trained model.
    """
    from arithlens.model.spec import ModelSpec
    from arithlens.model.train import TrainConfig

    family = _SEED_SUFFIX.sub("", spec)
    ModelSpec.parse(f"{family}_s{seeds[0]:06d}" if seeds else f"{family}_s000000")  # one-line error if malformed
    base_sizes, base_recipe, source = _shipped_recipe(family)
    cfg = dict(config or {})
    sizes = {**base_sizes, **cfg.pop("spec", {})}
    analysis = cfg.pop("analysis", {})
    recipe = {**base_recipe, **cfg}
    tasks = []
    for seed in seeds:
        model_spec = ModelSpec.parse(f"{family}_s{seed:06d}", **sizes)
        train_cfg = TrainConfig.from_dict({"steps": model_spec.training_steps, **recipe,
                                           **({"steps": steps} if steps is not None else {})})
        tasks.append(SweepTask(model_spec.to_dict(), train_cfg.to_dict(), str(out), dict(analysis), threads, report,
                               device, evaluate))
    analyze_options(analysis)  # a bad field fails here, before any worker starts
    if evaluate < 0:
        raise ArithLensError(f"the acceptance suite needs a non-negative question count, not {evaluate}")
    provenance = {"family": family, "recipe_from": source, "spec_overrides": sizes, "recipe": recipe,
                  "analysis": analysis, "device": device, "evaluate": evaluate}
    return tasks, provenance


def _shipped_recipe(family: str) -> tuple[dict, dict, str | None]:
    """(size overrides, recipe) of the shipped model whose name is `family` plus a seed; empty if none."""
    from arithlens.model.zoo import list_models

    for m in list_models():
        if _SEED_SUFFIX.sub("", m.spec.base_name) == family:
            s = m.spec
            sizes = {"d_model": s.d_model, "d_head": s.d_head, "d_mlp": s.d_mlp, "perc_sub": s.perc_sub}
            recipe_file = m.path / "train_config.json"
            recipe = json.loads(recipe_file.read_text()) if recipe_file.is_file() else {}
            return sizes, recipe, m.name
    return {}, {}, None


def analyze_options(analysis: dict):
    """AnalyzeOptions from a JSON dict (the study options as dicts); ArithLensError on a bad field."""
    from arithlens.analysis.analyze import AnalyzeOptions
    from arithlens.analysis.node_study import StudyOptions

    fields = dict(analysis)
    try:
        for key in ("study", "founding_study"):
            if key in fields:
                fields[key] = StudyOptions(**fields[key])
        return AnalyzeOptions(**fields)
    except TypeError as exc:
        raise ArithLensError(f"bad analysis options in the config: {exc}") from None


# ---------------------------------------------------------------------------------------------------
# One seed (runs in a worker)


def run_seed(task: SweepTask) -> dict:
    """Train the task's model (resuming a run that was stopped), evaluate it when asked, analyse it, and move
    every file into `out/<name>/` in one rename. A model whose folder is already there is not touched.

    Returns the model's summary record; its "run" entry (status and seconds) is the only part that varies.
    """
    import torch

    out = Path(task.out)
    final = out / task.name
    if (final / "analysis.json").is_file():
        return {**_record(final), "run": {"status": "done before", "seconds": {}}}
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    torch.set_num_threads(task.threads)
    torch.manual_seed(0)  # nothing should draw from the global generator; if something does, it draws the same

    from arithlens.analysis.analyze import analyze
    from arithlens.model.device import pick_device
    from arithlens.model.spec import ModelSpec
    from arithlens.model.train import STATE_FILE, TrainConfig, train

    pick_device(task.device)  # a worker without CUDA says so in one line
    spec, cfg = ModelSpec.from_dict(task.spec), TrainConfig.from_dict(task.recipe)
    work = out / WORK_DIR / task.name
    resume = (work / STATE_FILE).is_file()
    t0 = time.perf_counter()
    result = train(spec, cfg, work, device=task.device, resume=resume)
    train_seconds = time.perf_counter() - t0
    evaluation, eval_seconds = None, {}
    if task.evaluate:
        from arithlens.model.evaluate import evaluate_suite

        t0 = time.perf_counter()
        # fp32 on every machine: bf16 with re-checks would add machine-dependent keys to the file
        evaluation = evaluate_suite(result.model, spec, questions=task.evaluate, precision="fp32").to_dict()
        eval_seconds = {"evaluate": time.perf_counter() - t0}
    model = result.model.to("cpu")  # the analysis runs on the CPU whatever trained the model: one result per model
    t0 = time.perf_counter()
    analysis = analyze(model, analyze_options(task.analysis))
    analyze_seconds = time.perf_counter() - t0

    stage = Path(tempfile.mkdtemp(prefix=f".{task.name}.", dir=out))
    try:
        for name in MODEL_FILES:
            shutil.copy2(work / name, stage / name)
        if evaluation is not None:
            _write_json(stage / EVALUATION_FILE, drop_timings(evaluation))
        timings = write_analysis(analysis, stage, source=str(final), report=task.report)
        timings = {"train": train_seconds, **eval_seconds, "analyze": analyze_seconds, **timings}
        _write_json(stage / "timings.json", {k: round(v, 2) for k, v in timings.items()})
        _publish(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.parent.rmdir()  # the last model out leaves no work folder behind
    except OSError:
        pass
    status = "resumed" if resume else "trained"
    return {**_record(final), "run": {"status": status, "seconds": {k: round(v, 2) for k, v in timings.items()}}}


def write_analysis(analysis, directory: Path, *, source: str, report: bool = False) -> dict[str, float]:
    """The JSON files `arithlens analyze` writes (behaviour, algorithm, search, one per study, faithfulness, the
    circuit when found, analysis.json), with every wall time left out of them; the maps and report.html too when
    `report`. Returns stage timings."""
    from arithlens.analysis.analyze import circuit_record, faithfulness_record
    from arithlens.analysis.atlas import CIRCUIT_FILE, FAITHFULNESS_FILE
    from arithlens.analysis.node_study import NodeStudy
    from arithlens.analysis.nodes import Major
    from arithlens.report.node_json import write_study

    spec = analysis.spec
    analysis.useful.nodes.save(directory / f"{spec.base_name}_behavior.json")
    if analysis.search is not None:
        analysis.search.nodes.save(directory / f"{spec.base_name}_algorithm.json", majors=[Major.ALGO])
        record = {**analysis.search.to_json(), "claims": [c.to_dict() for c in analysis.claims]}
        _write_json(directory / f"{spec.base_name}_search.json", record)
    for entry in analysis.studies:
        if entry.data is not None:
            write_study(NodeStudy(entry.target.node, entry.data), directory)
    if analysis.faithfulness is not None:
        _write_json(directory / FAITHFULNESS_FILE, faithfulness_record(analysis.faithfulness))
    if analysis.circuit is not None:
        _write_json(directory / CIRCUIT_FILE, circuit_record(analysis.circuit))
    timings = dict(analysis.timings)
    if report:
        from arithlens.report.html import write_report

        timings.update(write_report(analysis, directory, source=source).timings)
    summary = drop_timings(analysis.summary())
    summary["files"] = sorted(p.name for p in directory.iterdir() if p.suffix == ".json") + ["analysis.json"]
    _write_json(directory / "analysis.json", summary)
    return timings


def _publish(stage: Path, final: Path) -> None:
    """Rename the finished staging folder to `final`: the model appears whole or not at all."""
    stage.chmod(0o755)  # mkdtemp makes it private
    if final.exists():  # a folder without analysis.json: never left by a sweep, so not a result to keep
        shutil.rmtree(final)
    os.rename(stage, final)


def _record(final: Path) -> dict:
    """The summary line of one finished model, read back from its files (so a skipped model reads the same)."""
    card = json.loads((final / "model.json").read_text())
    summary = json.loads((final / "analysis.json").read_text())
    training = card.get("training", {})
    evaluation = None
    if (final / EVALUATION_FILE).is_file():
        suite = json.loads((final / EVALUATION_FILE).read_text())
        evaluation = {"questions": suite["questions"], "wrong": suite["wrong"], "failures": suite["failures"]}
    return {"model": card["spec"]["name"], "dir": final.name, "steps": training.get("steps"),
            "final_loss": training.get("final_loss"), "heldout": training.get("heldout"), "evaluation": evaluation,
            "heads": summary["heads"], "mlps": summary["mlps"], "claims": summary.get("claims"),
            "faithfulness": summary.get("faithfulness"), "circuit": summary.get("circuit"),
            "studies": [{k: s.get(k) for k in ("node", "polysemantic", "roles", "shared_direction", "error")
                         if k in s} for s in summary["studies"]]}


# ---------------------------------------------------------------------------------------------------
# The sweep


@dataclass
class SweepResult:
    records: list[dict]  # one per seed, in seed order
    errors: dict[str, str]  # model name -> one-line error
    summary: dict = field(default_factory=dict)


def run_sweep(tasks: list[SweepTask], pool, *, provenance: dict | None = None, executor_name: str = "",
              progress: Callable[[int, int, str], None] | None = None) -> SweepResult:
    """Submit every task to `pool` (any `concurrent.futures.Executor`), collect, and write DIR/sweep.json."""
    if not tasks:
        raise ArithLensError("a sweep needs at least one seed")
    out = Path(tasks[0].out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    futures = {pool.submit(run_seed, task): task for task in tasks}
    done: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for i, future in enumerate(as_completed(futures), 1):
        task = futures[future]
        try:
            done[task.name] = future.result()
        except Exception as exc:  # one failed seed must not lose the others; it is reported and the exit code says so
            errors[task.name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if progress is not None:
            progress(i, len(tasks), task.name)
    records = [done[t.name] for t in tasks if t.name in done]
    run = {"executor": executor_name, "wall_seconds": round(time.perf_counter() - start, 2),
           "models": {r["model"]: r.pop("run") for r in records}}
    summary = {"spec": tasks[0].spec, "seeds": [t.spec["seed"] for t in tasks], **(provenance or {}),
               "models": records, "errors": errors, "run": run}
    _write_json(out / SUMMARY_FILE, summary)
    return SweepResult(records, errors, summary)


def drop_timings(value: Any) -> Any:
    """`value` without the keys that hold wall times (recursively): what must be identical run to run."""
    if isinstance(value, dict):
        return {k: drop_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [drop_timings(v) for v in value]
    return value


def _write_json(path: Path, data: Any) -> None:
    from arithlens.io import write_atomic

    write_atomic(path, (json.dumps(data, indent=1, allow_nan=False) + "\n").encode())


__all__ = ["SweepResult", "SweepTask", "drop_timings", "parse_seeds", "run_seed", "run_sweep", "sweep_tasks",
           "write_analysis"]


def analyse_checkpoint(path: str, final: str, analysis: dict, threads: int = 1) -> str:
    """Analyse the checkpoint at `path` into the folder `final` (its card copied beside the JSON so the full spec
    travels with it), written whole in one rename. Runs in a worker of `arithlens.executor`; returns `final`."""
    import torch

    from arithlens.analysis.analyze import analyze
    from arithlens.model import load_checkpoint
    from arithlens.model.checkpoint import save_checkpoint

    torch.set_num_threads(threads)
    target = Path(final)
    if (target / "analysis.json").is_file():
        return final
    ck = load_checkpoint(path)
    result = analyze(ck.model, analyze_options(analysis))
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save_checkpoint(ck.model, ck.model.spec, stage, ck.extra)
        (stage / "model.safetensors").unlink()  # the card is enough: the weights stay where they were
        timings = write_analysis(result, stage, source=str(path))
        _write_json(stage / "timings.json", {k: round(v, 2) for k, v in timings.items()})
        _publish(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return final
