"""Torch threads: fit, forecast and stream throughput on 1 and 2 threads, alone and beside a busy neighbour.

For an LSTM of hidden 64 (the default) and of hidden 256, on 1 and 2 intra-op threads (the library's
`threads=`): fit (training lane steps per second over one epoch of 32 series x 700 hourly points:
7 lanes in parallel, as fit chooses for data this size; 13 for the issue's 20 series x 2,160), forecast (history steps per second, 100 series x 200 points; untrained weights, as speed
does not depend on them) and stream (ticks per second, 100 series arriving
together: one micro-batch of 100 lines per timestamp). Forecast and stream repeat their call until
SECONDS have passed. backtest runs fit's and forecast's code, plot forecast's.

Then the same again while a second process runs a torch loop on 2 threads (a 256 x 256 matrix
product over and over), as another torch job on the same machine would. "others busy" is how many
cores the rest of the machine (neither this benchmark nor its neighbour) kept busy meanwhile, from
/proc/stat: the load that was there anyway on a shared machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
from common import report, synthetic

import streamcast as sc
from streamcast.features import FeatureSpec, Scaler, calendar_names, window_length
from streamcast.forecaster import Forecaster
from streamcast.model import ModelConfig, RecurrentForecaster
from streamcast.reading import Columns
from streamcast.stream.input import Observations

QUICK = bool(os.environ.get("STREAMCAST_BENCH_QUICK"))
SECONDS = 1.0 if QUICK else 3.0
SIZES = (64, 256)
THREADS = (1, 2)
NEIGHBOUR = """
import sys, torch
torch.set_num_threads(2)
a = torch.randn(256, 256)
a @ a
print("ready", flush=True)
while True:
    a @ a
"""


def repeat(call: Callable[[], int]) -> float:
    """Units of work per second: `call` (returning its units) once to warm up, then until SECONDS pass."""
    call()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < SECONDS:
        done += call()
    return done / (time.perf_counter() - started)


def untrained(hidden: int, ids: list[str]) -> Forecaster:
    spec = FeatureSpec("1h", calendar_names("1h"), (), (), ())
    config = ModelConfig(
        input_size=spec.input_size,
        cell="lstm",
        hidden_size=hidden,
        horizon=24,
        ar=window_length("1h"),
        season=24,
    )
    scaler = Scaler(dict.fromkeys(ids, 12.0), dict.fromkeys(ids, 3.0))
    return Forecaster(
        RecurrentForecaster(config).eval(), spec, scaler, Columns("series_id", "timestamp", "value")
    )


def fit_speed(hidden: int, threads: int, data) -> float:
    """Training steps per second over one epoch, as `fit` reports it."""
    config = sc.FitConfig(hidden_size=hidden, epochs=1, horizon=24)
    return sc.fit(data, config, threads=threads).info["gradient_health"]["timesteps_per_second"]


def forecast_speed(hidden: int, threads: int, data) -> float:
    model = untrained(hidden, data.series_ids)
    steps = data.frame.height
    return repeat(lambda: sc.forecast(model, data, threads=threads).height and steps)


def stream_speed(hidden: int, threads: int, series: int = 100, ticks: int = 3000) -> float:
    ids = [f"s{i:03d}" for i in range(series)]
    model = untrained(hidden, ids)
    rng = np.random.default_rng(0)
    hour = 3_600_000_000  # microseconds
    batches = (
        Observations(
            lines=np.arange(t * series, (t + 1) * series) + 1,
            series_ids=ids,
            values=12 + rng.normal(0, 3, series),
            times=np.full(series, 1_704_067_200_000_000 + t * hour),
            covariates=np.zeros((series, 0)),
        )
        for t in range(ticks)
    )
    flow = sc.stream(model, batches, sc.StreamState(model), threads=threads)
    return repeat(lambda: len(next(flow)))


class CpuMeter:
    """Cores kept busy by everything on the machine except the given processes, between start and stop."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.total, self.ours = _busy_seconds(), self._ours()
        self.started = time.perf_counter()

    def _ours(self) -> float:
        return sum(_process_seconds(pid) for pid in self.pids)

    def others(self) -> float:
        busy = _busy_seconds() - self.total - (self._ours() - self.ours)
        return max(0.0, busy / (time.perf_counter() - self.started))


def _busy_seconds() -> float:
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _process_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def measure(neighbour: str, neighbour_pid: int | None, fit_data, forecast_data) -> list[dict]:
    rows = []
    for hidden in SIZES:
        for threads in THREADS:
            meter = CpuMeter(os.getpid(), *([neighbour_pid] if neighbour_pid else []))
            rows.append(
                {
                    "hidden": hidden,
                    "neighbour": neighbour,
                    "threads": threads,
                    "fit steps/s": fit_speed(hidden, threads, fit_data),
                    "forecast steps/s": forecast_speed(hidden, threads, forecast_data),
                    "stream ticks/s": stream_speed(hidden, threads),
                    "others busy (cores)": round(meter.others(), 2),
                    "loadavg 1m": os.getloadavg()[0],
                }
            )
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main() -> None:
    # Sized so that the slowest cell (hidden 256 on 2 threads beside the neighbour) ends in a minute.
    fit_data = sc.read_series(synthetic(16 if QUICK else 32, 700))
    forecast_data = sc.read_series(synthetic(100, 200))
    rows = measure("none", None, fit_data, forecast_data)
    busy = subprocess.Popen([sys.executable, "-c", NEIGHBOUR], stdout=subprocess.PIPE, text=True)
    try:
        busy.stdout.readline()  # its first product is done: both its threads are running
        rows += measure("torch, 2 threads", busy.pid, fit_data, forecast_data)
    finally:
        busy.terminate()
        busy.wait(10)
    report(
        "threads",
        rows,
        note="LSTM, horizon 24, torch threads as each row says; neighbour: a torch loop on 2 threads beside it, or none; others busy: cores the rest of the machine kept busy meanwhile",
    )


if __name__ == "__main__":
    main()
