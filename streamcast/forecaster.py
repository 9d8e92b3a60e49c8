"""A trained forecaster: the network plus everything needed to feed it and read its output.

Holds no hidden state of any series: states are passed to and returned from the shared step in
`stepping`, so that one Forecaster can serve many series, processes and partitions at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import torch

from streamcast.features import (
    FeatureSpec,
    Scaler,
    SeriesInputs,
    build_inputs,
    fit_scaler,
    series_offsets,
)
from streamcast.model import RecurrentForecaster
from streamcast.reading import Columns


@dataclass
class Forecaster:
    """What `fit` returns, `save` writes and `load` reads back."""

    net: RecurrentForecaster
    spec: FeatureSpec
    scaler: Scaler
    columns: Columns
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        return self.net.config.horizon

    @property
    def quantiles(self) -> tuple[float, ...]:
        return self.net.config.quantiles

    @property
    def freq(self) -> str:
        return self.spec.freq

    def inputs(self, frame: pl.DataFrame) -> SeriesInputs:
        """Input rows for a canonical frame; a series the model never saw is scaled by its own history."""
        ids, offsets = series_offsets(frame)
        unseen = [i for i, sid in enumerate(ids) if sid not in self.scaler.loc]
        fallback = None
        if unseen:
            values = frame["value"].to_numpy()
            lengths = np.diff(offsets)
            fallback = fit_scaler(values, offsets, ids, lengths, self.spec.scaling)
        return build_inputs(frame, self.spec, self.scaler, fallback)

    def point_and_quantiles(self, scaled: torch.Tensor, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """(R, H, Q) scaled outputs -> (R, H, Q) in the series' own units, quantiles non-crossing."""
        y = scaled.double().numpy()
        if y.shape[-1] > 1:
            y = np.sort(y, axis=-1)
        return y * scale[:, None, None] + loc[:, None, None]

    @property
    def point_index(self) -> int:
        """Which output is the point forecast: the median when quantiles are on."""
        q = self.quantiles
        return q.index(0.5) if q else 0
