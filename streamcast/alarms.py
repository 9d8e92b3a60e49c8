"""How often `stream --watch` would flag a data set: the false-alarm rate on data without anomalies.

The data go through the stream engine itself (zero states, the same rules and warm-up), so the
rate is the one a live stream would see; values filled in while reading are left out, and the
stream fills those gaps as it would live.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from streamcast.forecaster import Forecaster
from streamcast.reading import SeriesFrame
from streamcast.stream.engine import StreamConfig, stream
from streamcast.stream.input import Observations
from streamcast.stream.state import StreamState
from streamcast.stream.watch import WatchConfig

BATCH_ROWS = 65_536


@dataclass(frozen=True)
class AlarmRate:
    """Observations scored (past warm-up, with a pending forecast) and how many were flagged."""

    z: float
    scored: int
    flagged: int

    @property
    def rate(self) -> float | None:
        return self.flagged / self.scored if self.scored else None

    def to_dict(self) -> dict:
        return {"z": self.z, "scored": self.scored, "flagged": self.flagged, "rate": self.rate}

    def describe(self) -> str:
        if not self.scored:
            return f"anomaly flag (z {self.z:g}): no observation past warm-up to score"
        return (
            f"anomaly flag (z {self.z:g}): {self.flagged:,} of {self.scored:,} scored observations "
            f"({self.rate:.2%}), its false-alarm rate if the data hold no anomalies"
        )


def alarm_rate(
    forecaster: Forecaster,
    data: SeriesFrame,
    watch: WatchConfig | None = None,
    *,
    threads: int | None = None,
) -> AlarmRate:
    """Stream `data` through `forecaster` with `watch` (default: z 4) and count the flags.

    >>> alarm_rate(load("model.streamcast"), read_series("load.csv")).rate  # doctest: +SKIP
    0.0021
    """
    forecaster.check_freq(data)
    frame = data.frame.filter(~data.imputed())
    batches = (
        _observations(frame.slice(at, BATCH_ROWS), forecaster, at)
        for at in range(0, frame.height, BATCH_ROWS)
    )
    scored = flagged = 0
    watch = watch if watch is not None else WatchConfig()
    config = StreamConfig(watch=watch)
    for batch in stream(forecaster, batches, StreamState(forecaster), config, threads=threads):
        w = batch.watched
        counted = ~np.isnan(w.error) & ~batch.warming_up
        scored += int(counted.sum())
        flagged += int((w.anomaly & counted).sum())
    return AlarmRate(watch.z, scored, flagged)


def _observations(frame: pl.DataFrame, forecaster: Forecaster, first: int) -> Observations:
    stamps = frame["timestamp"]
    zone = stamps.dtype.time_zone if isinstance(stamps.dtype, pl.Datetime) else None
    times = stamps.dt.epoch("us") if isinstance(stamps.dtype, pl.Datetime) else stamps
    covariates = forecaster.spec.covariates
    return Observations(
        lines=np.arange(first + 1, first + frame.height + 1, dtype=np.int64),
        series_ids=frame["series_id"].cast(pl.String).to_list(),
        values=frame["value"].to_numpy().astype(np.float64),
        times=times.to_numpy().astype(np.int64),
        covariates=frame.select(covariates).to_numpy().astype(np.float64)
        if covariates
        else np.zeros((frame.height, 0)),
        time_zone=zone,
    )
