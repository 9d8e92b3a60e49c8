"""The metadata of model and state files, typed: one schema each, checked on load with msgspec.

A header that does not fit (a wrong type, a value out of range, fields that contradict each other)
is refused with msgspec's own words, which name the field (`at $.feature_spec.freq`). Unknown keys
are allowed, so that newer fields and older files both load; the loaders keep using the dict.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

Count = Annotated[int, Meta(ge=0)]
Positive = Annotated[int, Meta(ge=1)]
Name = Annotated[str, Meta(min_length=1, max_length=1000)]
_FREQ = re.compile(r"[1-9][0-9]{0,17}(us|ms|mo|s|m|h|d|w|y|i)")
_MAX_SIZE = 1 << 16  # hidden size, inputs, horizon: far beyond any model this tool fits


class ModelConfigMeta(Struct, kw_only=True):
    input_size: Annotated[int, Meta(ge=1, le=_MAX_SIZE)]
    cell: Literal["rnn", "rnn-relu", "lstm", "gru", "segrnn"] = "lstm"
    hidden_size: Annotated[int, Meta(ge=1, le=_MAX_SIZE)] = 64
    num_layers: Annotated[int, Meta(ge=1, le=64)] = 1
    dropout: Annotated[float, Meta(ge=0.0, lt=1.0)] = 0.0
    horizon: Annotated[int, Meta(ge=1, le=100_000)] = 24
    quantiles: list[Annotated[float, Meta(gt=0.0, lt=1.0)]] = []
    conv: Annotated[int, Meta(ge=0, le=_MAX_SIZE)] = 0
    ar: Annotated[int, Meta(ge=0, le=_MAX_SIZE)] = 0
    season: Annotated[int, Meta(ge=1, le=_MAX_SIZE)] = 1
    known: Annotated[int, Meta(ge=0, le=_MAX_SIZE)] = 0
    known_at: Annotated[int, Meta(ge=0, le=_MAX_SIZE)] = 0
    head_scale: Literal["global", "window"] = "global"
    lag_inputs: Literal["none", "season", "smoothed"] = "none"
    ar_start: Literal["naive", "ridge"] = "naive"
    net_window: Annotated[int, Meta(ge=0, le=_MAX_SIZE)] = 0
    segment: Annotated[int, Meta(ge=0, le=_MAX_SIZE)] = 0


class FeatureSpecMeta(Struct, kw_only=True):
    freq: str
    calendar: list[str]
    covariates: list[Name]
    covariate_loc: list[float]
    covariate_scale: list[float]
    scaling: Literal["mean", "std", "spread"] = "mean"
    transform: Literal["none", "log"] = "none"
    floor: Annotated[float, Meta(ge=-1e300, le=1e300)] | None = None
    future_covariates: list[Name] = []
    future_loc: list[float] = []
    future_scale: list[float] = []
    holidays: Annotated[str, Meta(max_length=20)] = ""
    future_steps: Annotated[int, Meta(ge=0, le=100_000)] = 0
    static: list[Name] = []
    static_levels: list[list[Annotated[str, Meta(max_length=1000)]]] = []
    static_loc: list[float] = []
    static_scale: list[float] = []

    def __post_init__(self) -> None:
        if not _FREQ.fullmatch(self.freq):
            raise ValueError(f"frequency {self.freq!r} is not one streamcast writes (like 1h, 15m, 1mo)")
        if not len(self.covariates) == len(self.covariate_loc) == len(self.covariate_scale):
            raise ValueError("covariates, covariate_loc and covariate_scale differ in length")
        if not all(abs(x) < float("inf") for x in self.covariate_loc) or not all(
            0 < x < float("inf") for x in self.covariate_scale
        ):
            raise ValueError("covariate scales must be finite and positive")
        _check_calendar(self.calendar)
        if not len(self.future_covariates) == len(self.future_loc) == len(self.future_scale):
            raise ValueError("future_covariates, future_loc and future_scale differ in length")
        if not all(abs(x) < float("inf") for x in self.future_loc) or not all(
            0 < x < float("inf") for x in self.future_scale
        ):
            raise ValueError("future covariate scales must be finite and positive")
        if not len(self.static) == len(self.static_levels) == len(self.static_loc) == len(self.static_scale):
            raise ValueError("static, static_levels, static_loc and static_scale differ in length")
        if not all(0 < x < float("inf") for x in self.static_scale):
            raise ValueError("static scales must be finite and positive")
        if (self.future_covariates or self.holidays) and not self.future_steps:
            raise ValueError("future covariates or holidays need future_steps >= 1")

    @property
    def input_size(self) -> int:
        known = len(self.future_covariates) + (1 if self.holidays else 0)
        static = sum(len(levels) or 1 for levels in self.static_levels)
        return 1 + len(self.calendar) + len(self.covariates) + known * self.future_steps + static


class ColumnsMeta(Struct, kw_only=True):
    id: Name | None = None
    time: Name | None = None
    target: Name | None = None
    covariates: list[Name] = []
    future_covariates: list[Name] = []
    static: list[Name] = []


class TrainingMeta(Struct, kw_only=True, frozen=True):
    """What `info` reads from the training record; its other keys pass unchecked, and files from
    before a field existed load without it."""

    device: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    world_size: Positive | None = None


class IntervalsMeta(Struct, kw_only=True):
    """`fit --intervals`: the calibrated interval's levels and, per horizon step, each level's
    distance from the point forecast in units of the window's seasonal change."""

    levels: Annotated[list[Annotated[float, Meta(gt=0.0, lt=1.0)]], Meta(min_length=1, max_length=64)]
    offsets: Annotated[list[list[float]], Meta(max_length=100_000)]
    season: Positive
    typical_unit: Annotated[float, Meta(gt=0.0)] | None = None

    def __post_init__(self) -> None:
        if 0.5 in self.levels:
            raise ValueError("an interval level of 0.5 is the point forecast itself")
        if len(set(self.levels)) != len(self.levels):
            raise ValueError("each interval level may be given once")
        if any(len(row) != len(self.levels) for row in self.offsets):
            raise ValueError("every interval row needs one offset per level")
        if not all(abs(x) < float("inf") for row in self.offsets for x in row):
            raise ValueError("interval offsets must be finite")
        # A level on the wrong side of the point would be sorted past it, and served as the point.
        if any(
            (x > 0.0 if q < 0.5 else x < 0.0)
            for row in self.offsets
            for q, x in zip(self.levels, row, strict=True)
        ):
            raise ValueError("each interval level's offsets must lie on its own side of the point forecast")


