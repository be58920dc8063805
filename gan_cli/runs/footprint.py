"""The process's memory: what it holds now (the ``perf/rss_mb`` and ``perf/cuda_mb`` of each log window)
and the freed heap it hands back to the system after the work between iterations."""

from __future__ import annotations

import functools
import os
import sys
from typing import Dict

import torch


def memory_mb() -> Dict[str, float]:
    """Resident host memory (Linux; elsewhere its peak) and, once CUDA is in use, torch's GPU allocation (no sync)."""
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # no /proc (macOS): the peak is what the system reports
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    out = {"perf/rss_mb": rss / 2**20}
    if torch.cuda.is_initialized():
        out["perf/cuda_mb"] = torch.cuda.memory_allocated() / 2**20
    return out


@functools.cache
def _libc():
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:  # not glibc (macOS, musl): its allocator is left as it is
        return None


def release_memory() -> None:
    """Hand the heap's freed pages back (glibc's malloc_trim): else a ring run's resident memory crept up ~2 MB per
    1,000 iterations with the evaluations' and figures' freed buffers."""
    if _libc() is not None:
        _libc().malloc_trim(0)


def keep_freed_buffers() -> None:
    """Let glibc keep freed buffers of up to 32 MiB in the heap for reuse (mallopt's M_MMAP_THRESHOLD, and
    M_TRIM_THRESHOLD so that it does not hand them back between steps): a population's stacked activations are
    megabytes each, and mapped afresh they page-fault on every step (a 64-member figure1 step: about 25 % of its
    time here). release_memory() still hands them back after the work between iterations."""
    if _libc() is not None:
        _libc().mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: glibc's largest
        _libc().mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
