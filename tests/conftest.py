"""Tiny seeded data and models built in code, shared by the tests."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pytest
import torch

from streamcast.modelfile import save
from streamcast.reading import read_series
from streamcast.threads import DEFAULT_THREADS, ENV, set_blas_threads, set_process_threads
from streamcast.training import FitConfig, fit


def hourly_frame(
    series: int = 3,
    length: int = 200,
    seed: int = 0,
    start: datetime = datetime(2024, 1, 1),
    growth: float = 0.002,
) -> pl.DataFrame:
    """Long-format hourly series with a daily cycle, a per-series level and a little noise, all
    growing by `growth` (0.2%) an hour: positive data whose spread grows with its level, which
    `--transform auto` models in logs (`streamcast.levelspread`)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    ids, values = [], []
    for i in range(series):
        ids += [f"s{i}"] * length
        values.append(
            (10.0 * (i + 1) + 3.0 * np.sin(2 * np.pi * (t + 3 * i) / 24) + rng.normal(0, 0.3, length))
            * np.exp(growth * t)
        )
    steps = pl.int_range(pl.len()).over("series_id")
    return pl.DataFrame({"series_id": ids, "value": np.concatenate(values)}).select(
        "series_id", (pl.lit(start) + pl.duration(hours=steps)).alias("timestamp"), "value"
    )


def long_hourly(series: dict[str, np.ndarray]) -> pl.DataFrame:
    """Series given as arrays, as a long-format hourly frame from 2024-01-01."""
    ids = [name for name, v in series.items() for _ in v]
    steps = pl.int_range(pl.len()).over("series_id")
    return pl.DataFrame({"series_id": ids, "value": np.concatenate(list(series.values()))}).select(
        "series_id", (pl.lit(datetime(2024, 1, 1)) + pl.duration(hours=steps)).alias("timestamp"), "value"
    )


# `fit`'s arguments for a tiny, quick model from the command line (no -q: the tests read its lines).
CLI_TINY = ("--hidden", "8", "--epochs", "1", "--horizon", "6", "--bptt", "16", "--ensemble", "1")


def diverging_data():
    """Two series, one with an infinite value read past the reader's checks: every training step
    that sees it has a non-finite loss, so no epoch validates (a diverged run)."""
    data = read_series(hourly_frame(series=2))
    bad = data.frame.with_columns(
        pl.when((pl.col("series_id") == "s1") & (pl.int_range(pl.len()).over("series_id") == 50))
        .then(float("inf"))
        .otherwise(pl.col("value"))
        .alias("value")
    )
    return type(data)(bad, data.freq, data.columns, data.source, data.notes)


# The network itself is what most tests exercise: two epochs of hidden 8 would be served seasonal
# naive by the default fallback (tests/test_fallback.py covers it).
TINY = FitConfig(
    hidden_size=8,
    epochs=2,
    horizon=6,
    bptt=16,
    batch_size=8,
    seed=0,
    ensemble=1,
    naive_fallback=0,
    val_size=6,
    ar=168,  # one highway window: the default's half of it would change the tiny series' fits
)


@pytest.fixture(scope="session")
def tiny_data():
    return read_series(hourly_frame())


@pytest.fixture(scope="session")
def tiny_model(tiny_data):
    return fit(tiny_data, TINY)


@pytest.fixture(scope="session")
def model_path(tmp_path_factory, tiny_model):
    """The tiny model as a file, for the commands' tests; read only (a test that changes a model
    file copies it first)."""
    return save(tiny_model, tmp_path_factory.mktemp("tiny_model") / "model.streamcast")


# The suite runs as the commands do by default: on one torch thread (streamcast.threads), inter-op
# included, set before any torch work; on 2 busy cores a second thread made the suite slower, not faster.
set_process_threads(DEFAULT_THREADS)


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    """Every test starts on the default, whatever the shell's STREAMCAST_THREADS or a test of
    `--threads 2` before it (the CLI sets the count of the whole process) left behind."""
    monkeypatch.delenv(ENV, raising=False)
    torch.set_num_threads(DEFAULT_THREADS)
    set_blas_threads(DEFAULT_THREADS)
