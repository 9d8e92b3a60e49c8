"""The stream library: serving tick by tick equals training's batched pass, the per-tick rules,
checkpoints and online learning."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import streamcast as sc
from streamcast.errors import DataError, ModelFileError
from streamcast.model import STEP_CELLS
from streamcast.online import LearnConfig
from streamcast.reading import Columns, SeriesFrame
from streamcast.stepping import run_series
from streamcast.stream.engine import StreamConfig, default_warmup, stream, warm_up
from streamcast.stream.input import Observations, parser_for
from streamcast.stream.state import StreamState
from streamcast.training import FitConfig
from tests.conftest import TINY, hourly_frame

START = datetime(2024, 1, 1)


def records(frame: pl.DataFrame) -> list[dict]:
    """The frame's rows as dicts, interleaved by time like a live feed."""
    return frame.sort("timestamp", "series_id").to_dicts()


def one_by_one(model, rows: list[dict]) -> list[Observations]:
    return [Observations.from_records([row], model) for row in rows]


def run(model, batches, state=None, config=None):
    """Every forecast of the stream, in order, as (series_id, timestamp, values (H, Q), warming_up)."""
    out = []
    for batch in stream(model, batches, state, config or StreamConfig()):
        out += [
            (s, t, batch.values[r], bool(batch.warming_up[r]))
            for r, (s, t) in enumerate(zip(batch.series_ids, batch.times.tolist(), strict=True))
        ]
    return out


def hour(h: float) -> datetime:
    return START + timedelta(hours=h)


def us(h: float) -> int:
    return int(h * 3_600_000_000) + (START - datetime(1970, 1, 1)) // timedelta(microseconds=1)


@pytest.fixture(scope="module")
def cov_model():
    frame = hourly_frame(series=2, length=80).with_columns((pl.col("value") * 0.5 + 1.0).alias("temperature"))
    return sc.fit(
        sc.read_series(frame, covariates=["temperature"]),
        FitConfig(**{**TINY.__dict__, "covariates": ("temperature",), "epochs": 1}),
    )


@pytest.mark.parametrize("conv", [0, 3])
@pytest.mark.parametrize("cell", STEP_CELLS)
def test_streaming_tick_by_tick_equals_run_series_over_the_same_history(cell, conv):
    data = sc.read_series(hourly_frame(series=2, length=60))
    model = sc.fit(data, FitConfig(**{**TINY.__dict__, "cell": cell, "conv": conv, "epochs": 1}))
    inputs = model.inputs(data.frame)
    lengths = inputs.lengths()
    naive = model.naive_serving(inputs.series_ids)  # an untrained network may leave series to naive
    positions = [np.arange(n) for n in lengths]
    outputs, final = run_series(model.net, inputs.inputs, inputs.offsets, positions, naive=naive)
    expected = model.point_and_quantiles(
        outputs, np.repeat(inputs.loc, lengths), np.repeat(inputs.scale, lengths)
    )
    by_key = dict(
        zip(
            zip(data.frame["series_id"].to_list(), data.frame["timestamp"].to_list(), strict=True),
            expected,
            strict=True,
        )
    )

    state = StreamState(model)
    got = run(model, one_by_one(model, records(data.frame)), state)

    assert len(got) == data.frame.height
    for sid, t, values, _ in got:
        np.testing.assert_allclose(
            values, by_key[(sid, datetime(1970, 1, 1) + timedelta(microseconds=t))], rtol=1e-5, atol=1e-5
        )
    rows = state.rows([state.index[s] for s in inputs.series_ids], [False] * len(lengths))
    for part, want in zip(rows, final, strict=True):
        np.testing.assert_allclose(part, want.numpy(), atol=1e-5)


