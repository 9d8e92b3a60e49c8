"""Read every input the CLI accepts into one canonical, validated frame.

Canonical form (polars, long): `series_id` (String), `timestamp` (Datetime("us"), time zone kept;
or Int64 step index when the input has no time column), `value` (Float64), then the covariate
columns (Float64, named as in the source). Sorted by series_id then timestamp, each series on a
regular grid of `freq`, no missing value.

Policies, applied in this order:
- Layout: an id column means long format; otherwise a named or detected target (`y`, `value`,
  `target`) or a single numeric column means one series; otherwise every numeric column (but the
  time column and covariates) is a series of a wide table, named by its column.
- Timestamps: datetimes and dates as they are (time zone kept), ISO 8601 strings (those with an
  offset become UTC), integers above 1e8 as epoch seconds (UTC; milli-, micro- and nanoseconds
  told apart by magnitude), YYYYMMDD integers as dates, other integers as a step index. No time column: each series is numbered 0..n-1 in row order ("1i").
- Duplicate timestamps within a series: the last row wins (a later row is taken as a correction).
- Frequency: the most common step between consecutive timestamps, per series; all series must
  agree ("mixed frequencies" otherwise). Steps of 28 to 31 days between timestamps on the same day
  of the month are monthly ("1mo"); likewise "3mo", "6mo" and "1y".
- Gaps (missing rows, null, NaN or infinite values): every series is put on its regular grid, from its first
  to its last observed value, and missing values are interpolated linearly (covariates carried
  forward, then back). Gaps longer than `max_gap` steps (`--long-gap`) are still filled, and reported in `notes`
  so that the user can decide. A timestamp off the grid is an error: resample such data first.
"""

from __future__ import annotations

import glob
import gzip
import io
import logging
import re
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import polars as pl

from streamcast.column_names import ID_NAMES, TARGET_NAMES
from streamcast.columns import (
    find_id,
    find_time,
    given_column,
    named,
    parse_timestamps,
)
from streamcast.errors import DataError, UsageError, first_line
from streamcast.glitches import GLITCH_RATIO, mark_glitches
from streamcast.shards import Shard
from streamcast.zones import offset_note, to_zone, zone_of

RESERVED = ("series_id", "timestamp", "value")  # canonical names a covariate cannot take
MISSING = ("", "NA", "N/A", "n/a", "na", "NaN", "nan", "null", "NULL", "None", "-")
MAX_VALUE = 1e15  # |value| above this is not a measurement: far beyond any, far below overflow
EPOCH_SECONDS_MIN = 100_000_000  # integers above this in a time column are epoch seconds (1973+)
CSV_SCHEMA_ROWS = 10_000
log = logging.getLogger(__name__)  # the notes, for library users (the CLI prints them itself)
LISTED_GAPS = 10  # long gaps reported one by one; the rest are counted, to keep warnings readable
_DAY_US = 86_400_000_000
_UNITS = (
    ("w", 7 * _DAY_US),
    ("d", _DAY_US),
    ("h", 3_600_000_000),
    ("m", 60_000_000),
    ("s", 1_000_000),
    ("ms", 1_000),
)
_CALENDAR = (("1mo", 28, 31), ("3mo", 89, 92), ("6mo", 181, 184), ("1y", 365, 366))


@dataclass(frozen=True)
class Columns:
    """The column names as found in the source, recorded in a model to read new data the same way.

    `target` is "" for a wide table, where every numeric column is a series.
    """

    id: str | None
    time: str | None
    target: str
    covariates: tuple[str, ...] = ()
    future_covariates: tuple[str, ...] = ()  # known in advance: read after the last observation too
    static: tuple[str, ...] = ()  # one value per series (a region, a size): `SeriesFrame.static`


@dataclass(frozen=True)
class SeriesFrame:
    """Series in canonical form, with what was learnt and done while reading them."""

    frame: pl.DataFrame
    freq: str
    columns: Columns
    source: str
    notes: tuple[str, ...] = ()
    filled: pl.DataFrame | None = None
    """(series_id, timestamp) of every value filled in by interpolation: scores must not count
    them as observed (an interpolated value has seen the next real one)."""
    source_zone: str | None = None
    """The time zone of the source's timestamps (None: naive, or a step index), before
    `read_series(time_zone=...)` converted them."""
    dates: bool = False
    """The source's times were calendar dates (a Date column, "2024-01-31", 20240131): results
    give dates back, not midnights."""
    future: pl.DataFrame | None = None
    """(series_id, timestamp, future covariates...) of the rows after each series' last observation
    (target empty), on the grid, nulls where a value is not given: what `forecast` feeds the
    model for the steps it forecasts. None without future covariates."""
    static: pl.DataFrame | None = None
    """(series_id, static columns...): each series' one value of each, as read. None without any."""
    glitch_ratio: float = 0.0
    """The `glitch_ratio` the values were read with (`streamcast.glitches`; 0: none were read as
    missing, as for a frame built by hand): a model records it, and its data is read again the
    same way."""

    @property
    def series_ids(self) -> list[str]:
        return self.frame["series_id"].unique(maintain_order=True).to_list()

    def imputed(self) -> pl.Expr:
        """True for the rows whose value was filled in, in `frame` or any subset of its rows."""
        if self.filled is None or self.filled.height == 0:
            return pl.lit(False)
        keys = pl.struct("series_id", "timestamp")
        return keys.is_in(self.filled.select(keys).to_series().implode())

    def lengths(self) -> dict[str, int]:
        counts = self.frame.group_by("series_id", maintain_order=True).len()
        return dict(zip(counts["series_id"].to_list(), counts["len"].to_list(), strict=True))


