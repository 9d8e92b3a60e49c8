"""Rolling-origin evaluation: how a forecaster would have done at the last K origins of each series,
next to the naive and seasonal naive forecasts made at exactly the same origins, for the same points.

The model's forecasts at every origin come from one stateful pass over each series (the step that
training, `forecast` and `stream` share), batched across series: the network at step t has only seen
inputs up to t, so one pass equals warming up afresh to each origin. Nothing after an origin leaks
into its forecast: a series the model never saw is scaled by its history before the first origin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from streamcast import metrics
from streamcast.column_names import quantile_column
from streamcast.errors import DataError, UsageError
from streamcast.features import (
    SeriesInputs,
    build_inputs,
    fit_scaler,
    season_length,
    series_floors,
    series_offsets,
)
from streamcast.forecaster import Forecaster
from streamcast.reading import SeriesFrame
from streamcast.stepping import run_series
from streamcast.threads import torch_threads
from streamcast.training import EpochStats, FitConfig, data_fingerprint, fit

DEFAULT_WINDOWS = 5
METHODS = ("model", "naive", "seasonal_naive")
POINT_METRICS = ("mae", "rmse", "smape", "mase")
QUANTILE_METRICS = ("coverage", "pinball")
COLUMNS = ("metric", *METHODS, "gain_naive", "gain_seasonal_naive")
PART_SCHEMA = {
    "scope": pl.String,
    "series_id": pl.String,
    "step": pl.Int32,
    **{c: pl.String if c == "metric" else pl.Float64 for c in COLUMNS},
    "points": pl.Int64,
}


@dataclass(frozen=True)
class BacktestResult:
    """Scores of the model and both baselines, overall, per horizon step and (optionally) per series.

    Each table has one row per metric with a column per method, and the model's gain over each
    baseline, 1 − model / baseline (higher is better; 0.2 = 20% lower error). coverage is the share
    of actual values inside the model's outermost quantile interval (`interval`), pinball the mean
    pinball loss over its quantiles; both only for quantile models, and never for the baselines.
    """

    overall: pl.DataFrame  # metric, model, naive, seasonal_naive, gain_naive, gain_seasonal_naive
    per_step: pl.DataFrame  # step, then the overall columns
    per_series: pl.DataFrame | None  # series_id, then the overall columns
    origins: pl.DataFrame  # series_id, origin: every forecast origin evaluated
    horizon: int
    windows: int
    stride: int
    season: int
    interval: tuple[float, float] | None
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    imputed: int = 0  # forecast points left out of every score: their actual value was filled in
    weights: pl.DataFrame | None = None  # points, mase_points behind every row of `to_frame()`
    forecasts: pl.DataFrame | None = None
    """With `keep_forecasts=True`: the forecasts behind the scores, one row per origin and step
    (series_id, timestamp, cutoff, step, y, forecast[, q...], naive, seasonal_naive, observed), the
    shape of statsforecast's `cross_validation`; `observed` is false where a score left the row out."""

    @property
    def series(self) -> int:
        return self.origins["series_id"].n_unique()

    @property
    def points(self) -> int:
        """Forecast values scored per method: series × windows × horizon, less the imputed ones."""
        return self.origins.height * self.horizon - self.imputed

    def score(self, metric: str, method: str = "model") -> float | None:
        """One overall figure, e.g. `result.score("mase", "seasonal_naive")`."""
        metrics = self.overall["metric"].to_list()
        if metric not in metrics or method not in METHODS:
            raise UsageError(
                f"no score for {metric!r} by {method!r}: metrics here are {', '.join(metrics)}; "
                f"methods are {', '.join(METHODS)}"
            )
        return self.overall.filter(pl.col("metric") == metric)[method].item()

    def to_frame(self) -> pl.DataFrame:
        """Every table in one long frame (scope = overall, step or series), for CSV and Parquet."""
        no_series, no_step = pl.lit(None, pl.String).alias("series_id"), pl.lit(None, pl.Int32).alias("step")
        parts = [
            self.overall.select(pl.lit("overall").alias("scope"), no_series, no_step, *COLUMNS),
            self.per_step.select(pl.lit("step").alias("scope"), no_series, "step", *COLUMNS),
        ]
        if self.per_series is not None:
            parts.append(
                self.per_series.select(pl.lit("series").alias("scope"), "series_id", no_step, *COLUMNS)
            )
        return pl.concat(parts)

    def to_part_frame(self) -> pl.DataFrame:
        """`to_frame()` with `points`, how many values each score averages: one shard's part of a
        backtest, which `combine_scores` puts together with the others exactly as one run scores."""
        frame = self.to_frame()
        if self.weights is None or self.per_series is None:
            raise ValueError("a part needs per-series scores: backtest(..., per_series=True)")
        metrics = self.overall["metric"].to_list()
        points = [
            mase if metric == "mase" else plain
            for plain, mase in self.weights.select("points", "mase_points").iter_rows()
            for metric in metrics
        ]
        return frame.with_columns(pl.Series("points", points, dtype=pl.Int64))

    def to_dict(self) -> dict:
        """The settings and every table, for JSON: `overall` is keyed by metric."""
        out = {
            "horizon": self.horizon,
            "windows": self.windows,
            "stride": self.stride,
            "season": self.season,
            "series": self.series,
            "points": self.points,
            "imputed": self.imputed,
            "interval": list(self.interval) if self.interval else None,
            "overall": {row.pop("metric"): row for row in self.overall.to_dicts()},
            "per_step": self.per_step.to_dicts(),
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }
        if self.per_series is not None:
            out["per_series"] = self.per_series.to_dicts()
        return out


