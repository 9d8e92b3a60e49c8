"""Inputs known in advance: `--future-covariate` and `--holidays` from reading to stream."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main as cli
from streamcast.errors import DataError, UsageError
from streamcast.features import build_inputs
from streamcast.known import holiday_flags
from streamcast.modelfile import read_metadata
from streamcast.reading import read_series
from streamcast.stream import engine
from streamcast.stream.engine import StreamConfig, stream
from streamcast.stream.input import Observations
from streamcast.stream.state import StreamState
from streamcast.stream.steady import steady_plan
from streamcast.training import FitConfig
from tests.conftest import TINY
from tests.test_cli_stream import run as run_stream

H = TINY.horizon
START = datetime(2024, 1, 1)


def weather_frame(series: int = 2, length: int = 120, future: int = H, seed: int = 0) -> pl.DataFrame:
    """Hourly load driven by a temperature that wanders; the last `future` rows of each series
    have the temperature (a forecast) and no load."""
    rng = np.random.default_rng(seed)
    temperature = np.cumsum(rng.normal(0, 1.0, length + future))
    frames = []
    for i in range(series):
        load = 50.0 + 10 * i - 2.0 * temperature + rng.normal(0, 0.3, length + future)
        load[length:] = np.nan
        frames.append(
            pl.DataFrame(
                {
                    "series_id": f"s{i}",
                    "timestamp": [START + timedelta(hours=h) for h in range(length + future)],
                    "load": load,
                    "temperature": np.round(temperature, 3),
                }
            )
        )
    return pl.concat(frames).with_columns(pl.col("load").fill_nan(None))


KNOWN = FitConfig(**{**TINY.__dict__, "future_covariates": ("temperature",)})


@pytest.fixture(scope="module")
def weather():
    return read_series(weather_frame(), target="load", future_covariates=["temperature"])


@pytest.fixture(scope="module")
def known_model(weather):
    return sc.fit(weather, KNOWN)


def test_read_series_keeps_the_rows_after_the_last_observation_as_future_values(weather):
    assert weather.frame.height == 2 * 120
    assert weather.future.shape == (2 * H, 3)
    assert weather.future["temperature"].null_count() == 0
    assert weather.future["timestamp"].min() == START + timedelta(hours=120)
    assert not any("dropped" in n for n in weather.notes)
    assert weather.columns.future_covariates == ("temperature",) and weather.columns.covariates == ()


def test_each_input_row_holds_the_next_horizon_values_of_the_future_covariate(known_model, weather):
    spec = known_model.spec
    assert spec.future_steps == H and spec.future_covariates == ("temperature",)
    config = known_model.net.config
    assert config.input_size == 1 + len(spec.calendar) + H
    # The direct path from each known value to the forecast of its own step, one weight per step.
    assert (config.known, config.known_at) == (1, 1 + len(spec.calendar))
    assert tuple(known_model.net.known.shape) == (1, H)
    inputs = build_inputs(weather.frame, spec, known_model.scaler)
    temp = weather.frame["temperature"].to_numpy()
    row = 10
    expected = (temp[row + 1 : row + 1 + H] - spec.future_loc[0]) / spec.future_scale[0]
    np.testing.assert_allclose(inputs.inputs[row, -H:], expected, rtol=1e-6)
    # The last row of a series: its window holds the last value when nothing follows it.
    last = 119
    np.testing.assert_allclose(
        inputs.inputs[last, -H:], (temp[last] - spec.future_loc[0]) / spec.future_scale[0]
    )


def test_forecast_uses_the_future_values_given_after_the_last_observation(known_model, weather):
    out = sc.forecast(known_model, weather)
    assert out.shape[0] == 2 * H
    assert out["timestamp"].min() == START + timedelta(hours=120)
    warmer = weather_frame().with_columns(
        pl.when(pl.col("load").is_null()).then(pl.col("temperature") + 10).otherwise(pl.col("temperature"))
    )
    other = sc.forecast(known_model, read_series(warmer, target="load", future_covariates=["temperature"]))
    assert not np.allclose(out["forecast"].to_numpy(), other["forecast"].to_numpy())


def test_forecast_refuses_naming_the_series_and_the_steps_without_future_values(known_model):
    short = weather_frame(future=2)
    data = read_series(short, target="load", future_covariates=["temperature"])
    with pytest.raises(
        DataError, match=rf"series 's0' has no future values of 'temperature' for steps 3-{H} after"
    ):
        sc.forecast(known_model, data)


def test_forecast_refuses_a_horizon_beyond_the_known_steps(known_model, weather):
    with pytest.raises(UsageError, match=f"at most {H} steps"):
        sc.forecast(known_model, weather, horizon=H + 1)


def test_forecast_as_of_reads_the_later_actual_values_as_the_known_future(known_model, weather):
    """The known-in-advance assumption: a forecast from an earlier origin sees the values that
    followed, exactly as if they had been given as future rows."""
    as_of = START + timedelta(hours=100)
    past = sc.forecast(known_model, weather, as_of=as_of)
    cut = weather_frame().with_columns(
        pl.when(pl.col("timestamp") > as_of).then(None).otherwise(pl.col("load")).alias("load")
    )
    again = sc.forecast(known_model, read_series(cut, target="load", future_covariates=["temperature"]))
    np.testing.assert_allclose(past["forecast"].to_numpy(), again["forecast"].to_numpy(), rtol=1e-6)


def test_save_and_load_keep_the_future_covariates(known_model, weather, tmp_path):
    path = known_model.save(tmp_path / "m.streamcast")
    meta = read_metadata(path)
    assert meta["feature_spec"]["future_covariates"] == ["temperature"]
    assert meta["feature_spec"]["future_steps"] == H
    assert meta["columns"]["future_covariates"] == ["temperature"]
    loaded = sc.load(path)
    assert loaded.forecast(weather_frame()).equals(sc.forecast(known_model, weather))


def test_a_model_without_inputs_known_ahead_writes_the_metadata_it_always_did(tiny_model, tmp_path):
    meta = read_metadata(tiny_model.save(tmp_path / "m.streamcast"))
    assert set(meta["feature_spec"]) == {
        "freq",
        "calendar",
        "covariates",
        "covariate_loc",
        "covariate_scale",
        "scaling",
        "transform",
    }
    assert "future_covariates" not in meta["columns"]


def _lines(frame: pl.DataFrame, rows: int) -> list[dict]:
    """Stream records of series s0: each carries the next H temperatures."""
    s0 = frame.filter(pl.col("series_id") == "s0")
    temps = s0["temperature"].to_list()
    return [
        {
            "series_id": "s0",
            "timestamp": r["timestamp"],
            "load": r["load"],
            "temperature": temps[i + 1 : i + 1 + H],
        }
        for i, r in enumerate(s0.head(rows).iter_rows(named=True))
    ]


def test_streaming_with_future_values_on_each_line_equals_forecast_at_that_origin(known_model, weather):
    records = _lines(weather_frame(), 120)
    state = StreamState(known_model)
    batches = [Observations.from_records(records[i : i + 7], known_model) for i in range(0, 120, 7)]
    last = None
    for batch in stream(known_model, batches, state, StreamConfig(warmup=1)):
        for f in batch:
            last = f
    expected = sc.forecast(known_model, weather, series=["s0"])
    assert last.timestamp == START + timedelta(hours=119)
    np.testing.assert_allclose(last.forecast, expected["forecast"].to_numpy(), rtol=1e-4)


def test_stream_skips_a_line_whose_future_values_are_missing_or_short(known_model, tmp_path):
    path = known_model.save(tmp_path / "m.streamcast")
    records = _lines(weather_frame(), 4)
    records[1]["temperature"] = records[1]["temperature"][:2]
    del records[2]["temperature"]
    text = "\n".join(json.dumps({**r, "timestamp": r["timestamp"].isoformat()}) for r in records) + "\n"
    done = subprocess.run(
        [sys.executable, "-m", "streamcast", "stream", "-m", str(path)],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 2
    assert f"line 2: future covariate 'temperature' must hold its next {H} values" in done.stderr
    assert "got 2 values; skipped" in done.stderr
    assert "line 3: future covariate 'temperature' must hold its next" in done.stderr
    assert "got nothing; skipped" in done.stderr


def test_stream_reads_future_values_from_a_csv_field_of_numbers_separated_by_spaces(known_model):
    records = _lines(weather_frame(), 3)
    header = "series_id,timestamp,load,temperature"
    body = [
        f"s0,{r['timestamp'].isoformat()},{r['load']},{' '.join(map(str, r['temperature']))}" for r in records
    ]
    from streamcast.stream.input import parser_for

    obs = parser_for(known_model).parse([header, *body], first_line=1)
    assert obs.covariates.shape == (3, H)
    np.testing.assert_allclose(obs.covariates[0], records[0]["temperature"])


def test_cli_fit_then_forecast_with_a_future_covariate(tmp_path):
    data = tmp_path / "load.csv"
    weather_frame().write_csv(data)
    model = tmp_path / "m.streamcast"
    runner = CliRunner()
    fitted = runner.invoke(
        cli,
        [
            "fit", str(data), "--target", "load", "--future-covariate", "temperature", "--horizon", str(H),
            "--hidden", "8", "--epochs", "1", "--bptt", "16", "--ensemble", "1", "-q", "-o", str(model),
        ],
    )  # fmt: skip
    assert fitted.exit_code == 0, fitted.output
    out = runner.invoke(cli, ["forecast", "-m", str(model), str(data)])
    assert out.exit_code == 0, out.output
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("series_id,origin,timestamp,step,forecast")
    assert len(lines) == 1 + 2 * H
    short = tmp_path / "short.csv"
    weather_frame(future=0).write_csv(short)
    refused = runner.invoke(cli, ["forecast", "-m", str(model), str(short)])
    assert refused.exit_code == 1
    assert refused.stdout == ""
    assert refused.stderr.strip().startswith(
        "Error: series 's0' has no future values of 'temperature' for steps 1-"
    )
    assert len(refused.stderr.strip().splitlines()) == 1


def test_backtest_with_a_saved_model_refuses_a_future_option():
    result = CliRunner().invoke(cli, ["backtest", "-m", "x.streamcast", "d.csv", "--future-covariate", "t"])
    assert result.exit_code == 2


def test_holiday_flags_mark_public_holidays_in_local_dates():
    pytest.importorskip("holidays")
    stamps = pl.Series([datetime(2024, 12, 24, 23), datetime(2024, 12, 25, 0), datetime(2024, 12, 27, 12)])
    assert holiday_flags(stamps, "DE").tolist() == [0.0, 1.0, 0.0]
    assert holiday_flags(pl.Series([datetime(2024, 7, 4, 9)]), "US").tolist() == [1.0]


def test_fit_with_holidays_adds_the_next_horizon_flags_as_inputs(tiny_data):
    pytest.importorskip("holidays")
    model = sc.fit(tiny_data, FitConfig(**{**TINY.__dict__, "holidays": "DE"}))
    spec = model.spec
    assert spec.holidays == "DE" and spec.known_inputs == ("holiday",)
    assert model.net.config.input_size == 1 + len(spec.calendar) + H
    # 2024-01-01 is New Year's Day: the flags of the row at 2023-12-31 23:00 would be 1 at step 1;
    # the first row (2024-01-01 00:00) sees hours 01:00-06:00 of the holiday.
    inputs = build_inputs(tiny_data.frame, spec, model.scaler)
    assert inputs.inputs[0, -H:].tolist() == [1.0] * H
    assert inputs.inputs[30, -H:].tolist() == [0.0] * H
    assert sc.forecast(model, tiny_data).shape[0] == 3 * H


def test_an_unknown_holiday_country_is_refused_before_reading_the_data(tmp_path):
    pytest.importorskip("holidays")
    with pytest.raises(UsageError, match="--holidays 'XX': not a country the holidays package knows"):
        FitConfig(holidays="XX")
    result = CliRunner().invoke(cli, ["fit", str(tmp_path / "absent.csv"), "--holidays", "XX"])
    assert result.exit_code == 2
    assert "--holidays 'XX': not a country the holidays package knows" in result.stderr


def regional_frame() -> pl.DataFrame:
    """Two regions whose series differ in level only by region; `size` scales the level."""
    frame = weather_frame(series=4, future=0).drop("temperature")
    region = pl.when(pl.col("series_id").is_in(["s0", "s2"])).then(pl.lit("north")).otherwise(pl.lit("south"))
    size = pl.col("series_id").str.slice(1).cast(pl.Int64) + 1
    return frame.with_columns(region.alias("region"), size.alias("size"))


@pytest.fixture(scope="module")
def regional():
    return read_series(regional_frame(), target="load", static=["region", "size"])


@pytest.fixture(scope="module")
def static_model(regional):
    return sc.fit(regional, FitConfig(**{**TINY.__dict__, "static": ("region", "size")}))


def test_read_series_keeps_one_static_row_per_series(regional):
    assert regional.static.rows() == [
        ("s0", "north", 1),
        ("s1", "south", 2),
        ("s2", "north", 3),
        ("s3", "south", 4),
    ]
    assert regional.columns.static == ("region", "size")


def test_a_static_column_that_changes_within_a_series_is_refused():
    frame = regional_frame().with_columns(
        pl.when(pl.col("timestamp") == START).then(pl.lit("east")).otherwise(pl.col("region")).alias("region")
    )
    with pytest.raises(
        DataError, match=r"static column 'region' changes within series 's0' \('east', 'north'\)"
    ):
        read_series(frame, target="load", static=["region"])


def test_static_text_is_one_hot_and_numbers_are_scaled_at_every_step(static_model, regional):
    spec = static_model.spec
    assert spec.static_levels == (("north", "south"), ())
    assert spec.names[-3:] == ("region=north", "region=south", "size")
    assert static_model.net.config.input_size == 1 + len(spec.calendar) + 3
    inputs = build_inputs(regional.frame, spec, static_model.scaler, static=static_model.static_values)
    s1 = inputs.series(1)
    assert (s1[:, -3:-1] == [0.0, 1.0]).all()
    size = (2 - spec.static_loc[1]) / spec.static_scale[1]
    np.testing.assert_allclose(s1[:, -1], size, rtol=1e-6)


def test_static_values_travel_in_the_model_file_and_serve_a_stream(static_model, regional, tmp_path):
    loaded = sc.load(static_model.save(tmp_path / "m.streamcast"))
    assert loaded.static_values == {
        "s0": ("north", 1),
        "s1": ("south", 2),
        "s2": ("north", 3),
        "s3": ("south", 4),
    }
    expected = sc.forecast(static_model, regional, series=["s1"])
    assert loaded.forecast(regional_frame(), series=["s1"]).equals(expected)
    rows = regional.frame.filter(pl.col("series_id") == "s1").rename({"value": "load"}).to_dicts()
    last = None
    for batch in stream(
        loaded, [Observations.from_records(rows, loaded)], StreamState(loaded), StreamConfig(warmup=1)
    ):
        last = list(batch)[-1]
    np.testing.assert_allclose(last.forecast, expected["forecast"].to_numpy(), rtol=1e-4)


def test_cli_fit_with_static_columns(tmp_path):
    data = tmp_path / "regions.csv"
    regional_frame().write_csv(data)
    model = tmp_path / "m.streamcast"
    result = CliRunner().invoke(
        cli,
        [
            "fit", str(data), "--target", "load", "--static", "region", "--static", "size", "--horizon", str(H),
            "--hidden", "8", "--epochs", "1", "--ensemble", "1", "-q", "-o", str(model),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_metadata(model)["columns"]["static"] == ["region", "size"]
    out = CliRunner().invoke(cli, ["forecast", "-m", str(model), str(data)])
    assert out.exit_code == 0 and len(out.stdout.strip().splitlines()) == 1 + 4 * H
    assert "region, size (one value per series)" in CliRunner().invoke(cli, ["info", str(model)]).stdout


def test_a_stream_state_with_future_covariates_saves_and_resumes(known_model, tmp_path):
    records = _lines(weather_frame(), 40)
    state = StreamState(known_model)
    first = [Observations.from_records(records[:30], known_model)]
    list(stream(known_model, first, state, StreamConfig(warmup=1)))
    assert len(state.last_covariates[0]) == H
    state.save(tmp_path / "s.state")
    resumed = StreamState.load(tmp_path / "s.state", known_model)
    rest = [Observations.from_records(records[30:], known_model)]
    a = [f.forecast for b in stream(known_model, rest, resumed, StreamConfig(warmup=1)) for f in b]
    b = [f.forecast for b in stream(known_model, rest, state, StreamConfig(warmup=1)) for f in b]
    assert len(a) == 10
    np.testing.assert_allclose(a, b)


def test_warm_up_from_history_with_future_rows_ends_as_forecast_does(known_model, weather):
    from streamcast.stream.engine import warm_up

    state = StreamState(known_model)
    assert warm_up(known_model, state, weather) == ["s0", "s1"]
    s0 = weather.future.filter(pl.col("series_id") == "s0")
    np.testing.assert_allclose(state.last_covariates[0], s0["temperature"].to_numpy())


def test_stream_with_future_values_watch_and_a_partition_together(known_model, tmp_path):
    """Each line's next H temperatures, --watch and --partition in one run: the partition's series
    get the forecasts the whole stream gives them, each line scored, the others' lines counted."""
    path = known_model.save(tmp_path / "m.streamcast")
    frame = weather_frame()
    records = []
    for h in range(60):
        for sid in ("s0", "s1"):
            s = frame.filter(pl.col("series_id") == sid)
            temps = s["temperature"].to_list()
            records.append(
                {
                    "series_id": sid,
                    "timestamp": s["timestamp"][h].isoformat(),
                    "load": s["load"][h],
                    "temperature": temps[h + 1 : h + 1 + H],
                }
            )
    text = "".join(json.dumps(r) + "\n" for r in records)
    whole = run_stream(path, ["--watch"], text)
    assert whole.exit_code == 0, whole.stderr
    part = run_stream(path, ["--watch", "--partition", "1/3"], text)  # s0 is shard 1 of 3, s1 shard 0
    assert part.exit_code == 0, part.stderr
    out = [json.loads(line) for line in part.stdout.splitlines()]
    assert [x["series_id"] for x in out] == ["s0"] * 60
    assert all({"error", "score", "anomaly"} <= set(x) for x in out)
    assert out == [x for x in map(json.loads, whole.stdout.splitlines()) if x["series_id"] == "s0"]
    flagged = sum(x["anomaly"] for x in out)
    assert part.stderr.endswith(f", other_partition=60, anomalies={flagged}\n")


def test_a_static_models_steady_batches_planned_in_arrays_equal_the_rules(
    static_model, regional, monkeypatch
):
    rows = regional.frame.rename({"value": "load"}).sort("timestamp", "series_id").to_dicts()
    taken = []

    def run_all(plan) -> list:
        monkeypatch.setattr(engine, "steady_plan", plan)
        batches = [Observations.from_records(rows[i : i + 8], static_model) for i in range(0, len(rows), 8)]
        out = [
            (f.series_id, f.timestamp, f.forecast)
            for b in stream(static_model, batches, StreamState(static_model), StreamConfig(warmup=1))
            for f in b
        ]
        monkeypatch.undo()
        return out

    fast = run_all(lambda rules, obs: taken.append(steady_plan(rules, obs)) or taken[-1])
    slow = run_all(lambda rules, obs: None)
    assert any(p is not None for p in taken)
    assert fast == slow
