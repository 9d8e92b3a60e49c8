"""`stream` as a process: lines from a byte stream, forecasts out, checkpoints, signals, a summary.

Checkpoints (with a state file) are written after the output of a micro-batch is flushed: once at
least `checkpoint_every` observations or `checkpoint_seconds` have passed since the last one, at
the end of input, on SIGTERM (exit 0) and SIGINT (exit 130) after the micro-batch in hand, and
before a --strict error exit. A run killed without warning (SIGKILL) and restarted with the same
state file and the same input resumes from its last checkpoint: lines up to it are recognised as
replays and skipped, and what came after it is computed and printed again (the replay window).

SIGHUP reloads the model file between micro-batches (`reload.adopt`): series keep their states when
the new model's shapes match; otherwise one line on stderr and the old model serves on.
"""

from __future__ import annotations

import gc
import io
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, TextIO

from streamcast.errors import OutputClosed, StreamcastError, StrictStop, first_line
from streamcast.forecaster import Forecaster
from streamcast.stream import reload
from streamcast.stream.checkpoints import Checkpoints
from streamcast.stream.engine import StreamBatch, StreamConfig, stream
from streamcast.stream.input import LineParser, Observations
from streamcast.stream.output import formatter
from streamcast.stream.reader import LineReader
from streamcast.stream.state import StreamState
from streamcast.stream.watch import anomalies_only
from streamcast.stream.writer import OutputWriter

if TYPE_CHECKING:
    from streamcast.stream.monitoring import StreamMetrics

COUNTS = ("accepted", "skipped", "filled", "reset", "replayed", "ignored", "evicted")


@dataclass(frozen=True)
class SessionOptions:
    """How the process around `stream()` reads, writes and checkpoints."""

    output_format: str = "jsonl"
    state_path: str | None = None
    checkpoint_every: int = 10_000
    checkpoint_seconds: float = 60.0
    save_model: str | None = None
    batch_lines: int = 8192
    quiet: bool = False
    threads: int | None = None  # torch threads; None: streamcast.threads.default_threads()
    only_anomalies: bool = False  # with StreamConfig.watch: print the anomalies' lines only
    model_path: str | None = None  # reloaded on SIGHUP; None: SIGHUP is left alone
    metrics: StreamMetrics | None = None  # kept up to date batch by batch (--metrics-port)


