"""`forecast`: batched warm-up equals serving, horizons, --as-of, unseen series; and the CLI under cron."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.errors import UsageError
from streamcast.features import from_model_units
from streamcast.forecasting import forecast, parse_as_of
from streamcast.locking import output_lock
from streamcast.training import FitConfig
from tests.conftest import TINY, hourly_frame


@pytest.fixture(scope="module")
def quantile_model(tiny_data):
    return sc.fit(tiny_data, FitConfig(**{**TINY.__dict__, "quantiles": (0.1, 0.9)}))


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_model):
    """A cron-like working directory: data.csv and the default model trained on it."""
    monkeypatch.chdir(tmp_path)
    hourly_frame().write_csv(tmp_path / "data.csv")
    data = sc.read_series(tmp_path / "data.csv")
    model = sc.fit(data, TINY)
    sc.save(model, tmp_path / "model.streamcast")
    return tmp_path


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_forecast_has_one_row_per_series_and_step(tiny_model, tiny_data):
    table = forecast(tiny_model, tiny_data)
    assert table.columns == ["series_id", "origin", "timestamp", "step", "forecast", "new_series"]
    assert table.height == 3 * 6
    assert table["step"].to_list()[:6] == [1, 2, 3, 4, 5, 6]
    first = table.filter(pl.col("series_id") == "s0")
    last_seen = tiny_data.frame.filter(pl.col("series_id") == "s0")["timestamp"].max()
    assert (first["origin"] == last_seen).all()


def test_target_timestamps_continue_the_grid(tiny_model, tiny_data):
    table = forecast(tiny_model, tiny_data).filter(pl.col("series_id") == "s1")
    diffs = (table["timestamp"] - table["origin"]).dt.total_hours().to_list()
    assert diffs == [1, 2, 3, 4, 5, 6]


def test_forecast_equals_feeding_the_network_tick_by_tick(tiny_model, tiny_data):
    """Train the model the way it is served: the batched warm-up is the same step, one tick at a time."""
    tiny_model = replace(tiny_model, naive_series=frozenset())  # the network's own forecast, for every series
    table = forecast(tiny_model, tiny_data).filter(pl.col("series_id") == "s2")
    inputs = tiny_model.inputs(tiny_data.frame)
    x = torch.from_numpy(inputs.series(2))[None]
    state = tiny_model.net.init_state(1)
    with torch.no_grad():
        for t in range(x.shape[1]):
            y, state = tiny_model.net(x[:, t : t + 1], state)
    expected = y[0, 0, :, 0].double().numpy() * inputs.scale[2] + inputs.loc[2]
    expected = from_model_units(expected, tiny_model.spec.transform)  # log: the data is positive
    np.testing.assert_allclose(table["forecast"].to_numpy(), expected, rtol=1e-5)


def test_a_shorter_horizon_slices_the_head(tiny_model, tiny_data):
    full = forecast(tiny_model, tiny_data)
    short = forecast(tiny_model, tiny_data, horizon=2)
    assert short.height == 3 * 2
    assert short["forecast"].to_list() == full.filter(pl.col("step") <= 2)["forecast"].to_list()


def test_a_longer_horizon_rolls_forward_and_keeps_the_first_block(tiny_model, tiny_data):
    full = forecast(tiny_model, tiny_data)
    long = forecast(tiny_model, tiny_data, horizon=15)
    assert long.height == 3 * 15
    assert long.filter(pl.col("step") <= 6)["forecast"].to_list() == full["forecast"].to_list()
    assert long["forecast"].is_finite().all()


def test_as_of_forecasts_from_a_past_point(tiny_model, tiny_data):
    table = forecast(tiny_model, tiny_data, as_of="2024-01-05 10:00")
    assert set(table["origin"].dt.to_string("%Y-%m-%d %H:%M").to_list()) == {"2024-01-05 10:00"}


def test_context_limits_the_warm_up_and_changes_the_forecast(tiny_model, tiny_data):
    full = forecast(tiny_model, tiny_data)
    short = forecast(tiny_model, tiny_data, context=5)
    assert short["origin"].to_list() == full["origin"].to_list()
    assert short["forecast"].to_list() != full["forecast"].to_list()


def test_series_the_model_never_saw_are_forecast_and_flagged(tiny_model):
    other = sc.read_series(hourly_frame(series=1, seed=5).with_columns(pl.lit("new").alias("series_id")))
    table = forecast(tiny_model, other)
    assert table["new_series"].all()
    assert table["forecast"].is_finite().all()


def test_quantile_models_add_ordered_quantile_columns(quantile_model, tiny_data):
    table = forecast(quantile_model, tiny_data)
    assert table.columns[-4:] == ["q0.1", "q0.5", "q0.9", "new_series"]
    assert (table["q0.1"] <= table["q0.5"]).all() and (table["q0.5"] <= table["q0.9"]).all()
    assert table["forecast"].to_list() == table["q0.5"].to_list()


def test_cli_rereads_the_recorded_data_with_no_arguments(workdir):
    result = run(["forecast", "--horizon", "3"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "series_id,origin,timestamp,step,forecast,new_series"
    assert len(lines) == 1 + 3 * 3
    assert lines[1].startswith("s0,2024-01-09T07:00:00,2024-01-09T08:00:00,1,")


def test_cli_sees_rows_appended_since_the_model_was_fitted(workdir):
    longer = hourly_frame(length=210)
    longer.write_csv(workdir / "data.csv")
    result = run(["forecast", "--horizon", "1", "--series", "s0"])
    assert result.stdout.splitlines()[1].startswith("s0,2024-01-09T17:00:00,")


def test_cli_output_is_byte_identical_across_runs(workdir):
    assert run(["forecast"]).stdout == run(["forecast"]).stdout


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_cli_writes_the_output_file_by_suffix(workdir, suffix):
    out = workdir / f"out{suffix}"
    result = run(["forecast", "-o", str(out), "--horizon", "2"])
    assert result.exit_code == 0
    assert result.stdout == ""
    if suffix == ".parquet":
        table = pl.read_parquet(out)
    elif suffix == ".csv":
        table = pl.read_csv(out)
    else:
        table = pl.DataFrame([json.loads(line) for line in out.read_text().splitlines()])
    assert table.height == 6
    assert table.columns[:5] == ["series_id", "origin", "timestamp", "step", "forecast"]


def test_a_failed_run_leaves_the_previous_output_intact(workdir):
    out = workdir / "out.csv"
    run(["forecast", "-o", str(out)])
    before = out.read_bytes()
    result = run(["forecast", "-o", str(out), "--as-of", "1999-01-01"])
    assert result.exit_code == 1
    assert out.read_bytes() == before
    assert sorted(p.name for p in workdir.iterdir() if p.name.endswith(".tmp")) == []


def test_an_overlapping_run_gives_up_with_exit_75(workdir):
    out = workdir / "out.csv"
    held, release = threading.Event(), threading.Event()

    def hold():
        with output_lock(str(out), timeout=5):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    try:
        result = run(["forecast", "-o", str(out), "--lock-timeout", "0.2"])
    finally:
        release.set()
        thread.join()
    assert result.exit_code == 75
    assert result.stderr.startswith(f"Error: another run is writing {out}")
    assert not out.exists()


def test_a_longer_horizon_warns_once_on_stderr(workdir):
    result = run(["forecast", "--horizon", "9"])
    assert result.exit_code == 0
    assert (
        result.stderr
        == "warning: --horizon 9 is longer than the trained 6: later steps are fed the model's own forecasts, and accuracy degrades\n"
    )
    assert run(["forecast", "--horizon", "9", "-q"]).stderr == ""


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["-m", "missing.streamcast"], 1, "Error: model file 'missing.streamcast' not found\n"),
        (["--series", "nope"], 1, "Error: series 'nope' is not in"),
        (["--as-of", "soon"], 2, "Error: --as-of 'soon' is not a timestamp"),
        (
            ["-o", "out.xlsx"],
            2,
            "Error: cannot write 'out.xlsx': the output file must end in .csv, .parquet, .jsonl",
        ),
        (["--horizon", "0"], 2, "Error: --horizon must be at least 1"),
        (
            ["--as-of", "2024-01-02T00:00+02:00"],
            2,
            "Error: --as-of '2024-01-02T00:00+02:00' has a UTC offset",
        ),
        (["-o", "folder.csv"], 2, "Error: output 'folder.csv' is a folder; give a file path"),
        (["elsewhere"], 1, "Error: 'elsewhere' is a folder with no Parquet files"),
    ],
)
def test_cli_errors_are_one_line_with_an_exit_code(workdir, args, code, message):
    (workdir / "folder.csv").mkdir()
    (workdir / "elsewhere").mkdir()
    result = run(["forecast", *args])
    assert result.exit_code == code
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1


def test_data_on_stdin_with_a_dash(workdir):
    result = CliRunner().invoke(
        main, ["forecast", "-", "--horizon", "2"], input=(workdir / "data.csv").read_text()
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == run(["forecast", "--horizon", "2"]).stdout


def test_jsonl_output_writes_iso_timestamps_like_csv(workdir):
    run(["forecast", "-o", "out.jsonl", "--horizon", "1"])
    first = json.loads((workdir / "out.jsonl").read_text().splitlines()[0])
    assert (first["origin"], first["timestamp"]) == ("2024-01-09T07:00:00", "2024-01-09T08:00:00")


def test_an_as_of_after_the_data_warns_and_forecasts_from_the_last_observation(workdir):
    result = run(["forecast", "--as-of", "2030-01-01", "--horizon", "1"])
    assert result.exit_code == 0
    assert result.stderr == (
        "warning: --as-of 2030-01-01 is after the last observation (2024-01-09 07:00:00): "
        "forecasting from the last one\n"
    )
    assert result.stdout == run(["forecast", "--horizon", "1"]).stdout


@pytest.mark.skipif(
    not os.path.isdir("/proc/self"), reason="needs Linux /proc, where nobody may create files"
)
def test_an_output_place_nobody_can_write_fails_at_once_not_after_the_lock_timeout(workdir):
    started = time.perf_counter()
    result = run(["forecast", "-o", "/proc/out.csv", "--lock-timeout", "30"])
    assert time.perf_counter() - started < 20  # it did not wait for the lock timeout
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Error: cannot write output '/proc/out.csv': /proc does not take new files ("
    )
    assert result.stderr.count("\n") == 1


def test_an_output_under_a_file_is_a_usage_error(workdir):
    result = run(["forecast", "-o", "data.csv/out.csv"])
    assert result.exit_code == 2
    assert (
        result.stderr == "Error: cannot write output 'data.csv/out.csv': data.csv is a file, not a folder\n"
    )


def test_an_output_in_a_folder_that_does_not_exist_fails_at_once_and_creates_nothing(workdir):
    before = sorted(p.name for p in workdir.iterdir())
    result = run(["forecast", "-o", "new/sub/out.csv", "--horizon", "1"])
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: cannot write output 'new/sub/out.csv': folder 'new/sub' does not exist; "
        "create it first (mkdir -p new/sub)\n"
    )
    assert sorted(p.name for p in workdir.iterdir()) == before


def test_the_output_lock_is_a_hidden_file_so_only_the_output_shows_in_its_folder(workdir):
    (workdir / "out").mkdir()
    result = run(["forecast", "-o", "out/f.csv", "--horizon", "1"])
    assert result.exit_code == 0, result.stderr
    assert pl.read_csv(workdir / "out" / "f.csv").height == 3
    assert [p.name for p in (workdir / "out").iterdir() if not p.name.startswith(".")] == ["f.csv"]
    assert (workdir / "out" / ".f.csv.lock").exists()


def test_an_as_of_that_a_clock_change_skips_is_a_usage_error():
    with pytest.raises(UsageError, match="does not exist or is ambiguous in Europe/Berlin"):
        parse_as_of("2024-03-31T02:30", pl.Datetime("us", "Europe/Berlin"))
    zoned = parse_as_of("2024-03-31T02:30+01:00", pl.Datetime("us", "Europe/Berlin"))
    assert zoned.isoformat() == "2024-03-31T03:30:00+02:00"


def test_a_run_holds_the_output_lock_while_it_reads_and_forecasts(workdir, monkeypatch):
    """A run that read older data must not finish after a newer one and replace its output."""
    import streamcast.cli.forecast as cli_forecast
    from streamcast.errors import LockTimeout

    out = workdir / "out.csv"
    seen = []

    def try_the_lock():
        try:
            with output_lock(str(out), timeout=0):
                seen.append("free")
        except LockTimeout:
            seen.append("held")

    real_read = cli_forecast.reader_for_model

    def reading(*args):
        thread = threading.Thread(target=try_the_lock)
        thread.start()
        thread.join()
        return real_read(*args)

    monkeypatch.setattr(cli_forecast, "reader_for_model", reading)
    assert run(["forecast", "-o", str(out)]).exit_code == 0
    assert seen == ["held"]


def test_a_negative_lock_timeout_is_a_usage_error(workdir):
    result = run(["forecast", "-o", "out.csv", "--lock-timeout", "-1"])
    assert result.exit_code == 2
    assert result.stderr == "Error: --lock-timeout must be >= 0 seconds\n"


def test_forecast_prints_the_reading_notes_unless_quiet(workdir):
    frame = hourly_frame()
    gap = (pl.col("series_id") == "s0") & pl.int_range(pl.len()).over("series_id").is_between(50, 51)
    frame.with_columns(pl.when(gap).then(None).otherwise(pl.col("value")).alias("value")).write_csv("gap.csv")
    result = run(["forecast", "gap.csv"])
    assert result.exit_code == 0
    assert "note: filled 2 missing values in 1 series by linear interpolation\n" in result.stderr
    assert run(["forecast", "gap.csv", "-q"]).stderr == ""


def test_as_of_after_a_gap_starts_from_the_last_real_observation(tiny_model):
    """Values filled in after the cutoff's last observation were interpolated towards a later one."""
    frame = hourly_frame()
    step = pl.int_range(pl.len()).over("series_id")
    gap = (pl.col("series_id") == "s0") & step.is_between(150, 152)
    with_gap = sc.read_series(
        frame.with_columns(pl.when(gap).then(None).otherwise(pl.col("value")).alias("value"))
    )
    cutoff = frame["timestamp"][151]  # inside the gap
    served = forecast(tiny_model, with_gap, as_of=cutoff)
    truncated = sc.read_series(frame.filter(~gap & (pl.col("timestamp") <= cutoff)))
    assert served.equals(forecast(tiny_model, truncated))
    assert served.filter(pl.col("series_id") == "s0")["origin"][0] == frame["timestamp"][149]


