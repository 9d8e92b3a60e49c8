"""Gradient health: is training exploding (norms, clipping) or vanishing (how far back it reaches)?

Full BPTT's gradients vanish or explode; these numbers let a user see which, epoch by epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

REACH_THRESHOLD = 0.01


class GradientHealth:
    """Pre-clip global gradient norms of one epoch's steps, and the steps that were skipped."""

    def __init__(self, clip: float) -> None:
        self.clip = clip
        self.norms: list[float] = []
        self.skipped = 0

    def record(self, norm: float) -> None:
        self.norms.append(norm)

    def record_skip(self) -> None:
        """A non-finite loss or gradient: the step is not taken, so the weights stay sound."""
        self.skipped += 1

    @property
    def median(self) -> float:
        return float(np.median(self.norms)) if self.norms else math.nan

    @property
    def max(self) -> float:
        return float(np.max(self.norms)) if self.norms else math.nan

    @property
    def clipped_share(self) -> float:
        if not self.norms or self.clip <= 0:
            return 0.0
        return float(np.mean(np.asarray(self.norms) > self.clip))


def reach_profile(net, x: torch.Tensor, state=None) -> np.ndarray:
    """|d hidden state at the last step / d input k steps back|, relative to k = 0, for k = 0..T-1.

    Measured through the recurrent memory only (the AR highway's direct path to recent inputs would
    hide vanishing), from a zero hidden state, so it shows what one chunk of BPTT can learn. `state`:
    where the chunk starts (None: `init_state`, an empty window too); training passes each lane's
    own window, as its first chunk sees it, since an empty window is one no forecast reads.
    """
    was_training = net.training
    net.eval()
    x = x.detach().clone().requires_grad_(True)
    features, _ = net.encode(x, net.init_state(x.shape[0]) if state is None else state)
    if features.hidden.shape[-1]:
        features.hidden[:, -1].sum().backward()
    else:  # a segrnn member has no hidden state: its forecast reads the window, its only path
        net.decode(features[:, -1]).sum().backward()
    net.zero_grad(set_to_none=True)
    net.train(was_training)
    per_step = x.grad.norm(dim=-1).mean(dim=0).flip(0).double().cpu().numpy()  # (T,) k = 0 is the last step
    return per_step / max(per_step[0], 1e-30)


REACH_LANES = 64  # lanes the reach is measured on: the first ones cut, series by series


def gradient_reach(net, table: torch.Tensor, lanes, config, start: Callable) -> int:
    """Steps back at which the gradient falls below 1% of its value at the last step (bptt = never).
    `start(which)`: the state lanes `which` start from (`training.lane_state`)."""
    take = min(len(lanes), REACH_LANES)
    width = min(config.bptt, int(lanes.lengths[:take].min()))
    rows = torch.from_numpy(lanes.rows[:take, :width])
    profile = reach_profile(net, table[rows], start(np.arange(take)))
    below = np.flatnonzero(profile < REACH_THRESHOLD)
    return int(below[0]) if len(below) else width
