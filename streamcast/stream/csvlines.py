"""CSV lines to observations: a header (or the number of fields of the first good line) fixes the
layout; plain lines of a fixed layout are then read column by column (`CsvColumns`), any other line
by the rules one at a time (`CsvLines`)."""

from __future__ import annotations

import csv
import math
from typing import TYPE_CHECKING

import numpy as np

from streamcast.column_names import ID_NAMES, TARGET_NAMES, TIME_NAMES
from streamcast.errors import UsageError
from streamcast.reading import MAX_VALUE
from streamcast.stream.fields import BadLine, read_series_id
from streamcast.stream.layout import Positions, check_given, expected, missing_id, pick, positional
from streamcast.stream.observations import Event, LineBatch

if TYPE_CHECKING:
    from collections.abc import Mapping

    from streamcast.stream.input import LineParser


class CsvLines:
    """CSV lines by every rule, one at a time; the first good line or a header fixes the layout."""

    def __init__(self, parser: LineParser) -> None:
        self.parser = parser
        self.layout: Positions | None = None
        self.header: str | None = None
        self._columns = CsvColumns(self)

    @property
    def fixed(self) -> bool:
        return self.layout is not None

    def parse(self, lines: list[str], first_line: int, batch: LineBatch) -> None:
        k = 0
        while k < len(lines) and not self.parser._bulk_ready():
            self.text(lines[k], first_line + k, batch)
            k += 1
        if k < len(lines):
            self._columns.parse(lines[k:], first_line + k, batch)

    def text(self, line: str, number: int, batch: LineBatch) -> None:
        """One CSV line by every rule; the first good one fixes the layout."""
        if not line or line.isspace():
            return
        parts = split_csv(line)
        if self.layout is None:
            self._first(parts, line, number, batch)
            return
        if self.header is not None and line.strip() == self.header:
            batch.bad(number, "a repeated header line")
            return
        self._fields(parts, number, batch)

    def _first(self, parts: list[str], line: str, number: int, batch: LineBatch) -> None:
        """A line before the layout is fixed: a header, or a line whose field count fixes it if it parses."""
        if self._try_header(parts, line, number, batch):
            return
        p = self.parser
        width = len(parts) - len(p.covariates)
        if width not in (1, 2, 3):
            batch.bad(number, f"expected {expected(p.covariates)}, got {len(parts)} fields")
            return
        if width < 3 and p.series_count > 1:
            batch.bad(
                number, missing_id(p.covariates, p.series_count)
            )  # a stray line must not fix the layout
            return
        before = len(batch.values)
        self.layout = positional(width, len(p.covariates))
        p.has_time = self.layout[1] is not None
        self._fields(parts, number, batch)
        if len(batch.values) == before:  # the line did not parse: do not let it fix the layout
            self.layout = None

    def _fields(self, parts: list[str], number: int, batch: LineBatch) -> None:
        id_at, time_at, value_at, cov_at, width = self.layout  # type: ignore[misc]
        if len(parts) != width:
            batch.bad(number, f"expected {width} fields, got {len(parts)}")
            return
        p = self.parser
        sid = parts[id_at] if id_at is not None else p.default_id
        when = parts[time_at] if time_at is not None else None
        p.record(number, sid, when, parts[value_at], [parts[c] for c in cov_at], batch)

    def _try_header(self, parts: list[str], line: str, number: int, batch: LineBatch) -> bool:
        """A first line naming known columns is a header; one naming some but not the target is an error."""
        p = self.parser
        c = p.columns
        names = [part.strip() for part in parts]
        lower = {n.lower(): i for i, n in enumerate(names)}
        known = {x.lower() for x in (c.id, c.time, c.target, *p.covariates) if x} | set(
            ID_NAMES + TIME_NAMES + TARGET_NAMES
        )
        if not known & set(lower):
            return False
        target_at = pick(lower, c.target, TARGET_NAMES)
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
        for cov in p.covariates:
            if cov.lower() not in lower:
                raise UsageError(
                    f"the model uses covariate {cov!r} but the header on line {number} has no such column"
                )
            cov_at.append(lower[cov.lower()])
        id_at, time_at = pick(lower, c.id, ID_NAMES), pick(lower, c.time, TIME_NAMES)
        found = {
            "--id-col": None if id_at is None else names[id_at],
            "--time-col": None if time_at is None else names[time_at],
            "--target": names[target_at],
        }
        where = f"the header on line {number}"
        check_given(p.given, found, names, where)
        self._check_header(found, names, where)
        used = {id_at, time_at, target_at, *cov_at}
        for i, name in enumerate(names):
            if i not in used:
                batch.events.append(Event(number, "ignored", f"unknown column {name!r}"))
        self.layout = (id_at, time_at, target_at, tuple(cov_at), len(parts))
        p.has_time = time_at is not None
        self.header = line.strip()
        return True

    def _check_header(self, found: Mapping[str, str | None], names: list[str], where: str) -> None:
        """A header declares the layout of every line to come: without an id for a model of many
        series, or with unknown columns and no time, each line would be misread, so stop now."""
        p = self.parser
        listed = ", ".join(names)
        if found["--id-col"] is None and p.series_count > 1:
            raise UsageError(
                f"{where} has no series id (it has: {listed}), but the model forecasts "
                f"{p.series_count} series; pass --id-col NAME"
            )
        plain = {n.lower() for n in names} - {x.lower() for x in (*found.values(), *p.covariates) if x}
        if found["--time-col"] is None and not p.index_time and plain:
            raise UsageError(
                f"{where} has no time column (it has: {listed}); pass --time-col NAME, "
                "or send only the value and covariates to stamp lines with the clock"
            )


class CsvColumns:
    """CSV lines of a fixed layout without covariates, read column by column: each field is checked
    once per distinct text (ids and times repeat) or in one pass (values). Lines any check would
    question go through the line-by-line rules (`CsvLines`), which word the message; the result is
    the same as reading every line by those rules."""

    def __init__(self, rules: CsvLines) -> None:
        self.rules = rules
        self.ids: dict[str, str | None] = {}  # raw text -> the checked id, None when bad

    def parse(self, lines: list[str], first_line: int, batch: LineBatch) -> None:
        rules, p = self.rules, self.rules.parser
        id_at, time_at, value_at, _, width = rules.layout  # type: ignore[misc]
        rows = [line.split(",") for line in lines]
        shaped = [len(r) == width and '"' not in line for r, line in zip(rows, lines, strict=True)]
        if rules.header is not None:  # a repeated header is reported by the line-by-line rules
            shaped = [ok and line.strip() != rules.header for ok, line in zip(shaped, lines, strict=True)]
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
                rules.text(lines[bad], first_line + bad, batch)
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
            return self.rules.parser.times.read(raw)
        except BadLine:
            return None


def split_csv(line: str) -> list[str]:
    if '"' in line:
        try:
            return next(csv.reader([line]), [])
        except csv.Error:
            return []  # reported as a line with the wrong number of fields
    return line.split(",")


def _plain_float(text: str) -> float:
    if "_" in text:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


MAX_CACHED_IDS = 1 << 20  # checked series ids remembered: memory stays bounded
