"""Rolling forecasts on a live stream: for each observation, advance its series' state and forecast.

Each series keeps its own hidden state, scale and last timestamp (`StreamState`), so a keyed stream
can be split over processes by series. Observations come in micro-batches; within a batch each
series' consecutive ticks run through the network in one call and all series in one batch, through
`stepping.run_series`, the same step training's validation and `forecast` use: the output is
identical to feeding the ticks one at a time.

Rules, per series, for each tick (documented in the README):
- a series the model never saw starts from a zero state and scales itself by a running mean of
  its own values, frozen after `warmup` ticks; its forecasts say `warming_up` until then;
- a timestamp at or before the series' last one is skipped (after a restart from a checkpoint,
  such lines are replays and are skipped silently);
- a gap of up to `max_gap` periods is filled by linear interpolation (the state advances over the
  filled steps, which get no output); a longer gap resets the series as if new.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from streamcast.features import calendar_features, freq_seconds, season_length
from streamcast.forecaster import Forecaster
from streamcast.model import State, concat_states, select_state
from streamcast.stepping import run_series
from streamcast.stream_input import Tick


@dataclass
class SeriesState:
    """Everything one series carries from tick to tick."""

    hidden: State
    loc: float
    scale: float
    last_time: datetime | int | None = None
    last_value: float = 0.0
    ticks: int = 0
    warming: bool = False
    # running statistics of a new series' values until its scale is frozen
    count: int = 0
    mean: float = 0.0
    abs_mean: float = 0.0
    m2: float = 0.0


@dataclass
class StreamState:
    """Every series' state, plus the line count, for checkpoints and restarts."""

    series: dict[str, SeriesState] = field(default_factory=dict)
    lines: int = 0
    replay_until: dict[str, datetime | int] = field(default_factory=dict)


@dataclass
class Counts:
    accepted: int = 0
    skipped: int = 0
    filled: int = 0
    reset: int = 0
    replayed: int = 0

    def summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.__dict__.items())


@dataclass
class TickForecast:
    """The forecast made at one observation, in the series' own units."""

    line: int
    series_id: str
    timestamp: datetime | int
    values: np.ndarray  # (H, Q)
    warming_up: bool


Report = Callable[[int, str], None]


