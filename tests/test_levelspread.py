"""`--transform auto` takes logs only where the series' spread grows with their level."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.levelspread import LAMBDAS, MAX_SEASONS, logs_suit, series_lambdas
from tests.conftest import CLI_TINY, TINY, hourly_frame, long_hourly


def _flat(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in series])
    return np.concatenate(series), np.concatenate([[0], np.cumsum(lengths)]), lengths


def _reference(y: np.ndarray, season: int) -> float:
    """Guerrero's lambda of one series, season by season in a loop, as the method reads."""
    period = max(season, 2)
    n = min(len(y) // period, MAX_SEASONS)
    if n < 2:
        return np.nan
    seasons = y[len(y) - n * period :].reshape(n, period)
    mu, sd = seasons.mean(axis=1), seasons.std(axis=1, ddof=1)
    if np.log(mu).std() < 0.03:
        return 1.0
    variation = [np.std(sd / mu ** (1 - lam), ddof=1) / np.mean(sd / mu ** (1 - lam)) for lam in LAMBDAS]
    return float(LAMBDAS[int(np.argmin(variation))])


def _multiplicative(rng, n=480, level=100.0) -> np.ndarray:
    t = np.arange(n)
    trend = np.exp(np.cumsum(rng.normal(0.004, 0.02, n)))
    return level * trend * (1 + 0.3 * np.sin(2 * np.pi * t / 24)) * (1 + rng.normal(0, 0.03, n))


def _additive(rng, n=480, level=100.0) -> np.ndarray:
    t = np.arange(n)
    return level + np.cumsum(rng.normal(0.3, 1.0, n)) + 10 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 2, n)


def test_lambda_is_near_0_where_the_spread_grows_with_the_level_and_near_1_where_not():
    rng = np.random.default_rng(0)
    values, offsets, lengths = _flat(
        [_multiplicative(rng) for _ in range(5)] + [_additive(rng) for _ in range(5)]
    )
    lambdas = series_lambdas(values, offsets, lengths, 24)
    assert np.all(np.abs(lambdas[:5]) <= 0.35), lambdas
    assert np.all(lambdas[5:] >= 0.6), lambdas
    assert logs_suit(lambdas[:5])[0] and not logs_suit(lambdas[5:])[0]


def test_each_series_lambda_is_the_reference_methods():
    rng = np.random.default_rng(1)
    series = [
        _multiplicative(rng, n=int(rng.integers(50, 2500)), level=float(rng.uniform(1, 1e4)))
        for _ in range(8)
    ] + [_additive(rng, n=int(rng.integers(50, 2500))) for _ in range(8)]
    values, offsets, lengths = _flat(series)
    got = series_lambdas(values.astype(np.float32), offsets, lengths, 24)
    want = [_reference(s.astype(np.float32).astype(np.float64), 24) for s in series]
    np.testing.assert_allclose(got, want)
    # Only the first `lengths` values of each series count (its training part).
    cut = series_lambdas(values, offsets, lengths - 24, 24)
    np.testing.assert_allclose(cut, [_reference(s[:-24], 24) for s in series])


def test_series_with_no_say_are_nan_or_count_as_1():
    rng = np.random.default_rng(2)
    flat = 50 + 5 * np.sin(2 * np.pi * np.arange(240) / 24) + rng.normal(0, 0.5, 240)  # a level that stays
    short = _multiplicative(rng, n=40)  # under two seasons
    constant = np.full(96, 7.0)  # no spread at all
    negative = _additive(rng) - 300  # a season whose mean is below zero
    values, offsets, lengths = _flat([flat, short, constant, negative])
    lambdas = series_lambdas(values, offsets, lengths, 24)
    assert lambdas[0] == 1.0 and np.isnan(lambdas[1:]).all()
    assert logs_suit(np.array([np.nan])) == (True, None)  # no series had a say: positive data keeps logs
    # A yearly series (season 1) is read in pairs of points.
    yearly = series_lambdas(*_flat([_multiplicative(rng, n=30)]), 1)
    assert np.isfinite(yearly).all()


@pytest.mark.parametrize("kind", ["multiplicative", "additive"])
def test_fit_takes_logs_by_the_test_and_says_why(tmp_path, kind):
    rng = np.random.default_rng(3)
    make = _multiplicative if kind == "multiplicative" else _additive
    data = sc.read_series(long_hourly({f"s{i}": make(rng, n=300) for i in range(4)}))
    model = sc.fit(data, TINY)
    assert model.spec.transform == ("log" if kind == "multiplicative" else "none")
    auto = model.info["transform_auto"]
    assert (auto["lambda"] < auto["log_below"]) == (kind == "multiplicative")
    # Asked for, a transform is kept whatever the test says, and no test is recorded.
    forced = sc.fit(data, replace(TINY, transform="log"))
    assert forced.spec.transform == "log" and "transform_auto" not in forced.info


def test_the_cli_says_which_transform_auto_took_and_why(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "temps.csv"
    long_hourly({f"t{i}": _additive(rng, n=300, level=280.0) for i in range(3)}).write_csv(path)  # kelvin
    out = tmp_path / "m.streamcast"
    runner = CliRunner()
    result = runner.invoke(main, ["fit", str(path), *CLI_TINY, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert (
        "transform: none (auto: the spread does not grow with the level, median Box-Cox lambda"
        in result.stderr
    )
    assert "series weights:" not in result.stderr  # in its own units every series weighs alike
    info = runner.invoke(main, ["info", str(out)]).stdout
    assert "Guerrero" in info and "series weighted" not in info
    assert sc.load(out).spec.transform == "none"


def test_the_cli_says_that_log_data_weighs_its_series_by_soft_mase(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "sales.csv"
    long_hourly({f"s{i}": _multiplicative(rng, n=300) for i in range(3)}).write_csv(path)
    out = tmp_path / "m.streamcast"
    runner = CliRunner()
    result = runner.invoke(main, ["fit", str(path), *CLI_TINY, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "series weights: soft-mase (each series' loss by the fourth root" in result.stderr
    shown = " ".join(runner.invoke(main, ["info", str(out)]).stdout.replace("│", " ").split())
    assert "mae, scaled, series weighted soft-mase)" in shown
    equal = tmp_path / "equal.streamcast"
    result = runner.invoke(main, ["fit", str(path), *CLI_TINY, "--series-weight", "equal", "-o", str(equal)])
    assert result.exit_code == 0 and "series weights:" not in result.stderr
    assert sc.load(equal).info["fit_config"]["series_weight"] == "equal"


def test_with_no_two_seasons_to_test_positive_data_keeps_logs_and_info_says_so(tmp_path):
    data = sc.read_series(hourly_frame(series=2, length=40))  # under two days of hourly data
    model = sc.fit(data, TINY)
    assert model.spec.transform == "log" and model.info["transform_auto"]["lambda"] is None
    out = sc.save(model, tmp_path / "m.streamcast")
    shown = " ".join(CliRunner().invoke(main, ["info", str(out)]).stdout.replace("│", " ").split())
    assert "no series holds two whole seasons to test the spread against the level" in shown


def test_the_test_does_not_depend_on_the_datas_units():
    rng = np.random.default_rng(5)
    values, offsets, lengths = _flat(
        [_multiplicative(rng) for _ in range(3)] + [_additive(rng) for _ in range(3)]
    )
    base = series_lambdas(values, offsets, lengths, 24)
    for factor in (1e-100, 1e-20, 1e20, 1e150):
        # the same lambdas, up to a grid step where rounding tips a near tie
        np.testing.assert_allclose(
            series_lambdas(values * factor, offsets, lengths, 24), base, rtol=0, atol=0.051
        )
