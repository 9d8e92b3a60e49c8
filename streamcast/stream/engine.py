"""Rolling forecasts on a live stream: for each observation, advance its series' state, then forecast.

Each series keeps its own hidden state, scale and clock in a `StreamState`, so a keyed stream can be
split over processes by series. Observations come in micro-batches; in a batch each series' ticks
run through the network in one call and all series together, through `stepping.run_series` (the
step training's validation and `forecast` use) with input rows laid out as `features.build_inputs`
lays them out for training (`features.input_rows`): the output equals feeding the ticks one at a time, up to float rounding. Forecasting never moves a state.

Rules, per series and observation, in this order:
- replay: after a restart from a state file, a line at or before the series' checkpointed time is
  a replay of what the state already holds: skipped silently and counted as `replayed`;
- a timestamp that repeats or goes back, or lies off the model's time grid: the line is skipped;
- a gap of k missing periods, k <= `max_gap`: the missing steps are filled by linear interpolation
  between the last value and this one (covariates hold their last value); the state advances over
  them and they get no output;
- a longer gap: the series' state is reset to zero (it keeps its scale) and warms up again;
- a jump of more than `max_jump` periods ahead is implausible (a mistyped year, a clock gone wrong):
  the line is skipped and its series keeps its clock, unless the series' next line follows the jump
  (on the grid, within `max_gap` periods of it): then the series resets there, as after a long gap;
- a series never seen: zero state; the model's scale if the model knows the series, otherwise a
  running mean and spread (Welford) of its own first `warmup` values, then frozen;
- `warming_up` is true for the first `warmup` observations after a zero state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import torch

from streamcast.errors import StrictStop, UsageError
from streamcast.features import (
    _safe_scale,
    freq_seconds,
    input_rows,
    season_length,
    spread_of,
    to_model_units,
)
from streamcast.forecaster import Forecaster
from streamcast.model import select_state
from streamcast.online import LearnConfig, OnlineLearner
from streamcast.reading import SeriesFrame, periods_after
from streamcast.shards import Shard
from streamcast.stepping import run_series
from streamcast.stream.input import Event, Observations
from streamcast.stream.state import StreamState
from streamcast.threads import torch_threads

_EPOCH = datetime(1970, 1, 1)


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


@dataclass
class Forecast:
    """The forecast made at one observation, in the series' own units."""

    series_id: str
    timestamp: datetime | int
    forecast: list[float]
    timestamps: list[datetime | int]
    quantiles: dict[float, list[float]]
    warming_up: bool


@dataclass
class StreamBatch:
    """The forecasts of one micro-batch, in input order, and what happened to its bad lines."""

    series_ids: list[str]
    times: np.ndarray  # (R,) int64: microseconds since the epoch, or a step index
    lines: np.ndarray  # (R,) int64 input line numbers
    values: np.ndarray  # (R, H, Q) float64 in the series' own units
    warming_up: np.ndarray  # (R,) bool
    grid: Grid
    quantiles: tuple[float, ...]
    point_index: int
    time_zone: str | None
    events: list[Event] = field(default_factory=list)
    replayed: int = 0
    accepted: int = 0  # observations taken in, emitted or not (--every)
    evicted: int = 0  # series dropped from memory after this batch (--max-series, --idle-evict)
    other_partition: int = 0  # lines of series another partition serves (--partition), skipped

    def __len__(self) -> int:
        return len(self.series_ids)

    def __iter__(self) -> Iterator[Forecast]:
        horizon = self.values.shape[1]
        ahead = self.grid.shift(np.repeat(self.times, horizon), np.tile(np.arange(1, horizon + 1), len(self)))
        ahead = self.grid.to_python(ahead, self.time_zone)
        stamps = self.grid.to_python(self.times, self.time_zone)
        for r, sid in enumerate(self.series_ids):
            yield Forecast(
                sid,
                stamps[r],
                self.values[r, :, self.point_index].tolist(),
                ahead[r * horizon : (r + 1) * horizon],
                {q: self.values[r, :, i].tolist() for i, q in enumerate(self.quantiles)},
                bool(self.warming_up[r]),
            )


