"""Forecast intervals for point models, calibrated on the validation part (split conformal).

A quantile head costs point accuracy (with `--quantiles 0.1,0.9`, one seed's M4 Hourly MASE rose
from 1.000 to 1.016, and three of the four ETT tasks' validation MSE rose, ETTh1 OT's from 0.129
to 0.142), so intervals by default cannot come from it.
Instead, after training, the errors of the served forecasts on the validation part are measured in
units of each origin's own recent variability, and their 10% and 90% points per horizon step
become the interval: the point forecast is untouched, and the interval holds the share of points
it claims on data like the validation part (split conformal prediction, as statsforecast's and
MAPIE's conformal intervals; normalised by a local scale, so a calm series gets a narrow interval
and a volatile one a wide one).

The unit is read from the window every model with `--ar` already carries: the mean absolute
change over one season within it (MASE's denominator, taken locally). So `forecast`, `backtest`
and `stream` widen each forecast from the window at hand, with no new state, and an interval
follows a series whose variability changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamcast.fallback import carried_at

INTERVALS = (0.1, 0.9)  # the default levels: an 80% interval
MIN_ERRORS = 20  # validation errors per horizon step below which no interval is calibrated
MIN_CHANGES = 4  # a window's own changes below which its unit is the typical one
UNIT_FLOOR = 1e-5  # in the model's scaled units: a window that never moved still has a width
# The calibrated offsets are widened by this factor (`--interval-widen`). The validation errors
# they come from are those of the epoch, fallback and blend chosen on the same points, and of
# forecasts made right after the training data, so they promise less than later forecasts miss:
# the 80% interval covered 72.8-77.5% of the points of five validation parts (M4 Hourly, ETT's
# four tasks); widened by 1.1, 76.3-80.9%. The highway over four window lengths left ETTh1's two
# tasks at 74.0% and 74.7% with 1.1 (all five 74.0-81.8%); 1.15 covers 76.1-83.1% (seed 0).
WIDEN = 1.15


def window_unit(window: np.ndarray, season: int, typical: float | None = None) -> np.ndarray:
    """(..., ar) recent values -> (...,) their mean absolute change over one season (one step
    where the window holds less than two seasons).

    A carried window starts as zeros, and a new series fills it from the right: the zeros before
    its first non-zero value are not its own, so only the changes after it count. Where fewer
    than a season of changes (or 4 steps') are its own, the unit is `typical` (the median unit
    of the validation part), or NaN without one: read from a few values and many zeros, it had
    made a young series' interval a fraction of its width.

    Worked in numpy: a stream's line asks for one row, where each of the dozen torch calls cost
    more than the arithmetic (a young row took 90 µs in torch, 22 µs here); training's calibration and every
    command serve through this one function, so their units agree to the bit.
    """
    x = window if window.dtype in (np.float32, np.float64) else window.astype(np.float32)
    ar = x.shape[-1]
    lag = season if ar > 2 * season else 1
    changes = np.abs(x[..., lag:] - x[..., :-lag])
    if ar - lag >= max(lag, MIN_CHANGES) and bool((x[..., 0] != 0).all()):
        # Every window is its series' own from its first value (a stream's usual case): the
        # same sum and count as below, without finding where each one's values begin.
        unit = changes.sum(axis=-1) / (ar - lag) + UNIT_FLOOR
        return np.asarray(unit, dtype=window.dtype)
    own = x != 0
    first = np.where(own.any(axis=-1), own.argmax(axis=-1), ar)  # (...,)
    counted = np.arange(ar - lag) >= first[..., None]  # (..., ar - lag)
    count = counted.sum(axis=-1)
    unit = (changes * counted).sum(axis=-1) / np.maximum(count, 1).astype(x.dtype) + UNIT_FLOOR
    fallback = np.nan if typical is None else typical
    unit = np.where(count >= max(lag, MIN_CHANGES), unit, fallback)
    return np.asarray(unit, dtype=window.dtype)


def units_at(
    values: np.ndarray,
    starts: np.ndarray,
    origins: np.ndarray,
    ar: int,
    season: int,
    typical: float | None = None,
) -> np.ndarray:
    """(R,) `window_unit` of the window each origin's forecast reads, straight from the values,
    zeros before a series' start as the carried window holds them; a block of rows at a time,
    so that long validation parts do not copy a whole window per origin at once."""
    units = np.empty(len(origins), dtype=values.dtype)
    back = np.arange(-ar + 1, 1)
    for block in range(0, len(origins), 4096):
        at = origins[block : block + 4096, None] + back  # (n, ar) positions within each series
        window = carried_at(values, starts[block : block + 4096], at)
        units[block : block + 4096] = window_unit(window, season, typical)
    return units


@dataclass(frozen=True)
class Intervals:
    """The calibrated interval: for each horizon step, where each level lies from the point
    forecast, in units of the window's seasonal change."""

    levels: tuple[float, ...]  # e.g. (0.1, 0.9); the point forecast is the 0.5 between them
    offsets: np.ndarray  # (horizon, len(levels))
    season: int
    typical: float | None = None  # the unit of a window with too few values of its own

    @property
    def quantiles(self) -> tuple[float, ...]:
        """The quantiles served: the levels and the point forecast as the median."""
        return tuple(sorted({*self.levels, 0.5}))

    def widen(self, point: np.ndarray, units: np.ndarray) -> np.ndarray:
        """(R, H, 1) point forecasts and (R,) units -> (R, H, Q) with the levels around the point.
        Steps past the calibrated horizon keep the last step's offsets."""
        steps = point.shape[-2]
        offsets = self.offsets.astype(point.dtype)
        if steps > len(offsets):
            offsets = np.concatenate([offsets, np.repeat(offsets[-1:], steps - len(offsets), axis=0)])
        around = point + offsets[:steps] * units.astype(point.dtype)[:, None, None]  # (R, H, K)
        median = self.quantiles.index(0.5)
        return np.concatenate([around[..., :median], point, around[..., median:]], axis=-1)

    def widen_from(self, point: np.ndarray, window: np.ndarray) -> np.ndarray:
        return self.widen(point, window_unit(window, self.season, self.typical))

    def to_meta(self) -> dict:
        meta = {"levels": list(self.levels), "offsets": self.offsets.tolist(), "season": self.season}
        return meta if self.typical is None else {**meta, "typical_unit": self.typical}

    @classmethod
    def from_meta(cls, meta: dict) -> Intervals:
        offsets = np.asarray(meta["offsets"], dtype=np.float64)
        return cls(tuple(meta["levels"]), offsets, int(meta["season"]), meta.get("typical_unit"))


