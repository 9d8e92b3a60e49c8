"""fit, forecast and stream on a CUDA GPU against the CPU (1 thread), in one run on one machine.

fit: training steps per second (lanes x steps, as `fit` counts them) over one epoch of one LSTM
(hidden 64) on SERIES synthetic hourly series x LENGTH points, at fit's default batch of 32 lanes
and at 256. forecast: series per second, FORECAST_SERIES series x 500 points of history. stream:
ticks per second, 100 series arriving together, 1,000 timestamps. Weights do not change speed, so
forecast and stream use the model fit trained.

Skips with a message (exit 0) when torch sees no CUDA GPU. `--device cpu` runs the GPU column on
the CPU, to check the script itself on a machine without one.

    python benchmarks/bench_gpu.py [--device cuda:0] [--series 400 --length 1000]

STREAMCAST_BENCH_QUICK=1: 50 series x 500 points, 200 series to forecast, 100 stream ticks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
from common import report, synthetic

import streamcast as sc
from streamcast.devices import device_name, resolve_device
from streamcast.reading import SeriesFrame
from streamcast.stream.input import Observations
from streamcast.threads import set_process_threads

FORECAST_SERIES = 2000
STREAM_SERIES, STREAM_TICKS = 100, 1000


def fit_speed(data: SeriesFrame, device: str, batch_size: int) -> tuple[float, sc.Forecaster]:
    config = sc.FitConfig(epochs=1, ensemble=1, batch_size=batch_size)
    model = sc.fit(data, config, device=device)
    history = model.info["history"]
    return statistics.median(h["timesteps_per_second"] for h in history), model


def forecast_speed(model: sc.Forecaster, device: str, series: int) -> float:
    data = sc.read_series(synthetic(series, 500))
    model.to(device)
    started = time.perf_counter()
    sc.forecast(model, data)
    return series / (time.perf_counter() - started)


def stream_speed(model: sc.Forecaster, device: str, ticks: int) -> float:
    model.to(device)
    ids = [f"s{i:03d}" for i in range(STREAM_SERIES)]
    rng = np.random.default_rng(0)
    hour = 3_600_000_000  # microseconds
    batches = (
        Observations(
            lines=np.arange(t * STREAM_SERIES, (t + 1) * STREAM_SERIES) + 1,
            series_ids=ids,
            values=12 + rng.normal(0, 3, STREAM_SERIES),
            times=np.full(STREAM_SERIES, 1_704_067_200_000_000 + t * hour),
            covariates=np.zeros((STREAM_SERIES, 0)),
        )
        for t in range(ticks)
    )
    started = time.perf_counter()
    done = sum(len(batch) for batch in sc.stream(model, batches, sc.StreamState(model)))
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--series", type=int, default=400)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--forecast-series", type=int, default=FORECAST_SERIES)
    parser.add_argument("--stream-ticks", type=int, default=STREAM_TICKS)
    args = parser.parse_args()
    if os.environ.get("STREAMCAST_BENCH_QUICK"):
        args.series, args.length, args.forecast_series, args.stream_ticks = 50, 500, 200, 100
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"skipped: torch {torch.__version__} sees no CUDA GPU; run this on a machine with one")
        sys.exit(0)
    set_process_threads(1)
    gpu = str(resolve_device(args.device))
    name = device_name(torch.device(gpu))
    data = sc.read_series(synthetic(args.series, args.length))
    rows = []
    for device in ("cpu", gpu):
        row: dict = {"device": "cpu (1 thread)" if device == "cpu" else name}
        for batch in (32, 256):
            row[f"fit steps/s, batch {batch}"], model = fit_speed(data, device, batch)
        row["forecast series/s"] = forecast_speed(model, device, args.forecast_series)
        row["stream ticks/s"] = stream_speed(model, device, args.stream_ticks)
        rows.append(row)
    rows.append({"device": f"{name} / cpu", **{k: rows[1][k] / rows[0][k] for k in rows[0] if k != "device"}})
    report("gpu", rows, f"{args.series} series x {args.length} hourly points, LSTM hidden 64")


if __name__ == "__main__":
    main()