def holdout_steps(horizon: int, windows: int, stride: int) -> int:
    """How many points at the end of each series a backtest scores: (windows − 1) × stride + horizon."""
    return (windows - 1) * stride + horizon


def holdout(
    data: SeriesFrame, *, horizon: int, windows: int = DEFAULT_WINDOWS, stride: int | None = None
) -> SeriesFrame:
    """Each series minus the points a backtest with these settings scores: the data to fit on.

    >>> model = fit(holdout(data, horizon=24, windows=5), FitConfig(horizon=24))  # doctest: +SKIP
    >>> backtest(model, data, windows=5)  # doctest: +SKIP
    """
    if windows < 1:
        raise UsageError("--windows must be at least 1")
    span = holdout_steps(horizon, windows, _stride(stride, horizon))
    lengths = data.frame.group_by("series_id", maintain_order=True).len()
    short = lengths.filter(pl.col("len") <= span)
    if short.height:
        sid, n = short.row(0)
        raise DataError(
            f"series {sid!r} has {n} points, not more than the {span} that {windows} windows score; "
            "lower windows or stride, or drop the short series"
        )
    position = pl.int_range(pl.len()).over("series_id")
    frame = data.frame.filter(position < pl.len().over("series_id") - span)  # every length > span
    return replace(data, frame=frame)


