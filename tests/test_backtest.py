"""`backtest`: scores that agree with serving, baselines computed on the same points, the CLI's
tables, files and errors."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.backtest import backtest, fit_and_backtest, holdout
from streamcast.cli import main
from tests.conftest import TINY, hourly_frame


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("backtest") / "series.parquet"
    hourly_frame(series=3, length=240).write_parquet(path)
    return path


def invoke(*args):
    return CliRunner().invoke(main, ["backtest", *map(str, args)])


def test_model_scores_equal_forecasts_made_as_of_each_origin(tiny_model, tiny_data):
    """One stateful pass over the history gives what `forecast --as-of` serves at each origin."""
    result = backtest(tiny_model, tiny_data, windows=3, stride=5)
    errors = []
    for sid, origin in result.origins.iter_rows():
        served = sc.forecast(tiny_model, tiny_data, as_of=origin, series=[sid])
        actual = served.join(
            tiny_data.frame.filter(pl.col("series_id") == sid), on=["series_id", "timestamp"]
        )
        assert actual.height == tiny_model.horizon
        errors.append((actual["forecast"] - actual["value"]).abs().to_numpy())
    assert result.score("mae") == pytest.approx(np.mean(errors), rel=1e-5)


def test_baselines_are_scored_on_exactly_the_same_points(tiny_model, tiny_data):
    windows, stride, horizon, season = 2, 7, tiny_model.horizon, 24
    result = backtest(tiny_model, tiny_data, windows=windows, stride=stride)
    naive, seasonal = [], []
    for _sid, group in tiny_data.frame.group_by("series_id", maintain_order=True):
        y = group["value"].to_numpy()
        last_origin = len(y) - horizon - 1
        for origin in (last_origin - stride, last_origin):
            future = y[origin + 1 : origin + 1 + horizon]
            naive.append(np.abs(future - y[origin]))
            seasonal.append(np.abs(future - y[origin + 1 - season : origin + 1 - season + horizon]))
    assert result.score("mae", "naive") == pytest.approx(np.mean(naive))
    assert result.score("mae", "seasonal_naive") == pytest.approx(np.mean(seasonal))
    gain = 1 - result.score("mae") / result.score("mae", "seasonal_naive")
    overall = result.overall.filter(pl.col("metric") == "mae")
    assert overall["gain_seasonal_naive"].item() == pytest.approx(gain)
    assert result.points == 3 * windows * horizon
    assert result.per_step["step"].to_list() == [s for s in range(1, horizon + 1) for _ in range(4)]


def test_points_filled_in_by_interpolation_are_left_out_of_every_score(tiny_model):
    """A filled-in actual is not an observation, and a filled-in origin has seen the value after
    it: neither may flatter the model or the baselines."""
    frame = hourly_frame()
    step = pl.int_range(pl.len()).over("series_id")
    gap = (pl.col("series_id") == "s1") & step.is_between(190, 192)  # inside s1's first window
    data = sc.read_series(
        frame.with_columns(pl.when(gap).then(None).otherwise(pl.col("value")).alias("value"))
    )
    result = backtest(tiny_model, data, windows=2, stride=6)
    # Origins 187 (targets 188..193) and 193 (targets 194..199) in every series; s1 loses 190..192.
    assert result.imputed == 3
    assert result.points == 3 * 2 * 6 - 3
    assert any("3 of 36 forecast points are left out" in note for note in result.notes)
    clean = backtest(tiny_model, sc.read_series(frame), windows=2, stride=6)
    naive = []
    for (sid,), group in data.frame.group_by("series_id", maintain_order=True):
        y = group["value"].to_numpy()
        for origin in (187, 193):
            for h in range(1, 7):
                if not (sid == "s1" and 190 <= origin + h <= 192):
                    naive.append(abs(y[origin + h] - y[origin]))
    assert result.score("mae", "naive") == pytest.approx(np.mean(naive))
    assert result.score("mae", "naive") != pytest.approx(clean.score("mae", "naive"))


def test_a_filled_in_origin_leaves_its_whole_window_out():
    frame = hourly_frame(series=1, length=200)
    gap = pl.int_range(pl.len()).is_between(192, 193)  # the last origin, 193, is filled
    data = sc.read_series(
        frame.with_columns(pl.when(gap).then(None).otherwise(pl.col("value")).alias("value"))
    )
    model = sc.fit(sc.read_series(frame), replace(TINY, epochs=1))
    result = backtest(model, data, windows=2, stride=6)
    assert result.imputed == 6 + 2  # the filled origin's window, and 192..193 as targets of origin 187
    per_step = result.per_step.filter(pl.col("metric") == "mae")
    # Steps 5 and 6 of the first window are the filled 192..193: those steps have nothing to score.
    assert per_step["model"].is_null().to_list() == [False] * 4 + [True] * 2
    assert per_step["naive"].is_null().to_list() == [False] * 4 + [True] * 2


def test_fit_and_backtest_never_trains_on_a_scored_point(tiny_data):
    model, result = fit_and_backtest(tiny_data, replace(TINY, epochs=1), windows=2, stride=6)
    span = (2 - 1) * 6 + TINY.horizon
    assert model.info["holdout"]["steps"] == span
    assert model.info["data"]["rows"] == tiny_data.frame.height - 3 * span
    held = holdout(tiny_data, horizon=TINY.horizon, windows=2, stride=6)
    assert held.frame.group_by("series_id").len()["len"].to_list() == [200 - span] * 3
    assert result.warnings == ()  # fitted with the windows held out: nothing optimistic to warn about


def test_quantile_models_get_coverage_and_pinball_and_per_series_rows(tiny_data):
    model = sc.fit(tiny_data, replace(TINY, quantiles=(0.1, 0.5, 0.9), epochs=1))
    result = backtest(model, tiny_data, windows=2, per_series=True)
    assert set(result.overall["metric"]) == {"mae", "rmse", "smape", "mase", "coverage", "pinball"}
    coverage = result.score("coverage")
    assert 0.0 <= coverage <= 1.0
    assert result.interval == (0.1, 0.9)
    assert result.overall.filter(pl.col("metric") == "coverage")["naive"].item() is None
    assert sorted(result.per_series["series_id"].unique()) == ["s0", "s1", "s2"]


def test_cli_scores_a_saved_model_as_json(model_path, data_path):
    result = invoke("-m", model_path, data_path, "--windows", 3, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["windows"] == 3 and report["series"] == 3 and report["points"] == 3 * 3 * 6
    assert set(report["overall"]) == {"mae", "rmse", "smape", "mase"}
    for scores in report["overall"].values():
        assert {"model", "naive", "seasonal_naive", "gain_naive", "gain_seasonal_naive"} <= set(scores)
    assert len(report["per_step"]) == 6 * 4


def test_cli_in_a_pipe_prints_csv_and_o_writes_the_same_tables_to_a_file(model_path, data_path, tmp_path):
    piped = invoke("-m", model_path, data_path, "--windows", 2, "--per-series", "-q")
    assert piped.exit_code == 0, piped.output
    lines = piped.stdout.splitlines()
    assert lines[0].startswith("scope,series_id,step,metric,model,naive,seasonal_naive")
    out = tmp_path / "scores.parquet"
    written = invoke("-m", model_path, data_path, "--windows", 2, "--per-series", "-o", out, "-q")
    assert written.exit_code == 0, written.output
    assert written.stdout == ""
    table = pl.read_parquet(out)
    assert set(table["scope"]) == {"overall", "step", "series"}
    assert table.filter(pl.col("scope") == "series")["series_id"].n_unique() == 3
    assert len(lines) == table.height + 1


def test_cli_fits_with_the_windows_held_out_and_can_keep_the_model(data_path, tmp_path):
    kept = tmp_path / "held.streamcast"
    args = ["--hidden", 8, "--epochs", 1, "--horizon", 6, "--bptt", 16, "--windows", 2]
    result = invoke(data_path, *args, "--save-model", kept, "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["points"] == 3 * 2 * 6
    assert sc.load(kept).info["holdout"]["steps"] == 12


def test_cli_warns_when_a_saved_model_was_trained_on_the_scored_points(tmp_path, data_path):
    model = tmp_path / "m.streamcast"
    fitted = CliRunner().invoke(
        main,
        ["fit", str(data_path), "-o", str(model), "--hidden", "8", "--epochs", "1", "--horizon", "6", "-q"],
    )
    assert fitted.exit_code == 0, fitted.output
    result = invoke("-m", model, data_path, "--windows", 2, "--json")
    assert result.exit_code == 0
    assert "optimistic" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--windows", "0"], 2, "--windows must be at least 1"),
        (["--stride", "0"], 2, "--stride must be at least 1"),
        (["--windows", "100"], 1, "lower --windows or --stride"),
        (["--season", "100000"], 1, "lower --season"),
        (["-o", "-", "--json"], 2, "-o - and --json both print to stdout: choose one"),
        (["--hidden", "8"], 2, "-m"),
    ],
)
def test_cli_errors_are_one_line_with_an_exit_code(model_path, data_path, args, code, message):
    result = invoke("-m", model_path, data_path, *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.skipif(
    not os.path.isdir("/proc/self"), reason="needs Linux /proc, where nobody may create files"
)
def test_cli_refuses_an_output_place_nobody_can_write_before_fitting(data_path):
    result = invoke(data_path, "--epochs", 1, "-o", "/proc/scores.csv")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Error: cannot write output '/proc/scores.csv': /proc does not take new files"
    )
    assert "epoch" not in result.stderr  # nothing was fitted first


def test_cli_o_dash_prints_only_the_csv_tables(model_path, data_path):
    result = invoke("-m", model_path, data_path, "--windows", 2, "-o", "-")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("scope,series_id,step,metric,")
    assert pl.read_csv(result.stdout.encode())["scope"].unique().sort().to_list() == ["overall", "step"]
    assert "wrote" not in result.stderr


def test_holdout_refuses_series_no_longer_than_what_it_holds_out(tiny_data):
    with pytest.raises(sc.DataError, match=r"series 's0' has 200 points, not more than the 204"):
        holdout(tiny_data, horizon=6, windows=34, stride=6)
    with pytest.raises(sc.UsageError, match="--windows must be at least 1"):
        holdout(tiny_data, horizon=6, windows=0)


def test_asking_for_a_score_that_is_not_there_names_the_ones_that_are(tiny_model, tiny_data):
    result = backtest(tiny_model, tiny_data, windows=1)
    with pytest.raises(sc.UsageError, match="metrics here are mae, rmse, smape, mase"):
        result.score("coverage")


def test_kept_forecasts_are_the_ones_forecast_as_of_serves_and_give_back_the_scores(tiny_model, tiny_data):
    result = backtest(tiny_model, tiny_data, windows=3, stride=5, keep_forecasts=True)
    rows = result.forecasts
    horizon = tiny_model.horizon
    assert rows.columns[:6] == ["series_id", "timestamp", "cutoff", "step", "y", "forecast"]
    assert rows.height == 3 * 3 * horizon
    sid, cutoff = result.origins.row(4)
    window = rows.filter((pl.col("series_id") == sid) & (pl.col("cutoff") == cutoff))
    served = sc.forecast(tiny_model, tiny_data, as_of=cutoff, series=[sid])
    assert window["timestamp"].to_list() == served["timestamp"].to_list()
    assert window["forecast"].to_numpy() == pytest.approx(served["forecast"].to_numpy(), rel=1e-5)
    actual = tiny_data.frame.join(window, on=["series_id", "timestamp"])
    assert actual["value"].to_list() == actual["y"].to_list()
    assert (rows["forecast"] - rows["y"]).abs().mean() == pytest.approx(result.score("mae"), rel=1e-9)
    assert (rows["seasonal_naive"] - rows["y"]).abs().mean() == pytest.approx(
        result.score("mae", "seasonal_naive"), rel=1e-9
    )
    assert backtest(tiny_model, tiny_data, windows=3, stride=5).forecasts is None


def test_cli_save_forecasts_writes_them_beside_the_scores(model_path, data_path, tmp_path):
    out = tmp_path / "cv.parquet"
    result = invoke("-m", model_path, data_path, "--windows", 2, "--json", "--save-forecasts", out)
    assert result.exit_code == 0, result.output
    rows = pl.read_parquet(out)
    assert rows.height == 3 * 2 * 6
    assert rows["observed"].all()
    assert json.loads(result.stdout)["points"] == rows.height
    assert f"wrote {out} (36 forecasts)" in result.stderr


def test_cli_save_forecasts_keeps_the_datas_names_on_request(model_path, tmp_path):
    path = tmp_path / "sales.csv"
    hourly_frame(series=3, length=240).rename({"series_id": "store", "timestamp": "when"}).write_csv(path)
    out = tmp_path / "cv.csv"
    names = ["--id-col", "store", "--time-col", "when", "--target", "value"]
    result = invoke(
        "-m", model_path, path, *names, "--windows", 2, "--save-forecasts", out, "--keep-names", "-q"
    )
    assert result.exit_code == 0, result.output
    rows = pl.read_csv(out)
    assert rows.columns[:4] == ["store", "when", "cutoff", "step"]
    assert rows["store"].unique().sort().to_list() == ["s0", "s1", "s2"]
    missing = invoke("-m", model_path, data_path, "--save-forecasts", tmp_path / "nope" / "cv.csv")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
