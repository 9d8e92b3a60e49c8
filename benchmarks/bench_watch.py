"""What `stream --watch` costs: the library's stream() over the same micro-batches with and without
the anomaly watch, in CPU seconds of this process (alternated, best of REPEATS each), and the ratio.

100 interleaved hourly series, GRU hidden 64, horizon 24, batches of 8,192 observations as the CLI
reads them in bulk; formatting and pipes are left out, so the ratio is of the engine alone.
"""

from __future__ import annotations

import os
import time

import numpy as np
import polars as pl
from common import report, synthetic

import streamcast as sc

SERIES = 100
HISTORY = 200
LIVE = 1000
BATCH = 8192
REPEATS = 3


def batches(model, frame: pl.DataFrame) -> list[sc.Observations]:
    ticks = frame.sort("timestamp", "series_id")
    times = ticks["timestamp"].dt.epoch("us").to_numpy()
    out = []
    for at in range(0, ticks.height, BATCH):
        part = slice(at, at + BATCH)
        out.append(
            sc.Observations(
                lines=np.arange(at + 1, at + 1 + len(times[part]), dtype=np.int64),
                series_ids=ticks["series_id"][part].to_list(),
                values=ticks["value"].to_numpy()[part].astype(np.float64),
                times=times[part].astype(np.int64),
                covariates=np.zeros((len(times[part]), 0)),
            )
        )
    return out


def cpu_seconds(model, observations, config: sc.StreamConfig) -> tuple[float, int]:
    started = time.process_time()
    anomalies = sum(b.anomalies for b in sc.stream(model, observations, sc.StreamState(model), config))
    return time.process_time() - started, anomalies


def main() -> None:
    quick = bool(os.environ.get("STREAMCAST_BENCH_QUICK"))
    live = 200 if quick else LIVE
    frame = synthetic(SERIES, HISTORY + live)
    cutoff = pl.datetime(2024, 1, 1) + pl.duration(hours=HISTORY)
    history = sc.read_series(frame.filter(pl.col("timestamp") < cutoff))
    model = sc.fit(history, sc.FitConfig(cell="gru", hidden_size=64, horizon=24, epochs=1, ensemble=1))
    observations = batches(model, frame.filter(pl.col("timestamp") >= cutoff))
    n = SERIES * live
    plain, watched = [], []
    for _ in range(REPEATS):
        plain.append(cpu_seconds(model, observations, sc.StreamConfig())[0])
        seconds, anomalies = cpu_seconds(model, observations, sc.StreamConfig(watch=sc.WatchConfig()))
        watched.append(seconds)
    rows = [
        {"run": "stream()", "observations": n, "cpu s": min(plain), "obs/cpu s": n / min(plain)},
        {
            "run": "stream() with watch",
            "observations": n,
            "cpu s": min(watched),
            "obs/cpu s": n / min(watched),
            "anomalies": anomalies,
        },
        {"run": "ratio watch / plain", "cpu s": min(watched) / min(plain)},
    ]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    report("watch", rows, note=f"{SERIES} interleaved series, GRU hidden 64, horizon 24; load {load}")


if __name__ == "__main__":
    main()
