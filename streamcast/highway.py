"""Where the linear highway starts: seasonal naive, or the least-squares forecast from the window.

The highway (`RecurrentForecaster.ar`) maps the last `ar` values straight to the forecast, and
the recurrent part learns corrections to it. Started as seasonal naive it is right for data that
repeats its season (M4 Hourly); on data that drifts (ETT's oil temperature) the least-squares
linear forecast from the window, as NLinear fits it, scores 12-27% lower MSE on the validation
part than the whole trained network did from a naive start, and Adam does not find it in 30
epochs. The least-squares fit is one solve of an `ar` x `ar` system, so `--ar-start auto` makes
both and keeps the one that scores better on the fit's own validation part.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from streamcast.distributed import Cluster
from streamcast.model import AR_STARTS as MODEL_STARTS
from streamcast.model import seasonal_naive_weights

AR_STARTS = ("auto", *MODEL_STARTS)
RIDGE = 0.01  # of the mean diagonal: the fit hardly moved between 0.001 and 0.1 on ETT validation
POOLED_UNIT_FLOOR = 0.05  # naive units pooled by `choose_start`, in "spread"-scaled units
MAX_WINDOWS = 200_000  # windows in the least-squares sums; a larger data set is strided
BLOCK = 4096  # windows copied at a time


def ridge_weights(
    values: np.ndarray,
    offsets: np.ndarray,
    train_lengths: np.ndarray,
    ar: int,
    horizon: int,
    cluster: Cluster | None = None,
    units: np.ndarray | None = None,
) -> np.ndarray | None:
    """(horizon, ar) highway weights: the ridge fit of the next `horizon` values on the last `ar`,
    both taken relative to the last value (NLinear), over every window of the training parts.

    Relative to the last value, so that a series' level does not enter the fit and the weights
    carry over to levels not seen; the map is still linear in the window, so it is the
    highway's own weight. None when no series is long enough for a whole window and horizon.
    `units`: each series' windows divided by its own (`naive_units`) before pooling, so that the
    series weigh alike whatever their scaling (a series' scale does not change its own fit).
    """
    counts = np.maximum(train_lengths - ar - horizon + 1, 0)
    total = int(counts.sum()) if cluster is None else int(cluster.sum([counts.sum()])[0])
    if total == 0:
        return None
    stride = max(1, -(-total // MAX_WINDOWS))
    gram, cross = np.zeros((ar, ar)), np.zeros((ar, horizon))
    for i, (start, length) in enumerate(zip(offsets[:-1].tolist(), train_lengths.tolist(), strict=True)):
        if length < ar + horizon:
            continue
        part = values[start : start + length].astype(np.float64)
        if units is not None and units[i] > 1e-12:
            part /= units[i]
        windows = sliding_window_view(part, ar + horizon)[::stride]  # (n, ar + horizon), a view
        for block in range(0, len(windows), BLOCK):  # a block at a time: memory stays small
            relative = windows[block : block + BLOCK] - windows[block : block + BLOCK, ar - 1 : ar]
            x, y = relative[:, :ar], relative[:, ar:]
            with np.errstate(invalid="ignore", over="ignore"):  # checked once, below
                gram += x.T @ x
                cross += x.T @ y
    if cluster is not None:
        both = cluster.sum(np.concatenate([gram, cross], axis=1))
        gram, cross = both[:, :ar], both[:, ar:]
    if not (np.isfinite(gram).all() and np.isfinite(cross).all()):
        return None  # values too extreme to square: the naive start, and training says the rest
    ridge = RIDGE * max(float(np.trace(gram)) / ar, 1e-12)
    w = np.linalg.solve(gram + ridge * np.eye(ar), cross)  # (ar, horizon)
    weights = w.T.copy()
    weights[:, -1] += 1.0 - w.sum(axis=0)  # x_last * (1 - sum w) puts the level back
    return weights.astype(np.float32)


def naive_units(
    values: np.ndarray, offsets: np.ndarray, train_lengths: np.ndarray, season: int
) -> np.ndarray:
    """(S,) each series' in-sample seasonal naive error over its training part (MASE's
    denominator); 0 where there is none to take."""
    units = np.zeros(len(train_lengths))
    for i, (start, length) in enumerate(zip(offsets[:-1].tolist(), train_lengths.tolist(), strict=True)):
        lag = season if length > season else 1
        if length > lag:
            part = values[start : start + length].astype(np.float64)
            units[i] = np.abs(part[lag:] - part[:-lag]).mean()
    return units


def validation_error(
    weights: np.ndarray,
    values: np.ndarray,
    offsets: np.ndarray,
    positions: list[np.ndarray],
    units: np.ndarray,
    squared: bool,
    reach: int = 0,
) -> tuple[float, int]:
    """The summed error of a highway alone at the validation origins, each series' in units of
    its in-sample seasonal naive error (`naive_units`; squared for MSE), and how many series
    it covers.

    In those units every series counts alike: pooled in the data's own units, the few most
    volatile series of M4 chose least squares, which then served the smooth ones a third worse.
    Origins without `reach` values (at least a whole window) before them are left out, so that
    windows of several lengths are scored on the same origins.
    """
    ar, horizon = weights.shape[1], weights.shape[0]
    total, count = 0.0, 0
    for start, origins, unit in zip(offsets[:-1].tolist(), positions, units.tolist(), strict=True):
        origins = origins[origins >= max(ar, reach) - 1]
        if not len(origins) or unit <= 1e-12:
            continue
        rows = start + origins[:, None] + np.arange(-ar + 1, horizon + 1)  # (n, ar + horizon)
        block = values[rows].astype(np.float64)
        error = (block[:, :ar] @ weights.T.astype(np.float64) - block[:, ar:]) / unit
        total += float((error**2).mean() if squared else np.abs(error).mean())
        count += 1
    return total, count


def choose_start(
    requested: str,
    values: np.ndarray,
    offsets: np.ndarray,
    train_lengths: np.ndarray,
    val_positions: list[np.ndarray],
    windows: tuple[int, ...],
    horizon: int,
    season: int,
    squared: bool,
    cluster: Cluster | None = None,
    naive_pooled: bool = False,
) -> tuple[str, torch.Tensor | None, int]:
    """The start `--ar-start` asks for and its weights (None keeps the network's own seasonal
    naive start), and the window: `windows[0]`, or the longest of `windows` for least squares.

    Given several windows, least squares fits each, and the highway is the mean of those fits
    (one linear map over the longest window): choosing a length on the fit's own validation part
    was noise-led. On ETT the lengths' scores there differed by 0.3-2%, and the choice took a
    week on ETTh1 where the mean of a week's and a fortnight's fits scored 1.2% (7 columns) and
    6.6% (oil temperature) lower on the held-out part, and lower on all four ETT tasks. A single
    window is kept only where it scores `MEAN_MARGIN` lower than the mean (a shape that repeats
    beyond the shorter window, which the mean would half forget); `auto` then keeps seasonal
    naive unless least squares beats it. Data too short for a longer window keeps the shorter.

    `naive_pooled`: the series pooled in their own seasonal naive units, not in their scaled
    ones. With "spread" scaling (equal spreads) ETTm1's seven columns fitted a highway 4% worse
    alone than with "mean" (which weighs them by their spread against their level); pooled in
    naive units it did 1% better than the better of the two, and the whole model 6% better than
    pooled in scaled units (0.3852 -> 0.3615, validation, seed 0).
    """
    ar = windows[0]
    if ar == 0 or requested == "naive":
        return "naive", None, ar
    units = naive_units(values, offsets, train_lengths, season)
    # A series that repeats its season to rounding would outweigh all the others: its unit is
    # floored at a tenth of its spread ("spread" scaling puts every standard deviation at 0.5).
    pooled = np.maximum(units, POOLED_UNIT_FLOOR) if naive_pooled else None
    fitted = [
        (w, ridge_weights(values, offsets, train_lengths, w, horizon, cluster, pooled)) for w in windows
    ]
    fitted = [(w, r) for w, r in fitted if r is not None]
    if not fitted:
        return "naive", None, ar
    candidates = [("ridge", w, r) for w, r in fitted]
    if len(fitted) > 1:
        candidates.append(("mean", *mean_of_fits(fitted)))
    if requested == "auto":
        candidates.insert(0, ("naive", ar, seasonal_naive_weights(ar, horizon, season).numpy()))
    if len(candidates) > 1:
        for reach in sorted({w for _, w, _ in candidates}, reverse=True):
            scoring = [c for c in candidates if c[1] <= reach]
            flat = [
                x
                for _, _, weights in scoring
                for x in validation_error(weights, values, offsets, val_positions, units, squared, reach)
            ]
            if cluster is not None:
                flat = cluster.sum(flat).tolist()
            means = [t / n if n else float("inf") for t, n in zip(flat[::2], flat[1::2], strict=True)]
            if min(means) < float("inf"):
                candidates = [_preferred(scoring, means)]
                break
        else:
            candidates = candidates[:1]
    kind, window, weights = candidates[0]
    if kind == "naive":
        return "naive", None, window
    if window < ar:  # a shorter fit is read from the default window, which the network reads whole
        window, weights = ar, padded(weights, ar)
    return "ridge", torch.from_numpy(weights), window


MEAN_MARGIN = 0.05  # how much lower a single window must score than the mean of the fits


def network_window(ar: int, window: int) -> int:
    """How much of a `window` chosen from `highway_windows(ar)` the network reads (the head and
    the lag inputs; 0: all of it): at most twice `ar`, as before the highway took four times it.
    Reading four times the window the network did worse where its highway did better: ETTm1's
    seven columns 0.3595 -> 0.3825 MSE on the validation part, ETTh1's oil temperature 0.0906 ->
    0.0921, seeds 0-2."""
    return 2 * ar if window > 2 * ar > 0 else 0


def highway_windows(ar: int) -> tuple[int, ...]:
    """The lengths a default least-squares highway averages its fits over: half, one, two and
    four times the default window `ar` (the first: the window kept by a seasonal naive start).

    Each length suits other stretches of the data; their mean beat the mean of one and two
    windows, fitted and scored as `choose_start` pools them on ETT's validation parts, on all
    four tasks or level with it (the highway alone, held-out MSE: ETTh1 7 columns -1.4%, oil
    temperature 0.0%; ETTm1 -1.7% and -1.0%), where the half alone, or the four times alone,
    added to the two lengths had gained on some tasks and lost on others.
    """
    if ar <= 0:
        return (ar,)
    return tuple(dict.fromkeys([ar, *(w for w in (ar // 2, 2 * ar, 4 * ar) if w >= 2)]))


def mean_of_fits(fitted: list[tuple[int, np.ndarray]]) -> tuple[int, np.ndarray]:
    """The mean of (horizon, window) highway weights as one map over the longest window: each
    fit reads the newest values of the window, so it is padded with zeros on the older side."""
    window = max(w for w, _ in fitted)
    total = np.zeros((fitted[0][1].shape[0], window))
    for _, weights in fitted:
        total += padded(weights, window)
    return window, (total / len(fitted)).astype(np.float32)


def padded(weights: np.ndarray, window: int) -> np.ndarray:
    """(horizon, w) highway weights as a map over a longer `window`: zeros for its older values."""
    out = np.zeros((weights.shape[0], window), dtype=weights.dtype)
    out[:, window - weights.shape[1] :] = weights
    return out


def _preferred(scoring: list[tuple[str, int, np.ndarray]], means: list[float]) -> tuple[str, int, np.ndarray]:
    """Of the scored candidates: the best least-squares one, the mean of the fits unless a single
    window scores MEAN_MARGIN lower; then seasonal naive where it scores as well or better."""
    ridge = [i for i, c in enumerate(scoring) if c[0] != "naive"]
    naive = [i for i, c in enumerate(scoring) if c[0] == "naive"]
    if not ridge:
        return scoring[naive[0]]
    best = min(ridge, key=lambda i: means[i])  # the first of equals: the shorter window
    mean = [i for i in ridge if scoring[i][0] == "mean"]
    if mean and means[best] >= (1 - MEAN_MARGIN) * means[mean[0]]:
        best = mean[0]
    if naive and means[naive[0]] <= means[best]:
        return scoring[naive[0]]
    return scoring[best]
