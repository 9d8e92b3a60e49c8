"""`--ar-start`: the linear highway starts as seasonal naive or as the least-squares forecast."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

from streamcast.cli import main
from streamcast.highway import (
    MEAN_MARGIN,
    POOLED_UNIT_FLOOR,
    choose_start,
    highway_windows,
    naive_units,
    ridge_weights,
    validation_error,
)
from streamcast.model import seasonal_naive_weights
from streamcast.modelfile import load
from streamcast.modelparts import load_numpy
from streamcast.reading import read_series
from streamcast.training import fit
from tests.conftest import TINY


def frame_of(series: dict[str, np.ndarray]) -> pl.DataFrame:
    ids = [name for name, v in series.items() for _ in v]
    steps = pl.int_range(pl.len()).over("series_id")
    return pl.DataFrame({"series_id": ids, "value": np.concatenate(list(series.values()))}).select(
        "series_id", (pl.lit(datetime(2024, 1, 1)) + pl.duration(hours=steps)).alias("timestamp"), "value"
    )


def drifting(length: int = 600, seed: int = 0) -> np.ndarray:
    """A slow wave with a 100-hour period: seasonal naive (a day back) is far off, a linear map
    from the last values is nearly exact."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return 5.0 * np.sin(2 * np.pi * t / 100) + 0.02 * t + rng.normal(0, 0.05, length)


def layout(values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(v) for v in values])
    return np.concatenate(values).astype(np.float32), np.concatenate([[0], np.cumsum(lengths)])


def test_least_squares_forecasts_a_series_that_a_linear_map_can_follow():
    values, offsets = layout([drifting()])
    weights = ridge_weights(values, offsets, np.array([500]), ar=48, horizon=12)
    assert weights.shape == (12, 48)
    origins = np.arange(500, 588)
    windows = np.stack([values[o - 48 : o] for o in origins])
    future = np.stack([values[o : o + 12] for o in origins])
    ridge_error = np.abs(windows @ weights.T - future).mean()
    naive_error = np.abs(windows @ seasonal_naive_weights(48, 12, 24).numpy().T - future).mean()
    assert ridge_error < 0.15 and ridge_error < naive_error / 5, (ridge_error, naive_error)


def test_least_squares_ignores_the_level_of_a_series():
    values, offsets = layout([drifting()])
    moved, _ = layout([drifting() + 1000.0])
    a = ridge_weights(values, offsets, np.array([500]), ar=24, horizon=6)
    b = ridge_weights(moved, offsets, np.array([500]), ar=24, horizon=6)
    np.testing.assert_allclose(a, b, atol=2e-3)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-4)  # a constant window forecasts itself


def test_no_window_long_enough_and_values_too_extreme_keep_the_naive_start():
    values, offsets = layout([drifting(40)])
    assert ridge_weights(values, offsets, np.array([40]), ar=48, horizon=12) is None
    huge = np.tile([1e300, -1e300], 150)
    assert ridge_weights(huge, np.array([0, 300]), np.array([300]), ar=24, horizon=6) is None


def test_auto_takes_least_squares_where_it_scores_better_and_naive_where_one_volatile_series_would_decide():
    drift, offsets = layout([drifting(600, s) for s in range(3)])
    lengths, positions = np.full(3, 552), [np.array([551])] * 3
    start, weights, window = choose_start(
        "auto", drift, offsets, lengths, positions, (48,), 48, 24, squared=False
    )
    assert start == "ridge" and weights.shape == (48, 48) and window == 48

    # One wild random walk and four days that repeat to within a little noise: pooled, the walk
    # would make least squares a persistence forecast that serves the daily series badly.
    rng = np.random.default_rng(1)
    t = np.arange(600)
    daily = [20 + 3 * np.sin(2 * np.pi * t / 24 + i) + rng.normal(0, 0.01, 600) for i in range(4)]
    mixed, offsets = layout([np.cumsum(rng.normal(0, 50, 600)), *daily])
    lengths, positions = np.full(5, 552), [np.array([551])] * 5
    assert choose_start("auto", mixed, offsets, lengths, positions, (48,), 48, 24, squared=False) == (
        "naive",
        None,
        48,
    )
    assert (
        choose_start("naive", drift, offsets[:4], lengths[:3], positions, (48,), 48, 24, squared=False)[0]
        == "naive"
    )
    assert (
        choose_start("ridge", mixed, offsets, lengths, positions, (48,), 48, 24, squared=False)[0] == "ridge"
    )


def test_validation_error_counts_each_series_in_units_of_its_seasonal_naive_error():
    values, offsets = layout([np.arange(100.0), 10 * np.arange(100.0)])  # lag-24 change: 24 and 240
    persistence = np.zeros((2, 4))
    persistence[:, -1] = 1.0  # forecasts the last value: off by 1, 2 (x10 for the second series)
    units = naive_units(values, offsets, np.array([90, 90]), 24)
    np.testing.assert_allclose(units, [24.0, 240.0])
    total, count = validation_error(persistence, values, offsets, [np.array([89])] * 2, units, squared=False)
    assert count == 2
    assert total == pytest.approx(2 * 1.5 / 24)  # both series score alike in their own units


