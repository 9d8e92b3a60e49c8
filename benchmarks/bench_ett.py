"""Accuracy on ETTh1 / ETTm1 under the standard long-horizon protocol (Informer, DLinear, PatchTST).

Split ETTh1 rows [0, 8640) train, [8640, 11520) validation, [11520, 14400) test (ETTm1 x4); every
column z-scored with the training part's mean and population std; forecasts from every test origin
(stride 1) whose targets lie in the test part; MSE and MAE on the scaled values. `S` is OT alone;
`M` treats all 7 columns as 7 series of one global model (channel-independent) and averages.
The model is fitted on train + validation rows with --val-size = the validation part, so early
stopping sees only the validation part and the test part is never touched before the final score.
`--zscore` hands `fit` the columns already z-scored (as a harness following the protocol may do);
scores are in the same units either way.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import polars as pl
from common import SHARED_DATA, jobs_option, report, require

import streamcast as sc
from streamcast.stepping import run_series

PUBLISHED = {  # test MSE / MAE at horizon 96, from ../shared/data/README.md
    ("ETTh1", "S"): "DLinear 0.056/0.180, PatchTST 0.055/0.179, NLinear 0.053/0.177",
    (
        "ETTh1",
        "M",
    ): "DLinear 0.375/0.399, PatchTST 0.370/0.400, SegRNN 0.341/0.376, GRU 1.126/0.831",
    ("ETTm1", "S"): "DLinear 0.028/0.123, PatchTST 0.026/0.121",
    ("ETTm1", "M"): "DLinear 0.299/0.343, SegRNN 0.282/0.335",
}
COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def long_frame(path, columns: list[str], rows: int, zscore_rows: int = 0) -> pl.DataFrame:
    """`zscore_rows`: each column z-scored by its first that many rows (0: as measured)."""
    wide = pl.read_csv(path, try_parse_dates=True).head(rows)
    if zscore_rows:
        train = wide.head(zscore_rows)
        wide = wide.with_columns((pl.col(c) - train[c].mean()) / train[c].std(ddof=0) for c in columns)
    return wide.unpivot(index="date", on=columns, variable_name="series_id", value_name="value").rename(
        {"date": "timestamp"}
    )


def evaluate(
    name: str,
    mode: str,
    horizon: int,
    overrides: dict,
    part: str = "test",
    zscore: bool = False,
    jobs: int | str = 1,
) -> dict:
    scale = 4 if name == "ETTm1" else 1
    train_end, val_end, test_end = 8640 * scale, 11520 * scale, 14400 * scale
    if part == "validation":
        # For tuning: fit on the training part alone (its last half-validation-length stops early)
        # and score the validation part; the test part is not read at all.
        train_end, val_end, test_end = train_end - (val_end - train_end) // 2, train_end, val_end
    path = require(SHARED_DATA / "ett" / f"{name}.csv")
    columns = ["OT"] if mode == "S" else COLUMNS
    full = sc.read_series(
        long_frame(path, columns, test_end, 8640 * scale if zscore else 0),
        id_col="series_id",
        time_col="timestamp",
        target="value",
    )
    fit_part = sc.read_series(
        full.frame.filter(pl.int_range(pl.len()).over("series_id") < val_end),
        id_col="series_id",
        time_col="timestamp",
        target="value",
    )
    config = sc.FitConfig(horizon=horizon, val_size=val_end - train_end, **overrides)
    started = time.perf_counter()
    model = sc.fit(fit_part, config, jobs=jobs)
    seconds = time.perf_counter() - started

    inputs = model.inputs(full.frame)
    origins = np.arange(val_end - 1, test_end - horizon)
    naive = model.naive_serving(inputs.series_ids)
    outputs, _ = run_series(
        model.net,
        inputs.inputs,
        inputs.offsets,
        [origins] * len(inputs.series_ids),
        naive=naive,
        intervals=model.intervals,
    )
    n_series = len(inputs.series_ids)
    points = model.point_and_quantiles(
        outputs, np.repeat(inputs.loc, len(origins)), np.repeat(inputs.scale, len(origins))
    )
    predicted = points[..., model.point_index].reshape(n_series, len(origins), horizon)
    low = points[..., 0].reshape(predicted.shape)
    high = points[..., -1].reshape(predicted.shape)
    values = full.frame["value"].to_numpy()
    actual = np.stack(
        [values[inputs.offsets[i] + origins[:, None] + np.arange(1, horizon + 1)] for i in range(n_series)]
    )
    # The protocol's scaling: each column z-scored by its training part's mean and population std.
    protocol_train = 8640 * scale  # the protocol's training part, whatever was fitted on
    train = np.stack(
        [values[inputs.offsets[i] : inputs.offsets[i] + protocol_train] for i in range(n_series)]
    )
    mean, std = train.mean(axis=1)[:, None, None], train.std(axis=1)[:, None, None]
    covered = float(((actual >= low) & (actual <= high)).mean()) if points.shape[-1] > 1 else "no interval"
    predicted, actual = (predicted - mean) / std, (actual - mean) / std
    return {
        "dataset": f"{name} {mode}",
        "horizon": horizon,
        f"{part} MSE": float(np.mean((predicted - actual) ** 2)),
        f"{part} MAE": float(np.mean(np.abs(predicted - actual))),
        f"{part} MSE by series (worst first)": _by_series(inputs.series_ids, predicted, actual),
        f"{part} 80% interval coverage": covered,
        "best val loss": model.info["history"][model.info["best_epoch"] - 1]["val_loss"],
        "epochs": len(model.info["history"]),
        "fit s": seconds,
        "published (MSE/MAE)": PUBLISHED[(name, mode)],
    }


def _by_series(ids, predicted: np.ndarray, actual: np.ndarray) -> str:
    """Each column's MSE, the worst first: the mean over columns hides which of them lag."""
    errors = ((predicted - actual) ** 2).mean(axis=(1, 2))
    return ", ".join(f"{ids[i]} {errors[i]:.4f}" for i in np.argsort(-errors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="*", default=["ETTh1", "ETTm1"])
    parser.add_argument("--modes", nargs="*", default=["S", "M"])
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--set", nargs="*", default=[], help="FitConfig overrides, e.g. cell=lstm")
    parser.add_argument(
        "--part",
        choices=["test", "validation"],
        default="test",
        help="score the test part (report), or the validation part (for tuning; test never read)",
    )
    parser.add_argument("--zscore", action="store_true", help="fit on columns z-scored first")
    parser.add_argument(
        "--jobs",
        type=jobs_option,
        default="1",
        help="members trained at once (fit --jobs; the same models for any N)",
    )
    args = parser.parse_args()
    overrides = {}
    for pair in args.set:
        key, value = pair.split("=", 1)
        kind = type(getattr(sc.FitConfig(), key))
        overrides[key] = value if kind is str else float(value) if kind is float else int(value)
    datasets = ["ETTh1"] if os.environ.get("STREAMCAST_BENCH_QUICK") else args.datasets
    rows = [
        evaluate(d, m, args.horizon, overrides, args.part, args.zscore, args.jobs)
        for d in datasets
        for m in args.modes
    ]
    report(
        ("ett" if args.part == "test" else "ett_validation") + ("_zscored" if args.zscore else ""),
        rows,
        note=f"standard split, scaled MSE/MAE, stride-1 test origins; config {args.set or 'defaults'}"
        + ("; columns z-scored before fit" if args.zscore else ""),
    )


if __name__ == "__main__":
    main()
