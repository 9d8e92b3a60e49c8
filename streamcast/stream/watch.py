"""Watching a stream: each arriving observation scored against the one-step forecast made for it.

A series' forecast at time t says what t + 1 should be. When the series' next observation lands
exactly there, its error is that forecast's miss, and its score is the error in units of the
series' recent error spread: an exponentially weighted mean absolute error (over about `span`
scored observations, bias-corrected so the first few count fully), times sqrt(pi/2) so that for
normal errors it reads as standard deviations. The spread is carried per series, like the hidden
state, and checkpointed with it.

An observation is an anomaly when
- the model has quantiles: it lies outside the model's outermost predicted interval stretched from
  its own level to `z` standard deviations (for 0.1/0.9 quantiles, z 4 stretches it 3.1 times);
- the model has none: its score is beyond `z`, once at least `MIN_SCORED` errors set the spread.
A warming-up series is never flagged. The error an anomaly adds to the spread is clipped to
`z` spreads, so a spike does not blind the watch for long, while a lasting level shift (the
errors stay large) still widens it.

An observation after a gap, a reset or a restart without a pending forecast is not scored
(error and score are null); a series' first scored observation has an error but no score yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np

from streamcast.errors import UsageError

MIN_SCORED = 10  # errors a point model's spread needs before its score can flag
NORMAL_SPREAD = math.sqrt(math.pi / 2)  # mean absolute deviation -> standard deviation
_NO_TIME = np.iinfo(np.int64).min


@dataclass(frozen=True)
class WatchConfig:
    """`stream --watch`: how far out an observation is an anomaly, and the spread's memory."""

    z: float = 4.0  # --anomaly-z
    span: int = 100  # scored observations the error spread mostly remembers

    def __post_init__(self) -> None:
        if not 0 < self.z < math.inf:
            raise UsageError("--anomaly-z must be a positive number of standard deviations")
        if self.span < 1:
            raise UsageError("the anomaly spread's span must be at least 1")


@dataclass
class Watched:
    """Per emitted observation: the one-step error, its score, and the flag (NaN: not scored)."""

    error: np.ndarray  # (R,) float64 in the series' own units
    score: np.ndarray  # (R,) float64, error / spread
    anomaly: np.ndarray  # (R,) bool

    def take(self, rows: np.ndarray) -> Watched:
        return Watched(self.error[rows], self.score[rows], self.anomaly[rows])

    @classmethod
    def concat(cls, parts: list[Watched]) -> Watched:
        """The parts one after the other (none: an empty batch's)."""
        if not parts:
            return cls(np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool))
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("error", "score", "anomaly")))


def watch_for(forecaster) -> SeriesWatch:
    """The watch of a stream served by `forecaster`. Only quantiles the network learnt decide a
    flag by the interval: the interval calibrated around a point model (`fit --intervals`) is an
    80% band set once on the validation part, and stretched to z standard deviations as a
    normal's it flagged 3.5% of clean hourly load at z 3 (heavier tails than a normal's), where
    the recent error spread carried per series flags 0.4%; so those models flag by the spread."""
    return SeriesWatch(forecaster.net.config.quantiles, forecaster.point_index)


