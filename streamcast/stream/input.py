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

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from streamcast.column_names import ID_NAMES, TARGET_NAMES, TIME_NAMES
from streamcast.errors import UsageError
from streamcast.forecaster import Forecaster
from streamcast.reading import MAX_VALUE, Columns
from streamcast.stream.fields import (  # noqa: F401 (MAX_ID_CHARS, MAX_STEP: the input's limits, named here too)
    MAX_ID_CHARS,
    MAX_STEP,
    BadLine,
    check_value,
    read_number,
    read_series_id,
    read_values_ahead,
    show,
)
from streamcast.stream.reader import MAX_LINE_BYTES, TOO_LONG, LineReader  # noqa: F401 (the reader of lines)
from streamcast.stream.times import YEARS, TimeReader  # noqa: F401 (YEARS: the input's limits)

FORMATS = ("csv", "jsonl")


@dataclass(frozen=True)
class Event:
    """Something wrong with one input line, and what was done about it."""

    line: int
    kind: str  # "skipped", "filled", "reset" or "ignored"
    reason: str

    @property
    def message(self) -> str:
        action = {"skipped": "skipped", "ignored": "ignored"}.get(self.kind, "")
        return f"line {self.line}: {self.reason}" + (f"; {action}" if action else "")

    def __str__(self) -> str:
        return self.message


