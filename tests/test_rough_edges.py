"""Rough edges a new user meets: model paths, notes that name real options, defaults that fit the
data, outputs that join back, and a Python API that speaks through logging and warnings."""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.errors import StreamcastWarning
from streamcast.features import default_horizon, season_length, short_series_window
from tests.conftest import TINY, hourly_frame

FAST = ["--hidden", "4", "--epochs", "1", "--bptt", "8", "--ensemble", "1"]


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def daily_csv(tmp_path, days=120):
    rng = np.random.default_rng(0)
    start = date(2024, 1, 1)
    frame = pl.DataFrame(
        {
            "shop": ["x"] * days + ["y"] * days,
            "date": [start + timedelta(days=k) for k in range(days)] * 2,
            "sales": rng.normal(100, 10, 2 * days),
        }
    )
    path = tmp_path / "daily.csv"
    frame.write_csv(path)
    return path


def test_info_takes_the_model_as_a_path_or_as_dash_m(model_path):
    positional = run(["info", str(model_path), "--json"])
    option = run(["info", "-m", str(model_path), "--json"])
    assert positional.exit_code == option.exit_code == 0
    assert json.loads(option.stdout) == json.loads(positional.stdout)
    assert run(["info", "--model", str(model_path)]).exit_code == 0


def test_info_with_two_different_models_is_a_usage_error(model_path, tmp_path):
    result = run(["info", str(model_path), "-m", str(tmp_path / "other.streamcast")])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: two model files given") and result.stderr.count("\n") == 1


def test_the_long_gap_note_names_the_option_that_sets_it(tmp_path):
    frame = hourly_frame(series=1, length=100).filter(~pl.int_range(pl.len()).is_between(40, 69))
    frame.write_csv(tmp_path / "gappy.csv")
    args = ["fit", str(tmp_path / "gappy.csv"), *FAST, "--horizon", "4", "-o", str(tmp_path / "m.streamcast")]
    result = run(args)
    assert result.exit_code == 0, result.stderr
    assert "30 steps from 2024-01-02 16:00:00 were interpolated (longer than --long-gap 24)" in result.stderr
    quiet_gaps = run([*args, "--long-gap", "30"])
    assert quiet_gaps.exit_code == 0
    assert "long gap" not in quiet_gaps.stderr


@pytest.mark.parametrize(
    ("freq", "steps"),
    [
        ("1h", 24),
        ("15m", 96),
        ("1m", 60),
        ("1d", 14),
        ("1w", 13),
        ("1mo", 18),
        ("3mo", 8),
        ("1y", 6),
        ("1i", 24),
    ],
)
def test_the_default_horizon_follows_the_frequency(freq, steps):
    assert default_horizon(freq)[0] == steps


@pytest.mark.parametrize(
    ("freq", "words"),
    [
        ("30m", "a day of 30-minute data"),
        ("1d", "two weeks of daily data"),
        ("2w", "18 steps of 2-week data"),
        ("3mo", "two years of quarterly data"),
        ("6mo", "6 steps of 6-month data"),
        ("1y", "six years of yearly data"),
    ],
)
def test_the_default_horizon_is_said_in_the_datas_own_steps(freq, words):
    assert default_horizon(freq)[1] == words


@pytest.mark.parametrize(
    ("freq", "season"),
    [
        ("1h", 24),
        ("15m", 96),
        ("1d", 7),
        ("1w", 52),
        ("4w", 13),
        ("1mo", 12),
        ("3mo", 4),
        ("6mo", 2),
        ("1y", 1),
        ("1i", 1),
    ],
)
def test_the_season_is_a_day_a_week_or_a_year_of_the_data(freq, season):
    assert season_length(freq) == season