class ModelMeta(Struct, kw_only=True):
    format: Literal["streamcast-model"]
    format_version: Count
    model_config: ModelConfigMeta
    feature_spec: FeatureSpecMeta
    columns: ColumnsMeta
    series_ids: list[Name]
    info: TrainingMeta = TrainingMeta()
    versions: dict[str, str] = {}
    tensors_sha256: str | None = None
    member_configs: Annotated[list[ModelConfigMeta], Meta(max_length=64)] | None = None
    ensemble_combine: Literal["mean", "median"] = "median"  # files from before it was kept: the median
    member_weights: Annotated[list[Annotated[float, Meta(ge=0, le=1)]], Meta(max_length=64)] | None = None
    static_values: dict[str, list[Any]] = {}
    naive_series: list[Name] = []
    naive_share: dict[Name, Annotated[float, Meta(gt=0, lt=1)]] = {}
    naive_last: list[Name] = []  # of the series in naive_series or naive_share
    floor_series: list[Name] = []
    intervals: IntervalsMeta | None = None

    def __post_init__(self) -> None:
        spec, config = self.feature_spec, self.model_config
        if self.intervals is not None:
            if config.quantiles or config.ar == 0:
                raise ValueError("an interval is calibrated only around a point model with an --ar window")
            if len(self.intervals.offsets) != config.horizon:
                raise ValueError("the interval needs one row of offsets per horizon step")
        inputs = spec.input_size
        for c in [config, *(self.member_configs or [])]:
            if c.input_size != inputs:
                raise ValueError(f"the network takes {c.input_size} inputs, but the features are {inputs}")
            if c.known and c.known_at + c.known * c.horizon > c.input_size:
                raise ValueError("the inputs known ahead lie beyond the network's inputs")
        if self.member_configs is not None:
            shared = {(c.horizon, tuple(c.quantiles)) for c in [config, *self.member_configs]}
            if len(shared) != 1:
                raise ValueError("ensemble members must share horizon and quantiles")
        if self.columns.covariates != spec.covariates:
            raise ValueError("the covariate columns differ from the features' covariates")
        if self.columns.future_covariates != spec.future_covariates:
            raise ValueError("the future covariate columns differ from the features' future covariates")
        _check_unique(self.series_ids)
        if not set(self.naive_last) <= {*self.naive_series, *self.naive_share}:
            raise ValueError("naive_last names a series that is not served naive")


class LearnConfigMeta(Struct, kw_only=True):
    lr: Annotated[float, Meta(gt=0.0, le=1e3)] = 1e-3
    window: Annotated[int, Meta(ge=1, le=1 << 20)] = 24
    every: Annotated[int, Meta(ge=1)] = 256
    clip: Annotated[float, Meta(ge=0.0)] = 1.0


class LearnerMeta(Struct, kw_only=True):
    config: LearnConfigMeta
    loss: Literal["mae", "mse", "huber", "pinball"]
    steps: Count
    param_groups: list[dict[str, Any]]


class WatchMeta(Struct, kw_only=True):
    """`stream --watch`: the per-series tensors watch.* hold pending forecasts and error spreads."""

    quantiles: Annotated[list[float], Meta(max_length=64)] = []


class StateMeta(Struct, kw_only=True):
    format: Literal["streamcast-stream-state"]
    format_version: Count
    model: str | None = None  # the fingerprint of the model: checked against it by the loader
    series_ids: list[Name]
    time_zone: str | None = None
    lines: Count = 0
    accepted: Count = 0
    learner: LearnerMeta | None = None
    watch: WatchMeta | None = None  # absent in files written without --watch, and before it existed

    def __post_init__(self) -> None:
        _check_unique(self.series_ids)
        if self.time_zone is not None:
            _check_time_zone(self.time_zone)


def validate(meta: dict, schema: type[Struct]) -> None:
    """Raise ValueError naming the first field of `meta` that does not fit `schema`."""
    try:
        msgspec.convert(meta, schema, strict=True)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None


def _check_unique(ids: list[str]) -> None:
    if len(set(ids)) != len(ids):
        raise ValueError("a series id is listed twice")


# The cycles `features.calendar_features` encodes; checked here by name, so that reading a model's
# header (`streamcast info`) needs no polars.
CALENDAR_CYCLES = ("time_of_day", "day_of_week", "day_of_year", "month_of_year")


def _check_calendar(names: list[str]) -> None:
    if any(name.rsplit("_", 1)[0] not in CALENDAR_CYCLES for name in names):
        raise ValueError(f"unknown calendar features {names!r}")


def _check_time_zone(zone: str) -> None:
    import polars as pl

    try:
        pl.Series([0]).cast(pl.Datetime("us", zone))
    except (pl.exceptions.PolarsError, ValueError):
        raise ValueError(f"unknown time zone {zone!r}") from None
