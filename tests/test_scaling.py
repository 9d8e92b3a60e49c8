"""`--scaling`: how each series is put into the network's units, and why the default does not
depend on the units (or the zero) the data comes in."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from streamcast.cli import main
from streamcast.features import fit_scaler, resolve_scaling, spread_of
from streamcast.highway import choose_start, naive_units, ridge_weights
from tests.conftest import CLI_TINY, hourly_frame, long_hourly


def crossing_zero(series: int = 3, length: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    """Daily cycles around zero with noise, of unlike sizes: data no transform applies to."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return {
        f"c{i}": (i + 1) * np.sin(2 * np.pi * (t + 5 * i) / 24) + 0.5 * i + rng.normal(0, 0.3, length)
        for i in range(series)
    }


def test_auto_is_the_spread_in_own_units_and_the_mean_in_logs():
    assert resolve_scaling("auto", "none") == "spread"
    assert resolve_scaling("auto", "log") == "mean"
    assert resolve_scaling("std", "none") == "std"  # what the user asked for stays
    assert spread_of(abs_mean=5.0, std=2.0, scaling="spread", transform="none") == 4.0
    # A series (almost) constant in training, or a new one of a single value, is scaled by its
    # level, not by a spread near 0 that would make its first move a hundred units.
    values = np.array([100.0, 100.0001, 99.9999, 100.0, 7.0, 9.0, 5.0, 42.0], dtype=np.float32)
    offsets, lengths = np.array([0, 4, 7, 8]), np.array([4, 3, 1])
    scaler = fit_scaler(values, offsets, ["flat", "moving", "one"], lengths, "spread")
    assert scaler.scale["flat"] == pytest.approx(100.0, rel=1e-5)
    assert scaler.scale["moving"] == pytest.approx(2 * np.std([7.0, 9.0, 5.0]), rel=1e-5)
    assert scaler.scale["one"] == 42.0


def test_pooled_in_naive_units_a_series_scale_no_longer_decides_the_shared_fit():
    rng = np.random.default_rng(0)
    t = np.arange(500)
    a = np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.2, 500)  # a daily cycle
    b = np.sin(2 * np.pi * t / 100) + rng.normal(0, 0.05, 500)  # a slow wave: another best map
    offsets, lengths = np.array([0, 500, 1000]), np.array([500, 500])

    def fits(scale_b: float) -> tuple[np.ndarray, np.ndarray]:
        values = np.concatenate([a, scale_b * b]).astype(np.float32)
        units = naive_units(values, offsets, lengths, 24)
        plain = ridge_weights(values, offsets, lengths, ar=48, horizon=6)
        pooled = ridge_weights(values, offsets, lengths, ar=48, horizon=6, units=units)
        return plain, pooled

    (plain_1, pooled_1), (plain_100, pooled_100) = fits(1.0), fits(100.0)
    np.testing.assert_allclose(pooled_1, pooled_100, atol=1e-4)
    assert np.abs(plain_1 - plain_100).max() > 0.05  # in scaled units the larger series had won


def _forecasts(runner: CliRunner, tmp_path, name: str, frame: pl.DataFrame) -> pl.DataFrame:
    data, model, out = tmp_path / f"{name}.csv", tmp_path / f"{name}.model", tmp_path / f"{name}.out.csv"
    frame.write_csv(data)
    fitted = runner.invoke(main, ["fit", str(data), "-o", str(model), *CLI_TINY, "--epochs", "2", "--quiet"])
    assert fitted.exit_code == 0, fitted.output
    served = runner.invoke(main, ["forecast", "-m", str(model), "-o", str(out)])
    assert served.exit_code == 0, served.output
    meta = json.loads(runner.invoke(main, ["info", str(model), "--json"]).stdout)
    assert meta["feature_spec"]["scaling"] == "spread"
    assert "none, scaling=spread" in runner.invoke(main, ["info", str(model)]).stdout
    return pl.read_csv(out).sort("series_id", "timestamp")


def test_data_z_scored_first_gets_the_same_forecasts_z_scored(tmp_path):
    """A harness that z-scores each series before `fit` (as the ETT protocol scores) gets the
    forecasts of the data as measured, z-scored the same way: no unit or zero is preferred."""
    raw = long_hourly(crossing_zero())
    stats = raw.group_by("series_id").agg(m=pl.col("value").mean(), s=pl.col("value").std())
    z = raw.join(stats, on="series_id").select(
        "series_id", "timestamp", value=(pl.col("value") - pl.col("m")) / pl.col("s")
    )
    runner = CliRunner()
    a = _forecasts(runner, tmp_path, "raw", raw).join(stats, on="series_id")
    b = _forecasts(runner, tmp_path, "z", z)
    assert a.height == b.height == 3 * 6
    expected = ((a["forecast"] - a["m"]) / a["s"]).to_numpy()
    np.testing.assert_allclose(b["forecast"].to_numpy(), expected, atol=1e-3)


@pytest.mark.parametrize("scaling", ["mean", "std"])
def test_the_older_scalings_stay_options(tmp_path, scaling):
    data, model = tmp_path / "d.csv", tmp_path / "m.model"
    hourly_frame(series=2).write_csv(data)
    runner = CliRunner()
    args = ["fit", str(data), "-o", str(model), *CLI_TINY, "--transform", "none", "--scaling", scaling, "-q"]
    assert runner.invoke(main, args).exit_code == 0
    meta = json.loads(runner.invoke(main, ["info", str(model), "--json"]).stdout)
    assert meta["feature_spec"]["scaling"] == scaling


def test_a_series_that_repeats_its_season_exactly_does_not_decide_the_pooled_highway():
    """Its seasonal naive unit is ~0, so pooled in naive units it would weigh a million times the
    others; floored, the shared fit still serves the other series about as well as their own."""
    rng = np.random.default_rng(1)
    t = np.arange(600)
    exact = 0.7 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 1e-7, 600)  # a day, repeated
    waves = [0.7 * np.sin(2 * np.pi * (t + 17 * i) / 100) + rng.normal(0, 0.05, 600) for i in range(3)]
    values = np.concatenate([exact, *waves]).astype(np.float32)
    offsets, lengths = np.arange(0, 2401, 600), np.full(4, 500)
    pooled = choose_start(
        "ridge", values, offsets, lengths, [], (48,), 6, 24, squared=True, naive_pooled=True
    )
    weights = pooled[1].numpy()
    alone = ridge_weights(values[600:], offsets[:4], lengths[:3], ar=48, horizon=6)
    exact_alone = ridge_weights(values[:600], offsets[:2], lengths[:1], ar=48, horizon=6)

    def error(w: np.ndarray) -> float:  # on the waves' held-out steps
        errors = []
        for start in offsets[1:4]:
            origins = np.arange(start + 500, start + 594)
            windows = np.stack([values[o - 48 : o] for o in origins])
            future = np.stack([values[o : o + 6] for o in origins])
            errors.append(np.abs(windows @ w.T - future).mean())
        return float(np.mean(errors))

    assert error(weights) < 1.5 * error(alone)
    assert error(weights) < error(exact_alone) / 2
