"""`--transform auto`: whether a data set's spread grows with its level, so that logs suit it.

Logs pay where series vary in proportion to their level (M4 Hourly's loads and traffic: sMAPE
-15% on validation), and cost where positive data moves by fixed amounts around a level far from
zero: ETTh1 with every column shifted by +30 to be positive scored validation MSE 5% worse on OT
and 2.5% worse on all seven columns in logs, because the log branch also trains on MAE and
measures the head in its window's spread (`choose_loss`, `choose_head_scale`). Positive values
alone cannot tell the two apart. Guerrero's (1993) method for the Box-Cox power, as R's
`forecast::BoxCox.lambda` uses it, can: cut each series into whole seasons and find the power
lambda for which each season's standard deviation over its mean^(1 - lambda) is most nearly
constant. Lambda near 0 says the spread grows with the level (logs), near 1 that it does not.

Written here in a few array operations rather than taken from a library: scipy's Box-Cox fits
lambda by likelihood, which judges the values' distribution, not the spread against the level,
and no dependency of streamcast has Guerrero's method.
"""

from __future__ import annotations

import numpy as np

LAMBDAS = np.linspace(-1.0, 2.0, 61)  # the powers tried, as forecast::BoxCox.lambda's range
LOG_BELOW = 0.5  # the median lambda under which `auto` takes logs
FLAT_LEVEL = 0.03  # std of a series' log season means under which its level is said not to move
MAX_SEASONS = 40  # the newest seasons of each series read: enough for one lambda, bounded cost
BLOCK = 100_000  # seasons measured at once


def series_lambdas(values: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, season: int) -> np.ndarray:
    """(S,) each series' Guerrero lambda over its first `lengths` values (from `offsets`); NaN
    where it has fewer than two whole seasons, a value that is not finite and positive, or no
    spread.

    A series whose level barely moves (its season means within a few percent of each other) has
    no say on logs, however its spread varies, and counts as lambda 1: a log is then nearly a
    linear map of its values, and the data's own units are the choice made for it everywhere else.
    """
    period = max(int(season), 2)
    counts = np.minimum(lengths // period, MAX_SEASONS).astype(np.int64)
    lambdas = np.full(len(lengths), np.nan)
    owners = np.repeat(np.arange(len(lengths)), counts)  # the series of each season measured
    if not len(owners):
        return lambdas
    first = np.cumsum(counts) - counts  # each series' first season in the list
    k = np.arange(len(owners)) - first[owners]  # 0 for its oldest season measured
    ends = offsets[:-1][owners] + lengths[owners]
    starts = ends - (counts[owners] - k) * period
    means = np.empty(len(owners))
    stds = np.empty(len(owners))
    for block in range(0, len(owners), BLOCK):
        rows = values[starts[block : block + BLOCK, None] + np.arange(period)].astype(np.float64)
        means[block : block + BLOCK] = rows.mean(axis=1)
        stds[block : block + BLOCK] = rows.std(axis=1, ddof=1)
    usable = np.isfinite(means) & np.isfinite(stds) & (means > 0)
    bad = np.bincount(owners, weights=(~usable).astype(np.float64), minlength=len(lengths)) > 0
    means = np.where(usable, means, 1.0)
    logs = np.log(means)
    # ratio[s, j] = std_s / mean_s ** (1 - lambda_j), in logs to stay finite
    ratios = np.exp(np.log(np.maximum(stds, 1e-300))[:, None] + logs[:, None] * (LAMBDAS - 1.0)[None, :])
    ratios = np.where((stds > 0)[:, None], ratios, 0.0)
    # Seasons are listed series by series: per-series sums are sums over runs of rows.
    kept = counts > 0
    heads = first[kept]
    n = counts[kept].astype(np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.add.reduceat(ratios, heads, axis=0) / n
        square = np.add.reduceat(ratios**2, heads, axis=0) / n
        variation = np.full((len(lengths), len(LAMBDAS)), np.nan)
        variation[kept] = np.sqrt(np.maximum(square - mean**2, 0.0) * n / np.maximum(n - 1, 1)) / mean
        level = np.add.reduceat(logs, heads) / n[:, 0]
        spread_of_level = np.full(len(lengths), np.inf)
        spread_of_level[kept] = np.sqrt(np.maximum(np.add.reduceat(logs**2, heads) / n[:, 0] - level**2, 0.0))
    decided = (counts >= 2) & ~bad & np.isfinite(variation).all(axis=1)
    lambdas[decided] = LAMBDAS[np.argmin(variation[decided], axis=1)]
    lambdas[decided & (spread_of_level < FLAT_LEVEL)] = 1.0
    return lambdas


def logs_suit(lambdas: np.ndarray) -> tuple[bool, float | None]:
    """Whether the series' median lambda says logs, and that median (None where no series had a
    say: then positive data goes into logs, as before this test)."""
    finite = lambdas[np.isfinite(lambdas)]
    if not finite.size:
        return True, None
    middle = float(np.median(finite))
    return middle < LOG_BELOW, middle
