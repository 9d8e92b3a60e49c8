"""Batch forecasts: warm every series' state over its history, then forecast from its last step.

Warm-up runs batched across series through `stepping.run_series`, the step that training's
validation uses too. Horizons beyond the trained one roll the model forward on its own forecasts.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime

import numpy as np
import polars as pl
import torch

from streamcast import known
from streamcast.batches import BATCH_SERIES, BatchReader
from streamcast.column_names import quantile_column  # noqa: F401 (public here too)
from streamcast.errors import DataError, StreamcastWarning, UsageError
from streamcast.fallback import NaiveServing, move_onto, naive_at
from streamcast.features import SeriesInputs, calendar_features, series_floors
from streamcast.forecaster import Forecaster, require_torch
from streamcast.intervals import units_at
from streamcast.model import State
from streamcast.reading import Columns, SeriesFrame, periods_after
from streamcast.stepping import advance, run_series
from streamcast.threads import torch_threads

COLUMNS = ("series_id", "origin", "timestamp", "step", "forecast")
MAX_HORIZON = 100_000  # steps; beyond it a roll-out is noise, and its table would not fit in memory


def select_history(
    data: SeriesFrame,
    *,
    series: Sequence[str] = (),
    as_of: str | datetime | int | None = None,
    context: int | None = None,
) -> pl.DataFrame:
    """The rows a forecast starts from: chosen series, up to `as_of`, the last `context` steps."""
    frame = _history(data, series, as_of, context)
    if frame.height == 0:
        raise DataError(f"no observations at or before --as-of {as_of}; pick a later time")
    return frame


def _history(
    data: SeriesFrame,
    series: Sequence[str],
    as_of: str | datetime | int | None,
    context: int | None,
) -> pl.DataFrame:
    """`select_history`, except that no row at all is an answer: a batch of series may all start
    after `as_of` while other batches do not."""
    frame = data.frame
    if isinstance(series, str):
        series = [series]  # one id, not its characters
    if series:
        missing = _absent(series, frame)
        if missing:
            raise DataError(
                f"series {missing[0]!r} is not in {data.source}; check --series (ids are case-sensitive)"
            )
        frame = frame.filter(pl.col("series_id").is_in(list(series)))
    if as_of is not None:
        cutoff = parse_as_of(as_of, frame["timestamp"].dtype)
        frame = frame.filter(pl.col("timestamp") <= cutoff)
        # A value filled in after a series' last observation before the cutoff was interpolated
        # towards a later one: the origin is that last observation, as if the data ended there.
        observed = (~data.imputed()).cum_max(reverse=True).over("series_id")
        frame = frame.filter(observed)
        late = _absent(series, frame) if frame.height else []
        if late:
            raise DataError(
                f"series {late[0]!r} has no observations at or before --as-of {as_of}; "
                "pick a later time or drop it from --series"
            )
    if context is not None:
        if context < 1:
            raise UsageError("--context must be at least 1 step")
        frame = frame.filter(pl.int_range(pl.len()).reverse().over("series_id") < context)
    return frame


def _absent(series: Sequence[str], frame: pl.DataFrame) -> list[str]:
    """The ids asked for that have no rows in `frame`, sorted."""
    return sorted(set(series) - set(frame["series_id"].unique().to_list()))


def parse_as_of(value: str | datetime | int, dtype: pl.DataType):
    """--as-of in the data's own terms: a step number for indexed data, else a timestamp."""
    if dtype == pl.Int64:
        try:
            return int(value)
        except ValueError:
            raise UsageError(f"--as-of {value!r}: this data has no timestamps, give a step number") from None
    try:
        parsed = pl.Series([value]).cast(pl.String).str.to_datetime(time_unit="us", strict=True)
    except pl.exceptions.PolarsError:
        raise UsageError(
            f"--as-of {value!r} is not a timestamp; use ISO 8601, e.g. 2024-03-01T12:00"
        ) from None
    zone = getattr(dtype, "time_zone", None)
    offset = parsed.dtype.time_zone is not None  # the text carried a UTC offset or a Z
    if zone is not None:
        # An offset names an instant: convert it. Without one, it is the data's local time.
        try:
            parsed = parsed.dt.convert_time_zone(zone) if offset else parsed.dt.replace_time_zone(zone)
        except pl.exceptions.PolarsError:
            raise UsageError(
                f"--as-of {value!r} does not exist or is ambiguous in {zone} (a clock change); "
                "give it with a UTC offset, e.g. 2024-03-31T02:30+01:00"
            ) from None
    elif offset:
        raise UsageError(
            f"--as-of {value!r} has a UTC offset but the data's timestamps have none; give it without one"
        )
    return parsed[0]


