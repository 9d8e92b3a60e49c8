"""Forecast accuracy metrics, as the M4 organisers define them. Pure numpy, no I/O.

Arrays are (..., H): every function averages over all the points it is given; callers that want
a per-step or per-series figure slice first.
"""

from __future__ import annotations

import numpy as np


def mae(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.mean(np.abs(y - yhat)))


def mse(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.mean((y - yhat) ** 2))


def rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.sqrt(mse(y, yhat)))


def smape(y: np.ndarray, yhat: np.ndarray) -> float:
    """Mean of 200·|y − ŷ| / (|y| + |ŷ|); a point where both are 0 counts as 0."""
    denom = np.abs(y) + np.abs(yhat)
    ratio = np.divide(
        2.0 * np.abs(y - yhat), denom, out=np.zeros(np.broadcast(y, yhat).shape), where=denom > 0
    )
    return float(100.0 * np.mean(ratio))


def mase_scale(history: np.ndarray, season: int) -> float:
    """In-sample mean |y_t − y_{t−season}| of one series: the denominator of its MASE."""
    if len(history) <= season:
        return float("nan")
    return float(np.mean(np.abs(history[season:] - history[:-season])))


def mase(y: np.ndarray, yhat: np.ndarray, scale: np.ndarray | float) -> float:
    """Mean absolute error in units of each series' in-sample seasonal-naive error.

    y, yhat: (S, H); scale: (S,) from `mase_scale`. Series with a zero scale are left out.
    """
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), y.shape[:-1])
    ok = scale > 0
    return float(np.mean(np.abs(y - yhat)[ok] / scale[ok][..., None]))


def pinball(y: np.ndarray, quantile_forecasts: np.ndarray, quantiles: tuple[float, ...]) -> float:
    """Mean pinball loss; quantile_forecasts is (..., H, Q)."""
    q = np.asarray(quantiles)
    error = y[..., None] - quantile_forecasts
    return float(np.mean(np.maximum(q * error, (q - 1) * error)))


def coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actual values inside [lower, upper]."""
    return float(np.mean((y >= lower) & (y <= upper)))
