"""The kernel told to start writing a file's pages to disk while the rest of the file is still
being written, so that the close and the fsync after it find the work done.

A million series' checkpoint is a gigabyte. ext4 submits the writeback of a file it has just
made when the file is closed or synced (its delayed allocation): 0.35 s per gigabyte on this
project's machine, after every byte was written and hashed. Started chunk by chunk
(`sync_file_range` with `SYNC_FILE_RANGE_WRITE`, which only starts it), that work runs beside the
hashing of the next chunk, and a checkpoint whose disk has caught up took 1.1-1.4 s instead of
1.4-2.9 s (README, Benchmarks). It changes when the bytes reach the disk, never which: the fsync
that makes the file durable is still made, and still waited for.

Linux only (the call is glibc's, through ctypes: Python's `os` has no `sync_file_range`);
elsewhere, or where the call is refused, nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from functools import cache
from typing import BinaryIO

SYNC_FILE_RANGE_WRITE = 2  # start writing the range's dirty pages; do not wait (linux/fs.h)


def start_writeback(f: BinaryIO, offset: int, length: int) -> None:
    """Start writing `length` bytes of `f` from `offset` to disk; returns at once."""
    call = _sync_file_range()
    if call is None:
        return
    try:
        fd = f.fileno()
    except (OSError, ValueError):  # an in-memory file (io.BytesIO's UnsupportedOperation is both)
        return
    call(fd, offset, length, SYNC_FILE_RANGE_WRITE)  # a refusal (-1) only leaves it to the close


@cache
def _sync_file_range():
    if platform.system() != "Linux":
        return None
    try:
        call = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int
    return call