def forecast(
    forecaster: Forecaster,
    data: SeriesFrame,
    *,
    horizon: int | None = None,
    context: int | None = None,
    as_of: str | datetime | int | None = None,
    series: Sequence[str] = (),
    threads: int | None = None,
) -> pl.DataFrame:
    """One row per series and step: series_id, origin, timestamp, step, forecast[, q...], new_series.

    `threads`: torch threads for the run (default: `streamcast.threads.default_threads()`, one).

    >>> forecast(load("model.streamcast"), read_series("load.parquet"), horizon=24)  # doctest: +SKIP
    """
    horizon = _check_horizon(forecaster, horizon)
    data, moved = forecaster.in_model_zone(data)
    if moved:
        warnings.warn(moved, StreamcastWarning, stacklevel=2)
    forecaster.check_freq(data)
    frame = select_history(data, series=series, as_of=as_of, context=context)
    return _forecast_history(forecaster, frame, horizon, threads, data)


def forecast_batches(
    forecaster: Forecaster,
    batches: Iterable[SeriesFrame],
    *,
    horizon: int | None = None,
    context: int | None = None,
    as_of: str | datetime | int | None = None,
    series: Sequence[str] = (),
    threads: int | None = None,
) -> Iterator[pl.DataFrame]:
    """`forecast` over data read a batch of series at a time (`batches.read_batches`): one table
    per batch, which put end to end are the table of one `forecast` over all of them, value for value.
    Memory follows the batch, not the number of series.

    >>> for table in forecast_batches(model, read_batches("big.parquet")): ...  # doctest: +SKIP
    """
    horizon = _check_horizon(forecaster, horizon)
    wanted = {series} if isinstance(series, str) else set(series)
    empty = True
    said = False
    for data in batches:
        data, moved = forecaster.in_model_zone(data)
        if moved and not said:
            warnings.warn(moved, StreamcastWarning, stacklevel=2)
            said = True
        forecaster.check_freq(data)
        chosen = [sid for sid in data.series_ids if sid in wanted]
        if wanted and not chosen:
            continue
        wanted -= set(chosen)
        frame = _history(data, chosen, as_of, context)
        if frame.height:
            empty = False
            yield _forecast_history(forecaster, frame, horizon, threads, data)
    if wanted:
        raise DataError(
            f"series {sorted(wanted)[0]!r} is not in the data; check --series (ids are case-sensitive)"
        )
    if empty and as_of is not None:
        raise DataError(f"no observations at or before --as-of {as_of}; pick a later time")


def forecast_source(
    forecaster: Forecaster,
    reader: BatchReader,
    ids: Sequence[str],
    *,
    batch_series: int | None = BATCH_SERIES,
    on_batch: Callable[[SeriesFrame], None] | None = None,
    **settings,
) -> Iterator[pl.DataFrame]:
    """`forecast_batches` over the series `ids` of a source, `batch_series` at a time, calling
    `on_batch` with each batch read (for its notes). Always at least one table: with no series (an
    empty shard) an empty one, of the columns and types every other part has.

    >>> reader = BatchReader("big.parquet")  # doctest: +SKIP
    >>> write_frames(forecast_source(model, reader, reader.share(shard=Shard(0, 4))), "part-0.parquet")  # doctest: +SKIP
    """

    def noted(batches: Iterable[SeriesFrame]) -> Iterator[SeriesFrame]:
        for data in batches:
            if on_batch:
                on_batch(data)
            yield data

    empty = True
    for table in forecast_batches(forecaster, noted(reader.read(ids, batch_series)), **settings):
        empty = False
        yield table
    if empty:
        probe = {k: v for k, v in settings.items() if k in ("horizon", "threads")}
        yield next(forecast_batches(forecaster, reader.read(reader.ids[:1], None), **probe)).head(0)


