"""`stream --learn` against the frozen model on series that drift after training.

Ten hourly series with a daily cycle; the model is fitted on the first 60 days. The stream then
runs 40 more days: 10 days as trained, then a level shift (+60%), then from day 25 a changed
season (the daily peak moves six hours later and grows). Both runs go through the real command
(`cat | streamcast stream`, with and without `--learn`); the MAE of every forecast (all 24 steps)
against the values that then arrived is reported per regime.
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
from common import report

import streamcast as sc

SERIES, TRAIN_DAYS, STREAM_DAYS, SHIFT_DAY, SEASON_DAY = 10, 60, 40, 10, 25
HORIZON = 24


def synthetic() -> pl.DataFrame:
    rng = np.random.default_rng(1)
    hours = np.arange((TRAIN_DAYS + STREAM_DAYS) * 24)
    day = hours / 24 - TRAIN_DAYS  # stream days, negative in training
    frames = []
    for i in range(SERIES):
        level = 20 + 3 * i + np.where(day >= SHIFT_DAY, 0.6 * (20 + 3 * i), 0.0)
        phase = np.where(day >= SEASON_DAY, 6, 0)
        amplitude = np.where(day >= SEASON_DAY, 9.0, 5.0)
        values = level + amplitude * np.sin(2 * np.pi * (hours - phase) / 24) + rng.normal(0, 0.7, len(hours))
        frames.append(pl.DataFrame({"series_id": f"s{i}", "hour": hours, "value": values}))
    frame = pl.concat(frames)
    return frame.with_columns(
        (pl.datetime(2024, 1, 1) + pl.duration(hours=pl.col("hour"))).alias("timestamp")
    )


def stream_mae(model: Path, lines: Path, truth: dict, args: list[str]) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "streamcast", "stream", "-m", str(model), "-q", *args]
    started = time.perf_counter()
    with open(lines, "rb") as source:
        out = subprocess.run(cmd, stdin=source, capture_output=True, check=True).stdout.decode().splitlines()
    seconds = time.perf_counter() - started
    errors: dict[str, list[float]] = {"as trained": [], "level shift": [], "season change": []}
    for line in out:
        f = json.loads(line)
        actual = [truth.get((f["series_id"], t)) for t in f["timestamps"]]
        if None in actual:
            continue  # the stream ends before these targets
        hour = truth[(f["series_id"], "hour", f["timestamp"])]
        regime = (
            "as trained"
            if hour < SHIFT_DAY * 24
            else "level shift"
            if hour < SEASON_DAY * 24
            else "season change"
        )
        errors[regime].append(float(np.mean(np.abs(np.array(f["forecast"]) - np.array(actual)))))
    return {k: float(np.mean(v)) for k, v in errors.items()}, seconds


def main() -> None:
    quick = bool(os.environ.get("STREAMCAST_BENCH_QUICK"))
    frame = synthetic()
    cutoff = TRAIN_DAYS * 24
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.streamcast"
        train = sc.read_series(
            frame.filter(pl.col("hour") < cutoff).select("series_id", "timestamp", "value")
        )
        config = sc.FitConfig(hidden_size=32, horizon=HORIZON, epochs=3 if quick else 15, seed=0)
        sc.save(sc.fit(train, config), model)
        live = frame.filter(pl.col("hour") >= cutoff).sort("timestamp", "series_id")
        lines = Path(tmp) / "live.csv"
        stamp = "%Y-%m-%dT%H:%M:%S"
        lines.write_text("".join(f"{s},{t:{stamp}},{v:.4f}\n" for s, h, v, t in live.iter_rows()))
        truth = {(s, f"{t:{stamp}}"): v for s, h, v, t in live.iter_rows()}
        truth.update({(s, "hour", f"{t:{stamp}}"): h - cutoff for s, h, v, t in live.iter_rows()})
        warm = Path(tmp) / "history.csv"
        frame.filter(pl.col("hour") < cutoff).select("series_id", "timestamp", "value").write_csv(warm)
        base = ["--warmup", str(warm)]
        rows = []
        for name, args in [
            ("frozen", []),
            ("--learn (defaults)", ["--learn"]),
            ("--learn --learn-rate 3e-3", ["--learn", "--learn-rate", "3e-3"]),
            ("--learn --learn-rate 1e-2", ["--learn", "--learn-rate", "1e-2"]),
            (
                "--learn --learn-rate 3e-3 --learn-window 12",
                ["--learn", "--learn-rate", "3e-3", "--learn-window", "12"],
            ),
        ]:
            mae, seconds = stream_mae(model, lines, truth, base + args)
            rows.append({"run": name, **{f"MAE {k}": v for k, v in mae.items()}, "seconds": seconds})
    note = f"{SERIES} hourly series, GRU hidden 32, horizon {HORIZON}, trained on {TRAIN_DAYS} days, streamed {STREAM_DAYS}"
    report("stream_learn", rows, note=note)


if __name__ == "__main__":
    main()
