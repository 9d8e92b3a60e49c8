"""Training throughput: timesteps per second of truncated-BPTT training, per cell and batch size.

Synthetic hourly data (200 series x 2,000 points), hidden 64, bptt 48, horizon 24, two epochs; the
figure is the median epoch's lane steps per second, forward + backward + optimizer step included.
"""

from __future__ import annotations

import os
import time

from common import peak_rss_mb, report, synthetic

import streamcast as sc


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
