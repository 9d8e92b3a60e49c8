"""A trained forecaster: the network plus everything needed to feed it and read its output.

Holds no hidden state of any series: states are passed to and returned from the shared step in
`stepping`, so that one Forecaster can serve many series, processes and partitions at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from streamcast.errors import DataError, UsageError
from streamcast.fallback import NaiveServing, in_order, naive_serving
from streamcast.features import (
    FeatureSpec,
    Scaler,
    SeriesInputs,
    build_inputs,
    fit_scaler,
    from_model_units,
    series_offsets,
)
from streamcast.glitches import recorded_ratio
from streamcast.intervals import Intervals
from streamcast.reading import Columns, SeriesFrame, read_series
from streamcast.zones import in_zone

if TYPE_CHECKING:
    import torch

    from streamcast.backtest import BacktestResult
    from streamcast.model import Network
    from streamcast.numpy_ensemble import NumpyNetwork
    from streamcast.training import FitConfig


@dataclass
class Forecaster:
    """What `fit` returns, `save` writes and `load` reads back."""

    net: Network | NumpyNetwork  # torch's, or its numpy mirror (`load_numpy`: `stream` on the CPU)
    spec: FeatureSpec
    scaler: Scaler
    columns: Columns
    info: dict[str, Any] = field(default_factory=dict)
    static_values: dict[str, tuple] = field(default_factory=dict)
    """Each training series' values of the `--static` columns, for series whose data lacks them."""
    naive_series: frozenset[str] = frozenset()
    """Training series served seasonal naive (`fit --naive-fallback`, `streamcast.fallback`)."""
    naive_share: dict[str, float] = field(default_factory=dict)
    """Training series served a blend: their share (0-1) of seasonal naive, the rest the network's."""
    naive_last: frozenset[str] = frozenset()
    """Of those, the series whose naive is the last value, not seasonal naive (`--fallback-to`)."""
    floor_series: frozenset[str] = frozenset()
    """Training series whose forecasts are bounded at 0 (`features.nonnegative_series`)."""
    intervals: Intervals | None = None
    """The interval calibrated around a point model's forecasts (`fit --intervals`)."""

    # The object-style entry points below are thin doors into the modules that build on this one
    # (training, modelfile, forecasting, backtest); they import them when called, so that those
    # modules can keep importing this one and nothing imports in a circle.

    @classmethod
    def fit(
        cls,
        data: SeriesFrame | str | Path | pl.DataFrame,
        config: FitConfig | None = None,
        *,
        threads: int | None = None,
        **options: Any,
    ) -> Forecaster:
        """Train on `data` (read with `read_series` unless it already is a SeriesFrame).

        `options` are `read_series` options (target, id_col, time_col, covariates); covariates given
        here are also the model's covariates. `threads` as in `streamcast.fit`.
        """
        from streamcast.training import FitConfig, fit

        data, config = _training_data(data, config or FitConfig(), options)
        return fit(data, config, threads=threads)

    @classmethod
    def load(cls, path: str | Path) -> Forecaster:
        from streamcast.modelfile import load

        return load(path)

    def to(self, device: str | torch.device = "auto") -> Forecaster:
        """Serve on `device` (as `--device`; `auto`: a CUDA GPU when torch sees one): the network
        moves there, this forecaster is returned. States and forecasts stay on the CPU.

        >>> forecast(load("model.streamcast").to("cuda"), data)  # doctest: +SKIP
        """
        import torch

        from streamcast.devices import resolve_device

        require_torch(self, "moving it to a device")
        self.net.to(device if isinstance(device, torch.device) else resolve_device(device))
        return self

    def save(self, path: str | Path) -> Path:
        from streamcast.modelfile import save

        return save(self, path)

    def forecast(self, data: SeriesFrame | str | Path | pl.DataFrame, **options: Any) -> pl.DataFrame:
        """`forecasting.forecast` on `data`, read with the model's own column mapping."""
        from streamcast.forecasting import forecast

        return forecast(self, _read_as_trained(data, self), **options)

    def backtest(self, data: SeriesFrame | str | Path | pl.DataFrame, **options: Any) -> BacktestResult:
        from streamcast.backtest import backtest

        return backtest(self, _read_as_trained(data, self), **options)

    @property
    def time_zone(self) -> str | None:
        """The zone of the timestamps the model was trained on (None: naive, or not recorded)."""
        return self.info.get("data", {}).get("time_zone")

    def in_model_zone(self, data: SeriesFrame) -> tuple[SeriesFrame, str | None]:
        """`data` with its timestamps in the model's zone, and the warning due when the source's
        zone was another (models from before zones were recorded take the data as it is)."""
        if "time_zone" not in self.info.get("data", {}) or data.frame["timestamp"].dtype == pl.Int64:
            return data, None
        return in_zone(data, self.time_zone)

    @property
    def horizon(self) -> int:
        return self.net.config.horizon

    @property
    def quantiles(self) -> tuple[float, ...]:
        """The quantiles served: the network's own, or its calibrated interval's with the point
        forecast as the median."""
        return self.intervals.quantiles if self.intervals is not None else self.net.config.quantiles

    @property
    def freq(self) -> str:
        return self.spec.freq

    def check_freq(self, data: SeriesFrame) -> None:
        """Data at another frequency would be read as if it stepped at the model's: refuse it."""
        if data.freq != self.freq:
            raise DataError(
                f"{data.source} steps by {data.freq} but the model by {self.freq}; "
                "give data at the model's frequency, or fit a model on this data"
            )

    def inputs(
        self, frame: pl.DataFrame, *, future: pl.DataFrame | None = None, static: pl.DataFrame | None = None
    ) -> SeriesInputs:
        """Input rows for a canonical frame; a series the model never saw is scaled by its own history.
        `future`: future covariate values after the frame's rows (see `features.build_inputs`);
        `static`: the data's static values (series_id, columns...), over those the model keeps."""
        ids, offsets = series_offsets(frame)
        unseen = [i for i, sid in enumerate(ids) if sid not in self.scaler.loc]
        fallback = None
        if unseen:
            values = frame["value"].to_numpy()
            lengths = np.diff(offsets)
            fallback = fit_scaler(values, offsets, ids, lengths, self.spec.scaling, self.spec.transform)
        return build_inputs(
            frame, self.spec, self.scaler, fallback, future=future, static=self.static_for(static)
        )

    def static_for(self, table: pl.DataFrame | None) -> dict[str, tuple] | None:
        """Static values per series: the data's where it has them, else those seen in training."""
        return _static_for(self.spec.static, self.static_values, table)

    def naive_serving(self, series_ids: list[str]) -> NaiveServing | None:
        """Which of these series are served naive (`streamcast.fallback`); None when none is."""
        c, chosen = self.net.config, (self.naive_series, self.naive_share, series_ids)
        return naive_serving(*chosen, c.season, self.point_index, self.naive_last) if c.ar else None

    def point_and_quantiles(
        self,
        scaled: torch.Tensor | np.ndarray,
        loc: np.ndarray,
        scale: np.ndarray,
        floor: np.ndarray | None = None,
    ) -> np.ndarray:
        """(R, H, Q) scaled outputs -> (R, H, Q) in the series' own units, quantiles non-crossing,
        within each row's `floor` (R,; `features.series_floors`) and the model's own."""
        y = in_order(np.asarray(scaled, dtype=np.float64))
        values = from_model_units(y * scale[:, None, None] + loc[:, None, None], self.spec.transform)
        if floor is not None:
            values = np.maximum(values, floor[:, None, None])
        return values if self.spec.floor is None else np.maximum(values, self.spec.floor)

    @property
    def point_index(self) -> int:
        """Which output is the point forecast: the median when quantiles are on."""
        q = self.quantiles
        return q.index(0.5) if q else 0


