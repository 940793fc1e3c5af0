"""Handing freed memory back to the OS between the stages of a long analysis (glibc keeps it otherwise)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import cache


@cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_freed_memory() -> bool:
    """Collect unreachable objects, then return the allocator's free pages to the OS (glibc's `malloc_trim`).

    Torch's CPU tensors come from malloc, and glibc serves tensors of a few MB from its heap and keeps their pages
    when they are freed, so a stage's working set stays resident through the next stages (and is shared with, and
    counted again in, forked figure workers). Handed back first, the faithfulness check's peak after a useful sweep
    fell from 1,307 MB to 1,157 MB (`benchmarks/bench_faithfulness_memory.py`). It frees nothing in use, so no result
    changes. False where there is no glibc (macOS, musl): nothing to do there."""
    gc.collect()
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))


def freeze_long_lived_objects() -> None:
    """Exempt every object alive now (the imported modules, the loaded model) from the cyclic collector's scans.

    A long command calls it once, after its imports and the model load: `release_freed_memory`'s `gc.collect()`
    (after each study, between stages) and the collector's own full passes then scan only what the work created,
    not the hundreds of thousands of objects of torch, numpy and matplotlib (each collect cost ~0.1 s before; 3.6 s
    of `arithlens analyze`'s CPU went to it). Frozen objects are still freed when their reference count drops to
    zero; only a reference cycle among them would stay (none is made by loading). It also keeps the collector from
    touching, and so copying, those objects' pages in forked figure workers."""
    gc.collect()
    gc.freeze()
