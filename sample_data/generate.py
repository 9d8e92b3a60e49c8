"""Generate the bundled sample data with a fixed seed: `python sample_data/generate.py`.

Electricity load of 20 meters, hourly over 90 days: daily and weekly cycles, a mild trend, noise,
a temperature covariate that drives part of the load, a level shift in two meters around day 60,
and a few missing rows, so that every reader policy has something to do.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
START = datetime(2024, 1, 1)
SEED = 7


def meters(rng: np.random.Generator, n_meters: int = 20, days: int = 90) -> pl.DataFrame:
    hours = np.arange(days * 24)
    hour_of_day, day = hours % 24, hours // 24
    weekday = (day + START.weekday()) % 7
    stamps = np.datetime64(START, "us") + hours.astype("timedelta64[h]")
    temperature = (
        5
        + 6 * np.sin(2 * np.pi * (hour_of_day - 9) / 24)
        + 4 * np.sin(2 * np.pi * day / 90)
        + rng.normal(0, 1.0, len(hours))
    )
    frames = []
    for m in range(n_meters):
        level = rng.uniform(40, 160)
        daily = (
            level * rng.uniform(0.15, 0.35) * np.sin(2 * np.pi * (hour_of_day - 7 - rng.integers(0, 3)) / 24)
        )
        weekly = np.where(weekday >= 5, -level * rng.uniform(0.05, 0.2), 0.0)
        trend = level * rng.uniform(-0.1, 0.15) * hours / len(hours)
        heating = -level * 0.01 * (temperature - 5)
        load = level + daily + weekly + trend + heating + rng.normal(0, level * 0.03, len(hours))
        if m in (3, 11):  # a level shift: new equipment on day 60
            load = load + np.where(day >= 60, level * 0.25, 0.0)
        frames.append(
            pl.DataFrame(
                {
                    "series_id": f"meter_{m + 1:02d}",
                    "timestamp": stamps,
                    "load": np.round(load, 3),
                    "temperature": np.round(temperature, 2),
                }
            )
        )
    out = pl.concat(frames)
    ts = pl.col("timestamp")
    # Three hours lost on the 15th of each month in two meters: the reader interpolates them.
    gap = (
        pl.col("series_id").is_in(["meter_05", "meter_14"])
        & (ts.dt.day() == 15)
        & ts.dt.hour().is_between(2, 4)
    )
    return out.filter(~gap)


def single(rng: np.random.Generator, days: int = 60) -> pl.DataFrame:
    hours = np.arange(days * 24)
    load = (
        100
        + 25 * np.sin(2 * np.pi * (hours % 24 - 7) / 24)
        - 10 * ((hours // 24 + START.weekday()) % 7 >= 5)
        + rng.normal(0, 3, len(hours))
    )
    return pl.DataFrame({"load": np.round(load, 3), "hour": hours}).select(
        (pl.lit(START) + pl.duration(hours=pl.col("hour"))).alias("timestamp"), "load"
    )


def main() -> None:
    rng = np.random.default_rng(SEED)
    hourly = meters(rng)
    hourly.write_parquet(HERE / "load_hourly.parquet")
    hourly.write_csv(HERE / "load_hourly.csv", datetime_format="%Y-%m-%d %H:%M")
    single(rng).write_csv(HERE / "load_single.csv", datetime_format="%Y-%m-%d %H:%M")


if __name__ == "__main__":
    main()