class Streamer:
    """Turns micro-batches of Ticks into forecasts, carrying every series' state between them."""

    def __init__(
        self,
        forecaster: Forecaster,
        state: StreamState | None = None,
        *,
        warmup: int | None = None,
        max_gap: int = 24,
        report: Report | None = None,
    ):
        self.forecaster = forecaster
        self.state = state or StreamState()
        self.warmup = warmup if warmup is not None else 2 * season_length(forecaster.freq)
        self.max_gap = max_gap
        self.report = report or (lambda line, message: None)
        self.counts = Counts()
        seconds = freq_seconds(forecaster.freq)
        self.step_us = None if seconds is None else int(round(seconds * 1_000_000))
        self.monthly = forecaster.freq.endswith("mo")
        self.index_step = int(forecaster.freq[:-1]) if forecaster.freq.endswith("i") else None

    # -- per-series rules -------------------------------------------------------------------
    def _new_series(self, series_id: str) -> SeriesState:
        scaler = self.forecaster.scaler
        hidden = self.forecaster.net.init_state(1)
        if series_id in scaler.loc:
            return SeriesState(hidden, scaler.loc[series_id], scaler.scale[series_id])
        return SeriesState(hidden, 0.0, 1.0, warming=True)

    def _steps_between(self, before, after) -> float:
        if self.index_step is not None:
            return (after - before) / self.index_step
        if self.monthly:
            return (after.year - before.year) * 12 + after.month - before.month
        delta = after - before
        return (delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds) / self.step_us

    def _update_scale(self, s: SeriesState, value: float) -> None:
        """Welford's running mean and variance, so a new series can scale itself as it warms up."""
        s.count += 1
        delta = value - s.mean
        s.mean += delta / s.count
        s.m2 += delta * (value - s.mean)
        s.abs_mean += (abs(value) - s.abs_mean) / s.count
        spread = s.abs_mean if self.forecaster.spec.scaling == "mean" else (s.m2 / s.count) ** 0.5
        s.loc = s.mean
        s.scale = spread if spread > 1e-8 * max(1.0, abs(s.mean)) else (abs(s.mean) or 1.0)
        if s.count >= self.warmup:
            s.warming = False

    def _plan(self, ticks: list[Tick]) -> tuple[dict[str, list], list[Tick]]:
        """Apply the rules: per series, the steps to run (None marks a filled step without output),
        and the ticks left for another pass (after a reset of a series already in this batch)."""
        plan: dict[str, list] = {}
        for n, tick in enumerate(ticks):
            sid = tick.series_id
            s = self.state.series.get(sid)
            replay = self.state.replay_until.get(sid)
            if replay is not None and tick.timestamp is not None and tick.timestamp <= replay:
                self.counts.replayed += 1
                continue
            if s is None:
                s = self.state.series[sid] = self._new_series(sid)
            timestamp = tick.timestamp
            if timestamp is None:  # a bare value: the next step on the series' grid
                timestamp = self._next(s.last_time)
                if timestamp is None:
                    self.counts.skipped += 1
                    self.report(
                        tick.line, f"a bare value cannot start series {sid!r}: send time,value; line skipped"
                    )
                    continue
            steps = []
            if s.last_time is not None:
                k = self._steps_between(s.last_time, timestamp)
                if k <= 0:
                    self.counts.skipped += 1
                    self.report(
                        tick.line,
                        f"timestamp {timestamp} is not after the series' last one ({s.last_time}); line skipped",
                    )
                    continue
                if abs(k - round(k)) > 1e-6:
                    self.counts.skipped += 1
                    self.report(
                        tick.line,
                        f"timestamp {timestamp} is off the {self.forecaster.freq} grid of series {sid!r}; line skipped",
                    )
                    continue
                k = int(round(k))
                if k > self.max_gap + 1:
                    if sid in plan:  # run what came before the gap with the old state first
                        return plan, ticks[n:]
                    self.counts.reset += 1
                    self.report(
                        tick.line,
                        f"gap of {k - 1} steps in series {sid!r} is longer than --max-gap {self.max_gap}; its state was reset",
                    )
                    s = self.state.series[sid] = self._new_series(sid)
                elif k > 1:
                    self.counts.filled += k - 1
                    self.report(
                        tick.line, f"gap of {k - 1} steps in series {sid!r} filled by linear interpolation"
                    )
                    for j in range(1, k):
                        filled_value = s.last_value + (tick.value - s.last_value) * j / k
                        steps.append(
                            (None, self._advance_time(s.last_time, j), filled_value, tick.covariates)
                        )
            steps.append((tick, timestamp, tick.value, tick.covariates))
            for _, ts, value, _ in steps:
                if s.warming:
                    self._update_scale(s, value)
                s.last_time, s.last_value = ts, value
                s.ticks += 1
            plan.setdefault(sid, []).extend((t, ts, v, c, s.loc, s.scale, s.warming) for t, ts, v, c in steps)
            self.counts.accepted += 1
        return plan, []

    def _next(self, last):
        if last is None:
            return 0 if self.index_step is not None else None
        return self._advance_time(last, 1)

    def _advance_time(self, last, k: int):
        if self.index_step is not None:
            return last + k * self.index_step
        if self.monthly:
            return pl.Series([last]).dt.offset_by(f"{k}mo")[0]
        return last + timedelta(microseconds=k * self.step_us)

    # -- one micro-batch through the network ----------------------------------------------------
    def process(self, ticks: list[Tick]) -> list[TickForecast]:
        """Forecasts for the accepted ticks of one micro-batch, in input order."""
        results: list[TickForecast] = []
        while ticks:
            plan, ticks = self._plan(ticks)
            if plan:
                results.extend(self._run(plan))
        results.sort(key=lambda f: f.line)
        return results

    def _run(self, plan: dict[str, list]) -> list[TickForecast]:
        ids = list(plan)
        spec = self.forecaster.spec
        rows, offsets, positions = [], [0], []
        for sid in ids:
            steps = plan[sid]
            positions.append(
                np.array([i for i, step in enumerate(steps) if step[0] is not None], dtype=np.int64)
            )
            rows.extend(steps)
            offsets.append(len(rows))
        times = pl.Series([r[1] for r in rows])
        if times.dtype == pl.Object or times.dtype == pl.Null:
            raise ValueError("timestamps of mixed types in one batch")
        value = np.array([(r[2] - r[4]) / r[5] for r in rows], dtype=np.float64)
        parts = [value[:, None], calendar_features(times, spec.calendar)]
        if spec.covariates:
            cov = np.array([r[3] for r in rows], dtype=np.float64).reshape(len(rows), -1)
            parts.append((cov - np.array(spec.covariate_loc)) / np.array(spec.covariate_scale))
        inputs = np.concatenate(parts, axis=1).astype(np.float32)
        initial = concat_states([self.state.series[sid].hidden for sid in ids])
        outputs, final = run_series(
            self.forecaster.net, inputs, np.asarray(offsets), positions, initial=initial
        )
        for i, sid in enumerate(ids):
            self.state.series[sid].hidden = select_state(final, slice(i, i + 1))
        out_rows = [plan[sid][p] for sid, pos in zip(ids, positions, strict=True) for p in pos.tolist()]
        loc = np.array([r[4] for r in out_rows])
        scale = np.array([r[5] for r in out_rows])
        values = self.forecaster.point_and_quantiles(outputs, loc, scale)
        return [
            TickForecast(r[0].line, r[0].series_id, r[1], values[i], r[6]) for i, r in enumerate(out_rows)
        ]


def stream(
    forecaster: Forecaster, batches: Iterable[list[Tick]], state: StreamState | None = None, **options
) -> Iterator[TickForecast]:
    """For each observation: advance its series' state and yield the forecast made there.

    >>> for f in stream(load("model.streamcast"), [[Tick(1, "a", datetime(2024, 1, 1), 3.0)]]):  # doctest: +SKIP
    ...     print(f.series_id, f.values[:, 0])
    """
    streamer = Streamer(forecaster, state, **options)
    for batch in batches:
        yield from streamer.process(batch)


def hidden_tensors(state: StreamState) -> tuple[list[str], State]:
    """All series' hidden states stacked in one batch, for saving."""
    ids = list(state.series)
    return ids, concat_states([state.series[s].hidden for s in ids]) if ids else ()


def restore_hidden(ids: list[str], hidden: State) -> list[State]:
    return [tuple(t[i : i + 1].clone() for t in hidden) for i in range(len(ids))]