def test_a_whole_micro_batch_equals_one_tick_at_a_time_through_every_rule(cov_model):
    """Gaps, a reset, a repeat, a new series and a missing covariate, batched or not: same output."""
    rows = [
        {"series_id": "s0", "timestamp": hour(h), "value": 10 + h % 5, "temperature": 5.0 + h}
        for h in range(30)
    ]
    rows += [
        {"series_id": "new", "timestamp": hour(h), "value": 500.0 + 3 * h, "temperature": None}
        for h in range(0, 30, 1)
    ]
    rows += [
        {"series_id": "s0", "timestamp": hour(33), "value": 12.0, "temperature": 1.0},  # 2 missing: filled
        {"series_id": "s0", "timestamp": hour(33), "value": 12.0, "temperature": 1.0},  # repeat: skipped
        {"series_id": "s0", "timestamp": hour(80), "value": 11.0, "temperature": 1.0},  # 46 missing: reset
        {"series_id": "s0", "timestamp": hour(81), "value": 11.5, "temperature": None},  # held covariate
    ]
    rows.sort(key=lambda r: r["timestamp"])
    head, tail = rows[:20], rows[20:]  # the rules then apply to states carried from a batch before
    batched = run(
        cov_model, [Observations.from_records(head, cov_model), Observations.from_records(tail, cov_model)]
    )
    single = run(cov_model, one_by_one(cov_model, rows))
    assert [(s, t, w) for s, t, _, w in batched] == [(s, t, w) for s, t, _, w in single]
    assert len(batched) == len(rows) - 1
    np.testing.assert_allclose(
        np.stack([v for *_, v, _ in batched]), np.stack([v for *_, v, _ in single]), rtol=1e-5, atol=1e-4
    )


def test_output_follows_input_order(tiny_model):
    rows = records(hourly_frame(length=10))
    got = run(tiny_model, [Observations.from_records(rows, tiny_model)])
    assert [(s, t) for s, t, *_ in got] == [
        (r["series_id"], us((r["timestamp"] - START).total_seconds() / 3600)) for r in rows
    ]


def test_a_gap_is_filled_with_the_straight_line_between_its_ends(tiny_model):
    """Missing steps are interpolated and the state advances over them: the same as sending them."""
    full = [{"series_id": "s0", "timestamp": hour(h), "value": float(10 + h)} for h in range(12)]
    gappy = [r for r in full if r["timestamp"] not in (hour(7), hour(8))]
    with_gap = run(tiny_model, one_by_one(tiny_model, gappy))
    without = run(tiny_model, one_by_one(tiny_model, full))
    assert [t for _, t, *_ in with_gap] == [t for _, t, *_ in without if t not in (us(7), us(8))]
    np.testing.assert_allclose(with_gap[-1][2], without[-1][2], rtol=1e-5)


def test_a_gap_longer_than_max_gap_resets_the_series_to_a_zero_state(tiny_model):
    rows = [{"series_id": "s1", "timestamp": hour(h), "value": 20.0 + h % 3} for h in range(10)]
    later = [{"series_id": "s1", "timestamp": hour(h), "value": 20.0 + h % 3} for h in range(40, 45)]
    batches = [Observations.from_records(rows + later, tiny_model)]
    batch = next(stream(tiny_model, batches, config=StreamConfig(max_gap=5, warmup=5)))
    assert [e.message for e in batch.events] == [
        "line 11: series 's1': gap of 30 periods after 2024-01-01T09:00:00 is longer than --max-gap 5; state reset"
    ]
    fresh = run(tiny_model, [Observations.from_records(later, tiny_model)], config=StreamConfig(warmup=5))
    np.testing.assert_allclose(batch.values[10:], np.stack([v for _, _, v, _ in fresh]), rtol=1e-5)
    assert batch.warming_up[10:].all() and not batch.warming_up[9]  # warming up again after the reset


def test_repeated_backward_and_off_grid_timestamps_are_skipped_and_reported(tiny_model):
    rows = [
        {"series_id": "s0", "timestamp": hour(5), "value": 10.0},
        {"series_id": "s0", "timestamp": hour(5), "value": 11.0},
        {"series_id": "s0", "timestamp": hour(4), "value": 11.0},
        {"series_id": "s0", "timestamp": hour(5.5), "value": 11.0},
        {"series_id": "s0", "timestamp": hour(6), "value": 11.0},
    ]
    batch = next(stream(tiny_model, [Observations.from_records(rows, tiny_model)]))
    assert batch.lines.tolist() == [1, 5]
    assert [e.message for e in batch.events] == [
        "line 2: series 's0': timestamp 2024-01-01T05:00:00 repeats the last one; skipped",
        "line 3: series 's0': timestamp 2024-01-01T04:00:00 goes back before 2024-01-01T05:00:00; skipped",
        "line 4: series 's0': timestamp 2024-01-01T05:30:00 is off the 1h grid after 2024-01-01T05:00:00; skipped",
    ]


