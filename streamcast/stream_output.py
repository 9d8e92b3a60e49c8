"""Format a micro-batch of stream forecasts as JSON lines or CSV, vectorised with polars.

One polars pass per micro-batch instead of per-line string work keeps the bulk regime fast.
JSON lines: one object per observation. CSV: one row per observation and step, with the same
columns as `streamcast forecast` (series_id, origin, timestamp, step, forecast, quantiles) plus
warming_up.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from streamcast.forecaster import Forecaster
from streamcast.forecasting import _offset, quantile_column
from streamcast.streaming import TickForecast

ISO = "%Y-%m-%dT%H:%M:%S"


def _frame(batch: list[TickForecast], forecaster: Forecaster) -> tuple[pl.DataFrame, np.ndarray]:
    values = np.stack([f.values for f in batch])  # (R, H, Q)
    frame = pl.DataFrame(
        {
            "series_id": [f.series_id for f in batch],
            "origin": [f.timestamp for f in batch],
            "warming_up": [f.warming_up for f in batch],
        }
    )
    return frame, values


def _text(expr: pl.Expr, indexed: bool) -> pl.Expr:
    return expr if indexed else expr.dt.to_string(ISO)


def format_jsonl(batch: list[TickForecast], forecaster: Forecaster) -> str:
    """{"series_id", "timestamp", "forecast": [H], "timestamps": [H], "q0.1": [H]..., "warming_up"} per line."""
    if not batch:
        return ""
    frame, values = _frame(batch, forecaster)
    horizon, freq = values.shape[1], forecaster.freq
    indexed = freq.endswith("i")
    origin = pl.col("origin")
    targets = pl.concat_list(
        [_text(_offset(origin, pl.lit(k), freq), indexed) for k in range(1, horizon + 1)]
    )
    columns = [
        pl.col("series_id"),
        _text(origin, indexed).alias("timestamp"),
        pl.Series("forecast", values[..., forecaster.point_index]),
        targets.alias("timestamps"),
    ]
    columns += [pl.Series(quantile_column(q), values[..., i]) for i, q in enumerate(forecaster.quantiles)]
    columns.append(pl.col("warming_up"))
    return frame.select(columns).write_ndjson()


def format_csv(batch: list[TickForecast], forecaster: Forecaster, header: bool) -> str:
    """Rows of series_id, origin, timestamp, step, forecast[, q...], warming_up."""
    if not batch:
        return ""
    frame, values = _frame(batch, forecaster)
    horizon = values.shape[1]
    n = len(batch)
    long = frame.select(pl.all().gather(np.repeat(np.arange(n), horizon)))
    long = long.with_columns(pl.Series("step", np.tile(np.arange(1, horizon + 1), n), dtype=pl.Int32))
    long = long.with_columns(_offset(pl.col("origin"), pl.col("step"), forecaster.freq).alias("timestamp"))
    extra = [pl.Series("forecast", values[..., forecaster.point_index].reshape(-1))]
    extra += [
        pl.Series(quantile_column(q), values[..., i].reshape(-1)) for i, q in enumerate(forecaster.quantiles)
    ]
    long = long.with_columns(extra)
    order = [
        "series_id",
        "origin",
        "timestamp",
        "step",
        "forecast",
        *map(quantile_column, forecaster.quantiles),
        "warming_up",
    ]
    return long.select(order).write_csv(include_header=header, datetime_format=ISO)
