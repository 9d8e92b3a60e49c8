"""`stream --watch`: observations scored against their one-step forecasts, anomalies flagged; the
watch carried through checkpoints, kept out of online learning, and its false-alarm rate in backtest."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

import numpy as np
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.errors import UsageError
from streamcast.online import LearnConfig
from streamcast.stream.state import StreamState
from tests.conftest import TINY, hourly_frame
from tests.test_cli_stream import lines_for, run

START = datetime(2024, 1, 1)  # where hourly_frame starts
SPIKES = {"s0": 120, "s1": 180, "s2": 90}  # hour of each series' injected spike
SHIFT = ("s1", 240)  # s1 moves 6 up from this hour on


def injected(length: int = 300, seed: int = 7):
    """Three series with a spike of +8 each (noise 0.3, daily swing 3), and a level shift in s1."""
    frame = hourly_frame(series=3, length=length, seed=seed, growth=0.0)
    values = frame["value"].to_numpy().copy()
    for i, hour in enumerate(SPIKES.values()):
        values[i * length + hour] += 8.0
    values[length + SHIFT[1] : 2 * length] += 6.0
    return frame.with_columns(value=values)


WATCH = sc.StreamConfig(watch=sc.WatchConfig())


def watched(model, frame, config=WATCH, state=None):
    """(series, hour, error, score, anomaly) for every observation, in input order."""
    state = state if state is not None else StreamState(model)
    obs = sc.Observations.from_records(frame.to_dicts(), model)
    rows = []
    for batch in sc.stream(model, [obs], state, config):
        for f in batch:
            hour = int((f.timestamp - START).total_seconds() // 3600)
            rows.append((f.series_id, hour, f.error, f.score, f.anomaly))
    return rows


def flagged(rows):
    return {(sid, hour) for sid, hour, _, _, anomaly in rows if anomaly}


@pytest.fixture(scope="module")
def flat_model():
    """The tiny model fitted on series whose level stays, as the injected ones' does."""
    return sc.fit(sc.read_series(hourly_frame(growth=0.0)), replace(TINY, transform="log"))


def test_injected_spikes_and_the_start_of_a_level_shift_are_flagged(flat_model):
    got = flagged(watched(flat_model, injected()))
    assert set(SPIKES.items()) | {SHIFT} <= got
    # the shift is flagged until the state has followed it, then no longer
    assert ("s1", SHIFT[1] + 1) in got and ("s1", 299) not in got


def test_clean_data_are_rarely_flagged_and_every_observation_is_scored_once_a_spread_exists(tiny_model):
    rows = watched(tiny_model, hourly_frame(series=3, length=300, seed=7))
    assert len(flagged(rows)) <= 0.01 * len(rows)
    for sid in ("s0", "s1", "s2"):
        errors = [r[2] for r in rows if r[0] == sid]
        scores = [r[3] for r in rows if r[0] == sid]
        assert errors[0] is None and None not in errors[1:]  # nothing was forecast for the first value
        assert scores[:2] == [None, None] and None not in scores[2:]  # the first error starts the spread


def test_the_score_is_the_error_in_units_of_the_recent_error_spread(tiny_model):
    rows = watched(tiny_model, hourly_frame(series=1, length=200, seed=2))
    errors = np.array([r[2] for r in rows[2:]])
    scores = np.array([r[3] for r in rows[2:]])
    spread = errors / scores
    assert np.all(spread > 0)
    # a spread of recent absolute errors: about their mean absolute size, read as a normal's sigma
    assert 0.5 < spread[-1] / (np.abs(errors[-100:]).mean() * np.sqrt(np.pi / 2)) < 2


def test_a_quantile_model_flags_an_observation_far_outside_its_interval(tiny_data):
    model = sc.fit(tiny_data, replace(TINY, quantiles=(0.1, 0.5, 0.9), epochs=8))
    got = flagged(watched(model, injected()))
    assert set(SPIKES.items()) <= got


def test_the_watch_resumes_from_a_checkpoint_as_if_never_stopped(tiny_model, tmp_path):
    frame = injected(length=200)
    whole = watched(tiny_model, frame)
    state = StreamState(tiny_model)
    early = frame.filter(frame["timestamp"] < frame["timestamp"][100])
    first = watched(tiny_model, early, state=state)
    state.save(tmp_path / "s.state")
    resumed = StreamState.load(tmp_path / "s.state", tiny_model)
    later = frame.filter(frame["timestamp"] >= frame["timestamp"][100])
    second = watched(tiny_model, later, state=resumed)
    for a, b in zip(first + second, sorted(whole, key=lambda r: (r[1] >= 100, r[0], r[1])), strict=True):
        assert a[:2] == b[:2] and a[4] == b[4]
        assert (a[2] is None, a[3] is None) == (b[2] is None, b[3] is None)
        if a[3] is not None:
            assert a[2] == pytest.approx(b[2], rel=1e-6, abs=1e-9) and a[3] == pytest.approx(b[3], rel=1e-6)


