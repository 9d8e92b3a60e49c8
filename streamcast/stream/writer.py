"""A stream's text, formatted and written by a second thread while the network runs the next batch.

In bulk, formatting a micro-batch's forecasts took as long as computing them, one after the other
on one core. polars formats and torch computes with the GIL released, so a second thread makes the
text of batch k while the main thread runs batch k + 1 (1.35-1.6x the lines per second in one
process on the 2-core machine, README). A batch of a few lines that finds the thread idle is written at
once by the caller instead: one line at a time, a hand-over would only add its latency.

Order and the replay window stay exact: batches are written in the order handed over, and
`drain` waits until every one of them is out and flushed, which the session does before each
checkpoint, so a checkpoint never covers a line whose forecast is still in memory. What belongs
after a batch's lines (its stderr messages, its counts, its latency) runs right after them, in
whichever thread wrote them, so a reader of both streams sees them in the order they had.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import BinaryIO

from streamcast.stream.engine import StreamBatch
from streamcast.stream.output import SMALL_BATCH, Csv, JsonLines

DEPTH = 2  # batches handed over and waiting: enough to overlap, little memory held


class OutputWriter:
    """Writes the text of each batch to `out`, in order, from a second thread where that pays."""

    def __init__(self, out: BinaryIO, text: JsonLines | Csv) -> None:
        self.out = out
        self.text = text
        self.header_written = False
        self.error: BaseException | None = None  # the writer thread's, raised in the caller's
        self._queue: queue.Queue[tuple[StreamBatch, Callable[[], None]] | None] = queue.Queue(DEPTH)
        self._done = threading.Condition()
        self._pending = 0  # batches handed over and not yet written (guarded by _done)
        self._thread: threading.Thread | None = None

    def write(self, batch: StreamBatch, after: Callable[[], None] = lambda: None) -> None:
        """Write `batch` after every batch before it, then call `after`; an error of an earlier
        write is raised here."""
        with self._done:
            idle = self._pending == 0
            error = self.error  # set before the count falls: seen here if the last write failed
        if error is not None:
            raise error
        if idle and len(batch) <= SMALL_BATCH:
            self._write(batch, after)  # the thread is waiting for work, so this cannot overtake it
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="streamcast-output", daemon=True)
            self._thread.start()
        with self._done:
            self._pending += 1
        self._queue.put((batch, after))

    def drain(self) -> None:
        """Return once every batch handed over is written and flushed; raise a write's error."""
        with self._done:
            while self._pending:
                self._done.wait()
        self._raise()

    def close(self) -> None:
        """Stop the thread after what it holds (written, or dropped after an error); no error is
        raised here."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self.error is None:  # after a failed write (a closed stdout) the rest is dropped
                    self._write(*item)
            except BaseException as exc:  # raised in the caller's thread at its next call
                self.error = exc
            finally:
                with self._done:
                    self._pending -= 1
                    self._done.notify_all()

    def _write(self, batch: StreamBatch, after: Callable[[], None]) -> None:
        text = self.text.render(batch)
        if len(text):
            if not self.header_written:
                self.out.write(self.text.header().encode())
                self.header_written = True
            self.out.write(text)
            self.out.flush()
        after()
