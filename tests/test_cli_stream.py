"""`streamcast stream` end to end: CliRunner for output, messages and exit codes; real processes and
pipes for latency, signals, and a run killed with SIGKILL then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.stream.state import StreamState
from tests.conftest import TINY, hourly_frame

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lines_for(frame) -> list[str]:
    """Headerless id,time,value lines, interleaved by time like a live feed."""
    return [
        f"{sid},{ts:%Y-%m-%d %H:%M},{value:.4f}"
        for sid, ts, value in frame.sort("timestamp", "series_id").iter_rows()
    ]


def run(model_path, args, text):
    return CliRunner().invoke(
        main, ["stream", "-m", str(model_path), *args], input=text, catch_exceptions=False
    )


def test_stream_prints_one_json_line_per_observation_with_its_target_times(model_path):
    result = run(model_path, [], "\n".join(lines_for(hourly_frame(length=30))) + "\n")
    assert result.exit_code == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == 90
    first = out[0]
    assert list(first) == ["series_id", "timestamp", "forecast", "timestamps", "warming_up"]
    assert (first["series_id"], first["timestamp"], first["warming_up"]) == (
        "s0",
        "2024-01-01T00:00:00",
        True,
    )
    assert first["timestamps"] == [f"2024-01-01T0{h}:00:00" for h in range(1, 7)]
    assert len(first["forecast"]) == 6 and all(isinstance(v, float) for v in first["forecast"])
    assert (
        result.stderr
        == "stream: 90 lines, accepted=90, skipped=0, filled=0, reset=0, replayed=0, ignored=0, evicted=0\n"
    )


def test_stream_csv_output_has_a_header_and_one_row_per_observation(model_path):
    text = "series_id,timestamp,value\ns0,2024-01-01 00:00,10\ns1,2024-01-01 00:00,20\n"
    result = run(model_path, ["--output-format", "csv"], text)
    rows = result.stdout.splitlines()
    assert rows[0] == "series_id,timestamp,warming_up,f1,f2,f3,f4,f5,f6"
    assert [r.split(",")[:3] for r in rows[1:]] == [
        ["s0", "2024-01-01T00:00:00", "true"],
        ["s1", "2024-01-01T00:00:00", "true"],
    ]
    assert all(len(r.split(",")) == 9 for r in rows[1:])


def test_bad_lines_are_reported_with_their_number_and_reason_and_counted(model_path):
    text = "\n".join(
        [
            "s0,2024-01-01 00:00,10",
            "s0,2024-01-01 01:00,abc",
            "s0,2024-01-01 01:00,inf",
            "s0,2024-01-01 01:00",
            "s0,yesterday,10",
            ",2024-01-01 01:00,10",
            "s0,2024-01-01 01:00,11",
            "s0,2024-01-01 01:00,12",
            "s0,2024-01-01 04:00,14",
            "s0,2024-01-03 04:00,14",
        ]
    )
    result = run(model_path, [], text)
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 4
    assert result.stderr.splitlines() == [
        "line 2: value 'abc' is not a number; skipped",
        "line 3: value is infinite; skipped",
        "line 4: expected 3 fields, got 2; skipped",
        "line 5: timestamp 'yesterday' is not a date (use ISO 8601 like 2024-01-31 13:00); skipped",
        "line 6: series id is missing; skipped",
        "line 8: series 's0': timestamp 2024-01-01T01:00:00 repeats the last one; skipped",
        "line 9: series 's0': gap of 2 periods after 2024-01-01T01:00:00; filled by linear interpolation",
        "line 10: series 's0': gap of 47 periods after 2024-01-01T04:00:00 is longer than --max-gap 24; state reset",
        "stream: 10 lines, accepted=4, skipped=6, filled=1, reset=1, replayed=0, ignored=0, evicted=0",
    ]


def test_strict_exits_1_at_the_first_bad_line_after_printing_the_good_ones(model_path):
    result = run(
        model_path, ["--strict"], "s0,2024-01-01 00:00,10\ns0,2024-01-01 01:00,x\ns0,2024-01-01 02:00,12\n"
    )
    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) == 1
    assert (
        result.stderr.splitlines()[-1]
        == "Error: line 2: value 'x' is not a number (--strict stops at the first bad line)"
    )
    assert result.stderr.splitlines()[-2].startswith("stream: 2 lines, accepted=1, skipped=0")


def test_json_lines_are_detected_and_an_unknown_key_is_reported_once(model_path):
    text = "\n".join(
        json.dumps({"series_id": "s0", "timestamp": f"2024-01-01T0{h}:00:00", "value": 10 + h, "note": "x"})
        for h in range(3)
    )
    result = run(model_path, [], text)
    assert len(result.stdout.splitlines()) == 3
    assert result.stderr.splitlines()[0] == "line 1: unknown column 'note'; ignored"
    assert result.stderr.splitlines()[-1].endswith("ignored=1, evicted=0")


@pytest.fixture(scope="module")
def single_model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream_single") / "single.streamcast"
    sc.save(sc.fit(sc.read_series(hourly_frame(series=1)), TINY), path)
    return path


def test_bare_values_step_on_from_start_one_period_at_a_time(single_model_path):
    result = run(single_model_path, ["--start", "2024-03-01T00:00"], "10\n11\n\n12\n")
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(o["series_id"], o["timestamp"]) for o in out] == [
        ("s0", "2024-03-01T00:00:00"),
        ("s0", "2024-03-01T01:00:00"),
        ("s0", "2024-03-01T02:00:00"),
    ]


def test_lines_without_an_id_for_a_model_of_many_series_are_skipped_and_the_stream_goes_on(model_path):
    result = run(model_path, [], "10\ns0,2024-01-01 00:00,10\n,2024-01-01 01:00,11\ns0,2024-01-01 01:00,11\n")
    assert result.exit_code == 0
    assert [json.loads(line)["timestamp"] for line in result.stdout.splitlines()] == [
        "2024-01-01T00:00:00",
        "2024-01-01T01:00:00",
    ]
    assert result.stderr.splitlines()[0] == (
        "line 1: series id is missing (the model forecasts 3 series: send id,time,value); skipped"
    )
    assert result.stderr.splitlines()[1] == "line 3: series id is missing; skipped"


@pytest.mark.parametrize(
    ("args", "header", "message"),
    [
        ([], "meter,ts,value", "has no series id (it has: meter, ts, value)"),
        (
            ["--id-col", "meter"],
            "meter,moment,value",
            "has no time column (it has: meter, moment, value); pass --time-col",
        ),
        (["--id-col", "nope"], "series_id,timestamp,value", "--id-col 'nope' is not in the header on line 1"),
        (["--time-col", "nope"], "series_id,timestamp,value", "--time-col 'nope' is not in the header"),
    ],
)
def test_a_header_that_cannot_be_mapped_stops_before_any_line_is_misread(model_path, args, header, message):
    result = run(model_path, args, f"{header}\ns0,2024-01-01 00:00,10\n")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


def test_renamed_columns_are_mapped_by_the_options(model_path):
    result = run(
        model_path, ["--id-col", "meter", "--time-col", "ts"], "meter,ts,value\ns1,2024-01-01 00:00,10\n"
    )
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["series_id"] for line in result.stdout.splitlines()] == ["s1"]


def test_json_objects_without_an_id_for_a_model_of_many_series_are_skipped(model_path):
    objects = [
        {"timestamp": "2024-01-01T00:00", "value": 1.0},
        {"series_id": "s0", "timestamp": "2024-01-01T00:00", "value": 1.0},
        {"timestamp": "2024-01-01T01:00", "value": 2.0},
    ]
    result = run(model_path, [], "".join(json.dumps(o) + "\n" for o in objects))
    assert result.exit_code == 0
    assert [json.loads(line)["series_id"] for line in result.stdout.splitlines()] == ["s0"]
    assert result.stderr.splitlines()[-1].startswith("stream: 3 lines, accepted=1, skipped=2")


def test_a_resumed_stream_keeps_the_time_zone_it_started_in(model_path, tmp_path):
    state = str(tmp_path / "live.state")
    first = run(model_path, ["--state", state, "--output-format", "csv"], "s0,2024-01-01T00:00,10\n")
    again = run(model_path, ["--state", state, "--output-format", "csv"], "s0,2024-01-01T01:00Z,11\n")
    assert first.exit_code == again.exit_code == 0
    assert again.stdout.splitlines()[1].split(",")[1] == "2024-01-01T01:00:00"


def test_the_layout_is_fixed_by_the_first_line_that_parses(model_path):
    result = run(model_path, [], "###\ns0,2024-01-01 00:00,10\n5\n")
    assert len(result.stdout.splitlines()) == 1
    assert result.stderr.splitlines()[:2] == [
        "line 1: series id is missing (the model forecasts 3 series: send id,time,value); skipped",
        "line 3: expected 3 fields, got 1; skipped",
    ]


def test_timestamps_with_an_offset_and_epoch_seconds_come_out_in_utc(model_path):
    stamp = int(datetime(2024, 1, 1, 1).timestamp() - datetime(2024, 1, 1).timestamp()) + 1704067200  # 01:00Z
    result = run(model_path, [], f"s0,2024-01-01T01:00:00+01:00,10\ns0,{stamp},11\n")
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["timestamp"] for o in out] == ["2024-01-01T00:00:00+00:00", "2024-01-01T01:00:00+00:00"]
    assert out[0]["timestamps"][0] == "2024-01-01T01:00:00+00:00"


def test_warmup_data_pre_warms_every_series_state(model_path, tmp_path):
    hourly_frame().filter(pl.col("timestamp") < datetime(2024, 1, 7, 6)).write_csv(tmp_path / "history.csv")
    result = run(model_path, ["--warmup", str(tmp_path / "history.csv")], "s0,2024-01-07 06:00,12\n")
    assert result.stderr.splitlines()[0] == f"warmed 3 series from {tmp_path / 'history.csv'}"
    assert json.loads(result.stdout)["warming_up"] is False


def test_a_state_file_of_another_model_is_refused_with_one_line(model_path, tmp_path, tiny_data):
    other = tmp_path / "other.streamcast"
    sc.save(sc.fit(tiny_data, sc.FitConfig(hidden_size=8, epochs=1, horizon=6, seed=3)), other)
    state = tmp_path / "s.state"
    assert run(other, ["--state", str(state)], "s0,2024-01-01 00:00,10\n").exit_code == 0
    result = run(model_path, ["--state", str(state)], "s0,2024-01-01 01:00,10\n")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: {state}: this state file was written for another model (fingerprint sha256:"
    )
    assert result.stderr.count("\n") == 1


def test_options_that_cannot_work_are_usage_errors(model_path):
    assert (
        run(model_path, ["--save-model", "x.streamcast"], "").stderr
        == "Error: --save-model writes the model adapted by --learn: add --learn\n"
    )
    result = run(model_path, [], "id,when,reading\ns0,2024-01-01 00:00,1\n")
    assert result.exit_code == 2
    assert (
        result.stderr
        == "Error: line 1 looks like a header but has no target column 'value' (columns: id, when, reading); pass --target COL\n"
    )


def test_learn_writes_an_adapted_model_at_checkpoints(model_path, tmp_path):
    adapted = tmp_path / "adapted.streamcast"
    lines = lines_for(hourly_frame(length=60))
    result = run(
        model_path,
        ["--learn", "--learn-every", "32", "--learn-window", "8", "--save-model", str(adapted)],
        "\n".join(lines),
    )
    assert result.exit_code == 0, result.stderr
    model = sc.load(adapted)
    assert model.info["online_learning"]["steps"] > 0
    before = sc.load(model_path).net.state_dict()
    assert any(not v.equal(before[k]) for k, v in model.net.state_dict().items())


def spawn(model_path, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "streamcast", "stream", "-m", str(model_path), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )


def test_a_slow_producer_gets_each_forecast_before_writing_the_next_line(model_path):
    proc = spawn(model_path)
    try:
        for h in range(3):
            proc.stdin.write(f"s0,2024-01-01 0{h}:00,{10 + h}\n".encode())
            proc.stdin.flush()
            line = proc.stdout.readline()  # hangs if the stream waited for a batch to fill
            assert json.loads(line)["timestamp"] == f"2024-01-01T0{h}:00:00"
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert proc.returncode == 0


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_finishes_the_batch_checkpoints_and_exits(model_path, tmp_path, tiny_model, sig, code):
    state = tmp_path / "s.state"
    proc = spawn(model_path, "--state", str(state), "--checkpoint-every", "1000")
    for h in range(2):
        proc.stdin.write(f"s0,2024-01-01 0{h}:00,{10 + h}\n".encode())
        proc.stdin.flush()
        proc.stdout.readline()
    proc.send_signal(sig)
    assert proc.wait(30) == code
    assert proc.stderr.read().decode().splitlines()[-1].startswith("stream: 2 lines, accepted=2")
    assert StreamState.load(state, tiny_model).accepted == 2


def test_a_run_killed_with_sigkill_and_resumed_matches_an_uninterrupted_run(model_path, tmp_path):
    lines = lines_for(hourly_frame(length=40))
    text = "\n".join(lines) + "\n"
    expected = run(model_path, [], text).stdout.splitlines()

    state = tmp_path / "s.state"
    first = spawn(model_path, "--state", str(state), "--checkpoint-every", "30")
    got = []
    for line in lines[:75]:  # checkpoints after 30 and 60 observations, then 15 more
        first.stdin.write((line + "\n").encode())
        first.stdin.flush()
        got.append(first.stdout.readline().decode().rstrip("\n"))
    first.kill()
    first.wait(30)

    resumed = subprocess.run(
        [sys.executable, "-m", "streamcast", "stream", "-m", str(model_path), "--state", str(state)],
        input=text.encode(),  # the producer starts over from the beginning
        capture_output=True,
        cwd=ROOT,
        check=True,
    )
    after = resumed.stdout.decode().splitlines()
    assert "replayed=60" in resumed.stderr.decode()
    assert_same_forecasts(got, expected[:75])  # nothing before the kill was wrong
    assert_same_forecasts(after, expected[60:])  # the replay window is 60..75: recomputed, identical


def assert_same_forecasts(lines_a: list[str], lines_b: list[str]) -> None:
    """Equal up to float rounding (a batch and single ticks sum in different orders)."""
    a, b = [json.loads(x) for x in lines_a], [json.loads(x) for x in lines_b]
    keys = ("series_id", "timestamp", "timestamps", "warming_up")
    assert [[x[k] for k in keys] for x in a] == [[x[k] for k in keys] for x in b]
    np.testing.assert_allclose([x["forecast"] for x in a], [x["forecast"] for x in b], rtol=1e-5)


def test_a_missing_input_file_is_a_data_error(model_path, tmp_path):
    result = run(model_path, [str(tmp_path / "nope.csv")], "")
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"Error: input '{tmp_path / 'nope.csv'}' not found: give a file of lines, or - (the default) for stdin\n"
    )


@pytest.mark.parametrize("option", ["--state", "--save-model"])
def test_a_folder_as_state_or_model_file_is_refused_before_reading(model_path, tmp_path, option):
    args = [option, str(tmp_path), *(["--learn"] if option == "--save-model" else [])]
    result = run(model_path, args, "s0,2024-01-01 00:00,10\n")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"Error: {option} file '{tmp_path}' is a folder; give a file path\n"


def test_mixed_naive_and_zoned_timestamps_print_the_same_however_lines_are_batched(model_path):
    text = "s0,2024-01-01T00:00,10\ns0,2024-01-01T01:00Z,11\ns0,2024-01-01T02:00,12\n"
    bulk = run(model_path, ["--output-format", "csv"], text)
    single = run(model_path, ["--output-format", "csv", "--batch-lines", "1"], text)
    assert bulk.exit_code == single.exit_code == 0

    def stamps(out):
        return [line.split(",")[:3] for line in out.splitlines()]

    assert stamps(bulk.stdout) == stamps(single.stdout)
    # The first line fixes the zone: naive, so every line is written naive.
    assert [line.split(",")[1] for line in bulk.stdout.splitlines()[1:]] == [
        "2024-01-01T00:00:00",
        "2024-01-01T01:00:00",
        "2024-01-01T02:00:00",
    ]


def test_a_bad_first_line_does_not_fix_the_format_for_the_lines_after_it(model_path):
    objects = [
        json.dumps({"series_id": "s0", "timestamp": f"2024-01-01 0{h}:00", "value": 10 + h}) for h in range(3)
    ]
    result = run(model_path, [], "hello world\n" + "\n".join(objects) + "\n")
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 3
    assert "stream: 4 lines, accepted=3, skipped=1" in result.stderr


@pytest.mark.parametrize("first", ["series_id,timestamp,value\n", ""])
def test_a_byte_order_mark_at_the_start_is_not_part_of_the_first_line(model_path, first):
    text = "\ufeff" + first + "s0,2024-01-01 00:00,10\ns0,2024-01-01 01:00,11\n"
    result = CliRunner().invoke(main, ["stream", "-m", str(model_path)], input=text.encode("utf-8"))
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["series_id"] for line in result.stdout.splitlines()] == ["s0", "s0"]


def test_every_n_still_counts_and_checkpoints_every_observation(model_path, tmp_path):
    state = tmp_path / "every.state"
    text = "\n".join(lines_for(hourly_frame(length=10))) + "\n"
    result = run(model_path, ["--every", "2", "--state", str(state)], text)
    assert len(result.stdout.splitlines()) == 15  # every 2nd of 10 ticks of 3 series
    assert "accepted=30" in result.stderr
    assert StreamState.load(state, sc.load(model_path)).accepted == 30


def test_python_only_number_spellings_are_not_numbers(model_path):
    result = run(model_path, [], "s0,2024-01-01 00:00,1_000\n")
    assert result.stdout == ""
    assert "line 1: value '1_000' is not a number; skipped" in result.stderr


def test_strict_does_not_stop_at_an_ignored_unknown_column(model_path):
    text = "series_id,timestamp,value,note\ns0,2024-01-01 00:00,10,x\n"
    result = run(model_path, ["--strict"], text)
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1


def test_save_model_over_the_served_model_is_refused(model_path):
    result = run(model_path, ["--learn", "--save-model", str(model_path)], "")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --save-model is the -m model itself")


def test_a_line_longer_than_a_mebibyte_is_skipped_and_the_stream_goes_on(model_path):
    proc = spawn(model_path)
    huge = b"s0,2024-01-01 00:00," + b"9" * (3 << 20) + b"\n"
    out, err = proc.communicate(huge + b"s0,2024-01-01 01:00,11\n", timeout=60)
    assert proc.returncode == 0, err
    assert [json.loads(line)["timestamp"] for line in out.decode().splitlines()] == ["2024-01-01T01:00:00"]
    assert "line 1: longer than 1 MiB; skipped" in err.decode()


def test_a_reader_that_closes_stdout_stops_the_stream_with_an_error(model_path, tmp_path):
    state = tmp_path / "closed.state"
    proc = spawn(model_path, "--state", str(state), "--batch-lines", "1")
    proc.stdout.close()  # the consumer went away
    lines = "".join(f"{line}\n" for line in lines_for(hourly_frame(length=40)))
    try:
        proc.stdin.write(lines.encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert err.splitlines()[-1].startswith(
        "Error: stdout was closed by its reader; stopped without a final checkpoint"
    )


def test_strict_names_the_bad_value_not_an_ignored_key_on_the_same_line(model_path):
    line = json.dumps({"series_id": "s0", "timestamp": "2024-01-01 00:00", "value": "abc", "note": "x"})
    result = run(model_path, ["--strict"], line + "\n")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "Error: line 1: value 'abc' is not a number (--strict stops at the first bad line)"
    )


def test_the_kept_time_texts_give_the_same_lines_when_they_overflow(model_path, monkeypatch):
    from streamcast.stream import output

    text = "\n".join(lines_for(hourly_frame(length=30))) + "\n"
    for args in ([], ["--output-format", "csv"], ["--batch-lines", "1"]):
        plenty = run(model_path, args, text).stdout
        monkeypatch.setattr(output, "MAX_CACHED_TIMES", 2)  # cleared again and again
        assert run(model_path, args, text).stdout == plenty
        monkeypatch.undo()
