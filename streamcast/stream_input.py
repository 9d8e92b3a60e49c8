"""Parse live observations from stdin lines: CSV (with or without a header) or JSON lines.

Parsing is per line and cheap (the bulk regime needs tens of thousands of lines a second); a line
that cannot be used raises BadLine with the reason, and the stream reports it and goes on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from streamcast.reading import ID_NAMES, TARGET_NAMES, TIME_NAMES, Columns


class BadLine(ValueError):
    """A line the stream skips: the message says why."""


@dataclass(frozen=True)
class Tick:
    """One observation, in input order."""

    line: int
    series_id: str
    timestamp: datetime | int | None
    value: float
    covariates: tuple[float, ...] = ()


class LineParser:
    """Turns lines into Ticks, following the model's column mapping.

    Headerless CSV is read by position: `value`, `time,value`, `id,time,value`, then covariates in
    the model's order. A CSV header, or JSON keys, are matched to the model's column names first,
    then to the usual names (id/series_id/…, timestamp/time/ds/…, value/y/target).
    """

    def __init__(
        self,
        columns: Columns,
        covariates: tuple[str, ...],
        default_id: str,
        indexed: bool,
        fmt: str | None = None,
    ):
        self.columns = columns
        self.covariates = covariates
        self.default_id = default_id
        self.indexed = indexed
        self.fmt = fmt
        self.header: dict[str, int] | None = None
        self.decided = False

    def parse(self, line_no: int, text: str) -> Tick | None:
        """A Tick, None for a header or blank line, or BadLine."""
        text = text.strip()
        if not text:
            return None
        if not self.decided:
            self.decided = True
            if self.fmt is None:
                self.fmt = "jsonl" if text.startswith("{") else "csv"
            if self.fmt == "csv" and self._looks_like_header(text):
                names = [f.strip() for f in text.split(",")]
                self.header = {n: i for i, n in enumerate(names)}
                if self._pick(self.header, self.columns.target, TARGET_NAMES) is None:
                    raise BadLine(f"header has no value column ({self.columns.target} or value/y/target)")
                return None
        if self.fmt == "jsonl":
            return self._from_json(line_no, text)
        return self._from_csv(line_no, text)

    def _looks_like_header(self, text: str) -> bool:
        first = text.split(",")[-1].strip()
        try:
            float(first)
            return False
        except ValueError:
            return True

    @staticmethod
    def _pick(names, preferred: str | None, fallbacks) -> str | None:
        if preferred and preferred in names:
            return preferred
        lower = {n.lower(): n for n in names}
        return next((lower[f] for f in fallbacks if f in lower), None)

    def _from_csv(self, line_no: int, text: str) -> Tick:
        fields = [f.strip() for f in text.split(",")]
        if self.header is not None:
            if len(fields) != len(self.header):
                raise BadLine(f"expected {len(self.header)} fields like the header, got {len(fields)}")
            record = {name: fields[i] for name, i in self.header.items()}
            return self._from_record(line_no, record)
        n_cov = len(self.covariates)
        if n_cov:
            if len(fields) < 2 + n_cov:
                raise BadLine(f"expected [id,]time,value and {n_cov} covariates, got {len(fields)} fields")
            covs, fields = fields[-n_cov:], fields[:-n_cov]
        else:
            covs = []
        if len(fields) == 1:
            sid, ts, value = self.default_id, None, fields[0]
        elif len(fields) == 2:
            sid, (ts, value) = self.default_id, fields
        elif len(fields) == 3:
            sid, ts, value = fields
        else:
            raise BadLine(f"expected value, time,value or id,time,value; got {len(fields)} fields")
        return Tick(
            line_no,
            sid,
            self._time(ts),
            _number(value, "value"),
            tuple(_number(c, "covariate") for c in covs),
        )

    def _from_json(self, line_no: int, text: str) -> Tick:
        try:
            record = json.loads(text)
        except ValueError:
            raise BadLine("not valid JSON") from None
        if not isinstance(record, dict):
            raise BadLine("a JSON line must be an object")
        return self._from_record(line_no, record)

    def _from_record(self, line_no: int, record: dict) -> Tick:
        target = self._pick(record, self.columns.target, TARGET_NAMES)
        if target is None:
            raise BadLine(f"no value field ({self.columns.target} or value/y/target)")
        id_key = self._pick(record, self.columns.id, ID_NAMES)
        time_key = self._pick(record, self.columns.time, TIME_NAMES)
        covs = []
        for cov in self.covariates:
            if cov not in record:
                raise BadLine(f"missing covariate {cov!r}")
            covs.append(_number(record[cov], "covariate"))
        sid = str(record[id_key]) if id_key else self.default_id
        ts = self._time(record[time_key]) if time_key else None
        return Tick(line_no, sid, ts, _number(record[target], "value"), tuple(covs))

    def _time(self, raw) -> datetime | int:
        if raw is None or raw == "":
            raise BadLine("missing timestamp")
        if self.indexed:
            try:
                return int(raw)
            except (TypeError, ValueError):
                raise BadLine(f"step {raw!r} is not an integer") from None
        if isinstance(raw, int | float) or _is_number(raw):
            seconds = float(raw)
            if not math.isfinite(seconds):
                raise BadLine(f"timestamp {raw!r} is not finite")
            return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
        try:
            parsed = datetime.fromisoformat(str(raw))
        except ValueError:
            raise BadLine(f"cannot parse timestamp {raw!r}; use ISO 8601") from None
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        return parsed


def _is_number(text) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def _number(raw, what: str) -> float:
    if raw is None or raw == "":
        raise BadLine(f"missing {what}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BadLine(f"{what} {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise BadLine(f"{what} is {raw}, not a finite number")
    return value
