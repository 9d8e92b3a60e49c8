"""streamcast: forecast time series with stateful recurrent networks, in batch and on streams.

The public names are loaded on first use (PEP 562): `import streamcast` costs no torch, so the CLI's
`--help`, `info` and usage errors answer at once, while `from streamcast import stream, Forecaster`
works as before.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

# Each public name and the module that defines it.
_PUBLIC = {
    "AlarmRate": "streamcast.alarms",
    "alarm_rate": "streamcast.alarms",
    "fit_auto": "streamcast.autofit",
    "BacktestResult": "streamcast.backtest",
    "backtest": "streamcast.backtest",
    "fit_and_backtest": "streamcast.backtest",
    "holdout": "streamcast.backtest",
    "combine_scores": "streamcast.backtest",
    "BatchReader": "streamcast.batches",
    "read_batches": "streamcast.batches",
    "DataError": "streamcast.errors",
    "ModelFileError": "streamcast.errors",
    "StreamcastError": "streamcast.errors",
    "StreamcastWarning": "streamcast.errors",
    "UsageError": "streamcast.errors",
    "Forecaster": "streamcast.forecaster",
    "forecast": "streamcast.forecasting",
    "forecast_batches": "streamcast.forecasting",
    "forecast_source": "streamcast.forecasting",
    "with_source_names": "streamcast.forecasting",
    "load": "streamcast.modelfile",
    "save": "streamcast.modelfile",
    "load_numpy": "streamcast.modelparts",
    "LearnConfig": "streamcast.stream.config",
    "read_series": "streamcast.reading",
    "Observations": "streamcast.stream.engine",
    "StreamConfig": "streamcast.stream.engine",
    "StreamState": "streamcast.stream.engine",
    "stream": "streamcast.stream.engine",
    "warm_up": "streamcast.stream.engine",
    "WatchConfig": "streamcast.stream.watch",
    "FitConfig": "streamcast.training",
    "fit": "streamcast.training",
}

__all__ = [
    "AlarmRate",
    "BacktestResult",
    "BatchReader",
    "DataError",
    "FitConfig",
    "Forecaster",
    "LearnConfig",
    "ModelFileError",
    "Observations",
    "StreamConfig",
    "StreamState",
    "StreamcastError",
    "StreamcastWarning",
    "UsageError",
    "WatchConfig",
    "alarm_rate",
    "backtest",
    "combine_scores",
    "fit",
    "fit_and_backtest",
    "fit_auto",
    "forecast",
    "forecast_batches",
    "forecast_source",
    "holdout",
    "load",
    "load_numpy",
    "read_batches",
    "read_series",
    "save",
    "stream",
    "warm_up",
    "with_source_names",
]


def __getattr__(name: str):
    if name == "__version__":
        value = globals()["__version__"] = _version()
        return value
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'streamcast' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def _version() -> str:
    """The installed version (importlib.metadata is slow to import: only asked for when needed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("streamcast")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


class _Package(types.ModuleType):
    """`streamcast.stream` and `streamcast.backtest` are the public functions, as they always were,
    although modules of the same names exist: importing such a module binds its name here, so
    these two names are properties that always give the function."""


def _function_named(name: str) -> property:
    def get(_package):
        return getattr(importlib.import_module(_PUBLIC[name]), name)

    def ignore(_package, _module) -> None:
        pass  # the import system naming the module; the public name stays the function

    return property(get, ignore)


for _name in ("backtest", "stream"):
    setattr(_Package, _name, _function_named(_name))

sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # what type checkers and editors see
    from streamcast.alarms import AlarmRate, alarm_rate
    from streamcast.autofit import fit_auto
    from streamcast.backtest import BacktestResult, backtest, combine_scores, fit_and_backtest, holdout
    from streamcast.batches import BatchReader, read_batches
    from streamcast.errors import DataError, ModelFileError, StreamcastError, StreamcastWarning, UsageError
    from streamcast.forecaster import Forecaster
    from streamcast.forecasting import forecast, forecast_batches, forecast_source, with_source_names
    from streamcast.modelfile import load, save
    from streamcast.modelparts import load_numpy
    from streamcast.reading import read_series
    from streamcast.stream.config import LearnConfig
    from streamcast.stream.engine import Observations, StreamConfig, StreamState, stream, warm_up
    from streamcast.stream.watch import WatchConfig
    from streamcast.training import FitConfig, fit