def test_a_new_series_scales_itself_over_its_warm_up_then_freezes_the_scale(tiny_model):
    values = [1000.0 + 10 * np.sin(h) for h in range(30)]
    rows = [{"series_id": "fresh", "timestamp": hour(h), "value": v} for h, v in enumerate(values)]
    state = StreamState(tiny_model)
    got = run(tiny_model, [Observations.from_records(rows, tiny_model)], state, StreamConfig(warmup=20))
    assert [w for *_, w in got] == [True] * 20 + [False] * 10
    s = state.index["fresh"]
    assert tiny_model.spec.transform == "log"  # positive data: the scale is that of the logs, as in fit
    assert state.loc[s] == pytest.approx(np.mean(np.log(values[:20])))
    assert state.scale[s] == 1.0  # "mean" scaling in logs: dividing by the level is the log's job
    assert 900 < got[-1][2][0, 0] < 1100  # in the series' own units


def test_a_series_the_model_knows_keeps_its_trained_scale(tiny_model):
    state = StreamState(tiny_model)
    run(
        tiny_model,
        [Observations.from_records([{"series_id": "s2", "timestamp": hour(0), "value": 1e6}], tiny_model)],
        state,
    )
    s = state.index["s2"]
    assert (state.loc[s], state.scale[s]) == (tiny_model.scaler.loc["s2"], tiny_model.scaler.scale["s2"])


def test_default_warm_up_is_two_seasons_and_at_least_the_horizon(tiny_model):
    assert default_warmup(tiny_model) == 48  # hourly: a daily season


def test_every_n_emits_every_nth_observation_of_each_series(tiny_model):
    rows = records(hourly_frame(series=2, length=7))
    got = run(tiny_model, [Observations.from_records(rows, tiny_model)], config=StreamConfig(every=3))
    assert [(s, t) for s, t, *_ in got] == [("s0", us(2)), ("s1", us(2)), ("s0", us(5)), ("s1", us(5))]


def test_strict_yields_the_lines_before_the_first_bad_one_then_raises(tiny_model):
    rows = [{"series_id": "s0", "timestamp": hour(h), "value": 1.0} for h in range(3)]
    rows[2]["timestamp"] = hour(0)
    batches = stream(
        tiny_model, [Observations.from_records(rows, tiny_model)], config=StreamConfig(strict=True)
    )
    assert len(next(batches)) == 2
    with pytest.raises(DataError, match=r"^line 3: series 's0': timestamp 2024-01-01T00:00:00 goes back"):
        next(batches)


def test_warm_up_from_history_equals_streaming_that_history(tiny_model, tiny_data):
    history = tiny_data.frame.filter(pl.col("timestamp") < hour(150))
    rest = records(tiny_data.frame.filter(pl.col("timestamp") >= hour(150)))
    warmed = StreamState(tiny_model)
    assert warm_up(tiny_model, warmed, sc.read_series(history)) == ["s0", "s1", "s2"]
    streamed = StreamState(tiny_model)
    run(tiny_model, [Observations.from_records(records(history), tiny_model)], streamed)
    a = run(tiny_model, [Observations.from_records(rest, tiny_model)], warmed)
    b = run(tiny_model, [Observations.from_records(rest, tiny_model)], streamed)
    np.testing.assert_allclose(np.stack([v for *_, v, _ in a]), np.stack([v for *_, v, _ in b]), rtol=1e-5)
    assert not any(w for *_, w in a)


def test_a_checkpoint_resumes_exactly_and_skips_replayed_lines_silently(tiny_model, tmp_path):
    rows = records(hourly_frame(length=40))
    whole = run(tiny_model, [Observations.from_records(rows, tiny_model)])
    state = StreamState(tiny_model)
    run(tiny_model, [Observations.from_records(rows[:50], tiny_model)], state)
    state.save(tmp_path / "s.state")

    resumed = StreamState.load(tmp_path / "s.state", tiny_model)
    batches = list(
        stream(tiny_model, [Observations.from_records(rows, tiny_model)], resumed)
    )  # fed again from the start
    assert batches[0].replayed == 50 and batches[0].events == []
    after = [
        (s, t, v) for b in batches for s, t, v in zip(b.series_ids, b.times.tolist(), b.values, strict=True)
    ]
    assert [(s, t) for s, t, _ in after] == [(s, t) for s, t, *_ in whole[50:]]
    np.testing.assert_allclose(
        np.stack([v for *_, v in after]), np.stack([v for _, _, v, _ in whole[50:]]), rtol=1e-5
    )


def test_a_state_file_for_another_model_is_refused(tiny_model, tiny_data, tmp_path):
    StreamState(tiny_model).save(tmp_path / "s.state")
    other = sc.fit(tiny_data, FitConfig(**{**TINY.__dict__, "seed": 1, "epochs": 1}))
    with pytest.raises(ModelFileError, match="written for another model"):
        StreamState.load(tmp_path / "s.state", other)


