"""`stream`: tick-by-tick equals batched, rules for bad input, checkpoints and restarts, real pipes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamcast as sc
from streamcast.cli import main
from streamcast.forecasting import forecast
from streamcast.model import CELLS
from streamcast.stream_input import Tick
from streamcast.streaming import Streamer
from streamcast.training import FitConfig
from tests.conftest import TINY, hourly_frame

START = datetime(2024, 1, 1)


def lines_for(frame: pl.DataFrame) -> list[str]:
    """The frame as headerless id,time,value lines, interleaved by time like a live feed."""
    rows = frame.sort("timestamp", "series_id").iter_rows()
    return [f"{sid},{ts:%Y-%m-%d %H:%M},{value}" for sid, ts, value in rows]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("stream") / "model.streamcast"
    sc.save(tiny_model, path)
    return path


def run(args, input_text):
    return CliRunner().invoke(main, args, input=input_text, catch_exceptions=False)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("conv", [0, 3])
def test_streaming_tick_by_tick_equals_the_batched_forecast(tiny_data, cell, conv):
    model = sc.fit(tiny_data, FitConfig(**{**TINY.__dict__, "cell": cell, "conv": conv, "epochs": 1}))
    streamer = Streamer(model)
    frame = tiny_data.frame
    last = None
    for i, (sid, ts, value) in enumerate(frame.iter_rows()):
        out = streamer.process([Tick(i + 1, sid, ts, value)])
        if sid == "s1":
            last = out[0]
    expected = forecast(model, tiny_data).filter(pl.col("series_id") == "s1")["forecast"].to_numpy()
    np.testing.assert_allclose(last.values[:, 0], expected, rtol=1e-5, atol=1e-5)


def test_one_micro_batch_equals_one_tick_at_a_time(tiny_model):
    frame = hourly_frame(length=60)
    ticks = [
        Tick(i + 1, sid, ts, v)
        for i, (sid, ts, v) in enumerate(frame.sort("timestamp", "series_id").iter_rows())
    ]
    batched = Streamer(tiny_model).process(ticks)
    single = Streamer(tiny_model)
    one_by_one = [f for t in ticks for f in single.process([t])]
    assert [f.line for f in batched] == [t.line for t in ticks]  # output order follows input order
    for a, b in zip(batched, one_by_one, strict=True):
        np.testing.assert_allclose(a.values, b.values, rtol=1e-5, atol=1e-5)


def test_stream_emits_one_json_line_per_observation(model_path):
    lines = lines_for(hourly_frame(length=30))
    result = run(["stream", "-m", str(model_path)], "\n".join(lines) + "\n")
    assert result.exit_code == 0
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == len(lines)
    first = out[0]
    assert first["series_id"] == "s0" and first["timestamp"] == "2024-01-01T00:00:00"
    assert len(first["forecast"]) == 6
    assert first["timestamps"] == [f"2024-01-01T0{h}:00:00" for h in range(1, 7)]
    assert first["warming_up"] is False
    assert result.stderr.strip().endswith("stream: accepted=90, skipped=0, filled=0, reset=0, replayed=0")


def test_stream_csv_output_has_the_forecast_columns(model_path):
    result = run(
        ["stream", "-m", str(model_path), "--output-format", "csv"],
        "series_id,timestamp,value\ns0,2024-01-01 00:00,10\n",
    )
    rows = result.stdout.splitlines()
    assert rows[0] == "series_id,origin,timestamp,step,forecast,warming_up"
    assert rows[1].startswith("s0,2024-01-01T00:00:00,2024-01-01T01:00:00,1,")
    assert len(rows) == 1 + 6


def test_every_n_emits_every_nth_tick_of_each_series(model_path):
    lines = lines_for(hourly_frame(series=1, length=10))
    result = run(["stream", "-m", str(model_path), "--every", "3"], "\n".join(lines))
    stamps = [json.loads(line)["timestamp"][11:13] for line in result.stdout.splitlines()]
    assert stamps == ["02", "05", "08"]


def test_bad_lines_are_reported_with_their_number_and_skipped(model_path):
    text = "\n".join(
        [
            "s0,2024-01-01 00:00,10",
            "s0,2024-01-01 01:00,abc",  # not a number
            "s0,2024-01-01 01:00,nan",  # NaN
            "garbage",  # one field: a bare value for the default series, not a number
            "s0,2024-01-01 01:00,11",
            "s0,2024-01-01 01:00,12",  # repeated timestamp
            "s0,2024-01-01 04:00,14",  # a 2-step gap: filled
            "s0,2024-01-03 04:00,14",  # a 47-step gap: reset
        ]
    )
    result = run(["stream", "-m", str(model_path)], text)
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 4
    err = result.stderr.splitlines()
    assert err[0] == "line 2: value 'abc' is not a number; line skipped"
    assert err[1] == "line 3: value is nan, not a finite number; line skipped"
    assert err[2].startswith("line 4: ")
    assert (
        err[3]
        == "line 6: timestamp 2024-01-01 01:00:00 is not after the series' last one (2024-01-01 01:00:00); line skipped"
    )
    assert err[4] == "line 7: gap of 2 steps in series 's0' filled by linear interpolation"
    assert err[5] == "line 8: gap of 47 steps in series 's0' is longer than --max-gap 24; its state was reset"
    assert err[-1] == "stream: accepted=4, skipped=4, filled=2, reset=1, replayed=0"


def test_strict_stops_at_the_first_bad_line(model_path):
    result = run(
        ["stream", "-m", str(model_path), "--strict"], "s0,2024-01-01 00:00,10\ns0,2024-01-01 01:00,x\n"
    )
    assert result.exit_code == 1
    assert result.stderr == "Error: line 2: value 'x' is not a number (--strict)\n"


def test_a_new_series_warms_up_on_its_own_scale(model_path):
    lines = [f"fresh,{(START + timedelta(hours=h)):%Y-%m-%d %H:%M},{1000 + h}" for h in range(60)]
    result = run(["stream", "-m", str(model_path), "--warmup-ticks", "48"], "\n".join(lines))
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["warming_up"] for o in out].index(False) == 47
    assert 900 < out[-1]["forecast"][0] < 1200  # in the series' own units, not the trained series'


def test_jsonl_input_and_a_value_without_time_takes_the_next_step(model_path):
    text = '{"series_id": "s0", "timestamp": "2024-01-01T00:00:00", "value": 10}\n{"series_id": "s0", "value": 11}\n'
    result = run(["stream", "-m", str(model_path)], text)
    stamps = [json.loads(line)["timestamp"] for line in result.stdout.splitlines()]
    assert stamps == ["2024-01-01T00:00:00", "2024-01-01T01:00:00"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    garbage=st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\n\r"), max_size=30
        ),
        max_size=15,
    )
)
def test_random_garbage_never_kills_the_stream_and_good_lines_still_forecast(model_path, garbage):
    good = lines_for(hourly_frame(series=1, length=5))
    mixed = []
    for i, line in enumerate(good):
        mixed.append(line)
        mixed.extend(garbage[i * 3 : i * 3 + 3])
    result = CliRunner().invoke(main, ["stream", "-m", str(model_path), "-q"], input="\n".join(mixed))
    assert result.exit_code == 0, result.stderr
    assert result.exception is None
    stamps = [
        json.loads(line)["timestamp"]
        for line in result.stdout.splitlines()
        if json.loads(line)["series_id"] == "s0"
    ]
    assert [s[:13] for s in stamps] == [f"2024-01-01T0{h}" for h in range(5)]


def spawn(model_path, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "streamcast", "stream", "-m", str(model_path), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=os.getcwd(),
    )


def test_a_slow_producer_gets_each_forecast_at_once_through_a_real_pipe(model_path):
    proc = spawn(model_path)
    try:
        for h in range(3):
            proc.stdin.write(f"s0,2024-01-01 0{h}:00,{10 + h}\n".encode())
            proc.stdin.flush()
            line = proc.stdout.readline()  # would hang if the stream waited for a batch to fill
            assert json.loads(line)["timestamp"] == f"2024-01-01T0{h}:00:00"
    finally:
        proc.stdin.close()
        proc.wait(20)
    assert proc.returncode == 0


def test_sigterm_checkpoints_and_exits_cleanly(model_path, tmp_path):
    state = tmp_path / "s.state"
    proc = spawn(model_path, "--state", str(state))
    proc.stdin.write(b"s0,2024-01-01 00:00,10\n")
    proc.stdin.flush()
    proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    assert proc.returncode == 0
    assert state.exists()
    assert "accepted=1" in proc.stderr.read().decode()


def test_a_run_killed_and_resumed_matches_an_uninterrupted_run(model_path, tmp_path):
    lines = lines_for(hourly_frame(length=40))
    text = ("\n".join(lines) + "\n").encode()
    whole = subprocess.run(
        [sys.executable, "-m", "streamcast", "stream", "-m", str(model_path)],
        input=text,
        capture_output=True,
        check=True,
    )
    expected = whole.stdout.decode().splitlines()

    state = tmp_path / "s.state"
    first = spawn(model_path, "--state", str(state), "--checkpoint-every", "30")
    got = []
    for line in lines[:75]:
        first.stdin.write((line + "\n").encode())
        first.stdin.flush()
        got.append(first.stdout.readline().decode().rstrip("\n"))
    deadline = time.time() + 10
    while not state.exists() and time.time() < deadline:
        time.sleep(0.05)
    first.kill()  # SIGKILL: no chance to checkpoint again
    first.wait(10)
    resumed = subprocess.run(
        [sys.executable, "-m", "streamcast", "stream", "-m", str(model_path), "--state", str(state)],
        input=text,
        capture_output=True,
        check=True,
    )
    after = resumed.stdout.decode().splitlines()
    replayed = int(resumed.stderr.decode().split("replayed=")[1].split()[0])
    assert replayed >= 60  # the last checkpoint saw at least 60 lines
    assert_same_forecasts(got[:replayed], expected[:replayed])  # nothing before the checkpoint is lost
    assert_same_forecasts(after, expected[replayed:])  # ... and the rest continues where it stopped


def assert_same_forecasts(lines_a: list[str], lines_b: list[str]) -> None:
    """Equal up to float rounding (a batch and single ticks sum in different orders)."""
    a, b = [json.loads(x) for x in lines_a], [json.loads(x) for x in lines_b]
    assert [(x["series_id"], x["timestamp"], x["timestamps"]) for x in a] == [
        (x["series_id"], x["timestamp"], x["timestamps"]) for x in b
    ]
    np.testing.assert_allclose([x["forecast"] for x in a], [x["forecast"] for x in b], rtol=1e-5)
