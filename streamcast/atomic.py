"""Write files so that a reader never sees half of one and a failed run leaves the old one intact."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from streamcast.errors import UsageError, WriteError

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def check_writable(path: str | Path, what: str = "output") -> None:
    """Fail before any work is done when `path` cannot be written: a folder, or a place without
    write permission (where a lock file could not be made either, so a run would only time out)."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{what} {str(path)!r} is a folder; give a file path")
    parent = target.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UsageError(f"cannot write {what} {str(path)!r}: {existing} is a file, not a folder")
    if existing != parent:
        # As cp, curl -o and every shell redirection: a mistyped folder must not quietly become a
        # new tree of folders that nothing reads.
        raise UsageError(
            f"cannot write {what} {str(path)!r}: folder {str(parent)!r} does not exist; create it "
            f"first (mkdir -p {parent})"
        )
    # Try it rather than ask os.access: root passes every permission check, yet /proc or a
    # read-only mount still refuses new files, which would only show after all the work.
    try:
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as exc:
        raise UsageError(
            f"cannot write {what} {str(path)!r}: {parent} does not take new files ({exc.strerror}); "
            "choose another path"
        ) from None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed over `path`."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); give it the mode any new file would have.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        replaced = _held(target)
        try:
            os.replace(tmp_path, target)
        finally:
            if replaced is not None:
                threading.Thread(target=os.close, args=(replaced,), name="streamcast-release").start()
    except OSError as exc:
        if exc.errno not in _FULL:
            raise
        raise WriteError(
            f"cannot write {str(path)!r}: {exc.strerror}; the previous file is left as it was "
            "(free some space, or choose another place)"
        ) from None
    finally:
        tmp_path.unlink(missing_ok=True)


RELEASE_FROM = 64 << 20  # bytes of a replaced file from which it is let go on a second thread


def _held(target: Path) -> int | None:
    """A descriptor of the large file about to be replaced, so that freeing its blocks (0.2 s for
    a million series' gigabyte checkpoint on a disk mounted with `discard`) happens when a second
    thread closes it, after the new file is in place, rather than inside the rename."""
    try:
        if not _large_file(os.stat(target)):  # a FIFO or a device is never opened here
            return None
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    if _large_file(os.fstat(fd)):  # still the file stat saw
        return fd
    os.close(fd)
    return None


def _large_file(status: os.stat_result) -> bool:
    return stat.S_ISREG(status.st_mode) and status.st_size >= RELEASE_FROM


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def remove_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporary files `atomic_path` left beside `path` when a run was killed mid-write.

    Call it only while holding the output's lock: a running writer's temporary file is live.
    """
    target = Path(path)
    pattern = str(target.parent / f".{glob.escape(target.name)}.*.tmp")
    removed = []
    for name in glob.glob(pattern):
        with contextlib.suppress(OSError):
            os.unlink(name)
            removed.append(Path(name))
    return removed
