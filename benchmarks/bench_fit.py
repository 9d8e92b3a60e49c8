"""Training throughput: timesteps per second of truncated-BPTT training, per cell and batch size.

Synthetic hourly data (200 series x 2,000 points), hidden 64, bptt 48, horizon 24, two epochs; the
figure is the median epoch's lane steps per second, forward + backward + optimizer step included.
"""

from __future__ import annotations

import os
import time

import numpy as np
import polars as pl
from common import peak_rss_mb, report

import streamcast as sc


def synthetic(series: int, length: int) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    t = np.arange(length)
    values = np.concatenate(
        [10 + i % 7 + 3 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.5, length) for i in range(series)]
    )
    ids = np.repeat([f"s{i:03d}" for i in range(series)], length)
    steps = pl.int_range(pl.len()).over("series_id")
    return pl.DataFrame({"series_id": ids, "value": values}).with_columns(
        (pl.datetime(2024, 1, 1) + pl.duration(hours=steps)).alias("timestamp")
    )


def main() -> None:
    quick = bool(os.environ.get("STREAMCAST_BENCH_QUICK"))
    data = sc.read_series(synthetic(50 if quick else 200, 2000))
    rows = []
    for cell in ("gru", "lstm", "rnn"):
        for batch in (32, 128):
            config = sc.FitConfig(cell=cell, batch_size=batch, epochs=2, patience=10)
            started = time.perf_counter()
            model = sc.fit(data, config)
            rows.append(
                {
                    "cell": cell,
                    "hidden": 64,
                    "batch": model.info["batch_size"],
                    "timesteps/s": model.info["gradient_health"]["timesteps_per_second"],
                    "seconds (2 epochs)": time.perf_counter() - started,
                }
            )
    rows.append({"cell": "peak RSS MB", "timesteps/s": peak_rss_mb()})
    report(
        "fit_throughput",
        rows,
        note=f"{len(data.series_ids)} series x 2,000 hourly points, bptt 48, horizon 24",
    )


if __name__ == "__main__":
    main()
