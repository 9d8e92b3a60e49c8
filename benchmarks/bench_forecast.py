"""Batch forecast throughput: history timesteps per second and peak memory, 10,000 series x 1,000 h.

An untrained GRU (hidden 64, horizon 24) is enough to time the warm-up, which runs batched across
series; memory is measured for growing series counts to show it grows with series, not windows.
Each size runs in a fresh process so that peak RSS belongs to that size alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import polars as pl
from common import peak_rss_mb, report

import streamcast as sc
from streamcast.features import FeatureSpec, Scaler, calendar_names, window_length
from streamcast.forecaster import Forecaster
from streamcast.model import EnsembleForecaster, ModelConfig, RecurrentForecaster
from streamcast.reading import Columns, SeriesFrame


def frame(series: int, length: int) -> SeriesFrame:
    rng = np.random.default_rng(0)
    values = rng.normal(100, 10, series * length)
    ids = pl.Series("series_id", [f"s{i:05d}" for i in range(series)]).gather(
        np.repeat(np.arange(series), length)
    )
    steps = pl.Series(np.tile(np.arange(length), series))
    data = (
        pl.DataFrame({"series_id": ids, "value": values})
        .with_columns((pl.datetime(2024, 1, 1) + pl.duration(hours=steps)).alias("timestamp"))
        .select("series_id", "timestamp", "value")
    )
    return SeriesFrame(data, "1h", Columns("series_id", "timestamp", "value"), "<synthetic>")


def untrained(ids: list[str], members: int = 1, lags: str = "season") -> Forecaster:
    spec = FeatureSpec("1h", calendar_names("1h"), (), (), ())
    # The shape `fit` gives positive hourly data by default, with the GRU the issue names.
    config = ModelConfig(
        input_size=spec.input_size,
        cell="gru",
        hidden_size=64,
        horizon=24,
        ar=window_length("1h"),
        season=24,
        head_scale="window",
        lag_inputs=lags,
    )
    net = (RecurrentForecaster(config) if members == 1 else EnsembleForecaster([config] * members)).eval()
    scaler = Scaler(dict.fromkeys(ids, 100.0), dict.fromkeys(ids, 10.0))
    return Forecaster(net, spec, scaler, Columns("series_id", "timestamp", "value"))


def one(series: int, length: int, members: int, lags: str) -> dict:
    data = frame(series, length)
    model = untrained(data.series_ids, members, lags)
    before = peak_rss_mb()
    started = time.perf_counter()
    table = sc.forecast(model, data)
    seconds = time.perf_counter() - started
    assert table.height == series * 24
    return {
        "members": members,
        "lag inputs": lags,
        "series": series,
        "history": length,
        "seconds": seconds,
        "timesteps/s": series * length / seconds,
        "peak RSS MB": peak_rss_mb(),
        "RSS before forecast MB": before,
    }


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--one":
        print(json.dumps(one(int(sys.argv[2]), 1000, int(sys.argv[3]), sys.argv[4])))
        return
    members = [int(m) for m in (sys.argv[1:] or ["1", "3"])]  # ensemble sizes to measure
    sizes = [1000, 2000] if os.environ.get("STREAMCAST_BENCH_QUICK") else [1000, 5000, 10000]
    rows = []
    for m in members:
        for lags in ("season", "none"):  # the default, and without `--lag-inputs` to show its cost
            for series in sizes:
                out = subprocess.run(
                    [sys.executable, __file__, "--one", str(series), str(m), lags],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    report(
        "forecast_throughput",
        rows,
        note="GRU hidden 64 (members: an ensemble of that many), head scaled by its window, "
        "horizon 24, 1,000 hourly points per series",
    )


if __name__ == "__main__":
    main()
