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
    assert model.info["short_series"] == {"series": 2, "needed": 32, "example": "day_old", "served": "naive"}
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
        "served naive" in result.stderr
    )
    loaded = sc.load(out)
    assert {"day_old", "hours_old"} <= loaded.naive_series and "hours_old" in loaded.naive_last
    shown = " ".join(CliRunner().invoke(main, ["info", str(out)]).stdout.replace("│", " ").split())
    assert "2 series too short to train on served naive" in shown


def test_the_library_warns_which_series_it_left_out():
    with pytest.warns(
        sc.StreamcastWarning, match=r"2 series shorter than 32 points \(e.g. 'day_old', 30 points\)"
    ):
        sc.fit(read_series(with_short()), CONFIG)
