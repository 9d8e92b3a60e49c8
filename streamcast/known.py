"""Inputs known in advance: future covariates (a weather forecast, a planned promotion) and
holiday flags.

At each step t the network sees, for every such input, its next H values (t+1 .. t+H, H the
trained horizon), laid out in the input row beside the value, calendar and past covariates. The
hidden state is carried exactly as without them: a forecast made at t sees the covariates of the
steps it forecasts, and training sees them the same way (the values of the steps after t are
taken as known, which is what "known in advance" means).

Pure computation, no I/O; `holidays` (the package) is imported only when a model uses it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from streamcast.errors import DataError, UsageError
from streamcast.reading import SeriesFrame, periods_after


def window_positions(lengths: np.ndarray, extended: np.ndarray, steps: int) -> np.ndarray:
    """(N, steps) where row p of each series finds its next `steps` values in an array that holds,
    per series, its `lengths[s]` history rows followed by what is known after them
    (`extended[s] >= lengths[s]` rows in all). Past the end, the last known value is held.
    """
    ext_offsets = np.zeros(len(extended) + 1, dtype=np.int64)
    np.cumsum(extended, out=ext_offsets[1:])
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    p = np.arange(int(lengths.sum()), dtype=np.int64) - starts  # (N,) position within its series
    base = np.repeat(ext_offsets[:-1], lengths) + p
    last = np.repeat(ext_offsets[1:] - 1, lengths)
    return np.minimum(base[:, None] + np.arange(1, steps + 1)[None, :], last[:, None])  # (N, steps)


def known_table(data: SeriesFrame, columns: Sequence[str]) -> pl.DataFrame:
    """Every known value of `columns`: the data's rows and those after its last observations."""
    missing = [c for c in columns if c not in data.frame.columns]
    if missing:
        raise DataError(
            f"the model takes future covariate {missing[0]!r}, which {data.source} does not have; "
            "give the data that column (with read_series(..., future_covariates=[...]) in Python)"
        )
    rows = data.frame.select("series_id", "timestamp", *columns)
    if data.future is None or data.future.height == 0:
        return rows
    return pl.concat([rows, data.future.select(rows.columns).cast(rows.schema)])


def continuation(frame: pl.DataFrame, known: pl.DataFrame | None, columns: Sequence[str]) -> pl.DataFrame:
    """The rows of `known` (series_id, timestamp, columns...) after each series' last row in
    `frame`, in frame order; nulls mark values not known."""
    ends = frame.group_by("series_id", maintain_order=True).agg(pl.col("timestamp").last().alias("end"))
    if known is None or known.height == 0:
        return pl.DataFrame(
            {"series_id": [], "timestamp": [], **{c: [] for c in columns}},
            schema={"series_id": pl.String, "timestamp": frame["timestamp"].dtype}
            | {c: pl.Float64 for c in columns},
        )
    after = (
        ends.with_row_index("order")
        .join(known.select("series_id", "timestamp", *columns), on="series_id")
        .filter(pl.col("timestamp") > pl.col("end"))
        .sort("order", "timestamp")
    )
    return after.select("series_id", "timestamp", *columns)