def test_data_at_another_frequency_than_the_model_is_refused(workdir):
    daily = hourly_frame().with_columns(
        (pl.datetime(2024, 1, 1) + pl.duration(days=pl.int_range(pl.len()).over("series_id"))).alias(
            "timestamp"
        )
    )
    daily.write_csv("daily.csv")
    result = run(["forecast", "daily.csv"])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: daily.csv steps by 1d but the model by 1h; give data at the model's frequency, "
        "or fit a model on this data\n"
    )


def test_month_end_data_is_read_and_forecast_on_month_ends(tmp_path):
    ends = pl.date_range(pl.date(2019, 4, 1), pl.date(2023, 12, 1), "1mo", eager=True).dt.month_end()
    frame = pl.DataFrame({"ds": ends, "y": np.sin(np.arange(len(ends)) / 2) + 10})
    data = sc.read_series(frame.filter(pl.col("ds") != pl.date(2020, 6, 30)))  # a gap to fill
    assert data.freq == "1mo"
    assert data.frame["timestamp"].dt.date().to_list() == ends.to_list()
    model = sc.fit(data, FitConfig(hidden_size=8, epochs=1, horizon=3, bptt=12, batch_size=4))
    table = forecast(model, data, horizon=4)
    assert table["timestamp"].dtype == pl.Date  # dates in, dates out
    assert [str(t) for t in table["timestamp"]] == [
        "2024-01-31",
        "2024-02-29",
        "2024-03-31",
        "2024-04-30",
    ]