def read_table(
    source: str | Path | pl.DataFrame, id_col: str | None = None, shard: Shard | None = None
) -> pl.DataFrame:
    """The raw table, before any column is interpreted: Parquet, CSV or .csv.gz by suffix, a folder
    or glob of Parquet files (a dataset), `-` for CSV on stdin, or a DataFrame as it is.

    With a `shard`, a dataset is scanned lazily and only the shard's series are read."""
    where = _where(source)
    if isinstance(source, pl.DataFrame):
        frame = source
    elif is_dataset(source):
        frame = _read_dataset(str(source), where, id_col, shard)
    elif str(source) == "-":
        frame = _read_csv(sys.stdin.buffer.read(), where, id_col)
    else:
        frame = _read_file(Path(source), where, id_col)
    if frame.height == 0:
        raise DataError(f"{where} has no rows: give it at least one observation")
    return frame


def is_dataset(source: str | Path | pl.DataFrame) -> bool:
    """A folder or a glob pattern: a Parquet dataset of several files."""
    if isinstance(source, pl.DataFrame) or str(source) == "-":
        return False
    return Path(source).is_dir() or glob.has_magic(str(source))


def _read_dataset(source: str, where: str, id_col: str | None, shard: Shard | None) -> pl.DataFrame:
    """Every Parquet file of a folder (and its subfolders) or a glob, as one table; with a shard,
    the series ids are found first and only the shard's rows are read, so that no process holds
    the whole dataset."""
    files = _dataset_files(source, where)
    try:
        lazy = pl.scan_parquet(files)
        if shard is None:
            return lazy.collect()
        columns = lazy.collect_schema().names()
        # `read_series` has told the id from the whole dataset's content where no name gave it.
        id_name = given_column(columns, id_col, "--id-col", ()) if id_col else named(columns, ID_NAMES, ())
        if id_name is None:
            raise UsageError(
                f"{where}: reading a share of the series needs a series id column; pass --id-col"
            )
        ids = lazy.select(pl.col(id_name).unique()).collect().to_series().to_list()
        keep = [i for i in ids if i is not None and shard.holds(i)]
        if not keep:
            raise DataError(
                f"none of the {len(ids)} series of {where} hash to shard {shard}: use fewer processes than series"
            )
        return lazy.filter(pl.col(id_name).is_in(keep)).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read {where} as a Parquet dataset ({first_line(exc)})") from None


SAMPLE_ROWS = 10_000  # rows that columns are told from before a file or dataset is read by id


