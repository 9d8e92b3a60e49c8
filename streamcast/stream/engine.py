"""Rolling forecasts on a live stream: for each observation, advance its series' state, then forecast.

Each series keeps its own hidden state, scale and clock in a `StreamState`, so a keyed stream can be
split over processes by series. Observations come in micro-batches; in a batch each series' ticks
run through the network in one call and all series together (`advance`), through
`stepping.run_series` (the step training's validation and `forecast` use) with input rows laid out
as `features.build_inputs` lays them out for training (`features.input_rows`): the output equals
feeding the ticks one at a time, up to float rounding. Forecasting never moves a state.

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
from datetime import datetime

import numpy as np
import polars as pl

from streamcast.errors import StrictStop
from streamcast.forecaster import Forecaster, require_torch
from streamcast.known import known_table
from streamcast.reading import SeriesFrame
from streamcast.shards import Shard
from streamcast.stepping import run_series
from streamcast.stream.advance import PlanRunner
from streamcast.stream.config import StreamConfig, default_warmup
from streamcast.stream.grid import Grid
from streamcast.stream.input import Event, Observations
from streamcast.stream.rules import LineColumns, LineRules
from streamcast.stream.state import StreamState
from streamcast.stream.steady import steady_plan
from streamcast.stream.watch import Watched, watch_for
from streamcast.threads import compute_threads

__all__ = [  # StreamConfig, Grid and default_warmup live in their own modules; importable here too
    "Forecast",
    "Grid",
    "Observations",
    "StreamBatch",
    "StreamConfig",
    "StreamState",
    "default_warmup",
    "stream",
    "warm_up",
]


@dataclass
class Forecast:
    """The forecast made at one observation, in the series' own units."""

    series_id: str
    timestamp: datetime | int
    forecast: list[float]
    timestamps: list[datetime | int]
    quantiles: dict[float, list[float]]
    warming_up: bool
    error: float | None = None  # with watching: the miss of the one-step forecast made for it
    score: float | None = None  # the error in units of the series' recent error spread
    anomaly: bool = False


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
    watched: Watched | None = None  # with StreamConfig.watch: errors, scores, anomaly flags
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
        w = self.watched
        for r, sid in enumerate(self.series_ids):
            yield Forecast(
                sid,
                stamps[r],
                self.values[r, :, self.point_index].tolist(),
                ahead[r * horizon : (r + 1) * horizon],
                {q: self.values[r, :, i].tolist() for i, q in enumerate(self.quantiles)},
                bool(self.warming_up[r]),
                *((_number(w.error[r]), _number(w.score[r]), bool(w.anomaly[r])) if w is not None else ()),
            )

    @property
    def anomalies(self) -> int:
        return int(self.watched.anomaly.sum()) if self.watched is not None else 0


