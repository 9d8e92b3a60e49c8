"""A segrnn member's training batches drawn at random from every lane step (`--segment-batches`).

A segrnn member has no state beside its window: its forecast at a step is a function of the
`--ar` values up to it, the same in `fit`, `forecast` and `stream`. So it need not walk lanes in
chunks as a recurrent cell must; it may train on windows drawn from anywhere, each batch from all
over the data, as SegRNN itself trains. The window is the one serving holds at that step: the
series' values before it, zeros before the series' start (`lanes.window_rows`, as a lane's
window starts). Drawn so, a segrnn member's errors differ from those of one that walks lanes, and an
ensemble of one of each gained on ETT's seven columns (README, the levers table).
"""

from __future__ import annotations

import numpy as np
import torch

from streamcast.dataparallel import GlobalLanes
from streamcast.lanes import Lanes, window_rows
from streamcast.model import Features, RecurrentForecaster

SEGMENT_BATCHES = ("mixed", "lanes", "random")


def member_batches(requested: str, cells: tuple[str, ...] | list[str]) -> list[str]:
    """Each member's batches: `lanes` for a cell that carries a state, and for a segrnn member
    `--segment-batches`, or under `mixed` the segrnn members in turn, the first on lanes (so a
    single segrnn network trains as it always did), the second on random windows."""
    batches, segrnn = [], 0
    for cell in cells:
        if cell != "segrnn":
            batches.append("lanes")
            continue
        segrnn += 1
        batches.append(requested if requested != "mixed" else ("lanes" if segrnn % 2 else "random"))
    return batches


def loss_steps(lanes: Lanes) -> tuple[np.ndarray, np.ndarray]:
    """Every step the loss scores (its H targets in the training part, past the warm-up), lane by
    lane in time order: (P,) the input row and (P,) the row where its series begins."""
    mask = lanes.loss_mask
    return lanes.rows[mask], np.broadcast_to(lanes.origins[:, None], mask.shape)[mask]


def epoch_draw(rng: np.random.Generator, steps: int, stride: int) -> np.ndarray:
    """The positions (into `loss_steps`) an epoch trains on, in batch order: as many as the lanes'
    every `stride`th step, so an epoch costs what a strided lane epoch does."""
    return rng.permutation(steps)[: max(1, steps // stride)]


def windows_per_batch(lanes_per_batch: int, bptt: int, stride: int) -> int:
    """As many windows as a batch of lanes scores in one chunk: `--batch-size` lanes, each
    `bptt / stride` of them."""
    return lanes_per_batch * max(1, bptt // stride)


def windows_at(values: torch.Tensor, rows: np.ndarray, origins: np.ndarray, ar: int) -> torch.Tensor:
    """(B,) rows -> (B, ar): the last `ar` scaled values up to each row, oldest first, zeros before
    its series' start, as serving's window holds them there (`lanes.window_rows`)."""
    before, inside = window_rows(rows, origins, ar)
    window = values[torch.from_numpy(before).to(values.device)]
    return torch.where(torch.from_numpy(inside).to(values.device), window, torch.zeros_like(window))


def window_forecasts(net: RecurrentForecaster, windows: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """(B, ar) windows and (B, F) the input rows at their steps -> (B, 1, horizon, outputs_per_step):
    the segrnn forecast from each, the one `decode` gives at that step of a lane (with the inputs
    known ahead, where the model reads them)."""
    c = net.config
    ahead = inputs[:, None, c.known_at : c.known_at + c.known * c.horizon] if c.known else None
    return net.decode(Features(windows.new_zeros(len(windows), 1, 0), windows[:, None, :], ahead))


def global_steps(lengths: np.ndarray, firsts: np.ndarray) -> np.ndarray:
    """(G + 1,) where each global lane's loss steps start in one process's `loss_steps` order
    (the lane's steps from `firsts` to `lengths`), the last entry their count."""
    return np.concatenate([[0], np.cumsum(lengths - firsts)])


def mine(
    layout: GlobalLanes, starts: np.ndarray, picked: np.ndarray, rank: int
) -> tuple[np.ndarray, np.ndarray]:
    """Of one process's positions `picked` (`starts`: `global_steps` of the layout), those whose
    lane this rank holds: (its own lane, the step within it), in batch order."""
    lane = np.searchsorted(starts, picked, side="right") - 1
    ours = layout.owner[lane] == rank
    lane, picked = lane[ours], picked[ours]
    return layout.local[lane], layout.firsts[lane] + picked - starts[lane]