def sample_rows(path: str | Path, rows: int = SAMPLE_ROWS) -> pl.DataFrame:
    """Up to `rows` rows of a Parquet file in 8 runs spread over it, so that a file sorted by id
    shows several series to the content rules (`columns.find_id`), not only its first one. Read as
    a stream of batches: memory stays one row group's, whatever the file's size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    total = parquet.metadata.num_rows
    if total <= rows:
        return pl.from_arrow(parquet.read())
    run = max(1, rows // 8)
    every = max(1, total // (8 * run))  # keep every `every`-th run of `run` rows
    pieces = []
    for i, batch in enumerate(parquet.iter_batches(batch_size=run)):
        if i % every == 0:
            pieces.append(batch)
        if len(pieces) == 8:
            break
    return pl.from_arrow(pa.Table.from_batches(pieces))


def _dataset_files(source: str, where: str) -> list[str]:
    pattern = str(Path(source) / "**" / "*.parquet") if Path(source).is_dir() else source
    files = sorted(f for f in glob.glob(pattern, recursive=True) if Path(f).is_file())
    if not files:
        what = "is a folder with no Parquet files" if Path(source).is_dir() else "matches no Parquet files"
        raise DataError(
            f"{where!r} {what}: give a Parquet or CSV file, or a folder or glob of .parquet files (a dataset)"
        )
    return files


def _dataset_id(source: str, where: str, time_col: str | None, target: str | None) -> str | None:
    """The id column of a whole dataset, decided before any rank reads its share: a share of one
    series would not show which column tells series apart, and every rank must read the same way."""
    files = _dataset_files(source, where)
    try:
        columns = pl.scan_parquet(files).collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read {where} as a Parquet dataset ({first_line(exc)})") from None
    return named(columns, ID_NAMES, ()) or _id_from_content(files, where, time_col, target)


def _id_from_content(files: list[str], where: str, time_col: str | None, target: str | None) -> str | None:
    """The id column of a dataset that names it by none of the known names, told from a sample of
    each of its first files as `read_series` tells it from the whole table; None when unsure."""
    from streamcast.errors import StreamcastError

    share = max(1, SAMPLE_ROWS // min(len(files), 8))
    sample = pl.concat([sample_rows(f, share) for f in files[:8]], how="vertical_relaxed")
    try:
        return _find_columns(sample, None, time_col, target, (), where)[0].id
    except StreamcastError:
        return None


def _where(source: str | Path | pl.DataFrame) -> str:
    if isinstance(source, pl.DataFrame):
        return "<frame>"
    return "stdin" if str(source) == "-" else str(source)


def _read_file(path: Path, where: str, id_col: str | None = None) -> pl.DataFrame:
    if not path.is_file():
        raise DataError(f"file {where!r} not found: check the path, or use - for CSV on stdin")
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        try:
            # Read into memory first: polars memory-maps a path, and another process rewriting
            # the file meanwhile (a cron job's upstream) would kill this one with SIGBUS.
            return pl.read_parquet(io.BytesIO(path.read_bytes()))
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError(f"cannot read {where} as Parquet ({first_line(exc)})") from None
    if name.endswith((".csv", ".csv.gz")):
        return _read_csv(_file_bytes(path, where), where, id_col)
    raise UsageError(
        f"cannot read {where!r}: unknown format; use a .parquet, .csv or .csv.gz file, or - for CSV on stdin"
    )


def _file_bytes(path: Path, where: str) -> bytes:
    """The whole file in memory (decompressed): never a memory map that another process can cut short."""
    raw = path.read_bytes()
    if not path.name.lower().endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {where}: not a valid gzip file ({first_line(exc)})") from None


def _read_csv(data: Path | bytes, where: str, id_col: str | None = None) -> pl.DataFrame:
    """CSV as spreadsheets write it too: `;` separators with decimal commas, NA-like tokens as
    missing values, and series ids kept as text ("007" is not 7)."""
    options = _csv_dialect(_head(data))

    def read(**more) -> pl.DataFrame:
        return pl.read_csv(data if isinstance(data, Path) else io.BytesIO(data), **options, **more)

    try:
        head = read(n_rows=CSV_SCHEMA_ROWS, infer_schema=False)
        names = [name.strip() for name in head.columns]
        # Codes written with leading zeros ("007") are labels, whatever their column is called.
        padded = {
            new
            for old, new in zip(head.columns, names, strict=True)
            if head[old].str.contains(r"^0\d+$").any()
        }
        ids = {
            name: pl.String for name in names if name.lower() in ID_NAMES or name == id_col or name in padded
        }
        options.update(null_values=list(MISSING), schema_overrides=ids or None)
        try:
            frame = read(infer_schema_length=CSV_SCHEMA_ROWS, new_columns=names)
        except pl.exceptions.ComputeError:
            # A column that changes type after the first rows: infer the types from every row.
            frame = read(infer_schema_length=None, new_columns=names)
        return frame
    except pl.exceptions.NoDataError:
        raise DataError(f"{where} is empty: give a CSV header and at least one row") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read {where} as CSV ({first_line(exc)})") from None


def _head(data: Path | bytes) -> str:
    """The start of a CSV, as text, to tell its dialect."""
    if isinstance(data, bytes):
        raw = data[:65536]
    else:
        try:
            with (gzip.open if data.name.lower().endswith(".gz") else open)(data, "rb") as f:
                raw = f.read(65536)
        except OSError:
            return ""
    return raw.decode("utf-8", errors="replace").lstrip("\ufeff")


def _csv_dialect(head: str) -> dict:
    """`;` between fields when the header has no comma; then `1,5` is one and a half."""
    first = head.split("\n", 1)[0]
    if ";" not in first or "," in first:
        return {}
    return {"separator": ";", "decimal_comma": bool(re.search(r"\d,\d", head))}


def read_series(
    source: str | Path | pl.DataFrame,
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    target: str | None = None,
    covariates: Sequence[str] = (),
    min_length: int = 1,
    max_gap: int = 24,
    shard: Shard | None = None,
    glitch_ratio: float = GLITCH_RATIO,
    future_covariates: Sequence[str] = (),
    static: Sequence[str] = (),
    source_name: str | None = None,
    time_zone: str | None = None,
) -> SeriesFrame:
    """Read `source` into canonical series (see the module doc for the policies); with a `shard`,
    only the series of that shard (`streamcast.shards.shard_of`), as each torchrun rank reads.

    `source_name`: what messages and the result call the data (a batch of rows read from a file
    is named for the file, not "<frame>").
    `time_zone` (an IANA name): zoned timestamps are converted to it, naive ones read as its local
    times; by default the data's own zone is kept, and UTC offsets are read as UTC.
    `glitch_ratio`: values further than this many typical deviations outside their series' usual
    range are read as missing (`streamcast.glitches`; 0 = off).
    `future_covariates`: columns known in advance; their rows after a series' last observation
    (target empty) are kept in `SeriesFrame.future` instead of being dropped. `static`: columns
    with one value per series (text or numbers), kept in `SeriesFrame.static`.

    >>> read_series("sample_data/load_hourly.parquet", target="load", covariates=["temperature"])
    """
    where = source_name or _where(source)
    if isinstance(covariates, str):
        covariates = (covariates,)  # one column, not its characters
    if isinstance(future_covariates, str):
        future_covariates = (future_covariates,)
    known = tuple(future_covariates)
    static = (static,) if isinstance(static, str) else tuple(static)
    both = set(covariates) & set(known)
    if both:
        raise UsageError(
            f"column {sorted(both)[0]!r} is given as both --covariate and --future-covariate; pick one"
        )
    if shard is not None and id_col is None and is_dataset(source):
        id_col = _dataset_id(str(source), where, time_col, target or None)
    raw = read_table(source, id_col, shard)
    columns, wide, found = _find_columns(
        raw, id_col, time_col, target or None, (*covariates, *known, *static), where
    )
    columns = replace(columns, covariates=(*covariates, *known))
    static_table = _static_table(raw, columns, wide, static, where) if static else None
    frame, range_notes = _canonical(raw, columns, wide, where)
    source_zone = zone_of(frame["timestamp"])
    if time_zone is not None:
        frame = frame.with_columns(to_zone(frame["timestamp"], time_zone, where))
    elif source_zone == "UTC" and raw[columns.time].dtype == pl.String:
        range_notes += offset_note(raw[columns.time].str.strip_chars(), columns.time)
    frame, notes = _drop_duplicates(frame)
    notes = found + range_notes + notes + _layout_notes(raw, columns, wide, bool(notes))
    freq = _dataset_freq(frame, where)
    # Judged on the observed values, before the future rows (which have none) are split off.
    frame, glitch_notes = mark_glitches(frame, glitch_ratio)
    notes += glitch_notes
    future = None
    if known:
        frame, future = _split_future(frame, freq, known)
    frame, filled, gap_notes = _fill_gaps(frame, freq, columns.covariates, max_gap, where)
    _check_lengths(frame, min_length, where)
    source_name = source_name or ("<frame>" if isinstance(source, pl.DataFrame) else str(source))
    if shard is not None:  # a single file is read whole: its share is taken here
        keep = [s for s in frame["series_id"].unique().to_list() if shard.holds(s)]
        frame = frame.filter(pl.col("series_id").is_in(keep))
        filled = filled.filter(pl.col("series_id").is_in(keep)) if filled is not None else None
        future = future.filter(pl.col("series_id").is_in(keep)) if future is not None else None
        if static_table is not None:
            static_table = static_table.filter(pl.col("series_id").is_in(keep))
    for note in notes + gap_notes:
        log.info("%s: %s", where, note)
    dates = columns.time is not None and _holds_dates(raw[columns.time])
    notes = tuple(notes + gap_notes)
    columns = replace(columns, covariates=tuple(covariates), future_covariates=known, static=static)
    return SeriesFrame(
        frame,
        freq,
        columns,
        source_name,
        notes,
        filled,
        source_zone,
        dates,
        future,
        static_table,
        glitch_ratio,
    )


def _static_table(
    raw: pl.DataFrame, columns: Columns, wide: tuple[str, ...], static: tuple[str, ...], where: str
) -> pl.DataFrame:
    """One row per series: its value of each static column, which must not change within it."""
    if wide:
        raise UsageError("--static needs one row per series and time (a long table with an id column)")
    series_id = pl.col(columns.id).cast(pl.String) if columns.id else pl.lit(columns.target)
    rows = raw.select(series_id.alias("series_id"), *static).filter(pl.col("series_id").is_not_null())
    for col in static:
        varies = rows.group_by("series_id").agg(pl.col(col).drop_nulls().unique().sort().head(2))
        varies = varies.filter(pl.col(col).list.len() > 1).sort("series_id")
        if varies.height:
            sid, values = varies.row(0)
            raise DataError(
                f"{where}: static column {col!r} changes within series {sid!r} ({values[0]!r}, "
                f"{values[1]!r}); a --static column holds one value per series: fix it, or pass it "
                "as --covariate"
            )
    return rows.group_by("series_id", maintain_order=True).agg(pl.col(c).drop_nulls().first() for c in static)


def _split_future(
    frame: pl.DataFrame, freq: str, known: tuple[str, ...]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows up to each series' last observation, and the rows after it put on the grid (step
    1, 2, ... after it; a step without a row holds nulls)."""
    last = (
        frame.filter(pl.col("value").is_not_null())
        .group_by("series_id", maintain_order=True)
        .agg(pl.col("timestamp").max().alias("last"))
    )
    marked = frame.join(last, on="series_id", how="left", maintain_order="left")
    beyond = pl.col("timestamp") > pl.col("last")
    history = marked.filter(~beyond.fill_null(False)).drop("last")
    rows = marked.filter(beyond.fill_null(False)).select("series_id", "timestamp", *known)
    if rows.height == 0:
        return history, rows
    count = rows.group_by("series_id", maintain_order=True).len()
    grid = (
        last.join(count, on="series_id")
        .with_columns(pl.int_ranges(1, pl.col("len") + 1).alias("k"))
        .explode("k")
        .select("series_id", periods_after(pl.col("last"), pl.col("k"), freq).alias("timestamp"))
    )
    return history, grid.join(rows, on=["series_id", "timestamp"], how="left", maintain_order="left")


