"""How the process allocates memory on the CPU, set for a world model's step.

A dream step builds a few tensors of 10-20 MB (the tile head's logits over the codebook,
[B, N, K] floats) and frees them again. glibc's malloc serves blocks that large with mmap
by default, returns them to the system when freed, and the next step pays for the page
faults of a fresh mapping: at B=32 on two cores that was 12-16% of the batched dream's
time. `keep_freed_memory` has malloc keep such blocks in its heap for reuse.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: blocks up to 32 MB come from the heap
TRIM_THRESHOLD = 2**30  # free heap kept for reuse before any is given back
_done = False


def keep_freed_memory() -> bool:
    """Have glibc's malloc serve blocks up to 32 MB from its heap and keep up to 1 GiB of
    freed heap for reuse (the process holds on to what its largest step used). Once per
    process; a no-op (False) off Linux or without glibc."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # another C library (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _done
