"""Crafted input an attacker would send to `stream`: each line is skipped with its reason, the stream
goes on, and nothing ends in a traceback (issue 13)."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.stream.input import MAX_LINE_BYTES, LineReader
from streamcast.stream.state import StreamState
from tests.conftest import TINY, hourly_frame

GOOD = "s0,2024-01-01 00:00,10\n"
GOOD_JSON = '{"series_id": "s0", "timestamp": "2024-01-01T00:00", "value": 10}\n'


@pytest.fixture(scope="module")
def single_model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile_single") / "single.streamcast"
    sc.save(sc.fit(sc.read_series(hourly_frame(series=1)), TINY), path)
    return path


def run(model_path, text, *args):
    return CliRunner().invoke(
        main, ["stream", "-m", str(model_path), *args], input=text, catch_exceptions=False
    )


def forecasts(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_stream_skips_line_with_400_digit_timestamp(model_path):
    result = run(model_path, '{"series_id": "s0", "timestamp": ' + "9" * 400 + ', "value": 1}\n' + GOOD_JSON)
    assert result.exit_code == 0
    assert [f["timestamp"] for f in forecasts(result)] == ["2024-01-01T00:00:00"]
    assert result.stderr.startswith("line 1: timestamp 99999")
    assert "is out of range; skipped" in result.stderr.splitlines()[0]


def test_stream_skips_json_nested_100000_deep_and_keeps_the_good_line_before_it(model_path):
    result = run(model_path, GOOD_JSON + "[" * 100_000 + "\n")
    assert result.exit_code == 0
    assert len(forecasts(result)) == 1
    assert result.stderr.splitlines()[0] == "line 2: not valid JSON (nested too deeply); skipped"


@pytest.mark.parametrize("sid", ["\\ud800", "\\udfff", "a\\u0000b", "a\\nb"])
def test_stream_skips_json_id_that_no_output_can_carry(model_path, tmp_path, sid):
    line = '{"series_id": "' + sid + '", "timestamp": "2024-01-01T00:00", "value": 1}\n'
    state = tmp_path / "live.state"
    for hour in ("01", "02"):  # a restart with the state file goes on as well
        result = run(model_path, line + GOOD_JSON.replace("00:00", f"{hour}:00"), "--state", str(state))
        assert result.exit_code == 0
        assert "line 1: series id" in result.stderr
        assert [f["series_id"] for f in forecasts(result)] == ["s0"]


@pytest.mark.parametrize("value", ["1e308", "-1e308", "1e16", "123" * 200])
def test_stream_skips_value_out_of_range_so_that_forecasts_stay_finite(model_path, value):
    lines = f"s0,2024-01-01 00:00,{value}\n" + "".join(
        f"s0,2024-01-01 {h:02d}:00,{10 + h}\n" for h in range(1, 24)
    )
    result = run(model_path, lines)
    assert result.exit_code == 0
    assert "line 1: value" in result.stderr.splitlines()[0]
    out = forecasts(result)  # json.loads refuses NaN only when asked: check every number
    assert len(out) == 23
    assert all(math.isfinite(x) for f in out for x in f["forecast"])


def test_stream_fills_covariate_out_of_range_instead_of_using_it():
    from streamcast.reading import Columns
    from streamcast.stream.input import LineParser

    parser = LineParser(Columns("id", "time", "value", ("temp",)), "1h", "x", series_count=2)
    obs = parser.parse(["id,time,value,temp", "a,2024-01-01 00:00,1,1e300"], 1)
    assert len(obs) == 1 and math.isnan(obs.covariates[0, 0])
    assert obs.events[0].kind == "filled"


def test_stream_skips_timestamp_out_of_the_datetime_range(model_path):
    result = run(model_path, "s0,9999-12-31 00:00,1\ns0,1000-01-01 00:00,1\n" + GOOD)
    assert result.exit_code == 0
    assert result.stderr.splitlines()[:2] == [
        "line 1: timestamp '9999-12-31T00:00:00' is out of range (years 1678 to 2261); skipped",
        "line 2: timestamp '1000-01-01T00:00:00' is out of range (years 1678 to 2261); skipped",
    ]
    assert len(forecasts(result)) == 1


def test_stream_skips_a_line_over_1_mib_even_when_it_arrives_in_one_read(model_path):
    long_line = "s0,2024-01-01 00:00," + "1" * (MAX_LINE_BYTES + MAX_LINE_BYTES // 2) + "\n"
    result = run(model_path, long_line + GOOD.replace("00:00", "01:00"))
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0] == "line 1: longer than 1 MiB; skipped"
    assert len(forecasts(result)) == 1


def test_line_reader_holds_every_line_to_the_limit_not_only_the_tail():
    import io

    body = b"a" * 10 + b"\n" + b"b" * (MAX_LINE_BYTES + 5) + b"\nc\n"
    reader = LineReader(io.BytesIO(body))
    lines = []
    while (got := reader.read()) is not None:
        lines += got[1]
    assert [len(line) for line in lines[:2]] == [10, len(lines[1])]
    assert lines[1] != "b" * (MAX_LINE_BYTES + 5) and lines[2] == "c"


@pytest.mark.parametrize("stray", ["date", "42", "{}", "id"])
def test_stream_a_stray_first_line_does_not_decide_the_format(single_model_path, stray):
    lines = "".join(f"2024-01-01 {h:02d}:00,{10 + h}\n" for h in range(4))
    result = run(single_model_path, f"{stray}\n{lines}")
    assert result.exit_code == 0, result.stderr
    assert [f["timestamp"] for f in forecasts(result)] == [f"2024-01-01T{h:02d}:00:00" for h in range(4)]
    assert result.stderr.startswith("line 1: ")


def test_stream_a_stray_first_line_before_json_lines_does_not_decide_the_format(single_model_path):
    lines = "".join(
        json.dumps({"timestamp": f"2024-01-01T{h:02d}:00", "value": h + 1}) + "\n" for h in range(3)
    )
    result = run(single_model_path, "42\n" + lines)
    assert result.exit_code == 0
    assert len(forecasts(result)) == 3


@pytest.mark.parametrize("output_format, missing", [("jsonl", "null"), ("csv", "")])
def test_stream_output_writes_a_forecast_that_is_not_finite_as_missing(output_format, missing):
    import numpy as np

    from streamcast.stream.output import formatter

    values = np.array([[1.5, np.nan, np.inf]])
    assert formatter(output_format, 3, ()).numbers(values) == [f"1.5,{missing},{missing}"]


def hours(sid: str, first: int, count: int, day: str = "2024-01-01") -> str:
    return "".join(f"{sid},{day} {h:02d}:00,{10 + h}\n" for h in range(first, first + count))


def test_stream_one_line_dated_far_ahead_does_not_make_later_lines_go_back(model_path, tmp_path):
    state = tmp_path / "live.state"
    text = hours("s0", 0, 3) + "s0,2200-12-31 00:00,1\n" + hours("s0", 3, 3)
    result = run(model_path, text, "--state", str(state))
    assert result.exit_code == 0
    assert [f["timestamp"][11:13] for f in forecasts(result)] == ["00", "01", "02", "03", "04", "05"]
    assert result.stderr.splitlines()[0].startswith(
        "line 4: series 's0': timestamp 2200-12-31T00:00:00 jumps 1551526 periods after 2024-01-01T02:00:00, "
        "more than --max-jump 1000; taken only if the next line follows it; skipped"
    )
    assert StreamState.load(state, sc.load(model_path)).last_time[0] < 2e15  # 2024, kept so on disk


def test_stream_a_jump_followed_by_its_next_line_resets_the_series_there(model_path):
    text = hours("s0", 0, 3) + hours("s0", 0, 3, day="2025-06-01")
    result = run(model_path, text, "--max-jump", "100")
    assert [f["timestamp"] for f in forecasts(result)][3:] == ["2025-06-01T01:00:00", "2025-06-01T02:00:00"]
    assert "line 5: series 's0': timestamp 2025-06-01T01:00:00 follows the jump" in result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        "stream: 6 lines, accepted=5, skipped=1, filled=0, reset=1"
    )


def test_stream_max_series_bounds_the_series_held_and_counts_the_evicted(model_path, tmp_path):
    state = tmp_path / "live.state"
    text = "".join(f"x{i},2024-01-01 00:00,{i % 7 + 1}\n" for i in range(300)) + hours("x299", 1, 2)
    result = run(model_path, text, "--max-series", "50", "--state", str(state), "-q", "--batch-lines", "64")
    assert result.exit_code == 0
    assert len(forecasts(result)) == 302
    assert result.stderr.splitlines()[-1].endswith("evicted=250")
    held = StreamState.load(state, sc.load(model_path))
    assert len(held) == 50 and "x299" in held.ids and "x0" not in held.ids


def test_stream_idle_evict_drops_silent_series_and_warmup_brings_them_back(model_path, tmp_path):
    state = tmp_path / "live.state"
    text = hours("s1", 0, 2) + hours("s0", 0, 12)
    result = run(model_path, text, "--idle-evict", "6h", "--state", str(state), "--batch-lines", "4")
    assert result.exit_code == 0
    assert result.stderr.splitlines()[-1].endswith("evicted=1")
    model = sc.load(model_path)
    assert StreamState.load(state, model).ids == ["s0"]
    hourly_frame().write_csv(tmp_path / "history.csv")
    again = run(model_path, "", "--state", str(state), "--warmup", str(tmp_path / "history.csv"))
    assert "warmed 2 series" in again.stderr  # s1 and s2: s0 is newer in the state
    assert sorted(StreamState.load(state, model).ids) == ["s0", "s1", "s2"]


def test_stream_eviction_keeps_online_learning_on_the_right_series(model_path, tmp_path):
    text = "".join(hours(f"s{i}", 0, 20) for i in range(3))
    result = run(
        model_path,
        text,
        "--learn",
        "--learn-every",
        "8",
        "--learn-window",
        "4",
        "--max-series",
        "1",
        "--batch-lines",
        "5",
    )
    assert result.exit_code == 0, result.stderr
    assert len(forecasts(result)) == 60


@pytest.mark.parametrize("value", ["0", "-1h", "soon"])
def test_stream_idle_evict_that_is_not_a_duration_is_a_usage_error(model_path, value):
    result = run(model_path, "", "--idle-evict", value)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "--idle-evict" in result.stderr


@pytest.mark.parametrize("start", ["9999-12-31T00:00", "0001-01-01"])
def test_stream_start_out_of_the_datetime_range_is_a_usage_error(single_model_path, start):
    result = run(single_model_path, "5\n", "--start", start)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: --start {start!r} is out of range: give a time in the years 1678 to 2261\n"
    )


def test_stream_reports_at_most_100_unknown_keys_however_many_a_producer_invents(model_path):
    lines = "".join(
        json.dumps(
            {
                "series_id": "s0",
                "timestamp": f"2024-01-01T{h:02d}:00",
                "value": h + 1,  # positive: the tiny model forecasts in logs
                **{f"k{h}_{j}": j for j in range(20)},
            }
        )
        + "\n"
        for h in range(12)
    )
    result = run(model_path, lines)
    assert result.exit_code == 0 and len(forecasts(result)) == 12
    assert result.stderr.splitlines()[-1].endswith("ignored=100, evicted=0")
    assert "later unknown keys are ignored silently" in result.stderr.splitlines()[-2]


def test_stream_state_is_one_streams_and_its_killed_checkpoint_temporaries_are_removed(model_path, tmp_path):
    from streamcast.locking import output_lock

    state = tmp_path / "live.state"
    stale = tmp_path / ".live.state.k1ll3d9x.tmp"  # a stream killed while checkpointing leaves one
    stale.write_bytes(b"")
    with output_lock(str(state), 10):  # another stream holds the state file
        result = run(model_path, GOOD, "--state", str(state))
    assert result.exit_code == 75
    assert result.stderr == (
        f"Error: another stream is using the state file {state} (its lock {tmp_path}/.live.state.lock is held); "
        "stop that stream first, or pass another --state file\n"
    )
    result = run(model_path, GOOD, "--state", str(state))
    assert result.exit_code == 0 and len(forecasts(result)) == 1
    assert not stale.exists() and state.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--checkpoint-seconds", "nan"], "--checkpoint-seconds must be a positive number of seconds"),
        (["--checkpoint-seconds", "0"], "--checkpoint-seconds must be a positive number of seconds"),
        (["--learn", "--learn-rate", "inf"], "--learn-rate must be a positive number"),
        (["--learn", "--learn-rate", "nan"], "--learn-rate must be a positive number"),
    ],
)
def test_stream_options_that_are_not_numbers_to_use_are_usage_errors(model_path, args, message):
    result = run(model_path, GOOD, *args)
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}\n"


def test_forecast_lock_timeout_that_is_not_a_number_is_a_usage_error(model_path, tmp_path):
    result = CliRunner().invoke(
        main, ["forecast", "-m", str(model_path), "-o", str(tmp_path / "o.csv"), "--lock-timeout", "nan"]
    )
    assert result.exit_code == 2
    assert result.stderr == "Error: --lock-timeout must be >= 0 seconds\n"