def test_a_state_file_written_without_the_watch_loads_and_scores_from_the_next_value(tiny_model, tmp_path):
    frame = hourly_frame(series=2, length=60, seed=4)
    state = StreamState(tiny_model)
    watched(tiny_model, frame.filter(frame["timestamp"] < frame["timestamp"][30]), sc.StreamConfig(), state)
    state.save(tmp_path / "old.state")
    resumed = StreamState.load(tmp_path / "old.state", tiny_model)
    rows = watched(tiny_model, frame.filter(frame["timestamp"] >= frame["timestamp"][30]), state=resumed)
    for sid in ("s0", "s1"):
        errors = [r[2] for r in rows if r[0] == sid]
        assert errors[0] is None and None not in errors[1:]


def test_learning_never_trains_on_a_flagged_observation(tiny_model):
    frame = injected(length=200)
    config = sc.StreamConfig(watch=sc.WatchConfig(), learn=LearnConfig(window=8, every=10_000))
    state = StreamState(tiny_model)
    t = frame["timestamp"]
    spike = SPIKES["s0"]
    with_spike = watched(tiny_model, frame.filter(t <= t[spike + 3]), config, state)
    assert ("s0", spike) in flagged(with_spike)
    after = watched(tiny_model, frame.filter((t > t[spike + 3]) & (t <= t[spike + 20])), config, state)
    assert ("s0", spike) not in flagged(after)
    s = state.index["s0"]
    scaled_spike = (frame["value"][spike] - state.loc[s]) / state.scale[s]
    buffered = state.learner.buffer[s][:, 0]  # what the next update trains on
    assert len(buffered) == 17  # the window restarted after the micro-batch that held the spike
    assert not np.isclose(buffered, scaled_spike).any()
    other = state.learner.buffer[state.index["s1"]]
    assert len(other) > 17  # a series without an anomaly in those batches kept its window


def test_anomaly_z_must_be_positive():
    with pytest.raises(UsageError, match="--anomaly-z"):
        sc.WatchConfig(z=0)


def test_watch_adds_error_score_and_anomaly_to_every_json_line(model_path):
    result = run(model_path, ["--watch"], "\n".join(lines_for(hourly_frame(length=30))) + "\n")
    assert result.exit_code == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert list(out[0])[-3:] == ["error", "score", "anomaly"]
    assert (out[0]["error"], out[0]["score"], out[0]["anomaly"]) == (None, None, False)
    assert isinstance(out[3]["error"], float) and out[3]["score"] is None  # s0's second value
    assert isinstance(out[6]["error"], float) and isinstance(out[6]["score"], float)
    assert result.stderr.rstrip().endswith("evicted=0, anomalies=0")


def test_watch_csv_rows_end_with_error_score_and_anomaly(model_path):
    result = run(
        model_path, ["--watch", "--output-format", "csv"], "\n".join(lines_for(hourly_frame(length=5))) + "\n"
    )
    header, first, *rest = result.stdout.splitlines()
    assert header.endswith(",f6,error,score,anomaly")
    assert first.endswith(",,,false") and rest[-1].endswith(",false") and ",," not in rest[-1]
    assert len(rest) == 14
    assert len(rest[-1].split(",")) == len(header.split(","))


def test_only_anomalies_prints_just_the_flagged_lines_and_counts_them(model_path):
    text = "\n".join(lines_for(injected())) + "\n"
    everything = [json.loads(line) for line in run(model_path, ["--watch"], text).stdout.splitlines()]
    result = run(model_path, ["--only-anomalies"], text)
    assert result.exit_code == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out == [line for line in everything if line["anomaly"]]
    assert {(o["series_id"], o["timestamp"]) for o in out} >= {("s0", "2024-01-06T00:00:00")}
    assert result.stderr.rstrip().endswith(f"anomalies={len(out)}")


def test_anomalies_are_printed_whatever_every_says(model_path):
    text = "\n".join(lines_for(injected())) + "\n"
    result = run(model_path, ["--anomaly-z", "4", "--every", "1000"], text)
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out and all(o["anomaly"] for o in out)


