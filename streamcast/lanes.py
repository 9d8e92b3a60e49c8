"""Lay series out in lanes for stateful truncated-BPTT training.

As in PyTorch's word_language_model `batchify`, every lane is a contiguous stretch of one series,
walked in consecutive chunks with the hidden state carried between them. Unlike `batchify`, a lane
never crosses from one series into the next (their states have nothing to say to each other), and
a lane that starts mid-series first replays `warmup` earlier steps with the loss masked, so its
state is not cold when its loss starts counting, and its window starts full (`window_rows`).
Lanes are independent rows, so under torchrun each process makes the lanes of its own series
(`streamcast.dataparallel` lays them out as one process would).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Lanes:
    """Row indices into the flat input array, one row of `rows` per lane."""

    rows: np.ndarray  # (N, L) int64 index of the input row at each lane step; padding repeats a row
    loss_mask: np.ndarray  # (N, L) bool: this step's H targets are known and it is not warm-up
    lengths: np.ndarray  # (N,) real steps per lane
    origins: np.ndarray  # (N,) the row where each lane's series begins

    def __len__(self) -> int:
        return len(self.rows)


MIN_UPDATES_PER_EPOCH = 64


def effective_batch_size(train_lengths: np.ndarray, batch_size: int, bptt: int) -> int:
    """`batch_size` lanes, or fewer when the data is small, so that an epoch still makes at least
    MIN_UPDATES_PER_EPOCH optimizer steps (one long series would otherwise give one or two)."""
    total = int(train_lengths.sum())
    return int(np.clip(total // (bptt * MIN_UPDATES_PER_EPOCH), 1, batch_size))


def lane_length_for(train_lengths: np.ndarray, batch_size: int, bptt: int) -> int:
    """Long enough to keep state flowing, short enough to fill a batch of lanes."""
    total = int(train_lengths.sum())
    length = max(bptt * 4, -(-total // max(1, batch_size)))
    return -(-length // bptt) * bptt


def make_lanes(
    offsets: np.ndarray, train_lengths: np.ndarray, horizon: int, lane_length: int, warmup: int
) -> Lanes:
    """Cut each series' training part into lanes of `lane_length` loss steps (plus warm-up)."""
    starts, stops, loss_starts, origins = [], [], [], []
    for i, n in enumerate(train_lengths.tolist()):
        last_origin = n - 1 - horizon  # the last step whose H targets lie in the training part
        for begin in range(0, last_origin + 1, lane_length):
            end = min(begin + lane_length, last_origin + 1)
            first = max(0, begin - warmup)
            starts.append(offsets[i] + first)
            stops.append(offsets[i] + end)
            loss_starts.append(offsets[i] + begin)
            origins.append(offsets[i])
    starts_a, stops_a, loss_a, origins_a = (
        np.asarray(a, dtype=np.int64) for a in (starts, stops, loss_starts, origins)
    )
    lengths = stops_a - starts_a
    width = int(lengths.max()) if len(lengths) else 0
    steps = np.arange(width, dtype=np.int64)
    rows = starts_a[:, None] + steps[None, :]  # (N, L)
    real = steps[None, :] < lengths[:, None]
    loss_mask = real & (rows >= loss_a[:, None])
    rows = np.where(real, rows, (stops_a - 1)[:, None])
    return Lanes(rows, loss_mask, lengths, origins_a)


def window_rows(last: np.ndarray, origins: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(B,) rows and the rows where their series begin -> (B, size): the rows of the `size` steps
    up to each row, oldest first, and which of them lie in its series (the others are before its
    start: zeros, as a series' first steps are served); those outside point at the origin.

    A lane's window must start as serving's stands at that step (its rows up to the step before
    the lane's first), and so must a window drawn for a segrnn member (`windowbatches`). The warm-up replays only
    `warmup` steps (one BPTT chunk), far fewer than a window of weeks: started from zeros, the
    window of a lane starting mid-series held zeros for most of its first `size` steps, a
    series' start that serving never shows there (18% of the training steps on ETTh1's and ETTm1's
    seven columns)."""
    before = last[:, None] - size + 1 + np.arange(size)  # (B, size)
    inside = before >= origins[:, None]
    return np.where(inside, before, origins[:, None]), inside


def lanes_per_series(train_lengths: np.ndarray, horizon: int, lane_length: int) -> np.ndarray:
    """How many lanes `make_lanes` cuts from each series (they come series by series)."""
    origins = np.maximum(train_lengths - horizon, 0)  # steps whose H targets lie in the training part
    return -(-origins // lane_length)


def loss_chunks(lanes: Lanes, bptt: int) -> np.ndarray:
    """(N,) how many of each lane's `bptt`-step chunks hold a loss step (a warm-up chunk holds none)."""
    mask = lanes.loss_mask
    chunks = -(-mask.shape[1] // bptt)
    padded = np.zeros((len(lanes), chunks * bptt), dtype=bool)
    padded[:, : mask.shape[1]] = mask
    return padded.reshape(len(lanes), chunks, bptt).any(-1).sum(-1)
