"""An advisory lock on an output path, so that overlapping cron runs never write it at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from filelock import FileLock, Timeout

from streamcast.errors import LockTimeout


@contextlib.contextmanager
def output_lock(path: str, timeout: float) -> Iterator[None]:
    """Hold `PATH.lock` while writing PATH; give up after `timeout` seconds with LockTimeout (75)."""
    lock_path = f"{path}.lock"
    # filelock retries a lock file it cannot create until the timeout, as if another run held it:
    # create it first, so that a folder without write permission fails at once with its reason.
    with open(lock_path, "a"):
        pass
    try:
        with FileLock(lock_path, timeout=timeout):
            yield
    except Timeout:
        raise LockTimeout(
            f"another run is writing {path} (lock {lock_path} held for over {timeout:g}s); "
            "try again later or raise --lock-timeout"
        ) from None
