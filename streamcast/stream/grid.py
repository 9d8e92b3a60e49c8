"""The model's time grid as arithmetic on int64 times: microseconds since the epoch, or steps."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl

from streamcast.features import TimeColumn, freq_seconds
from streamcast.reading import periods_after

EPOCH = datetime(1970, 1, 1)


class Grid:
    """The model's frequency as arithmetic on int64 times (microseconds since the epoch, or steps)."""

    def __init__(self, freq: str) -> None:
        digits = len(freq) - len(freq.lstrip("0123456789"))
        count, unit = int(freq[:digits]), freq[digits:]
        self.freq = freq
        self.indexed = unit == "i"
        self.months = count * (12 if unit == "y" else 1) if unit in ("mo", "y") else 0
        seconds = freq_seconds(freq)
        self.step = count if self.indexed else 0 if self.months else int(round(seconds * 1_000_000))

    def steps(self, last: int, t: int) -> int | None:
        """Periods from `last` to `t` (<= 0: not after it); None when `t` is off the grid."""
        if t <= last:
            return 0 if t == last else -1
        if self.months:
            a, b = _datetime(last), _datetime(t)
            months = (b.year - a.year) * 12 + b.month - a.month
            return months // self.months if months % self.months == 0 and months > 0 else None
        k, rest = divmod(t - last, self.step)
        return None if rest else k

    def shift(self, t, k):
        """`t` moved `k` periods on (both int64 arrays or ints); months keep the calendar."""
        if not self.months:
            return (
                t + np.asarray(k, dtype=np.int64) * self.step
                if isinstance(t, np.ndarray)
                else t + k * self.step
            )
        base = pl.Series(np.atleast_1d(np.asarray(t, dtype=np.int64))).cast(pl.Datetime("us"))
        periods = pl.Series(np.atleast_1d(np.asarray(k, dtype=np.int64)))
        moved = pl.DataFrame({"t": base, "k": periods}).select(
            periods_after(pl.col("t"), pl.col("k"), self.freq)
        )
        out = moved.to_series().dt.epoch("us").to_numpy()
        return out if isinstance(t, np.ndarray) else int(out[0])

    def floor(self, t: int) -> int:
        if self.months:
            d = _datetime(t)
            return (datetime(d.year, d.month, 1) - EPOCH) // timedelta(microseconds=1)
        return t - t % self.step

    def series(self, times: np.ndarray, time_zone: str | None) -> pl.Series:
        """int64 times as the polars column that features and formatting take."""
        s = pl.Series("timestamp", times, dtype=pl.Int64)
        return s if self.indexed else s.cast(pl.Datetime("us", time_zone))

    def column(self, times: np.ndarray, time_zone: str | None) -> TimeColumn:
        """int64 times as `features.input_rows` reads them, without a polars Series per batch."""
        return TimeColumn(times, pl.Int64 if self.indexed else pl.Datetime("us", time_zone))

    def to_python(self, times: np.ndarray, time_zone: str | None) -> list:
        return self.series(times, time_zone).to_list()

    def text(self, times: np.ndarray, time_zone: str | None) -> list[str]:
        """ISO 8601 to the second (with the UTC offset for zoned times), or the step number."""
        s = self.series(times, time_zone)
        if self.indexed:
            return s.cast(pl.String).to_list()
        return s.dt.to_string("%Y-%m-%dT%H:%M:%S%:z" if time_zone else "%Y-%m-%dT%H:%M:%S").to_list()


def _datetime(t: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(t))