@pytest.fixture(scope="module")
def drift_data():
    return read_series(frame_of({f"d{i}": drifting(400, i) + 10 * i for i in range(3)}))


def test_fit_keeps_the_least_squares_start_fixed_and_records_it(drift_data):
    config = replace(TINY, horizon=12, val_size=12, ar=48, epochs=3)
    model = fit(drift_data, config)
    assert model.net.config.ar_start == "ridge" and not model.net.ar.weight.requires_grad
    naive = fit(drift_data, replace(config, ar_start="naive"))
    assert naive.net.config.ar_start == "naive" and naive.net.ar.weight.requires_grad
    # The fixed start is the least-squares fit of the scaled training windows, byte for byte,
    # each series pooled in its seasonal naive units (the default scaling, "spread").
    inputs = model.inputs(drift_data.frame)
    lengths = np.diff(inputs.offsets) - model.info["val_size"]
    units = np.maximum(naive_units(inputs.inputs[:, 0], inputs.offsets, lengths, 24), POOLED_UNIT_FLOOR)
    expected = ridge_weights(inputs.inputs[:, 0], inputs.offsets, lengths, 48, 12, units=units)
    assert torch.equal(model.net.ar.weight.detach(), torch.from_numpy(expected))
    assert not torch.equal(naive.net.ar.weight.detach(), torch.from_numpy(expected))


def test_ensemble_members_all_start_from_the_same_least_squares_highway(drift_data):
    config = replace(TINY, horizon=12, val_size=12, ar=48, epochs=2, ensemble=2, ensemble_cells=("lstm",))
    model = fit(drift_data, config)  # LSTM members: a segrnn member has no highway (test_segments.py)
    first, second = (m.ar.weight.detach() for m in model.net.members)
    assert torch.equal(first, second)


def test_a_network_reading_part_of_its_window_is_saved_served_and_shown(tmp_path):
    data = tmp_path / "repeating.csv"
    frame_of({f"r{i}": repeating(900, seed=i) for i in range(3)}).write_csv(data)
    runner = CliRunner()
    model = tmp_path / "m.streamcast"
    common = ["--horizon", "12", "--epochs", "1", "--hidden", "8", "--ensemble", "2", "--val-size", "60"]
    common += ["--ensemble-cells", "lstm"]  # with a segrnn member the file is format 10 (test_segments.py)
    fitted = runner.invoke(main, ["fit", str(data), *common, "--quiet", "-o", str(model)])
    assert fitted.exit_code == 0, fitted.output
    meta = json.loads(runner.invoke(main, ["info", str(model), "--json"]).stdout)
    assert meta["format_version"] == 9  # a reader of 8 would misbuild the head: it refuses
    assert [m["net_window"] for m in meta["member_configs"]] == [336, 336]
    assert "window=672 (the network reads 336)" in runner.invoke(main, ["info", str(model)]).stdout
    path = tmp_path / "forecast.csv"
    result = runner.invoke(main, ["forecast", str(data), "--model", str(model), "-o", str(path)])
    assert result.exit_code == 0, result.output
    assert pl.read_csv(path).height == 3 * 12
    # `stream`'s numpy network serves what torch serves over a whole series.
    served, mirrored = load(model), load_numpy(model)
    inputs = served.inputs(read_series(pl.read_csv(data, try_parse_dates=True)).frame)
    x = inputs.inputs[None, : inputs.offsets[1]]
    theirs = mirrored.net(x, mirrored.net.init_state(1))[0]
    with torch.no_grad():
        ours = served.net(torch.from_numpy(x), served.net.init_state(1))[0].numpy()
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4)


def test_cli_fit_ar_start_is_an_option_and_info_shows_the_start(tmp_path):
    data = tmp_path / "drift.csv"
    frame_of({f"d{i}": drifting(400, i) for i in range(2)}).write_csv(data)
    runner = CliRunner()
    common = ["fit", str(data), "--horizon", "12", "--ar", "48", "--epochs", "2", "--hidden", "8"]
    common += ["--ensemble", "1", "--quiet"]
    for start in ("ridge", "naive"):
        out = tmp_path / f"{start}.model"
        result = runner.invoke(main, [*common, "--ar-start", start, "-o", str(out)])
        assert result.exit_code == 0, result.output
        shown = runner.invoke(main, ["info", str(out)]).stdout
        assert f"start={start}" in shown
        meta = json.loads(runner.invoke(main, ["info", str(out), "--json"]).stdout)
        assert meta["model_config"]["ar_start"] == start
    bad = runner.invoke(main, [*common, "--ar-start", "linear", "-o", str(tmp_path / "x.model")])
    assert bad.exit_code == 2 and "--ar-start" in bad.output


