"""Accuracy and fit time on M4 Hourly: 414 real series, horizon 48, the last 48 points held out.

The model is fitted with the defaults (horizon 48) on each series minus its last 48 values; fit's own
validation (early stopping) comes from the end of that training part, never from the held-out points.
Options: `--cell`, `--epochs` etc. are passed to FitConfig for experiments, e.g. `--set cell=lstm`.
`--jobs 1` trains the members one after another (the fit time of one process).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import polars as pl
from common import SHARED_DATA, jobs_option, peak_child_rss_mb, peak_rss_mb, report, require

import streamcast as sc
from streamcast.metrics import mase, mase_scale, smape

HORIZON = 48
SEASON = 24


def load_m4(path) -> pl.DataFrame:
    """The wide, ragged M4 file as a long frame on an hourly index (M4 withholds the start dates)."""
    wide = pl.read_csv(path, infer_schema_length=0)
    long = (
        wide.rename({"V1": "series_id"})
        .unpivot(index="series_id", variable_name="col", value_name="value")
        .filter(pl.col("value").is_not_null() & (pl.col("value") != ""))
        .with_columns(
            pl.col("value").cast(pl.Float64),
            pl.col("col").str.slice(1).cast(pl.Int64).alias("step"),
        )
        .sort("series_id", "step")
    )
    start = pl.datetime(2000, 1, 1)
    return long.select(
        "series_id",
        (start + pl.duration(hours=pl.col("step") - 2)).alias("timestamp"),
        "value",
    )


def _coverage(forecast: pl.DataFrame, actual: np.ndarray) -> float | str:
    """The share of held-out points inside the outermost interval the model serves."""
    quantiles = [c for c in forecast.columns if c.startswith("q")]
    if len(quantiles) < 2:
        return "no interval"
    ordered = forecast.sort("series_id", "step")
    low = ordered[quantiles[0]].to_numpy().reshape(actual.shape)
    high = ordered[quantiles[-1]].to_numpy().reshape(actual.shape)
    return float(((actual >= low) & (actual <= high)).mean())


def parse_overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        field_type = type(getattr(sc.FitConfig(), key))
        out[key] = value if field_type is str else float(value) if field_type is float else int(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", nargs="*", default=[], help="FitConfig overrides, e.g. cell=lstm epochs=10")
    parser.add_argument("--series", type=int, default=0, help="use only the first N series (0 = all)")
    parser.add_argument(
        "--jobs",
        type=jobs_option,
        default="auto",
        help="members trained at once (fit --jobs), as the CLI's default",
    )
    args = parser.parse_args()
    frame = load_m4(require(SHARED_DATA / "m4" / "Hourly-train.csv"))
    if args.series or os.environ.get("STREAMCAST_BENCH_QUICK"):
        keep = frame["series_id"].unique(maintain_order=True).head(args.series or 40)
        frame = frame.filter(pl.col("series_id").is_in(keep.implode()))
    n = frame.group_by("series_id", maintain_order=True).len()
    cut = frame.with_columns(pl.int_range(pl.len()).over("series_id").alias("i")).join(n, on="series_id")
    train = cut.filter(pl.col("i") < pl.col("len") - HORIZON).select("series_id", "timestamp", "value")
    test = cut.filter(pl.col("i") >= pl.col("len") - HORIZON)

    data = sc.read_series(train, id_col="series_id", time_col="timestamp", target="value")
    config = sc.FitConfig(horizon=HORIZON, **parse_overrides(args.set))
    started = time.perf_counter()
    model = sc.fit(data, config, jobs=args.jobs)
    fit_seconds = time.perf_counter() - started
    forecast = sc.forecast(model, data)

    ids = data.series_ids
    actual = test.sort("series_id", "i")["value"].to_numpy().reshape(len(ids), HORIZON)
    predicted = forecast.sort("series_id", "step")["forecast"].to_numpy().reshape(len(ids), HORIZON)
    history = [g["value"].to_numpy() for _, g in train.group_by("series_id", maintain_order=True)]
    snaive = np.stack([np.tile(h[-SEASON:], HORIZON // SEASON) for h in history])
    scales = np.array([mase_scale(h, SEASON) for h in history])

    model_smape, base_smape = smape(actual, predicted), smape(actual, snaive)
    rows = [
        {
            "method": f"streamcast {config.cell} (defaults)",
            "sMAPE": model_smape,
            "MASE": mase(actual, predicted, scales),
        },
        {"method": "seasonal naive", "sMAPE": base_smape, "MASE": mase(actual, snaive, scales)},
        {"method": "sMAPE gain over seasonal naive", "sMAPE": 1 - model_smape / base_smape},
        {"method": "fit seconds", "sMAPE": fit_seconds},
        {"method": "members trained at once (--jobs)", "sMAPE": model.info["jobs"]},
        {
            "method": "fit timesteps/s (median epoch)",
            "sMAPE": model.info["gradient_health"]["timesteps_per_second"],
        },
        {
            "method": "epochs (best)",
            "sMAPE": f"{len(model.info['history'])} ({model.info['best_epoch']})",
        },
        {"method": "series served seasonal naive (--naive-fallback)", "sMAPE": len(model.naive_series)},
        {"method": "series served a blend with it", "sMAPE": len(model.naive_share)},
        {"method": "80% interval coverage (--intervals)", "sMAPE": _coverage(forecast, actual)},
        {"method": "peak RSS MB", "sMAPE": peak_rss_mb()},
        {"method": "peak RSS MB of a member's process", "sMAPE": peak_child_rss_mb() or "none"},
    ]
    report(
        "m4_hourly",
        rows,
        note=f"{len(ids)} series, validation = last 48 of the training file; config {args.set or 'defaults'}",
    )


if __name__ == "__main__":
    main()