class Grid:
    """The model's frequency as arithmetic on int64 times (microseconds since the epoch, or steps)."""

    def __init__(self, freq: str) -> None:
        digits = len(freq) - len(freq.lstrip("0123456789"))
        count, unit = int(freq[:digits]), freq[digits:]
        self.freq = freq
        self.indexed = unit == "i"
        self.months = count * (12 if unit == "y" else 1) if unit in ("mo", "y") else 0
        seconds = freq_seconds(freq)
        self.step = count if self.indexed else 0 if self.months else int(round(seconds * 1_000_000))

    def steps(self, last: int, t: int) -> int | None:
        """Periods from `last` to `t` (<= 0: not after it); None when `t` is off the grid."""
        if t <= last:
            return 0 if t == last else -1
        if self.months:
            a, b = _datetime(last), _datetime(t)
            months = (b.year - a.year) * 12 + b.month - a.month
            return months // self.months if months % self.months == 0 and months > 0 else None
        k, rest = divmod(t - last, self.step)
        return None if rest else k

    def shift(self, t, k):
        """`t` moved `k` periods on (both int64 arrays or ints); months keep the calendar."""
        if not self.months:
            return (
                t + np.asarray(k, dtype=np.int64) * self.step
                if isinstance(t, np.ndarray)
                else t + k * self.step
            )
        base = pl.Series(np.atleast_1d(np.asarray(t, dtype=np.int64))).cast(pl.Datetime("us"))
        periods = pl.Series(np.atleast_1d(np.asarray(k, dtype=np.int64)))
        moved = pl.DataFrame({"t": base, "k": periods}).select(
            periods_after(pl.col("t"), pl.col("k"), self.freq)
        )
        out = moved.to_series().dt.epoch("us").to_numpy()
        return out if isinstance(t, np.ndarray) else int(out[0])

    def floor(self, t: int) -> int:
        if self.months:
            d = _datetime(t)
            return (datetime(d.year, d.month, 1) - _EPOCH) // timedelta(microseconds=1)
        return t - t % self.step

    def series(self, times: np.ndarray, time_zone: str | None) -> pl.Series:
        """int64 times as the polars column that features and formatting take."""
        s = pl.Series("timestamp", times, dtype=pl.Int64)
        return s if self.indexed else s.cast(pl.Datetime("us", time_zone))

    def to_python(self, times: np.ndarray, time_zone: str | None) -> list:
        return self.series(times, time_zone).to_list()

    def text(self, times: np.ndarray, time_zone: str | None) -> list[str]:
        """ISO 8601 to the second (with the UTC offset for zoned times), or the step number."""
        s = self.series(times, time_zone)
        if self.indexed:
            return s.cast(pl.String).to_list()
        return s.dt.to_string("%Y-%m-%dT%H:%M:%S%:z" if time_zone else "%Y-%m-%dT%H:%M:%S").to_list()


def _datetime(t: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(t))


def stream(
    forecaster: Forecaster,
    batches: Iterable[Observations],
    state: StreamState | None = None,
    config: StreamConfig = StreamConfig(),
    *,
    threads: int | None = None,
) -> Iterator[StreamBatch]:
    """For each micro-batch of observations: advance every series over its ticks, yield the forecasts.

    `threads`: torch threads while a batch is computed (default: `streamcast.threads.default_threads()`,
    one); between batches the caller's own count holds.

    >>> state = StreamState(model)  # doctest: +SKIP
    >>> for batch in stream(model, [Observations.from_records(rows, model)], state):
    ...     for f in batch:
    ...         print(f.series_id, f.timestamp, f.forecast[:3], f.warming_up)
    """
    engine = _Engine(forecaster, state if state is not None else StreamState(forecaster), config)
    for observations in batches:
        with torch_threads(threads):
            batch, error = engine.process(observations)
        batch.evicted = engine.evict()
        yield batch
        if error is not None:
            raise StrictStop(error.line, error.reason)


class _Columns:
    """An Observations batch as plain lists, read once: the rules index them element by element."""

    def __init__(self, obs: Observations, with_covariates: bool) -> None:
        self.series_ids = obs.series_ids
        self.times = obs.times.tolist() if obs.times is not None else None
        self.values = obs.values.tolist()
        self.covariates = obs.covariates.tolist() if with_covariates else None
        self.lines = obs.lines.tolist()