def find_columns(
    raw: pl.DataFrame,
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    target: str | None = None,
    covariates: Sequence[str] = (),
    where: str = "<frame>",
) -> Columns:
    """Which source column plays which part, by the rules of `read_series`; the schema alone
    decides, so an empty frame with the source's columns will do."""
    return _find_columns(raw, id_col, time_col, target or None, tuple(covariates), where)[0]


def _find_columns(
    raw: pl.DataFrame,
    id_col: str | None,
    time_col: str | None,
    target: str | None,
    covariates: tuple[str, ...],
    where: str,
) -> tuple[Columns, tuple[str, ...], list[str]]:
    """Which source column plays which part; for a wide table, also the columns that are series;
    and notes on the parts told from content rather than from a name or an option."""
    cols = raw.columns
    for cov in covariates:
        given_column(cols, cov, "--covariate", ())
        if cov in RESERVED:
            raise UsageError(f"covariate {cov!r} has a reserved name: rename that column")
    given_id = given_column(cols, id_col, "--id-col", covariates) if id_col is not None else None
    taken = (given_id, *covariates)
    if time_col is not None:
        time_name, notes = given_column(cols, time_col, "--time-col", taken), []
    else:
        time_name, notes = find_time(raw, taken, where)
    if target:
        given_column(cols, target, "--target", (given_id, time_name, *covariates))
    named_target = target or named(cols, TARGET_NAMES, (given_id, time_name, *covariates))
    if given_id is not None:
        id_name = given_id
    else:
        id_name, id_notes = find_id(raw, time_name, named_target, (time_name, *covariates), where)
        notes += id_notes
    taken = (id_name, time_name, *covariates)
    target_name = named_target
    numeric = [c for c in cols if c not in taken and raw[c].dtype.is_numeric()]
    if id_name is None and target_name is None and len(numeric) > 1:
        return Columns(None, time_name, "", covariates), tuple(numeric), notes
    if target_name is None:
        if len(numeric) != 1:
            found = f"numeric columns: {', '.join(numeric)}" if numeric else "no numeric column"
            raise DataError(f"{where}: cannot tell which column to forecast ({found}); pass --target COL")
        target_name = numeric[0]
    return Columns(id_name, time_name, target_name, covariates), (), notes


