"""`--transform`: positive data is modelled in logs and served back in its own units, exactly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import streamcast as sc
from streamcast.cli import main
from streamcast.errors import DataError
from streamcast.features import choose_transform, from_model_units, to_model_units
from streamcast.losses import choose_loss, forecast_loss
from streamcast.stream.engine import stream
from streamcast.stream.input import Observations
from tests.conftest import TINY, hourly_frame


@given(st.lists(st.floats(1e-300, 1e300), min_size=1, max_size=50))
def test_the_log_transform_inverts_back_to_the_values(values):
    x = np.asarray(values)
    np.testing.assert_allclose(from_model_units(to_model_units(x, "log"), "log"), x, rtol=1e-12)


def test_auto_takes_logs_of_positive_data_only():
    assert choose_transform(np.array([0.5, 3.0, np.nan]), "auto") == "log"
    assert choose_transform(np.array([0.5, 0.0, 3.0]), "auto") == "none"
    assert choose_transform(np.array([-1.0, 3.0]), "auto") == "none"
    assert choose_transform(np.array([0.5, 3.0]), "none") == "none"


def test_fit_records_the_transform_and_head_scale_it_chose(tiny_model):
    assert tiny_model.spec.transform == "log"  # the tiny series are all positive
    assert tiny_model.net.config.head_scale == "window"  # auto: window in logs
    shifted = hourly_frame().with_columns(pl.col("value") - 20.0)  # crosses zero
    model = sc.fit(sc.read_series(shifted), TINY)
    assert model.spec.transform == "none"
    assert model.net.config.head_scale == "global"
    # --loss auto: MAE in logs, MSE in the data's own units; the file records what trained.
    assert (tiny_model.info["fit_config"]["loss"], model.info["fit_config"]["loss"]) == ("mae", "mse")
    squared = sc.fit(sc.read_series(shifted), replace(TINY, loss="mse"))
    for name, weight in squared.net.state_dict().items():
        torch.testing.assert_close(model.net.state_dict()[name], weight, rtol=0, atol=0)
    absolute = sc.fit(sc.read_series(shifted), replace(TINY, loss="mae"))
    assert absolute.info["fit_config"]["loss"] == "mae"  # asked for: kept, and trained otherwise
    assert not torch.equal(absolute.net.rnn.weight_hh_l0, model.net.rnn.weight_hh_l0)
    # --series-weight auto: the fourth root of MASE's weights in logs, equal weights in the data's units.
    assert tiny_model.info["fit_config"]["series_weight"] == "soft-mase"
    assert model.info["fit_config"]["series_weight"] == "equal"
    # A quantile model trains on pinball loss; auto stays MAE for it, as before.
    quantiles = sc.fit(sc.read_series(shifted), replace(TINY, quantiles=(0.1, 0.9)))
    assert quantiles.info["fit_config"]["loss"] == "mae"


def test_auto_loss_is_mae_on_logs_and_mse_in_the_datas_units():
    assert (choose_loss("auto", "log"), choose_loss("auto", "none")) == ("mae", "mse")
    assert choose_loss("auto", "none", (0.1, 0.9)) == "mae"
    assert (choose_loss("huber", "log"), choose_loss("mae", "none")) == ("huber", "mae")
    y, target, mask = torch.zeros(2, 3, 4, 1), torch.ones(2, 3, 4), torch.ones(2, 3, dtype=torch.bool)
    assert float(forecast_loss(y, target, mask, "mse", ())) == 1.0
    with pytest.raises(ValueError, match="unknown loss 'auto'"):  # never trained on unresolved
        forecast_loss(y, target, mask, "auto", ())


@pytest.fixture(scope="module")
def log_quantile_model(tiny_data):
    return sc.fit(tiny_data, replace(TINY, quantiles=(0.1, 0.9), transform="log"))


def test_log_forecasts_come_back_in_the_datas_units_with_ordered_quantiles(log_quantile_model, tiny_data):
    out = sc.forecast(log_quantile_model, tiny_data)
    levels = tiny_data.frame.group_by("series_id").agg(pl.col("value").mean())
    joined = out.join(levels, on="series_id")
    # The series sit at 10, 20 and 30: a forecast in log units would be near 2.3 to 3.4.
    assert (joined["forecast"] / joined["value"]).is_between(0.5, 2.0).all()
    assert (out["q0.1"] <= out["forecast"]).all() and (out["forecast"] <= out["q0.9"]).all()
    assert (out["q0.1"] > 0).all()


def test_a_log_model_refuses_data_with_a_value_that_is_not_positive(log_quantile_model):
    frame = hourly_frame().with_columns(
        pl.when((pl.col("series_id") == "s1") & (pl.int_range(pl.len()).over("series_id") == 50))
        .then(0.0)
        .otherwise(pl.col("value"))
        .alias("value")
    )
    with pytest.raises(DataError, match=r"series 's1' has a value <= 0 \(0\).*--transform none"):
        sc.forecast(log_quantile_model, sc.read_series(frame))


def test_a_stream_skips_a_value_that_is_not_positive_and_goes_on(log_quantile_model):
    rows = hourly_frame(series=1, length=5).to_dicts()
    rows[2]["value"] = -1.0
    batch = next(stream(log_quantile_model, [Observations.from_records(rows, log_quantile_model)]))
    assert len(batch) == 4  # the next line is a one-step gap, filled as any other
    skipped = [e for e in batch.events if e.kind == "skipped"]
    assert [(e.line, "not positive" in e.reason) for e in skipped] == [(3, True)]


def test_transform_and_head_scale_are_fit_options_shown_by_info(tmp_path):
    data = tmp_path / "d.csv"
    hourly_frame(series=1, length=120).write_csv(data)
    out = tmp_path / "m.streamcast"
    fast = ["--hidden", "8", "--epochs", "1", "--horizon", "6", "--bptt", "16", "--ensemble", "1", "-q"]
    runner = CliRunner()
    result = runner.invoke(main, ["fit", str(data), *fast, "--transform", "none", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    info = runner.invoke(main, ["info", str(out)]).stdout
    assert "transform" in info and "none" in info
    # The CLI's default --loss is auto: MSE for data left in its own units, and info says so.
    assert sc.load(out).info["fit_config"]["loss"] == "mse" and "(mse, scaled)" in info
    assert sc.load(out).net.config.lag_inputs == "season"  # --lag-inputs auto: plain lags in own units
    windowed = runner.invoke(
        main, ["fit", str(data), *fast, "--head-scale", "window", "--lag-inputs", "season", "-o", str(out)]
    )
    assert windowed.exit_code == 0, windowed.stderr
    config = sc.load(out).net.config
    assert (config.head_scale, config.lag_inputs, config.rnn_input_size) == ("window", "season", 7)
    assert "scale=window lags=season" in runner.invoke(main, ["info", str(out)]).stdout
    forecast = runner.invoke(main, ["forecast", str(data), "-m", str(out), "--horizon", "6"])
    assert forecast.exit_code == 0 and len(forecast.stdout.strip().splitlines()) == 1 + 6
    bad = runner.invoke(main, ["fit", str(data), *fast, "--transform", "sqrt"])
    assert bad.exit_code == 2 and "'sqrt' is not one of 'auto', 'log', 'none'" in bad.stderr
