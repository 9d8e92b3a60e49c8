"""Read every input the CLI accepts into one canonical, validated frame.

Canonical form (polars, long): `series_id` (String), `timestamp` (Datetime("us"), time zone kept;
or Int64 step index when the input has no time column), `value` (Float64), then the covariate
columns (Float64). Sorted by series_id then timestamp, each series on a regular grid.

Policies, applied in this order:
- Layout: an id column means long format; otherwise a named or detected target means one series;
  otherwise every numeric column (but time and covariates) is a series of a wide table.
- Duplicate timestamps within a series: the last row wins (a later row is taken as a correction).
- Frequency: the most common step between consecutive timestamps, per series; all series must
  agree ("mixed frequencies" otherwise). Steps of 28 to 31 days are monthly ("1mo").
- Gaps (missing rows, null or NaN values): every series is put on its regular grid and missing
  values are interpolated linearly (covariates carried forward, then back). Gaps longer than
  `max_gap` steps are still filled, and reported in `notes` so that the user can decide.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from streamcast.errors import DataError, UsageError

ID_NAMES = ("unique_id", "id", "series_id", "series", "item_id", "key")
TIME_NAMES = ("ds", "timestamp", "time", "date", "datetime")
TARGET_NAMES = ("y", "value", "target")
EPOCH_THRESHOLD = 100_000_000  # integers above this in a time column are epoch seconds (after 1973)
_UNITS = (
    ("w", 604_800_000_000),
    ("d", 86_400_000_000),
    ("h", 3_600_000_000),
    ("m", 60_000_000),
    ("s", 1_000_000),
)


@dataclass(frozen=True)
class Columns:
    """The column names as found in the source, recorded in the model to read new data the same way."""

    id: str | None
    time: str | None
    target: str
    covariates: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeriesFrame:
    """Series in canonical form, with what was learnt and done while reading them."""

    frame: pl.DataFrame
    freq: str
    columns: Columns
    source: str
    notes: tuple[str, ...] = ()

    @property
    def series_ids(self) -> list[str]:
        return self.frame["series_id"].unique(maintain_order=True).to_list()

    def lengths(self) -> dict[str, int]:
        counts = self.frame.group_by("series_id", maintain_order=True).len()
        return dict(zip(counts["series_id"].to_list(), counts["len"].to_list(), strict=True))


def read_table(source: str | Path | pl.DataFrame) -> pl.DataFrame:
    """The raw table: Parquet, CSV, .csv.gz by suffix, `-` for CSV on stdin, or a DataFrame."""
    if isinstance(source, pl.DataFrame):
        frame = source
        name = "<frame>"
    elif str(source) == "-":
        raw = sys.stdin.buffer.read()
        if not raw.strip():
            raise DataError("no data on stdin: pipe a CSV file in, or pass a file path instead of -")
        frame = _polars_read(lambda: pl.read_csv(io.BytesIO(raw), infer_schema_length=10_000), "stdin")
        name = "stdin"
    else:
        path = Path(source)
        name = str(source)
        if not path.is_file():
            raise DataError(f"file {name!r} not found: check the path")
        suffixes = "".join(path.suffixes[-2:]).lower()
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = _polars_read(lambda: pl.read_parquet(path), name)
        elif path.suffix.lower() == ".csv" or suffixes.endswith(".csv.gz"):
            frame = _polars_read(lambda: pl.read_csv(path, infer_schema_length=10_000), name)
        else:
            raise UsageError(
                f"cannot read {name!r}: use a .parquet, .csv or .csv.gz file, or - for CSV on stdin"
            )
    if frame.height == 0:
        raise DataError(f"{name} has no rows: give a file with at least one observation")
    return frame


def _polars_read(read, name: str) -> pl.DataFrame:
    try:
        return read()
    except pl.exceptions.NoDataError:
        raise DataError(f"{name} is empty: give a file with a header and at least one row") from None
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read {name}: {first}") from None


def read_series(
    source: str | Path | pl.DataFrame,
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    target: str | None = None,
    covariates: Sequence[str] = (),
    min_length: int = 1,
    max_gap: int = 24,
) -> SeriesFrame:
    """Read `source` into canonical series; every user error is one clear DataError or UsageError."""
    raw = read_table(source)
    name = "<frame>" if isinstance(source, pl.DataFrame) else str(source)
    cols = raw.columns
    id_name = _column(cols, id_col, ID_NAMES, "--id-col")
    time_name = _column(cols, time_col, TIME_NAMES, "--time-col")
    covariates = tuple(covariates)
    for cov in covariates:
        _column(cols, cov, (), "--covariate")
    taken = {id_name, time_name, *covariates}
    target_name = _column(cols, target, TARGET_NAMES, "--target")
    numeric = [c for c in cols if c not in taken and raw[c].dtype.is_numeric()]

    if id_name is None and target_name is None and len(numeric) > 1:
        frame = raw.unpivot(
            index=[c for c in (time_name, *covariates) if c],
            on=numeric,
            variable_name="series_id",
            value_name="value",
        )
        columns = Columns(None, time_name, "value", covariates)
    else:
        if target_name is None:
            if len(numeric) != 1:
                listed = ", ".join(numeric) or "none"
                raise DataError(
                    f"{name}: cannot tell which column to forecast (numeric columns: {listed}); pass --target COL"
                )
            target_name = numeric[0]
        if not raw[target_name].dtype.is_numeric():
            raise DataError(
                f"{name}: target column {target_name!r} is not numeric ({raw[target_name].dtype}); pass --target with a numeric column"
            )
        series_id = pl.col(id_name).cast(pl.String) if id_name else pl.lit(target_name)
        keep = [c for c in (time_name, *covariates) if c]
        frame = raw.select(series_id.alias("series_id"), *keep, pl.col(target_name).alias("value"))
        columns = Columns(id_name, time_name, target_name, covariates)
    for cov in covariates:
        if not frame[cov].dtype.is_numeric():
            raise DataError(
                f"{name}: covariate {cov!r} is not numeric ({frame[cov].dtype}); give numeric covariates only"
            )

    frame = frame.with_columns(
        pl.col("value").cast(pl.Float64).fill_nan(None),
        *(pl.col(c).cast(pl.Float64).fill_nan(None) for c in covariates),
    )
    if time_name is None:
        frame = frame.with_columns(pl.int_range(pl.len()).over("series_id").cast(pl.Int64).alias("timestamp"))
    else:
        frame = frame.with_columns(_parse_time(frame[time_name], name, time_name).alias("timestamp"))
        if time_name != "timestamp":
            frame = frame.drop(time_name)
    frame = frame.select("series_id", "timestamp", "value", *covariates).sort(
        "series_id", "timestamp", maintain_order=True
    )

    notes: list[str] = []
    deduped = frame.unique(subset=["series_id", "timestamp"], keep="last", maintain_order=True)
    if deduped.height < frame.height:
        notes.append(
            f"{frame.height - deduped.height} rows with a repeated timestamp: the last row of each was kept"
        )
    freq, step = _infer(deduped, name)
    frame, gap_notes = _fill_gaps(deduped, freq, step, covariates, max_gap)
    notes += gap_notes
    if frame["value"].null_count():
        bad = frame.filter(pl.col("value").is_null())["series_id"][0]
        raise DataError(
            f"{name}: series {bad!r} has no numeric values at all; drop it or fix the target column"
        )
    lengths = frame.group_by("series_id", maintain_order=True).len().filter(pl.col("len") < min_length)
    if lengths.height:
        sid, n = lengths.row(0)
        raise DataError(
            f"{name}: series {sid!r} has {n} points but at least {min_length} are needed "
            f"({lengths.height} series are that short): drop them or lower the horizon"
        )
    return SeriesFrame(frame, freq, columns, name, tuple(notes))


def _column(cols: list[str], given: str | None, candidates: Sequence[str], flag: str) -> str | None:
    if given is not None:
        if given in cols:
            return given
        raise UsageError(
            f"column {given!r} (from {flag}) is not in the data; the columns are: {', '.join(cols)}"
        )
    lower = {c.lower(): c for c in cols}
    return next((lower[c] for c in candidates if c in lower), None)


def _parse_time(col: pl.Series, name: str, time_name: str) -> pl.Series:
    """Datetimes (zones kept), dates, ISO strings, epoch seconds, or small integers as a step index."""
    dtype = col.dtype
    if isinstance(dtype, pl.Datetime):
        return col.dt.cast_time_unit("us")
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us"))
    if dtype.is_integer() or dtype.is_float():
        if col.null_count():
            raise DataError(f"{name}: column {time_name!r} has empty timestamps; fill or drop those rows")
        if col.min() > EPOCH_THRESHOLD:
            return (col.cast(pl.Float64) * 1_000_000).cast(pl.Int64).cast(pl.Datetime("us", "UTC"))
        return col.cast(pl.Int64)
    if dtype == pl.String:
        parsed = _parse_strings(col)
        if parsed is not None:
            return parsed
    bad = col.head(1).to_list()[0]
    raise DataError(
        f"{name}: cannot parse timestamps in column {time_name!r} (e.g. {bad!r}); "
        "use ISO 8601 like 2024-01-31 13:00, or pass the right column with --time-col"
    )


def _parse_strings(col: pl.Series) -> pl.Series | None:
    for kwargs in ({}, {"time_zone": "UTC"}):
        try:
            parsed = col.str.to_datetime(strict=False, time_unit="us", **kwargs)
        except pl.exceptions.PolarsError:
            continue
        if parsed.null_count() == col.null_count() and col.null_count() == 0:
            return parsed
        if parsed.null_count() > col.null_count():
            bad = col.filter(parsed.is_null() & col.is_not_null()).head(1).to_list()
            if bad:
                return None
    return None


def _infer(frame: pl.DataFrame, name: str) -> tuple[str, int]:
    """The dataset's step: the most common difference, which every series must share."""
    is_index = frame["timestamp"].dtype == pl.Int64
    diff = pl.col("timestamp").diff().over("series_id")
    diffs = frame.select(
        diff.cast(pl.Int64).alias("d") if is_index else diff.dt.total_microseconds().alias("d"),
        "series_id",
    )
    diffs = diffs.filter(pl.col("d").is_not_null() & (pl.col("d") > 0))
    if diffs.height == 0:
        return ("1i", 1) if is_index else ("1h", _UNITS[2][1])
    modes = (
        diffs.group_by("series_id", "d")
        .len()
        .sort("len", "d", descending=[True, False])
        .unique("series_id", keep="first")
    )
    overall = diffs.group_by("d").len().sort("len", "d", descending=[True, False])["d"][0]
    monthly = not is_index and 28 * 86_400_000_000 <= overall <= 31 * 86_400_000_000
    if monthly:
        odd = modes.filter((pl.col("d") < 28 * 86_400_000_000) | (pl.col("d") > 31 * 86_400_000_000))
    else:
        odd = modes.filter(pl.col("d") != overall)
    if odd.height:
        sid, step = odd["series_id"][0], odd["d"][0]
        raise DataError(
            f"{name}: mixed frequencies: series {sid!r} steps by {_freq(step, is_index)} but most series "
            f"by {_freq(overall, is_index)}; resample the data to one frequency first"
        )
    if monthly:
        return "1mo", 0
    return _freq(overall, is_index), int(overall)


