"""Process-level allocator setting for CPU training: keep freed tensor memory for reuse instead of handing it back to
the operating system after every step. Imports nothing of sigmarec, so every layer may use it.

Why: glibc serves each allocation above its mmap threshold (32 MB at most) with a fresh ``mmap`` and unmaps it on
free, so every training step page-faults its large tensors in again: the [targets x items] logits, their softmax
and their gradient (72 MB each for SASRec on Beauty). Measured on SASRec / Beauty, one thread: 36.5 s an epoch as
glibc does it, 21.9 s with mmap off for the heap (``benchmarks/roofline.py [--no-reuse]``; BENCHMARKS.md,
"Roofline"). The cost is resident memory that stays at the process's peak (0.79 GB -> 1.41 GB over 3 epochs and an
evaluation there). A freed block serves later requests that fit in it; one of exactly its size does not
(posix_memalign pads the request), as glibc already behaves for tensors under 32 MB, so the heap holds some holes:
the peak after 1 epoch (1.46 GB) was no lower than after 3, bounded, not growing with steps.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
KEEP_BYTES = 2**31 - 1  # mallopt takes a C int: keep up to 2 GB of free memory at the heap's top before trimming


def reuse_freed_memory() -> bool:
    """Serve large allocations from the heap (``mallopt(M_MMAP_MAX, 0)``) and keep freed memory there
    (``M_TRIM_THRESHOLD``), so the next step reuses pages already mapped. Idempotent; affects this process only.
    Returns False, changing nothing, where the C library is not glibc (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):  # glibc only
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