class SeriesWatch:
    """Each series' pending one-step forecast and error spread, a row per stream series."""

    def __init__(self, quantiles: tuple[float, ...], point_index: int) -> None:
        self.point_index = point_index
        self.quantiles = quantiles
        self.bounds = (
            (quantiles.index(min(quantiles)), quantiles.index(max(quantiles))) if quantiles else (0, 0)
        )
        self.target = np.zeros(0, dtype=np.int64)  # the time the pending forecast is for
        self.pending = np.zeros((0, 3))  # point, low and high bound (a point model's are 0)
        self.spread = np.zeros((0, 2))  # EW weight, EW mean absolute error (not yet divided)
        self.scored = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.target)

    def ensure(self, n: int) -> None:
        """Rows for series up to `n`; new ones have nothing pending and no spread yet."""
        extra = n - len(self)
        if extra <= 0:
            return
        self.target = np.concatenate([self.target, np.full(extra, _NO_TIME, dtype=np.int64)])
        self.pending = np.concatenate([self.pending, np.zeros((extra, 3))])
        self.spread = np.concatenate([self.spread, np.zeros((extra, 2))])
        self.scored = np.concatenate([self.scored, np.zeros(extra, dtype=np.int64)])

    def keep(self, rows: list[int]) -> None:
        """Series evicted: only `rows` stay, in this order."""
        self.target, self.pending = self.target[rows], self.pending[rows]
        self.spread, self.scored = self.spread[rows], self.scored[rows]

    def score(
        self,
        config: WatchConfig,
        series: np.ndarray,
        times: np.ndarray,
        next_times: np.ndarray,
        values: np.ndarray,
        forecasts: np.ndarray,
        warming: np.ndarray,
        scales: np.ndarray,
    ) -> Watched:
        """Score observations of one batch (grouped by series, in time order within each) against
        their pending forecasts, then make each one's own one-step forecast the pending one.

        series, times, next_times (t + 1 period), values, warming, scales: (M,); forecasts (M, H, Q).
        """
        first = forecasts[:, 0, :]  # (M, Q): the one-step forecasts
        point = first[:, self.point_index].tolist()
        low, high = first[:, self.bounds[0]].tolist(), first[:, self.bounds[1]].tolist()
        alpha = 2.0 / (config.span + 1)
        stretch = self._stretch(config.z)
        z = config.z
        # The rules run per observation in plain Python on lists (numpy scalars are slow one at a
        # time): the batch's series are gathered once, and scattered back at the end.
        held, local = np.unique(series, return_inverse=True)
        target = self.target[held].tolist()
        pending = self.pending[held].tolist()
        weight, total = self.spread[held, 0].tolist(), self.spread[held, 1].tolist()
        scored = self.scored[held].tolist()
        now, after, observed = times.tolist(), next_times.tolist(), values.tolist()
        warm, floor = warming.tolist(), (1e-6 * scales).tolist()
        error = [math.nan] * len(now)
        score = [math.nan] * len(now)
        anomaly = [False] * len(now)
        for m, j in enumerate(local.tolist()):
            if target[j] == now[m]:
                expected, lo, hi = pending[j]
                v = observed[m]
                e = v - expected
                w = weight[j]
                spread = max(total[j] / w * NORMAL_SPREAD if w else 0.0, floor[m])
                # The first error has no spread to be measured by yet: it only starts one.
                error[m], score[m] = e, e / spread if w else math.nan
                if not warm[m]:
                    anomaly[m] = (
                        abs(e / spread) > z and scored[j] >= MIN_SCORED
                        if stretch is None
                        else v < expected - (expected - lo) * stretch[0]
                        or v > expected + (hi - expected) * stretch[1]
                    )
                taken = min(abs(e), z * spread) if anomaly[m] else abs(e)
                weight[j] = (1 - alpha) * w + alpha
                total[j] = (1 - alpha) * total[j] + alpha * taken
                scored[j] += 1
            target[j] = after[m]
            pending[j] = (point[m], low[m], high[m])
        self.target[held] = target
        self.pending[held] = pending
        self.spread[held] = np.column_stack([weight, total])
        self.scored[held] = scored
        return Watched(np.array(error), np.array(score), np.array(anomaly, dtype=bool))

    def _stretch(self, z: float) -> tuple[float, float] | None:
        """How many times the outer quantiles' distances from the median reach z standard
        deviations, reading them as a normal's; None for a point model."""
        low, high = min(self.quantiles, default=0.5), max(self.quantiles, default=0.5)
        if not low < 0.5 < high:
            return None
        return z / -NormalDist().inv_cdf(low), z / NormalDist().inv_cdf(high)

    def to_tensors(self) -> dict[str, np.ndarray]:
        """Copies of the rows, for a state file (written while the watch goes on)."""
        return {
            "watch.target": self.target.copy(),
            "watch.pending": self.pending.copy(),
            "watch.spread": self.spread.copy(),
            "watch.scored": self.scored.copy(),
        }

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        """Take the rows a state file holds (a file written without --watch holds none); copies,
        so that the file's buffer is not kept alive by them."""
        if "watch.target" not in tensors:
            return
        self.target = tensors["watch.target"].copy()
        self.pending = tensors["watch.pending"].copy()
        self.spread = tensors["watch.spread"].copy()
        self.scored = tensors["watch.scored"].copy()


# Each watch tensor of a state file: its dtype and its shape after the row per series.
WATCH_TENSORS = {
    "watch.target": (np.dtype(np.int64), ()),
    "watch.pending": (np.dtype(np.float64), (3,)),
    "watch.spread": (np.dtype(np.float64), (2,)),
    "watch.scored": (np.dtype(np.int64), ()),
}


def check_watch_tensors(tensors: dict[str, np.ndarray], n: int) -> None:
    """All four watch tensors or none, each with a row per series; spreads that can be divided."""
    present = [name for name in WATCH_TENSORS if name in tensors]
    if not present:
        return
    if len(present) != len(WATCH_TENSORS):
        raise ValueError("the anomaly watch's tensors are incomplete")
    for name, (dtype, rest) in WATCH_TENSORS.items():
        tensor = tensors[name]
        if tensor.dtype != dtype or tensor.shape != (n, *rest):
            raise ValueError(f"tensor {name!r} is {tensor.dtype} {tensor.shape}, not {dtype} {(n, *rest)}")
    spread = tensors["watch.spread"]
    if (
        not bool(np.isfinite(spread).all())
        or bool((spread < 0).any())
        or bool((tensors["watch.scored"] < 0).any())
    ):
        raise ValueError("an anomaly spread is negative or not finite")


def anomalies_only(batch):
    """The rows of a StreamBatch that are anomalies (for --only-anomalies); others are dropped."""
    if batch.watched is None:
        return batch
    rows = np.flatnonzero(batch.watched.anomaly)
    return replace(
        batch,
        series_ids=[batch.series_ids[r] for r in rows.tolist()],
        times=batch.times[rows],
        lines=batch.lines[rows],
        values=batch.values[rows],
        warming_up=batch.warming_up[rows],
        watched=batch.watched.take(rows),
    )
