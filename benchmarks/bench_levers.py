"""What each accuracy lever changes, on validation parts only, over several seeds.

M4 Hourly: fit on each series minus its last 48 points, score those 48 (sMAPE, MASE); the official
test part is never used. ETT: fit on the training part, score the validation part (MSE on the
protocol's z-scores, stride-1 origins); the test part is not read. Each lever is a set of FitConfig
overrides; the table gives the mean over seeds, half the spread (max - min) and each seed's
figure, so a gain can be told from noise. Run `--quick` for one seed on 40 M4 series.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import polars as pl
import torch
from bench_ett import evaluate as evaluate_ett
from bench_m4 import HORIZON, SEASON, load_m4
from common import SHARED_DATA, jobs_option, report, require

import streamcast as sc
from streamcast.metrics import mase, mase_scale, smape

# Rows measured before --lag-inputs auto (smoothed lags in logs) keep the plain lags:
PLAIN_LAGS = {"lag_inputs": "season"}
# Rows measured before --naive-share fitted keep the ratio's ramp alone:
RATIO = {**PLAIN_LAGS, "naive_share": "ratio"}
# Rows measured before --scaling auto keep the mean absolute value (logs: no change):
MEAN = {**RATIO, "scaling": "mean"}
# Rows measured before --ar-start and --naive-fallback pin what those options did then (ETTm1's
# default --ar was a day, 96 steps, then; it is 336 now):
PREVIOUS = {**MEAN, "ar_start": "naive", "naive_fallback": 0.0, "loss": "mae"}
# The rows before --head-scale, --lag-inputs and --ensemble:
GLOBAL = {**PREVIOUS, "head_scale": "global", "lag_inputs": "none", "ensemble": 1}
LEVERS = {
    "before: no transform, plateau lr": {**GLOBAL, "transform": "none", "lr_schedule": "plateau"},
    "log transform (auto)": {**GLOBAL, "transform": "auto", "lr_schedule": "plateau"},
    "log + warm-up/cosine lr": {**GLOBAL, "transform": "auto", "lr_schedule": "warmup-cosine"},
    "log + mase series weight": {**GLOBAL, "transform": "auto", "series_weight": "mase"},
    "log + ensemble of 3": {**GLOBAL, "transform": "auto", "ensemble": 3},
    "log + quantiles 0.1/0.5/0.9": {**GLOBAL, "transform": "auto", "quantiles": (0.1, 0.9)},
    "log + ensemble of 3, hidden 32": {**GLOBAL, "transform": "auto", "ensemble": 3, "hidden_size": 32},
    "log + window head scale": {
        **PREVIOUS,
        "transform": "auto",
        "head_scale": "window",
        "lag_inputs": "none",
        "ensemble": 1,
    },
    "scaling std (z-scores of the logs)": {**GLOBAL, "transform": "auto", "scaling": "std"},
    "log + window head + ensemble of 3": {
        **PREVIOUS,
        "head_scale": "auto",
        "lag_inputs": "none",
        "ensemble": 3,
    },
    "log + window head + lag inputs": {
        **PREVIOUS,
        "head_scale": "auto",
        "lag_inputs": "season",
        "ensemble": 1,
    },
    "log + window head + lag inputs + ensemble of 3": PREVIOUS,
    "+ least-squares highway start where it scores better (--ar-start auto)": {
        **MEAN,
        "naive_fallback": 0.0,
        "loss": "mae",
    },
    "+ seasonal naive for the series served badly (--naive-fallback), MAE loss": {**MEAN, "loss": "mae"},
    "+ --loss auto (MSE on data left in its own units, MAE on logs)": MEAN,
    "+ --scaling auto (twice the std in own units, highway pooled in naive units)": RATIO,
    "+ --naive-share fitted (each series' blend with naive fitted on validation)": PLAIN_LAGS,
    "+ members of two cells in turn (--ensemble-cells lstm,gru: LSTM, GRU, LSTM)": {
        **PLAIN_LAGS,
        "ensemble_cells": ("lstm", "gru"),
    },
    "+ --lr-schedule warmup-cosine (a warm-up epoch, then a cosine decay to 1% of --lr)": {
        **PLAIN_LAGS,
        "lr_schedule": "warmup-cosine",
    },
    "+ --bptt 24 (truncated BPTT over chunks of 24 steps instead of 48)": {**PLAIN_LAGS, "bptt": 24},
    "+ --layers 2 (two stacked LSTM layers in each member)": {**PLAIN_LAGS, "num_layers": 2},
    "+ --cell gru (three GRU members instead of LSTMs)": {**PLAIN_LAGS, "cell": "gru"},
    "+ --val-size 96 (M4: two horizons of validation, for early stopping and the fallback)": {
        **PLAIN_LAGS,
        "val_size": 96,
    },
    "+ --ar 336 (M4: a fortnight of window for the head and the lags instead of a week)": {
        **PLAIN_LAGS,
        "ar": 336,
    },
    "+ --ensemble 4 (a fourth member: two rounds of two members at --jobs 2, as three take)": {
        **PLAIN_LAGS,
        "ensemble": 4,
    },
    "+ --lag-inputs smoothed everywhere (ES-style level and seasonal profile beside the plain lags; auto, the default, takes it for data in logs)": {
        "lag_inputs": "smoothed"
    },
    # The defaults from when the highway averaged four window lengths (ETT; M4 keeps seasonal naive)
    # until each member served the mean of its best epochs' weights.
    "+ the highway as the mean of fits over 1/2, 1, 2 and 4 windows, the network reading 2": {
        "average_epochs": 1,
        "ensemble_cells": ("lstm",),
    },
    # The defaults from --average-epochs until segrnn members joined the ensemble.
    "+ --average-epochs 3 (each member's three best epochs' weights averaged, where that validates better)": {
        "ensemble_cells": ("lstm",)
    },
    "+ segrnn members: an LSTM and two segrnn members where the data stays in its own units (ETT; M4 in logs keeps three LSTMs)": {},
    "--segment-stride 4 (each segrnn member trained on every 4th step, shifted each epoch)": {
        "segment_stride": 4
    },
    "--segment-stride 8": {"segment_stride": 8},
    "--segment-stride 2": {"segment_stride": 2},
    "--segment-batches lanes (every segrnn member walks lanes; the defaults until 2026-12-02)": {
        "segment_batches": "lanes"
    },
    "--segment-batches random (every segrnn member on random windows)": {"segment_batches": "random"},
    "--segment-batches mixed (the first segrnn member on lanes, the second random)": {
        "segment_batches": "mixed"
    },
}


def m4_split(series: int) -> tuple[sc.SeriesFrame, np.ndarray, np.ndarray]:
    frame = load_m4(require(SHARED_DATA / "m4" / "Hourly-train.csv"))
    if series:
        keep = frame["series_id"].unique(maintain_order=True).head(series)
        frame = frame.filter(pl.col("series_id").is_in(keep.implode()))
    n = frame.group_by("series_id", maintain_order=True).len()
    cut = frame.with_columns(pl.int_range(pl.len()).over("series_id").alias("i")).join(n, on="series_id")
    train = cut.filter(pl.col("i") < pl.col("len") - HORIZON).select("series_id", "timestamp", "value")
    test = cut.filter(pl.col("i") >= pl.col("len") - HORIZON).sort("series_id", "i")
    data = sc.read_series(train, id_col="series_id", time_col="timestamp", target="value")
    actual = test["value"].to_numpy().reshape(len(data.series_ids), HORIZON)
    history = [g["value"].to_numpy() for _, g in train.group_by("series_id", maintain_order=True)]
    scales = np.array([mase_scale(h, SEASON) for h in history])
    return data, actual, scales


def score_m4(split, overrides: dict, jobs: int | str = 1) -> dict:
    data, actual, scales = split
    started = time.process_time()
    model = sc.fit(data, sc.FitConfig(horizon=HORIZON, **overrides), jobs=jobs)
    cpu = time.process_time() - started
    predicted = sc.forecast(model, data).sort("series_id", "step")["forecast"].to_numpy()
    predicted = predicted.reshape(actual.shape)
    return {
        "M4 sMAPE": smape(actual, predicted),
        "M4 MASE": mase(actual, predicted, scales),
        "M4 fit CPU s": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levers", nargs="*", type=int, help="which rows, by number from 1 [default: all]")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--data", nargs="*", default=["m4", "ETTh1", "ETTm1"])
    parser.add_argument("--name", help="results file name [default: levers_ plus the data sets]")
    parser.add_argument("--quick", action="store_true", help="one seed, 40 M4 series, ETTh1 S only")
    parser.add_argument("--zscore", action="store_true", help="ETT columns z-scored before fit")
    parser.add_argument(
        "--jobs",
        type=jobs_option,
        default="1",
        help="members trained at once (fit --jobs; the same models for any N)",
    )
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("STREAMCAST_BENCH_THREADS", "1")))
    quick = args.quick or bool(os.environ.get("STREAMCAST_BENCH_QUICK"))
    seeds = args.seeds[:1] if quick else args.seeds
    split = m4_split(40 if quick else 0) if "m4" in args.data else None
    ett = [(d, m) for d in args.data if d.startswith("ETT") for m in (("S",) if quick else ("S", "M"))]
    rows = []
    chosen = [list(LEVERS)[i - 1] for i in args.levers] if args.levers else list(LEVERS)
    for lever in chosen:
        runs = []
        for seed in seeds:
            overrides = {**LEVERS[lever], "seed": seed}
            run = score_m4(split, overrides, args.jobs) if split else {}
            for name, mode in ett:
                result = evaluate_ett(
                    name, mode, 96, overrides, part="validation", zscore=args.zscore, jobs=args.jobs
                )
                run[f"{name} {mode} MSE"] = result["validation MSE"]
            runs.append(run)
        row = {"lever": lever}
        for key in runs[0]:
            values = np.array([r[key] for r in runs])
            row[key] = (
                f"{values.mean():.4g} ±{(values.max() - values.min()) / 2:.2g} "
                f"({' / '.join(f'{v:.4g}' for v in values)})"
                if len(runs) > 1
                else values[0]
            )
        rows.append(row)
        print(row, flush=True)
    name = args.name or "levers_" + "_".join(d.lower() for d in args.data) + (
        "_zscored" if args.zscore else ""
    )
    report(
        name, rows, note=f"validation parts only; seeds {seeds}; mean ±half the spread over seeds (each seed)"
    )


if __name__ == "__main__":
    main()
