"""`--val-size` by default: long enough to choose on, short enough to leave the newest data to train.

The validation part decides early stopping, the `--ar` highway's start, which series fall back
to naive and the interval's width, and it is never trained on. One horizon per series (the
default until 2026-11-29) is plenty where there are hundreds of series, but where there are a few
long ones it is a few dozen points, and those choices become noise: ETTh1's oil temperature alone
(horizon 96, validation protocol) scored MSE 0.1064 with 96 validation steps (and the fallback,
chosen on those few points, served it naive, which scores 0.137-0.140 there), 0.0925 with 432,
0.0912 with 864 and 0.0909 with 1,440; its seven columns 0.6836 at 96 and 0.6705 at 1,440; ETTm1's
seven 0.3724 at 96, 0.3672 at 2,286 and 0.3645 at 5,715. Where series are short, their
newest points are worth more as training data: M4 Hourly (652-912 points to fit on, horizon 48)
lost with twice the validation (MASE 0.802 -> 0.864 over its 414 series at 97 steps, 0.885 ->
1.009 over its first 150 at 107). So the part is sized to hold about VALIDATION_POINTS points
over all series, never under the horizon, and never over a fifth of what the shortest series
that trains has beyond its first KEPT points: short series keep one horizon, as before.
"""

from __future__ import annotations

import math

import numpy as np

from streamcast.distributed import Cluster
from streamcast.shortseries import needed_points

VALIDATION_POINTS = 40_000  # validation points over all series that the default aims for
KEPT = 1_000  # points of the shortest series that always train
LARGEST_SHARE = 5  # of the shortest series' points beyond KEPT, at most a fifth validates


def default_val_size(lengths: np.ndarray, horizon: int, cluster: Cluster | None = None) -> int:
    """The validation steps per series for series of these `lengths` (every rank's, under torchrun):
    VALIDATION_POINTS shared out over the series, within the horizon and a fifth of what the
    shortest series that trains has beyond its first KEPT points. In one process, series shorter than a horizon's validation are left out
    either way; under torchrun every series trains, so every one counts."""
    trained = lengths if cluster is not None else lengths[lengths >= needed_points(horizon, horizon)]
    count = float(len(trained))
    shortest = float(trained.min()) if len(trained) else math.inf
    if cluster is not None:
        count = float(cluster.sum([count])[0])
        shortest = float(cluster.min([shortest])[0])
    if not count:
        return horizon
    room = (int(shortest) - KEPT) // LARGEST_SHARE if math.isfinite(shortest) else 0
    return max(horizon, min(math.ceil(VALIDATION_POINTS / count), room))
