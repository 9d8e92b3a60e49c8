"""Series too short to train on: left out of the fit and served naive, not a failed fit.

A series needs `--val-size` + `--horizon` + 2 points to give one training window and a validation
part. Real data has a few newer series (a sensor installed last week, a product launched last
month) among many long ones, and one of them used to stop the whole fit. Now, where some series
are long enough, the short ones are left out of training, with a warning, and the model keeps
them as series it knows but serves naive: scaled by their own values (so `stream` carries them on
a fixed scale, as any trained series) and forecast by the last season where they hold one and the
window reads one, else by their last value. A network's forecast from a few steps of a cold state
and a window of zeros is no better than either. Their values still count where the fit decides
something for all the data (the log transform, the bound at 0), so that the model serves them
too. Where every series is too short, `fit` still says so and stops.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from streamcast.errors import StreamcastWarning
from streamcast.features import (
    Scaler,
    bounds_alone,
    check_positive,
    fit_scaler,
    nonnegative_series,
    series_offsets,
)
from streamcast.forecaster import Forecaster
from streamcast.reading import SeriesFrame


def needed_points(horizon: int, val_size: int) -> int:
    """The fewest points a series needs to be trained on: a target window and validation."""
    return val_size + horizon + 2


@dataclass(frozen=True)
class LeftOut:
    """The series left out of training: their rows (series_id, timestamp, value) and the fewest
    points a series needed."""

    frame: pl.DataFrame
    needed: int

    def values(self) -> np.ndarray:
        """Their raw values, for the fit's decisions over all the data."""
        return self.frame["value"].to_numpy()

    def check(self, transform: str) -> None:
        """Before training: `--transform log` asked for, and one of them has a value <= 0."""
        ids, offsets = series_offsets(self.frame)
        check_positive(self.values(), offsets, ids, transform)


def split_short(data: SeriesFrame, horizon: int, val_size: int) -> tuple[SeriesFrame, LeftOut | None]:
    """`data` without its series too short to train on, and those; `data` itself and None where
    none is short, or where all are (the fit then says why it cannot train)."""
    ids, offsets = series_offsets(data.frame)
    lengths = np.diff(offsets)
    needed = needed_points(horizon, val_size)
    short = lengths < needed
    if not short.any() or short.all():
        return data, None
    names = pl.Series([ids[i] for i in np.flatnonzero(short)], dtype=pl.String).implode()
    is_short = pl.col("series_id").is_in(names)
    left_out = LeftOut(data.frame.filter(is_short).select("series_id", "timestamp", "value"), needed)
    static = data.static.filter(~is_short) if data.static is not None else None
    first = int(np.flatnonzero(short)[0])
    warnings.warn(
        f"{int(short.sum())} series shorter than {needed} points (e.g. {ids[first]!r}, "
        f"{int(lengths[first])} points) were left out of training and are served naive; "
        "lower --horizon or --val-size to train on them",
        StreamcastWarning,
        stacklevel=3,
    )
    return replace(data, frame=data.frame.filter(~is_short), static=static), left_out


def serve_short(
    forecaster: Forecaster, left_out: LeftOut | None, naive_fallback: float, transform: str
) -> Forecaster:
    """The model with the series left out of training: scaled by their own values and served
    naive, seasonal naive where the series holds a season and the window reads one, else the
    last value. With the fallback off (`--naive-fallback 0`) or no window the network serves them.
    Under `--transform auto` (`transform`), one that never goes below zero is bounded at 0 on its
    own where the data as a whole is not, as a trained series is (`features.bounds_alone`)."""
    if left_out is None:
        return forecaster
    ids, offsets = series_offsets(left_out.frame)
    lengths = np.diff(offsets)
    values = left_out.values()
    spec, c = forecaster.spec, forecaster.net.config
    own = fit_scaler(values, offsets, ids, lengths, spec.scaling, spec.transform)
    scaler = Scaler({**forecaster.scaler.loc, **own.loc}, {**forecaster.scaler.scale, **own.scale})
    served = bool(naive_fallback) and c.ar > 0
    last = {s for s, n in zip(ids, lengths.tolist(), strict=True) if c.ar < c.season or n < c.season}
    info = dict(forecaster.info)
    info["short_series"] = {
        "series": len(ids),
        "needed": left_out.needed,
        "example": ids[0],
        "served": "naive" if served else "network",
        "last_value": len(last) if served else 0,
    }
    floored = forecaster.floor_series
    if bounds_alone(spec, transform):
        floored = floored | set(nonnegative_series(values, offsets, ids, lengths))
    forecaster = replace(forecaster, scaler=scaler, info=info, floor_series=floored)
    if not served:
        return forecaster
    return replace(
        forecaster,
        naive_series=forecaster.naive_series | set(ids),
        naive_last=forecaster.naive_last | last,
    )
