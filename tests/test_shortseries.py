"""Series too short to train on, among long ones: left out of the fit and served naive."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.errors import DataError
from streamcast.reading import read_series
from tests.conftest import TINY, hourly_frame

# Horizon 6 and validation 24: a series needs 32 points; the season of hourly data is 24.
CONFIG = replace(TINY, epochs=1, naive_fallback=1.5, val_size=24)


def with_short(tmp_path=None) -> pl.DataFrame:
    """Three long series, one of 30 points (more than a day) and one of 10 (less than a day)."""
    long = hourly_frame(series=3, length=200)
    newer = hourly_frame(series=1, length=30, seed=7).with_columns(series_id=pl.lit("day_old"))
    newest = hourly_frame(series=1, length=10, seed=8).with_columns(series_id=pl.lit("hours_old"))
    frame = pl.concat([long, newer, newest])
    if tmp_path is not None:
        frame.write_csv(tmp_path / "data.csv")
    return frame


def test_short_series_are_left_out_of_training_and_served_naive():
    frame = with_short()
    model = sc.fit(read_series(frame), CONFIG)
    assert model.info["data"]["series"] == 3  # trained on the long ones
    assert model.info["short_series"] == {
        "series": 2,
        "needed": 32,
        "example": "day_old",
        "served": "naive",
        "last_value": 1,
    }
    assert {"day_old", "hours_old"} <= set(model.scaler.loc)  # scaled by their own values
    assert {"day_old", "hours_old"} <= model.naive_series
    assert "hours_old" in model.naive_last and "day_old" not in model.naive_last
    table = sc.forecast(model, read_series(frame))
    for sid, expected in (
        ("hours_old", lambda v: np.full(6, v[-1])),  # less than a season: its last value
        ("day_old", lambda v: v[-24:-18]),  # a season held: the same hours a day before
    ):
        values = frame.filter(pl.col("series_id") == sid)["value"].to_numpy()
        got = table.filter(pl.col("series_id") == sid)["forecast"].to_numpy()
        np.testing.assert_allclose(got, expected(values), rtol=1e-5, err_msg=sid)


def test_the_long_series_train_exactly_as_without_the_short_ones():
    long_only = sc.fit(read_series(hourly_frame(series=3, length=200)), CONFIG)
    mixed = sc.fit(read_series(with_short()), CONFIG)
    for a, b in zip(long_only.net.state_dict().values(), mixed.net.state_dict().values(), strict=True):
        assert a.equal(b)


def test_with_the_fallback_off_the_network_serves_them_as_series_it_never_saw():
    model = sc.fit(read_series(with_short()), replace(CONFIG, naive_fallback=0))
    assert model.info["short_series"]["served"] == "network"
    assert not {"day_old", "hours_old"} & model.naive_series


def test_every_series_too_short_still_stops_the_fit():
    data = read_series(hourly_frame(series=2, length=10))
    with pytest.raises(DataError, match="series 's0' has 10 points but fit needs at least 32"):
        sc.fit(data, CONFIG)


def test_the_cli_says_which_series_it_left_out_and_the_model_file_keeps_them(tmp_path):
    with_short(tmp_path)
    out = tmp_path / "m.streamcast"
    args = ["fit", str(tmp_path / "data.csv"), "--horizon", "6", "--val-size", "24", "--epochs", "1"]
    result = CliRunner().invoke(main, [*args, "--hidden", "8", "--ensemble", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert (
        "short series: 2 series shorter than 32 points (e.g. 'day_old') were left out of training; "
        "served naive (the last value for 1)" in result.stderr
    )
    loaded = sc.load(out)
    assert {"day_old", "hours_old"} <= loaded.naive_series and "hours_old" in loaded.naive_last
    shown = " ".join(CliRunner().invoke(main, ["info", str(out)]).stdout.replace("│", " ").split())
    assert (
        "short series 2 series shorter than 32 points (e.g. 'day_old') were left out of training; "
        "served naive (the last value for 1)" in shown
    )


def test_the_library_warns_which_series_it_left_out():
    with pytest.warns(
        sc.StreamcastWarning, match=r"2 series shorter than 32 points \(e.g. 'day_old', 30 points\)"
    ):
        sc.fit(read_series(with_short()), CONFIG)


def test_their_values_count_in_the_log_transform_and_the_bound_at_zero():
    """Long series all positive would be taken in logs, and long ones with zeros bounded at 0: a
    short series that goes below zero must be served as well, from both models."""
    positive = hourly_frame(series=3, length=200)
    below = hourly_frame(series=1, length=30, seed=7).with_columns(
        series_id=pl.lit("below"), value=pl.col("value") - 40
    )
    for long in (
        positive,
        positive.with_columns(value=pl.when(pl.col("value") < 12).then(0.0).otherwise("value")),
    ):
        frame = pl.concat([long, below])
        model = sc.fit(read_series(frame), CONFIG)
        assert model.spec.transform == "none" and model.spec.floor is None
        values = frame.filter(pl.col("series_id") == "below")["value"].to_numpy()
        got = sc.forecast(model, read_series(frame)).filter(pl.col("series_id") == "below")["forecast"]
        np.testing.assert_allclose(got.to_numpy(), values[-24:-18], rtol=1e-5)


def test_a_window_shorter_than_a_season_serves_them_their_last_value():
    frame = with_short()
    model = sc.fit(read_series(frame), replace(CONFIG, ar=12, fallback_to="seasonal"))
    assert {"day_old", "hours_old"} <= model.naive_last  # 30 points, but a window of 12 reads no day
    got = sc.forecast(model, read_series(frame)).filter(pl.col("series_id") == "day_old")["forecast"]
    np.testing.assert_allclose(
        got.to_numpy(), frame.filter(pl.col("series_id") == "day_old")["value"][-1], rtol=1e-5
    )


def test_fit_auto_leaves_them_out_too():
    model = sc.fit_auto(read_series(with_short()), CONFIG, time_budget=5)
    assert model.info["short_series"]["series"] == 2 and "hours_old" in model.naive_last


def test_stream_serves_them_what_forecast_serves(tmp_path):
    """Scaled by their own values in the model, they stream on a fixed scale, as trained series do."""
    from tests.test_cli_stream import lines_for

    frame = with_short()
    path = tmp_path / "m.streamcast"
    sc.save(sc.fit(read_series(frame), CONFIG), path)
    later = hourly_frame(series=1, length=60, seed=7).with_columns(series_id=pl.lit("day_old"))
    result = CliRunner().invoke(main, ["stream", "-m", str(path)], input="\n".join(lines_for(later)) + "\n")
    assert result.exit_code == 0, result.stderr
    import json

    rows = [json.loads(line) for line in result.stdout.splitlines()]
    values = later["value"].to_numpy()
    for i, row in enumerate(rows[24:], 24):  # a day in: each forecast is the same hours a day before
        np.testing.assert_allclose(row["forecast"], values[i - 23 : i - 17], rtol=1e-5, err_msg=str(i))


def test_a_log_transform_asked_for_names_a_short_series_below_zero_before_training():
    below = hourly_frame(series=1, length=30, seed=7).with_columns(
        series_id=pl.lit("below"), value=pl.lit(-1.0)
    )
    data = read_series(pl.concat([hourly_frame(series=3, length=200), below]))
    with pytest.raises(DataError, match="series 'below' has a value <= 0"):
        sc.fit(data, replace(CONFIG, transform="log"))


def test_a_short_series_that_never_goes_below_zero_is_bounded_at_zero_on_its_own():
    """Where the data as a whole goes below zero, as a long series would be (`floor_series`)."""
    long = pl.concat(
        [
            hourly_frame(series=1, length=200).with_columns(value=pl.col("value") - 40),  # below zero
            hourly_frame(series=1, length=200, seed=3).with_columns(series_id=pl.lit("s1")),
        ]
    )
    sparse = hourly_frame(series=1, length=20, seed=7).with_columns(
        series_id=pl.lit("sparse"), value=pl.when(pl.int_range(pl.len()) % 5 == 0).then(3.0).otherwise(0.0)
    )
    frame = pl.concat([long, sparse])
    for fallback in (1.5, 0.0):
        model = sc.fit(read_series(frame), replace(CONFIG, naive_fallback=fallback))
        assert model.spec.floor is None and {"s1", "sparse"} <= model.floor_series
        table = sc.forecast(model, read_series(frame)).filter(pl.col("series_id") == "sparse")
        assert (
            (
                table.select(
                    pl.min_horizontal(
                        pl.exclude("series_id", "origin", "timestamp", "step", "new_series").cast(pl.Float64)
                    )
                )
                >= 0
            )
            .to_series()
            .all()
        )
