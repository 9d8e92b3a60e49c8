"""The per-line rules of a stream (replays, repeats, gaps, jumps, resets, new series, warm-up),
applied in one sequential pass that updates each series' clock and scale and says which rows the
network must run. The rules themselves are listed in `streamcast.stream.engine`'s docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from streamcast.features import FeatureSpec, _safe_scale, spread_of
from streamcast.stream.config import StreamConfig
from streamcast.stream.grid import EPOCH, Grid
from streamcast.stream.input import Event, Observations
from streamcast.stream.state import StreamState


class LineColumns:
    """An Observations batch as plain lists, read once: the rules index them element by element."""

    def __init__(self, obs: Observations, with_covariates: bool) -> None:
        self.series_ids = obs.series_ids
        self.times = obs.times.tolist() if obs.times is not None else None
        self.values = obs.values.tolist()
        self.covariates = obs.covariates.tolist() if with_covariates else None
        self.lines = obs.lines.tolist()


@dataclass
class Plan:
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


class LineRules:
    """The rules, line by line in plain Python: the state's series lists are read one at a time."""

    def __init__(
        self,
        state: StreamState,
        config: StreamConfig,
        grid: Grid,
        warmup: int,
        spec: FeatureSpec,
    ) -> None:
        self.state = state
        self.config = config
        self.grid = grid
        self.warmup = warmup
        self.transform = spec.transform
        self.clock = ClockRules(state, config, grid)
        self.scales = WarmupScale(state, spec, warmup)
        # A line's covariates: the past ones, then each future covariate's next `future_steps` values.
        self.cov_loc = [*spec.covariate_loc, *np.repeat(spec.future_loc, spec.future_steps).tolist()]

    def plan(self, obs: LineColumns, begin: int, stop_line: int | None) -> Plan:
        """Apply the rules line by line; stop at a learning boundary or a --strict error."""
        st, grid, plan = self.state, self.grid, Plan()
        run_of: dict[int, int] = {}
        times, values, covs, lines = obs.times, obs.values, obs.covariates, obs.lines
        strict, warmup, every = self.config.strict, self.warmup, self.config.every
        learn_every = self.config.learn.every if self.config.learn is not None else 0
        clock_event, update_scale = self.clock.event, self.scales.update
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
                t = first_time(self.config, grid) if last is None else grid.shift(last, 1)
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
                if k != 1 or jumped is not None:  # else the line follows its series: no event
                    event = clock_event(line, obs.series_ids[i], s, t, last, k, jumped)
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
                update_scale(s, v)
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

    def _fill(self, plan: Plan, r: int, s: int, last: int, k: int, v: float, cov) -> None:
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


class ClockRules:
    """Where a line's time falls against its series' clock: a gap (filled, or too long: a reset),
    a jump, a repeat, a time that goes back or lies off the grid. Each is an Event for the user."""

    def __init__(self, state: StreamState, config: StreamConfig, grid: Grid) -> None:
        self.state = state
        self.config = config
        self.grid = grid

    def event(
        self, line: int, sid: str, s: int, t: int, last: int, k: int | None, jumped: int | None
    ) -> Event | None:
        """The event of series `s`'s line at `t`, `k` periods after its `last` time (None: off the
        grid); `jumped`: the time of the series' jump awaiting confirmation. None: no event."""
        max_gap, max_jump, show = self.config.max_gap, self.config.max_jump, self.show
        follows = self.grid.steps(jumped, t) if jumped is not None else None
        if follows is not None and 1 <= follows <= max_gap + 1:
            return Event(
                line,
                "reset",
                f"series {sid!r}: timestamp {show(t)} follows the jump to {show(jumped)}; state reset",
            )
        if k is not None and k > max_jump:
            self.state.jumps[s] = t
            return Event(
                line,
                "skipped",
                f"series {sid!r}: timestamp {show(t)} jumps {k} periods after {show(last)}, more than --max-jump {max_jump}; taken only if the next line follows it",
            )
        if k is None:
            return Event(
                line,
                "skipped",
                f"series {sid!r}: timestamp {show(t)} is off the {self.grid.freq} grid after {show(last)}",
            )
        if k == 0:
            return Event(line, "skipped", f"series {sid!r}: timestamp {show(t)} repeats the last one")
        if k < 0:
            return Event(
                line, "skipped", f"series {sid!r}: timestamp {show(t)} goes back before {show(last)}"
            )
        if k - 1 > max_gap:
            return Event(
                line,
                "reset",
                f"series {sid!r}: gap of {k - 1} periods after {show(last)} is longer than --max-gap {max_gap}; state reset",
            )
        if k > 1:
            return Event(
                line,
                "filled",
                f"series {sid!r}: gap of {k - 1} periods after {show(last)}; filled by linear interpolation",
            )
        return None

    def show(self, t: int) -> str:
        return self.grid.text(np.array([t], dtype=np.int64), self.state.time_zone)[0]


class WarmupScale:
    """A new series scales itself by its own values while it warms up: Welford's running mean and
    variance over its first `warmup` values, then frozen."""

    def __init__(self, state: StreamState, spec: FeatureSpec, warmup: int) -> None:
        self.state = state
        self.scaling = spec.scaling
        self.transform = spec.transform
        self.warmup = warmup

    def update(self, s: int, v: float) -> None:
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


def first_time(config: StreamConfig, grid: Grid) -> int:
    """Where a series whose lines carry no time starts: --start, else now on the model's grid."""
    start = config.start
    if grid.indexed:
        return int(start or 0)
    if start is None:
        now = (datetime.now(timezone.utc) - EPOCH.replace(tzinfo=timezone.utc)) // timedelta(microseconds=1)
        return grid.floor(now)
    if isinstance(start, datetime):
        base = EPOCH.replace(tzinfo=timezone.utc) if start.tzinfo else EPOCH
        return (start - base) // timedelta(microseconds=1)
    return int(start)