def _check_horizon(forecaster: Forecaster, horizon: int | None) -> int:
    horizon = forecaster.horizon if horizon is None else horizon
    if horizon < 1:
        raise UsageError("--horizon must be at least 1")
    if horizon > MAX_HORIZON:
        raise UsageError(
            f"--horizon {horizon} is more than {MAX_HORIZON:,} steps, far beyond what a recursive "
            f"roll-out of a {forecaster.horizon}-step model can say; ask for fewer steps"
        )
    if horizon > forecaster.horizon:
        warnings.warn(
            f"horizon {horizon} is longer than the trained {forecaster.horizon}: later steps are fed "
            "the model's own forecasts, and accuracy degrades",
            StreamcastWarning,
            stacklevel=3,
        )
    return horizon


def _forecast_history(
    forecaster: Forecaster, frame: pl.DataFrame, horizon: int, threads: int | None, data: SeriesFrame
) -> pl.DataFrame:
    """Warm every series of `frame` over its rows, then forecast `horizon` steps from its last
    (`data`: where the values known in advance and the static values come from)."""
    require_torch(forecaster, "forecast")  # its roll-out past the trained horizon is torch's
    future = _known_future(forecaster, data, frame, horizon)
    inputs = forecaster.inputs(frame, future=future, static=data.static)
    lengths = inputs.lengths()
    positions = [np.array([n - 1]) for n in lengths]
    origins = frame["timestamp"].gather(inputs.offsets[1:] - 1)
    last_inputs = torch.from_numpy(inputs.inputs[inputs.offsets[1:] - 1])
    with torch_threads(threads):
        naive = forecaster.naive_serving(inputs.series_ids)
        intervals = forecaster.intervals
        outputs, state = run_series(
            forecaster.net, inputs.inputs, inputs.offsets, positions, naive=naive, intervals=intervals
        )
        scaled = _roll_forward(forecaster, outputs, state, origins, last_inputs, horizon)  # (S, horizon, Q)
    if intervals is not None and horizon > forecaster.horizon:
        # The roll-out fed the points on; the whole forecast is widened from each origin's window.
        units = units_at(
            inputs.inputs[:, 0],
            inputs.offsets[:-1],
            np.array(lengths) - 1,
            forecaster.net.config.ar,
            intervals.season,
            intervals.typical,
        )
        # the roll-out returned the points alone
        scaled = torch.from_numpy(intervals.widen(scaled.numpy(), units))
    if naive is not None and horizon > forecaster.horizon:
        scaled = _naive_beyond(scaled, naive, inputs, forecaster.net.config.ar, forecaster.horizon)
    values = forecaster.point_and_quantiles(
        scaled, inputs.loc, inputs.scale, series_floors(forecaster.floor_series, inputs.series_ids)
    )
    table = _table(forecaster, inputs.series_ids, origins, values, horizon)
    if data.dates:
        table = table.with_columns(pl.col("origin", "timestamp").cast(pl.Date))
    return table


def with_source_names(table: pl.DataFrame, columns: Columns) -> pl.DataFrame:
    """`table` with `series_id` and `timestamp` named as in the source data, so that it joins back.

    >>> with_source_names(forecast(model, data), model.columns)  # doctest: +SKIP
    """
    names = {"series_id": columns.id, "timestamp": columns.time}
    names = {old: new for old, new in names.items() if new and old in table.columns and new != old}
    clash = [new for new in names.values() if new in table.columns]
    if clash:
        raise UsageError(
            f"the data's column {clash[0]!r} has the name of an output column: rename it, or leave out --keep-names"
        )
    return table.rename(names)


def _known_future(
    forecaster: Forecaster, data: SeriesFrame, frame: pl.DataFrame, horizon: int
) -> pl.DataFrame | None:
    """For a model with future covariates, their known values; refused when a series lacks the
    values of the steps to forecast."""
    spec = forecaster.spec
    if not spec.future_steps:
        return None
    if horizon > spec.future_steps:
        raise UsageError(
            f"--horizon {horizon}: this model sees inputs known in advance for {spec.future_steps} steps "
            f"and cannot roll out further; ask for at most {spec.future_steps} steps"
        )
    if not spec.future_covariates:
        return None  # holiday flags alone: made from the timestamps
    table = known.known_table(data, spec.future_covariates)
    tail = known.continuation(frame, table, spec.future_covariates)
    ends = frame.group_by("series_id", maintain_order=True).agg(pl.col("timestamp").last())["timestamp"]
    known.check_known(frame, tail, spec.future_covariates, spec.future_steps, ends)
    return table


