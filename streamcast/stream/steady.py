"""A live feed's usual micro-batch, planned in whole arrays: every line continues a known series by
exactly one period, so no rule applies and the plan is arithmetic on columns. Gives exactly the plan
the line-by-line rules would (tests/test_stream_bulk.py)."""

from __future__ import annotations

import numpy as np

from streamcast.stream.input import Observations
from streamcast.stream.rules import LineRules, Plan


def steady_plan(rules: LineRules, obs: Observations) -> Plan | None:
    """The plan of a batch in which every line continues a known series by exactly one period
    (the steady state of a live feed), in whole-array operations; None when any line needs the
    rules one by one (a new, resumed or warming series, a gap, a jump, learning, covariates)."""
    st, grid, n = rules.state, rules.grid, len(obs)
    if n == 0 or rules.config.learn is not None or obs.times is None or grid.months or rules.cov_loc:
        return None
    index = st.index
    series = np.fromiter((index.get(sid, -1) for sid in obs.series_ids), dtype=np.int64, count=n)
    if series.min() < 0 or (rules.transform == "log" and obs.values.min() <= 0):
        return None
    if n == 1:  # a line at a time: np.unique's sort was a tenth of such a line's plan
        held, run, counts = series, np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.int64)
    else:
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
    plan = Plan(run_series=held_list, run_fresh=[False] * len(held_list))
    plan.row_run, plan.row_time, plan.row_value = run, obs.times, obs.values
    plan.row_loc = np.array([st.loc[u] for u in held_list])[run]
    plan.row_scale = np.array([st.scale[u] for u in held_list])[run]
    plan.row_obs = np.arange(n)
    plan.row_emit = ticks % rules.config.every == 0
    plan.row_warming = since <= rules.warmup
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
