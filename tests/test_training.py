"""`fit`: reproducible, learns, keeps the best weights, reports gradient health, survives bad steps."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch

from streamcast import training
from streamcast.errors import DataError, UsageError
from streamcast.features import window_length
from streamcast.lanes import make_lanes, window_rows
from streamcast.losses import SERIES_WEIGHT_POWERS, choose_series_weight, forecast_loss
from streamcast.model import ModelConfig, RecurrentForecaster
from streamcast.reading import read_series
from streamcast.training import FitConfig, fit, lane_state, mase_weights
from tests.conftest import TINY, diverging_data, hourly_frame


def weights(forecaster) -> list[torch.Tensor]:
    return [p.detach().clone() for p in forecaster.net.parameters()]


def test_same_seed_and_data_give_the_same_model(tiny_data):
    a, b = fit(tiny_data, TINY), fit(tiny_data, TINY)
    for x, y in zip(weights(a), weights(b), strict=True):
        assert torch.equal(x, y)


def test_another_seed_gives_another_model(tiny_data):
    a = fit(tiny_data, TINY)
    b = fit(tiny_data, FitConfig(**{**TINY.__dict__, "seed": 1}))
    assert any(not torch.equal(x, y) for x, y in zip(weights(a), weights(b), strict=True))


@pytest.mark.parametrize("cell", ["rnn", "rnn-relu", "lstm", "gru"])
def test_every_cell_trains_and_lowers_the_validation_loss(tiny_data, cell):
    model = fit(tiny_data, FitConfig(**{**TINY.__dict__, "cell": cell, "epochs": 6, "lr": 1e-2}))
    history = model.info["history"]
    assert min(h["val_loss"] for h in history) < history[0]["val_loss"]
    assert model.info["best_epoch"] == min(range(len(history)), key=lambda i: history[i]["val_loss"]) + 1


def test_each_epoch_reports_gradient_health(tiny_data):
    seen = []
    model = fit(tiny_data, FitConfig(**{**TINY.__dict__, "clip": 1e-6}), on_epoch=seen.append)
    assert [s.epoch for s in seen] == [1, 2]
    for s in seen:
        assert s.grad_norm_max >= s.grad_norm_median > 0
        assert s.clipped_share == 1.0  # every step's norm exceeds a tiny clip
        assert 1 <= s.gradient_reach <= TINY.bptt
        assert s.timesteps_per_second > 0
    health = model.info["gradient_health"]
    assert health["clipped_share"] == 1.0
    assert health["skipped_steps"] == 0


def test_quantile_models_always_include_the_median(tiny_data):
    model = fit(tiny_data, FitConfig(**{**TINY.__dict__, "quantiles": (0.1, 0.9)}))
    assert model.quantiles == (0.1, 0.5, 0.9)
    assert model.point_index == 1


def test_interrupt_keeps_the_best_model_so_far(tiny_data):
    def stop_after_first(stats):
        if stats.epoch == 2:
            raise KeyboardInterrupt

    model = fit(tiny_data, FitConfig(**{**TINY.__dict__, "epochs": 10}), on_epoch=stop_after_first)
    assert model.info["interrupted"] is True
    assert len(model.info["history"]) == 2


def test_early_stopping_ends_training_after_patience(tiny_data):
    model = fit(tiny_data, FitConfig(**{**TINY.__dict__, "epochs": 50, "patience": 1, "lr": 0.5}))
    assert len(model.info["history"]) < 50


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the inf is injected on purpose
def test_non_finite_steps_are_skipped_and_the_weights_stay_finite(monkeypatch):
    import streamcast.training as training

    real_loss, calls = training.forecast_loss, []

    def every_third_training_loss_is_nan(*args):
        loss = real_loss(*args)
        if torch.is_grad_enabled():
            calls.append(1)
            if len(calls) % 3 == 0:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(training, "forecast_loss", every_third_training_loss_is_nan)
    # One epoch's weights (--average-epochs 1): the mean's validation pass would count a call more.
    config = FitConfig(**{**TINY.__dict__, "batch_size": 1, "average_epochs": 1})
    model = fit(read_series(hourly_frame(series=2)), config)
    assert model.info["gradient_health"]["skipped_steps"] == len(calls) // 3 > 0
    assert all(torch.isfinite(p).all() for p in model.net.parameters())
    assert all(math.isfinite(h["train_loss"]) for h in model.info["history"])


def test_a_run_with_no_finite_validation_loss_is_a_data_error_not_a_model():
    data = diverging_data()
    epochs = []
    with pytest.raises(
        DataError, match=r"training diverged: no epoch gave a finite validation loss \(\d+ steps skipped"
    ):
        fit(data, FitConfig(**{**TINY.__dict__, "batch_size": 1}), on_epoch=epochs.append)
    assert epochs and all(e.skipped_steps > 0 for e in epochs)


def test_values_too_large_for_any_measurement_are_missing_so_a_series_of_them_is_a_data_error():
    frame = hourly_frame(series=2).with_columns(pl.col("value") * 1e306)
    with pytest.raises(DataError, match="series 's0' has no values"):
        fit(read_series(frame), FitConfig(**{**TINY.__dict__, "scaling": "std"}))


def test_a_series_too_short_for_horizon_and_validation_is_named():
    data = read_series(hourly_frame(series=2, length=20))
    with pytest.raises(DataError, match=r"series 's0' has 20 points but fit needs at least 26"):
        fit(data, FitConfig(horizon=6, val_size=18))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"cell": "tcn"}, "--cell must be one of"),
        ({"clip": -1.0}, "--clip"),
        ({"val_size": 2, "horizon": 6}, "--val-size"),
    ],
)
def test_impossible_options_are_usage_errors(option, message):
    with pytest.raises(UsageError, match=message):
        FitConfig(**option)


def test_lanes_never_cross_series_and_mask_warmup_steps():
    offsets = np.array([0, 100, 150])
    lanes = make_lanes(offsets, np.array([100, 50]), horizon=5, lane_length=40, warmup=10)
    for rows, mask, n in zip(lanes.rows, lanes.loss_mask, lanes.lengths, strict=True):
        real = rows[:n]
        assert (real < 100).all() or (real >= 100).all()  # one series per lane
        assert (np.diff(real) == 1).all()  # contiguous
        assert not mask[n:].any()
    starts = sorted(int(r[m][0]) for r, m in zip(lanes.rows, lanes.loss_mask, strict=True))
    assert starts == [0, 40, 80, 100, 140]
    # loss positions cover every step whose 5 targets are known, exactly once
    covered = np.sort(np.concatenate([r[m] for r, m in zip(lanes.rows, lanes.loss_mask, strict=True)]))
    assert covered.tolist() == list(range(0, 95)) + list(range(100, 145))


def test_a_lane_starts_with_the_window_serving_holds_at_its_first_step():
    """Training as served: a lane cut from mid-series starts with the values before it in its
    window, not zeros (zeros only before its series' start), so its forecasts are those of
    a walk from the series' start; the recurrent state still starts cold and warms up."""
    offsets = np.array([0, 300, 420])  # two series, of 300 and 120 steps
    lanes = make_lanes(offsets, np.array([300, 120]), horizon=4, lane_length=96, warmup=12)
    torch.manual_seed(0)
    values = torch.randn(420)
    table = torch.stack([values, torch.randn(420)], dim=-1)
    assert [int(s) for s in lanes.rows[:, 0]] == [0, 84, 180, 276, 300, 384]
    rows, inside = window_rows(lanes.rows[:, 0] - 1, lanes.origins, 96)  # up to each lane's first step
    assert not inside[0].any() and not inside[4].any()  # lanes at their series' start
    assert inside[1].sum() == 84 and inside[5].sum() == 84  # 12 steps before their series' start
    np.testing.assert_array_equal(rows[3][inside[3]], np.arange(276 - 96, 276))
    config = ModelConfig(input_size=2, hidden_size=8, horizon=4, ar=96, season=24)
    for cell in ("segrnn", "lstm"):
        net = RecurrentForecaster(replace(config, cell=cell, segment=24 if cell == "segrnn" else 0)).eval()
        with torch.no_grad():
            _, walked = net(table[None, :276], net.init_state(1))  # series 0, from its start
            state = lane_state(net, values, lanes, np.array([3, 5]))  # lanes from rows 276 and 384
            torch.testing.assert_close(state[-1][:1], walked[-1])  # the window serving holds there
            torch.testing.assert_close(state[-1][1], torch.cat([torch.zeros(12), values[300:384]]))
            assert all(not part.any() for part in state[:-1])  # h and c start cold
            if cell == "segrnn":  # its window is its whole state: the lane forecasts as the walk
                lane, _ = net(table[None, 276:290], lane_state(net, values, lanes, np.array([3])))
                full, _ = net(table[None, :290], net.init_state(1))
                torch.testing.assert_close(lane[0], full[0, 276:290])


def test_fit_starts_each_lane_from_its_series_values_not_an_empty_window(monkeypatch):
    """In a real fit, lanes cut from mid-series begin with their window full of the series'
    values (never cold); only a lane at a series' start begins with zeros."""
    first_windows: list[torch.Tensor] = []

    def spy(net, x, state, stride, step):
        if step == 1:  # the first chunk of each batch of lanes, in epoch 1
            first_windows.append(state[-1].clone())
        return original(net, x, state, stride, step)

    original = training._scored_forward
    monkeypatch.setattr(training, "_scored_forward", spy)
    data = read_series(hourly_frame(series=1, length=3000, growth=0.0))
    config = FitConfig(
        cell="segrnn", ensemble=1, bptt=12, epochs=1, horizon=6, val_size=6, hidden_size=8, ar=48
    )
    fit(data, config)
    windows = torch.cat(first_windows)
    empty = (windows == 0).all(dim=1)
    assert len(windows) == 3 and int(empty.sum()) == 1  # three lanes, one at the series' start
    assert (windows[~empty] != 0).all()


def test_gradient_reach_is_measured_from_each_lanes_own_window(monkeypatch):
    """The reach `fit` reports is measured on the lanes' first chunks as training walks them:
    a lane cut from mid-series starts with its window full of the series' values, not empty (an
    empty window is one no forecast reads, and a segrnn member's gradient flows through it alone)."""
    from streamcast import health

    seen: list[torch.Tensor] = []

    def spy(net, x, state=None):
        seen.append(state[-1].clone())
        return original(net, x, state)

    original = health.reach_profile
    monkeypatch.setattr(health, "reach_profile", spy)
    data = read_series(hourly_frame(series=1, length=3000, growth=0.0))
    config = FitConfig(
        cell="segrnn", ensemble=1, bptt=12, epochs=1, horizon=6, val_size=6, hidden_size=8, ar=48
    )
    model = fit(data, config)
    (windows,) = seen  # one epoch, one measurement over its lanes
    empty = (windows == 0).all(dim=1)
    assert len(windows) == 3 and int(empty.sum()) == 1  # three lanes, one at the series' start
    assert (windows[~empty] != 0).all()
    assert 1 <= model.info["history"][0]["gradient_reach"] <= config.bptt


def test_validation_loss_is_finite_and_recorded(tiny_model):
    best = tiny_model.info["history"][tiny_model.info["best_epoch"] - 1]
    assert math.isfinite(best["val_loss"])
    assert tiny_model.info["val_size"] == TINY.horizon


def test_a_tanh_rnn_shows_the_vanishing_gradient_that_lstm_and_gru_do_not():
    data = read_series(hourly_frame(series=4, length=600))
    reach = {}
    for cell in ("rnn", "lstm", "gru"):
        model = fit(
            data, FitConfig(cell=cell, epochs=1, bptt=96, horizon=6, val_size=6, hidden_size=32, ar=168)
        )
        reach[cell] = model.info["gradient_health"]["gradient_reach"]
    assert reach["rnn"] * 2 <= min(reach["lstm"], reach["gru"])


@pytest.mark.parametrize(
    ("freq", "steps"),
    [
        ("1h", 168),
        ("30m", 336),
        ("15m", 336),
        ("5m", 336),
        ("1m", 336),
        ("1d", 28),
        ("1w", 52),
        ("1mo", 24),
        ("3mo", 12),
        ("6mo", 6),
        ("1y", 8),
        ("1i", 32),
    ],
)
def test_the_head_window_is_a_week_where_it_fits_and_336_steps_where_it_does_not(freq, steps):
    assert window_length(freq) == steps


def test_fit_gives_hourly_data_a_week_long_head_window_unless_told(tiny_data):
    assert fit(tiny_data, replace(TINY, epochs=1)).net.config.ar == 168
    assert fit(tiny_data, replace(TINY, epochs=1, ar=12)).net.config.ar == 12


def test_fit_leaves_the_callers_torch_random_generator_alone(tiny_data):
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    fit(tiny_data, FitConfig(**{**TINY.__dict__, "epochs": 1, "seed": 7}))
    assert torch.equal(torch.rand(3), expected)


def test_covariates_read_with_the_data_are_used_by_fit():
    frame = hourly_frame(series=2).with_columns((pl.col("value") * 0.5).alias("temperature"))
    model = fit(read_series(frame, covariates=["temperature"]), FitConfig(**{**TINY.__dict__, "epochs": 1}))
    assert model.spec.covariates == ("temperature",)


def test_mase_weights_favour_smooth_series_within_ten_times_the_median():
    rng = np.random.default_rng(0)
    t = np.arange(96)
    smooth = np.sin(2 * np.pi * t / 24) + 0.001 * rng.normal(size=96)  # seasonal naive is almost exact
    medium = np.sin(2 * np.pi * t / 24) + 0.1 * rng.normal(size=96)
    noisy = rng.normal(size=96)
    scaled = np.concatenate([smooth, medium, noisy])
    weights = mase_weights(scaled, np.array([0, 96, 192, 288]), np.array([96, 96, 96]), season=24)
    assert weights[0] == 10.0  # capped, not the ~100x its error would give
    assert weights[1] == 1.0  # the median series
    assert 0.1 <= weights[2] < 1.0


def test_soft_mase_weights_are_the_fourth_root_of_mases_and_stay_near_the_median():
    rng = np.random.default_rng(0)
    t = np.arange(96)
    scaled = np.concatenate([np.sin(2 * np.pi * t / 24) + s * rng.normal(size=96) for s in (0.001, 0.1, 3.0)])
    offsets, lengths = np.array([0, 96, 192, 288]), np.array([96, 96, 96])
    full = mase_weights(scaled, offsets, lengths, season=24)
    soft = mase_weights(scaled, offsets, lengths, season=24, power=SERIES_WEIGHT_POWERS["soft-mase"])
    np.testing.assert_allclose(soft, full**0.25)
    assert soft[0] == pytest.approx(10**0.25) and soft[1] == 1.0 and soft[2] < 1.0
    assert soft.max() / soft.min() <= 10**0.5 + 1e-9  # within 1.8x of the median either way


def test_series_weight_auto_is_soft_mase_on_logs_and_equal_in_the_datas_units():
    assert choose_series_weight("auto", "log") == "soft-mase"
    assert choose_series_weight("auto", "none") == "equal"
    assert choose_series_weight("mase", "none") == "mase"  # asked for: kept
    assert choose_series_weight("equal", "log") == "equal"


def test_weighted_loss_is_the_weighted_mean_of_the_steps():
    y = torch.tensor([[[[1.0]], [[3.0]]]])  # (B=1, T=2, H=1, Q=1)
    target = torch.zeros(1, 2, 1)
    mask = torch.ones(1, 2, dtype=torch.bool)
    assert forecast_loss(y, target, mask, "mae", ()).item() == 2.0
    weighted = forecast_loss(y, target, mask, "mae", (), torch.tensor([[3.0, 1.0]]))
    assert weighted.item() == pytest.approx((3 * 1 + 1 * 3) / 4)


def test_mase_series_weight_trains_and_is_recorded(tiny_data):
    model = fit(tiny_data, FitConfig(**{**TINY.__dict__, "series_weight": "mase"}))
    assert model.info["fit_config"]["series_weight"] == "mase"
    assert np.isfinite(model.info["history"][-1]["val_loss"])


def test_warmup_cosine_warms_up_within_the_first_epoch_then_decays(tiny_data):
    config = FitConfig(**{**TINY.__dict__, "epochs": 4, "patience": 10, "lr_schedule": "warmup-cosine"})
    lrs = [e["lr"] for e in fit(tiny_data, config).info["history"]]
    assert lrs[0] == pytest.approx(config.lr, rel=0.05)  # warm-up ends with the first epoch
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.2 * config.lr


def test_the_library_takes_the_horizon_the_cli_takes_from_the_data_frequency():
    """Without a horizon, `fit` forecasts a day of hourly data and two weeks of daily data, as
    `streamcast fit` does; a given horizon is kept."""
    from streamcast.backtest import fit_and_backtest

    assert FitConfig().horizon is None
    hourly = read_series(hourly_frame(series=2, length=200))
    daily = read_series(
        hourly_frame(series=2, length=200).with_columns(
            timestamp=pl.datetime(2024, 1, 1) + pl.duration(days=pl.int_range(pl.len()).over("series_id"))
        )
    )
    unset = replace(TINY, horizon=None, val_size=None, epochs=1)
    on_hourly = fit(hourly, unset)
    assert on_hourly.horizon == 24
    # Two short series keep one horizon of validation (streamcast.valsize), recorded as resolved.
    assert on_hourly.info["val_size"] == 24 and on_hourly.info["fit_config"]["val_size"] == 24
    assert fit(daily, unset).horizon == 14
    assert fit(daily, replace(unset, horizon=5)).horizon == 5
    model, result = fit_and_backtest(daily, unset, windows=2)
    assert model.horizon == result.horizon == 14