@dataclass
class Observations:
    """A micro-batch of parsed observations in input order, column by column."""

    lines: np.ndarray  # (N,) int64, 1-based input line numbers
    series_ids: list[str]
    values: np.ndarray  # (N,) float64, always finite
    times: np.ndarray | None  # (N,) int64 microseconds or step index; None: the lines carry no time
    covariates: np.ndarray  # (N, C) float64; NaN where missing (filled per series later)
    events: list[Event] = field(default_factory=list)
    time_zone: str | None = None  # "UTC" when the timestamps carried a UTC offset

    def __len__(self) -> int:
        return len(self.series_ids)

    def take(self, keep: np.ndarray) -> Observations:
        """The observations where `keep` (N,) is true, in order; the events stay whole."""
        if keep.all():
            return self
        rows = np.flatnonzero(keep)
        return Observations(
            lines=self.lines[rows],
            series_ids=[self.series_ids[i] for i in rows.tolist()],
            values=self.values[rows],
            times=self.times[rows] if self.times is not None else None,
            covariates=self.covariates[rows],
            events=self.events,
            time_zone=self.time_zone,
        )

    @classmethod
    def from_records(cls, records: Iterable[Mapping], forecaster: Forecaster) -> Observations:
        """Observations from dicts, e.g. {"series_id": "a", "timestamp": "2024-01-01 05:00", "value": 3.2}.

        Keys follow the rules of JSON lines; timestamps may also be datetime objects.
        """
        return parser_for(forecaster, fmt="jsonl").parse_objects(list(records), first_line=1)


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
    """Turns lines into Observations; remembers the format and layout found on the first good line."""

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
        # CSV field positions (id, time, value, covariates, width) or JSON keys (id, time, value),
        # fixed by the first line that parses.
        self.layout: tuple[int | None, int | None, int, tuple[int, ...], int] | None = None
        self.keys: tuple[str | None, str | None, str] | None = None
        self.has_time = True
        self.header: str | None = None
        self.reported: set[str] = set()
        self.times = TimeReader(self.index_time)
        # The zone the output is written in, fixed by the first accepted line, so that a stream
        # that mixes naive and zoned timestamps prints the same text however lines are batched.
        self.stream_zone: str | None = None
        self._zone_fixed = False
        self._bulk = CsvColumns(self)

    def parse(self, lines: list[str], first_line: int) -> Observations:
        """Parse `lines`, numbered from `first_line`; bad lines become events, never exceptions."""
        batch = _Batch(self.row_width)
        if TOO_LONG in lines:  # rare: one scan at C speed first
            for k, line in enumerate(lines):
                if line is TOO_LONG:
                    batch.bad(first_line + k, f"longer than {MAX_LINE_BYTES >> 20} MiB")
            lines = ["" if line is TOO_LONG else line for line in lines]
        k = 0
        if not self._fixed():
            start = self._detect(lines)
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
                guess = self.format or _guess(line)
                (self._parse_json if guess == "jsonl" else self._parse_csv)([line], first_line + k, batch)
                if (self.keys if guess == "jsonl" else self.layout) is not None:
                    self.format = guess
            k += 1
        lines, first_line = lines[k:], first_line + k
        if not lines:
            return batch.observations(self.stream_zone)
        if self.format == "jsonl":
            self._parse_json(lines, first_line, batch)
        else:
            self._parse_csv(lines, first_line, batch)
        return batch.observations(self.stream_zone)

    def _fixed(self) -> bool:
        return self.format is not None and (self.keys if self.format == "jsonl" else self.layout) is not None

    def _detect(self, lines: list[str]) -> int:
        """Where the format and layout are to be read from: of the first line of each shape (JSON
        keys, or CSV field count) among the first lines at hand, the one under which most of the
        lines from it on parse; ties go to the earlier. A stray first line cannot decide alone."""
        window = [k for k, line in enumerate(lines[: DETECT_LINES * 4]) if line.strip()][:DETECT_LINES]
        shapes: dict[tuple, int] = {}
        for k in window:
            shape = _shape(lines[k], self.format)
            if shape is not None:
                shapes.setdefault(shape, k)
        if len(shapes) < 2:
            return 0
        best, best_score = 0, 0
        for k in sorted(shapes.values()):
            score = self._score(lines[k : window[-1] + 1], k, lines, window, first=best_score == 0)
            if score > best_score:
                best, best_score = k, score
        return best

    def _score(self, lines: list[str], k: int, every: list[str], window: list[int], first: bool) -> int:
        """How many of `lines` a fresh parser that starts at their first one accepts (a header counts);
        a header that cannot be mapped raises when it comes first and the lines after it fit it."""
        trial = LineParser(
            self.columns,
            "1i" if self.index_time else "1h",
            self.default_id,
            self.format or _guess(lines[0]),
            given=self.given,
            series_count=self.series_count,
            future_steps=self.future_steps,
        )
        scratch = _Batch(self.row_width)
        try:
            (trial._parse_json if trial.format == "jsonl" else trial._parse_csv)(lines, 1, scratch)
        except UsageError:
            later = [j for j in window if j > k]
            fits = not later or _shape(every[later[0]], self.format) == _shape(every[k], self.format)
            if first and fits:
                raise  # a real header: the lines after it have its fields, so they would be misread
            return 0  # a stray line that looks like a header
        return len(scratch.values) + (trial.header is not None)

    def parse_objects(self, objects: list[Mapping], first_line: int) -> Observations:
        batch = _Batch(self.row_width)
        for k, obj in enumerate(objects):
            self._object(obj, first_line + k, batch)
        return batch.observations(self.stream_zone)

    def _parse_json(self, lines: list[str], first_line: int, batch: _Batch) -> None:
        import json

        for k, line in enumerate(lines):
            if not line or line.isspace():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                batch.bad(first_line + k, "not valid JSON")
                continue
            except RecursionError:
                batch.bad(first_line + k, "not valid JSON (nested too deeply)")
                continue
            if not isinstance(obj, dict):
                batch.bad(first_line + k, "not a JSON object")
                continue
            self._object(obj, first_line + k, batch)

    def _object(self, obj: Mapping, number: int, batch: _Batch) -> None:
        if self.keys is None:
            target = _find(obj, self.columns.target, TARGET_NAMES)
            if target is None:
                batch.bad(number, f"no {self.columns.target!r} key (pass --target KEY)")
                return
            keys = (_find(obj, self.columns.id, ID_NAMES), _find(obj, self.columns.time, TIME_NAMES), target)
            self._check_options(
                {"--id-col": keys[0], "--time-col": keys[1], "--target": target},
                [str(k) for k in obj],
                f"the object on line {number}",
            )
            if keys[0] is None and self.series_count > 1:
                batch.bad(number, self._no_id())  # a stray object must not fix the layout
                return
            self.keys = keys
            self.has_time = self.keys[1] is not None
        id_key, time_key, target_key = self.keys
        for key in obj:
            if key not in self.keys and key not in self.covariates and key not in self.reported:
                if len(self.reported) >= MAX_REPORTED:
                    break  # a producer inventing keys must not grow memory or flood stderr
                self.reported.add(key)
                reason = f"unknown column {show(key)}"
                if len(self.reported) == MAX_REPORTED:
                    reason += (
                        f" (the last of {MAX_REPORTED} reported; later unknown keys are ignored silently)"
                    )
                batch.events.append(Event(number, "ignored", reason))
        if target_key not in obj:
            batch.bad(number, f"no {target_key!r} key")
            return
        if time_key is not None and time_key not in obj:
            batch.bad(number, f"no {time_key!r} key")
            return
        sid = obj.get(id_key) if id_key is not None else None
        if sid is None and self.series_count == 1:
            sid = self.default_id  # a model of one series knows whose the line is
        self._record(
            number,
            sid,
            obj.get(time_key) if time_key else None,
            obj[target_key],
            [obj.get(c) for c in self.covariates],
            batch,
        )

    def _parse_csv(self, lines: list[str], first_line: int, batch: _Batch) -> None:
        k = 0
        while k < len(lines) and not self._bulk_ready():
            self._csv_text(lines[k], first_line + k, batch)
            k += 1
        if k < len(lines):
            self._bulk.parse(lines[k:], first_line + k, batch)

    def _bulk_ready(self) -> bool:
        """Once the layout and the output's zone are fixed, plain lines are read column by column."""
        return self.layout is not None and self._zone_fixed and not self.covariates

    def _csv_text(self, line: str, number: int, batch: _Batch) -> None:
        """One CSV line by every rule; the first good one fixes the layout."""
        if not line or line.isspace():
            return
        parts = _split_csv(line)
        if self.layout is None:
            if self._try_header(parts, line, number, batch):
                return
            width = len(parts) - len(self.covariates)
            if width not in (1, 2, 3):
                batch.bad(number, f"expected {_expected(self.covariates)}, got {len(parts)} fields")
                return
            if width < 3 and self.series_count > 1:
                batch.bad(number, self._no_id())  # a stray line must not fix the layout
                return
            before = len(batch.values)
            self.layout = _positional(width, len(self.covariates))
            self.has_time = self.layout[1] is not None
            self._csv_line(parts, number, batch)
            if len(batch.values) == before:  # the line did not parse: do not let it fix the layout
                self.layout = None
            return
        if self.header is not None and line.strip() == self.header:
            batch.bad(number, "a repeated header line")
            return
        self._csv_line(parts, number, batch)

    def _csv_line(self, parts: list[str], number: int, batch: _Batch) -> None:
        id_at, time_at, value_at, cov_at, width = self.layout  # type: ignore[misc]
        if len(parts) != width:
            batch.bad(number, f"expected {width} fields, got {len(parts)}")
            return
        sid = parts[id_at] if id_at is not None else self.default_id
        when = parts[time_at] if time_at is not None else None
        self._record(number, sid, when, parts[value_at], [parts[c] for c in cov_at], batch)

    def _try_header(self, parts: list[str], line: str, number: int, batch: _Batch) -> bool:
        """A first line naming known columns is a header; one naming some but not the target is an error."""
        c = self.columns
        names = [p.strip() for p in parts]
        lower = {n.lower(): i for i, n in enumerate(names)}
        known = {x.lower() for x in (c.id, c.time, c.target, *self.covariates) if x} | set(
            ID_NAMES + TIME_NAMES + TARGET_NAMES
        )
        if not known & set(lower):
            return False
        target_at = _pick(lower, c.target, TARGET_NAMES)
        if target_at is None and len(names) == 1:
            # One field naming another column ("date") cannot head lines that carry a value.
            batch.bad(number, f"looks like a header but has no target column {c.target!r}")
            return True
        if target_at is None:
            raise UsageError(
                f"line {number} looks like a header but has no target column {c.target!r} "
                f"(columns: {', '.join(names)}); pass --target COL"
            )
        cov_at = []
        for cov in self.covariates:
            if cov.lower() not in lower:
                raise UsageError(
                    f"the model uses covariate {cov!r} but the header on line {number} has no such column"
                )
            cov_at.append(lower[cov.lower()])
        id_at, time_at = _pick(lower, c.id, ID_NAMES), _pick(lower, c.time, TIME_NAMES)
        found = {
            "--id-col": None if id_at is None else names[id_at],
            "--time-col": None if time_at is None else names[time_at],
            "--target": names[target_at],
        }
        where = f"the header on line {number}"
        self._check_options(found, names, where)
        self._check_header(found, names, where)
        used = {id_at, time_at, target_at, *cov_at}
        for i, name in enumerate(names):
            if i not in used:
                batch.events.append(Event(number, "ignored", f"unknown column {name!r}"))
        self.layout = (id_at, time_at, target_at, tuple(cov_at), len(parts))
        self.has_time = time_at is not None
        self.header = line.strip()
        return True

    def _check_options(self, found: Mapping[str, str | None], names: list[str], where: str) -> None:
        """Columns passed as options must be there: a silent fall-back to the usual names would
        misread every line."""
        for option, name in self.given.items():
            if found[option] is None or found[option].lower() != name.lower():
                raise UsageError(
                    f"{option} {name!r} is not in {where} (it has: {', '.join(names)}); fix the option"
                )

    def _check_header(self, found: Mapping[str, str | None], names: list[str], where: str) -> None:
        """A header declares the layout of every line to come: without an id for a model of many
        series, or with unknown columns and no time, each line would be misread, so stop now."""
        listed = ", ".join(names)
        if found["--id-col"] is None and self.series_count > 1:
            raise UsageError(
                f"{where} has no series id (it has: {listed}), but the model forecasts "
                f"{self.series_count} series; pass --id-col NAME"
            )
        plain = {n.lower() for n in names} - {x.lower() for x in (*found.values(), *self.covariates) if x}
        if found["--time-col"] is None and not self.index_time and plain:
            raise UsageError(
                f"{where} has no time column (it has: {listed}); pass --time-col NAME, "
                "or send only the value and covariates to stamp lines with the clock"
            )

    def _no_id(self) -> str:
        tail = "".join(f",{c}" for c in self.covariates)
        return (
            f"series id is missing (the model forecasts {self.series_count} series: send id,time,value{tail})"
        )

    def _time(self, raw) -> int | None:
        if raw is None:
            if not self.has_time:
                return None
            raise BadLine("timestamp is missing")
        return self.times.read(raw)

    def fix_zone(self, zone: str | None) -> None:
        """Resume a stream in the zone its state was written in, whatever the next line carries."""
        self._zone_fixed, self.stream_zone = True, zone

    def _record(self, number: int, sid, when, value, covs: list, batch: _Batch) -> None:
        """Validate one observation's fields and append it; a bad field skips the whole line."""
        try:
            v = read_number(value, "value")
            if v is None:
                raise BadLine("value is missing")
            check_value(v, "value")
            sid = read_series_id(sid)
            t = self._time(when)
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
                batch.events.append(
                    Event(
                        number,
                        "filled",
                        f"covariate {name!r} is missing or not a number; filled with the series' last value",
                    )
                )
                x = math.nan
            row.append(x)
        batch.add(number, sid, t, v, row + ahead)
        if not self._zone_fixed:
            self._zone_fixed, self.stream_zone = True, self.times.time_zone


