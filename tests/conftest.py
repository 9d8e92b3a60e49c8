"""Tiny seeded data and models built in code, shared by the tests."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pytest
import torch

from streamcast.reading import read_series
from streamcast.training import FitConfig, fit


def hourly_frame(
    series: int = 3, length: int = 200, seed: int = 0, start: datetime = datetime(2024, 1, 1)
) -> pl.DataFrame:
    """Long-format hourly series with a daily cycle, a per-series level and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    ids, values = [], []
    for i in range(series):
        ids += [f"s{i}"] * length
        values.append(
            10.0 * (i + 1) + 3.0 * np.sin(2 * np.pi * (t + 3 * i) / 24) + rng.normal(0, 0.3, length)
        )
    steps = pl.int_range(pl.len()).over("series_id")
    return pl.DataFrame({"series_id": ids, "value": np.concatenate(values)}).select(
        "series_id", (pl.lit(start) + pl.duration(hours=steps)).alias("timestamp"), "value"
    )


TINY = FitConfig(hidden_size=8, epochs=2, horizon=6, bptt=16, batch_size=8, seed=0)


@pytest.fixture(scope="session")
def tiny_data():
    return read_series(hourly_frame())


@pytest.fixture(scope="session")
def tiny_model(tiny_data):
    return fit(tiny_data, TINY)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Streams run on one torch thread, as the CLI runs them: small steps wait on a second one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
