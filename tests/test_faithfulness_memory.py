"""The faithfulness check hands the pages earlier stages freed back to the system before it runs (glibc): its
buffers then do not come on top of them; nothing in use is touched, so no score changes."""

import ctypes.util
import os

import numpy as np
import pytest
import torch

from arithlens.analysis.memory import release_freed_memory

GLIBC = os.name == "posix" and "libc.so.6" in (ctypes.util.find_library("c") or "")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not GLIBC or not os.path.exists("/proc/self/statm"), reason="glibc's malloc_trim, Linux RSS")
def test_released_pages_leave_the_process():
    # 3,072 buffers of 64 KiB, under glibc's mmap threshold (128 KiB), land in the heap; freeing all but the last
    # leaves ~190 MiB of free pages that glibc keeps (the last one pins the heap's top, so it cannot just shrink).
    blocks = [np.ones(1 << 13) for _ in range(3072)]  # float64, written, so the pages are resident
    keep = blocks[-1]
    del blocks
    held = _rss_bytes()
    assert release_freed_memory() is True
    freed = held - _rss_bytes()
    assert freed > 100 * 2**20, f"only {freed / 2**20:.0f} MiB returned"
    assert keep.sum() == 1 << 13  # the buffer still in use is intact


def test_release_changes_no_tensor_in_use():
    x = torch.arange(10_000, dtype=torch.float32)
    garbage = [torch.ones(50_000) for _ in range(20)]
    del garbage
    release_freed_memory()
    assert torch.equal(x, torch.arange(10_000, dtype=torch.float32))
