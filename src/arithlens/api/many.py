"""Many models through the front door: seed sweeps (train, evaluate, analyse one model per seed) and the atlas
that aligns analysed models by role, on local processes or an existing Dask cluster."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def check_analysis_options(options: dict) -> None:
    """An atlas / sweep `analysis` config checked field by field before any worker starts."""
    from arithlens.sweep import analyze_options

    analyze_options(options)


def analyse_checkpoints(jobs: Sequence[tuple[str, str]], options: dict, threads: int, workers: int,
                        scheduler: str | None = None) -> None:
    """Analyse each (checkpoint, output folder) of `jobs` as `arithlens analyze` would, on `workers` local
    processes or the Dask cluster at `scheduler`; the first failure is raised."""
    from arithlens.executor import executor
    from arithlens.sweep import analyse_checkpoint

    with executor(workers, scheduler) as pool:
        for future in [pool.submit(analyse_checkpoint, p, t, options, threads) for p, t in jobs]:
            future.result()


def atlas_of(folders: Sequence[Path]) -> dict:
    """The atlas record of analysed model folders (each holding `analysis.json`)."""
    from arithlens.analysis.atlas import atlas, load_result

    return atlas([load_result(f) for f in folders])


def sweep(spec: str, seeds: str, out: Path, *, config: dict, steps: int | None, threads: int, report: bool,
          device: str, evaluate: int, workers: int, scheduler: str | None = None,
          progress: Callable[[int, int, str], None] | None = None) -> tuple[Any, int, str]:
    """Train (resumably), evaluate and analyse one model per seed of `seeds` ("372001..372010") into
    `out/<model name>/`; (the sweep's record, how many models it asked for, where they ran)."""
    from arithlens.executor import executor
    from arithlens.sweep import parse_seeds, run_sweep, sweep_tasks

    tasks, provenance = sweep_tasks(spec, parse_seeds(seeds), out, config=config, steps=steps, threads=threads,
                                    report=report, device=device, evaluate=evaluate)
    where = scheduler or f"{workers} local process{'es' if workers > 1 else ''}"
    with executor(workers, scheduler) as pool:
        result = run_sweep(tasks, pool, provenance=provenance, executor_name=where, progress=progress)
    return result, len(tasks), where
