"""How much of an ensemble's mean its segrnn members get, fitted on the validation part.

An LSTM and two segrnn members mixed equally gained 3.8% on ETTh1's seven columns (validation,
seeds 0-2) but cost 1.1% on its oil temperature alone, where the LSTM's least-squares highway is
hard to beat. Their errors differ by data set, so the share of the mean that goes to each kind is
chosen on the validation part, as the highway's start and the naive fallback are: one number per
model, on a grid of twelfths, so that a few thousand validation points have little to overfit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SHARES = tuple(i / 12 for i in range(13))


def segment_share(
    step_outputs: torch.Tensor, segment_outputs: torch.Tensor, score: Callable[[torch.Tensor], float]
) -> tuple[float, list[float]]:
    """The share of the mean for the segrnn members' mean (against the other members' mean)
    whose blend of the two validation forecasts scores lowest, and every share's score."""
    scores = [score((1 - s) * step_outputs + s * segment_outputs) for s in SHARES]
    best = min(range(len(SHARES)), key=scores.__getitem__)
    return SHARES[best], scores


def share_weights(cells: list[str], share: float) -> tuple[float, ...]:
    """Each member's weight in the mean: `share` split among the segrnn members, the rest among
    the others."""
    segments = sum(c == "segrnn" for c in cells)
    return tuple(share / segments if c == "segrnn" else (1 - share) / (len(cells) - segments) for c in cells)
