"""glibc's malloc told to keep the memory a long-running `stream` frees, for the next batch.

Each bulk micro-batch allocates a few buffers of megabytes (the text of 8,192 forecast lines, the
network's arrays) and frees them again. glibc maps a buffer of that size afresh from the kernel and
unmaps it when freed, or trims the top of its heap after it, so the next batch faults every page in
again: 310,000 page faults, 0.95 s of the kernel's time, in a 300,000-line run that took 4.5 s
(README, Benchmarks). glibc raises its own thresholds after the first such free, but its defaults
still trim; fixed higher thresholds keep up to `TRIM` bytes in the heap for reuse, and cut the
faults to 85,000 and the run to 3.9 s, with the same peak memory (about 210 MB).

polars allocates with its own jemalloc, which polars tells to return freed pages to the kernel
within half a second (it sets `_RJEM_MALLOC_CONF` when imported, unless it is set): told to keep
them for 10 s (`POLARS_JEMALLOC`, read when polars first allocates, so
set before polars is imported, and never over the user's own setting), the same run faulted
44,000 times instead of 88,000.

Only where the C library is glibc (Linux); elsewhere, or where the call is refused, nothing changes.
The settings are the process's, so the CLI's `stream` makes them, not the library's `stream()`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys
from functools import cache

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
TRIM = 128 << 20  # free memory at the heap's top kept, not returned to the kernel
MMAP = 32 << 20  # buffers up to this size come from the heap, not a fresh mapping (glibc's upper limit)
POLARS_JEMALLOC = ("_RJEM_MALLOC_CONF", "dirty_decay_ms:10000,muzzy_decay_ms:10000")  # polars' prefix


@cache
def keep_freed_memory() -> bool:
    """Set the thresholds once per process; whether glibc took them."""
    if "polars" not in sys.modules:
        os.environ.setdefault(*POLARS_JEMALLOC)
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # The mmap threshold last: setting either turns glibc's own adjustment off, and the trim
    # threshold alone left the buffers mapped afresh each time (more faults than the defaults).
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM)) and bool(mallopt(M_MMAP_THRESHOLD, MMAP))