def known_counts(frame: pl.DataFrame, after: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """(S,) per series of `frame`, how many steps after its end have every column known (the
    leading run of rows without a null)."""
    ids = frame["series_id"].unique(maintain_order=True)
    if after.height == 0 or not columns:
        return np.zeros(len(ids), dtype=np.int64)
    complete = pl.all_horizontal(pl.col(c).is_not_null() for c in columns)
    runs = after.group_by("series_id", maintain_order=True).agg(complete.cum_min().sum().alias("n"))
    counts = pl.DataFrame({"series_id": ids}).join(runs, on="series_id", how="left")["n"]
    return counts.fill_null(0).to_numpy().astype(np.int64)


def future_windows(
    frame: pl.DataFrame,
    after: pl.DataFrame,
    columns: Sequence[str],
    loc: Sequence[float],
    scale: Sequence[float],
    steps: int,
) -> np.ndarray:
    """(N, len(columns) * steps) float64: per row, the next `steps` scaled values of each column,
    from the frame's own later rows and then `after` (from `continuation`)."""
    lengths = frame.group_by("series_id", maintain_order=True).len()["len"].to_numpy().astype(np.int64)
    extra = after.group_by("series_id", maintain_order=True).len()
    extra_n = (
        pl.DataFrame({"series_id": frame["series_id"].unique(maintain_order=True)})
        .join(extra, on="series_id", how="left")["len"]
        .fill_null(0)
        .to_numpy()
        .astype(np.int64)
    )
    # Per series its history rows, then its known rows: one array each column, cut by position.
    order = np.argsort(
        np.concatenate(
            [np.repeat(np.arange(len(lengths)), lengths), np.repeat(np.arange(len(lengths)), extra_n)]
        ),
        kind="stable",
    )
    at = window_positions(lengths, lengths + extra_n, steps)
    parts = []
    for col, c_loc, c_scale in zip(columns, loc, scale, strict=True):
        stacked = pl.concat([frame[col].cast(pl.Float64), after[col].cast(pl.Float64)])
        values = stacked.gather(order).forward_fill().fill_null(c_loc).to_numpy()
        parts.append((values[at] - c_loc) / c_scale)
    return np.concatenate(parts, axis=1)


def check_known(
    frame: pl.DataFrame, after: pl.DataFrame, columns: Sequence[str], needed: int, origins: pl.Series
) -> None:
    """A forecast from each series' last row needs `needed` known steps after it: name the first
    series that lacks them, and which steps."""
    counts = known_counts(frame, after, columns)
    short = np.flatnonzero(counts < needed)
    if not len(short):
        return
    i = int(short[0])
    sid = frame["series_id"].unique(maintain_order=True)[i]
    have = int(counts[i])
    missing = f"step {have + 1}" if have + 1 == needed else f"steps {have + 1}-{needed}"
    names = ", ".join(repr(c) for c in columns)
    raise DataError(
        f"series {sid!r} has no future values of {names} for {missing} after its last observation "
        f"({origins[i]}); add rows after it with the target empty and {names} filled in "
        f"({len(short)} series lack them)"
    )


def holiday_calendar(country: str):
    """The `holidays` package's calendar for a country code (e.g. "DE", "US", "GB-ENG" for a subdivision)."""
    try:
        import holidays
    except ImportError:
        raise UsageError(
            "--holidays needs the holidays package: pip install 'streamcast[holidays]'"
        ) from None
    code, _, subdiv = country.partition("-")
    try:
        return holidays.country_holidays(code.upper(), subdiv=subdiv.upper() or None)
    except NotImplementedError:
        raise UsageError(
            f"--holidays {country!r}: not a country the holidays package knows; give an ISO code such as DE, US or FR"
        ) from None


def holiday_flags(timestamps: pl.Series, country: str) -> np.ndarray:
    """(N,) 1.0 where the timestamp's (local) date is a public holiday, else 0.0."""
    if not isinstance(timestamps.dtype, pl.Datetime):
        raise UsageError("--holidays needs timestamps: this data has only a step index")
    calendar = holiday_calendar(country)
    days = timestamps.dt.date()
    unique = days.unique()
    marked = [d for d in unique.to_list() if d is not None and d in calendar]
    return days.is_in(pl.Series(marked, dtype=pl.Date).implode()).cast(pl.Float64).to_numpy()


def holiday_windows(timestamps: pl.Series, freq: str, country: str, steps: int) -> np.ndarray:
    """(N, steps) the holiday flags of the `steps` timestamps after each of `timestamps`."""
    frame = pl.DataFrame({"t": timestamps}).with_columns(pl.int_ranges(1, steps + 1).alias("k")).explode("k")
    ahead = frame.select(periods_after(pl.col("t"), pl.col("k"), freq)).to_series()
    return holiday_flags(ahead, country).reshape(len(timestamps), steps)