def test_a_file_that_is_not_a_state_file_is_refused(tiny_model, tmp_path):
    (tmp_path / "junk").write_bytes(b"\x00" * 40)
    with pytest.raises(ModelFileError, match="not a streamcast state file"):
        StreamState.load(tmp_path / "junk", tiny_model)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda meta: [meta], "not a streamcast state file"),
        (lambda meta: {**meta, "format_version": "1"}, "not a streamcast state file"),
        (lambda meta: {k: v for k, v in meta.items() if k != "model"}, "written for another model"),
        (lambda meta: {k: v for k, v in meta.items() if k != "lines"}, "the state file is damaged"),
    ],
)
def test_state_metadata_that_does_not_fit_is_refused_in_one_line(tiny_model, tmp_path, change, message):
    import json
    import struct

    import safetensors.torch

    from streamcast import safefile

    path = tmp_path / "s.state"
    StreamState(tiny_model).save(path)
    raw = path.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + size])
    meta = change(json.loads(header["__metadata__"]["streamcast"]))
    header["__metadata__"]["streamcast"] = json.dumps(meta)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + size :])
    if isinstance(meta, dict):  # sealed again with a valid checksum, as a crafted file would be
        path.write_bytes(safefile.write(safetensors.torch.load(raw), meta))
    with pytest.raises(ModelFileError, match=message) as raised:
        StreamState.load(path, tiny_model)
    assert "\n" not in str(raised.value)


@settings(max_examples=25, deadline=None)
@given(
    series=st.dictionaries(
        st.text(min_size=1, max_size=12).filter(lambda s: s.strip() == s and s),
        st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=4),
        min_size=1,
        max_size=5,
    )
)
def test_state_save_and_load_round_trip(tiny_model, tmp_path_factory, series):
    state = StreamState(tiny_model)
    rows = [
        {"series_id": sid, "timestamp": hour(h), "value": v}
        for sid, values in series.items()
        for h, v in enumerate(values)
    ]
    run(tiny_model, [Observations.from_records(rows, tiny_model)], state)
    path = tmp_path_factory.mktemp("state") / "s.state"
    state.save(path)
    back = StreamState.load(path, tiny_model)
    for name in (
        "ids",
        "loc",
        "scale",
        "frozen",
        "welford",
        "last_time",
        "last_value",
        "ticks",
        "since_reset",
        "accepted",
    ):
        assert getattr(back, name) == getattr(state, name), name
    for a, b in zip(back.hidden, state.hidden, strict=True):
        np.testing.assert_array_equal(a[: len(state)], b[: len(state)])


def test_online_learning_changes_the_weights_and_resumes_exactly(tiny_model, tmp_path):
    tiny_model = replace(tiny_model, naive_series=frozenset())  # every series served by the network
    rows = records(hourly_frame(length=60))
    config = StreamConfig(learn=LearnConfig(lr=1e-2, window=8, every=16))
    whole = run(tiny_model, [Observations.from_records(rows, tiny_model)], StreamState(tiny_model), config)
    frozen = run(tiny_model, [Observations.from_records(rows, tiny_model)])

    state = StreamState(tiny_model)
    first = run(tiny_model, [Observations.from_records(rows[:100], tiny_model)], state, config)
    state.save(tmp_path / "s.state")
    resumed = StreamState.load(tmp_path / "s.state", tiny_model)
    second = run(tiny_model, [Observations.from_records(rows[100:], tiny_model)], resumed, config)

    assert resumed.learner.steps > state.learner.steps > 0
    assert not np.allclose(whole[-1][2], frozen[-1][2])  # learning moved the forecasts
    np.testing.assert_allclose(
        np.stack([v for *_, v, _ in first + second]),
        np.stack([v for *_, v, _ in whole]),
        rtol=1e-5,
        atol=1e-5,
    )


def test_online_learning_resolves_a_model_file_whose_loss_reads_auto(tiny_model, tmp_path):
    info = {**tiny_model.info, "fit_config": {**tiny_model.info["fit_config"], "loss": "auto"}}
    edited = replace(tiny_model, info=info, naive_series=frozenset())
    state = StreamState(edited)
    config = StreamConfig(learn=LearnConfig(lr=1e-2, window=8, every=16))
    run(edited, [Observations.from_records(records(hourly_frame(length=30)), edited)], state, config)
    assert state.learner.loss == "mae" and state.learner.steps > 0  # the tiny data is in logs
    state.save(tmp_path / "s.state")
    assert StreamState.load(tmp_path / "s.state", edited).learner.loss == "mae"