def test_a_bad_anomaly_z_is_one_line_and_exit_2(model_path):
    result = CliRunner().invoke(main, ["stream", "-m", str(model_path), "--anomaly-z", "-1"], input="")
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("--anomaly-z must be a positive number of standard deviations")
    )


def test_backtest_reports_how_often_the_flag_fires(model_path, tmp_path):
    data = tmp_path / "clean.csv"
    hourly_frame(series=3, length=200, seed=7).write_csv(data)
    result = CliRunner().invoke(
        main,
        ["backtest", "-m", str(model_path), str(data), "--anomaly-z", "4", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    alarms = json.loads(result.stdout)["anomalies"]
    assert alarms["z"] == 4 and alarms["scored"] == 3 * (200 - 48)  # all but the warm-up (two days)
    assert alarms["rate"] == alarms["flagged"] / alarms["scored"] <= 0.01
    text = CliRunner().invoke(main, ["backtest", "-m", str(model_path), str(data), "--anomaly-z", "4"])
    assert f"anomaly flag (z 4): {alarms['flagged']} of 456 scored observations" in text.stderr


def test_an_evicted_series_that_comes_back_starts_unscored_and_the_others_keep_their_spread(tiny_model):
    frame = hourly_frame(series=3, length=40, seed=5)
    config = sc.StreamConfig(watch=sc.WatchConfig(), max_series=2)
    state = StreamState(tiny_model)
    t = frame["timestamp"]
    watched(tiny_model, frame.filter(t < t[20]), config, state)  # s0 is evicted after its batch
    assert state.ids == ["s1", "s2"]
    rows = watched(tiny_model, frame.filter((t >= t[20]) & (frame["series_id"] != "s0")), config, state)
    assert all(r[3] is not None for r in rows)  # s1 and s2 carried their pending forecasts and spreads
    back = watched(tiny_model, frame.filter((t >= t[30]) & (frame["series_id"] == "s0")), config, state)
    assert back[0][2] is None and back[1][2] is not None


def test_a_state_file_with_damaged_watch_tensors_is_refused_in_one_line(tiny_model, tmp_path):
    from safetensors.torch import load as load_bytes

    from streamcast import safefile
    from streamcast.errors import ModelFileError

    state = StreamState(tiny_model)
    watched(tiny_model, hourly_frame(series=2, length=10), state=state)
    state.save(tmp_path / "s.state")
    raw = (tmp_path / "s.state").read_bytes()
    tensors, meta = load_bytes(raw), safefile.header(raw)
    tensors["watch.spread"] = -tensors["watch.spread"] - 1
    (tmp_path / "bad.state").write_bytes(safefile.write(tensors, meta))
    with pytest.raises(ModelFileError, match=r"the state file is damaged \(an anomaly spread is negative"):
        StreamState.load(tmp_path / "bad.state", tiny_model)


def test_watching_one_line_at_a_time_gives_the_scores_and_flags_of_one_bulk_batch(model_path):
    text = "\n".join(lines_for(injected(length=150))) + "\n"
    bulk = [json.loads(line) for line in run(model_path, ["--watch"], text).stdout.splitlines()]
    single = [
        json.loads(line)
        for line in run(model_path, ["--watch", "--batch-lines", "1"], text).stdout.splitlines()
    ]
    assert [(o["series_id"], o["timestamp"], o["anomaly"]) for o in single] == [
        (o["series_id"], o["timestamp"], o["anomaly"]) for o in bulk
    ]
    flagged_hours = {
        (o["series_id"], int((datetime.fromisoformat(o["timestamp"]) - START).total_seconds() // 3600))
        for o in bulk
        if o["anomaly"]
    }
    assert {("s0", SPIKES["s0"]), ("s2", SPIKES["s2"])} <= flagged_hours  # the spikes within 150 hours
    for a, b in zip(single, bulk, strict=True):
        for key in ("error", "score"):
            assert (a[key] is None) == (b[key] is None)
            if a[key] is not None:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5)


def test_backtest_anomaly_z_refuses_a_shard_in_one_line(model_path, tmp_path):
    data = tmp_path / "clean.csv"
    hourly_frame(series=2, length=100).write_csv(data)
    args = ["backtest", "-m", str(model_path), str(data), "--shard", "0/2", "--anomaly-z", "4"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.stderr == "Error: --anomaly-z streams all the data, not one shard: run it without --shard\n"