def backtest(
    forecaster: Forecaster,
    data: SeriesFrame,
    *,
    windows: int = DEFAULT_WINDOWS,
    stride: int | None = None,
    season: int | None = None,
    per_series: bool = False,
    keep_forecasts: bool = False,
    threads: int | None = None,
) -> BacktestResult:
    """Score `forecaster` at the last `windows` origins of each series, `stride` steps apart
    (default: the horizon, so the scored windows do not overlap), against naive and seasonal naive.

    The last origin is the horizon's length before the end of each series, so every target is known.
    `season` (default: from the frequency, e.g. 24 for hourly data) sets the seasonal naive forecast
    and the MASE scale, which comes from each series' history up to its first origin. `threads`:
    torch threads for the run (default: `streamcast.threads.default_threads()`, one).

    >>> result = backtest(load("model.streamcast"), read_series("load.parquet"), windows=7)  # doctest: +SKIP
    >>> result.score("mase"), result.score("mase", "seasonal_naive")  # doctest: +SKIP
    """
    data, moved = forecaster.in_model_zone(data)
    forecaster.check_freq(data)
    horizon = forecaster.horizon
    stride = _stride(stride, horizon)
    season = _season(season, data.freq)
    if windows < 1:
        raise UsageError("--windows must be at least 1")
    span = holdout_steps(horizon, windows, stride)
    frame, notes = _long_enough(data.frame, span + season + 1, windows, stride, horizon, season)
    ids, offsets = series_offsets(frame)
    first = np.diff(offsets) - span - 1  # (S,) each series' first origin: the last point of its history
    origin_at = first[:, None] + stride * np.arange(windows)  # (S, K) positions within each series

    inputs = _inputs_before(forecaster, frame, ids, offsets, first + 1, data.static)
    with torch_threads(threads):
        naive = forecaster.naive_serving(ids)
        outputs, _ = run_series(
            forecaster.net,
            inputs.inputs,
            offsets,
            list(origin_at),
            naive=naive,
            intervals=forecaster.intervals,
        )  # (S*K, H, Q)
    floors = series_floors(forecaster.floor_series, ids)
    forecasts = forecaster.point_and_quantiles(
        outputs,
        np.repeat(inputs.loc, windows),
        np.repeat(inputs.scale, windows),
        None if floors is None else np.repeat(floors, windows),
    )
    values = frame["value"].to_numpy().astype(np.float64)
    rows = (offsets[:-1, None] + origin_at).reshape(-1)  # (R,) the frame row of every origin
    steps = np.arange(horizon)
    actual = values[rows[:, None] + steps + 1]  # (R, H)
    point = {
        "model": forecasts[..., forecaster.point_index],
        "naive": np.repeat(values[rows][:, None], horizon, axis=1),
        "seasonal_naive": values[rows[:, None] - season + 1 + steps % season],
    }
    scale = np.array(
        [metrics.mase_scale(values[o : o + n], season) for o, n in zip(offsets[:-1], first + 1, strict=True)]
    )
    if not (scale > 0).all():
        notes.append(
            f"{int((~(scale > 0)).sum())} series repeat exactly every {season} steps before their first "
            "origin (no in-sample seasonal naive error to scale by) and are left out of MASE"
        )
    imputed = frame.with_columns(data.imputed().alias("imputed"))["imputed"].to_numpy()  # (N,)
    # A filled-in actual is not an observation, and a filled-in origin has seen the value after it.
    observed = ~(imputed[rows[:, None] + steps + 1] | imputed[rows][:, None])  # (R, H)
    if not observed.any():
        raise DataError(
            "every scored point or its origin was filled in by interpolation (gaps in the data); "
            "score other points with --windows and --stride, or fix the gaps"
        )
    if not observed.all():
        notes.append(
            f"{int((~observed).sum())} of {observed.size} forecast points are left out of the scores: "
            "their actual value or their origin's was filled in by interpolation"
        )
    scorer = _Scorer(actual, point, np.repeat(scale, windows), forecasts, forecaster.quantiles, observed)
    origins = pl.DataFrame(
        {
            "series_id": pl.Series(np.repeat(ids, windows), dtype=pl.String),
            "origin": frame["timestamp"].gather(rows),
        }
    )
    overlap = _training_overlap(forecaster, data, span)
    per_step = [
        line for h in steps.tolist() for line in scorer.lines(slice(None), slice(h, h + 1), step=h + 1)
    ]
    return BacktestResult(
        overall=_table(scorer.lines(slice(None), slice(None))),
        per_step=_table(per_step, {"step": pl.Int32}),
        per_series=_per_series(scorer, ids, windows) if per_series else None,
        origins=origins,
        horizon=horizon,
        windows=windows,
        stride=stride,
        season=season,
        interval=scorer.interval,
        notes=tuple(notes),
        warnings=tuple(w for w in (moved, overlap) if w),
        imputed=int((~observed).sum()),
        weights=_weights(observed, np.repeat(scale, windows) > 0, ids, windows, per_series),
        forecasts=_forecast_rows(frame, ids, rows, forecaster, forecasts, point, actual, observed, data.dates)
        if keep_forecasts
        else None,
    )


