"""Reading speed: `read_series` on a 10-million-row long Parquet file (1,000 series x 10,000 hours).

Three files: a sorted, regular one; the same with 1% of its rows missing at random (to time the
gap filling); and the regular one with its rows shuffled (to time the sort). Each read runs in a fresh process so that its peak RSS is its own, not the generator's;
the RSS includes the interpreter with torch imported (the "rss before read" column). "cpu seconds"
(all threads) is steadier than wall seconds on a shared machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from common import peak_rss_mb, report

CASES = (("sorted", 0.0, False), ("1% rows missing", 0.01, False), ("shuffled", 0.0, True))


def write_long(path: Path, series: int, length: int, missing: float, shuffle: bool, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01T00:00", "us")
    hours = np.tile(np.arange(length), series)
    frame = pl.DataFrame(
        {
            "series_id": np.repeat([f"s{i:04d}" for i in range(series)], length),
            "timestamp": start + hours.astype("timedelta64[h]"),
            "value": 10 + np.sin(2 * np.pi * hours / 24) + rng.normal(0, 0.3, hours.size),
        }
    )
    if missing:
        keep = rng.random(frame.height) >= missing
        keep[::length] = keep[length - 1 :: length] = True  # ends stay, so the grid is the same
        frame = frame.filter(pl.Series(keep))
    if shuffle:
        frame = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    frame.write_parquet(path)
    return frame.height


def read_once(path: str) -> None:
    """Child process: time one read and print the figures as JSON."""
    from streamcast.reading import read_series

    before = peak_rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    data = read_series(path)
    seconds = time.perf_counter() - started
    out = {"seconds": seconds, "cpu seconds": time.process_time() - cpu, "rows out": data.frame.height}
    out["rss before read MB"] = before
    print(json.dumps({**out, "peak RSS MB": peak_rss_mb()}))


def main() -> None:
    quick = bool(os.environ.get("STREAMCAST_BENCH_QUICK"))
    series, length = (100, 10_000) if quick else (1_000, 10_000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, missing, shuffle in CASES:
            path = Path(tmp) / f"{label.split()[0]}.parquet"
            rows_in = write_long(path, series, length, missing, shuffle)
            child = [sys.executable, __file__, "--read", str(path)]
            result = json.loads(subprocess.run(child, capture_output=True, check=True).stdout)
            rows.append(
                {
                    "input": label,
                    "rows in": rows_in,
                    **result,
                    "rows/s": rows_in / result["seconds"],
                }
            )
    report("read_series", rows, note=f"long Parquet, {series:,} series x {length:,} hourly points")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--read"]:
        read_once(sys.argv[2])
    else:
        main()
