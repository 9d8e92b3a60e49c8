"""Data that never goes below zero (counts with zero days) is never forecast below zero."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from tests.conftest import TINY, long_hourly


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
