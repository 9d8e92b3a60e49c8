"""Write files so that a reader never sees half of one and a failed run leaves the old one intact."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from streamcast.errors import UsageError


def check_writable(path: str | Path, what: str = "output") -> None:
    """Fail before any work is done when `path` cannot be written: a folder, or a place without
    write permission (where a lock file could not be made either, so a run would only time out)."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{what} {str(path)!r} is a folder; give a file path")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # atomic_path creates the missing folders
    if not parent.is_dir():
        raise UsageError(f"cannot write {what} {str(path)!r}: {parent} is a file, not a folder")
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
    target.parent.mkdir(parents=True, exist_ok=True)
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
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
