"""`streamcast stream` in both regimes, through real pipes to a real process.

Bulk: a file of 100 interleaved hourly series piped in with `cat`, forecasts to /dev/null; ticks per
second over the whole run and after subtracting the process start-up, measured separately with
empty input. First forecast: from the process's start until the forecast of a one-line input is
read back. Interactive: one line written at a time, the clock running from the write until its
forecast line has been read back; p50/p90/p99 over `LATENCY_LINES` lines.
Each regime is run by the default engine (`--device cpu`: numpy, torch never loaded) and by torch
(`--device auto`, the CPU on a machine without a GPU), alternately, so that both see the same load.
GRU, hidden 64, horizon 24 (one epoch of training: speed does not depend on the weights); arguments:
MEMBERS (default 1), `none` for a model without the default interval (`intervals` keeps it), and
the members' cells (`gru` for three GRUs, as before segrnn members; default: the fit's default
cells, a GRU and two segrnn members for this data in its own units), so both can be run on one
machine under one load.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from common import machine, report, synthetic

import streamcast as sc

SERIES = 100
HISTORY = 200
LIVE = 3000  # ticks per series in the bulk file: 300,000 lines
LATENCY_LINES = 1000


ENGINES = {"numpy": ("--device", "cpu"), "torch": ("--device", "auto")}


def command(model: Path, engine: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "streamcast", "stream", "-m", str(model), "-q", *ENGINES[engine], *args]


def startup(model: Path, engine: str) -> dict:
    started = time.perf_counter()
    subprocess.run(command(model, engine), input=b"", check=True, capture_output=True)
    return {"regime": "start-up (empty input)", "engine": engine, "seconds": time.perf_counter() - started}


def first_forecast(model: Path, engine: str, line: str) -> dict:
    """From the process's start until the forecast of a one-line input is read back."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command(model, engine), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    proc.stdin.write(line.encode() + b"\n")
    proc.stdin.flush()
    proc.stdout.readline()
    seconds = time.perf_counter() - started
    proc.stdin.close()
    proc.wait(60)
    return {"regime": "first forecast of a one-line input", "engine": engine, "seconds": seconds}


def bulk(model: Path, engine: str, lines: Path, n: int, output_format: str, startup: float) -> dict:
    cmd = " ".join(command(model, engine, "--output-format", output_format))
    started = time.perf_counter()
    subprocess.run(f"cat {lines} | {cmd} > /dev/null", shell=True, check=True, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return {
        "regime": f"bulk, {output_format} out",
        "engine": engine,
        "lines": n,
        "seconds": seconds,
        "ticks/s": n / seconds,
        "ticks/s after start-up": n / (seconds - startup),
    }


def interactive(model: Path, engine: str, lines: list[str]) -> dict:
    proc = subprocess.Popen(
        command(model, engine), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    latencies = []
    try:
        for i, line in enumerate(lines):
            started = time.perf_counter()
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
            proc.stdout.readline()
            if i >= 50:  # the first lines pay for lazy imports and allocations
                latencies.append(time.perf_counter() - started)
            time.sleep(0.002)  # a slow producer: the stream is idle between lines
    finally:
        proc.stdin.close()
        proc.wait(60)
    ms = np.array(latencies) * 1000
    return {
        "regime": "interactive, one line at a time",
        "engine": engine,
        "lines": len(latencies),
        "p50 ms": float(np.percentile(ms, 50)),
        "p90 ms": float(np.percentile(ms, 90)),
        "p99 ms": float(np.percentile(ms, 99)),
        "max ms": float(ms.max()),
    }


def main() -> None:
    members = int(sys.argv[1]) if len(sys.argv) > 1 else 1  # an ensemble of this many GRUs
    # `none` as the second argument: point forecasts alone (`fit --intervals none`), else the
    # default calibrated interval, whose q0.1/q0.5/q0.9 triple the numbers of every line.
    intervals = () if sys.argv[2:3] == ["none"] else sc.FitConfig().intervals
    cells = tuple(sys.argv[3].split(",")) if len(sys.argv) > 3 else ()
    quick = bool(os.environ.get("STREAMCAST_BENCH_QUICK"))
    live = 500 if quick else LIVE
    frame = synthetic(SERIES, HISTORY + live)
    cutoff = pl.datetime(2024, 1, 1) + pl.duration(hours=HISTORY)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "gru64.streamcast"
        history = sc.read_series(frame.filter(pl.col("timestamp") < cutoff))
        config = sc.FitConfig(
            cell="gru",
            hidden_size=64,
            horizon=24,
            epochs=1,
            ensemble=members,
            intervals=intervals,
            ensemble_cells=cells,
        )
        sc.save(sc.fit(history, config), model)
        ticks = frame.filter(pl.col("timestamp") >= cutoff).sort("timestamp", "series_id")
        text = [f"{sid},{ts:%Y-%m-%d %H:%M},{v:.3f}" for sid, v, ts in ticks.iter_rows()]
        lines = Path(tmp) / "live.csv"
        lines.write_text("\n".join(text) + "\n")
        rows = []
        for engine in ENGINES:
            rows.append(startup(model, engine))
        for engine in ENGINES:
            rows.append(first_forecast(model, engine, text[0]))
        for fmt in ("jsonl", "csv"):
            for engine in ENGINES:
                seconds = next(r["seconds"] for r in rows if r["engine"] == engine)
                rows.append(bulk(model, engine, lines, len(text), fmt, seconds))
        for engine in ENGINES:
            rows.append(interactive(model, engine, text[: LATENCY_LINES + 50]))
    report(
        ("stream" if members == 1 else f"stream_ensemble{members}")
        + ("_points" if not intervals else "")
        + ("_" + "_".join(cells) if cells else ""),
        rows,
        note=f"{SERIES} interleaved series, GRU hidden 64 x {members} members, horizon 24, "
        f"intervals {intervals or 'none'}, cells {','.join(cells) if cells else 'the default'}; {machine()}",
    )


if __name__ == "__main__":
    main()
