"""Peak memory of `streamcast forecast` as the number of series grows: 10,000 and 100,000 series
x 500 hourly steps, read from Parquet and forecast in batches of series (--batch-series).

Each run is the CLI in its own process, measured by a fresh parent through RUSAGE_CHILDREN, so
the peak RSS is that run's alone. The model is a small untrained LSTM (hidden 32, horizon 24): the
network's weights do not change the memory a forecast needs, the data does. Every series is new
to the model, so each is also scaled by its own history, as with a model fitted on other data.

    .venv/bin/python benchmarks/bench_forecast_memory.py [--sizes 10000,100000]   # ~12 min on 2 busy cores
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import report

import streamcast as sc
from streamcast.features import FeatureSpec, Scaler, calendar_names
from streamcast.forecaster import Forecaster
from streamcast.model import ModelConfig, RecurrentForecaster
from streamcast.reading import Columns

STEPS = 500
CHUNK = 5_000  # series generated and written at a time: the generator holds no more


def write_data(path: Path, series: int) -> None:
    """Hourly series with a daily cycle, sorted by id, written a chunk of series at a time."""
    rng = np.random.default_rng(0)
    start = np.datetime64("2024-01-01T00:00", "us")
    hours = np.arange(STEPS) * np.timedelta64(1, "h")
    writer = None
    for first in range(0, series, CHUNK):
        n = min(CHUNK, series - first)
        ids = np.repeat(np.array([f"s{i:06d}" for i in range(first, first + n)]), STEPS)
        t = np.tile(np.arange(STEPS), n)
        level = np.repeat(rng.uniform(10, 100, n), STEPS)
        values = level + 3 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.5, n * STEPS)
        table = pa.table({"series_id": ids, "timestamp": np.tile(start + hours, n), "value": values})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=STEPS * 1_000)
    writer.close()


def small_model(path: Path) -> None:
    spec = FeatureSpec("1h", calendar_names("1h"), (), (), ())
    config = ModelConfig(input_size=spec.input_size, cell="lstm", hidden_size=32, horizon=24, season=24)
    net = RecurrentForecaster(config).eval()
    forecaster = Forecaster(net, spec, Scaler({}, {}), Columns("series_id", "timestamp", "value"))
    sc.save(forecaster, path)


def measure(args: list[str]) -> tuple[float, float, float]:
    """Peak RSS (MB), wall and CPU seconds of one command, from a fresh parent process."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "print(u.ru_maxrss / 1024, time.perf_counter() - t, u.ru_utime + u.ru_stime)"
    )
    out = subprocess.run([sys.executable, "-c", probe, *args], check=True, capture_output=True, text=True)
    rss, wall, cpu = (float(x) for x in out.stdout.split())
    return rss, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    quick = os.environ.get("STREAMCAST_BENCH_QUICK") == "1"  # run_all.py --quick
    parser.add_argument("--sizes", default="2000,20000" if quick else "10000,100000")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        small_model(folder / "model.streamcast")
        for series in sizes:
            data = folder / f"data-{series}.parquet"
            write_data(data, series)
            # the default batches, and all series in one batch (how forecast ran before batches)
            for batch in (None, series) if series <= 10_000 else (None,):
                command = [sys.executable, "-m", "streamcast", "forecast", str(data)]
                command += ["-m", str(folder / "model.streamcast"), "-o", str(folder / "out.parquet")]
                command += ["--threads", "1", "-q"] + (["--batch-series", str(batch)] if batch else [])
                load = os.getloadavg()[0]
                rss, wall, cpu = measure(command)
                rows.append(
                    {
                        "series": series,
                        "steps": STEPS,
                        "batch_series": batch or "default (2048)",
                        "peak_rss_mb": round(rss),
                        "wall_s": round(wall, 1),
                        "cpu_s": round(cpu, 1),
                        "load_before": round(load, 2),
                    }
                )
                print(rows[-1], file=sys.stderr, flush=True)
                time.sleep(1)
    report("forecast_memory", rows, "peak RSS of `streamcast forecast` on Parquet, one thread")


if __name__ == "__main__":
    main()
