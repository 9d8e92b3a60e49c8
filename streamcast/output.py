"""Write result tables where the user asked, by suffix, atomically; `-` means CSV on stdout."""

from __future__ import annotations

import io
import itertools
import sys
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from streamcast.atomic import atomic_path, atomic_write_bytes, check_writable
from streamcast.errors import UsageError

SUFFIXES = (".csv", ".parquet", ".jsonl")


def check_output_path(path: str) -> None:
    """Fail before any work is done, not after, when the output cannot be written or its suffix
    is not one we write."""
    if path == "-":
        return
    if Path(path).suffix.lower() not in SUFFIXES:
        raise UsageError(
            f"cannot write {path!r}: the output file must end in {', '.join(SUFFIXES)} (or be - for stdout)"
        )
    check_writable(path)


def write_frame(frame: pl.DataFrame, path: str) -> None:
    """Write `frame` to `path` (.csv, .parquet, .jsonl); readers never see a partial file."""
    check_output_path(path)
    if path == "-":
        sys.stdout.write(frame.write_csv(datetime_format=_datetime_format(frame)))
        sys.stdout.flush()
        return
    atomic_write_bytes(path, _encode(frame, Path(path).suffix.lower()))


def write_frames(frames: Iterable[pl.DataFrame], path: str) -> int:
    """Write tables of one schema end to end as one table, holding one at a time; return the rows.

    A single table is written exactly as `write_frame` writes it. Files are still written
    atomically; stdout gets one CSV header and each table as it comes.
    """
    check_output_path(path)
    frames = iter(frames)
    first = next(frames, None)
    second = next(frames, None)
    if first is None:
        raise ValueError("write_frames needs at least one table, if only an empty one for the schema")
    if second is None:
        write_frame(first, path)
        return first.height
    tables = itertools.chain((first, second), frames)
    if path == "-":
        return _write_stdout(tables)
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        return _write_file(file, Path(path).suffix.lower(), tables)


def _write_stdout(tables: Iterable[pl.DataFrame]) -> int:
    rows = 0
    for i, frame in enumerate(tables):
        sys.stdout.write(frame.write_csv(include_header=i == 0, datetime_format=_datetime_format(frame)))
        sys.stdout.flush()
        rows += frame.height
    return rows


def _write_file(file, suffix: str, tables: Iterable[pl.DataFrame]) -> int:
    """Each table appended to an open file: Parquet as row groups, CSV and JSON lines as text."""
    rows = 0
    writer = None
    for i, frame in enumerate(tables):
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = frame.to_arrow()
            # zstd, as polars writes a single table
            writer = writer or pq.ParquetWriter(file, table.schema, compression="zstd")
            writer.write_table(table)
        elif suffix == ".csv":
            file.write(
                frame.write_csv(include_header=i == 0, datetime_format=_datetime_format(frame)).encode()
            )
        else:
            file.write(_encode(frame, suffix))
        rows += frame.height
    if writer is not None:
        writer.close()
    return rows


def _encode(frame: pl.DataFrame, suffix: str) -> bytes:
    """The file's bytes, made in memory: Python then writes them, so that a full disk is an OSError
    with its errno (polars' own writer reports one without)."""
    if suffix == ".csv":
        return frame.write_csv(datetime_format=_datetime_format(frame)).encode()
    if suffix == ".parquet":
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        return buffer.getvalue()
    # JSON has no datetime type: write the same ISO 8601 text as the CSV does.
    return (
        frame.with_columns(pl.col(pl.Datetime).dt.strftime(_datetime_format(frame))).write_ndjson().encode()
    )


def _datetime_format(frame: pl.DataFrame) -> str:
    """ISO 8601 to the second, with the UTC offset when the timestamps carry a time zone."""
    zoned = any(isinstance(t, pl.Datetime) and t.time_zone for t in frame.dtypes)
    return "%Y-%m-%dT%H:%M:%S%:z" if zoned else "%Y-%m-%dT%H:%M:%S"
