"""One way to run work over many models: a `concurrent.futures.Executor` of local processes, or of an existing
Dask cluster (the `distributed` extra). Callers submit plain top-level functions and never see which one runs them.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager

from arithlens.errors import ArithLensError

CONNECT_TIMEOUT = "10s"  # how long to look for the scheduler before saying it cannot be reached


@contextmanager
def executor(jobs: int = 1, scheduler: str | None = None) -> Iterator[Executor]:
    """`jobs` local worker processes, or the Dask cluster whose scheduler listens at `scheduler` (tcp://HOST:PORT).

    Local workers are spawned, not forked: a forked child inherits torch's thread pools and OpenMP state from a
    parent that may already have used them, and then hangs or oversubscribes the cores.
    """
    if scheduler is not None:
        with _dask_executor(scheduler) as pool:
            yield pool
        return
    if jobs < 1:
        raise ArithLensError(f"--jobs must be at least 1, not {jobs}")
    # Idle OpenMP threads that spin fight the other workers for the cores (see cli.main); children inherit this.
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@contextmanager
def _dask_executor(address: str) -> Iterator[Executor]:
    try:
        from distributed import Client
    except ImportError:
        raise ArithLensError("--scheduler needs the Dask client: pip install 'arithlens[distributed]'") from None
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ArithLensError(f"cannot reach the Dask scheduler at '{address}': {exc}") from None
    try:
        with client.get_executor(pure=False) as pool:  # pure=False: a retried task trains again, not a cache hit
            yield pool
    finally:
        client.close()


__all__ = ["executor"]