def test_online_learning_does_not_depend_on_how_the_input_was_batched(tiny_model):
    rows = records(hourly_frame(length=30))
    config = StreamConfig(learn=LearnConfig(lr=1e-2, window=6, every=10))
    batched = run(tiny_model, [Observations.from_records(rows, tiny_model)], config=config)
    single = run(tiny_model, one_by_one(tiny_model, rows), config=config)
    np.testing.assert_allclose(
        np.stack([v for *_, v, _ in batched]), np.stack([v for *_, v, _ in single]), rtol=1e-4, atol=1e-4
    )


def test_iterating_a_batch_gives_forecasts_with_their_target_times(tiny_model):
    rows = [{"series_id": "s0", "timestamp": hour(0), "value": 10.0}]
    batch = next(stream(tiny_model, [Observations.from_records(rows, tiny_model)]))
    (f,) = list(batch)
    assert (f.series_id, f.timestamp, f.warming_up) == ("s0", hour(0), True)
    assert f.timestamps == [hour(h) for h in range(1, 7)]
    assert len(f.forecast) == 6 and f.quantiles == {}


def test_monthly_series_step_by_calendar_month():
    months = pl.datetime_range(datetime(2020, 1, 1), datetime(2023, 4, 1), "1mo", time_unit="us", eager=True)
    frame = pl.DataFrame({"series_id": ["m"] * 40, "timestamp": months, "value": np.arange(40.0)})
    data = SeriesFrame(frame, "1mo", Columns("series_id", "timestamp", "value"), "<frame>")
    model = sc.fit(data, FitConfig(**{**TINY.__dict__, "epochs": 1, "horizon": 3}))
    rows = [
        {"series_id": "m", "timestamp": "2023-05-01", "value": 40.0},
        {"series_id": "m", "timestamp": "2023-08-01", "value": 43.0},
    ]
    state = StreamState(model)
    warm_up(model, state, data)
    batch = next(stream(model, [Observations.from_records(rows, model)], state))
    assert [e.message for e in batch.events] == [
        "line 2: series 'm': gap of 2 periods after 2023-05-01T00:00:00; filled by linear interpolation"
    ]
    (_, second) = list(batch)
    assert second.timestamps == [datetime(2023, 9, 1), datetime(2023, 10, 1), datetime(2023, 11, 1)]


def test_lines_without_an_id_belong_to_the_models_only_series():
    frame = hourly_frame(series=1, length=40).drop("series_id").rename({"value": "load"})
    model = sc.fit(sc.read_series(frame), FitConfig(**{**TINY.__dict__, "epochs": 1}))
    parser = parser_for(model)
    obs = parser.parse(["timestamp,load", "2024-01-02 16:00,11.5"], first_line=1)
    assert obs.series_ids == ["load"] and obs.values.tolist() == [11.5]


def test_a_missing_state_file_is_a_model_file_error(tiny_model, tmp_path):
    with pytest.raises(ModelFileError, match="state file .* not found"):
        StreamState.load(tmp_path / "nope.state", tiny_model)


def test_an_ensemble_carries_its_window_once_and_a_file_of_the_old_layout_is_refused_in_one_line(
    tiny_data, tmp_path
):
    from safetensors.torch import load as load_bytes

    from streamcast import safefile
    from streamcast.errors import ModelFileError

    model = sc.fit(tiny_data, FitConfig(**{**TINY.__dict__, "ensemble": 2}))
    ar = model.net.config.ar
    shapes = [tuple(p.shape) for p in model.net.init_state(1)]
    assert shapes == [(1, 1, 8), (1, 1, 8), (1, 1, 8), (1, 1, 8), (1, ar)]  # h, c of each, one window
    state = StreamState(model)
    run(model, [Observations.from_records(records(hourly_frame(length=30)), model)], state)
    state.save(tmp_path / "s.state")
    raw = (tmp_path / "s.state").read_bytes()
    tensors, meta = load_bytes(raw), safefile.header(raw)
    tensors["hidden.5"] = tensors["hidden.4"].clone()  # each member its own window, as files were
    (tmp_path / "old.state").write_bytes(safefile.write(tensors, meta))
    with pytest.raises(ModelFileError, match="keeps 6 state parts per series where this streamcast keeps 5"):
        StreamState.load(tmp_path / "old.state", model)


