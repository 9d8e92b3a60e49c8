"""Naive for the series the network serves badly (`fit --naive-fallback RATIO`).

A global network is right for most series and clearly wrong for a few: on M4 Hourly a handful of
series that repeat their day to a tenth of a degree get the network's small noise, which is many
times their own seasonal naive error, and those few set a large part of the average MASE. So
after training, every series whose validation error is over RATIO times that of seasonal naive on
the same points is served seasonal naive from then on. A series a little under the ratio (from
`BLEND_FROM` times it) is served a blend, its share of seasonal naive growing in step with its
ratio: on M4 Hourly's held-out points that lowered sMAPE on three seeds of three and MASE on two
(0.809 -> 0.802, 0.823 -> 0.817; 0.818 -> 0.819), where a lower hard ratio had not paid. The
choice is recorded in the model file by series id, and the forecast comes from the head's
carried window of recent values, so `forecast`, `backtest` and `stream` serve it alike, with no
new state.

With `--naive-share fitted` (the default) a series is also served the blend of network and naive
that did best on the validation part (`fitted_shares`), where that share is larger than the
ratio's: a combination can beat both forecasts it combines, even where the network is the better
of the two.

The naive is seasonal naive, or the last value (`--fallback-to best`) for a series where that did
better on the same validation points. Seasonal naive is no yardstick for a random walk, or on
coarse data shorter than two seasons: on ETTh1's weekly means (53 weeks to fit on, a season of
52) the network scored about twice the last value's error, and only one series fell back.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

NAIVE_FALLBACK = 1.5  # the default ratio (streamcast.training._late_validation)
BLEND_FROM = 0.8  # of the ratio: where a series' share of seasonal naive starts to grow from 0
FALLBACK_TO = ("best", "seasonal")  # the naive served: the better of seasonal and last value, or seasonal
NAIVE_SHARES = ("fitted", "ratio")  # how a series' share of naive is chosen (`--naive-share`)
PRIOR_HORIZONS = 8  # a fitted share is shrunk as if that many horizons had said 0 (`fitted_shares`)
MIN_SHARE = 0.02  # a fitted share below it is none: it would move the forecast by less than 2% of its gap
SHARE_GRID = 20  # steps from 0 to 1 in which a share is fitted to absolute errors


@dataclass(frozen=True)
class NaiveServing:
    """Which series of a run are served seasonal naive, and how to read it from their windows."""

    series: np.ndarray  # (S,) bool, in the order of the run's series
    season: int
    point: int  # the output that is the point forecast (the median of a quantile model)
    share: np.ndarray | None = None  # (S,) each series' share of seasonal naive; None: all 1
    last: np.ndarray | None = None  # (S,) bool: served the last value (naive) instead; None: none

    def share_of(self, rows: np.ndarray) -> np.ndarray | None:
        """The shares of these rows (of the run's series); None: each is served naive whole."""
        return None if self.share is None else self.share[rows]

    def seasons_of(self, rows: np.ndarray) -> int | np.ndarray:
        """How far back each of these rows repeats: the season, or 1 for the last value."""
        return self.season if self.last is None else np.where(self.last[rows], 1, self.season)


def naive_serving(
    naive: frozenset[str],
    blended: dict[str, float],
    series_ids: list[str],
    season: int,
    point: int,
    last: frozenset[str] = frozenset(),
) -> NaiveServing | None:
    """How a run of these series is served: naive for those in `naive`, a blend for those in
    `blended` (seasonal naive, or the last value for those in `last`); None when neither holds
    any of them."""
    if not (naive or blended):
        return None
    share = np.fromiter(
        (1.0 if s in naive else blended.get(s, 0.0) for s in series_ids), np.float64, len(series_ids)
    )
    chosen = share > 0
    if not chosen.any():
        return None
    at_last = np.fromiter((s in last for s in series_ids), bool, len(series_ids)) & chosen if last else None
    return NaiveServing(
        chosen,
        season,
        point,
        share if (share[chosen] < 1).any() else None,
        at_last if at_last is not None and at_last.any() else None,
    )


def steps_back(horizon: int, season: int | np.ndarray) -> np.ndarray:
    """(horizon,) how far before the last value each step's seasonal naive forecast lies: the
    value one season (or whole seasons) before the step; (R, horizon) for a season per row."""
    steps = np.arange(horizon)
    if isinstance(season, np.ndarray):
        season = season[:, None]
    return season * (steps // season + 1) - 1 - steps


def naive_from_window(window: np.ndarray, horizon: int, season: int | np.ndarray) -> np.ndarray:
    """(..., ar) recent values -> (..., horizon) the seasonal naive forecast; `season` (R,) per
    row of a (R, ar) window (1: the last value)."""
    ar = window.shape[-1]
    if not isinstance(season, np.ndarray):
        return window[..., _window_positions(ar, horizon, min(max(int(season), 1), ar))]
    back = steps_back(horizon, np.clip(season, 1, ar))
    return np.take_along_axis(window, ar - 1 - back, axis=-1)


@lru_cache(maxsize=64)
def _window_positions(ar: int, horizon: int, season: int) -> np.ndarray:
    """Where in an `ar` window each step's seasonal naive value lies. Kept: `stream` reads it for
    every blended series at every tick, and making it took a quarter of serving the blend."""
    positions = ar - 1 - steps_back(horizon, season)
    positions.flags.writeable = False  # shared by every caller
    return positions


def naive_at(values: np.ndarray, starts: np.ndarray, origins: np.ndarray, horizon: int, season: int):
    """(R, horizon) the seasonal naive forecasts from `origins` (positions within the series that
    begin at `starts`), read straight from the values: what `naive_from_window` reads from the
    carried window, without building a window per origin. Before a series' first value the
    window holds zeros, and so does this."""
    return carried_at(values, starts, origins[:, None] - steps_back(horizon, season))


def carried_at(values: np.ndarray, starts: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(R, K) the values at positions `at` (R, K) within the series that begin at `starts` (R,),
    as a carried window holds them: zeros before a series' first value."""
    return np.where(at >= 0, values[starts[:, None] + at.clip(0)], values.dtype.type(0))


def serve_naive(
    outputs: np.ndarray,
    window: np.ndarray,
    season: int | np.ndarray,
    point: int,
    share: np.ndarray | None = None,
) -> np.ndarray:
    """(R, H, Q) network outputs -> the seasonal naive forecast from each row's (R, ar) window,
    with the network's quantiles moved along with its point forecast (the interval keeps its width).
    `share` (R,): each row's share of seasonal naive, the rest the network's (None: all naive).

    The quantiles are put in order first, as they are served (`Forecaster.point_and_quantiles`):
    shifted unordered, a crossing pair would be sorted past the point afterwards and the served
    median would no longer be seasonal naive."""
    return move_onto(outputs, naive_from_window(window, outputs.shape[-2], season), point, share)


def move_onto(
    outputs: np.ndarray, naive: np.ndarray, point: int, share: np.ndarray | None = None
) -> np.ndarray:
    """(R, H, Q) outputs, their quantiles in order, moved so that the point is `naive` (R, H), or
    `share` (R,) of the way from the network's point to it."""
    outputs = in_order(outputs)
    own = outputs[..., point : point + 1]
    target = naive[..., None].astype(outputs.dtype, copy=False)
    if share is not None:
        target = toward_naive(own, target, share[:, None, None])
    return outputs - own + target


def toward_naive(point: np.ndarray, naive: np.ndarray, share: np.ndarray) -> np.ndarray:
    """`share` of the way from the network's `point` to `naive` (all three broadcast alike; the
    share compared in its own precision): naive exactly where the share is whole, the point
    exactly where it is none. What serving moves a blended series to, and what the interval is
    calibrated around."""
    blend = point + share.astype(point.dtype) * (naive - point)
    return np.where(share >= 1, naive, np.where(share > 0, blend, point))


def served_point(outputs: np.ndarray, point: int) -> np.ndarray:
    """(R, H, Q) network outputs -> (R, H) the point forecast as served: a quantile model's
    outputs put in order first (`Forecaster.point_and_quantiles`), then its median."""
    return in_order(outputs)[..., point]


def in_order(y: np.ndarray) -> np.ndarray:
    """(..., Q) outputs with their quantiles in order: `y` itself where they already are, as a
    calibrated interval's always are. Sorting three numbers at a time cost `stream` a tenth of its
    time; the check, one column against the next, costs a twentieth of a sort."""
    q = y.shape[-1]
    if q < 2:
        return y
    flat = y.reshape(-1, q)
    if all(np.greater_equal(flat[:, k + 1], flat[:, k]).all() for k in range(q - 1)):
        return y
    return np.sort(y, axis=-1)


def badly_served(
    point: np.ndarray,
    targets: np.ndarray,
    naive: np.ndarray,
    rows_per_series: np.ndarray,
    ratio: float,
    last: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(S,) each series' share of naive: 1 where its validation error is over `ratio` times
    naive's, growing from 0 at `BLEND_FROM` x `ratio` up to it, else 0; and (S,) bool whether that
    naive is the last value, where `last` is given and did better than seasonal naive.

    The served point forecasts (R, H), the targets (R, H; NaN where a step falls outside the
    validation part) and the seasonal naive forecasts (R, H) are at the validation origins, each
    series' `rows_per_series` of them in turn (`last`: the last value's forecasts from them); a
    series with no target keeps the network.
    """
    known, per_series, scored = _by_series(targets, rows_per_series)

    def total(forecast: np.ndarray) -> np.ndarray:
        return per_series(np.where(known, np.abs(forecast - targets), 0.0))

    total_network, total_naive = total(point), total(naive)
    at_last = np.zeros(len(rows_per_series), dtype=bool)
    if last is not None:
        total_last = total(last)
        at_last = total_last < total_naive
        total_naive = np.minimum(total_naive, total_last)
    full = scored & (total_network > ratio * total_naive)
    start = BLEND_FROM * ratio
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(total_naive > 0, total_network / total_naive, np.inf)
        share = np.clip((relative - start) / (ratio - start), 0.0, 1.0)
    blended = scored & ~full & np.isfinite(relative) & (relative > start)
    # Exactly at the ratio is not over it: the largest blend short of naive whole.
    share = np.where(full, 1.0, np.where(blended, np.minimum(share, np.nextafter(1.0, 0.0)), 0.0))
    return share, at_last & (share > 0)


def _by_series(targets: np.ndarray, rows_per_series: np.ndarray):
    """What `badly_served` and `fitted_shares` both score by: which steps of the (R, H) targets
    lie inside the validation part, a sum per series of (R, H) values (each series'
    `rows_per_series` rows in turn), and (S,) whether a series has any step to score."""
    known = ~np.isnan(targets)
    series = np.repeat(np.arange(len(rows_per_series)), rows_per_series)

    def per_series(values: np.ndarray) -> np.ndarray:
        return np.bincount(series, values.sum(axis=-1, dtype=np.float64), minlength=len(rows_per_series))

    return known, per_series, per_series(known) > 0


def fitted_shares(
    point: np.ndarray,
    targets: np.ndarray,
    naive: np.ndarray,
    rows_per_series: np.ndarray,
    squared: bool,
    horizons: float,
    last: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(S,) each series' share of naive that gives the blend its lowest validation loss (squared
    or absolute errors, as the fit's loss), shrunk towards 0 by `horizons / (horizons +
    PRIOR_HORIZONS)`, and (S,) bool whether that naive is the last value (where `last` is given
    and its blend, at the share served, did better than seasonal naive's). `horizons`: the
    validation steps of a series over the horizon; the other arguments as `badly_served`'s.

    A combination of forecasts is often better than either, and the ratio's ramp blends only a
    series the network serves worse than naive. On ETTh1's seven columns the network and the last
    value, each a little better than the other on different stretches, did best about half and
    half on one column: fitted on the fit's own validation part, the shares lowered the MSE of
    the held-out part by about 2% on ETTh1's and ETTm1's seven columns. A share fitted on few
    horizons follows their noise (on one horizon, M4 Hourly's, it did worse than the ramp; on
    ETTm1's oil temperature 1-3% worse from 8 horizons), hence the shrinking, a prior worth
    `PRIOR_HORIZONS` horizons that says 0; a share under `MIN_SHARE` is none (the model file
    then lists only the series that a blend moves). Squared: the closed form, clipped to [0, 1];
    absolute: the best of a grid.
    """
    known, per_series, scored = _by_series(targets, rows_per_series)
    count = len(rows_per_series)
    shrink = horizons / (horizons + PRIOR_HORIZONS)

    def loss(errors: np.ndarray) -> np.ndarray:
        return errors * errors if squared else np.abs(errors)

    error = np.where(known, point - targets, 0.0)
    alone = per_series(loss(error))

    def blend(toward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The share towards `toward` as served (fitted, shrunk, none under the minimum) and
        the blend's total loss at it, per series."""
        gap = np.where(known, toward - point, 0.0)
        if squared:
            along, size = per_series(error * gap), per_series(gap * gap)
            # A gap that is rounding next to the error leaves the share to chance: none.
            moves = (size > 1e-12 * alone) & np.isfinite(size)
            with np.errstate(divide="ignore", invalid="ignore"):
                share = np.clip(np.where(moves, -along / size, 0.0), 0.0, 1.0)
        else:
            grid = np.linspace(0.0, 1.0, SHARE_GRID + 1)
            totals = np.stack([per_series(loss(error + w * gap)) for w in grid])  # (grid, S)
            share = grid[totals.argmin(axis=0)]  # the smallest among equals: the network on a tie
        share = share * shrink
        share = np.where(scored & (share >= MIN_SHARE) & np.isfinite(share), share, 0.0)
        # Compared at the shares served: a naive whose best blend is good only unshrunk loses.
        served = np.repeat(share, rows_per_series).astype(gap.dtype)[:, None]
        total = per_series(loss(error + served * gap))
        return share, np.where(share > 0, total, alone)

    share, total = blend(naive)
    at_last = np.zeros(count, dtype=bool)
    if last is not None:
        share_last, total_last = blend(last)
        at_last = total_last < total
        share = np.where(at_last, share_last, share)
    return share, at_last & (share > 0)
