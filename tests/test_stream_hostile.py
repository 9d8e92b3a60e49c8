"""Crafted input an attacker would send to `stream`: each line is skipped with its reason, the stream
goes on, and nothing ends in a traceback (issue 13)."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.stream_input import MAX_LINE_BYTES, LineReader
from tests.conftest import TINY, hourly_frame

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GOOD = "s0,2024-01-01 00:00,10\n"
GOOD_JSON = '{"series_id": "s0", "timestamp": "2024-01-01T00:00", "value": 10}\n'


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("hostile") / "model.streamcast"
    sc.save(tiny_model, path)
    return path


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
    from streamcast.stream_input import LineParser

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
    lines = "".join(json.dumps({"timestamp": f"2024-01-01T{h:02d}:00", "value": h}) + "\n" for h in range(3))
    result = run(single_model_path, "42\n" + lines)
    assert result.exit_code == 0
    assert len(forecasts(result)) == 3


@pytest.mark.parametrize("output_format, missing", [("jsonl", "null"), ("csv", "")])
def test_stream_output_writes_a_forecast_that_is_not_finite_as_missing(output_format, missing):
    import numpy as np

    from streamcast.stream_output import formatter

    values = np.array([[1.5, np.nan, np.inf]])
    assert formatter(output_format, 3, ()).numbers(values) == [f"1.5,{missing},{missing}"]
