"""glibc's allocator, kept from handing freed memory back to the kernel during training.

A training step allocates and frees the same large buffers (activations, gradients) every
step. glibc serves blocks above its mmap threshold (128 KiB, rising to at most 32 MiB) with a
fresh ``mmap`` and unmaps them on ``free``, so each step faults its activations in again, page
by page, and the kernel zeroes every page. Fine-tuning EfficientNet-Lite0 on 2 CPU cores spent
54% of its CPU time in the kernel (369,000 page faults a second); with freed memory kept in the
heap for reuse, an epoch took 16 s instead of 22 s, for about a quarter more peak memory
(docs/benchmarks.md, "The allocator"). Nothing else changes: the numbers computed are the same.

``keep_freed_memory`` sets, through ``mallopt``: no ``mmap`` for allocations
(``M_MMAP_MAX`` = 0) and no trimming of the heap's top below 2 GiB (``M_TRIM_THRESHOLD``). It
applies to the calling process from then on; elsewhere than glibc (macOS, Windows, musl) it
does nothing. ``CNNLAB_MALLOC=default`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV = "CNNLAB_MALLOC"
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h>
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes a C int


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for a training loop; True when it was applied."""
    if os.environ.get(ENV, "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