def _layout_notes(raw: pl.DataFrame, columns: Columns, wide: tuple[str, ...], repeats: bool) -> list[str]:
    """A text column left unused while no time or no id was found is probably that column under
    a name we do not know: say so, since the result would be silently wrong."""
    used = {columns.id, columns.time, columns.target, *columns.covariates, *wide}
    text = [c for c in raw.columns if c not in used and raw[c].dtype == pl.String]
    if not text:
        return []
    notes = []
    if columns.time is None:
        notes.append(
            f"no time column found, so rows are numbered in file order; if {text[0]!r} holds the "
            f"time, pass --time-col {text[0]}"
        )
    if columns.id is None and not wide and repeats:
        notes.append(
            f"one series has repeated timestamps; if {text[0]!r} names the series, pass --id-col {text[0]}"
        )
    return notes


def _canonical(
    raw: pl.DataFrame, columns: Columns, wide: tuple[str, ...], where: str
) -> tuple[pl.DataFrame, list[str]]:
    """Source columns renamed, typed and sorted; duplicates and gaps still in place; notes on values
    out of range."""
    time = [pl.col(columns.time).alias("timestamp")] if columns.time else []
    covs = columns.covariates
    if wide:
        frame = raw.select(*time, *covs, *(pl.col(c).cast(pl.Float64) for c in wide)).unpivot(
            index=[*(["timestamp"] if time else []), *covs],
            on=list(wide),
            variable_name="series_id",
            value_name="value",
        )
    else:
        series_id = pl.col(columns.id).cast(pl.String) if columns.id else pl.lit(columns.target)
        value = pl.col(columns.target).alias("value")
        frame = raw.select(series_id.alias("series_id"), *time, value, *covs)
    if frame["series_id"].null_count():
        n = frame["series_id"].null_count()
        raise DataError(f"{where}: {n} rows have no id in column {columns.id!r}; fill or drop them")
    numeric = [_numeric(frame["value"], columns.target or "value", where)]
    numeric += [_numeric(frame[c], c, where) for c in covs]
    notes = []
    for col, name in zip(numeric, [columns.target or "value", *covs], strict=True):
        beyond = int((col.abs() > MAX_VALUE).sum())
        if beyond:
            notes.append(
                f"{beyond} values of {name!r} beyond ±{MAX_VALUE:g} (e.g. {col.abs().max():g}) are treated as missing"
            )
    frame = frame.with_columns(_in_range(col) for col in numeric)
    if columns.time is None:
        # Row order within each series is the step order.
        timestamp = pl.int_range(pl.len(), dtype=pl.Int64).over("series_id")
    else:
        timestamp = _parse_time(frame["timestamp"], columns.time, where)
    frame = frame.with_columns(timestamp.alias("timestamp"))
    return _sort(frame.select("series_id", "timestamp", "value", *covs)), notes


def _sort(frame: pl.DataFrame) -> pl.DataFrame:
    """By series_id then timestamp, keeping the source order of repeated timestamps (the last one
    wins); most inputs are sorted already, and checking is much cheaper than sorting."""
    sid, ts = pl.col("series_id"), pl.col("timestamp")
    in_order = (sid > sid.shift(1)) | ((sid == sid.shift(1)) & (ts >= ts.shift(1)))
    if frame.select(in_order.fill_null(True).all()).item():
        return frame
    ids = frame["series_id"].unique().sort()
    rank = frame["series_id"].replace_strict(ids, pl.int_range(ids.len(), eager=True))
    order = _stable_order(rank, frame["timestamp"].to_physical(), ids.len())
    rows = frame.drop("series_id")[order]
    # Rebuilding the ids from their ranks is cheaper than moving 10M strings around.
    return rows.insert_column(0, ids.gather(rank.gather(order)))


def _stable_order(rank: pl.Series, time: pl.Series, n_ids: int) -> pl.Series:
    """Row order by (rank, time), ties in source order. Polars sorts one integer key many times
    faster than several, so both are packed into one where they fit in 63 bits."""
    low, span = time.min(), time.max() - time.min() + 1
    if span * n_ids < 2**62:
        return _stable_argsort(rank * span + (time - low))
    by_time = _stable_argsort(time)  # then by rank: stable sorts compose
    return by_time.gather(_stable_argsort(rank.gather(by_time)))


def _stable_argsort(key: pl.Series) -> pl.Series:
    rows = pl.DataFrame({"key": key}).with_row_index("row")
    return rows.sort("key", maintain_order=True)["row"]


def _numeric(col: pl.Series, name: str, where: str) -> pl.Series:
    """Float64 with NaN and ±inf as null (a gap, filled like any other); text like "NA" counts as
    missing, other text is an error."""
    if col.dtype.is_numeric() or col.dtype == pl.Boolean:
        return _finite(col.cast(pl.Float64))
    if col.dtype == pl.String:
        text = col.str.strip_chars()
        parsed = text.cast(pl.Float64, strict=False)
        bad = col.filter(parsed.is_null() & text.is_not_null() & ~text.is_in(MISSING))
        if bad.len() == 0:
            return _finite(parsed)
        example = f"e.g. {bad[0]!r}"
    else:
        example = f"type {col.dtype}"
    raise DataError(
        f"{where}: column {name!r} is not numeric ({example}); "
        "give numbers, or pick another column with --target"
    )


def _finite(values: pl.Series) -> pl.Series:
    return values.set(values.is_infinite(), None).fill_nan(None)


def _in_range(values: pl.Series) -> pl.Series:
    """A value beyond ±MAX_VALUE becomes a gap: scaling it would overflow every forecast."""
    return values.set(values.abs() > MAX_VALUE, None)


