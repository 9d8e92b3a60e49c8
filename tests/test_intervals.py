"""`--intervals`: an 80% interval calibrated around every point model's forecasts by default."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.cli.fit import fit as fit_cmd
from streamcast.intervals import MIN_ERRORS, WIDEN, Intervals, calibrate, units_at, window_unit
from streamcast.training import FitConfig
from tests.conftest import TINY, long_hourly


def noisy_days(series: int = 4, length: int = 600, noise: float = 1.0, seed: int = 0) -> pl.DataFrame:
    """A daily shape plus Gaussian noise whose size differs by series: a calibrated interval must
    cover about its share of the points, each series in its own units."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return long_hourly(
        {
            f"s{s}": 50.0 + 10 * s + 5 * np.sin(2 * np.pi * t / 24) + rng.normal(0, noise * (1 + s), length)
            for s in range(series)
        }
    )


def test_the_unit_is_the_mean_change_over_a_season_in_the_window():
    window = np.array([[2.0, 1.0, 0.5, 1.0, 3.0, 1.0, 0.5, 1.0, 2.0, 1.0]])  # season 2
    # Changes over 2 steps: 1.5, 0, 2.5, 0, 2.5, 0, 1.5, 0: mean 1.0.
    assert window_unit(window, 2).item() == pytest.approx(1.0, abs=1e-4)
    # Shorter than two seasons: the change over one step.
    assert window_unit(np.array([[1.0, 3.0, 3.0, 5.0, 5.0, 7.0]]), 24).item() == pytest.approx(1.2, abs=1e-4)


def test_a_young_series_unit_counts_its_own_values_only_and_too_few_take_the_typical_one():
    own = np.array([2.0, 1.0, 0.5, 1.0, 3.0, 1.0, 0.5, 1.0, 2.0, 1.0])
    padded = np.concatenate([np.zeros(30), own])[None]  # the carried window of a new series
    assert window_unit(padded, 2).item() == pytest.approx(window_unit(own[None], 2).item())
    fresh = np.concatenate([np.zeros(36), own[:4]])[None]  # two changes of its own
    assert np.isnan(window_unit(fresh, 2)).item()
    assert window_unit(fresh, 2, typical=0.7).item() == pytest.approx(0.7)
    assert window_unit(np.zeros((1, 40)), 2, typical=0.7).item() == pytest.approx(0.7)


def test_units_read_from_the_values_equal_those_of_each_window():
    values = np.arange(1.0, 41.0) ** 1.5
    starts, origins = np.array([0, 0, 10]), np.array([5, 9, 29])  # the first window runs off the start
    units = units_at(values, starts, origins, ar=8, season=2, typical=0.5)
    windows = np.stack([np.concatenate([np.zeros(2), values[0:6]]), values[2:10], values[32:40]])
    np.testing.assert_allclose(units, window_unit(windows, 2, typical=0.5), rtol=1e-12)


def test_calibration_puts_each_level_where_its_share_of_errors_lies():
    rng = np.random.default_rng(0)
    errors = rng.normal(0, 2.0, (4000, 3))
    intervals, reason = calibrate(errors, (0.1, 0.9), season=24)
    assert reason is None and intervals.offsets.shape == (3, 2)
    np.testing.assert_allclose(intervals.offsets, [[-2.563, 2.563]] * 3, atol=0.15)  # N(0, 2)'s 10% and 90%
    assert intervals.quantiles == (0.1, 0.5, 0.9)


def test_widening_multiplies_every_offset_and_the_default_is_the_clis():
    errors = np.random.default_rng(1).normal(0, 1.0, (500, 4))
    measured, _ = calibrate(errors, (0.1, 0.9), season=1)
    widened, _ = calibrate(errors, (0.1, 0.9), season=1, widen=1.25)
    np.testing.assert_allclose(widened.offsets, 1.25 * measured.offsets)
    assert FitConfig().interval_widen == WIDEN > 1  # the library's default is `fit`'s
    assert next(p for p in fit_cmd.params if p.name == "interval_widen").default == WIDEN


def test_an_interval_never_excludes_its_own_point_and_too_few_errors_give_none():
    shifted = np.full((100, 2), 5.0) + np.linspace(0, 1, 100)[:, None]  # every error above the point
    intervals, _ = calibrate(shifted, (0.1, 0.9), season=1)
    assert (intervals.offsets[:, 0] == 0).all() and (intervals.offsets[:, 1] > 5).all()
    none, reason = calibrate(np.zeros((MIN_ERRORS - 1, 2)), (0.1, 0.9), season=1)
    assert none is None and f"fewer than {MIN_ERRORS}" in reason


def test_widening_keeps_the_point_and_holds_the_last_step_past_the_horizon():
    intervals = Intervals((0.1, 0.9), np.array([[-1.0, 2.0], [-3.0, 4.0]]), season=1)
    point = np.array([[[10.0], [20.0], [30.0]]])  # (1, H=3, 1): one step past the calibrated two
    wide = intervals.widen(point, np.array([0.5]))
    assert wide.tolist() == [[[9.5, 10.0, 11.0], [18.5, 20.0, 22.0], [28.5, 30.0, 32.0]]]


