"""`--naive-share fitted`: each series' blend of network and naive fitted on the validation part."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast import training
from streamcast.cli import main
from streamcast.errors import UsageError
from streamcast.fallback import MIN_SHARE, PRIOR_HORIZONS, SHARE_GRID, fitted_shares
from streamcast.reading import read_series
from tests.conftest import TINY
from tests.test_fallback import periodic_and_noisy

MANY = 1e12  # horizons of validation: the prior's shrinking is nil


def two_forecasts(rows: int = 400, horizon: int = 4, seed: int = 0):
    """Targets, and two forecasts of them whose errors are independent: the network's twice as
    large as naive's, so the best blend takes 4/5 of naive (variances 4 and 1)."""
    rng = np.random.default_rng(seed)
    targets = rng.normal(size=(rows, horizon))
    point = targets + 2 * rng.normal(size=(rows, horizon))
    naive = targets + rng.normal(size=(rows, horizon))
    return point, targets, naive


def brute(point, targets, toward, power: int, grid: np.ndarray) -> float:
    """The share on `grid` with the lowest total error of the blend."""
    losses = [float((np.abs(point + w * (toward - point) - targets) ** power).sum()) for w in grid]
    return float(grid[int(np.argmin(losses))])


def test_the_squared_error_share_is_the_best_blend_and_near_what_the_error_variances_say():
    point, targets, naive = two_forecasts()
    share, at_last = fitted_shares(point, targets, naive, np.array([400]), squared=True, horizons=MANY)
    assert share[0] == pytest.approx(brute(point, targets, naive, 2, np.linspace(0, 1, 100_001)), abs=1e-5)
    assert share[0] == pytest.approx(0.8, abs=0.05)  # var 4 against 1: 4 / (4 + 1) of naive
    assert not at_last.any()  # no last value offered


def test_the_absolute_error_share_is_the_best_of_its_grid():
    point, targets, naive = two_forecasts(seed=1)
    share, _ = fitted_shares(point, targets, naive, np.array([400]), squared=False, horizons=MANY)
    grid = np.linspace(0, 1, SHARE_GRID + 1)
    assert share[0] == pytest.approx(brute(point, targets, naive, 1, grid), abs=1e-9)
    assert 0.6 < share[0] < 0.95


def test_a_share_is_shrunk_by_how_few_horizons_it_was_fitted_on():
    point, targets, naive = two_forecasts()
    counts = np.array([400])
    whole, _ = fitted_shares(point, targets, naive, counts, squared=True, horizons=MANY)
    half, _ = fitted_shares(point, targets, naive, counts, squared=True, horizons=PRIOR_HORIZONS)
    one, _ = fitted_shares(point, targets, naive, counts, squared=True, horizons=1)
    assert half[0] == pytest.approx(whole[0] / 2)
    assert one[0] == pytest.approx(whole[0] / (1 + PRIOR_HORIZONS))


def test_each_series_gets_its_own_share_towards_the_naive_that_blends_best():
    point, targets, seasonal = two_forecasts(rows=300)
    # Series 0 (rows 0-99): the last value ten times closer than seasonal naive; series 1: the
    # last value far off; series 2: no target inside the validation part.
    last = targets + 0.1 * (seasonal - targets)
    last[100:200] += 50.0
    targets = targets.copy()
    targets[200:] = np.nan
    shares, at_last = fitted_shares(
        point, targets, seasonal, np.array([100, 100, 100]), squared=True, horizons=MANY, last=last
    )
    assert at_last.tolist() == [True, False, False]
    assert shares[0] > 0.95
    fine = np.linspace(0, 1, 10_001)
    best = brute(point[100:200], targets[100:200], seasonal[100:200], 2, fine)
    assert shares[1] == pytest.approx(best, abs=1e-4)
    assert shares[2] == 0.0  # nothing to fit on: the network


def test_only_the_steps_inside_the_validation_part_count():
    point, targets, naive = two_forecasts()
    targets = targets.copy()
    targets[::3, 1:] = np.nan  # as origins near the part's edges: some of their steps fall outside
    targets[5:40] = np.nan
    share, _ = fitted_shares(point, targets, naive, np.array([400]), squared=True, horizons=MANY)
    known = ~np.isnan(targets)
    masked = [np.where(known, x, 0.0) for x in (point, targets, naive)]
    assert share[0] == pytest.approx(brute(*masked, 2, np.linspace(0, 1, 100_001)), abs=1e-5)