class _Batch:
    """Column lists filled line by line, turned into arrays once."""

    def __init__(self, n_covariates: int) -> None:
        self.lines: list[int] = []
        self.ids: list[str] = []
        self.times: list[int | None] = []
        self.values: list[float] = []
        self.covs: list[list[float]] = []
        self.events: list[Event] = []
        self.n_covariates = n_covariates

    def add(self, number: int, sid: str, t: int | None, v: float, covs: list[float]) -> None:
        self.lines.append(number)
        self.ids.append(sid)
        self.times.append(t)
        self.values.append(v)
        self.covs.append(covs)

    def extend(self, numbers: range, ids: list[str], times: list, values: list[float]) -> None:
        """Rows without covariates, checked already (CsvColumns)."""
        self.lines += numbers
        self.ids += ids
        self.times += times
        self.values += values
        self.covs += [_NO_COVARIATES] * len(ids)

    def bad(self, number: int, reason: str) -> None:
        self.events.append(Event(number, "skipped", reason))

    def observations(self, time_zone: str | None) -> Observations:
        n = len(self.values)
        timed = n > 0 and self.times[0] is not None
        return Observations(
            lines=np.array(self.lines, dtype=np.int64),
            series_ids=self.ids,
            values=np.array(self.values, dtype=np.float64),
            times=np.array(self.times, dtype=np.int64) if timed else None,
            covariates=np.array(self.covs, dtype=np.float64).reshape(n, self.n_covariates)
            if self.n_covariates
            else np.zeros((n, 0)),
            events=self.events,
            time_zone=time_zone,
        )