def test_quarterly_data_repeats_its_year_of_four_quarters(tmp_path):
    """Seasonal naive, MASE and the network's lags read four quarters back, not twelve."""
    rng = np.random.default_rng(1)
    quarters = 48
    pattern = np.tile([20.0, -10.0, 5.0, -15.0], quarters // 4)
    starts = [date(2010 + k // 4, 1 + 3 * (k % 4), 1) for k in range(quarters)]
    frame = pl.DataFrame(
        {
            "region": ["n"] * quarters + ["s"] * quarters,
            "quarter": starts * 2,
            "visitors": np.concatenate([100 + pattern, 300 + 2 * pattern]) + rng.normal(0, 1, 2 * quarters),
        }
    )
    path = tmp_path / "quarterly.csv"
    frame.write_csv(path)
    out, forecasts = tmp_path / "m.streamcast", tmp_path / "forecasts.csv"
    fitted = run(["fit", str(path), *FAST, "--horizon", "4", "-o", str(out)])
    assert fitted.exit_code == 0, fitted.stderr
    assert sc.load(out).net.config.season == 4
    scored = run(
        [
            "backtest",
            "-m",
            str(out),
            str(path),
            "--windows",
            "2",
            "--json",
            "--save-forecasts",
            str(forecasts),
        ]
    )
    assert scored.exit_code == 0, scored.stderr
    report = json.loads(scored.stdout)
    assert report["season"] == 4
    mae = report["overall"]["mae"]
    assert mae["seasonal_naive"] < 0.2 * mae["naive"]  # a year back is the same quarter
    rows = pl.read_csv(forecasts, try_parse_dates=True).join(
        frame.rename({"region": "series_id", "quarter": "timestamp"}).with_columns(
            pl.col("timestamp").dt.offset_by("1y").alias("timestamp")
        ),
        on=["series_id", "timestamp"],
    )
    assert rows.height == 2 * 2 * 4
    assert np.allclose(rows["seasonal_naive"], rows["visitors"])  # the value four quarters earlier


@pytest.mark.parametrize(
    ("window", "season", "freq", "median", "expected"),
    [
        (24, 12, "1mo", 54, 12),  # a quarter of 54 months holds one year
        (24, 12, "1mo", 321, 24),  # long series keep the frequency's window
        (24, 12, "1mo", 30, 12),  # never under a season
        (12, 4, "3mo", 32, 8),
        (12, 4, "3mo", 103, 12),
        (8, 1, "1y", 14, 8),  # yearly data keeps its window
        (52, 52, "1w", 60, 52),
        (168, 24, "1h", 200, 168),  # hourly data keeps its week
    ],
)
def test_short_coarse_series_get_a_window_of_whole_seasons_within_a_quarter_of_them(
    window, season, freq, median, expected
):
    assert short_series_window(window, season, freq, median) == expected


def test_short_monthly_series_take_a_window_of_one_year(tmp_path):
    rng = np.random.default_rng(2)
    months = 60
    starts = [date(2019 + k // 12, 1 + k % 12, 1) for k in range(months)]
    frame = pl.DataFrame(
        {
            "store": ["a"] * months + ["b"] * months,
            "month": starts * 2,
            "sales": 100 + rng.normal(0, 5, 2 * months),
        }
    )
    path = tmp_path / "monthly.csv"
    frame.write_csv(path)
    out = tmp_path / "m.streamcast"
    fitted = run(["fit", str(path), *FAST, "-o", str(out)])
    assert fitted.exit_code == 0, fitted.stderr
    assert sc.load(out).net.config.ar == 12  # a quarter of 60 months holds one year, not the usual two
    told = run(["fit", str(path), *FAST, "--ar", "24", "-o", str(out)])
    assert told.exit_code == 0, told.stderr
    assert sc.load(out).net.config.ar == 24


def test_yearly_data_is_forecast_by_segrnn_members_alone(tmp_path):
    """An LSTM carried yearly trends back toward each series' mean (README, Yearly data)."""
    years = 40
    frame = pl.DataFrame(
        {
            "country": ["a"] * years + ["b"] * years,
            "year": [date(1980 + k, 1, 1) for k in range(years)] * 2,
            "gdp": np.concatenate([100 + 5.0 * np.arange(years), 900 - 8.0 * np.arange(years)]),
        }
    )
    path = tmp_path / "yearly.csv"
    frame.write_csv(path)
    out = tmp_path / "m.streamcast"
    fast = ["--hidden", "4", "--epochs", "1", "--bptt", "8"]
    fitted = run(["fit", str(path), *fast, "--ensemble", "2", "-o", str(out)])
    assert fitted.exit_code == 0, fitted.stderr
    model = sc.load(out)
    assert [m["cell"] for m in model.info["members"]] == ["segrnn", "segrnn"]
    forecast = run(["forecast", "-m", str(out), "-q"])
    assert forecast.exit_code == 0, forecast.stderr
    assert len(forecast.stdout.splitlines()) == 1 + 2 * 6  # six years of each


def test_daily_data_gets_a_daily_horizon_said_aloud_and_dates_back(tmp_path):
    path = daily_csv(tmp_path)
    out = tmp_path / "m.streamcast"
    result = run(["fit", str(path), *FAST, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert (
        "note: --horizon not given: forecasting 14 steps (two weeks of daily data); pass --horizon N to choose"
        in result.stderr
    )
    assert sc.load(out).horizon == 14
    forecast = run(["forecast", "-m", str(out), "-q", "--keep-names"])
    assert forecast.exit_code == 0, forecast.stderr
    lines = forecast.stdout.splitlines()
    assert lines[0].startswith("shop,origin,date,step,forecast")
    assert lines[1].startswith("x,2024-04-29,2024-04-30,1,")
    assert len(lines) == 1 + 2 * 14


def test_an_explicit_horizon_is_kept_without_a_note(tmp_path):
    path = daily_csv(tmp_path)
    result = run(["fit", str(path), *FAST, "--horizon", "7", "-o", str(tmp_path / "m.streamcast")])
    assert result.exit_code == 0
    assert "--horizon not given" not in result.stderr
    assert sc.load(tmp_path / "m.streamcast").horizon == 7


def test_keep_names_refuses_a_source_name_that_clashes_with_an_output_column(tmp_path):
    frame = hourly_frame(series=2, length=80).rename({"series_id": "step"})
    frame.write_csv(tmp_path / "d.csv")
    fitted = run(
        ["fit", str(tmp_path / "d.csv"), *FAST, "--id-col", "step", "-o", str(tmp_path / "m.streamcast")]
    )
    assert fitted.exit_code == 0, fitted.stderr
    result = run(["forecast", "-m", str(tmp_path / "m.streamcast"), "--keep-names"])
    assert result.exit_code == 2
    assert "column 'step' has the name of an output column" in result.stderr


def test_python_fit_logs_progress_and_read_notes(caplog):
    frame = hourly_frame(series=2, length=120).filter(pl.col("timestamp").dt.hour() != 5)
    with caplog.at_level(logging.INFO, logger="streamcast"):
        data = sc.read_series(frame)
        sc.fit(data, TINY)
    messages = [r.getMessage() for r in caplog.records]
    assert any("filled" in m and "interpolation" in m for m in messages)
    assert "fitting 2 series at 1h, 1 member(s)" in messages
    assert sum(m.startswith("member 1 epoch ") for m in messages) == TINY.epochs


def test_python_forecast_beyond_the_trained_horizon_warns(tiny_model, tiny_data):
    with pytest.warns(StreamcastWarning, match="horizon 9 is longer than the trained 6"):
        table = sc.forecast(tiny_model, tiny_data, horizon=9)
    assert table["step"].max() == 9


def test_the_cli_says_the_horizon_warning_once_in_its_own_words(model_path, tmp_path):
    hourly_frame().write_csv(tmp_path / "d.csv")
    result = run(["forecast", str(tmp_path / "d.csv"), "-m", str(model_path), "--horizon", "9"])
    assert result.exit_code == 0
    assert result.stderr.count("longer than the trained 6") == 1
    assert "warning: --horizon 9 is longer than the trained 6" in result.stderr
