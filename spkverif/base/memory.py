"""Keeping freed memory in the process, so a training or extraction step does not fault it in again.

glibc's malloc serves every large block (above a threshold of at most 32 MiB) by `mmap` and
gives it back to the system on `free`; it also trims the heap's free top above 128 KiB. A
training step allocates and frees the same large activations every step, so every step
faults them in afresh, page by page, in the kernel. With mmap off and the trim threshold at
2 GiB, freed blocks stay in the heap and are reused: `python bench/train_throughput.py --models
eres2netv2 resnet34 --workers 0 --batch 16 --steps 3 --warmup 3` went from 1.2 to 2.1 chunks/s
(ERes2NetV2) and from 6.7 to 7.1 (ResNet34) on 2 threads of a 2-core AMD EPYC. The cost is a
higher resident peak (there: 7.5 -> 9.3 GiB) held until the process ends. The same tunables
as the environment's `MALLOC_MMAP_MAX_` and `MALLOC_TRIM_THRESHOLD_`.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # the largest int mallopt takes: 2 GiB of free heap top before trimming

_kept = False


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory for reuse (module doc), once a process.

    Returns True where it is set (Linux with glibc), False elsewhere (other C libraries,
    other systems), where nothing changes. Never raises.
    """
    global _kept
    if _kept:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and others have no such tunables
            return False
        _kept = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
    return _kept


__all__ = ["keep_freed_memory"]
