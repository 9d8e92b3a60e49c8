"""`--naive-fallback`: the series the network serves badly get seasonal naive, in every command."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast import safefile
from streamcast.cli import main
from streamcast.fallback import (
    BLEND_FROM,
    NAIVE_FALLBACK,
    NaiveServing,
    badly_served,
    in_order,
    naive_at,
    naive_from_window,
    serve_naive,
    served_point,
)
from streamcast.reading import read_series
from streamcast.stepping import run_series
from tests.conftest import TINY, hourly_frame
from tests.test_cli_stream import lines_for


def test_the_naive_forecast_repeats_the_last_season_from_the_window():
    window = np.arange(48.0).reshape(1, 48)
    naive = naive_from_window(window, horizon=30, season=24)
    assert naive.tolist() == [[*range(24, 48), *range(24, 30)]]


def test_quantiles_move_with_the_point_forecast():
    outputs = np.array([[[1.0, 2.0, 4.0]] * 3])  # (1, H=3, Q=3), median at 1
    window = np.array([[5.0, 6.0, 7.0]])
    served = serve_naive(outputs, window, season=3, point=1)
    assert served[0, :, 1].tolist() == [5.0, 6.0, 7.0]
    assert (served[0, :, 2] - served[0, :, 0]).tolist() == [3.0, 3.0, 3.0]


def test_the_served_median_is_seasonal_naive_where_the_networks_quantiles_cross():
    outputs = np.array([[[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]]])  # (1, H=2, Q=3), out of order
    window = np.array([[5.0, 6.0]])
    served = serve_naive(outputs, window, season=2, point=1)
    ordered = np.sort(served, axis=-1)  # as Forecaster.point_and_quantiles serves them
    assert ordered[0, :, 1].tolist() == [5.0, 6.0]
    assert (ordered[0, :, 2] - ordered[0, :, 0]).tolist() == [2.0, 5.0]


@pytest.mark.parametrize("q", [2, 3, 4])
def test_one_crossed_pair_anywhere_puts_the_outputs_in_order_and_ordered_ones_are_left_as_they_are(q):
    ordered = np.sort(np.random.default_rng(q).standard_normal((50, 6, q)), axis=-1)
    assert in_order(ordered) is ordered
    for k in range(q - 1):  # each neighbouring pair crossed, in one place of many
        crossed = ordered.copy()
        crossed[37, 5, [k, k + 1]] = crossed[37, 5, [k + 1, k]]
        np.testing.assert_array_equal(in_order(crossed), ordered)
    with_nan = ordered.copy()
    with_nan[3, 2, 0] = np.nan
    np.testing.assert_array_equal(in_order(with_nan), np.sort(with_nan, axis=-1))  # NaN last, as before
    single = ordered[..., :1]
    assert in_order(single) is single


def test_a_series_is_chosen_over_ratio_times_worse_and_blended_a_little_under_it():
    targets = np.zeros((5, 2))
    windows = np.zeros((5, 4))
    windows[:, -2:] = np.array([[1.0, 1.0]] * 3 + [[0.0, 0.0]] * 2)  # naive error 1, 1, 1, 0, 0
    points = np.array([[1.9, 1.9], [2.1, 2.1], [1.5, 1.5], [0.1, 0.1], [0.0, 0.0]])
    naive = naive_from_window(windows, horizon=2, season=2)
    shares, at_last = badly_served(points, targets, naive, np.array([1, 1, 1, 1, 1, 0]), 2.0)
    at_ratio, _ = badly_served(np.full((1, 2), 2.0), np.zeros((1, 2)), naive[:1], np.array([1]), 2.0)
    assert not at_last.any()  # no last value's forecasts given: seasonal naive for all
    assert 0.999 < at_ratio[0] < 1.0  # exactly at the ratio is not over it: blended, not naive whole
    assert BLEND_FROM * 2.0 == pytest.approx(1.6)
    # 1.9x: (1.9 - 1.6) / (2 - 1.6) of the way to naive; 2.1x: naive; 1.5x: the network alone;
    # worse than a perfect naive: naive; both perfect: the network; no origin: the network.
    np.testing.assert_allclose(shares, [0.75, 1.0, 0.0, 1.0, 0.0, 0.0])


def test_a_blended_series_is_served_its_share_of_the_way_from_the_network_to_naive():
    outputs = np.array([[[1.0, 2.0, 4.0]] * 3, [[1.0, 2.0, 4.0]] * 3])  # (2, H=3, Q=3), median 2
    window = np.array([[5.0, 6.0, 7.0], [5.0, 6.0, 7.0]])
    served = serve_naive(outputs, window, season=3, point=1, share=np.array([0.25, 1.0]))
    assert served[0, :, 1].tolist() == [2.75, 3.0, 3.25]  # a quarter of the way to 5, 6, 7
    assert served[1, :, 1].tolist() == [5.0, 6.0, 7.0]  # a whole share is naive exactly
    assert (served[:, :, 2] - served[:, :, 0]).flatten().tolist() == [3.0] * 6  # widths kept


def test_only_steps_inside_the_validation_part_count():
    # One series, two origins: the second's last step lies past the validation part (NaN target)
    # and its huge error does not count; the steps that do count are 1.9 against 1 each.
    targets = np.array([[0.0, 0.0], [0.0, float("nan")]])
    points = np.array([[1.9, 1.9], [1.9, 100.0]])
    naive = np.ones((2, 2))
    np.testing.assert_allclose(badly_served(points, targets, naive, np.array([2]), 2.0)[0], [0.75])
    assert badly_served(points, targets, naive, np.array([2]), 1.5)[0].tolist() == [1.0]


def test_the_naive_forecasts_read_from_the_values_equal_those_read_from_each_window():
    values = np.arange(1.0, 31.0)  # two series: 1..10 and 11..30
    starts, origins = np.array([0, 10, 10]), np.array([2, 9, 19])  # the first window runs off the start
    windows = np.stack(
        [np.concatenate([np.zeros(5), values[0:3]]), values[12:20], values[22:30]]
    )  # (3, ar=8): zeros before a series' first value, as the carried window holds them
    np.testing.assert_array_equal(
        naive_at(values, starts, origins, horizon=6, season=4), naive_from_window(windows, 6, 4)
    )


def test_a_quantile_model_is_scored_on_the_median_it_serves():
    targets = np.zeros((1, 2))
    naive = np.ones((1, 2))  # naive error 1
    crossed = np.array([[[0.5, 5.0, 0.0], [0.5, 5.0, 0.0]]])  # the raw middle output is 5, served 0.5
    point = served_point(crossed, 1)
    assert point.tolist() == [[0.5, 0.5]]
    assert badly_served(point, targets, naive, np.array([1]), 2.0)[0].tolist() == [0.0]


@pytest.fixture(scope="module")
def naive_s1(tiny_model):
    return replace(tiny_model, naive_series=frozenset({"s1"}))


def test_forecast_serves_the_chosen_series_its_last_day_and_the_others_as_before(
    tiny_model, tiny_data, naive_s1
):
    before = sc.forecast(replace(tiny_model, naive_series=frozenset()), tiny_data, horizon=30)
    after = sc.forecast(naive_s1, tiny_data, horizon=30)  # past the trained 6 steps too
    last_day = tiny_data.frame.filter(pl.col("series_id") == "s1")["value"].to_numpy()[-24:]
    got = after.filter(pl.col("series_id") == "s1")["forecast"].to_numpy()
    np.testing.assert_allclose(got, np.concatenate([last_day, last_day[:6]]), rtol=1e-5)
    others = pl.col("series_id") != "s1"
    assert after.filter(others).equals(before.filter(others))


def test_backtest_scores_the_chosen_series_as_seasonal_naive(tiny_data, naive_s1):
    per = sc.backtest(naive_s1, tiny_data, windows=3, per_series=True).per_series
    s1 = per.filter(pl.col("series_id") == "s1")
    np.testing.assert_allclose(s1["model"].to_numpy(), s1["seasonal_naive"].to_numpy(), rtol=1e-4)
    s0 = per.filter(pl.col("series_id") == "s0")
    assert not np.allclose(s0["model"].to_numpy(), s0["seasonal_naive"].to_numpy(), rtol=1e-4)


def test_stream_serves_the_chosen_series_what_forecast_serves(naive_s1, tmp_path):
    path = tmp_path / "naive.streamcast"
    sc.save(naive_s1, path)
    loaded = sc.load(path)
    assert loaded.naive_series == {"s1"}
    frame = hourly_frame(length=60)
    result = CliRunner().invoke(main, ["stream", "-m", str(path)], input="\n".join(lines_for(frame)) + "\n")
    assert result.exit_code == 0, result.stderr
    last = [json.loads(line) for line in result.stdout.splitlines() if '"s1"' in line][-1]
    expected = sc.forecast(loaded, read_series(frame)).filter(pl.col("series_id") == "s1")["forecast"]
    np.testing.assert_allclose(last["forecast"], expected.to_numpy(), rtol=1e-5)
    day = frame.filter(pl.col("series_id") == "s1")["value"].to_numpy()[-24:]
    np.testing.assert_allclose(last["forecast"], day[:6], rtol=1e-3)


# A tiny fit for the CLI tests below, in logs and with one horizon of validation, as they were
# written for (streamcast.levelspread and streamcast.valsize would choose otherwise for this data).
TINY_FIT = [
    "--horizon",
    "6",
    "--epochs",
    "2",
    "--hidden",
    "8",
    "--ensemble",
    "1",
    "--transform",
    "log",
    "--val-size",
    "6",
    "--ar",
    "168",
]


# The ratio's shares alone: the tests that set them by hand must not see fitted ones added.
RATIO_ALONE = replace(TINY, epochs=1, naive_fallback=NAIVE_FALLBACK, naive_share="ratio")


def periodic_and_noisy(length: int = 300) -> pl.DataFrame:
    """Two noisy series and one that repeats its day exactly: no network matches its seasonal naive.
    Their spread does not grow with their level, so `--transform auto` leaves them in their units."""
    rng = np.random.default_rng(3)
    t = np.arange(length)
    values = {
        "noisy0": 20 + np.cumsum(rng.normal(0, 1, length)),
        "noisy1": 30 + 3 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 1, length),
        "exact": 25 + 2 * np.sin(2 * np.pi * t / 24),
    }
    ids = [k for k, v in values.items() for _ in v]
    steps = pl.int_range(pl.len()).over("series_id")
    return pl.DataFrame({"series_id": ids, "value": np.concatenate(list(values.values()))}).select(
        "series_id", (pl.lit(datetime(2024, 1, 1)) + pl.duration(hours=steps)).alias("timestamp"), "value"
    )


def test_fit_chooses_the_series_seasonal_naive_serves_better_and_the_cli_can_turn_it_off(tmp_path):
    data = tmp_path / "mixed.csv"
    periodic_and_noisy().write_csv(data)
    runner = CliRunner()
    common = ["fit", str(data), *TINY_FIT, "--naive-share", "ratio"]  # the ratio's choice alone
    on, off = tmp_path / "on.streamcast", tmp_path / "off.streamcast"
    fitted = runner.invoke(main, [*common, "-o", str(on)])
    assert fitted.exit_code == 0
    # The random walk (noisy0) is served its last value; the exact day its seasonal naive.
    assert (
        "fallback: naive for 2 of 3 series (validation error over 1.5x the better of seasonal "
        "naive's and the last value's); the last value for 1 of them" in fitted.stderr
    )
    assert sc.load(on).naive_series == {"exact", "noisy0"} and sc.load(on).naive_last == {"noisy0"}
    seasonal = tmp_path / "seasonal.streamcast"
    fitted = runner.invoke(main, [*common, "--fallback-to", "seasonal", "-o", str(seasonal)])
    assert "fallback: seasonal naive for 1 of 3 series (validation error over 1.5x seasonal naive's)" in (
        fitted.stderr
    )
    assert sc.load(seasonal).naive_series == {"exact"} and sc.load(seasonal).naive_last == frozenset()
    assert runner.invoke(main, [*common, "--naive-fallback", "0", "-o", str(off)]).exit_code == 0
    assert sc.load(off).naive_series == frozenset()
    meta = json.loads(runner.invoke(main, ["info", str(on), "--json"]).stdout)
    assert meta["info"]["naive_fallback"]["ratio"] == 1.5
    assert meta["naive_series"] == ["exact", "noisy0"] and meta["naive_last"] == ["noisy0"]
    shown = " ".join(runner.invoke(main, ["info", str(on)]).stdout.replace("│", " ").split())
    assert "naive for 2 of 3 series" in shown and "the last value for 1 of them" in shown
    bad = runner.invoke(main, [*common, "--naive-fallback", "0.5", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--naive-fallback must be 0 (off) or a ratio of at least 1" in bad.output


def test_the_python_fit_records_the_choice_in_its_info():
    model = sc.fit(read_series(periodic_and_noisy()), replace(TINY, epochs=2, naive_fallback=NAIVE_FALLBACK))
    assert model.info["naive_fallback"] == {
        "ratio": 1.5,
        "series": len(model.naive_series),
        "blended": len(model.naive_share),
        "blend_from": 1.2,
        "to": "best",
        "last_value": len(model.naive_last),
        "share": "fitted",
    }
    assert "exact" in model.naive_series and "exact" not in model.naive_last


def test_a_window_shorter_than_a_season_leaves_the_fallback_off_and_info_says_why(tmp_path):
    data = tmp_path / "mixed.csv"
    periodic_and_noisy().write_csv(data)
    out = tmp_path / "short.streamcast"
    args = ["fit", str(data), "--horizon", "6", "--epochs", "1", "--hidden", "8", "--ensemble", "1"]
    seasonal = ["--ar", "12", "--fallback-to", "seasonal"]
    assert CliRunner().invoke(main, [*args, *seasonal, "-o", str(out)]).exit_code == 0
    assert sc.load(out).naive_series == frozenset()
    shown = CliRunner().invoke(main, ["info", str(out)]).stdout
    assert "off: the --ar window is shorter than a season" in shown


def test_a_window_shorter_than_a_season_still_falls_back_to_the_last_value(tmp_path):
    # Minute data has a season (a day) of 1,440 steps and a window of 336: the last value is there.
    data = tmp_path / "mixed.csv"
    periodic_and_noisy().write_csv(data)
    out = tmp_path / "short.streamcast"
    args = ["fit", str(data), *TINY_FIT]
    assert CliRunner().invoke(main, [*args, "--ar", "12", "-o", str(out)]).exit_code == 0
    model = sc.load(out)
    served = model.naive_series | set(model.naive_share)
    assert "noisy0" in served and model.naive_last == served  # the random walk, its last value
    assert "skipped" not in model.info["naive_fallback"]
    shown = " ".join(CliRunner().invoke(main, ["info", str(out)]).stdout.replace("│", " ").split())
    assert "over 1.5x the last value's; the --ar window is shorter than a season" in shown


class _TwoEqualRanks:
    """A stand-in for a torchrun cluster of two ranks that hold as many series as this one."""

    world_size = 2

    def sum(self, values):
        return 2 * np.asarray(values, dtype=np.float64)

    def gather(self, obj):
        return [obj, obj]


def test_the_validation_origins_thin_out_by_the_series_of_every_rank(monkeypatch):
    # A rank's series take every `every`-th origin where all ranks' series together have too
    # many: the stride must not depend on how the series are shared out between ranks.
    from streamcast import training

    prepared = training.prepare(read_series(periodic_and_noisy()), TINY)
    net = training.RecurrentForecaster(prepared.model_config)
    work, val_size = prepared.work, prepared.val_size
    series, per_series = len(work.val_positions), TINY.horizon + val_size
    monkeypatch.setattr(training, "MAX_CALIBRATION_ORIGINS", series * per_series)  # one process: every 1
    alone = training._late_validation(net, work, val_size)
    assert alone.counts.tolist() == [per_series - 1] * series
    ranked = training._late_validation(net, replace(work, cluster=_TwoEqualRanks()), val_size)
    assert ranked.counts.tolist() == [len(range(0, per_series - 1, 2))] * series  # twice the series: every 2


def test_a_single_network_is_not_run_over_the_validation_origins_again_for_the_fallback(monkeypatch):
    # The fallback scores the forecasts `_late_validation` makes; only an ensemble's score needs
    # the outputs at the validation origins.
    from streamcast import training

    calls = []
    real_outputs, real_assemble = training.validation_outputs, training.assemble

    def assemble(*args):  # counts the passes after training, not those of its epochs
        monkeypatch.setattr(training, "validation_outputs", lambda *a: calls.append(1) or real_outputs(*a))
        return real_assemble(*args)

    monkeypatch.setattr(training, "assemble", assemble)
    model = sc.fit(read_series(periodic_and_noisy()), replace(TINY, epochs=1, naive_fallback=NAIVE_FALLBACK))
    assert "naive_fallback" in model.info and "skipped" not in model.info["naive_fallback"]
    assert calls == []


@pytest.fixture(scope="module")
def blended_s1(tiny_model):
    return replace(tiny_model, naive_series=frozenset(), naive_share={"s1": 0.25})


def test_every_command_serves_a_blended_series_its_share_of_seasonal_naive(
    tiny_model, tiny_data, naive_s1, blended_s1, tmp_path
):
    network = sc.forecast(replace(tiny_model, naive_series=frozenset()), tiny_data, horizon=30)
    naive = sc.forecast(naive_s1, tiny_data, horizon=30)  # past the trained 6 steps too
    blended = sc.forecast(blended_s1, tiny_data, horizon=30)
    s1 = pl.col("series_id") == "s1"
    own, whole = network.filter(s1)["forecast"].to_numpy(), naive.filter(s1)["forecast"].to_numpy()
    got = blended.filter(s1)["forecast"].to_numpy()
    # The blend is taken in the network's units: logs here, so a weighted geometric mean.
    assert tiny_model.spec.transform == "log"
    np.testing.assert_allclose(got[:6], own[:6] ** 0.75 * whole[:6] ** 0.25, rtol=1e-5)
    # Past the trained horizon too: neither the network's roll-out nor seasonal naive whole.
    assert not np.allclose(got[6:], whole[6:], rtol=1e-4) and not np.allclose(got[6:], own[6:], rtol=1e-4)
    assert blended.filter(~s1).equals(network.filter(~s1))
    # The model file keeps the share, and stream serves what forecast serves.
    path = tmp_path / "blended.streamcast"
    sc.save(blended_s1, path)
    loaded = sc.load(path)
    assert loaded.naive_share == {"s1": 0.25} and loaded.naive_series == frozenset()
    frame = hourly_frame(length=60)
    result = CliRunner().invoke(main, ["stream", "-m", str(path)], input="\n".join(lines_for(frame)) + "\n")
    assert result.exit_code == 0, result.stderr
    last = [json.loads(line) for line in result.stdout.splitlines() if '"s1"' in line][-1]
    expected = sc.forecast(loaded, read_series(frame)).filter(s1)["forecast"]
    np.testing.assert_allclose(last["forecast"], expected.to_numpy(), rtol=1e-5)
    # backtest scores the blend: neither the network alone nor seasonal naive.
    per = sc.backtest(blended_s1, tiny_data, windows=3, per_series=True).per_series.filter(s1)
    alone = sc.backtest(tiny_model, tiny_data, windows=3, per_series=True).per_series.filter(s1)
    assert not np.allclose(per["model"].to_numpy(), alone["model"].to_numpy(), rtol=1e-4)
    assert not np.allclose(per["model"].to_numpy(), per["seasonal_naive"].to_numpy(), rtol=1e-4)
    # The file says so to older readers, which would serve the blend from the network alone.
    assert safefile.header(path.read_bytes())["format_version"] == 6


def test_info_says_how_many_series_are_blended(tmp_path):
    data = tmp_path / "mixed.csv"
    periodic_and_noisy().write_csv(data)
    out = tmp_path / "m.streamcast"
    args = ["fit", str(data), "--horizon", "6", "--epochs", "2", "--hidden", "8", "--ensemble", "1"]
    assert CliRunner().invoke(main, [*args, "-o", str(out)]).exit_code == 0
    model = sc.load(out)
    model = replace(model, naive_share={"noisy0": 0.5})
    model.info["naive_fallback"]["blended"] = 1
    sc.save(model, out)
    shown = CliRunner().invoke(main, ["info", str(out)]).stdout
    shown = " ".join(shown.replace("│", " ").split())
    assert (
        "blended with it for 1 more (over 1.2x, or where a blend did better on the validation part; share 0.5)"
        in shown
    )
    assert json.loads(CliRunner().invoke(main, ["info", str(out), "--json"]).stdout)["naive_share"] == {
        "noisy0": 0.5
    }


def test_shares_follow_their_series_whatever_batches_the_series_are_walked_in(tiny_model):
    # Series of unequal lengths are batched longest first: each share must stay with its series.
    frame = pl.concat(
        [
            hourly_frame(series=1, length=n, seed=i).with_columns(series_id=pl.lit(f"u{i}"))
            for i, n in enumerate([70, 130, 100, 160])
        ]
    )
    inputs = tiny_model.inputs(frame)
    lengths = np.diff(inputs.offsets)
    positions = [np.array([n - 1]) for n in lengths.tolist()]
    net, season = tiny_model.net, tiny_model.net.config.season
    own, _ = run_series(net, inputs.inputs, inputs.offsets, positions)
    share = np.array([0.2, 1.0, 0.0, 0.6])
    naive = naive_at(inputs.inputs[:, 0], inputs.offsets[:-1], lengths - 1, own.shape[1], season)
    point = own[..., 0].numpy()
    expected = point + share[:, None].astype(np.float32) * (naive - point)
    serving = NaiveServing(share > 0, season, 0, share)
    for batch in (1, 2, 256):
        served, _ = run_series(
            net, inputs.inputs, inputs.offsets, positions, naive=serving, series_batch=batch
        )
        np.testing.assert_allclose(served[..., 0], expected, rtol=1e-5, atol=1e-6)


def test_fit_records_the_blended_series_and_calibrates_the_interval_on_what_it_serves(monkeypatch):
    from streamcast import training

    data = read_series(periodic_and_noisy())
    config = replace(RATIO_ALONE, intervals=(0.1, 0.9), val_size=24)
    # The series in order: exact (naive whole), noisy0 (the network), noisy1 (half and half).
    monkeypatch.setattr(
        training, "badly_served", lambda *args: (np.array([1.0, 0.0, 0.5]), np.zeros(3, bool))
    )
    model = sc.fit(data, config)
    assert model.naive_series == {"exact"} and model.naive_share == {"noisy1": 0.5}
    assert model.info["naive_fallback"]["blended"] == 1
    monkeypatch.setattr(
        training, "badly_served", lambda *args: (np.array([1.0, 0.0, 0.0]), np.zeros(3, bool))
    )
    unblended = sc.fit(data, config)  # the same weights (same seed), noisy1 served by the network
    assert unblended.naive_share == {}
    assert not np.allclose(model.intervals.offsets, unblended.intervals.offsets)


def test_the_last_value_is_the_yardstick_where_it_beats_seasonal_naive():
    targets = np.zeros((3, 2))
    points = np.array([[3.0, 3.0], [3.0, 3.0], [1.3, 1.3]])
    seasonal = np.array([[4.0, 4.0], [1.0, 1.0], [4.0, 4.0]])
    last = np.array([[1.0, 1.0], [4.0, 4.0], [1.0, 1.0]])
    shares, at_last = badly_served(points, targets, seasonal, np.array([1, 1, 1]), 1.5, last)
    # 3x the last value's error: naive whole, the last value; 3x seasonal naive's: seasonal naive;
    # 1.3x the last value's (0.3x seasonal naive's): a third of the way to the last value.
    np.testing.assert_allclose(shares, [1.0, 1.0, 1 / 3], rtol=1e-6)
    assert at_last.tolist() == [True, False, True]
    alone, _ = badly_served(points, targets, seasonal, np.array([1, 1, 1]), 1.5)
    assert alone.tolist() == [0.0, 1.0, 0.0]  # seasonal naive alone: the first and last kept


def test_a_season_per_row_reads_the_last_value_or_the_last_season():
    window = np.arange(12.0).reshape(2, 6)
    got = naive_from_window(window, horizon=4, season=np.array([1, 3]))
    assert got.tolist() == [[5.0] * 4, [9.0, 10.0, 11.0, 9.0]]
    values, starts = np.arange(12.0), np.array([0, 6])
    np.testing.assert_array_equal(naive_at(values, starts, np.array([5, 5]), 4, np.array([1, 3])), got)


def test_every_command_serves_a_last_value_series_its_last_value(tiny_model, tiny_data, tmp_path):
    last_s1 = replace(tiny_model, naive_series=frozenset({"s1"}), naive_last=frozenset({"s1"}))
    table = sc.forecast(last_s1, tiny_data, horizon=30)  # past the trained 6 steps too
    s1 = pl.col("series_id") == "s1"
    newest = tiny_data.frame.filter(s1)["value"][-1]
    np.testing.assert_allclose(table.filter(s1)["forecast"].to_numpy(), newest, rtol=1e-5)
    assert table.filter(~s1).equals(sc.forecast(tiny_model, tiny_data, horizon=30).filter(~s1))
    per = sc.backtest(last_s1, tiny_data, windows=3, per_series=True).per_series.filter(s1)
    np.testing.assert_allclose(per["model"].to_numpy(), per["naive"].to_numpy(), rtol=1e-4)
    path = tmp_path / "last.streamcast"
    sc.save(last_s1, path)
    assert sc.load(path).naive_last == {"s1"}
    # Older readers would serve seasonal naive: the file says so.
    assert safefile.header(path.read_bytes())["format_version"] == 8
    frame = hourly_frame(length=60)
    result = CliRunner().invoke(main, ["stream", "-m", str(path)], input="\n".join(lines_for(frame)) + "\n")
    assert result.exit_code == 0, result.stderr
    last = [json.loads(line) for line in result.stdout.splitlines() if '"s1"' in line][-1]
    np.testing.assert_allclose(last["forecast"], frame.filter(s1)["value"][-1], rtol=1e-5)


def test_a_model_file_whose_last_value_series_is_not_served_naive_is_refused(tiny_model, tmp_path):
    path = tmp_path / "odd.streamcast"
    sc.save(replace(tiny_model, naive_series=frozenset({"s1"}), naive_last=frozenset({"s1"})), path)
    meta = safefile.header(path.read_bytes())
    meta["naive_series"] = []
    from streamcast.schema import ModelMeta, validate

    with pytest.raises(Exception, match="naive_last names a series that is not served naive"):
        validate(meta, ModelMeta)


def test_fit_calibrates_the_interval_around_the_last_value_where_it_serves_it(monkeypatch):
    from streamcast import training

    data = read_series(periodic_and_noisy())
    config = replace(RATIO_ALONE, intervals=(0.1, 0.9), val_size=24)
    monkeypatch.setattr(
        training, "badly_served", lambda *args: (np.array([1.0, 1.0, 0.0]), np.array([False, True, False]))
    )
    model = sc.fit(data, config)  # exact: its seasonal naive, noisy0: its last value
    assert model.naive_series == {"exact", "noisy0"} and model.naive_last == {"noisy0"}
    assert model.info["naive_fallback"]["last_value"] == 1
    monkeypatch.setattr(
        training, "badly_served", lambda *args: (np.array([1.0, 1.0, 0.0]), np.array([False, False, False]))
    )
    seasonal = sc.fit(data, config)  # the same weights; noisy0 served its seasonal naive
    assert seasonal.naive_last == frozenset()
    assert not np.allclose(model.intervals.offsets, seasonal.intervals.offsets)


def test_a_last_value_series_is_served_its_last_value_whatever_its_batch_row(tiny_model):
    # s0 shorter than s1 and s2: run_series walks the longest first, so s0 is not batch row 0.
    frame = hourly_frame(length=200).filter(
        (pl.col("series_id") != "s0") | (pl.int_range(pl.len()).over("series_id") >= 40)
    )
    data = read_series(frame)
    chosen = replace(tiny_model, naive_series=frozenset({"s0", "s1"}), naive_last=frozenset({"s0"}))
    table = sc.forecast(chosen, data)
    for s, expected in [("s0", lambda v: np.full(6, v[-1])), ("s1", lambda v: v[-24:-18])]:
        values = frame.filter(pl.col("series_id") == s)["value"].to_numpy()
        got = table.filter(pl.col("series_id") == s)["forecast"].to_numpy()
        np.testing.assert_allclose(got, expected(values), rtol=1e-5, err_msg=s)
    per = sc.backtest(chosen, data, windows=3, per_series=True).per_series
    s0 = per.filter(pl.col("series_id") == "s0")
    np.testing.assert_allclose(s0["model"].to_numpy(), s0["naive"].to_numpy(), rtol=1e-4)


def test_a_tie_keeps_seasonal_naive_and_only_a_served_series_is_marked_for_the_last_value():
    targets, points = np.zeros((2, 2)), np.array([[3.0, 3.0], [1.0, 1.0]])
    seasonal = np.array([[1.0, 1.0], [4.0, 4.0]])
    last = np.array([[1.0, 1.0], [2.0, 2.0]])  # a tie; better, but the network is better still
    shares, at_last = badly_served(points, targets, seasonal, np.array([1, 1]), 1.5, last)
    assert shares.tolist() == [1.0, 0.0] and at_last.tolist() == [False, False]