def served_by_numpy(forecaster: Forecaster) -> bool:
    """Whether the network is its numpy mirror (`load_numpy`), which serves `stream` only."""
    from streamcast.numpy_ensemble import NumpyNetwork

    return isinstance(forecaster.net, NumpyNetwork)


def require_torch(forecaster: Forecaster, what: str) -> None:
    """A UsageError, before any work, where `what` needs torch's network and this is the mirror."""
    if served_by_numpy(forecaster):
        raise UsageError(
            f"{what} needs the model loaded with torch: this one was loaded by load_numpy, "
            "which serves stream alone; load it with streamcast.load"
        )


def _static_for(
    columns: tuple[str, ...], trained: dict[str, tuple], table: pl.DataFrame | None
) -> dict[str, tuple] | None:
    if not columns:
        return None
    values = dict(trained)
    if table is not None:
        values.update({row[0]: tuple(row[1:]) for row in table.select("series_id", *columns).iter_rows()})
    return values


def _training_data(
    data: SeriesFrame | str | Path | pl.DataFrame, config: FitConfig, options: dict[str, Any]
) -> tuple[SeriesFrame, FitConfig]:
    """`data` read as a SeriesFrame (with the config's covariates unless `options` name others),
    and the config with the covariates the data has: the model's inputs are the data's columns."""
    if not isinstance(data, SeriesFrame):
        options.setdefault("covariates", config.covariates)
        options.setdefault("future_covariates", config.future_covariates)
        options.setdefault("static", config.static)
        data = read_series(data, **options)
    if tuple(data.columns.covariates) != tuple(config.covariates):
        config = replace(config, covariates=tuple(data.columns.covariates))
    if data.columns.future_covariates and data.columns.future_covariates != config.future_covariates:
        config = replace(config, future_covariates=tuple(data.columns.future_covariates))
    return data, config


def _read_as_trained(data: SeriesFrame | str | Path | pl.DataFrame, forecaster: Forecaster) -> SeriesFrame:
    """`data` read with the model's own column mapping, time zone and glitch ratio (a SeriesFrame
    as it is)."""
    if isinstance(data, SeriesFrame):
        return data
    columns, zone = forecaster.columns, forecaster.time_zone
    return read_series(
        data,
        id_col=columns.id,
        time_col=columns.time,
        target=columns.target,
        covariates=columns.covariates,
        future_covariates=columns.future_covariates,
        static=columns.static,
        time_zone=zone,
        glitch_ratio=recorded_ratio(forecaster.info),
    )