def test_calendar_rows_kept_from_earlier_micro_batches_equal_computing_them_afresh():
    from streamcast.features import _calendar_by_distinct_time, calendar_features, calendar_names

    names = calendar_names("1h")
    hours = pl.Series("ts", [datetime(2024, 1, 15, h) for h in range(24)]).dt.replace_time_zone(
        "Europe/Berlin"
    )
    for part in (hours[:5], hours[3:9], hours[::-1], hours[7:8]):  # some rows kept, some new, repeats
        np.testing.assert_array_equal(_calendar_by_distinct_time(part, names), calendar_features(part, names))
    naive = hours.dt.replace_time_zone(None)  # the same instants' digits without a zone: other rows
    np.testing.assert_array_equal(_calendar_by_distinct_time(naive, names), calendar_features(naive, names))


@pytest.mark.parametrize("zone", [None, "Europe/Berlin"])
def test_times_handed_over_as_integers_give_the_calendar_rows_of_their_polars_column(zone):
    """`stream` hands its micro-batch's times to the features as int64 and their type
    (`TimeColumn`), without a polars Series per batch: the rows must be those of the Series."""
    from streamcast.features import _RECENT_CALENDAR, TimeColumn, _calendar_by_distinct_time, calendar_names
    from streamcast.stream.grid import Grid

    names = calendar_names("1h")
    grid = Grid("1h")
    start = int(datetime(2024, 3, 30, 20).timestamp() * 1e6)  # over Berlin's change to summer time
    ints = start + grid.step * np.array([0, 1, 1, 5, 2, 9, 9, 30, 3])
    for part in (ints[:1], ints[1:2], ints, ints[::-1], ints[7:8]):  # new times, kept ones, repeats
        column = grid.column(part, zone)
        series = pl.Series("timestamp", part).cast(pl.Datetime("us", zone))
        assert column.series().equals(series)
        _RECENT_CALENDAR.clear()
        from_series = _calendar_by_distinct_time(series, names, grid.step)
        _RECENT_CALENDAR.clear()
        np.testing.assert_array_equal(_calendar_by_distinct_time(column, names, grid.step), from_series)
        np.testing.assert_array_equal(_calendar_by_distinct_time(column, names, grid.step), from_series)
    steps = Grid("1i").column(np.array([4, 7]), None)
    assert steps.dtype == pl.Int64 and steps.series().to_list() == [4, 7]
    assert isinstance(steps, TimeColumn) and len(steps) == 2


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_one_step_of_each_series_is_served_exactly_as_the_general_walk_serves_it(cell, monkeypatch):
    """A stream's line at a time takes a short path through `run_series` (every series one step
    from a carried state, each forecast wanted): its forecasts, interval, naive blends and states
    must be the general walk's, bit for bit, for an ensemble too."""
    from streamcast import stepping
    from streamcast.fallback import NaiveServing

    data = sc.read_series(hourly_frame(series=4, length=80))
    config = FitConfig(**{**TINY.__dict__, "cell": cell, "epochs": 1, "ensemble": 2, "intervals": (0.1, 0.9)})
    model = sc.fit(data, config)
    inputs = model.inputs(data.frame)
    history = [np.zeros(0, dtype=np.int64)] * 4
    # Every series but its last row: the carried states the last rows then step from.
    cut = inputs.offsets[1:] - 1
    keep = np.concatenate([np.arange(a, b) for a, b in zip(inputs.offsets[:-1], cut, strict=True)])
    shorter = np.concatenate([[0], np.cumsum(cut - inputs.offsets[:-1])])
    _, carried = run_series(model.net, inputs.inputs[keep], shorter, history)
    last = inputs.inputs[cut]
    one_each = np.arange(5)  # offsets: each series one row
    serving = NaiveServing(
        np.array([False, True, False, True]), model.net.config.season, 0, np.array([0, 1.0, 0, 0.4])
    )
    args = (model.net, last, one_each, [np.array([0])] * 4)
    kwargs = {"initial": carried, "naive": serving, "intervals": model.intervals}
    short_out, short_state = run_series(*args, **kwargs)
    monkeypatch.setattr(stepping, "_one_step_each", lambda *a: False)  # the same batch, walked
    walk_out, walk_state = run_series(*args, **kwargs)
    assert model.intervals is not None and short_out.shape == (4, model.horizon, 3)
    assert torch.equal(short_out, walk_out)
    assert len(short_state) == len(walk_state) and all(
        torch.equal(a, b) for a, b in zip(short_state, walk_state, strict=True)
    )
