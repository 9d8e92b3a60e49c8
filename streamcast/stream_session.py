"""Run a stream end to end: lines in, forecast text out, checkpoints on time, a summary at the end.

The CLI wires this to stdin, stdout and signals; tests and other programs can drive it directly.
Lines are read in micro-batches: whatever is already waiting (up to `max_lines`), so a file piped
in bulk runs in large batches while a slow producer gets each forecast at once.
"""

from __future__ import annotations

import io
import os
import select
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from streamcast.errors import DataError
from streamcast.forecaster import Forecaster
from streamcast.reading import SeriesFrame
from streamcast.stepping import run_series
from streamcast.stream_input import BadLine, LineParser
from streamcast.stream_output import format_csv, format_jsonl
from streamcast.stream_state import load_state, model_fingerprint, save_state
from streamcast.streaming import SeriesState, Streamer, StreamState


@dataclass(frozen=True)
class StreamOptions:
    """The `stream` command's options."""

    input_format: str | None = None
    output_format: str = "jsonl"
    every: int = 1
    state_path: str | None = None
    checkpoint_every: int = 10_000
    checkpoint_seconds: float = 30.0
    max_gap: int = 24
    warmup: int | None = None
    strict: bool = False


class StrictStop(DataError):
    """--strict: the first bad line ends the stream."""


def read_batches(
    stream: IO[bytes], max_lines: int = 8192, stop: Callable[[], bool] = lambda: False
) -> Iterator[list[str]]:
    """Lines in micro-batches: what is already waiting, never waiting for a batch to fill."""
    try:
        fd = stream.fileno()
    except (AttributeError, io.UnsupportedOperation):
        fd = None
    if fd is None:  # an in-memory stream (tests): plain chunks
        lines = stream.read().decode("utf-8", "replace").splitlines()
        for i in range(0, len(lines), max_lines):
            yield lines[i : i + max_lines]
        return
    pending = b""
    while not stop():
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        pending += chunk
        while pending.count(b"\n") < max_lines and select.select([fd], [], [], 0)[0]:
            more = os.read(fd, 1 << 16)
            if not more:
                break
            pending += more
        *complete, pending = pending.split(b"\n")
        if complete:
            yield [line.decode("utf-8", "replace") for line in complete]
    if pending.strip():
        yield [pending.decode("utf-8", "replace")]


class StreamSession:
    """One run of `stream`: parses, forecasts, formats, checkpoints and counts."""

    def __init__(self, forecaster: Forecaster, options: StreamOptions, warn: Callable[[str], None]):
        self.forecaster = forecaster
        self.options = options
        self.warn = warn
        self.fingerprint = model_fingerprint(forecaster)
        state = StreamState()
        if options.state_path and Path(options.state_path).exists():
            state = load_state(options.state_path, self.fingerprint)
        self.streamer = Streamer(
            forecaster, state, warmup=options.warmup, max_gap=options.max_gap, report=self._report
        )
        known = list(forecaster.scaler.loc)
        default_id = known[0] if len(known) == 1 else forecaster.columns.target
        self.parser = LineParser(
            forecaster.columns,
            forecaster.spec.covariates,
            default_id,
            forecaster.freq.endswith("i"),
            options.input_format,
        )
        self.line = 0  # line numbers in messages refer to this run's input
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self.header_written = False
        self.emitted: dict[str, int] = {}

    @property
    def state(self) -> StreamState:
        return self.streamer.state

    @property
    def counts(self):
        return self.streamer.counts

    def _report(self, line: int, message: str) -> None:
        if self.options.strict:
            raise StrictStop(f"line {line}: {message.split(';')[0]} (--strict)")
        self.warn(f"line {line}: {message}")

    def prewarm(self, history: SeriesFrame) -> int:
        """Warm the states of the series in `history` (no output), as `forecast` does."""
        inputs = self.forecaster.inputs(history.frame)
        ends = inputs.offsets[1:] - 1
        _, final = run_series(
            self.forecaster.net, inputs.inputs, inputs.offsets, [np.array([], dtype=np.int64)] * len(ends)
        )
        times = history.frame["timestamp"].gather(ends).to_list()
        values = history.frame["value"].gather(ends).to_list()
        for i, sid in enumerate(inputs.series_ids):
            hidden = tuple(t[i : i + 1] for t in final)
            self.state.series[sid] = SeriesState(
                hidden,
                float(inputs.loc[i]),
                float(inputs.scale[i]),
                times[i],
                values[i],
                int(inputs.lengths()[i]),
            )
        return len(inputs.series_ids)

    def feed(self, lines: list[str]) -> str:
        """Forecast text for one micro-batch of lines."""
        ticks = []
        for text in lines:
            self.line += 1
            try:
                tick = self.parser.parse(self.line, text)
            except BadLine as exc:
                self.counts.skipped += 1
                self._report(self.line, f"{exc}; line skipped")
                continue
            if tick is not None:
                ticks.append(tick)
        forecasts = self.streamer.process(ticks)
        if self.options.every > 1:
            forecasts = [f for f in forecasts if self._due(f.series_id)]
        self.state.lines += len(lines)
        self.since_checkpoint += len(lines)
        if self.options.output_format == "csv":
            text = format_csv(forecasts, self.forecaster, header=not self.header_written)
            self.header_written = self.header_written or bool(forecasts)
            return text
        return format_jsonl(forecasts, self.forecaster)

    def _due(self, series_id: str) -> bool:
        n = self.emitted.get(series_id, 0) + 1
        self.emitted[series_id] = n
        return n % self.options.every == 0

    def checkpoint_due(self) -> bool:
        o = self.options
        return bool(o.state_path) and (
            self.since_checkpoint >= o.checkpoint_every
            or time.monotonic() - self.last_checkpoint >= o.checkpoint_seconds
        )

    def checkpoint(self) -> None:
        if self.options.state_path:
            save_state(self.state, self.options.state_path, self.fingerprint)
            self.since_checkpoint = 0
            self.last_checkpoint = time.monotonic()
