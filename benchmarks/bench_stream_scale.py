"""`stream` holding many series in one process: memory per series, a tick of every series, and the
checkpoint (save and load) of all their states.

For each count of series: the states are warmed from a short history (`warm_up`), then every series
gets one more observation through `stream` in micro-batches of 8,192 lines, then the state file is
written and read back. Memory is the resident size the held states add (measured after the history
is dropped), split into the hidden-state tensors and everything else (ids, index, scales, clocks).
GRU hidden 64, horizon 24. Usage: python bench_stream_scale.py [MAX_SERIES] (default 1,000,000).
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from common import machine, report, synthetic

import streamcast as sc
from streamcast.stream.input import parser_for

HISTORY = 4  # steps of history per series: enough to warm a state, small enough for 1M series
BATCH = 8192


def rss_bytes() -> int:
    """The resident size of this process now (not its peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def history(series: int) -> pl.DataFrame:
    ids = np.repeat(np.array([f"s{i:07d}" for i in range(series)]), HISTORY)
    steps = np.tile(np.arange(HISTORY), series)
    values = 10 + (np.arange(series * HISTORY) % 7) + np.sin(steps)
    return pl.DataFrame({"series_id": ids, "value": values}).with_columns(
        (pl.datetime(2024, 1, 1) + pl.duration(hours=pl.Series(steps))).alias("timestamp")
    )


def measure(model: sc.Forecaster, series: int, tmp: Path) -> dict:
    frame = history(series)
    data = sc.read_series(frame)
    del frame
    gc.collect()
    before = rss_bytes()
    state = sc.StreamState(model)
    started = time.perf_counter()
    sc.warm_up(model, state, data)
    warm_seconds = time.perf_counter() - started
    del data
    gc.collect()
    held = rss_bytes() - before
    tensor_bytes = sum(p[: len(state)].numel() * p.element_size() for p in state.hidden)
    stamp = (datetime(2024, 1, 1) + timedelta(hours=HISTORY)).strftime("%Y-%m-%d %H:%M")
    lines = [f"s{i:07d},{stamp},{10 + i % 7}" for i in range(series)]
    parser = parser_for(model)
    batches = (parser.parse(lines[i : i + BATCH], i + 1) for i in range(0, series, BATCH))
    started = time.perf_counter()
    emitted = sum(len(b) for b in sc.stream(model, batches, state))
    tick_seconds = time.perf_counter() - started
    assert emitted == series
    path = tmp / "state.safetensors"
    started = time.perf_counter()
    state.save(path)
    save_seconds = time.perf_counter() - started
    started = time.perf_counter()
    loaded = sc.StreamState.load(path, model)
    load_seconds = time.perf_counter() - started
    assert len(loaded) == series
    return {
        "series": series,
        "bytes/series (not tensors)": (held - tensor_bytes) / series,
        "tensor bytes/series": tensor_bytes / series,
        "warm-up s": warm_seconds,
        "one tick each: ticks/s": series / tick_seconds,
        "checkpoint save s": save_seconds,
        "checkpoint load s": load_seconds,
        "file MB": path.stat().st_size / 1e6,
    }


def main() -> None:
    most = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    counts = [n for n in (10_000, 100_000, 1_000_000) if n <= most] or [most]
    frame = synthetic(20, 200)
    config = sc.FitConfig(cell="gru", hidden_size=64, horizon=24, epochs=1, ensemble=1)
    model = sc.fit(sc.read_series(frame), config)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            rows.append(measure(model, n, Path(tmp)))
            gc.collect()
    load = os.getloadavg()[0]
    report(
        "stream_scale",
        rows,
        note=f"GRU hidden 64, horizon 24, one process; load {load:.1f}; {machine()}",
    )


if __name__ == "__main__":
    main()
