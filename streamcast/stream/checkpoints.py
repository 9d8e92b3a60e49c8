"""When and how `stream` writes its checkpoints: the state file and the adapted model.

A state of many series is written by a second thread while the stream goes on. A million GRU
series make a gigabyte, whose building, writing, hashing and fsync had held the stream for 3.6-4.4
s; now it holds it only while a copy of the state is taken (the per-series lists, shallowly, and
the hidden rows), and the next checkpoint waits for the one in flight. A small state is written in place, as
before: it takes milliseconds, and a checkpoint that has landed when `save` returns keeps a
SIGKILL's replay window exactly where the last checkpoint was asked for.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, TextIO

from streamcast import safefile
from streamcast.errors import first_line
from streamcast.forecaster import Forecaster
from streamcast.stream.state import StreamState

if TYPE_CHECKING:
    from streamcast.stream.session import SessionOptions

BACKGROUND_FROM = 100_000  # series from which the state file is written by a second thread
IN_FLIGHT_POLL = 0.5  # seconds an idle input waits at most while a write is in flight


class Checkpoints:
    """Saves the state file and the adapted model, where asked for: once `checkpoint_every`
    observations or `checkpoint_seconds` have passed since the last save, and when told to."""

    def __init__(
        self, state: StreamState, options: SessionOptions, background_from: int | None = None
    ) -> None:
        self.state = state
        self.options = options
        self.background_from = BACKGROUND_FROM if background_from is None else background_from
        self.unsaved = 0  # observations taken since the last save
        self.saved_at = time.monotonic()
        self._writer: ThreadPoolExecutor | None = None
        self._in_flight: Future | None = None

    def save(self, forecaster: Forecaster, final: bool = False) -> None:
        """Take a checkpoint; `final`: it has landed when this returns (the run ends)."""
        options = self.options
        if options.state_path:
            self.landed()  # one write at a time, in the order taken; its error is raised here
            if final or len(self.state) < self.background_from:
                self.state.save(options.state_path)
                self._checkpointed()
            else:
                if self._writer is None:
                    self._writer = ThreadPoolExecutor(1, thread_name_prefix="streamcast-checkpoint")
                build = self.state.snapshot(copy=True)
                self._in_flight = self._writer.submit(_write, options.state_path, build)
                self._in_flight.add_done_callback(lambda done: done.exception() or self._checkpointed())
        if options.save_model and self.state.learner is not None:
            from streamcast.modelfile import save as save_model  # with --learn: torch is loaded

            save_model(self.state.learner.adapted(forecaster), options.save_model)
            if not options.state_path:
                self._checkpointed()
        self.unsaved = 0
        self.saved_at = time.monotonic()

    def poll(self) -> None:
        """Raise the error of a write that failed, as soon as it has, without waiting for one
        still in flight: a stream whose checkpoints fail stops at the next batch (or within
        `IN_FLIGHT_POLL` seconds on an idle input), as when they were written in place."""
        if self._in_flight is not None and self._in_flight.done():
            self.landed()

    def landed(self) -> None:
        """Wait for the state file in flight, if any; an error writing it is raised here."""
        if self._in_flight is None:
            return
        writing, self._in_flight = self._in_flight, None
        writing.result()

    def close(self, report: TextIO | None = None) -> None:
        """Let the write in flight land, then stop the writer's thread. Its error is raised, or
        with `report` (the run is already ending on another error, which must not be hidden)
        written there as one line."""
        try:
            self.landed()
        except Exception as exc:
            if report is None:
                raise
            report.write(f"checkpoint: {first_line(exc)}\n")
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None

    def _checkpointed(self) -> None:
        if self.options.metrics is not None:
            self.options.metrics.checkpointed()

    def due(self) -> bool:
        if not self.unsaved:
            return False
        return self.unsaved >= self.options.checkpoint_every or self._seconds_left() <= 0

    def _seconds_left(self) -> float:
        return self.options.checkpoint_seconds - (time.monotonic() - self.saved_at)

    def timeout(self) -> float | None:
        """Wait for input no longer than until the next timed checkpoint is due, or than
        `IN_FLIGHT_POLL` while a write is in flight (its error is then seen on an idle input)."""
        waits = [IN_FLIGHT_POLL] if self._in_flight is not None else []
        if self.unsaved and (self.options.state_path or self.options.save_model):
            waits.append(max(0.0, self._seconds_left()))
        return min(waits) if waits else None


def _write(path: str, build) -> None:
    """On the writer's thread: the file's columns from the copies, then the file."""
    safefile.save(path, *build())