def _forecast_rows(
    frame: pl.DataFrame,
    ids: list[str],
    rows: np.ndarray,
    forecaster: Forecaster,
    forecasts: np.ndarray,
    point: dict[str, np.ndarray],
    actual: np.ndarray,
    observed: np.ndarray,
    dates: bool,
) -> pl.DataFrame:
    """Every scored forecast as a row: (R, H) arrays flattened origin by origin."""
    n_rows, horizon = actual.shape
    targets = (rows[:, None] + np.arange(1, horizon + 1)).reshape(-1)  # (R * H,) frame rows
    windows = n_rows // len(ids)
    table = pl.DataFrame(
        {
            "series_id": pl.Series(np.repeat(ids, windows * horizon), dtype=pl.String),
            "timestamp": frame["timestamp"].gather(targets),
            "cutoff": frame["timestamp"].gather(np.repeat(rows, horizon)),
            "step": pl.Series(np.tile(np.arange(1, horizon + 1), n_rows), dtype=pl.Int32),
            "y": actual.reshape(-1),
            "forecast": point["model"].reshape(-1),
            **{quantile_column(q): forecasts[..., i].reshape(-1) for i, q in enumerate(forecaster.quantiles)},
            "naive": point["naive"].reshape(-1),
            "seasonal_naive": point["seasonal_naive"].reshape(-1),
            "observed": observed.reshape(-1),
        }
    )
    return table.with_columns(pl.col("timestamp", "cutoff").cast(pl.Date)) if dates else table


def _weights(observed: np.ndarray, scaled: np.ndarray, ids: list[str], windows: int, per_series: bool):
    """How many points each row of `to_frame()` averages, as a block of the (R, H) grid: all,
    each step, each series (`windows` rows); MASE only counts series with a scale."""
    with_scale = observed & scaled[:, None]  # (R, H)
    blocks = [(slice(None), slice(None))] + [(slice(None), slice(h, h + 1)) for h in range(observed.shape[1])]
    if per_series:
        blocks += [(slice(i * windows, (i + 1) * windows), slice(None)) for i in range(len(ids))]
    return pl.DataFrame(
        [(int(observed[b].sum()), int(with_scale[b].sum())) for b in blocks],
        schema={"points": pl.Int64, "mase_points": pl.Int64},
        orient="row",
    )