def _naive_beyond(
    scaled: torch.Tensor, naive: NaiveServing, inputs: SeriesInputs, ar: int, trained: int
) -> torch.Tensor:
    """Past the trained horizon, a series served seasonal naive keeps repeating its last season,
    or its last value (the roll-forward fed it to the network, whose own forecasts would take
    over from there); a blended series keeps its share of it. The `trained` steps were served so
    already."""
    rows = np.flatnonzero(naive.series)
    starts = inputs.offsets[rows]
    values = inputs.inputs[:, 0]
    forecasts = naive_at(
        values,
        starts,
        inputs.offsets[rows + 1] - starts - 1,
        scaled.shape[-2],
        np.minimum(naive.seasons_of(rows), ar),
    )
    at = torch.from_numpy(rows)
    beyond = scaled[at, trained:].numpy()
    moved = move_onto(beyond, forecasts[:, trained:], naive.point, naive.share_of(rows))
    scaled[at, trained:] = torch.from_numpy(moved)
    return scaled


def _roll_forward(
    forecaster: Forecaster,
    outputs: torch.Tensor,
    state: State,
    origins: pl.Series,
    last: torch.Tensor,
    horizon: int,
) -> torch.Tensor:
    """Feed the model its own point forecasts until `horizon` steps are covered.

    Calendar features advance with the future timestamps; covariates, unknown in the future, hold
    their last value. Within the trained horizon this is just the head's output, sliced.
    """
    trained = forecaster.horizon
    point = forecaster.point_index
    if forecaster.intervals is not None and horizon > trained:
        outputs, point = outputs[..., point : point + 1], 0  # the network's own output: the point
    pieces = [outputs]
    done = trained
    while done < horizon:
        future = future_timestamps(origins, forecaster.freq, done - trained + 1, trained)  # (S * trained,)
        calendar = calendar_features(future, forecaster.spec.calendar).reshape(len(origins), trained, -1)
        x = last.unsqueeze(1).repeat(1, trained, 1)  # (S, trained, F): covariates held
        x[..., 0] = pieces[-1][..., point]
        x[..., 1 : 1 + calendar.shape[-1]] = torch.from_numpy(calendar)
        y, state = advance(forecaster.net, x, state)
        pieces.append(y[:, -1])
        last = x[:, -1]
        done += trained
    return torch.cat(pieces, dim=1)[:, :horizon]


def future_timestamps(origins: pl.Series, freq: str, first_step: int, steps: int) -> pl.Series:
    """For each origin, the timestamps `first_step` .. `first_step + steps - 1` steps after it."""
    frame = (
        pl.DataFrame({"origin": origins})
        .with_columns(pl.int_ranges(first_step, first_step + steps).alias("step"))
        .explode("step")
    )
    return frame.select(periods_after(pl.col("origin"), pl.col("step"), freq)).to_series()


def _table(
    forecaster: Forecaster, ids: list[str], origins: pl.Series, values: np.ndarray, horizon: int
) -> pl.DataFrame:
    n = len(ids)
    base = pl.DataFrame(
        {
            "series_id": pl.Series(np.repeat(ids, horizon), dtype=pl.String),
            "origin": origins.gather(np.repeat(np.arange(n), horizon)),
            "step": pl.Series(np.tile(np.arange(1, horizon + 1), n), dtype=pl.Int32),
        }
    )
    base = base.with_columns(
        periods_after(pl.col("origin"), pl.col("step"), forecaster.freq).alias("timestamp")
    )
    columns = {"forecast": values[..., forecaster.point_index].reshape(-1)}
    for i, q in enumerate(forecaster.quantiles):
        columns[quantile_column(q)] = values[..., i].reshape(-1)
    known = set(forecaster.scaler.loc)
    new_series = pl.Series("new_series", np.repeat([sid not in known for sid in ids], horizon))
    return base.select(*COLUMNS[:-1], pl.Series("forecast", columns.pop("forecast"))).with_columns(
        *(pl.Series(k, v) for k, v in columns.items()), new_series
    )
