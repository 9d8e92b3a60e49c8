"""Lines on stdin to observations: read as they arrive, parsed with as little Python as possible.

Formats, detected from the first lines at hand (or forced with `--format`): of the first line of
each shape, the one under which most lines parse decides, so a stray first line cannot:
- JSON lines: one object per line; keys as in `fit` (`--id-col`, `--time-col`, `--target`, else the
  model's column names, else the usual names such as `series_id`, `timestamp`, `value`).
- CSV with a header: a first line naming the target column (or any known column name).
- CSV without a header, by the number of fields: `value`, `time,value` or `id,time,value`, each
  followed by the model's covariates in the model's order.

Per-line rules (the stream goes on; each bad line is an `Event` with its line number):
- a line that cannot be split into the expected fields, a missing, non-numeric, NaN or infinite
  value or one beyond ±MAX_VALUE, a missing series id or one no output can carry (a lone
  surrogate, a control character, over MAX_ID_CHARS), an unreadable timestamp or one outside YEARS,
  JSON nested too deeply, a line over MAX_LINE_BYTES: the line is skipped;
- a missing, non-numeric or out-of-range covariate: filled with the series' last value of it (the
  training mean for a series without one);
- a future covariate (`fit --future-covariate`) carries the values of the steps after the line's
  time, as many as the model's horizon: a JSON list in JSON lines, numbers separated by spaces in
  a CSV field; a missing one, or one of another length or with a value that is not a number: the
  line is skipped (forecasting with made-up weather would be worse than no forecast);
- an unknown column or key: ignored, reported once (at most MAX_REPORTED keys);
- blank lines are ignored silently; a repeated CSV header line is skipped.

Timestamps are read as `fit` reads them: ISO 8601 strings (`2024-01` for a month), YYYYMMDD, or epoch
seconds; they become int64 microseconds since the epoch (UTC for timestamps with an offset and for
epoch seconds, wall time for naive ones). For a model without a time axis (freq
`1i`) the time column is an integer step index.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from streamcast.errors import UsageError
from streamcast.forecaster import Forecaster
from streamcast.reading import Columns
from streamcast.stream.csvlines import CsvLines
from streamcast.stream.detect import detect_start, guess_format
from streamcast.stream.fields import (  # noqa: F401 (MAX_ID_CHARS, MAX_STEP: the input's limits, named here too)
    MAX_ID_CHARS,
    MAX_STEP,
    BadLine,
    check_value,
    read_number,
    read_series_id,
    read_values_ahead,
)
from streamcast.stream.jsonlines import JsonLines
from streamcast.stream.observations import Event, LineBatch, Observations  # noqa: F401 (Event, Observations: the output, named here too)
from streamcast.stream.reader import MAX_LINE_BYTES, TOO_LONG, LineReader  # noqa: F401 (the reader of lines)
from streamcast.stream.times import YEARS, TimeReader  # noqa: F401 (YEARS: the input's limits)

FORMATS = ("csv", "jsonl")


def parser_for(
    forecaster: Forecaster,
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    target: str | None = None,
    fmt: str | None = None,
) -> LineParser:
    """A parser for the model's columns (each overridable); lines without an id belong to the model's
    only series, or to a series named after the target."""
    cols = forecaster.columns
    spec = forecaster.spec
    columns = Columns(
        id_col or cols.id,
        time_col or cols.time,
        target or cols.target or "value",
        spec.covariates,
        spec.future_covariates,
    )
    known = list(forecaster.scaler.loc)
    default_id = known[0] if len(known) == 1 else columns.target
    given = {"--id-col": id_col, "--time-col": time_col, "--target": target}
    return LineParser(
        columns,
        forecaster.freq,
        default_id,
        fmt,
        given={option: name for option, name in given.items() if name},
        series_count=len(known),
        future_steps=spec.future_steps,
    )


class LineParser:
    """Turns lines into Observations; remembers the format and layout found on the first good line.
    Its readers (`CsvLines`, `JsonLines`) find each line's fields; `record` checks them."""

    def __init__(
        self,
        columns: Columns,
        freq: str,
        default_id: str,
        fmt: str | None = None,
        *,
        given: Mapping[str, str] | None = None,
        series_count: int = 1,
        future_steps: int = 0,
    ) -> None:
        if fmt is not None and fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        self.columns = columns
        # Column names the user passed: a header or first object without them is an error, not
        # a silent fall-back to the usual names.
        self.given = dict(given or {})
        # A model of many series cannot tell whose a line without an id is: such lines would all
        # land in one made-up series, so the layout must carry an id.
        self.series_count = series_count
        # Every covariate field a line carries: the past ones, then those known in advance, each of
        # which holds the next `future_steps` values.
        self.covariates = (*columns.covariates, *columns.future_covariates)
        self.n_past = len(columns.covariates)
        self.future_steps = future_steps
        self.row_width = self.n_past + len(columns.future_covariates) * future_steps
        self.index_time = freq.endswith("i")
        self.default_id = default_id
        self.format = fmt
        self.has_time = True
        self.times = TimeReader(self.index_time)
        # The zone the output is written in, fixed by the first accepted line, so that a stream
        # that mixes naive and zoned timestamps prints the same text however lines are batched.
        self.stream_zone: str | None = None
        self._zone_fixed = False
        self.csv = CsvLines(self)
        self.json = JsonLines(self)

    def parse(self, lines: list[str], first_line: int) -> Observations:
        """Parse `lines`, numbered from `first_line`; bad lines become events, never exceptions."""
        batch = LineBatch(self.row_width)
        if TOO_LONG in lines:  # rare: one scan at C speed first
            for k, line in enumerate(lines):
                if line is TOO_LONG:
                    batch.bad(first_line + k, f"longer than {MAX_LINE_BYTES >> 20} MiB")
            lines = ["" if line is TOO_LONG else line for line in lines]
        k = 0
        if not self._fixed():
            start = detect_start(self, lines)
            for j in range(start):
                if lines[j].strip():
                    batch.bad(
                        first_line + j, f"does not match the lines that follow (line {first_line + start} on)"
                    )
            k = start
        while not self._fixed() and k < len(lines):
            # Detect line by line until one parses: a stray first line must not fix the format.
            line = lines[k]
            if line.strip():
                guess = self.format or guess_format(line)
                reader = self.reader(guess)
                reader.parse([line], first_line + k, batch)
                if reader.fixed:
                    self.format = guess
            k += 1
        lines, first_line = lines[k:], first_line + k
        if lines:
            self.reader(self.format).parse(lines, first_line, batch)
        return batch.observations(self.stream_zone)

    def reader(self, fmt: str | None) -> CsvLines | JsonLines:
        return self.json if fmt == "jsonl" else self.csv

    def _fixed(self) -> bool:
        return self.format is not None and self.reader(self.format).fixed

    def trial(self, fmt: str) -> LineParser:
        """A fresh parser of the same columns held to `fmt`, for format detection to try lines on."""
        return LineParser(
            self.columns,
            "1i" if self.index_time else "1h",
            self.default_id,
            fmt,
            given=self.given,
            series_count=self.series_count,
            future_steps=self.future_steps,
        )

    def parse_objects(self, objects: list[Mapping], first_line: int) -> Observations:
        batch = LineBatch(self.row_width)
        for k, obj in enumerate(objects):
            self.json.object(obj, first_line + k, batch)
        return batch.observations(self.stream_zone)

    def _bulk_ready(self) -> bool:
        """Once the layout and the output's zone are fixed, plain lines are read column by column."""
        return self.csv.layout is not None and self._zone_fixed and not self.covariates

    def fix_zone(self, zone: str | None) -> None:
        """Resume a stream in the zone its state was written in, whatever the next line carries."""
        self._zone_fixed, self.stream_zone = True, zone

    def record(self, number: int, sid, when, value, covs: list, batch: LineBatch) -> None:
        """Validate one observation's fields and append it; a bad field skips the whole line."""
        try:
            v = read_number(value, "value")
            if v is None:
                raise BadLine("value is missing")
            check_value(v, "value")
            sid = read_series_id(sid)
            if when is not None:
                t = self.times.read(when)
            elif self.has_time:
                raise BadLine("timestamp is missing")
            else:
                t = None
        except BadLine as exc:
            batch.bad(number, str(exc))
            return
        ahead = []
        try:
            for name, raw in zip(self.covariates[self.n_past :], covs[self.n_past :], strict=True):
                ahead.extend(read_values_ahead(raw, name, self.future_steps))
        except BadLine as exc:
            batch.bad(number, str(exc))
            return
        row = []
        for name, raw in zip(self.covariates[: self.n_past], covs[: self.n_past], strict=True):
            try:
                x = read_number(raw, name)
                if x is not None:
                    check_value(x, name)
            except BadLine:
                x = None
            if x is None:
                batch.filled(
                    number,
                    f"covariate {name!r} is missing or not a number; filled with the series' last value",
                )
                x = math.nan
            row.append(x)
        batch.add(number, sid, t, v, row + ahead)
        if not self._zone_fixed:
            self._zone_fixed, self.stream_zone = True, self.times.time_zone