def combine_scores(parts: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """The `to_frame()` table of one backtest over every series, from its shards' parts
    (`BacktestResult.to_part_frame()`): each score is the points-weighted mean of the parts' (RMSE
    through its square), so the result equals one run's up to float rounding.

    >>> combine_scores(pl.read_parquet(p) for p in Path("scores").glob("part-*.parquet"))  # doctest: +SKIP
    """
    frame = pl.concat([p.select(*PART_SCHEMA) for p in parts] or [pl.DataFrame(schema=PART_SCHEMA)])
    if frame.height == 0:
        raise DataError("the parts hold no scores: every shard was empty")
    order = {m: i for i, m in enumerate(POINT_METRICS + QUANTILE_METRICS)}
    used = pl.col("points") > 0
    squared = pl.col("metric") == "rmse"
    columns = []
    for method in METHODS:
        value = pl.when(squared).then(pl.col(method) ** 2).otherwise(pl.col(method))
        mean = (value * pl.col("points")).filter(used).sum() / pl.col("points").filter(used).sum()
        mean = pl.when(squared.first()).then(mean.sqrt()).otherwise(mean)
        unknown = pl.col(method).filter(used).is_null().any() | ~used.any()
        columns.append(pl.when(unknown).then(None).otherwise(mean).alias(method))
    keys = ["scope", "series_id", "step", "metric"]
    combined = (
        frame.group_by(keys)
        .agg(*columns)
        .sort(
            pl.col("scope").replace_strict({"overall": 0, "step": 1, "series": 2}, return_dtype=pl.Int8),
            "step",
            "series_id",
            pl.col("metric").replace_strict(order, return_dtype=pl.Int8),
        )
    )
    gains = [
        pl.when(pl.col(base) > 0).then(1.0 - pl.col("model") / pl.col(base)).alias(f"gain_{base}")
        for base in ("naive", "seasonal_naive")
    ]
    return combined.with_columns(*gains).select(*keys, *COLUMNS[1:])


def _per_series(scorer: _Scorer, ids: list[str], windows: int) -> pl.DataFrame:
    """Rows of the forecast grid are grouped by series, `windows` consecutive rows each."""
    lines = [
        line
        for i, sid in enumerate(ids)
        for line in scorer.lines(slice(i * windows, (i + 1) * windows), slice(None), series_id=sid)
    ]
    return _table(lines, {"series_id": pl.String})


def fit_and_backtest(
    data: SeriesFrame,
    config: FitConfig,
    *,
    windows: int = DEFAULT_WINDOWS,
    stride: int | None = None,
    season: int | None = None,
    per_series: bool = False,
    keep_forecasts: bool = False,
    on_epoch: Callable[[EpochStats], None] | None = None,
    threads: int | None = None,
    device: str = "auto",
) -> tuple[Forecaster, BacktestResult]:
    """Fit on each series minus the points the backtest scores, then backtest on all of `data`.

    The model never trains, validates or scales on a point it is scored on. Series too short for
    both the fit and the backtest are left out of both, with a note. `threads` as in `fit`.
    """
    config = config.for_data(data.freq)
    stride = _stride(stride, config.horizon)
    season = _season(season, data.freq)
    if windows < 1:
        raise UsageError("--windows must be at least 1")
    span = holdout_steps(config.horizon, windows, stride)
    needed = span + max(season + 1, config.resolved_val_size() + config.horizon + 2)
    frame, notes = _long_enough(data.frame, needed, windows, stride, config.horizon, season)
    data = replace(data, frame=frame)
    held_out = holdout(data, horizon=config.horizon, windows=windows, stride=stride)
    forecaster = fit(held_out, config, on_epoch, threads=threads, device=device)
    forecaster.info["holdout"] = {"steps": span, "windows": windows, "stride": stride}
    result = backtest(
        forecaster,
        data,
        windows=windows,
        stride=stride,
        season=season,
        per_series=per_series,
        keep_forecasts=keep_forecasts,
        threads=threads,
    )
    return forecaster, replace(result, notes=(*notes, *result.notes))


def _stride(stride: int | None, horizon: int) -> int:
    if stride is None:
        return horizon
    if stride < 1:
        raise UsageError("--stride must be at least 1")
    return stride


def _season(season: int | None, freq: str) -> int:
    if season is None:
        return season_length(freq)
    if season < 1:
        raise UsageError("--season must be at least 1")
    return season


def _long_enough(
    frame: pl.DataFrame, needed: int, windows: int, stride: int, horizon: int, season: int
) -> tuple[pl.DataFrame, list[str]]:
    """Leave out the series too short to score; fail if none is long enough."""
    length = pl.len().over("series_id")
    short = frame.filter(length < needed)["series_id"].unique(maintain_order=True).to_list()
    settings = f"--windows {windows} --stride {stride} with horizon {horizon} and season {season}"
    if not short:
        return frame, []
    kept = frame.filter(length >= needed)
    if kept.height == 0:
        fix = "--season" if season > holdout_steps(horizon, windows, stride) else "--windows or --stride"
        raise DataError(f"every series is shorter than the {needed} points that {settings} need; lower {fix}")
    return kept, [
        f"{len(short)} series shorter than {needed} points (e.g. {short[0]!r}) were left out: {settings} need that many"
    ]


def _inputs_before(
    forecaster: Forecaster,
    frame: pl.DataFrame,
    ids: list[str],
    offsets: np.ndarray,
    known: np.ndarray,
    static: pl.DataFrame | None = None,
) -> SeriesInputs:
    """Input rows as `Forecaster.inputs` builds them, except that a series the model never saw is
    scaled by its first `known` points (its history up to the first origin), not its whole length."""
    unseen = [sid for sid in ids if sid not in forecaster.scaler.loc]
    fallback = None
    if unseen:
        values = frame["value"].to_numpy()
        fallback = fit_scaler(values, offsets, ids, known, forecaster.spec.scaling, forecaster.spec.transform)
    return build_inputs(
        frame, forecaster.spec, forecaster.scaler, fallback, static=forecaster.static_for(static)
    )


def _training_overlap(forecaster: Forecaster, data: SeriesFrame, span: int) -> str | None:
    """A warning when the model was fitted on this very file, on the points now being scored."""
    fitted_on = forecaster.info.get("data", {}).get("fingerprint")
    if not fitted_on or fitted_on != data_fingerprint(data.source):
        return None
    held = forecaster.info.get("holdout", {}).get("steps", 0)
    if span <= held:
        return None
    trained_on = (
        f"all of {data.source}" if held == 0 else f"{data.source} but its last {held} steps of each series"
    )
    return (
        f"the model was trained on {trained_on}, and these windows score the last {span}, so the "
        "scores are optimistic; run `streamcast backtest DATA` without -m to fit with the windows held out"
    )


class _Scorer:
    """Every metric for every method over any block of the (rows, steps) forecast grid."""

    def __init__(self, actual, point, scale, forecasts, quantiles: tuple[float, ...], observed) -> None:
        self.actual = actual  # (R, H)
        self.observed = observed  # (R, H) False where the point is left out
        self.point = point  # method -> (R, H)
        self.scale = scale  # (R,) the MASE scale of each row's series
        self.quantiles = quantiles
        self.forecasts = forecasts  # (R, H, Q), quantiles sorted as `quantiles`
        self.interval = (min(quantiles), max(quantiles)) if len(quantiles) > 1 else None

    def lines(self, rows: slice, steps: slice, **key) -> list[dict]:
        """One row per metric for this block, each starting with `key` (a step or a series id)."""
        keep = self.observed[rows, steps]  # (r, h)
        if not keep.any():  # every point of this block was filled in: nothing to score
            names = POINT_METRICS + (QUANTILE_METRICS if self.interval is not None else ())
            return [_line(key, metric, {}) for metric in names]
        # The kept points as (P, 1) blocks: every metric averages over what it is given.
        y = self.actual[rows, steps][keep][:, None]
        scale = np.broadcast_to(self.scale[rows][:, None], keep.shape)[keep]
        scores = {}
        for method, yhat in self.point.items():
            yhat = yhat[rows, steps][keep][:, None]
            scores[method] = {
                "mae": metrics.mae(y, yhat),
                "rmse": metrics.rmse(y, yhat),
                "smape": metrics.smape(y, yhat),
                "mase": _mase(y, yhat, scale),
            }
        lines = [_line(key, metric, {m: scores[m][metric] for m in METHODS}) for metric in POINT_METRICS]
        if self.interval is not None:
            q = self.forecasts[rows, steps][keep][:, None]  # (P, 1, Q)
            lines.append(_line(key, "coverage", {"model": metrics.coverage(y, q[..., 0], q[..., -1])}))
            lines.append(_line(key, "pinball", {"model": metrics.pinball(y, q, self.quantiles)}))
        return lines


def _mase(y: np.ndarray, yhat: np.ndarray, scale: np.ndarray) -> float:
    return metrics.mase(y, yhat, scale) if (scale > 0).any() else math.nan


def _line(key: dict, metric: str, values: dict[str, float]) -> dict:
    """One table row; undefined figures (a baseline with no error, a metric it lacks) are null."""
    row = {**key, "metric": metric, **{m: _finite(values.get(m)) for m in METHODS}}
    for base in ("naive", "seasonal_naive"):
        model, other = row["model"], row[base]
        ok = model is not None and other is not None and other > 0
        row[f"gain_{base}"] = 1.0 - model / other if ok else None
    return row


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _table(lines: list[dict], key: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    schema = {**(key or {}), **{c: pl.String if c == "metric" else pl.Float64 for c in COLUMNS}}
    return pl.DataFrame(lines, schema=schema)