def _parse_time(col: pl.Series, name: str, where: str) -> pl.Series:
    """Datetimes (zones kept), dates, ISO strings, epoch seconds, YYYYMMDD, or a step index."""
    if col.dtype.is_float():
        col = col.fill_nan(None)
    if col.null_count():
        raise DataError(
            f"{where}: column {name!r} has {col.null_count()} empty timestamps; fill or drop them"
        )
    dtype = col.dtype
    if isinstance(dtype, pl.Datetime):
        return col.dt.cast_time_unit("us")
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us"))
    if dtype.is_integer():
        return _parse_integers(col)
    if dtype.is_float() and (col % 1 == 0).all():
        return _parse_integers(col.cast(pl.Int64))
    if dtype.is_float() and col.min() > EPOCH_SECONDS_MIN:
        return (col * 1e6).round().cast(pl.Int64).cast(pl.Datetime("us", "UTC"))
    if dtype == pl.String:
        parsed = parse_timestamps(col.str.strip_chars())
        bad = col.filter(parsed.is_null()) if parsed is not None else col
        if bad.len() == 0:
            return parsed
        example = repr(bad[0])
    else:
        example = f"type {dtype}"
    raise DataError(
        f"{where}: cannot parse timestamp {example} in column {name!r}; use ISO 8601 "
        "(2024-01-31 or 2024-01-31T13:00:00+01:00) throughout, or pick another --time-col"
    )


def _holds_dates(col: pl.Series) -> bool:
    """Dates without a time of day: a Date column, ISO dates or YYYYMMDD integers."""
    if col.dtype == pl.Date:
        return True
    if col.dtype == pl.String:
        return bool(col.str.strip_chars().str.contains(r"^\d{4}-\d{2}(-\d{2})?$").all())
    if col.dtype.is_integer():
        return 19_000_101 <= col.min() and col.max() <= 21_001_231
    return False


def _parse_integers(col: pl.Series) -> pl.Series:
    low, high = col.min(), col.max()
    if low > EPOCH_SECONDS_MIN:
        # Seconds until the year 5138; beyond, the same era counted in finer units.
        if high > 10**17:
            micros = col.cast(pl.Int64) // 1_000
        elif high > 10**14:
            micros = col.cast(pl.Int64)
        elif high > 10**11:
            micros = col.cast(pl.Int64) * 1_000
        else:
            micros = col.cast(pl.Int64) * 1_000_000
        return micros.cast(pl.Datetime("us", "UTC"))
    if 19_000_101 <= low and high <= 21_001_231:
        dates = col.cast(pl.String).str.to_date("%Y%m%d", strict=False)
        if dates.null_count() == 0:
            return dates.cast(pl.Datetime("us"))
    return col.cast(pl.Int64)


