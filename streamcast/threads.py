"""How many threads torch computes with: the one rule every command and library entry point follows.

streamcast's recurrent steps are small (a batch of lanes or series through one cell step), so
torch's intra-op threads spend more time waiting for each other than working; when another process
holds a core, they spin-wait for one that is not running, and every step stalls (issue 11: a
one-epoch fit took 221 s on 2 threads beside another torch job and 14 s on one).
`benchmarks/bench_threads.py` measured fit, forecast and stream with hidden 64 and 256 on 2 shared
cores: two threads were 3-27x slower than one in every case, so one is the default for every model
size; `--threads N`, `threads=N` or the STREAMCAST_THREADS environment variable choose more.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import cache

from streamcast.errors import UsageError

ENV = "STREAMCAST_THREADS"
DEFAULT_THREADS = 1


def default_threads() -> int:
    """The thread count when none is given: STREAMCAST_THREADS if set, else one."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT_THREADS
    try:
        threads = int(text)
    except ValueError:
        raise UsageError(f"{ENV}={text!r} is not a whole number; set it to 1 or more, or unset it") from None
    return check_threads(threads, ENV)


def check_threads(threads: int, name: str = "--threads") -> int:
    """`threads` itself, or a usage error naming where a count below one came from."""
    if threads < 1:
        raise UsageError(f"{name} must be at least 1 (torch threads); got {threads}")
    return threads


def check_jobs(jobs: int | str, name: str = "--jobs") -> int:
    """A count of processes (`fit --jobs`), or a usage error that says what was wrong."""
    try:
        count = int(jobs)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a whole number or auto; got {jobs!r}") from None
    if count < 1:
        raise UsageError(f"{name} must be at least 1 (processes); got {count}")
    return count


@contextmanager
def torch_threads(threads: int | None = None) -> Iterator[int]:
    """Run the block on `threads` intra-op torch threads (None: `default_threads()`), then give the
    caller's own count back, so that a library call leaves the process as it found it.

    >>> with torch_threads(2):  # doctest: +SKIP
    ...     model = fit(data, config)
    """
    import torch

    threads = default_threads() if threads is None else check_threads(threads)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(previous)


@contextmanager
def compute_threads(threads: int | None = None) -> Iterator[int]:
    """`torch_threads` where torch is loaded, and numpy's BLAS threads alike: the numpy mirror of
    the network (`stream` on the CPU) multiplies small matrices, where OpenBLAS's default of a
    thread per core was 14x slower than one thread beside another busy process (990 against 70 µs
    for 100 x 64 by 64 x 192), as torch's threads were. torch is not imported to set it."""
    threads = default_threads() if threads is None else check_threads(threads)
    with ExitStack() as stack:
        if "torch" in sys.modules:
            stack.enter_context(torch_threads(threads))
        stack.enter_context(_blas_limited(threads))
        yield threads


@contextmanager
def _blas_limited(threads: int) -> Iterator[None]:
    """numpy's BLAS on `threads` threads for the block, then the caller's counts back; nothing
    set where they already are (a `stream` on the CLI: the process's count, set once), since
    setting them costs about 40 µs, a twentieth of a line's time one line at a time."""
    blas = _blas()
    libs = [] if blas is None else blas.lib_controllers
    previous = [lib.get_num_threads() for lib in libs]
    changed = [(lib, count) for lib, count in zip(libs, previous, strict=True) if count != threads]
    for lib, _ in changed:
        lib.set_num_threads(threads)
    try:
        yield
    finally:
        for lib, count in changed:
            lib.set_num_threads(count)


@cache
def _blas():
    """numpy's BLAS libraries as threadpoolctl controls them (found once: looking takes ~1 ms)."""
    from threadpoolctl import ThreadpoolController

    blas = ThreadpoolController().select(user_api="blas")
    return blas if blas.lib_controllers else None


def set_blas_threads(threads: int) -> int:
    """For a process streamcast owns: numpy's BLAS threads (see `compute_threads`), never
    restored; all that `stream` on the CPU sets, since it serves without torch."""
    threads = check_threads(threads)
    blas = _blas()
    if blas is not None:
        blas.limit(limits=threads)
    return threads


def set_process_threads(threads: int) -> None:
    """For a process streamcast owns (the CLI): intra-op threads, and the inter-op pool too.

    Torch accepts an inter-op count only before its inter-op pool has started, once per process;
    a later call (a second command in the same process, as in tests) keeps the first count.
    streamcast itself never runs inter-op work, so this only keeps the pool from growing.
    """
    import torch

    threads = set_blas_threads(threads)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass  # already set, or the pool is running: the first count stays