def _freq(step: int, is_index: bool) -> str:
    if is_index:
        return f"{step}i"
    for unit, size in _UNITS:
        if step % size == 0:
            return f"{step // size}{unit}"
    return f"{step}us"


def _fill_gaps(frame: pl.DataFrame, freq: str, step: int, covariates: tuple[str, ...], max_gap: int):
    """Put every series on its regular grid and interpolate what is missing (see the module doc)."""
    bounds = frame.group_by("series_id", maintain_order=True).agg(
        pl.col("timestamp").min().alias("lo"), pl.col("timestamp").max().alias("hi")
    )
    if freq.endswith("i"):
        grid = pl.int_ranges("lo", pl.col("hi") + 1, step)
    else:
        grid = pl.datetime_ranges("lo", "hi", interval=freq)
    full = bounds.select("series_id", grid.alias("timestamp")).explode("timestamp")
    if full["timestamp"].dtype != frame["timestamp"].dtype:
        full = full.with_columns(pl.col("timestamp").cast(frame["timestamp"].dtype))
    merged = full.join(frame, on=["series_id", "timestamp"], how="left", maintain_order="left")
    notes = []
    missing = merged["value"].null_count()
    if missing:
        runs = (
            merged.with_columns(pl.col("value").is_null().alias("gap"))
            .with_columns(
                (pl.col("gap") != pl.col("gap").shift(1))
                .fill_null(True)
                .cum_sum()
                .over("series_id")
                .alias("run")
            )
            .filter(pl.col("gap"))
            .group_by("series_id", "run", maintain_order=True)
            .agg(pl.col("timestamp").first().alias("start"), pl.len().alias("steps"))
        )
        notes.append(
            f"filled {missing} missing values by linear interpolation in {runs['series_id'].n_unique()} series"
        )
        for sid, _, start, steps in runs.filter(pl.col("steps") > max_gap).iter_rows():
            notes.append(
                f"long gap in series {sid!r}: {steps} steps from {start} were interpolated; check the source"
            )
    merged = merged.with_columns(
        pl.col("value").interpolate().forward_fill().backward_fill().over("series_id"),
        *(pl.col(c).forward_fill().backward_fill().over("series_id") for c in covariates),
    )
    return merged, notes


def future_timestamps(last: datetime | int, freq: str, steps: int) -> list:
    """The `steps` timestamps after `last` on the grid of `freq` (calendar months stay aligned)."""
    if freq.endswith("i"):
        size = int(freq[:-1])
        return [last + size * k for k in range(1, steps + 1)]
    count, unit = _split(freq)
    offsets = pl.Series([f"{count * k}{unit}" for k in range(1, steps + 1)])
    return pl.select(pl.lit(last).dt.offset_by(offsets)).to_series().to_list()


def _split(freq: str) -> tuple[int, str]:
    digits = len(freq) - len(freq.lstrip("0123456789"))
    return int(freq[:digits]), freq[digits:]