@pytest.fixture(scope="module")
def calibrated():
    data = sc.read_series(noisy_days())
    config = replace(TINY, horizon=12, epochs=3, ar=48, val_size=96)
    return data, config, sc.fit(data, config)


def test_fit_calibrates_an_interval_that_leaves_the_point_forecast_as_it_was(calibrated):
    data, config, model = calibrated
    assert model.intervals is not None and model.quantiles == (0.1, 0.5, 0.9)
    table = sc.forecast(model, data)
    assert table.columns[4:8] == ["forecast", "q0.1", "q0.5", "q0.9"]
    assert (table["forecast"] == table["q0.5"]).all()
    assert (table["q0.1"] < table["forecast"]).all() and (table["forecast"] < table["q0.9"]).all()
    plain = sc.fit(data, replace(config, intervals=()))
    assert plain.intervals is None and plain.quantiles == ()
    assert sc.forecast(plain, data)["forecast"].equals(table["forecast"])  # the point is untouched


def test_the_interval_covers_about_its_share_of_unseen_points_in_each_series(calibrated):
    data, _, model = calibrated
    fresh = sc.read_series(noisy_days(length=900, seed=0))  # the same series, 300 steps further
    overall = sc.backtest(model, fresh, windows=20, stride=12).score("coverage")
    assert 0.65 <= overall <= 0.92, overall
    widths = sc.forecast(model, fresh).with_columns(width=pl.col("q0.9") - pl.col("q0.1"))
    per_series = widths.group_by("series_id").agg(pl.col("width").mean()).sort("series_id")["width"]
    assert per_series.is_sorted() and per_series[-1] > 2 * per_series[0]  # noisier series, wider


def test_the_interval_survives_save_and_load_and_info_shows_it(calibrated, tmp_path):
    data, _, model = calibrated
    path = sc.save(model, tmp_path / "m.streamcast")
    loaded = sc.load(path)
    np.testing.assert_array_equal(loaded.intervals.offsets, model.intervals.offsets)
    assert sc.forecast(loaded, data).equals(sc.forecast(model, data))
    shown = CliRunner().invoke(main, ["info", str(path)], terminal_width=200)
    assert "10%-90% around the point forecast" in shown.output
    assert "0.1,0.5,0.9 (the calibrated interval's)" in shown.output


def test_the_forecast_past_the_trained_horizon_keeps_an_interval_around_every_step(calibrated):
    data, _, model = calibrated
    with pytest.warns(sc.StreamcastWarning):
        table = sc.forecast(model, data, horizon=30)
    assert table.height == 4 * 30
    assert (table["q0.1"] <= table["forecast"]).all() and (table["forecast"] <= table["q0.9"]).all()
    within = sc.forecast(model, data)
    assert table.filter(pl.col("step") <= 12).select(within.columns).equals(within)


def test_stream_lines_carry_the_interval(calibrated, tmp_path):
    data, _, model = calibrated
    path = sc.save(model, tmp_path / "m.streamcast")
    last = data.frame.group_by("series_id").agg(pl.col("timestamp").last(), pl.col("value").last())
    line = f"s0,{last.filter(pl.col('series_id') == 's0')['timestamp'][0] + np.timedelta64(1, 'h')},55.0\n"
    result = CliRunner().invoke(main, ["stream", "-m", str(path), "-q"], input=line)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    point = record["forecast"]
    assert len(record["q0.1"]) == len(point) == 12
    assert all(lo < p < hi for lo, p, hi in zip(record["q0.1"], point, record["q0.9"], strict=True))


@pytest.mark.parametrize(
    ("value", "message"),
    [("0.5", "other than 0.5"), ("1.2", "strictly between 0 and 1"), ("low", "--intervals takes numbers")],
)
def test_bad_levels_are_one_line_and_exit_2(tmp_path, value, message):
    data = tmp_path / "d.csv"
    noisy_days(series=1, length=100).write_csv(data)
    result = CliRunner().invoke(main, ["fit", str(data), "-o", str(tmp_path / "m"), "--intervals", value])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_fit_widens_the_interval_as_asked_and_info_says_by_how_much(calibrated, tmp_path):
    data, config, model = calibrated
    as_measured = sc.fit(data, replace(config, interval_widen=1.0))
    np.testing.assert_allclose(model.intervals.offsets, WIDEN * as_measured.intervals.offsets)
    assert sc.forecast(as_measured, data)["forecast"].equals(sc.forecast(model, data)["forecast"])
    assert model.info["intervals"]["widen"] == WIDEN
    shown = CliRunner().invoke(
        main, ["info", str(sc.save(model, tmp_path / "m.streamcast"))], terminal_width=200
    )
    assert "calibrated on the" in shown.output and f"widened {WIDEN:g}x" in shown.output


