"""An advisory lock on an output path, so that overlapping cron runs never write it at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from streamcast.atomic import check_writable, remove_temporaries
from streamcast.errors import LockTimeout


def lock_path(path: str) -> str:
    """The lock file of `path`: hidden (`.NAME.lock`) beside it, out of the way of whatever lists
    the folder (a dashboard reading every file there, a glob over the outputs)."""
    target = Path(path)
    return str(target.with_name(f".{target.name}.lock"))


@contextlib.contextmanager
def output_lock(path: str, timeout: float, lock: str | None = None) -> Iterator[None]:
    """Hold `.PATH.lock` (or `lock`) while writing PATH; give up after `timeout` seconds with
    LockTimeout (75)."""
    lock = lock or lock_path(path)
    # filelock retries a lock file it cannot create until the timeout, as if another run held it:
    # make sure the folder takes new files first, so that one that does not fails at once with
    # its reason (check_writable probes with a temporary file, not the lock file: an empty lock
    # file left behind would look held to filelock's fallback lock on filesystems without flock).
    check_writable(path)
    try:
        with FileLock(lock, timeout=timeout):
            remove_temporaries(path)  # of a run killed while writing: nobody else writes now
            yield
    except Timeout:
        raise LockTimeout(
            f"another run is writing {path} (lock {lock} held for over {timeout:g}s); "
            "try again later or raise --lock-timeout"
        ) from None