def repeating(length: int, period: int = 90, seed: int = 0) -> np.ndarray:
    """A fixed random shape repeated every `period` steps, plus a little noise: a window shorter
    than the period cannot see where the shape goes next, a longer one copies it."""
    rng = np.random.default_rng(seed)
    shape = rng.normal(0, 1, period)
    return np.tile(shape, length // period + 1)[:length] + rng.normal(0, 0.05, length)


def test_a_single_window_is_kept_where_it_scores_clearly_better_than_the_mean_of_the_fits():
    # A shape repeating every 90 steps: 48 values cannot see it, 96 copy it; the mean would half
    # forget it.
    values, offsets = layout([repeating(1200, seed=s) for s in range(3)])
    lengths, positions = np.full(3, 1100), [np.arange(1099, 1140)] * 3
    start, weights, window = choose_start(
        "auto", values, offsets, lengths, positions, (48, 96), 12, 24, squared=False
    )
    assert (start, window) == ("ridge", 96)
    assert torch.equal(weights, torch.from_numpy(ridge_weights(values, offsets, lengths, 96, 12)))
    # Asked for one window, it is kept; too short for the longer one, the default stays.
    assert choose_start("auto", values, offsets, lengths, positions, (48,), 12, 24, squared=False)[2] == 48
    short, short_offsets = layout([repeating(150, seed=s) for s in range(3)])
    lengths, positions = np.full(3, 100), [np.arange(99, 138)] * 3
    assert (
        choose_start("ridge", short, short_offsets, lengths, positions, (48, 96), 12, 24, squared=False)[2]
        == 48
    )


def wandering(length: int, seed: int) -> np.ndarray:
    """A daily wave on a random-walk level, with noise: a week's window and a fortnight's do
    about equally well."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return 3 * np.sin(2 * np.pi * t / 24) + np.cumsum(rng.normal(0, 0.3, length)) + rng.normal(0, 0.5, length)


def test_the_highway_is_the_mean_of_the_fits_where_no_window_is_clearly_better():
    values, offsets = layout([wandering(1200, seed=s) for s in range(3)])
    lengths, positions = np.full(3, 1100), [np.arange(1099, 1140)] * 3
    start, weights, window = choose_start(
        "auto", values, offsets, lengths, positions, (48, 96), 12, 24, squared=False
    )
    short, long = (ridge_weights(values, offsets, lengths, w, 12) for w in (48, 96))
    assert (start, window) == ("ridge", 96) and weights.shape == (12, 96)
    # One map over the longer window: the shorter fit reads its newest 48 values.
    expected = (np.pad(short.astype(np.float64), ((0, 0), (48, 0))) + long) / 2
    assert np.allclose(weights.numpy(), expected, atol=1e-6)
    assert np.allclose(weights.numpy().sum(axis=1), 1.0, atol=1e-4)  # the level is carried as before
    units = naive_units(values, offsets, lengths, 24)
    scores = [
        validation_error(w, values, offsets, positions, units, False, 96)[0]
        for w in (short, long, weights.numpy())
    ]
    assert min(scores[:2]) > (1 - MEAN_MARGIN) * scores[2]


def test_a_fit_shorter_than_the_default_window_is_read_from_the_default_window():
    # Too short for the default 96 values and a horizon, long enough for half of them: the half's
    # fit, padded with zeros for the older values, so the network still reads the default window.
    values, offsets = layout([repeating(150, seed=s) for s in range(3)])
    lengths, positions = np.full(3, 100), [np.arange(99, 138)] * 3
    start, weights, window = choose_start(
        "ridge", values, offsets, lengths, positions, (96, 48), 12, 24, squared=False
    )
    half = ridge_weights(values, offsets, lengths, 48, 12)
    assert (start, window) == ("ridge", 96) and ridge_weights(values, offsets, lengths, 96, 12) is None
    assert torch.equal(weights[:, 48:], torch.from_numpy(half)) and not weights[:, :48].any()


def test_default_highway_windows_are_half_to_four_times_the_window_the_window_first():
    assert highway_windows(168) == (168, 84, 336, 672)
    assert highway_windows(3) == (3, 6, 12) and highway_windows(1) == (1, 2, 4)
    assert highway_windows(0) == (0,)


def test_fit_takes_the_longer_windows_only_when_the_window_is_left_to_it():
    data = read_series(frame_of({f"r{i}": repeating(900, seed=i) for i in range(3)}))
    config = replace(TINY, horizon=12, epochs=1, val_size=60, ar=None)
    chosen = fit(data, config)
    # The mean of the fits over 84 to 672 values, read from the longest window; the network reads
    # its newest 336, as it read twice the window before the highway took four times it.
    assert chosen.net.config.ar == 4 * 168 and chosen.net.config.ar_start == "ridge"
    assert chosen.net.config.net_window == 2 * 168 and chosen.net.head[0].in_features == 8 + 2 * 168
    assert fit(data, replace(config, ar=168)).net.config.ar == 168
    assert fit(data, replace(config, ar_start="naive")).net.config.ar == 168
