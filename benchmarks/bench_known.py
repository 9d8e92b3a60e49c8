"""What covariates known in advance are worth: the same model fitted without covariates, with
temperature as a past covariate (`--covariate`), and with temperature known for the forecast window
(`--future-covariate`), scored on held-out windows (`fit_and_backtest`: the model never trains,
validates or scales on a scored point), over a few seeds, on one thread.

Two data sets, both synthetic, since no real set at hand has a covariate that is truly known in
advance (ETT's other columns are measured alongside the target, not forecast before it):
- `sample`: sample_data/load_hourly.parquet (20 meters, 90 days), where temperature moves load by
  1% of its level per degree and holds a daily cycle plus hourly noise;
- `weather`: load driven by heating degrees (below 15 °C) of a temperature whose weather fronts
  persist for days (an AR(1) of hourly persistence 0.97 on a daily cycle), made here with seed 0:
  the case of real load, where tomorrow's cold is in the weather forecast and not in today's data.

    python benchmarks/bench_known.py [--seeds 3] [--epochs 20]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import polars as pl
from common import ROOT, report

from streamcast.backtest import fit_and_backtest
from streamcast.reading import read_series
from streamcast.training import FitConfig

INPUTS = {
    "none": {},
    "past temperature": {"covariates": ("temperature",)},
    "future temperature": {"future_covariates": ("temperature",)},
}


def weather_load(meters: int = 10, days: int = 120, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    hours = np.arange(days * 24)
    front = np.zeros(len(hours))
    for t in range(1, len(hours)):
        front[t] = 0.97 * front[t - 1] + rng.normal(0, 0.8)
    temperature = 8 + 5 * np.sin(2 * np.pi * (hours % 24 - 9) / 24) + front
    frames = []
    for m in range(meters):
        level = rng.uniform(40, 160)
        daily = 0.2 * np.sin(2 * np.pi * (hours % 24 - 7) / 24)
        heating = 0.03 * np.maximum(0.0, 15 - temperature)
        load = level * (1 + daily + heating) + rng.normal(0, 0.02 * level, len(hours))
        frames.append(
            pl.DataFrame(
                {
                    "series_id": f"m{m:02d}",
                    "timestamp": np.datetime64("2024-01-01T00:00", "us") + hours.astype("timedelta64[h]"),
                    "load": np.round(load, 3),
                    "temperature": np.round(temperature, 2),
                }
            )
        )
    return pl.concat(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--windows", type=int, default=7, help="held-out days scored per series")
    args = parser.parse_args()
    sets = {
        "sample": pl.read_parquet(ROOT / "sample_data" / "load_hourly.parquet"),
        "weather": weather_load(),
    }
    rows = []
    for name, raw in sets.items():
        for label, columns in INPUTS.items():
            scores = []
            for seed in range(args.seeds):
                data = read_series(raw, target="load", **columns)
                config = FitConfig(
                    hidden_size=32, epochs=args.epochs, patience=4, ensemble=1, seed=seed, **columns
                )
                started = time.process_time()
                _, result = fit_and_backtest(data, config, windows=args.windows, threads=1)
                seconds = time.process_time() - started
                scores.append((result.score("mae"), result.score("smape"), result.score("mase"), seconds))
            mae, smape, mase, cpu = np.mean(scores, axis=0)
            rows.append(
                {
                    "data": name,
                    "inputs": label,
                    "seeds": args.seeds,
                    "mae": float(mae),
                    "smape": float(smape),
                    "mase": float(mase),
                    "mase_sd": float(np.std([s[2] for s in scores])),
                    "cpu_s_per_fit": float(cpu),
                }
            )
        base = next(r["mase"] for r in rows if r["data"] == name and r["inputs"] == "none")
        for r in rows:
            if r["data"] == name:
                r["mase_vs_none"] = r["mase"] / base - 1
    load = os.getloadavg()[0]
    report(
        "known",
        rows,
        f"held-out last {args.windows} days x 24 h, hidden 32, 1 thread, load {load:.1f}",
    )


if __name__ == "__main__":
    main()
