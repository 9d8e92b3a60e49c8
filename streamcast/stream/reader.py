"""Bytes on a pipe to complete lines, as many as are ready right now: one micro-batch."""

from __future__ import annotations

import io
import os
import select
from typing import BinaryIO

MAX_LINE_BYTES = 1 << 20
TOO_LONG = "\x00 line too long"  # stands in, by identity, for a line the reader dropped


class LineReader:
    """Complete lines from a byte stream, as many as are ready right now: one micro-batch.

    Waiting never holds back a line that has arrived, so a slow producer gets each forecast at once,
    while a fast one (a file through `cat`) fills batches of up to `max_lines`.
    """

    def __init__(self, source: BinaryIO, max_lines: int = 8192, wake_fd: int | None = None) -> None:
        self.source = source
        self.max_lines = max_lines
        self.wake_fd = wake_fd
        self.buffer = bytearray()
        self.pending: list[str] = []
        self.eof = False
        self.lines_read = 0
        self.started = False  # a byte-order mark may open the first line only
        self.dropping = False  # inside a line longer than MAX_LINE_BYTES: skip to its end
        try:
            self.fd: int | None = source.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self.fd = None
        if self.fd is not None:
            _grow_pipe(self.fd)

    def read(self, timeout: float | None = None) -> tuple[int, list[str]] | None:
        """(number of the first line, lines) ready within `timeout` seconds, possibly none; None at the end."""
        if not self.pending and not self.eof:
            self._fill(timeout)
        if not self.pending:
            if self.eof:
                return None
            return self.lines_read + 1, []
        lines, self.pending = self.pending[: self.max_lines], self.pending[self.max_lines :]
        first = self.lines_read + 1
        self.lines_read += len(lines)
        return first, lines

    def _fill(self, timeout: float | None) -> None:
        if self.fd is None:
            chunk = self.source.read(1 << 20)
            self._take(chunk)
            return
        watched = [self.fd] if self.wake_fd is None else [self.fd, self.wake_fd]
        ready = select.select(watched, [], [], timeout)[0]
        if self.wake_fd is not None and self.wake_fd in ready:
            _drain(self.wake_fd)
        if self.fd not in ready:
            return
        while True:
            chunk = os.read(self.fd, 1 << 20)
            self._take(chunk)
            if self.eof or self.buffer.count(b"\n") >= self.max_lines:
                return
            if not select.select([self.fd], [], [], 0)[0]:
                return

    def _take(self, chunk: bytes) -> None:
        if not chunk:
            self.eof = True
            if self.dropping:
                self.pending.append(TOO_LONG)
            elif self.buffer:
                self.pending += self._lines(bytes(self.buffer))
            self.buffer.clear()
            return
        if self.dropping:
            # Memory stays bounded whatever a producer sends: the rest of a too long line is dropped.
            end = chunk.find(b"\n")
            if end < 0:
                return
            self.pending.append(TOO_LONG)
            self.dropping, chunk = False, chunk[end + 1 :]
        start = len(self.buffer)
        self.buffer += chunk
        cut = self.buffer.rfind(b"\n", start)
        if cut < 0:
            if len(self.buffer) > MAX_LINE_BYTES:
                self.buffer.clear()
                self.dropping = True
            return
        raw = bytes(self.buffer[:cut])
        del self.buffer[: cut + 1]
        self.pending += self._lines(raw)
        if len(self.buffer) > MAX_LINE_BYTES:
            self.buffer.clear()
            self.dropping = True

    def _lines(self, raw: bytes) -> list[str]:
        """Complete lines; each one longer than MAX_LINE_BYTES, wherever it lies, is TOO_LONG."""
        if len(raw) <= MAX_LINE_BYTES:
            return self._decode(raw).split("\n")
        return [
            TOO_LONG if len(part) > MAX_LINE_BYTES else self._decode(part).removesuffix("\r")
            for part in raw.split(b"\n")
        ]

    def _decode(self, raw: bytes) -> str:
        text = raw.decode("utf-8", errors="replace")
        if not self.started:
            self.started = True
            text = text.removeprefix("\ufeff")
        return text.replace("\r\n", "\n") if "\r" in text else text


def _grow_pipe(fd: int) -> None:
    """A larger pipe lets a bulk producer fill bigger micro-batches (Linux only; harmless elsewhere)."""
    try:
        import fcntl

        fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ
    except (ImportError, OSError):
        pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, OSError):
        pass
