"""What the parser makes of lines: a micro-batch of observations, column by column, and an `Event`
for each line that was bad, filled in, or partly ignored."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from streamcast.forecaster import Forecaster


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
        # Imported when called: the parser builds on this module, not the other way round.
        from streamcast.stream.input import parser_for

        return parser_for(forecaster, fmt="jsonl").parse_objects(list(records), first_line=1)


class LineBatch:
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

    def filled(self, number: int, reason: str) -> None:
        self.events.append(Event(number, "filled", reason))

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