def test_a_naive_within_rounding_of_the_network_gets_no_share():
    point, targets, _ = two_forecasts()
    share, _ = fitted_shares(point, targets, point + 1e-13, np.array([400]), squared=True, horizons=MANY)
    assert share[0] == 0.0


def test_a_share_under_the_minimum_is_none():
    point, targets, _ = two_forecasts()
    poor = targets + 30 * (point - targets)  # 30x the network's error: a share of about 1/900
    share, at_last = fitted_shares(point, targets, poor, np.array([400]), True, MANY, last=poor)
    assert share[0] == 0.0 < MIN_SHARE and not at_last[0]


def late_validation(point, targets, naive, last, counts) -> training.LateValidation:
    units = np.ones(point.shape[0])
    return training.LateValidation(point, naive, last, targets, units, counts)


def test_a_fitted_share_replaces_the_ratios_only_where_it_is_larger():
    # Series 0: the network 3x naive's error, the ratio's naive whole (the fitted blend is less);
    # series 1: the network as good as naive, their errors independent: the ratio's network alone,
    # where half and half does better.
    point, targets, naive = two_forecasts(rows=800)
    point[:400] = targets[:400] + 3 * (naive[:400] - targets[:400])
    point[400:] = targets[400:] + np.random.default_rng(7).normal(size=(400, 4))
    late = late_validation(point, targets, naive, naive + 100.0, np.array([400, 400]))
    config = replace(training.FitConfig(), loss="mse")
    ratio, _ = training._naive_shares(late, replace(config, naive_share="ratio"), 50.0, last_only=False)
    fitted, at_last = training._naive_shares(late, config, 50.0, last_only=False)
    assert ratio.tolist() == [1.0, 0.0]
    assert fitted[0] == 1.0 and 0.35 < fitted[1] < 0.5  # about 0.5, shrunk by 50 / 58
    assert not at_last.any()


@pytest.fixture(scope="module")
def mixed_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("fitted") / "mixed.csv"
    periodic_and_noisy(400).write_csv(path)
    return path


FIT = [
    "--horizon",
    "6",
    "--epochs",
    "2",
    "--hidden",
    "8",
    "--ensemble",
    "1",
    "--val-size",
    "120",
    "--ar",
    "168",
]


def test_fit_blends_a_series_by_its_fitted_share_and_forecast_and_backtest_serve_it(mixed_csv, tmp_path):
    runner = CliRunner()
    fitted_path, ratio_path = tmp_path / "fitted.streamcast", tmp_path / "ratio.streamcast"
    fitted = runner.invoke(main, ["fit", str(mixed_csv), *FIT, "-o", str(fitted_path)])
    assert fitted.exit_code == 0, fitted.stderr
    assert "or where a blend did better on the validation part" in fitted.stderr
    ratio = runner.invoke(
        main, ["fit", str(mixed_csv), *FIT, "--naive-share", "ratio", "-o", str(ratio_path)]
    )
    assert ratio.exit_code == 0, ratio.stderr
    by_fit, by_ratio = sc.load(fitted_path), sc.load(ratio_path)
    # The same network (same seed); noisy1 (a day plus noise) is blended only by its fitted share.
    assert by_ratio.naive_share == {} and set(by_fit.naive_share) == {"noisy1"}
    share = by_fit.naive_share["noisy1"]
    shown = f"for 1 more (over 1.2x, or where a blend did better on the validation part; share {share:.2g})"
    assert shown in fitted.stderr
    assert MIN_SHARE <= share <= 20 / (20 + PRIOR_HORIZONS)  # 120 steps: 20 horizons, shrunk
    info = json.loads(runner.invoke(main, ["info", str(fitted_path), "--json"]).stdout)["info"]
    assert info["naive_fallback"]["share"] == "fitted" and info["naive_fallback"]["blended"] == 1
    # forecast serves the network moved `share` of the way to naive (the data is in its own units).
    data = read_series(pl.read_csv(mixed_csv, try_parse_dates=True))
    noisy1 = pl.col("series_id") == "noisy1"
    network = sc.forecast(by_ratio, data).filter(noisy1)["forecast"].to_numpy()
    served = sc.forecast(by_fit, data).filter(noisy1)["forecast"].to_numpy()
    day = data.frame.filter(noisy1)["value"].to_numpy()[-24:]
    towards = day[:6] if "noisy1" not in by_fit.naive_last else np.full(6, day[-1])
    np.testing.assert_allclose(served, network + share * (towards - network), rtol=1e-4)
    # backtest scores what forecast serves.
    scored = sc.backtest(by_fit, data, windows=2, per_series=True).per_series.filter(noisy1)
    alone = sc.backtest(by_ratio, data, windows=2, per_series=True).per_series.filter(noisy1)
    assert not scored.equals(alone)