@dataclass
class _Plan:
    """One segment of a micro-batch after the rules: the rows to run (observed and filled)."""

    run_series: list[int] = field(default_factory=list)  # series index of each run
    run_fresh: list[bool] = field(default_factory=list)  # the run starts from a zero state
    row_run: list[int] = field(default_factory=list)
    row_time: list[int] = field(default_factory=list)
    row_value: list[float] = field(default_factory=list)
    row_loc: list[float] = field(default_factory=list)
    row_scale: list[float] = field(default_factory=list)
    row_obs: list[int] = field(default_factory=list)  # index in the Observations; -1: a filled step
    row_emit: list[bool] = field(default_factory=list)
    row_warming: list[bool] = field(default_factory=list)
    row_cov: list[list[float]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    replayed: int = 0
    accepted: int = 0  # observations taken (filled steps are not observations)
    next: int = 0
    learn_due: bool = False
    error: Event | None = None


class _Engine:
    """The per-tick rules (a sequential pass in plain Python) and the batched network step."""

    def __init__(self, forecaster: Forecaster, state: StreamState, config: StreamConfig) -> None:
        state.check_model(forecaster)
        self.forecaster = forecaster
        self.state = state
        self.config = config
        self.grid = Grid(forecaster.freq)
        self.warmup = config.warmup if config.warmup is not None else default_warmup(forecaster)
        self.scaling = forecaster.spec.scaling
        self.transform = forecaster.spec.transform
        self.cov_loc = list(forecaster.spec.covariate_loc)
        self._held: dict[str, bool] = {}  # series id -> in this partition (--partition)
        if config.learn is not None and state.learner is None:
            loss = forecaster.info.get("fit_config", {}).get("loss", "mae")
            state.learner = OnlineLearner(forecaster.net, loss, config.learn)
        elif config.learn is not None:
            state.learner.config = config.learn

    @property
    def net(self):
        return self.state.learner.serving if self.state.learner is not None else self.forecaster.net

    def _first_time(self) -> int:
        """Where a series whose lines carry no time starts: --start, else now on the model's grid."""
        start = self.config.start
        if self.grid.indexed:
            return int(start or 0)
        if start is None:
            now = (datetime.now(timezone.utc) - _EPOCH.replace(tzinfo=timezone.utc)) // timedelta(
                microseconds=1
            )
            return self.grid.floor(now)
        if isinstance(start, datetime):
            base = _EPOCH.replace(tzinfo=timezone.utc) if start.tzinfo else _EPOCH
            return (start - base) // timedelta(microseconds=1)
        return int(start)

    def process(self, obs: Observations) -> tuple[StreamBatch, Event | None]:
        """Forecasts for one micro-batch, in input order, and the error that stops a --strict run."""
        state = self.state
        if state.time_zone is None and obs.time_zone is not None:
            state.time_zone = obs.time_zone
        other = 0
        if self.config.partition is not None:
            obs, other = self._own_partition(obs)
        events = list(obs.events)
        # --strict stops at the first bad line, a parse problem included; an unknown column is
        # documented as ignored, not bad.
        first_bad = None
        if self.config.strict:
            first_bad = min((e for e in events if e.kind != "ignored"), key=lambda e: e.line, default=None)
        stop_line = first_bad.line if first_bad is not None else None
        pieces, replayed, accepted, error, begin = [], 0, 0, None, 0
        columns = None
        steady = self._steady_plan(obs) if stop_line is None else None
        while begin < len(obs):
            if steady is not None:
                plan, steady = steady, None
            else:
                columns = columns or _Columns(obs, bool(self.cov_loc))
                plan = self._plan(columns, begin, stop_line)
            pieces.append(self._run(plan))
            events += plan.events
            replayed += plan.replayed
            accepted += plan.accepted
            begin = plan.next
            if plan.learn_due:
                state.learner.update()
            if plan.error is not None:
                error = plan.error
                break
        if self.config.strict and error is None and stop_line is not None:
            error = first_bad
        if self.config.strict:
            events = [e for e in events if error is None or e.line < error.line]
        events.sort(key=lambda e: e.line)
        batch = self._batch(pieces, obs, events, replayed, accepted)
        batch.other_partition = other
        return batch, error

    def _own_partition(self, obs: Observations) -> tuple[Observations, int]:
        """The observations of this partition's series, and how many lines belong to others."""
        held = self._held
        shard = self.config.partition
        keep = np.fromiter(
            (held[sid] if sid in held else held.setdefault(sid, shard.holds(sid)) for sid in obs.series_ids),
            dtype=bool,
            count=len(obs),
        )
        if len(held) > 1 << 20:  # bounded memory, whatever ids pass by
            held.clear()
        return obs.take(keep), int(len(obs) - keep.sum())

    def _plan(self, obs: _Columns, begin: int, stop_line: int | None) -> _Plan:
        """Apply the rules line by line; stop at a learning boundary or a --strict error."""
        st, grid, plan = self.state, self.grid, _Plan()
        run_of: dict[int, int] = {}
        times, values, covs, lines = obs.times, obs.values, obs.covariates, obs.lines
        strict, max_gap, warmup, every, max_jump = (
            self.config.strict,
            self.config.max_gap,
            self.warmup,
            self.config.every,
            self.config.max_jump,
        )
        learn_every = self.config.learn.every if self.config.learn is not None else 0
        i = begin
        for i in range(begin, len(values)):
            line = lines[i]
            if stop_line is not None and line >= stop_line:
                plan.next = len(values)
                return plan
            s = st.series_index(obs.series_ids[i])
            last = st.last_time[s]
            if times is not None:
                t = times[i]
            else:
                t = self._first_time() if last is None else grid.shift(last, 1)
            fresh = last is None
            event = None
            if self.transform == "log" and values[i] <= 0:
                event = Event(
                    line,
                    "skipped",
                    f"series {obs.series_ids[i]!r}: value is not positive, and this model forecasts in logs (fitted with --transform log)",
                )
                if strict:
                    plan.error = event
                    plan.next = len(values)
                    return plan
                plan.events.append(event)
                continue
            jumped = st.jumps.pop(s, None)
            if last is not None:
                k = grid.steps(last, t)
                if k is not None and k <= 0 and st.resumed[s]:
                    plan.replayed += 1
                    continue
                follows = grid.steps(jumped, t) if jumped is not None else None
                if follows is not None and 1 <= follows <= max_gap + 1:
                    event = Event(
                        line,
                        "reset",
                        f"series {obs.series_ids[i]!r}: timestamp {self._show(t)} follows the jump to {self._show(jumped)}; state reset",
                    )
                elif k is not None and k > max_jump:
                    st.jumps[s] = t
                    event = Event(
                        line,
                        "skipped",
                        f"series {obs.series_ids[i]!r}: timestamp {self._show(t)} jumps {k} periods after {self._show(last)}, more than --max-jump {max_jump}; taken only if the next line follows it",
                    )
                elif k is None:
                    event = Event(
                        line,
                        "skipped",
                        f"series {obs.series_ids[i]!r}: timestamp {self._show(t)} is off the {grid.freq} grid after {self._show(last)}",
                    )
                elif k == 0:
                    event = Event(
                        line,
                        "skipped",
                        f"series {obs.series_ids[i]!r}: timestamp {self._show(t)} repeats the last one",
                    )
                elif k < 0:
                    event = Event(
                        line,
                        "skipped",
                        f"series {obs.series_ids[i]!r}: timestamp {self._show(t)} goes back before {self._show(last)}",
                    )
                elif k - 1 > max_gap:
                    event = Event(
                        line,
                        "reset",
                        f"series {obs.series_ids[i]!r}: gap of {k - 1} periods after {self._show(last)} is longer than --max-gap {max_gap}; state reset",
                    )
                elif k > 1:
                    event = Event(
                        line,
                        "filled",
                        f"series {obs.series_ids[i]!r}: gap of {k - 1} periods after {self._show(last)}; filled by linear interpolation",
                    )
                if event is not None:
                    if strict:
                        plan.error = event
                        plan.next = len(values)
                        return plan
                    plan.events.append(event)
                    if event.kind == "skipped":
                        continue
            st.resumed[s] = False
            if event is not None and event.kind == "reset":
                st.since_reset[s] = 0  # the run below starts from zero; its end becomes the state
                fresh = True
            r = run_of.get(s)
            if r is None or fresh:
                r = run_of[s] = len(plan.run_series)
                plan.run_series.append(s)
                plan.run_fresh.append(fresh)
            row_cov = held = None
            if covs is not None:
                row_cov, held = covs[i], st.last_covariates[s]
                if any(x != x for x in row_cov):  # NaN: missing, reported by the parser
                    fallback = held if held is not None else self.cov_loc
                    row_cov = [f if x != x else x for x, f in zip(row_cov, fallback, strict=True)]
            v = values[i]
            if event is not None and event.kind == "filled":
                self._fill(plan, r, s, last, k, v, held if held is not None else row_cov)
            if not st.frozen[s]:
                self._update_scale(s, v)
            st.since_reset[s] += 1
            st.ticks[s] += 1
            st.last_time[s], st.last_value[s] = t, v
            st.last_seen[s] = st.accepted
            if st.newest is None or t > st.newest:
                st.newest = t
            if covs is not None:
                st.last_covariates[s] = row_cov
            plan.row_run.append(r)
            plan.row_time.append(t)
            plan.row_value.append(v)
            plan.row_loc.append(st.loc[s])
            plan.row_scale.append(st.scale[s])
            plan.row_obs.append(i)
            plan.row_emit.append(st.ticks[s] % every == 0)
            plan.row_warming.append(st.since_reset[s] <= warmup)
            if covs is not None:
                plan.row_cov.append(row_cov)
            st.accepted += 1
            plan.accepted += 1
            if learn_every and st.accepted % learn_every == 0:
                plan.learn_due = True
                plan.next = i + 1
                return plan
        plan.next = len(values)
        return plan

    def _steady_plan(self, obs: Observations) -> _Plan | None:
        """The plan of a batch in which every line continues a known series by exactly one period
        (the steady state of a live feed), in whole-array operations; None when any line needs the
        rules one by one (a new, resumed or warming series, a gap, a jump, learning, covariates)."""
        st, grid, n = self.state, self.grid, len(obs)
        if n == 0 or self.config.learn is not None or obs.times is None or grid.months or self.cov_loc:
            return None
        index = st.index
        series = np.fromiter((index.get(sid, -1) for sid in obs.series_ids), dtype=np.int64, count=n)
        if series.min() < 0 or (self.transform == "log" and obs.values.min() <= 0):
            return None
        held, run, counts = np.unique(series, return_inverse=True, return_counts=True)
        held_list = held.tolist()
        last = [st.last_time[u] for u in held_list]
        if None in last or any(st.resumed[u] or not st.frozen[u] or u in st.jumps for u in held_list):
            return None
        order = np.argsort(run, kind="stable")  # rows grouped by series, in input order within each
        starts = np.zeros(len(held) + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        times = obs.times[order]
        previous = np.empty_like(times)
        previous[1:] = times[:-1]
        previous[starts[:-1]] = last
        if not bool((times - previous == grid.step).all()):
            return None
        position = np.empty(n, dtype=np.int64)  # 1 for a series' first line in the batch, 2, ...
        position[order] = np.arange(1, n + 1) - np.repeat(starts[:-1], counts)
        ticks = np.array([st.ticks[u] for u in held_list], dtype=np.int64)[run] + position
        since = np.array([st.since_reset[u] for u in held_list], dtype=np.int64)[run] + position
        plan = _Plan(run_series=held_list, run_fresh=[False] * len(held_list))
        plan.row_run, plan.row_time, plan.row_value = run, obs.times, obs.values
        plan.row_loc = np.array([st.loc[u] for u in held_list])[run]
        plan.row_scale = np.array([st.scale[u] for u in held_list])[run]
        plan.row_obs = np.arange(n)
        plan.row_emit = ticks % self.config.every == 0
        plan.row_warming = since <= self.warmup
        plan.accepted = plan.next = n
        ends = order[starts[1:] - 1].tolist()  # each series' last line
        for u, end, count in zip(held_list, ends, counts.tolist(), strict=True):
            st.ticks[u] += count
            st.since_reset[u] += count
            st.last_time[u], st.last_value[u] = int(obs.times[end]), float(obs.values[end])
            st.last_seen[u] = st.accepted + end
        newest = int(obs.times.max())
        st.newest = newest if st.newest is None else max(st.newest, newest)
        st.accepted += n
        return plan

    def evict(self) -> int:
        """Drop series silent for longer than --idle-evict, then the least recently seen beyond
        --max-series; returns how many. They start afresh if they come back (or from --warmup)."""
        st, config = self.state, self.config
        gone: set[int] = set()
        if config.idle_evict is not None and st.newest is not None:
            cutoff = st.newest - config.idle_evict
            gone.update(s for s, t in enumerate(st.last_time) if t is not None and t < cutoff)
        if config.max_series is not None and len(st) - len(gone) > config.max_series:
            kept = [s for s in range(len(st)) if s not in gone]
            kept.sort(key=st.last_seen.__getitem__)
            gone.update(kept[: len(kept) - config.max_series])
        if gone:
            st.evict(sorted(gone))
        return len(gone)

    def _fill(self, plan: _Plan, r: int, s: int, last: int, k: int, v: float, cov) -> None:
        """The k - 1 missing steps between the last value and `v`, on a straight line."""
        st = self.state
        before = st.last_value[s]
        stamps = self.grid.shift(np.full(k - 1, last, dtype=np.int64), np.arange(1, k)).tolist()
        for j in range(1, k):
            plan.row_run.append(r)
            plan.row_time.append(stamps[j - 1])
            plan.row_value.append(before + (v - before) * j / k)
            plan.row_loc.append(st.loc[s])
            plan.row_scale.append(st.scale[s])
            plan.row_obs.append(-1)
            plan.row_emit.append(False)
            plan.row_warming.append(False)
            if cov is not None:
                plan.row_cov.append(cov)

    def _update_scale(self, s: int, v: float) -> None:
        """Welford's running mean and variance: a new series scales itself while it warms up."""
        st = self.state
        if self.transform == "log":
            v = math.log(v)  # the scale is the logs' (raw values stay raw: gaps fill as in reading)
        n, mean, m2, abs_sum = st.welford[s]
        n += 1
        delta = v - mean
        mean += delta / n
        m2 += delta * (v - mean)
        abs_sum += abs(v)
        st.welford[s] = [n, mean, m2, abs_sum]
        spread = spread_of(abs_sum / n, math.sqrt(m2 / n), self.scaling, self.transform)
        st.loc[s], st.scale[s] = mean, _safe_scale(spread, mean)
        if n >= self.warmup:
            st.frozen[s] = True

    def _show(self, t: int) -> str:
        return self.grid.text(np.array([t], dtype=np.int64), self.state.time_zone)[0]

    def _run(self, plan: _Plan) -> dict:
        """Run the plan's rows through the network: every run in one batched call."""
        if len(plan.row_run) == 0:
            return {}
        st, f = self.state, self.forecaster
        run = np.asarray(plan.row_run, dtype=np.int64)
        order = np.argsort(run, kind="stable")  # rows grouped by run, in time order within each
        n_runs = len(plan.run_series)
        counts = np.bincount(run, minlength=n_runs)
        offsets = np.zeros(n_runs + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        loc = np.asarray(plan.row_loc)[order]
        scale = np.asarray(plan.row_scale)[order]
        scaled = (to_model_units(np.asarray(plan.row_value)[order], self.transform) - loc) / scale
        stamps = self.grid.series(np.asarray(plan.row_time, dtype=np.int64)[order], st.time_zone)
        cov = np.asarray(plan.row_cov, dtype=np.float64)[order] if self.cov_loc else None
        inputs = input_rows(scaled, stamps, cov, f.spec)
        emit = np.asarray(plan.row_emit)[order]
        within = np.arange(len(order)) - np.repeat(offsets[:-1], counts)
        emitted_run = run[order][emit]
        positions = np.split(within[emit], np.cumsum(np.bincount(emitted_run, minlength=n_runs))[:-1])
        initial = st.rows(plan.run_series, plan.run_fresh)
        # A micro-batch is a few ticks of many series: one call for all of them (no cache to win).
        outputs, final = run_series(self.net, inputs, offsets, positions, initial=initial, series_batch=4096)
        last_run = {s: r for r, s in enumerate(plan.run_series)}
        st.set_rows(list(last_run), select_state(final, torch.tensor(list(last_run.values()))))
        if st.learner is not None and self.config.learn is not None:
            st.learner.observe(plan.run_series, plan.run_fresh, initial, inputs, offsets)
        values = f.point_and_quantiles(outputs, loc[emit], scale[emit])
        obs_index = np.asarray(plan.row_obs, dtype=np.int64)[order][emit]
        back = np.argsort(obs_index, kind="stable")  # input order
        return {
            "obs": obs_index[back],
            "values": values[back],
            "warming": np.asarray(plan.row_warming)[order][emit][back],
            "times": np.asarray(plan.row_time, dtype=np.int64)[order][emit][back],
        }

    def _batch(
        self, pieces: list[dict], obs: Observations, events: list[Event], replayed: int, accepted: int
    ) -> StreamBatch:
        pieces = [p for p in pieces if p]
        f = self.forecaster
        c = self.net.config
        if pieces:
            index = np.concatenate([p["obs"] for p in pieces])
            values = np.concatenate([p["values"] for p in pieces])
            warming = np.concatenate([p["warming"] for p in pieces])
            times = np.concatenate([p["times"] for p in pieces])
        else:
            index = np.zeros(0, dtype=np.int64)
            values = np.zeros((0, c.horizon, c.outputs_per_step))
            warming = np.zeros(0, dtype=bool)
            times = np.zeros(0, dtype=np.int64)
        return StreamBatch(
            series_ids=[obs.series_ids[i] for i in index.tolist()],
            times=times,
            lines=obs.lines[index] if len(obs) else index,
            values=values,
            warming_up=warming,
            grid=self.grid,
            quantiles=f.quantiles,
            point_index=f.point_index,
            time_zone=self.state.time_zone,
            events=events,
            replayed=replayed,
            accepted=accepted,
        )


def warm_up(
    forecaster: Forecaster,
    state: StreamState,
    history: SeriesFrame,
    *,
    threads: int | None = None,
    partition: Shard | None = None,
) -> list[str]:
    """Warm the states of the series in `history` over it, as `forecast` does (no output).

    A series the model never saw is scaled by its whole history, as in `forecast`. Series the state
    already holds (from a checkpoint) are left alone: the checkpoint is newer. Returns the ids warmed.
    `threads` as in `stream`; with a `partition`, only the series of that shard are warmed.
    """
    forecaster.check_freq(history)
    frame = history.frame.filter(~pl.col("series_id").is_in(list(state.index)))
    if partition is not None:
        ids = frame["series_id"].unique().to_list()
        frame = frame.filter(pl.col("series_id").is_in([sid for sid in ids if partition.holds(sid)]))
    if frame.height == 0:
        return []
    inputs = forecaster.inputs(frame)
    empty = [np.zeros(0, dtype=np.int64)] * len(inputs.series_ids)
    net = state.learner.serving if state.learner is not None else forecaster.net
    with torch_threads(threads):
        _, final = run_series(net, inputs.inputs, inputs.offsets, empty)
    ends = inputs.offsets[1:] - 1
    stamps = frame["timestamp"]
    if isinstance(stamps.dtype, pl.Datetime):
        if state.time_zone is None:
            state.time_zone = stamps.dtype.time_zone
        stamps = stamps.dt.epoch("us")
    last_times = stamps.gather(ends).to_list()
    last_values = frame["value"].gather(ends).to_list()
    covs = (
        frame.select(forecaster.spec.covariates).to_numpy()[ends].tolist()
        if forecaster.spec.covariates
        else None
    )
    lengths = inputs.lengths().tolist()
    indices = [state.series_index(sid) for sid in inputs.series_ids]
    state.set_rows(indices, final)
    for j, s in enumerate(indices):
        state.loc[s], state.scale[s] = float(inputs.loc[j]), float(inputs.scale[j])
        state.frozen[s] = True
        state.last_time[s], state.last_value[s] = last_times[j], last_values[j]
        state.ticks[s] = state.since_reset[s] = lengths[j]
        if covs is not None:
            state.last_covariates[s] = covs[j]
    state.newest = max([t for t in (state.newest, *last_times) if t is not None], default=None)
    return inputs.series_ids