def test_a_requested_series_that_starts_after_the_as_of_time_is_an_error(tiny_model):
    frame = hourly_frame().with_columns(
        pl.when(pl.col("series_id") == "s2")
        .then(pl.col("timestamp") + pl.duration(days=30))
        .otherwise(pl.col("timestamp"))
        .alias("timestamp")
    )
    data = sc.read_series(frame)
    with pytest.raises(sc.DataError, match="series 's2' has no observations at or before --as-of"):
        forecast(tiny_model, data, as_of=frame["timestamp"][100], series=["s0", "s2"])
    assert forecast(tiny_model, data, as_of=frame["timestamp"][100])[
        "series_id"
    ].unique().sort().to_list() == [
        "s0",
        "s1",
    ]


def test_a_model_column_missing_from_new_data_is_named_as_the_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame = hourly_frame().with_columns((pl.col("value") * 0.1).alias("temperature"))
    frame.write_csv("with.csv")
    model = sc.fit(sc.read_series("with.csv", covariates=["temperature"]), TINY)
    sc.save(model, "model.streamcast")
    frame.drop("temperature").write_csv("without.csv")
    result = run(["forecast", "without.csv"])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Error: column 'temperature' (a covariate of the model) is not in the data"
    )


def test_one_series_id_given_as_a_string_is_one_id(tiny_model, tiny_data):
    assert forecast(tiny_model, tiny_data, series="s1")["series_id"].unique().to_list() == ["s1"]


def test_an_absurd_horizon_is_refused_instead_of_rolling_out_forever(tiny_model, tiny_data):
    with pytest.raises(UsageError, match="--horizon 99999999999 is more than 100,000 steps"):
        forecast(tiny_model, tiny_data, horizon=99_999_999_999)


def test_crossing_quantiles_are_served_in_order_and_ordered_ones_as_they_are(tiny_model):
    crossed = torch.tensor([[[0.3, 0.1, 0.2], [0.0, 0.5, 0.4]], [[0.1, 0.2, 0.3], [0.1, 0.1, 0.2]]])
    loc, scale = np.zeros(2), np.ones(2)
    served = tiny_model.point_and_quantiles(crossed, loc, scale)
    expected = tiny_model.point_and_quantiles(crossed.sort(dim=-1).values, loc, scale)
    np.testing.assert_array_equal(served, expected)
    assert (np.diff(served, axis=-1) >= 0).all()
    ordered = tiny_model.point_and_quantiles(crossed[1:], loc[1:], scale[1:])
    np.testing.assert_array_equal(ordered, served[1:])
