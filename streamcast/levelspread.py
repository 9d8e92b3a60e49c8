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
    spread. Series are measured a block of about BLOCK seasons at a time, so that memory stays
    bounded however many there are.

    A series whose level barely moves (its season means within a few percent of each other) has
    no say on logs, however its spread varies, and counts as lambda 1: a log is then nearly a
    linear map of its values, and the data's own units are the choice made for it everywhere else.
    """
    period = max(int(season), 2)
    counts = np.minimum(lengths // period, MAX_SEASONS).astype(np.int64)
    lambdas = np.full(len(lengths), np.nan)
    ends = np.cumsum(counts)
    start = 0
    while start < len(lengths):
        stop = max(int(np.searchsorted(ends, ends[start] - counts[start] + BLOCK, side="right")), start + 1)
        lambdas[start:stop] = _lambdas(
            values, offsets[start:stop], lengths[start:stop], counts[start:stop], period
        )
        start = stop
    return lambdas


def _lambdas(
    values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, counts: np.ndarray, period: int
) -> np.ndarray:
    """`series_lambdas` for the series that begin at `starts`, each read over its newest `counts`
    whole seasons of `period` values."""
    lambdas = np.full(len(lengths), np.nan)
    owners = np.repeat(np.arange(len(lengths)), counts)  # the series of each season measured
    if not len(owners):
        return lambdas
    first = np.cumsum(counts) - counts  # each series' first season in the list
    k = np.arange(len(owners)) - first[owners]  # 0 for its oldest season measured
    at = starts[owners] + lengths[owners] - (counts[owners] - k) * period
    rows = values[at[:, None] + np.arange(period)].astype(np.float64)
    means, stds = rows.mean(axis=1), rows.std(axis=1, ddof=1)
    usable = np.isfinite(means) & np.isfinite(stds) & (means > 0)
    bad = np.bincount(owners, weights=(~usable).astype(np.float64), minlength=len(lengths)) > 0
    logs = np.log(np.where(usable, means, 1.0))
    kept = counts > 0
    heads = first[kept]
    n = counts[kept].astype(np.float64)
    level = np.zeros(len(lengths))
    level[kept] = np.add.reduceat(logs, heads) / n
    spread_of_level = np.full(len(lengths), np.inf)
    spread_of_level[kept] = np.sqrt(np.maximum(np.add.reduceat(logs**2, heads) / n - level[kept] ** 2, 0.0))
    # ratio[s, j] = std_s / mean_s ** (1 - lambda_j), in each series' own units (its largest
    # std and its mean level taken out: its ratios scale alike, so their variation is the same),
    # and so finite whatever the data's units.
    spreads = np.log(np.maximum(stds, 1e-300))
    top = np.zeros(len(lengths))
    top[kept] = np.maximum.reduceat(spreads, heads)
    exponent = (spreads - top[owners])[:, None] + (logs - level[owners])[:, None] * (LAMBDAS - 1.0)[None, :]
    ratios = np.exp(exponent)
    ratios = np.where((stds > 0)[:, None], ratios, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.add.reduceat(ratios, heads, axis=0) / n[:, None]
        square = np.add.reduceat(ratios**2, heads, axis=0) / n[:, None]
        variation = np.full((len(lengths), len(LAMBDAS)), np.nan)
        variation[kept] = (
            np.sqrt(np.maximum(square - mean**2, 0.0) * n[:, None] / np.maximum(n - 1, 1)[:, None]) / mean
        )
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