class StreamSession:
    """One run of `stream` over a byte stream."""

    def __init__(
        self,
        forecaster: Forecaster,
        state: StreamState,
        config: StreamConfig,
        parser: LineParser,
        options: SessionOptions,
        out: BinaryIO,
        err: TextIO,
    ) -> None:
        self.forecaster = forecaster
        self.state = state
        self.config = config
        self.parser = parser
        self.options = options
        self.out = out
        self.err = err
        text = formatter(
            options.output_format, forecaster.horizon, forecaster.quantiles, config.watch is not None
        )
        self.output = OutputWriter(out, text)  # formats and writes in a second thread where it pays
        self.counts: Counter[str] = Counter(dict.fromkeys(COUNTS, 0))
        self.lines = 0
        self.checkpoints = Checkpoints(state, options)
        self.signals = Signals()

    def run(self, source: BinaryIO) -> int:
        """Stream `source` to the end or to a signal; the exit code (0, or 130 after SIGINT)."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        self.signals.install(
            wake_write, reload_on=(signal.SIGHUP,) if self.options.model_path is not None else ()
        )
        # Everything loaded so far (torch, polars, the model, the states) lives as long as the
        # stream: out of the cycle collector's sight, its full passes no longer walk it between
        # two lines.
        gc.freeze()
        try:
            reader = LineReader(source, self.options.batch_lines, wake_fd=wake_read)
            try:
                while True:
                    # A reload ends the feed of one stream() and starts another with the new model.
                    batches = self._observations(reader)
                    for batch in stream(
                        self.forecaster, batches, self.state, self.config, threads=self.options.threads
                    ):
                        self._emit(batch)
                        self.checkpoints.poll()  # a write that failed since stops the run here
                        if self.checkpoints.due():
                            self.output.drain()  # a checkpoint covers only lines whose output is out
                            self.checkpoints.save(self.forecaster)
                    if self.signals.stop is not None or not self.signals.reload_due:
                        break
                    self._reload()
                self.output.drain()
            except StrictStop as stop:
                self.lines = stop.line  # the lines after it were read ahead, never processed
                try:
                    self.output.drain()
                except BrokenPipeError:
                    self._output_closed()
                self.checkpoints.close(report=self.err)  # a write in flight must not hide the stop
                self.checkpoints.save(self.forecaster, final=True)
                self.err.write(self.summary() + "\n")
                raise
            except BrokenPipeError:
                self._output_closed()
            self.checkpoints.save(self.forecaster, final=True)
        except BaseException:
            self.checkpoints.close(report=self.err)  # lands; its own error must not hide this one
            raise
        finally:
            self.output.close()
            self.checkpoints.close()  # nothing is in flight here any more: stops the writer
            self.signals.restore()
            os.close(wake_read)
            os.close(wake_write)
        self.err.write(self.summary() + "\n")
        self.err.flush()
        return 130 if self.signals.stop == signal.SIGINT else 0

    def _output_closed(self) -> None:
        """The reader of stdout has gone: the forecasts in hand were lost, so no final checkpoint
        (a restart replays from the last one), and a supervisor must see it."""
        self.output.close()  # what it holds goes out first where stdout is still open (stderr closed)
        _silence_stdout(self.out)
        self.err.write(self.summary() + "\n")
        raise OutputClosed(
            "stdout was closed by its reader; stopped without a final checkpoint, "
            "so a restart with the same --state replays from the last one"
        ) from None

    def _observations(self, reader: LineReader) -> Iterator[Observations]:
        while self.signals.stop is None and not self.signals.reload_due:
            got = reader.read(self.checkpoints.timeout())
            if got is None:
                return
            first, lines = got
            self.lines += len(lines)
            self.state.lines += len(lines)
            if self.options.metrics is not None:
                self.options.metrics.started(len(lines))
            yield self.parser.parse(lines, first)

    def _reload(self) -> None:
        """Serve the model file as it is now; a failure is one stderr line and the old model."""
        self.signals.reload_due = False
        path = self.options.model_path
        try:
            new = reload.load_like(self.forecaster, path)
            reload.adopt(self.state, self.forecaster, new, path)
        except StreamcastError as exc:
            self.err.write(f"SIGHUP: {first_line(exc)}\n")
            outcome = "refused"
        else:
            self.forecaster = new
            self.err.write(f"SIGHUP: reloaded {path}; {len(self.state)} series keep their states\n")
            outcome = "done"
        self.err.flush()
        if self.options.metrics is not None:
            self.options.metrics.reloaded(outcome)
        # The old model was frozen with the rest at start: let the collector see it once, so that
        # a cycle in it is not kept for ever, reload after reload; then freeze the new state of things.
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def _emit(self, batch: StreamBatch) -> None:
        if self.options.only_anomalies:
            batch = anomalies_only(batch)  # the same anomalies: only they are left
        self.checkpoints.unsaved += batch.accepted  # due by what was taken in; saved after a drain
        metrics = self.options.metrics
        read_at = metrics.handed_over() if metrics is not None else None
        series = len(self.state)
        self.output.write(batch, lambda: self._written(batch, series, read_at))

    def _written(self, batch: StreamBatch, series: int, read_at: float | None) -> None:
        """A batch's lines are out: its counts, its messages on stderr and its metrics, in the
        thread that wrote it, so that a closed stdout leaves them uncounted as before."""
        _tally(self.counts, batch)
        if batch.events and not self.options.quiet:
            self.err.write("".join(f"{e.message}\n" for e in batch.events))
            self.err.flush()
        if self.options.metrics is not None:
            self.options.metrics.finished(batch, series, read_at)

    def summary(self) -> str:
        """One line of counts for stderr at the end of a run."""
        shown = (
            *COUNTS,
            *(("other_partition",) if self.config.partition is not None else ()),
            *(("anomalies",) if self.config.watch is not None else ()),
        )
        counts = ", ".join(f"{k}={self.counts[k]}" for k in shown)
        return f"stream: {self.lines} lines, {counts}"


class Signals:
    """SIGTERM and SIGINT stop the run after the micro-batch in hand; a reload signal (SIGHUP) asks
    for the model file to be read again. A handler only sets a flag and wakes the reader's select()."""

    def __init__(self) -> None:
        self.stop: int | None = None  # the signal that asked the run to stop
        self.reload_due = False
        self._previous = None  # the handlers and wake-up fd to restore

    def install(self, wake_fd: int, reload_on: tuple[int, ...]) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python takes signals in the main thread only

        def on_signal(signum, frame):
            self.stop = signum

        def on_reload(signum, frame):
            self.reload_due = True

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        previous.update({sig: signal.signal(sig, on_reload) for sig in reload_on})
        self._previous = previous, signal.set_wakeup_fd(wake_fd)

    def restore(self) -> None:
        if self._previous is None:
            return
        previous, wake = self._previous
        self._previous = None
        signal.set_wakeup_fd(wake)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _tally(counts: Counter[str], batch: StreamBatch) -> None:
    """Add a batch to the run's counts (the summary line)."""
    for name in ("anomalies", "accepted", "replayed", "evicted", "other_partition"):
        counts[name] += getattr(batch, name)
    for event in batch.events:
        counts[event.kind] += 1


def _silence_stdout(out: BinaryIO) -> None:
    """Point the closed stdout at /dev/null, so that the interpreter's final flush stays quiet."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass
