"""From a canonical series frame to the numbers the network sees, and back.

Pure computation, no I/O. Every input row is built the same way in training, forecasting and
streaming (train the model the way it is served), so all of them call `build_inputs`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from streamcast import known
from streamcast.errors import DataError

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
}
_DAY = 86400.0


def freq_seconds(freq: str) -> float | None:
    """The length of one step in seconds (a month counts as 30 days); None for a step index."""
    match = re.fullmatch(r"(\d+)(ns|us|ms|mo|s|m|h|d|w|y|i)", freq)
    if match is None:
        raise ValueError(f"unknown frequency {freq!r}")
    count, unit = int(match[1]), match[2]
    if unit == "i":
        return None
    if unit == "mo":
        return count * 30 * _DAY
    if unit == "y":
        return count * 365 * _DAY
    return count * _UNIT_SECONDS[unit]


def season_length(freq: str) -> int:
    """The main seasonal period in steps: a day of sub-daily data, a week of daily data, a year
    of weekly to half-yearly data (52 weeks, 12 months, 4 quarters, 2 halves); 1 for yearly data
    and a step index. The lags, seasonal naive, MASE and the series weights all read it: quarters
    once took 12 (a month's), so their seasonal naive repeated the quarters of three years ago.

    >>> season_length("3mo")
    4
    """
    seconds = freq_seconds(freq)
    if seconds is None:
        return 1
    if seconds < _DAY:
        return max(1, round(_DAY / seconds))
    if seconds < 7 * _DAY:
        return max(1, round(7 * _DAY / seconds))
    if seconds < 365 * _DAY:
        return max(1, round(365.25 * _DAY / seconds))
    return 1


def is_yearly(freq: str) -> bool:
    """One step a year or longer: short series that trend, with no season (`member_cells`)."""
    seconds = freq_seconds(freq)
    return seconds is not None and seconds >= 365 * _DAY


MAX_WINDOW = 336


def window_length(freq: str) -> int:
    """How many past values the forecast head sees by default (`--ar`): a week when it fits in
    `MAX_WINDOW` steps (168 hourly, 336 half-hourly), else `MAX_WINDOW` steps (3.5 days of
    15-minute data), four weeks for daily, a year for weekly, two years for monthly, three years
    for quarterly and half-yearly (12 and 6 steps), 8 years, 32 steps without a time axis.

    Chosen on validation parts only: on M4 Hourly a week cut the sMAPE by a tenth against a day, and
    on ETTh1 the validation loss by 7% (S) and 8% (M). On 15-minute ETTm1, with the least-squares
    highway start (`--ar-start`), 336 steps beat a day (96) for OT alone on both seeds tried
    (0.0514 / 0.0513 against 0.0538 / 0.0542) and for the seven columns on average (0.371 / 0.373
    against 0.379 / 0.371); from a seasonal naive start a week (672) had been 25% worse for them.
    Quarterly data had taken the monthly 24 steps (six years): 12 scored better or as well on
    four public quarterly sets (README, the `--ar` row), 148 US employment series by 9% in sMAPE.
    """
    seconds = freq_seconds(freq)
    if seconds is None:
        return 32
    if seconds < _DAY:
        week = 7 * _DAY / seconds
        return max(1, round(week)) if week <= MAX_WINDOW else MAX_WINDOW
    if seconds < 7 * _DAY:
        return max(1, round(28 * _DAY / seconds))
    if seconds < 28 * _DAY:
        return max(1, round(365.25 * _DAY / seconds))
    if seconds <= 31 * _DAY:
        return 24
    return max(1, round(3 * 365.25 * _DAY / seconds)) if seconds < 365 * _DAY else 8


def short_series_window(window: int, season: int, freq: str, median_length: float) -> int:
    """The default window of monthly to half-yearly data, cut to whole seasons within a quarter of
    the series' median length, never under one season. Their series are often a few years long,
    and a window of half a series leaves its network few full windows to learn from: US
    employment cut to its last 72 months scored sMAPE 1.818 with 12 months against 2.622 with 24,
    and to its last 40 quarters 1.802 with 8 quarters against 1.892 with 12 (README, the `--ar`
    row); the long series keep the frequency's window. Weekly and finer data, and yearly data
    (measured worse at 4 years than 8), keep theirs."""
    seconds = freq_seconds(freq)
    if seconds is None or seconds <= 7 * _DAY or season < 2:
        return window
    return max(season, min(window, int(median_length // 4) // season * season))


def default_horizon(freq: str) -> tuple[int, str]:
    """The horizon `fit` takes when none is given, and how to say it: one day of sub-daily data
    (at most 96 steps, an hour of finer data), then the M4 competition's horizons: two weeks of
    daily data, a quarter of weekly, 18 months, 8 quarters, 6 years; 24 steps without a time axis.

    >>> default_horizon("1d")
    (14, 'two weeks of daily data')
    """
    seconds = freq_seconds(freq)
    if seconds is None:
        return 24, "24 steps"
    if seconds < _DAY:
        span = (_DAY, "a day") if _DAY / seconds <= 96 else (3600, "an hour")
        return max(1, round(span[0] / seconds)), f"{span[1]} of {_step_words(freq)} data"
    bands = (
        (_DAY, 14, "two weeks of daily data"),
        (7 * _DAY, 13, "a quarter of weekly data"),
        (31 * _DAY, 18, "18 months of monthly data"),
        (92 * _DAY, 8, "two years of quarterly data"),
    )
    steps, words = next(
        ((n, w) for limit, n, w in bands if seconds <= limit), (6, "six years of yearly data")
    )
    # The words name the band's own step; another step in the band ("2w", "6mo") is counted.
    return steps, words if freq in _NAMED_STEPS else f"{steps} steps of {_step_words(freq)} data"


_NAMED_STEPS = ("1d", "1w", "1mo", "3mo", "1y")
_UNIT_WORDS = {
    "s": "second",
    "m": "minute",
    "h": "hour",
    "ms": "millisecond",
    "us": "microsecond",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}


def _step_words(freq: str) -> str:
    """ "hourly", "15-minute", "2-week": a step as a person says it."""
    if freq == "1h":
        return "hourly"
    count, unit = re.fullmatch(r"(\d+)(\D+)", freq).groups()
    return f"{count}-{_UNIT_WORDS.get(unit, unit)}"


def calendar_names(freq: str) -> tuple[str, ...]:
    """Which calendar cycles are worth encoding at this frequency (each as a sine/cosine pair)."""
    seconds = freq_seconds(freq)
    if seconds is None:
        return ()
    if seconds < _DAY:
        cycles = ("time_of_day", "day_of_week")
    elif seconds < 7 * _DAY:
        cycles = ("day_of_week", "day_of_year")
    elif seconds < 28 * _DAY:
        cycles = ("day_of_year",)
    else:
        cycles = ("month_of_year",)
    return tuple(f"{c}_{f}" for c in cycles for f in ("sin", "cos"))


def _cycle_position(ts: pl.Expr, cycle: str) -> pl.Expr:
    """Where in its cycle a timestamp lies, as a fraction in [0, 1) (local time for zoned data)."""
    if cycle == "time_of_day":
        seconds = ts.dt.hour() * 3600 + ts.dt.minute() * 60 + ts.dt.second()
        return seconds.cast(pl.Float64) / _DAY
    if cycle == "day_of_week":
        return (ts.dt.weekday() - 1).cast(pl.Float64) / 7.0
    if cycle == "day_of_year":
        return (ts.dt.ordinal_day() - 1).cast(pl.Float64) / 366.0
    if cycle == "month_of_year":
        return (ts.dt.month() - 1).cast(pl.Float64) / 12.0
    raise ValueError(cycle)


def calendar_features(timestamps: pl.Series, names: tuple[str, ...]) -> np.ndarray:
    """(N, len(names)) float32 sine/cosine encodings of the timestamps."""
    if not names:
        return np.zeros((len(timestamps), 0), dtype=np.float32)
    ts = pl.col("ts")
    exprs = []
    for name in names:
        cycle, fn = name.rsplit("_", 1)
        angle = _cycle_position(ts, cycle) * (2 * math.pi)
        exprs.append((angle.sin() if fn == "sin" else angle.cos()).alias(name))
    frame = pl.DataFrame({"ts": timestamps}).select(exprs)
    return frame.to_numpy().astype(np.float32, copy=False).reshape(len(timestamps), len(names))


@dataclass(frozen=True)
class FeatureSpec:
    """What the inputs are: recorded in the model so that serving rebuilds them exactly."""

    freq: str
    calendar: tuple[str, ...]
    covariates: tuple[str, ...]
    covariate_loc: tuple[float, ...]
    covariate_scale: tuple[float, ...]
    scaling: str = "mean"
    transform: str = "none"  # "none" or "log": what `fit` resolved `--transform` to
    # Inputs known in advance (see `known`): each adds its next `future_steps` values to every row.
    future_covariates: tuple[str, ...] = ()
    future_loc: tuple[float, ...] = ()
    future_scale: tuple[float, ...] = ()
    holidays: str = ""  # a country code: holiday flags of the next `future_steps` steps
    future_steps: int = 0
    # Per-series static features, last in the row: text one-hot over `static_levels`, numbers
    # scaled by `static_loc`/`static_scale` (a text column has no levels of () and loc 0, scale 1).
    static: tuple[str, ...] = ()
    static_levels: tuple[tuple[str, ...], ...] = ()
    static_loc: tuple[float, ...] = ()
    static_scale: tuple[float, ...] = ()
    # The least value a forecast takes: 0 where `--transform auto` kept the values untransformed
    # and every training value was >= 0 (counts, sales with zero days, solar power at night), as
    # it takes logs where every one was > 0; None: no bound.
    floor: float | None = None

    @property
    def static_width(self) -> int:
        return sum(len(levels) if levels else 1 for levels in self.static_levels)

    @property
    def known_inputs(self) -> tuple[str, ...]:
        """The inputs known in advance, in input order: the future covariates, then the holiday flags."""
        return (*self.future_covariates, *(("holiday",) if self.holidays else ()))

    @property
    def input_size(self) -> int:
        ahead = len(self.known_inputs) * self.future_steps
        return 1 + len(self.calendar) + len(self.covariates) + ahead + self.static_width

    @property
    def names(self) -> tuple[str, ...]:
        ahead = tuple(f"{c}+{h}" for c in self.known_inputs for h in range(1, self.future_steps + 1))
        static = tuple(
            f"{c}={level}" if levels else c
            for c, levels in zip(self.static, self.static_levels, strict=True)
            for level in (levels or ("",))
        )
        return ("value", *self.calendar, *self.covariates, *ahead, *static)


def fit_feature_spec(
    frame: pl.DataFrame,
    freq: str,
    covariates: tuple[str, ...],
    scaling: str,
    transform: str = "none",
    *,
    future_covariates: tuple[str, ...] = (),
    holidays: str = "",
    horizon: int = 0,
    static: pl.DataFrame | None = None,
) -> FeatureSpec:
    """Covariates are scaled globally: their units are shared across series, unlike the targets'.
    `static`: one row per series (series_id, static columns...)."""
    loc, scale = _global_scales(frame, covariates)
    spec = FeatureSpec(freq, calendar_names(freq), covariates, loc, scale, scaling, transform)
    if future_covariates or holidays:
        future_loc, future_scale = _global_scales(frame, future_covariates)
        spec = replace(
            spec,
            future_covariates=future_covariates,
            future_loc=future_loc,
            future_scale=future_scale,
            holidays=holidays,
            future_steps=horizon,
        )
    if static is not None and static.width > 1:
        spec = replace(spec, **_static_fields(static))
    return spec


def _static_fields(static: pl.DataFrame) -> dict:
    """Text (or boolean) columns become one-hot over their levels; numbers are scaled across series."""
    names, levels, loc, scale = [], [], [], []
    for col in static.columns[1:]:
        values = static[col]
        names.append(col)
        if values.dtype.is_numeric():
            numbers = values.cast(pl.Float64)
            loc.append(float(numbers.mean() or 0.0))
            scale.append(_safe_scale(float(numbers.std(ddof=0) or 0.0), loc[-1]))
            levels.append(())
        else:
            levels.append(tuple(sorted(values.drop_nulls().cast(pl.String).unique().to_list())))
            loc.append(0.0)
            scale.append(1.0)
    return {
        "static": tuple(names),
        "static_levels": tuple(levels),
        "static_loc": tuple(loc),
        "static_scale": tuple(scale),
    }


def static_rows(spec: FeatureSpec, values: list[tuple | list | None]) -> np.ndarray:
    """(S, static_width) float32: each series' static inputs from its raw values (None: a series
    without any, e.g. new in a stream). An unknown level or a missing value is all zeros."""
    out = np.zeros((len(values), spec.static_width), dtype=np.float32)
    for i, row in enumerate(values):
        if row is None:
            continue
        at = 0
        for x, levels, c_loc, c_scale in zip(
            row, spec.static_levels, spec.static_loc, spec.static_scale, strict=True
        ):
            if levels:
                if x is not None and str(x) in levels:
                    out[i, at + levels.index(str(x))] = 1.0
                at += len(levels)
            else:
                if x is not None:
                    out[i, at] = (float(x) - c_loc) / c_scale
                at += 1
    return out


def _global_scales(
    frame: pl.DataFrame, columns: tuple[str, ...]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    loc, scale = [], []
    for col in columns:
        values = frame[col].cast(pl.Float64)
        loc.append(float(values.mean() or 0.0))
        scale.append(_safe_scale(float(values.std(ddof=0) or 0.0), loc[-1]))
    return tuple(loc), tuple(scale)


TRANSFORMS = ("none", "log", "auto")


def choose_transform(values: np.ndarray, requested: str) -> str:
    """`--transform auto`: log when every value is positive, else none.

    Positive data (load, sales, traffic) mostly varies in proportion to its level: in logs a level
    change is a shift, a relative error is an absolute one, and forecasts stay positive. Data that
    crosses zero has no log, and its errors are usually absolute anyway.
    """
    if requested != "auto":
        return requested
    finite = values[np.isfinite(values)]
    return "log" if finite.size and bool((finite > 0).all()) else "none"


def choose_floor(values: np.ndarray, requested: str, transform: str) -> float | None:
    """`--transform auto` on data that never goes below zero but has zeros (so no logs): its
    forecasts and their intervals are bounded at 0. A negative count or a negative night-time
    solar output is never right, and the bound can only bring a forecast closer to such data."""
    if requested != "auto" or transform != "none":
        return None
    finite = values[np.isfinite(values)]
    return 0.0 if finite.size and bool((finite >= 0).all()) else None


def bounds_alone(spec: FeatureSpec, requested: str) -> bool:
    """Whether series are bounded at 0 one by one (`nonnegative_series`): `--transform auto` left
    the data in its units and the data as a whole is not bounded (`choose_floor`)."""
    return requested == "auto" and spec.transform == "none" and spec.floor is None


def nonnegative_series(
    values: np.ndarray, offsets: np.ndarray, series_ids: list[str], lengths: np.ndarray
) -> list[str]:
    """The series that never go below zero in their first `lengths` values, where other series
    do (so that `choose_floor` bounds none): a count, a rainfall or a night-time output among
    temperatures is bounded at 0 on its own. Used with `--transform auto` on data left in its units."""
    kept = []
    for sid, start, length in zip(series_ids, offsets[:-1].tolist(), lengths.tolist(), strict=True):
        part = values[start : start + length]
        finite = part[np.isfinite(part)]
        if finite.size and bool((finite >= 0).all()):
            kept.append(sid)
    return kept


def series_floors(floored: frozenset[str], series_ids: list[str]) -> np.ndarray | None:
    """(S,) each series' lower bound: 0 for the `floored` series, -inf for the others; None when
    none is floored."""
    if not floored:
        return None
    return np.fromiter((0.0 if s in floored else -np.inf for s in series_ids), np.float64, len(series_ids))


def to_model_units(values: np.ndarray, transform: str) -> np.ndarray:
    """Raw values -> the units the scaler and network work in (non-positive values become NaN
    under log; `check_positive` names them first where that is an error)."""
    if transform != "log":
        return values
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, np.log(np.where(values > 0, values, 1.0)), np.nan)


def from_model_units(values: np.ndarray, transform: str) -> np.ndarray:
    """The exact inverse of `to_model_units`; monotone, so quantiles stay quantiles."""
    if transform != "log":
        return values
    with np.errstate(over="ignore"):
        return np.exp(values)


def check_positive(values: np.ndarray, offsets: np.ndarray, series_ids: list[str], transform: str) -> None:
    """A log-transformed model cannot take a value <= 0: name the first series that has one."""
    if transform != "log":
        return
    bad = np.flatnonzero(values <= 0)
    if len(bad):
        i = int(np.searchsorted(offsets, bad[0], side="right")) - 1
        raise DataError(
            f"series {series_ids[i]!r} has a value <= 0 ({values[bad[0]]:g}), which has no log "
            "(the model uses --transform log); give positive values, or fit with --transform none"
        )


def spread_of(abs_mean: float, std: float, scaling: str, transform: str) -> float:
    """A series' scale before `_safe_scale`: under log, dividing by the level is already done by the
    log ("mean" scaling becomes 1), and "std" is the spread of the log values."""
    if scaling == "std":
        return std
    if scaling == "spread":
        # Below SPREAD_FLOOR of its level a series is constant but for rounding: `_safe_scale`
        # then takes the level, as "mean" would, not a spread that makes its next move huge.
        spread = SPREAD_STDS * std
        return spread if spread >= SPREAD_FLOOR * abs_mean else 0.0
    return 1.0 if transform == "log" else abs_mean


def _safe_scale(std: float, loc: float) -> float:
    """A constant series still needs a usable scale: fall back to its level, then to 1."""
    if std > 1e-8 * max(1.0, abs(loc)):
        return std
    return abs(loc) if abs(loc) > 1e-8 else 1.0


@dataclass(frozen=True)
class Scaler:
    """Per-series location and scale of the target, fitted on the training part only."""

    loc: dict[str, float]
    scale: dict[str, float]

    def arrays(self, series_ids: list[str], fallback: Scaler | None = None) -> tuple[np.ndarray, np.ndarray]:
        """loc and scale per series; series the scaler lacks come from `fallback`."""
        loc = np.empty(len(series_ids), dtype=np.float64)
        scale = np.empty(len(series_ids), dtype=np.float64)
        for i, sid in enumerate(series_ids):
            source = self if sid in self.loc or fallback is None else fallback
            loc[i], scale[i] = source.loc[sid], source.scale[sid]
        return loc, scale


SCALINGS = ("auto", "mean", "std", "spread")
SPREAD_STDS = 2.0  # "spread": this many standard deviations (1, 1.5, 2.5 and 3 did worse on ETT)
SPREAD_FLOOR = 1e-5  # of the mean absolute value: a spread below it is rounding (spread_of)


def resolve_scaling(scaling: str, transform: str) -> str:
    """`auto` as a model file records it: "mean" under log (where the log has already divided by
    the level, so the scale is 1), else "spread".

    In its own units a series' mean absolute value depends on where its zero lies: ETTh1's seven
    columns z-scored by a harness (or a temperature in kelvin) were scaled otherwise than as
    measured, and forecast 2-9% worse (validation part). Twice the standard deviation does not
    move with an offset, so data in its own units gets the same forecasts in any units
    (`choose_start` pools the least-squares highway in units that do not move either).
    """
    if scaling != "auto":
        return scaling
    return "mean" if transform == "log" else "spread"


def fit_scaler(
    values: np.ndarray,
    offsets: np.ndarray,
    series_ids: list[str],
    train_lengths: np.ndarray,
    scaling: str = "mean",
    transform: str = "none",
) -> Scaler:
    """Centre each series on its mean over its first `train_lengths[i]` values, and divide by its
    mean absolute value ("mean", as DeepAR), its standard deviation ("std") or twice that
    ("spread"; `resolve_scaling` says why).

    Dividing by the level makes an absolute error in scaled units a relative error in the series'
    own terms, which is what sMAPE and most users judge; "std" is the usual z-score. `values` are
    raw: under a log transform the statistics are those of the logs.
    """
    values = to_model_units(values, transform)
    loc, scale = {}, {}
    for i, sid in enumerate(series_ids):
        part = values[offsets[i] : offsets[i] + max(1, int(train_lengths[i]))]
        part = part[np.isfinite(part)]  # a scale from the finite values, never from a stray inf
        with np.errstate(over="ignore", invalid="ignore"):
            mean = float(part.mean()) if part.size else 0.0
            spread = (
                spread_of(float(np.abs(part).mean()), float(part.std()), scaling, transform)
                if part.size
                else 0.0
            )
        loc[sid] = mean
        if not (math.isfinite(mean) and math.isfinite(spread)):
            raise DataError(
                f"series {sid!r} has values too large to scale (up to {np.abs(part).max():.3g}); "
                "rescale the data (e.g. to other units) first"
            )
        scale[sid] = _safe_scale(float(spread), mean)
    return Scaler(loc, scale)


@dataclass
class SeriesInputs:
    """Every series' inputs as one contiguous array, cut into series by `offsets` (no copies)."""

    series_ids: list[str]
    offsets: np.ndarray  # (S + 1,) row where each series starts; the last is the total
    inputs: np.ndarray  # (N, input_size) float32, column 0 is the scaled value
    timestamps: pl.Series  # (N,)
    loc: np.ndarray  # (S,)
    scale: np.ndarray  # (S,)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def series(self, i: int) -> np.ndarray:
        return self.inputs[self.offsets[i] : self.offsets[i + 1]]


def series_offsets(frame: pl.DataFrame) -> tuple[list[str], np.ndarray]:
    """Series ids in frame order and where each starts (the frame is sorted by series)."""
    counts = frame.group_by("series_id", maintain_order=True).len()
    ids = counts["series_id"].to_list()
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(counts["len"].to_numpy(), out=offsets[1:])
    return ids, offsets


def build_inputs(
    frame: pl.DataFrame,
    spec: FeatureSpec,
    scaler: Scaler,
    fallback: Scaler | None = None,
    *,
    future: pl.DataFrame | None = None,
    static: dict[str, tuple] | None = None,
) -> SeriesInputs:
    """The network's input rows for a canonical frame, scaled per series.

    `future`: for a model with future covariates, rows (series_id, timestamp, covariates) that
    hold their values after each series' last row (`known.known_table`), read by the last rows'
    windows; without it those windows hold the last value. `static`: each series' static values
    (a series absent from it gets zeros).
    """
    ids, offsets = series_offsets(frame)
    loc, scale = scaler.arrays(ids, fallback)
    counts = np.diff(offsets)
    raw = frame["value"].to_numpy().astype(np.float64)
    check_positive(raw, offsets, ids, spec.transform)
    values = to_model_units(raw, spec.transform)
    scaled = (values - np.repeat(loc, counts)) / np.repeat(scale, counts)
    parts = [scaled[:, None], calendar_features(frame["timestamp"], spec.calendar)]
    for col, c_loc, c_scale in zip(spec.covariates, spec.covariate_loc, spec.covariate_scale, strict=True):
        cov = frame[col].cast(pl.Float64).fill_null(c_loc).to_numpy()
        parts.append(((cov - c_loc) / c_scale)[:, None])
    if spec.future_steps:
        parts.extend(_known_parts(frame, spec, future))
    if spec.static:
        per_series = static_rows(spec, [(static or {}).get(sid) for sid in ids])
        parts.append(np.repeat(per_series, counts, axis=0))
    inputs = np.concatenate(parts, axis=1).astype(np.float32)
    return SeriesInputs(ids, offsets, inputs, frame["timestamp"], loc, scale)


def _known_parts(frame: pl.DataFrame, spec: FeatureSpec, future: pl.DataFrame | None) -> list[np.ndarray]:
    """The windows of the inputs known in advance: (N, future_steps) per input, in input order."""
    parts = []
    if spec.future_covariates:
        cols = spec.future_covariates
        tail = known.continuation(frame, future, cols)
        parts.append(
            known.future_windows(frame, tail, cols, spec.future_loc, spec.future_scale, spec.future_steps)
        )
    if spec.holidays:
        parts.append(known.holiday_windows(frame["timestamp"], spec.freq, spec.holidays, spec.future_steps))
    return parts


@dataclass(frozen=True)
class TimeColumn:
    """int64 times (microseconds, or steps) and the polars type they stand for: what `input_rows`
    reads a micro-batch's times from. The calendar rows of known times come from a cache keyed by
    the integers, so one line at a time the polars Series is made only for a new time; making it
    for every line (from numpy, then cast) was a tenth of the engine's time for a line."""

    ints: np.ndarray
    dtype: pl.DataType

    def __len__(self) -> int:
        return len(self.ints)

    def series(self) -> pl.Series:
        s = pl.Series("timestamp", self.ints, dtype=pl.Int64)
        return s if self.dtype == pl.Int64 else s.cast(self.dtype)


def input_rows(
    scaled: np.ndarray,
    timestamps: pl.Series | TimeColumn,
    covariates: np.ndarray,
    spec: FeatureSpec,
    static: np.ndarray | None = None,
    step: int = 0,
) -> np.ndarray:
    """The rows `build_inputs` makes, from values already scaled (N,) and raw covariates (N, C):
    the past covariates, then each future covariate's next `future_steps` values; `static`: each
    row's static inputs (`static_rows`).

    For a caller whose scale changes row by row (a new series warming up in `stream`) or who cannot
    afford a frame and a group-by per tick. `step`: the grid's fixed step in the timestamps' units
    (0 for none), with which the calendar rows of the next times are made ahead.
    """
    parts = [scaled[:, None], _calendar_by_distinct_time(timestamps, spec.calendar, step)]
    if spec.covariates or spec.future_covariates:
        loc = np.concatenate([spec.covariate_loc, np.repeat(spec.future_loc, spec.future_steps)])
        scale = np.concatenate([spec.covariate_scale, np.repeat(spec.future_scale, spec.future_steps)])
        parts.append((covariates - loc) / scale)
    if spec.holidays:
        if isinstance(timestamps, TimeColumn):
            timestamps = timestamps.series()
        parts.append(known.holiday_windows(timestamps, spec.freq, spec.holidays, spec.future_steps))
    if spec.static:
        parts.append(static)  # (N, static_width) from `static_rows`
    return np.concatenate(parts, axis=1).astype(np.float32)


def _calendar_by_distinct_time(
    timestamps: pl.Series | TimeColumn, names: tuple[str, ...], step: int = 0
) -> np.ndarray:
    """`calendar_features`, computed once per distinct time: a stream's micro-batch holds many
    series at a few times. The rows of recent times are kept (`_RECENT_CALENDAR`): one line at a
    time, a hundred series reporting the same hour paid for a polars frame each, most of a line's
    feature work; a row comes from the same function either way, so the inputs are the same."""
    if isinstance(timestamps, TimeColumn):
        stamps, dtype, series = timestamps.ints, timestamps.dtype, timestamps.series
    else:
        # cast, not to_physical: the same integers, without an expression run per call (60 us against 2)
        stamps, dtype, series = timestamps.cast(pl.Int64).to_numpy(), timestamps.dtype, lambda: timestamps
    if not names or len(stamps) == 0:
        return calendar_features(series(), names)
    if len(stamps) == 1:  # a line at a time: np.unique's sort and three outputs cost 20 us
        times, first, inverse = stamps, np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    else:
        times, first, inverse = np.unique(stamps, return_index=True, return_inverse=True)
    if len(times) > _RECENT_TIMES:  # a history, not a micro-batch: nothing to win
        return calendar_features(series().gather(first), names)[inverse.reshape(-1)]
    recent = _RECENT_CALENDAR.setdefault((str(dtype), names), {})
    missing = [i for i, t in enumerate(times.tolist()) if t not in recent]
    if len(missing) == len(times):
        rows = calendar_features(series().gather(first), names)
    else:
        rows = np.empty((len(times), len(names)), dtype=np.float32)
        for i, t in enumerate(times.tolist()):
            if t in recent:
                rows[i] = recent[t]
        if missing:
            rows[missing] = calendar_features(series().gather(first[missing]), names)
    if len(recent) + len(times) * (TIMES_AHEAD + 1) > _RECENT_TIMES:
        recent.clear()
    recent.update(zip(times.tolist(), rows, strict=True))
    if step and 0 < len(missing) <= FEW_NEW_TIMES:
        # A new time of a live stream is one line in a hundred, and it paid for a polars frame:
        # the rows of the next times are made with it, by the same function.
        later = (times[missing][:, None] + step * np.arange(1, TIMES_AHEAD + 1)).reshape(-1)
        later = np.setdiff1d(later, times)
        ahead = pl.Series(later).cast(dtype)
        recent.update(zip(later.tolist(), calendar_features(ahead, names), strict=True))
    return rows[inverse.reshape(-1)]


_RECENT_TIMES = 4096
# A live stream's new time is one line in a hundred: the next TIMES_AHEAD times' calendar rows (and
# `stream`'s time texts) are made with it, where a batch brings at most FEW_NEW_TIMES new times.
TIMES_AHEAD = 24
FEW_NEW_TIMES = 4
_RECENT_CALENDAR: dict[tuple[str, tuple[str, ...]], dict[int, np.ndarray]] = {}
