"""The exceptions a user can cause, each carrying the exit code the CLI returns for it.

Bugs are not wrapped: they stay ordinary exceptions, so that they surface as tracebacks in tests.
"""

from __future__ import annotations


class StreamcastError(Exception):
    """A problem the user can fix; the message says what is wrong and how to fix it."""

    exit_code = 1


class StreamcastWarning(UserWarning):
    """A result that runs but may not be what the caller meant (Python's warnings: library users
    see it without the CLI; the CLI prints its own line instead)."""


class UsageError(StreamcastError):
    """Options or arguments that cannot work together (exit code 2, like click's own)."""

    exit_code = 2


class DataError(StreamcastError):
    """Input data that cannot be read or used (exit code 1)."""

    exit_code = 1


class StrictStop(DataError):
    """`stream --strict` met a bad line (exit code 1); `line` says where the stream stopped."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason} (--strict stops at the first bad line)")
        self.line = line


class ModelFileError(StreamcastError):
    """A model or state file that is missing, corrupt or not ours (exit code 1)."""

    exit_code = 1


class WriteError(StreamcastError):
    """An output that could not be written: a full disk, a quota, a file size limit (exit code 1)."""

    exit_code = 1


class Interrupted(StreamcastError):
    """Ctrl-C before anything worth keeping was made (exit code 130, as a shell reports SIGINT)."""

    exit_code = 130


class OutputClosed(StreamcastError):
    """`stream`'s stdout was closed by its reader (exit code 1): the stream cannot go on."""

    exit_code = 1


class LockTimeout(StreamcastError):
    """Another run holds the output lock (exit code 75, EX_TEMPFAIL: cron may retry)."""

    exit_code = 75


DAMAGED_FILE = (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError)
"""What reading a model or state file whose contents do not fit together can raise."""


def first_line(exc: BaseException) -> str:
    """An exception's message as one line for stderr; its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
