"""Series too short to train on: left out of the fit and served naive, not a failed fit.

A series needs `--val-size` + `--horizon` + 2 points to give one training window and a validation
part. Real data has a few newer series (a sensor installed last week, a product launched last
month) among many long ones, and one of them used to stop the whole fit. Now, where some series
are long enough, the short ones are left out of training, with a warning, and the model file lists
them among the series served naive: the last season where they hold one and the window reads one,
else their last value. A network's forecast from a few steps of a cold state and a window of
zeros is no better than either. Where every series is too short, `fit` still says so and stops.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import polars as pl

from streamcast.errors import StreamcastWarning
from streamcast.features import series_offsets
from streamcast.forecaster import Forecaster
from streamcast.reading import SeriesFrame


def needed_points(horizon: int, val_size: int) -> int:
    """The fewest points a series needs to be trained on: a target window and validation."""
    return val_size + horizon + 2


def split_short(data: SeriesFrame, horizon: int, val_size: int) -> tuple[SeriesFrame, dict[str, int]]:
    """`data` without its series too short to train on, and their lengths; `data` itself where
    none is short, or where all are (the fit then says why it cannot train)."""
    ids, offsets = series_offsets(data.frame)
    lengths = np.diff(offsets)
    short = lengths < needed_points(horizon, val_size)
    if not short.any() or short.all():
        return data, {}
    left_out = {ids[i]: int(lengths[i]) for i in np.flatnonzero(short)}
    kept = pl.Series(list(left_out), dtype=pl.String)
    frame = data.frame.filter(~pl.col("series_id").is_in(kept.implode()))
    static = data.static
    if static is not None:
        static = static.filter(~pl.col("series_id").is_in(kept.implode()))
    warnings.warn(left_out_text(left_out, needed_points(horizon, val_size)), StreamcastWarning, stacklevel=3)
    return replace(data, frame=frame, static=static), left_out


def left_out_text(left_out: dict[str, int], needed: int) -> str:
    first = next(iter(left_out))
    return (
        f"{len(left_out)} series shorter than {needed} points (e.g. {first!r}, {left_out[first]} points) "
        "were left out of training; lower --horizon or --val-size to train on them"
    )


def serve_short(
    forecaster: Forecaster, left_out: dict[str, int], naive_fallback: float, needed: int
) -> Forecaster:
    """The model with the series left out of training served naive: seasonal naive where the
    series holds a season and the window reads one, else the last value. With the fallback off
    (`--naive-fallback 0`) the network serves them, as any series it never saw."""
    if not left_out:
        return forecaster
    c = forecaster.net.config
    served = bool(naive_fallback) and c.ar > 0
    info = dict(forecaster.info)
    info["short_series"] = {
        "series": len(left_out),
        "needed": needed,
        "example": next(iter(left_out)),
        "served": "naive" if served else "network",
    }
    if not served:
        return replace(forecaster, info=info)
    seasonal = {s for s, n in left_out.items() if c.ar >= c.season and n >= c.season}
    return replace(
        forecaster,
        info=info,
        naive_series=forecaster.naive_series | set(left_out),
        naive_last=forecaster.naive_last | (set(left_out) - seasonal),
    )
