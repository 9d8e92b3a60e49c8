"""streamcast: forecast time series with stateful recurrent networks, in batch and on streams."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("streamcast")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

from streamcast.autofit import fit_auto  # noqa: E402
from streamcast.backtest import BacktestResult, backtest, combine_scores, fit_and_backtest, holdout  # noqa: E402
from streamcast.batches import BatchReader, read_batches  # noqa: E402
from streamcast.errors import DataError, ModelFileError, StreamcastError, UsageError  # noqa: E402
from streamcast.forecaster import Forecaster  # noqa: E402
from streamcast.forecasting import forecast, forecast_batches, forecast_source  # noqa: E402
from streamcast.modelfile import load, save  # noqa: E402
from streamcast.online import LearnConfig  # noqa: E402
from streamcast.reading import read_series  # noqa: E402
from streamcast.stream.engine import Observations, StreamConfig, StreamState, stream, warm_up  # noqa: E402
from streamcast.training import FitConfig, fit  # noqa: E402

__all__ = [
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
    "UsageError",
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
    "read_batches",
    "read_series",
    "save",
    "stream",
    "warm_up",
]
