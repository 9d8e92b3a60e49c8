"""An advisory lock on an output path, so that overlapping cron runs never write it at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from streamcast.atomic import check_writable, remove_temporaries
from streamcast.errors import LockTimeout


@contextlib.contextmanager
def output_lock(path: str, timeout: float, lock_path: str | None = None) -> Iterator[None]:
    """Hold `PATH.lock` (or `lock_path`) while writing PATH; give up after `timeout` seconds with
    LockTimeout (75)."""
    lock_path = lock_path or f"{path}.lock"
    # filelock retries a lock file it cannot create until the timeout, as if another run held it:
    # make sure the folder takes new files first, so that one that does not fails at once with
    # its reason (check_writable probes with a temporary file, not the lock file: an empty lock
    # file left behind would look held to filelock's fallback lock on filesystems without flock).
    check_writable(path)
    Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(lock_path, timeout=timeout):
            remove_temporaries(path)  # of a run killed while writing: nobody else writes now
            yield
    except Timeout:
        raise LockTimeout(
            f"another run is writing {path} (lock {lock_path} held for over {timeout:g}s); "
            "try again later or raise --lock-timeout"
        ) from None
