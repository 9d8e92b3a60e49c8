"""Read a data source a batch of series at a time, or only one shard's series, so that memory
follows the batch and not the file.

A Parquet file with an id column is read lazily: first its ids (the id column alone, a record batch
at a time), then each batch's rows through a filter on the id column, which skips the row groups
whose id range misses the batch (most files are sorted by id). pyarrow's dataset scanner does the
reading, not a polars scan: it reads with plain reads, where polars maps the file into memory and
a process rewriting the file meanwhile (a cron job's upstream) would kill this one. Other sources (CSV, stdin, a frame,
a table without ids) are read whole, as always, and cut into batches after reading.
Batches follow the canonical order of the ids, so their tables, put end to end, are the table that
one read of everything gives.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from streamcast.errors import DataError, StreamcastError, UsageError, first_line
from streamcast.glitches import GLITCH_RATIO
from streamcast.reading import SAMPLE_ROWS, SeriesFrame, find_columns, read_series, sample_rows
from streamcast.shards import Shard

BATCH_SERIES = 2_048
"""Series per batch. A multiple of the 256 series the network runs at once (`stepping.run_series`),
so that series of equal length meet in the same groups as in one pass over all, and their forecasts
are the same to the last bit (elsewhere to float32 rounding: matrix routines sum in another order
for a handful of rows than for many)."""


class BatchReader:
    """One data source, read in batches of chosen series.

    >>> reader = BatchReader("big.parquet", id_col="unique_id")  # doctest: +SKIP
    >>> for batch in reader.read(reader.share(shard=Shard(0, 4)), batch_series=1000): ...  # doctest: +SKIP
    """

    def __init__(
        self,
        source: str | Path | pl.DataFrame,
        *,
        id_col: str | None = None,
        time_col: str | None = None,
        target: str | None = None,
        covariates: Sequence[str] = (),
        max_gap: int = 24,
        time_zone: str | None = None,
        glitch_ratio: float = GLITCH_RATIO,
        future_covariates: Sequence[str] = (),
        static: Sequence[str] = (),
    ) -> None:
        self.source = source
        self.name = "<frame>" if isinstance(source, pl.DataFrame) else str(source)
        self.options = {"id_col": id_col, "time_col": time_col, "target": target, "covariates": covariates}
        if future_covariates or static:  # columns known in advance and per-series ones (issue 14)
            self.options.update(future_covariates=tuple(future_covariates), static=tuple(static))
        columns = {**self.options, "covariates": (*covariates, *future_covariates, *static)}
        columns.pop("future_covariates", None)
        columns.pop("static", None)
        self._scan = _ParquetScan.open(source, columns)
        # Reading rules beyond the columns: every batch is read by them, as one read would be.
        self.options.update(max_gap=max_gap, time_zone=time_zone, glitch_ratio=glitch_ratio)
        self._whole: SeriesFrame | None = None

    @property
    def ids(self) -> list[str]:
        """Every series id in the source, in canonical order."""
        return self._scan.ids if self._scan else self._read_whole().series_ids

    def share(self, *, series: Sequence[str] = (), shard: Shard | None = None) -> list[str]:
        """The ids asked for (all by default) that belong to `shard` (all by default)."""
        ids = self.ids
        if isinstance(series, str):
            series = [series]  # one id, not its characters
        if series:
            missing = sorted(set(series) - set(ids))
            if missing:
                raise DataError(
                    f"series {missing[0]!r} is not in {self.name}; check --series (ids are case-sensitive)"
                )
            wanted = set(series)
            ids = [sid for sid in ids if sid in wanted]
        return [sid for sid in ids if shard.holds(sid)] if shard else ids

    def read(self, ids: Sequence[str], batch_series: int | None = BATCH_SERIES) -> Iterator[SeriesFrame]:
        """The series `ids` (in canonical order), `batch_series` at a time (None: all at once)."""
        if batch_series is not None and batch_series < 2:
            # A batch of one series takes other matrix routines than two or more, whose last bits
            # differ from a run over every series at once.
            raise UsageError("--batch-series must be at least 2")
        if not ids:
            return
        if self._scan is None or (len(ids) == len(self.ids) and _fits(len(ids), batch_series)):
            yield from self._cut(ids, batch_series)  # read as always: one read of the whole source
            return
        for batch in _batches(ids, batch_series):
            yield self._scan.read(batch, self.options)

    def _read_whole(self) -> SeriesFrame:
        if self._whole is None:
            self._whole = read_series(self.source, **self.options)
        return self._whole

    def _cut(self, ids: Sequence[str], batch_series: int | None) -> Iterator[SeriesFrame]:
        data = self._read_whole()
        frame = data.frame
        if len(ids) != frame["series_id"].n_unique():
            frame = frame.filter(pl.col("series_id").is_in(list(ids)))
        if _fits(len(ids), batch_series):
            yield replace(data, frame=frame)
            return
        lengths = frame.group_by("series_id", maintain_order=True).len()["len"].to_numpy()
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        notes = data.notes
        for start in range(0, len(lengths), batch_series):
            stop = _batch_end(start, len(lengths), batch_series)
            if stop is None:
                continue
            rows = frame.slice(int(offsets[start]), int(offsets[stop] - offsets[start]))
            yield replace(data, frame=rows, notes=notes)
            notes = ()  # the whole read's notes come once, with the first batch


def read_batches(
    source: str | Path | pl.DataFrame,
    *,
    series: Sequence[str] = (),
    shard: Shard | None = None,
    batch_series: int | None = BATCH_SERIES,
    **options: Any,
) -> Iterator[SeriesFrame]:
    """The chosen series of `source` (all by default; only `shard`'s share with one), in batches;
    `options` are `BatchReader`'s (columns, future covariates, static, max_gap, time_zone, glitch_ratio).

    >>> for batch in read_batches("big.parquet", shard=parse_shard("0/4")): ...  # doctest: +SKIP
    """
    reader = BatchReader(source, **options)
    yield from reader.read(reader.share(series=series, shard=shard), batch_series)


def _fits(count: int, batch_series: int | None) -> bool:
    return batch_series is None or count <= batch_series


def _batches(ids: Sequence[str], batch_series: int | None) -> Iterator[Sequence[str]]:
    if _fits(len(ids), batch_series):
        yield ids
        return
    for start in range(0, len(ids), batch_series):
        stop = _batch_end(start, len(ids), batch_series)
        if stop is not None:
            yield ids[start:stop]


def _batch_end(start: int, count: int, batch_series: int) -> int | None:
    """Where the batch from `start` ends; a lone last series joins the batch before it (None: it did)."""
    stop = min(start + batch_series, count)
    if count - stop == 1:
        return count
    if stop - start == 1 and start > 0:
        return None
    return stop


class _ParquetScan:
    """A Parquet file read by id: its ids first, then only the rows of chosen ids."""

    def __init__(self, path: Path, id_name: str, raw_ids, ids: list[str]) -> None:
        self.path = path
        self.id_name = id_name
        self.raw_ids = raw_ids  # pyarrow Array: the ids as stored, in the order of `ids`
        self.ids = ids
        self.position = {sid: i for i, sid in enumerate(ids)}

    @classmethod
    def open(cls, source, options: dict) -> _ParquetScan | None:
        """A scan of `source`, or None when it is not a Parquet file with an id column (or cannot be
        read as one: the whole read then says why)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if isinstance(source, pl.DataFrame) or str(source) == "-":
            return None
        path = Path(source)
        if not (path.name.lower().endswith((".parquet", ".pq")) and path.is_file()):
            return None
        try:
            schema = pq.read_schema(path)
            # Columns may be told from their content: decide on the first rows, and leave anything
            # unsure to the whole read, which says why.
            columns = find_columns(sample_rows(path, SAMPLE_ROWS), where=str(source), **options)
        except (OSError, ValueError, pl.exceptions.PolarsError, StreamcastError):
            return None
        if columns.id is None or pa.types.is_dictionary(schema.field(columns.id).type):
            return None
        raw, ids = _stored_ids(path, columns.id)
        return cls(path, columns.id, raw, ids)

    def read(self, ids: Sequence[str], options: dict) -> SeriesFrame:
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        raw = self.raw_ids.take([self.position[sid] for sid in ids])
        bounds = pc.min_max(raw)
        field = ds.field(self.id_name)
        # The range is implied by the list; said apart, it lets row-group statistics skip row groups.
        wanted = (field >= bounds["min"]) & (field <= bounds["max"]) & field.isin(raw)
        try:
            table = ds.dataset(self.path, format="parquet").to_table(filter=wanted)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {self.path} as Parquet ({first_line(exc)})") from None
        options = {**options, "id_col": self.id_name}
        return read_series(pl.from_arrow(table), **options, source_name=str(self.path))


def _stored_ids(path: Path, id_name: str):
    """The distinct ids of the file, as stored and as canonical text, in canonical order; read
    from the id column alone, a record batch at a time."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        pieces, nulls = [], 0
        for batch in parquet.iter_batches(columns=[id_name], batch_size=1 << 20):
            column = batch.column(0)
            nulls += column.null_count
            pieces.append(pc.unique(column.drop_null()))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as Parquet ({first_line(exc)})") from None
    if nulls:
        raise DataError(f"{path}: {nulls} rows have no id in column {id_name!r}; fill or drop them")
    if not pieces:
        return pa.array([], pa.string()), []
    raw = pc.unique(pa.concat_arrays(pieces))
    text = pl.from_arrow(raw).cast(pl.String)  # the canonical id, as read_series makes it
    order = text.arg_sort().to_numpy()
    return raw.take(order), text.gather(order).to_list()
