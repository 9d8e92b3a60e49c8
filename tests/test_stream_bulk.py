"""The fast paths of `stream` give exactly what the line-by-line rules give: CSV read column by column
(`CsvColumns`), and a batch of steady series planned in whole arrays (`steady.steady_plan`)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamcast.stream import engine
from streamcast.stream.engine import StreamConfig, stream
from streamcast.stream.input import LineParser, parser_for
from streamcast.stream.state import StreamState
from streamcast.stream.steady import steady_plan
from streamcast.stream.watch import WatchConfig

good_line = st.builds(
    lambda sid, hour, value: f"{sid},2024-01-01 {hour:02d}:00,{value}",
    st.sampled_from(["s0", "s1", " s2", "s0 "]),
    st.integers(0, 23),
    st.sampled_from(["1.5", "-2", "1e3", " 7 ", "0.0001"]),
)
odd_line = st.sampled_from(
    [
        "",
        "  ",
        "s0,2024-01-01 03:00,",
        "s0,2024-01-01 03:00,NA",
        "s0,2024-01-01 03:00,1_000",
        "s0,2024-01-01 03:00,nan",
        "s0,2024-01-01 03:00,inf",
        "s0,2024-01-01 03:00,1e16",
        "s0,2024-13-45 00:00,1",
        ",2024-01-01 03:00,1",
        '"s,1",2024-01-01 03:00,1',
        "s0,2024-01-01 03:00,1,2",
        "s0,1",
        "series_id,timestamp,value",
        "s\x01,2024-01-01 03:00,1",
    ]
)


def parse_both(model, lines: list[str], monkeypatch) -> tuple:
    """Observations from the parser as it runs, and from one held to the line-by-line rules."""

    def read(parser) -> tuple:
        obs = parser.parse(lines, 1)
        return (
            obs.lines.tolist(),
            obs.series_ids,
            None if obs.times is None else obs.times.tolist(),
            obs.values.tolist(),
            [e.message for e in obs.events],
        )

    fast = read(parser_for(model))
    with monkeypatch.context() as m:
        m.setattr(LineParser, "_bulk_ready", lambda self: False)
        slow = read(parser_for(model))
    return fast, slow


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=good_line, rest=st.lists(good_line | odd_line, max_size=30), header=st.booleans())
def test_csv_read_column_by_column_equals_the_line_by_line_rules(
    tiny_model, first, rest, header, monkeypatch
):
    lines = (["series_id,timestamp,value"] if header else []) + [first, *rest]
    fast, slow = parse_both(tiny_model, lines, monkeypatch)
    assert fast == slow


def forecasts(model, lines: list[str], monkeypatch, steady: bool, batch: int, watch=None) -> list:
    planned = []  # whether each batch's steady plan was taken
    if steady:
        monkeypatch.setattr(engine, "steady_plan", lambda rules, obs: _noted(planned, rules, obs))
    else:
        monkeypatch.setattr(engine, "steady_plan", lambda rules, obs: None)
    parser = parser_for(model)
    state = StreamState(model)
    batches = [parser.parse(lines[i : i + batch], i + 1) for i in range(0, len(lines), batch)]
    out = []
    for b in stream(model, batches, state, StreamConfig(every=2, max_gap=2, watch=watch)):
        out += [(f.series_id, f.timestamp, f.warming_up, f.forecast, f.error, f.score, f.anomaly) for f in b]
        out.append(("events", b.accepted, b.replayed, [e.message for e in b.events]))
    monkeypatch.undo()
    assert not steady or any(planned), "the steady plan was never taken"
    return out, state


def _noted(planned: list, rules, obs):
    plan = steady_plan(rules, obs)
    planned.append(plan is not None)
    return plan


def steady_lines() -> list[str]:
    rng = np.random.default_rng(0)
    lines = []
    for h in range(90):  # three known series, one new, a gap, a repeat and a line that goes back
        for sid in ("s0", "s1", "s2", "new"):
            if (sid, h) in {("s1", 20), ("s1", 21), ("s2", 33)}:
                continue
            lines.append(f"{sid},2024-01-{1 + h // 24:02d} {h % 24:02d}:00,{10 + rng.normal():.3f}")
        if h == 40:
            lines += ["s0,2024-01-02 16:00,3", "s0,2024-01-01 00:00,3"]
    return lines


@pytest.mark.parametrize("batch", [17, 1], ids=["batches", "a-line-at-a-time"])
@pytest.mark.parametrize("watch", [None, WatchConfig(z=1.0)], ids=["plain", "watch"])
def test_steady_batches_planned_in_arrays_equal_the_rules_line_by_line(tiny_model, monkeypatch, watch, batch):
    lines = steady_lines()
    fast, fast_state = forecasts(tiny_model, lines, monkeypatch, steady=True, batch=batch, watch=watch)
    slow, slow_state = forecasts(tiny_model, lines, monkeypatch, steady=False, batch=batch, watch=watch)
    if watch is not None:  # every observation scored, and some flagged at z=1
        scored = [row for row in fast if row[0] != "events"]
        assert any(row[6] for row in scored) and all(row[4] is not None for row in scored if not row[2])
    assert fast == slow
    for name in StreamState._SERIES_LISTS:
        assert getattr(fast_state, name) == getattr(slow_state, name), name
    assert (fast_state.accepted, fast_state.newest) == (slow_state.accepted, slow_state.newest)
    assert all(np.array_equal(a, b) for a, b in zip(fast_state.hidden, slow_state.hidden, strict=True))