def test_naive_share_must_be_a_known_rule():
    with pytest.raises(UsageError, match="--naive-share must be one of fitted, ratio"):
        replace(TINY, naive_share="best")
    result = CliRunner().invoke(main, ["fit", "x.csv", "--naive-share", "best"])
    assert result.exit_code == 2 and "'best' is not one of 'fitted', 'ratio'" in result.output


def test_the_fits_loss_decides_between_squared_and_absolute_errors():
    # The network is exact but for a few large misses, naive a little off everywhere: squared
    # errors want much of naive (the misses dominate), absolute errors want none.
    rng = np.random.default_rng(3)
    targets = rng.normal(size=(400, 4))
    point = targets.copy()
    point[::40] += 30.0
    naive = targets + rng.normal(size=(400, 4))
    late = late_validation(point, targets, naive, naive + 100.0, np.array([400]))
    config = training.FitConfig(naive_fallback=1.5)
    by_mse, _ = training._naive_shares(late, replace(config, loss="mse"), MANY, last_only=False)
    by_mae, _ = training._naive_shares(late, replace(config, loss="mae"), MANY, last_only=False)
    assert by_mse[0] > 0.5 and by_mae[0] == 0.0
    quantiles = replace(config, loss="mse", quantiles=(0.1, 0.9))  # trains on pinball: absolute
    assert training._naive_shares(late, quantiles, MANY, last_only=False)[0][0] == 0.0


def test_a_fitted_blend_towards_the_last_value_replaces_a_ramp_towards_seasonal_naive():
    # Seasonal naive's errors follow the network's (sd 1.0 against 1.3): the ramp blends a little
    # towards it and no blend with it pays much. The last value's are independent (sd 1.1): half
    # and half with it (1.69 / (1.69 + 1.21) = 0.58) takes the error variance from 1.69 to 0.71.
    rng = np.random.default_rng(4)
    shape = (4000, 4)
    targets = rng.normal(size=shape)
    error = 1.3 * rng.normal(size=shape)
    point = targets + error
    seasonal = targets + 0.75 * error + 0.3 * rng.normal(size=shape)
    last = targets + 1.1 * rng.normal(size=shape)
    late = late_validation(point, targets, seasonal, last, np.array([4000]))
    config = training.FitConfig(naive_fallback=1.5, loss="mse")
    ramp, ramp_last = training._naive_shares(late, replace(config, naive_share="ratio"), MANY, False)
    assert 0.1 < ramp[0] < 0.45 and not ramp_last[0]  # about 1.27x seasonal naive's error
    share, at_last = training._naive_shares(late, config, MANY, last_only=False)
    assert at_last[0] and share[0] == pytest.approx(0.58, abs=0.04)


def test_the_naive_is_chosen_by_its_blend_at_the_share_served_not_before_shrinking():
    # The last value's best blend is near perfect at a share of 0.1, shrunk on one horizon to
    # under the minimum (none); seasonal naive's best (0.92) shrunk to 0.10 still helps: served.
    rng = np.random.default_rng(6)
    shape = (4000, 4)
    targets = rng.normal(size=shape)
    error = rng.normal(size=shape)
    point = targets + error
    seasonal = targets + 0.3 * rng.normal(size=shape)
    last = point - 10 * error + 0.5 * rng.normal(size=shape)
    share, at_last = fitted_shares(point, targets, seasonal, np.array([4000]), True, horizons=1, last=last)
    assert not at_last[0] and share[0] == pytest.approx(0.917 / (1 + PRIOR_HORIZONS), abs=0.01)