def _drop_duplicates(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Keep the last row of each repeated timestamp in a series: it is taken as a correction."""
    # The sort kept the source order among equal keys, so "followed by the same key" = superseded.
    superseded = (pl.col("series_id") == pl.col("series_id").shift(-1)) & (
        pl.col("timestamp") == pl.col("timestamp").shift(-1)
    )
    kept = frame.filter(~superseded.fill_null(False))
    dropped = frame.height - kept.height
    if not dropped:
        return frame, []
    first = frame.filter(superseded.fill_null(False)).row(0, named=True)
    note = (
        f"{dropped} rows repeated a timestamp of their series (e.g. {first['series_id']!r} at "
        f"{first['timestamp']}); the last row of each was kept"
    )
    return kept, [note]


def infer_freq(timestamps: pl.Series | Sequence[datetime] | Sequence[int]) -> str:
    """The step of one series' timestamps: the most common positive difference, named as a polars
    duration ("15m", "1h", "1d", "1mo") or "Ni" for integers.

    >>> infer_freq([datetime(2024, 1, 1), datetime(2024, 2, 1), datetime(2024, 3, 1)])
    '1mo'
    """
    ts = pl.Series("timestamp", timestamps)
    if ts.dtype.is_integer():
        ts = ts.cast(pl.Int64)
    elif ts.dtype == pl.Date or isinstance(ts.dtype, pl.Datetime):
        ts = ts.cast(pl.Datetime("us", getattr(ts.dtype, "time_zone", None)))
    frame = pl.DataFrame({"series_id": [""] * ts.len()}).with_columns(ts.sort())
    return _dataset_freq(frame, "the timestamps")


def _dataset_freq(frame: pl.DataFrame, where: str) -> str:
    """The step every series shares: each series' most common step, which must agree."""
    is_index = frame["timestamp"].dtype == pl.Int64
    same_series = pl.col("series_id") == pl.col("series_id").shift(1)
    diff = pl.col("timestamp").diff()
    step = diff if is_index else diff.dt.total_microseconds()
    steps = frame.select("series_id", pl.when(same_series).then(step).alias("step"))
    steps = steps.filter(pl.col("step") > 0)
    if steps.height == 0:
        if is_index:
            return "1i"
        raise DataError(
            f"{where}: cannot infer the frequency from a single timestamp per series; "
            "give at least two timestamps in a series"
        )
    modes = steps.group_by("series_id").agg(pl.col("step").mode().min())
    modes = _name_steps(frame, modes, is_index)
    ranked = modes.group_by("freq").agg(pl.len(), pl.col("step").min())
    overall = ranked.sort("len", "step", descending=[True, False])["freq"][0]
    odd = modes.filter(pl.col("freq") != overall).sort("series_id")
    if odd.height:
        sid, _, freq = odd.row(0)
        raise DataError(
            f"{where}: mixed frequencies: series {sid!r} steps by {freq} but most series by "
            f"{overall}; resample the data to one frequency, or read those series separately"
        )
    return overall


def _name_steps(frame: pl.DataFrame, modes: pl.DataFrame, is_index: bool) -> pl.DataFrame:
    """Add each series' frequency name; calendar steps need timestamps on one day of the month."""
    names = {s: _step_name(s, is_index) for s in modes["step"].unique().to_list()}
    modes = modes.with_columns(pl.col("step").replace_strict(names).alias("freq"))
    calendar = [name for name, _, _ in _CALENDAR]
    if is_index or not modes["freq"].is_in(calendar).any():
        return modes
    ts = pl.col("timestamp")
    # Monthly data sits on one day of the month (or on month ends); four-weekly data drifts.
    aligned = frame.group_by("series_id").agg(
        ((ts.dt.day().n_unique() == 1) | (ts == ts.dt.month_end()).all()).alias("aligned")
    )
    modes = modes.join(aligned, on="series_id")
    fixed = pl.col("step").replace_strict({s: _fixed_name(s) for s in names})
    freq = pl.when(pl.col("freq").is_in(calendar) & ~pl.col("aligned")).then(fixed)
    return modes.select("series_id", "step", freq.otherwise("freq").alias("freq"))


def _step_name(step: int, is_index: bool) -> str:
    if is_index:
        return f"{step}i"
    for name, low, high in _CALENDAR:
        if low * _DAY_US <= step <= high * _DAY_US:
            return name
    return _fixed_name(step)


def _fixed_name(step: int) -> str:
    for unit, size in _UNITS:
        if step % size == 0:
            return f"{step // size}{unit}"
    return f"{step}us"


def _fill_gaps(
    frame: pl.DataFrame, freq: str, covariates: tuple[str, ...], max_gap: int, where: str
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Put every series on its regular grid and interpolate what is missing (see the module doc);
    also return where values were filled in."""
    ts = pl.col("timestamp")
    bounds = (
        frame.filter(pl.col("value").is_not_null())
        .group_by("series_id", maintain_order=True)
        .agg(ts.min().alias("lo"), ts.max().alias("hi"))
    )
    if bounds.height < frame["series_id"].n_unique():
        empty = frame.join(bounds, on="series_id", how="anti")["series_id"][0]
        raise DataError(f"{where}: series {empty!r} has no values; drop it or fix its data")
    count, unit = _split(freq)
    zone = getattr(frame["timestamp"].dtype, "time_zone", None)
    # Days and weeks are calendar steps in a zone with daylight saving: only there a join is needed.
    if unit in ("i", "us", "ms", "s", "m", "h") or (unit in ("d", "w") and zone in (None, "UTC")):
        step = count * dict(_UNITS).get(unit, 1)  # microseconds, or index units for "i"
        merged = _place_by_offset(frame, bounds, freq, step, covariates, where)
    else:
        merged = _place_by_join(frame, bounds, freq, where)
    notes = _gap_notes(merged, max_gap) + _edge_notes(frame, bounds)
    filled = merged.filter(pl.col("value").is_null()).select("series_id", "timestamp")
    merged = merged.with_columns(
        # Every series starts and ends with an observed value, so nothing leaks across series.
        pl.col("value").interpolate(),
        *(pl.col(c).forward_fill().backward_fill().over("series_id") for c in covariates),
    )
    for cov in covariates:
        if merged[cov].null_count():
            sid = merged.filter(pl.col(cov).is_null())["series_id"][0]
            raise DataError(f"{where}: covariate {cov!r} has no values in series {sid!r}")
    return merged, filled, notes


def _grid(bounds: pl.DataFrame, freq: str) -> pl.DataFrame:
    """Every grid point of every series, from its first to its last observed value."""
    count, unit = _split(freq)
    if unit == "i":
        grid = pl.int_ranges("lo", pl.col("hi") + 1, count, dtype=pl.Int64)
        return bounds.select("series_id", grid.alias("timestamp")).explode("timestamp")
    lo, hi = pl.col("lo"), pl.col("hi")
    # A series on month ends steps from month start to month start, then rolls to the end:
    # stepping from April 30 would land on May 30.
    month_end = (
        (lo == lo.dt.month_end()) & (hi == hi.dt.month_end()) if unit in ("mo", "y") else pl.lit(False)
    )
    grid = (
        pl.when(month_end)
        .then(pl.datetime_ranges(lo.dt.month_start(), hi.dt.month_start(), interval=freq))
        .otherwise(pl.datetime_ranges(lo, hi, interval=freq))
    )
    ts = pl.col("timestamp")
    return (
        bounds.select("series_id", month_end.alias("month_end"), grid.alias("timestamp"))
        .explode("timestamp")
        .select("series_id", pl.when("month_end").then(ts.dt.month_end()).otherwise(ts).alias("timestamp"))
    )


def _place_by_offset(
    frame: pl.DataFrame,
    bounds: pl.DataFrame,
    freq: str,
    step: int,
    covariates: tuple[str, ...],
    where: str,
) -> pl.DataFrame:
    """Rows scattered onto the grid by arithmetic, for steps of fixed length (no join needed)."""
    code = frame["series_id"].rle_id()  # series number; `bounds` lists the series in that order
    offset = frame["timestamp"] - bounds["lo"].gather(code)
    span = bounds["hi"] - bounds["lo"]
    if frame["timestamp"].dtype != pl.Int64:
        offset, span = offset.dt.total_microseconds(), span.dt.total_microseconds()
    on_grid = offset % step == 0
    off = frame.filter(~on_grid & frame["value"].is_not_null())
    if off.height:
        _off_grid(off, freq, where)
    # Rows without a value before the first or after the last observed one fall off the grid.
    keep = on_grid & (offset >= 0) & (offset <= span.gather(code))
    sizes = span // step + 1
    if keep.all() and frame.height == sizes.sum():
        return frame
    position = ((sizes.cum_sum() - sizes).gather(code) + offset // step).filter(keep)
    placed = frame.filter(keep)
    full = _grid(bounds, freq)
    empty = pl.repeat(None, full.height, dtype=pl.Float64, eager=True)
    columns = ("value", *covariates)
    return full.with_columns(empty.scatter(position, placed[c]).alias(c) for c in columns)


def _place_by_join(frame: pl.DataFrame, bounds: pl.DataFrame, freq: str, where: str) -> pl.DataFrame:
    """Rows matched to the grid by timestamp, for calendar steps (months, days across DST)."""
    full = _grid(bounds, freq)
    on = ["series_id", "timestamp"]
    merged = full.join(frame, on=on, how="left", maintain_order="left")
    observed = frame.filter(pl.col("value").is_not_null())
    if merged["value"].count() < observed.height:
        _off_grid(observed.join(full, on=on, how="anti"), freq, where)
    return merged


def _off_grid(rows: pl.DataFrame, freq: str, where: str) -> None:
    sid, ts = rows["series_id"][0], rows["timestamp"][0]
    fix = "resample the data to a regular frequency first"
    if getattr(rows["timestamp"].dtype, "time_zone", None) == "UTC" and _split(freq)[1] in (
        "d",
        "w",
        "mo",
        "y",
    ):
        # Local midnights written with their UTC offset are 23 or 25 hours apart at a clock change.
        fix = (
            "if the times carry UTC offsets that change with daylight saving, they were converted "
            "to UTC: pass --time-zone ZONE (e.g. Europe/Berlin), write them without the offset, or "
            "as a zoned Parquet column; otherwise " + fix
        )
    raise DataError(
        f"{where}: irregular timestamps: series {sid!r} has {ts}, which is off its {freq} grid "
        f"({rows.height} such rows); {fix}"
    )


def _gap_notes(merged: pl.DataFrame, max_gap: int) -> list[str]:
    missing = merged["value"].null_count()
    if not missing:
        return []
    gap = pl.col("value").is_null()
    runs = (
        merged.select("series_id", "timestamp", gap.alias("gap"), (~gap).cum_sum().alias("run"))
        .filter("gap")
        .group_by("run", maintain_order=True)
        .agg(pl.col("series_id").first(), pl.col("timestamp").first(), pl.len().alias("steps"))
    )
    series = runs["series_id"].n_unique()
    notes = [f"filled {missing} missing values in {series} series by linear interpolation"]
    long = runs.filter(pl.col("steps") > max_gap)
    for _, sid, start, steps in long.head(LISTED_GAPS).iter_rows():
        notes.append(
            f"long gap in series {sid!r}: {steps} steps from {start} were interpolated "
            f"(longer than --long-gap {max_gap}); check the source"
        )
    if long.height > LISTED_GAPS:
        notes.append(f"... and {long.height - LISTED_GAPS} more gaps longer than {max_gap} steps")
    return notes


def _edge_notes(frame: pl.DataFrame, bounds: pl.DataFrame) -> list[str]:
    """Empty values before a series' first or after its last observation are dropped, not filled:
    nothing to interpolate from. Say so, since a trailing empty row often means a late feed."""
    ts = pl.col("timestamp")
    # Only empty values can lie outside their series' bounds: joined alone, not all ten million rows.
    empty = frame.filter(pl.col("value").is_null())
    edges = empty.join(bounds, on="series_id").filter((ts < pl.col("lo")) | (ts > pl.col("hi")))
    if edges.height == 0:
        return []
    return [
        f"dropped {edges.height} empty values before the first or after the last observation of "
        f"{edges['series_id'].n_unique()} series (e.g. {edges['series_id'][0]!r} at {edges['timestamp'][0]})"
    ]


def _check_lengths(frame: pl.DataFrame, min_length: int, where: str) -> None:
    short = frame.group_by("series_id", maintain_order=True).len()
    short = short.filter(pl.col("len") < min_length)
    if short.height:
        sid, n = short.row(0)
        raise DataError(
            f"{where}: series {sid!r} has {n} points but at least {min_length} are needed "
            f"({short.height} series that short); give more history, drop them, or shorten the "
            "horizon"
        )


def future_timestamps(last: datetime | int, freq: str, steps: int) -> list:
    """The `steps` timestamps after `last` on the grid of `freq` (months by polars `offset_by`).

    >>> future_timestamps(datetime(2024, 2, 29), "1mo", 2)
    [datetime.datetime(2024, 3, 31, 0, 0), datetime.datetime(2024, 4, 30, 0, 0)]
    """
    if steps <= 0:
        return []
    frame = pl.DataFrame({"t": [last] * steps, "k": range(1, steps + 1)})
    return frame.select(periods_after(pl.col("t"), pl.col("k"), freq)).to_series().to_list()


def periods_after(t: pl.Expr, k: pl.Expr, freq: str) -> pl.Expr:
    """`t` moved on by `k` periods of `freq`: the one rule for every future timestamp.

    Months and years follow the calendar, and a timestamp on the last day of its month stays on
    month ends (February 29 -> March 31), as month-end data expects; a series on the 28th to 30th
    whose last point falls on a month end is read as month-end data too.
    """
    count, unit = _split(freq)
    if unit == "i":
        return t + k * count
    offset = pl.format("{}" + unit, k * count)
    if unit not in ("mo", "y"):
        return t.dt.offset_by(offset)
    on_month_end = t.dt.month_start().dt.offset_by(offset).dt.month_end()
    return pl.when(t == t.dt.month_end()).then(on_month_end).otherwise(t.dt.offset_by(offset))


def _split(freq: str) -> tuple[int, str]:
    digits = len(freq) - len(freq.lstrip("0123456789"))
    return int(freq[:digits]), freq[digits:]