def calibrate(
    errors: np.ndarray,
    levels: tuple[float, ...],
    season: int,
    typical: float | None = None,
    widen: float = 1.0,
) -> tuple[Intervals | None, str | None]:
    """The interval from validation errors (R, H), each already in its origin's unit (`typical`:
    the median of those units); or None and the reason when too few errors were measured.

    Each level is taken a little further out than its share, (n + 1) / n of its distance from the
    median: split conformal's finite-sample correction, so that a small validation part does not
    promise a narrower interval than it can back. Then every offset is multiplied by `widen`
    (`WIDEN` for `fit`'s default)."""
    counts = np.isfinite(errors).sum(axis=0)
    if errors.size == 0 or counts.min() < MIN_ERRORS:
        fewest = int(counts.min()) if errors.size else 0
        return None, f"{fewest} validation errors per step, fewer than {MIN_ERRORS}"
    n = float(counts.min())
    adjusted = [min(1.0, max(0.0, 0.5 + (q - 0.5) * (n + 1) / n)) for q in levels]
    offsets = np.nanquantile(errors, adjusted, axis=0).T  # (H, K)
    # Each level on its own side of the point: an interval never excludes its own forecast.
    below = np.array([q < 0.5 for q in levels])
    offsets[:, below] = np.minimum(offsets[:, below], 0.0)
    offsets[:, ~below] = np.maximum(offsets[:, ~below], 0.0)
    offsets = offsets * widen
    return Intervals(tuple(levels), offsets, season, typical), None
