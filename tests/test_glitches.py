"""Glitches (a sentinel such as -9999, a corrupted 1e6) are read as missing, named in a note;
genuine extremes are kept."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.glitches import mark_glitches, recorded_ratio
from tests.conftest import CLI_TINY, long_hourly


def _load(n=600, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 20 + 5 * np.sin(2 * np.pi * np.arange(n) / 24) + rng.normal(0, 1, n)


def test_a_sentinel_and_a_corrupted_reading_are_glitches_and_genuine_extremes_are_not():
    load = _load()
    load[100], load[300] = 1e6, -9999.0
    growth = np.exp(np.linspace(0, np.log(1e5), 500))  # five orders of magnitude, step by step
    counts = np.random.default_rng(1).poisson(0.01, 3000).astype(float)
    counts[50] = 1000.0  # one large order among counts of 1
    frame = long_hourly({"load": load, "growth": growth, "counts": counts, "flat": np.full(50, 3.0)})
    marked, notes = mark_glitches(frame, 300.0)
    missing = marked.filter(pl.col("value").is_null())
    assert missing.select("series_id", "timestamp").rows() == [
        ("load", datetime(2024, 1, 1) + timedelta(hours=100)),
        ("load", datetime(2024, 1, 1) + timedelta(hours=300)),
    ]
    assert len(notes) == 1 and "read 2 values as missing" in notes[0]
    assert "series 'load' at 2024-01-05 04:00:00: 1e+06" in notes[0] and "-9999" in notes[0]
    assert "--glitch-ratio 0 keeps them" in notes[0]
    assert mark_glitches(frame, 0.0) == (frame, [])  # off
    assert mark_glitches(frame.filter(pl.col("series_id") != "load"), 300.0)[1] == []


def test_read_series_interpolates_a_glitch_and_counts_it_as_filled(tmp_path):
    load = _load(200)
    load[77] = 99999.0
    data = sc.read_series(long_hourly({"a": load, "b": _load(200, seed=2)}))
    values = data.frame.filter(pl.col("series_id") == "a")["value"].to_numpy()
    assert values[77] == (load[76] + load[78]) / 2  # interpolated as a gap is
    assert data.filled.rows() == [("a", datetime(2024, 1, 1) + timedelta(hours=77))]  # never scored
    assert any("read 1 value as missing" in n for n in data.notes)
    kept = sc.read_series(long_hourly({"a": load}), glitch_ratio=0)
    assert kept.frame["value"][77] == 99999.0 and kept.filled.is_empty()


def test_fit_and_forecast_name_the_glitch_and_glitch_ratio_0_keeps_it(tmp_path):
    growing = np.exp(0.004 * np.arange(400))  # a load whose daily swing grows with it: logs suit it
    load = _load(400) * growing
    load[123] = -9999.0
    path = tmp_path / "glitched.csv"
    long_hourly({"a": load, "b": _load(400, seed=3) * growing}).write_csv(path)
    out = tmp_path / "m.streamcast"
    runner = CliRunner()
    fitted = runner.invoke(main, ["fit", str(path), *CLI_TINY, "-o", str(out)])
    assert fitted.exit_code == 0, fitted.stderr
    assert (
        "note: read 1 value as missing" in fitted.stderr
        and "series 'a' at 2024-01-06 03:00:00: -9999" in fitted.stderr
    )
    model = sc.load(out)
    assert model.spec.transform == "log"  # the sentinel did not make the data "cross zero"
    forecast = runner.invoke(main, ["forecast", str(path), "-m", str(out)])
    assert forecast.exit_code == 0 and "read 1 value as missing" in forecast.stderr
    kept = runner.invoke(main, ["fit", str(path), *CLI_TINY, "--glitch-ratio", "0", "-o", str(out)])
    assert kept.exit_code == 0 and "read 1 value" not in kept.stderr
    assert sc.load(out).spec.transform == "none"  # -9999 kept: the data now crosses zero


def test_a_models_data_is_read_again_with_the_ratio_it_was_fitted_with(tmp_path):
    load = _load(400)
    load[200] = -9999.0
    path = tmp_path / "g.csv"
    long_hourly({"a": load, "b": _load(400, seed=4)}).write_csv(path)
    out = tmp_path / "m.streamcast"
    runner = CliRunner()
    assert (
        runner.invoke(
            main, ["fit", str(path), *CLI_TINY, "-q", "--glitch-ratio", "0", "-o", str(out)]
        ).exit_code
        == 0
    )
    model = sc.load(out)
    assert model.info["data"]["glitch_ratio"] == 0 and recorded_ratio(model.info) == 0
    again = runner.invoke(main, ["forecast", "-m", str(out)])  # the recorded data, read as in fit
    assert again.exit_code == 0 and "read 1 value" not in again.stderr
    asked = runner.invoke(main, ["forecast", "-m", str(out), "--glitch-ratio", "300"])
    assert asked.exit_code == 0 and "read 1 value as missing" in asked.stderr
    assert sc.read_series(str(path)).glitch_ratio == 300  # the library's default, recorded by fit
    del model.info["data"]["glitch_ratio"]  # a model from before: its data read as it was then
    assert recorded_ratio(model.info) == 0
    assert recorded_ratio({"data": {"glitch_ratio": "300"}}) == 0  # not a ratio: from elsewhere


def test_a_run_of_values_beyond_the_bound_is_a_change_and_a_series_end_is_kept():
    load = _load(600)
    load[100:103] = -9999.0  # a short run: a logger's error
    load[300:306] = 5000.0  # six steps at a new level: a change, kept
    load[-2:] = 1e6  # the newest values: a shift cannot be told from a glitch there
    marked, _ = mark_glitches(long_hourly({"a": load}), 300.0)
    assert np.flatnonzero(marked["value"].is_null().to_numpy()).tolist() == [100, 101, 102]


def test_a_glitch_before_future_covariate_rows_keeps_the_future_on_the_grid():
    load = _load(100)
    load[60] = 1e6
    frame = long_hourly({"a": np.append(load, [np.nan] * 4)}).with_columns(temp=pl.lit(1.0))
    data = sc.read_series(frame, future_covariates=["temp"])
    assert data.future["timestamp"].to_list() == [
        datetime(2024, 1, 1) + timedelta(hours=100 + i) for i in range(4)
    ]
    assert data.frame["timestamp"][-1] == datetime(2024, 1, 1) + timedelta(hours=99)
    assert data.filled.rows() == [("a", datetime(2024, 1, 1) + timedelta(hours=60))]


def test_a_missing_reading_inside_a_run_does_not_split_it():
    load = _load(1000)
    load[500:502], load[503:505] = 5000.0, 5000.0  # four at a new level, one reading missing
    load[502] = np.nan
    load[-3:] = 5000.0  # the newest values, with a missing one before the last
    load[-2] = np.nan
    marked, notes = mark_glitches(
        long_hourly({"a": load}).with_columns(pl.col("value").fill_nan(None)), 300.0
    )
    assert marked["value"].null_count() == 2 and notes == []  # only the two missing readings