_NO_COVARIATES: list[float] = []


class CsvColumns:
    """CSV lines of a fixed layout without covariates, read column by column: each field is checked
    once per distinct text (ids and times repeat) or in one pass (values). Lines any check would
    question go through the parser's line-by-line rules, which word the message; the result is
    the same as reading every line by those rules."""

    def __init__(self, parser: LineParser) -> None:
        self.parser = parser
        self.ids: dict[str, str | None] = {}  # raw text -> the checked id, None when bad

    def parse(self, lines: list[str], first_line: int, batch: _Batch) -> None:
        p = self.parser
        id_at, time_at, value_at, _, width = p.layout  # type: ignore[misc]
        rows = [line.split(",") for line in lines]
        shaped = [len(r) == width and '"' not in line for r, line in zip(rows, lines, strict=True)]
        if p.header is not None:  # a repeated header is reported by the line-by-line rules
            shaped = [ok and line.strip() != p.header for ok, line in zip(shaped, lines, strict=True)]
        if not all(shaped):
            filler = ["nan"] * width  # fails the value check: the line goes the slow way
            rows = [r if ok else filler for r, ok in zip(rows, shaped, strict=True)]
        values = self._values([r[value_at] for r in rows])
        good = np.isfinite(values) & (np.abs(values) <= MAX_VALUE)
        raw_ids = [r[id_at] for r in rows] if id_at is not None else [p.default_id] * len(rows)
        known = self.ids
        ids = [known[r] if r in known else self._id(r) for r in raw_ids]
        if time_at is not None:
            cache = p.times.cache
            times = [cache[r] if r in cache else self._time(r) for r in (r[time_at] for r in rows)]
        else:
            times = [None] * len(rows)
        good &= np.fromiter(
            (
                sid is not None and (t is not None or time_at is None)
                for sid, t in zip(ids, times, strict=True)
            ),
            dtype=bool,
            count=len(rows),
        )
        values_list = values.tolist()
        start = 0
        for bad in np.flatnonzero(~good).tolist() + [len(rows)]:
            if bad > start:
                numbers = range(first_line + start, first_line + bad)
                batch.extend(numbers, ids[start:bad], times[start:bad], values_list[start:bad])
            if bad < len(rows):
                p._csv_text(lines[bad], first_line + bad, batch)
            start = bad + 1

    @staticmethod
    def _values(texts: list[str]) -> np.ndarray:
        """float() of each text as `_number` reads it; NaN where that would not give a plain number."""
        if "_" not in "".join(texts):  # Python reads 1_000 as 1000; a CSV never means that
            try:
                return np.fromiter(map(float, texts), dtype=np.float64, count=len(texts))
            except ValueError:
                pass
        return np.array([_plain_float(t) for t in texts], dtype=np.float64)

    def _id(self, raw: str) -> str | None:
        try:
            sid = read_series_id(raw)
        except BadLine:
            sid = None
        if len(self.ids) >= MAX_CACHED_IDS:
            self.ids.clear()
        self.ids[raw] = sid
        return sid

    def _time(self, raw: str) -> int | None:
        try:
            return self.parser.times.read(raw)
        except BadLine:
            return None