def _number(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def stream(
    forecaster: Forecaster,
    batches: Iterable[Observations],
    state: StreamState | None = None,
    config: StreamConfig = StreamConfig(),  # noqa: B008 (frozen: one shared default is safe)
    *,
    threads: int | None = None,
) -> Iterator[StreamBatch]:
    """For each micro-batch of observations: advance every series over its ticks, yield the forecasts.

    `threads`: torch's and numpy's BLAS threads while a batch is computed (default:
    `streamcast.threads.default_threads()`, one); between batches the caller's own count holds.

    >>> state = StreamState(model)  # doctest: +SKIP
    >>> for batch in stream(model, [Observations.from_records(rows, model)], state):
    ...     for f in batch:
    ...         print(f.series_id, f.timestamp, f.forecast[:3], f.warming_up)
    """
    engine = _Engine(forecaster, state if state is not None else StreamState(forecaster), config)
    for observations in batches:
        with compute_threads(threads):
            batch, error = engine.process(observations)
        batch.evicted = engine.evict()
        yield batch
        if error is not None:
            raise StrictStop(error.line, error.reason)


class _Engine:
    """One micro-batch: its partition, the plan (whole arrays when steady, else the rules line by
    line), the batched network step (`PlanRunner`), and the forecasts in input order."""

    def __init__(self, forecaster: Forecaster, state: StreamState, config: StreamConfig) -> None:
        state.check_model(forecaster)
        self.forecaster = forecaster
        self.state = state
        self.config = config
        self.grid = Grid(forecaster.freq)
        warmup = config.warmup if config.warmup is not None else default_warmup(forecaster)
        self.rules = LineRules(state, config, self.grid, warmup, forecaster.spec)
        self.runner = PlanRunner(forecaster, state, config, self.rules)
        self._held: dict[str, bool] = {}  # series id -> in this partition (--partition)
        if config.learn is not None and state.learner is None:
            require_torch(forecaster, "online learning (--learn)")
            from streamcast.losses import choose_loss  # torch's training, for --learn only
            from streamcast.online import OnlineLearner

            # A file records the loss `fit` resolved; one edited by hand to "auto" resolves alike.
            loss = choose_loss(
                forecaster.info.get("fit_config", {}).get("loss", "mae"), forecaster.spec.transform
            )
            state.learner = OnlineLearner(forecaster.net, loss, config.learn)
        elif config.learn is not None:
            state.learner.config = config.learn
        if config.watch is not None and state.watch is None:
            state.watch = watch_for(forecaster)

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
        steady = steady_plan(self.rules, obs) if stop_line is None else None
        while begin < len(obs):
            if steady is not None:
                plan, steady = steady, None
            else:
                columns = columns or LineColumns(obs, bool(self.rules.cov_loc))
                plan = self.rules.plan(columns, begin, stop_line)
            pieces.append(self.runner.run(plan))
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

    def _batch(
        self, pieces: list[dict], obs: Observations, events: list[Event], replayed: int, accepted: int
    ) -> StreamBatch:
        pieces = [p for p in pieces if p]
        f = self.forecaster
        c = self.runner.net.config
        if pieces:
            index = np.concatenate([p["obs"] for p in pieces])
            values = np.concatenate([p["values"] for p in pieces])
            warming = np.concatenate([p["warming"] for p in pieces])
            times = np.concatenate([p["times"] for p in pieces])
            watched = (
                Watched.concat([p["watched"] for p in pieces]) if self.config.watch is not None else None
            )
        else:
            index = np.zeros(0, dtype=np.int64)
            values = np.zeros((0, c.horizon, c.outputs_per_step))
            warming = np.zeros(0, dtype=bool)
            times = np.zeros(0, dtype=np.int64)
            watched = Watched.concat([]) if self.config.watch is not None else None
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
            watched=watched,
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
    spec = forecaster.spec
    future = known_table(history, spec.future_covariates) if spec.future_covariates else None
    inputs = forecaster.inputs(frame, future=future, static=history.static)
    empty = [np.zeros(0, dtype=np.int64)] * len(inputs.series_ids)
    net = state.learner.serving if state.learner is not None else forecaster.net
    with compute_threads(threads):
        _, final = run_series(net, inputs.inputs, inputs.offsets, empty)
    final = tuple(np.asarray(p) for p in final)  # the stream keeps states in numpy (torch's: views)
    ends = inputs.offsets[1:] - 1
    stamps = frame["timestamp"]
    if isinstance(stamps.dtype, pl.Datetime):
        if state.time_zone is None:
            state.time_zone = stamps.dtype.time_zone
        stamps = stamps.dt.epoch("us")
    last_times = stamps.gather(ends).to_list()
    last_values = frame["value"].gather(ends).to_list()
    covs = _last_covariates(forecaster, frame, inputs, ends)
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


def _last_covariates(forecaster: Forecaster, frame: pl.DataFrame, inputs, ends: np.ndarray) -> list | None:
    """Each series' covariates at its last row, as a stream line carries them: the past ones,
    then each future covariate's next values (unscaled back from the input rows)."""
    spec = forecaster.spec
    if not (spec.covariates or spec.future_covariates):
        return None
    past = frame.select(spec.covariates).to_numpy()[ends] if spec.covariates else np.zeros((len(ends), 0))
    at = 1 + len(spec.calendar) + len(spec.covariates)
    width = len(spec.future_covariates) * spec.future_steps
    loc = np.repeat(spec.future_loc, spec.future_steps)
    scale = np.repeat(spec.future_scale, spec.future_steps)
    ahead = inputs.inputs[ends, at : at + width].astype(np.float64) * scale + loc
    return np.concatenate([past, ahead], axis=1).tolist()
