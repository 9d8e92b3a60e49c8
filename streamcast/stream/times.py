"""Timestamps as `fit` reads them, to int64 microseconds since the epoch (UTC for timestamps with an
offset and for epoch seconds, wall time for naive ones), or step numbers for a model without a time
axis. Distinct texts are parsed once: a stream repeats the same few times across its series."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

from streamcast.reading import EPOCH_SECONDS_MIN
from streamcast.stream.fields import BadLine, check_step, show

EPOCH = datetime(1970, 1, 1)
EPOCH_UTC = EPOCH.replace(tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)
# Times pandas and numpy hold in nanoseconds (forecasts beyond stay within datetime).
YEARS = (1678, 2261)
FIRST_TIME = (datetime(YEARS[0], 1, 1) - EPOCH) // MICROSECOND
LAST_TIME = (datetime(YEARS[1] + 1, 1, 1) - EPOCH) // MICROSECOND - 1


class TimeReader:
    """Reads the time field of each line; remembers whether any carried a UTC offset."""

    def __init__(self, index_time: bool) -> None:
        self.index_time = index_time
        self.time_zone: str | None = None  # "UTC" once any timestamp carried an offset
        self.cache: dict[str, int] = {}

    def read(self, raw) -> int:
        """int64 microseconds since the epoch (or a step) of a str, datetime, date or number."""
        if isinstance(raw, str):
            cached = self.cache.get(raw)
            if cached is not None:
                return cached
            parsed = self._text(raw)
            if len(self.cache) > 4096:
                self.cache.clear()
            self.cache[raw] = parsed
            return parsed
        if isinstance(raw, datetime):
            return self._datetime(raw)
        if isinstance(raw, date):
            return self._datetime(datetime(raw.year, raw.month, raw.day))
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            try:
                number = float(raw)
            except OverflowError:
                raise BadLine(f"timestamp {show(raw)} is out of range") from None
            return self._number(number, show(raw))
        raise BadLine(f"timestamp {show(raw)} is not a date")

    def _text(self, text: str) -> int:
        stripped = text.strip()
        if self.index_time:
            try:
                step = int(stripped)
            except ValueError:
                raise BadLine(f"time {show(text)} is not a whole step number") from None
            return check_step(step, text)
        if len(stripped) == 7 and stripped[4] == "-":  # "2024-01": monthly data
            stripped += "-01"
        try:
            return self._datetime(datetime.fromisoformat(stripped))
        except ValueError:
            pass
        try:
            number = float(stripped)
        except ValueError:
            raise BadLine(
                f"timestamp {show(text)} is not a date (use ISO 8601 like 2024-01-31 13:00)"
            ) from None
        return self._number(number, show(text))

    def _number(self, number: float, shown: str) -> int:
        if self.index_time:
            if not math.isfinite(number) or number != int(number):
                raise BadLine(f"time {shown} is not a whole step number")
            return check_step(int(number), shown)
        if 19_000_101 <= number <= 21_001_231 and number == int(number):  # YYYYMMDD
            try:
                return self._datetime(datetime.strptime(str(int(number)), "%Y%m%d"))
            except ValueError:
                pass
        if not math.isfinite(number) or number <= EPOCH_SECONDS_MIN or number > 1e11:
            raise BadLine(f"timestamp {shown} is not a date (numbers are read as epoch seconds)")
        self.time_zone = self.time_zone or "UTC"
        return int(round(number * 1_000_000))

    def _datetime(self, dt: datetime) -> int:
        if self.index_time:
            raise BadLine(
                f"timestamp {show(dt.isoformat())} given, but the model counts steps (its data had no time column)"
            )
        if dt.tzinfo is None:
            t = (dt - EPOCH) // MICROSECOND
        else:
            t = (dt - EPOCH_UTC) // MICROSECOND
        if not FIRST_TIME <= t <= LAST_TIME:
            raise BadLine(
                f"timestamp {show(dt.isoformat())} is out of range (years {YEARS[0]} to {YEARS[1]})"
            )
        if dt.tzinfo is not None:
            self.time_zone = self.time_zone or "UTC"
        return t
