"""Data that never goes below zero (counts with zero days) is never forecast below zero."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast import safefile
from streamcast.cli import main
from streamcast.features import nonnegative_series
from tests.conftest import TINY, long_hourly
from tests.test_cli_stream import lines_for


def sparse_counts(series: int = 3, length: int = 500, shift: float = 0.0) -> pl.DataFrame:
    """Mostly zeros with an occasional count: a network's forecasts and intervals dip below 0."""
    rng = np.random.default_rng(0)
    return long_hourly({f"c{s}": rng.poisson(0.3, length).astype(float) + shift for s in range(series)})


@pytest.fixture(scope="module")
def counts():
    return sc.read_series(sparse_counts())


def test_forecasts_and_intervals_of_data_that_never_goes_below_zero_stay_at_or_above_zero(counts):
    model = sc.fit(counts, replace(TINY, horizon=12, epochs=2, val_size=48))
    assert model.spec.floor == 0.0 and model.spec.transform == "none"
    table = sc.forecast(model, counts)
    assert table["forecast"].min() >= 0 and table["q0.1"].min() >= 0
    unbounded = replace(model, spec=replace(model.spec, floor=None))
    raw = sc.forecast(unbounded, counts)
    assert raw["q0.1"].min() < 0  # the bound did something here
    assert (table["forecast"] == raw["forecast"].clip(0.0)).all()


def test_the_bound_survives_save_and_load(counts, tmp_path):
    model = sc.fit(counts, replace(TINY, horizon=12, epochs=1, val_size=48))
    loaded = sc.load(sc.save(model, tmp_path / "m.streamcast"))
    assert loaded.spec.floor == 0.0
    assert sc.forecast(loaded, counts).equals(sc.forecast(model, counts))
    shown = CliRunner().invoke(main, ["info", str(tmp_path / "m.streamcast")], terminal_width=200)
    assert "none, floor=0" in shown.output


def test_no_bound_when_asked_for_no_transform_or_when_the_data_goes_below_zero():
    counts = sc.read_series(sparse_counts())
    assert sc.fit(counts, replace(TINY, horizon=6, epochs=1, transform="none")).spec.floor is None
    crossing = sc.read_series(sparse_counts(shift=-0.5))
    assert sc.fit(crossing, replace(TINY, horizon=6, epochs=1)).spec.floor is None
    positive = sc.read_series(sparse_counts(shift=1.0))
    assert sc.fit(positive, replace(TINY, horizon=6, epochs=1)).spec.transform == "log"


def mixed(length: int = 500) -> pl.DataFrame:
    """Three sparse counts and a temperature below zero: no bound for all, one for each count."""
    rng = np.random.default_rng(1)
    counts = {f"c{s}": rng.poisson(0.3, length).astype(float) for s in range(3)}
    return long_hourly({**counts, "temp": -5.0 + rng.normal(0, 1, length)})


@pytest.fixture(scope="module")
def mixed_model():
    data = sc.read_series(mixed())
    return data, sc.fit(data, replace(TINY, horizon=12, epochs=2, val_size=48))


def test_each_series_that_never_goes_below_zero_is_bounded_on_its_own_in_every_command(mixed_model, tmp_path):
    data, model = mixed_model
    assert model.spec.floor is None and model.spec.transform == "none"
    assert model.floor_series == {"c0", "c1", "c2"} and model.info["floor"] == {"series": 3}
    counts, temp = pl.col("series_id") != "temp", pl.col("series_id") == "temp"
    table = sc.forecast(model, data)
    raw = sc.forecast(replace(model, floor_series=frozenset()), data)
    assert raw.filter(counts)["q0.1"].min() < 0  # the bound does something here
    assert (table.filter(counts)["q0.1"] == raw.filter(counts)["q0.1"].clip(0.0)).all()
    assert table.filter(temp).equals(raw.filter(temp)) and table.filter(temp)["forecast"].max() < 0
    # backtest scores the bounded forecasts
    kept = sc.backtest(model, data, windows=3, keep_forecasts=True).forecasts
    unkept = sc.backtest(
        replace(model, floor_series=frozenset()), data, windows=3, keep_forecasts=True
    ).forecasts
    low = [c for c in kept.columns if c.startswith("q0.1")][0]
    assert unkept.filter(counts)[low].min() < 0 <= kept.filter(counts)[low].min()
    assert kept.filter(temp).equals(unkept.filter(temp))
    # the file keeps the bound (format 7: an older streamcast would forecast below zero)
    path = sc.save(model, tmp_path / "m.streamcast")
    assert sc.load(path).floor_series == model.floor_series
    assert safefile.header(path.read_bytes())["format_version"] == 7
    # and stream serves it
    unbounded = sc.save(replace(model, floor_series=frozenset()), tmp_path / "raw.streamcast")
    text = "\n".join(lines_for(mixed(length=200))) + "\n"
    lowest = []
    for file in (path, unbounded):
        result = CliRunner().invoke(main, ["stream", "-m", str(file), "-q"], input=text)
        assert result.exit_code == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        lowest.append(min(min(line["q0.1"]) for line in lines if line["series_id"] != "temp"))
    assert lowest[1] < 0 <= lowest[0]


def test_a_series_new_to_the_model_is_not_bounded(mixed_model):
    data, model = mixed_model
    rng = np.random.default_rng(5)
    frame = pl.concat([mixed(), long_hourly({"new": rng.poisson(0.3, 500).astype(float)})])
    new = pl.col("series_id") == "new"
    table = sc.forecast(model, sc.read_series(frame)).filter(new)
    raw = sc.forecast(replace(model, floor_series=frozenset()), sc.read_series(frame)).filter(new)
    assert table.equals(raw) and table["q0.1"].min() < 0


def test_a_series_that_goes_below_zero_in_its_validation_part_is_not_bounded():
    rng = np.random.default_rng(2)
    late = rng.poisson(0.3, 500).astype(float)
    late[-10:] = -3.0  # the newest values, in the validation part (the last 48)
    counts = {f"c{s}": rng.poisson(0.3, 500).astype(float) for s in range(2)}
    config = replace(TINY, horizon=12, epochs=1, val_size=48)
    frame = long_hourly({**counts, "late": late, "temp": -5.0 + rng.normal(0, 1, 500)})
    assert sc.fit(sc.read_series(frame), config).floor_series == {"c0", "c1"}
    # Nor is data as a whole whose validation part alone goes below zero.
    alone = long_hourly({**counts, "late": late})
    model = sc.fit(sc.read_series(alone), config)
    assert model.spec.floor is None and model.floor_series == {"c0", "c1"}


def test_the_series_bound_reads_the_values_it_is_given_and_only_data_left_in_its_units():
    values = np.array([1.0, 0.0, 2.0, -1.0, 3.0, 0.0, 5.0, np.nan])  # a: 3 values, b: 5
    assert nonnegative_series(values, np.array([0, 3, 8]), ["a", "b"], np.array([3, 5])) == ["a"]
    late = np.array([1.0, 0.0, 2.0, 4.0, 3.0, -1.0])  # b's -1 is its third value
    offsets = np.array([0, 3, 6])
    assert nonnegative_series(late, offsets, ["a", "b"], np.array([3, 3])) == ["a"]
    assert nonnegative_series(late, offsets, ["a", "b"], np.array([3, 2])) == ["a", "b"]
    data = sc.read_series(mixed())
    assert sc.fit(data, replace(TINY, horizon=6, epochs=1, transform="none")).floor_series == frozenset()
