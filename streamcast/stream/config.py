"""The `stream` command's per-tick rules as one frozen config; the CLI flags mirror its fields."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from streamcast.errors import UsageError
from streamcast.features import season_length
from streamcast.forecaster import Forecaster
from streamcast.shards import Shard
from streamcast.stream.watch import WatchConfig


@dataclass(frozen=True)
class LearnConfig:
    """`--learn-rate`, `--learn-window`, `--learn-every` and the gradient clip."""

    lr: float = 1e-3
    window: int = 24
    every: int = 256
    clip: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.lr < math.inf:
            raise UsageError("--learn-rate must be a positive number")
        if self.window < 1 or self.every < 1:
            raise UsageError("--learn-window and --learn-every must be at least 1")


@dataclass(frozen=True)
class StreamConfig:
    """The `stream` command's per-tick rules; the CLI flags mirror these fields."""

    warmup: int | None = (
        None  # observations a new state warms up over [default: two seasons, at least the horizon]
    )
    max_gap: int = 24  # longest gap, in periods, that is filled; a longer one resets the series
    every: int = 1  # emit the forecast of every Nth observation of each series
    strict: bool = False  # the first bad line raises DataError instead of being skipped
    start: datetime | int | None = (
        None  # time of a new series' first value when lines carry no time [default: now]
    )
    learn: LearnConfig | None = None  # online learning; None: the weights stay as loaded
    watch: WatchConfig | None = None  # score each observation against its one-step forecast
    max_jump: int = 1000  # periods ahead beyond which a line must be confirmed by the series' next one
    max_series: int | None = None  # series held at most; beyond, the least recently seen are evicted
    idle_evict: int | None = (
        None  # evict series silent this long (microseconds, or steps) before the newest time
    )
    partition: Shard | None = None  # serve only this shard's series (streamcast.shards); skip the rest

    def __post_init__(self) -> None:
        if self.max_jump < 1:
            raise UsageError("--max-jump must be at least 1")
        if self.max_series is not None and self.max_series < 1:
            raise UsageError("--max-series must be at least 1")
        if self.idle_evict is not None and self.idle_evict <= 0:
            raise UsageError("--idle-evict must be a positive duration")
        if self.warmup is not None and self.warmup < 1:
            raise UsageError("--warmup-ticks must be at least 1")
        if self.max_gap < 0:
            raise UsageError("--max-gap must be >= 0")
        if self.every < 1:
            raise UsageError("--every must be at least 1")


def default_warmup(forecaster: Forecaster) -> int:
    """Two seasons, and at least one horizon: long enough for a state to forget its zero start."""
    return max(2 * season_length(forecaster.freq), forecaster.horizon)