@pytest.mark.parametrize("value", ["0", "-1", "inf"])
def test_a_widening_that_is_not_a_positive_factor_is_one_line_and_exit_2(tmp_path, value):
    data = tmp_path / "d.csv"
    noisy_days(series=1, length=100).write_csv(data)
    result = CliRunner().invoke(
        main, ["fit", str(data), "-o", str(tmp_path / "m"), "--interval-widen", value]
    )
    assert result.exit_code == 2, result.output
    assert "--interval-widen must be a factor above 0" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


def test_intervals_none_and_quantile_models_serve_no_calibrated_interval(tmp_path):
    data = tmp_path / "d.csv"
    noisy_days(series=2, length=300).write_csv(data)
    common = [
        "fit",
        str(data),
        "--epochs",
        "1",
        "--ensemble",
        "1",
        "--hidden",
        "8",
        "--horizon",
        "6",
        "-q",
    ]
    off = CliRunner().invoke(main, [*common, "-o", str(tmp_path / "off.streamcast"), "--intervals", "none"])
    assert off.exit_code == 0, off.output
    assert sc.load(tmp_path / "off.streamcast").quantiles == ()
    learned = CliRunner().invoke(
        main, [*common, "-o", str(tmp_path / "q.streamcast"), "--quantiles", "0.2,0.8"]
    )
    assert learned.exit_code == 0, learned.output
    model = sc.load(tmp_path / "q.streamcast")
    assert model.intervals is None and model.quantiles == (0.2, 0.5, 0.8)


def test_a_level_given_twice_is_refused_before_fitting(tmp_path):
    data = tmp_path / "d.csv"
    noisy_days(series=1, length=100).write_csv(data)
    result = CliRunner().invoke(
        main, ["fit", str(data), "-o", str(tmp_path / "m"), "--intervals", "0.1,0.1,0.9"]
    )
    assert result.exit_code == 2, result.output
    assert "once" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


def test_levels_given_out_of_order_are_stored_in_order(calibrated):
    data, config, model = calibrated
    reversed_ = sc.fit(data, replace(config, intervals=(0.9, 0.1)))
    assert reversed_.intervals.levels == (0.1, 0.9)
    assert reversed_.info["intervals"]["levels"] == [0.1, 0.9]
    np.testing.assert_array_equal(reversed_.intervals.offsets, model.intervals.offsets)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda iv: iv.update(levels=[0.1, 0.1], offsets=[[-1.0, -1.0]] * len(iv["offsets"])), "once"),
        (lambda iv: iv.update(offsets=[[1.0, 2.0]] * len(iv["offsets"])), "side"),
        (lambda iv: iv.update(offsets=[[-1.0, -2.0]] * len(iv["offsets"])), "side"),
    ],
)
def test_a_crafted_interval_that_would_misplace_the_point_is_refused(calibrated, tmp_path, change, message):
    from tests.test_modelfile import rewrite_metadata

    data, _, model = calibrated
    path = sc.save(model, tmp_path / "m.streamcast")

    def edit(meta):
        change(meta["intervals"])
        return meta

    rewrite_metadata(path, edit)
    frame = tmp_path / "d.csv"
    data.frame.write_csv(frame)
    result = CliRunner().invoke(main, ["forecast", str(frame), "-m", str(path)])
    assert result.exit_code != 0
    assert "header is invalid" in result.output and message in result.output, result.output
    assert "Traceback" not in result.output


def test_a_young_series_gets_an_interval_as_wide_as_a_typical_one(calibrated):
    data, _, model = calibrated
    grown = sc.forecast(model, data)
    young = data.frame.filter(pl.col("series_id") == "s1").tail(30).with_columns(series_id=pl.lit("new"))
    fresh = sc.forecast(model, sc.read_series(young))  # 30 values: fewer than two days of its own
    width = lambda t: (t["q0.9"] - t["q0.1"]).mean()  # noqa: E731
    typical = width(grown.filter(pl.col("series_id").is_in(["s0", "s1", "s2"])))
    assert 0.3 * typical < width(fresh) < 3 * typical


def test_the_watch_of_an_interval_model_flags_by_the_error_spread_as_a_point_model_does(calibrated):
    from streamcast.alarms import alarm_rate

    data, _, model = calibrated
    fresh = sc.read_series(noisy_days(length=700, seed=0))
    with_interval = alarm_rate(model, fresh)
    assert with_interval.scored > 1000
    assert with_interval.flagged == alarm_rate(replace(model, intervals=None), fresh).flagged


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_the_window_unit_keeps_its_windows_dtype_young_or_full(dtype):
    """Worked in float32 at least: the unit still comes back in the window's dtype."""
    window = np.zeros((2, 60))
    window[0] = 1 + np.arange(60.0) / 2  # full: a change of 12 over each season of 24 steps
    window[1, -10:] = 1.0  # young: fewer than a season of its own changes, so `typical`
    unit = window_unit(window.astype(dtype), season=24, typical=0.5)
    assert unit.dtype == dtype and unit.shape == (2,)
    np.testing.assert_allclose(unit.astype(np.float64), [12.0, 0.5], atol=1e-2, rtol=1e-2)