def _plain_float(text: str) -> float:
    if "_" in text:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def _guess(line: str) -> str:
    return "jsonl" if line.lstrip().startswith("{") else "csv"


def _shape(line: str, fmt: str | None) -> tuple | None:
    """What a line looks like before it is read: its JSON keys, or its number of CSV fields."""
    if (fmt or _guess(line)) == "jsonl":
        import json

        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            return None
        return ("jsonl", tuple(sorted(map(str, obj)))) if isinstance(obj, dict) else None
    return ("csv", len(_split_csv(line)))


def _split_csv(line: str) -> list[str]:
    if '"' in line:
        try:
            return next(csv.reader([line]), [])
        except csv.Error:
            return []  # reported as a line with the wrong number of fields
    return line.split(",")


def _positional(width: int, n_covariates: int) -> tuple[int | None, int | None, int, tuple[int, ...], int]:
    """Field positions of a headerless line: value | time,value | id,time,value, then covariates."""
    id_at = 0 if width == 3 else None
    time_at = width - 2 if width >= 2 else None
    value_at = width - 1
    return id_at, time_at, value_at, tuple(range(width, width + n_covariates)), width + n_covariates


def _expected(covariates: tuple[str, ...]) -> str:
    tail = "".join(f",{c}" for c in covariates)
    return f"value{tail}, time,value{tail} or id,time,value{tail} (or a header line)"


def _find(obj: Mapping, given: str | None, candidates: tuple[str, ...]) -> str | None:
    if given is not None and given in obj:
        return given
    lower = {k.lower(): k for k in obj if isinstance(k, str)}
    if given is not None and given.lower() in lower:
        return lower[given.lower()]
    return next((lower[c] for c in candidates if c in lower), None)


def _pick(lower: dict[str, int], given: str | None, candidates: tuple[str, ...]) -> int | None:
    if given is not None and given.lower() in lower:
        return lower[given.lower()]
    return next((lower[c] for c in candidates if c in lower), None)


DETECT_LINES = 64  # the format is detected among the first lines at hand, at most this many
MAX_REPORTED = 100  # unknown JSON keys reported, at most
MAX_CACHED_IDS = 1 << 20  # checked series ids remembered: memory stays bounded
