"""Training losses on scaled values; pinball loss whenever the model emits quantiles."""

from __future__ import annotations

import torch

LOSSES = ("mae", "mse", "huber")
LOSS_CHOICES = ("auto", *LOSSES)
SERIES_WEIGHTS = ("equal", "mase")


def choose_loss(requested: str, transform: str, quantiles: tuple[float, ...] = ()) -> str:
    """`--loss auto`: MAE on logs, MSE on data left in its own units.

    In logs an absolute error is a relative one, which is what sMAPE and MASE score on positive,
    multiplicative data; a median forecast in logs is also the median in the data's units. Data
    that crosses zero (or holds zeros) stays in its units, and is mostly scored by squared error
    (the ETT and LTSF benchmarks), whose best forecast is the mean. There MSE training lowered
    the validation MSE on all four ETT tasks over 3 seeds (README, accuracy levers), and with
    MAE the recurrent part had made ETTh1's forecasts worse than the least-squares highway alone.
    A quantile model trains on the pinball loss whatever this says; its median is MAE's, so it
    stays `mae` (which also scores the highway's start by absolute error, as before).
    """
    if requested != "auto":
        return requested
    return "mae" if transform == "log" or quantiles else "mse"


def forecast_loss(
    y: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    loss: str,
    quantiles: tuple[float, ...],
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean loss over the masked steps: y (..., H, Q), target (..., H), mask (...) bool.

    The target broadcasts against y, so an ensemble's members (..., N, H, Q) share one (..., 1, H).
    """
    total, count = loss_terms(y, target, mask, loss, quantiles, weights)
    return total / count


def loss_terms(
    y: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    loss: str,
    quantiles: tuple[float, ...],
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`forecast_loss` as a sum and the count it divides by, so that processes holding parts of one
    batch can add theirs up and divide once: the loss, and its gradient, of the whole batch."""
    per_step = _per_step(y, target, loss, quantiles)
    picked = per_step[mask]
    if weights is None:
        return picked.sum(), picked.new_tensor(float(picked.numel()))
    # Weighted by series (mask-shaped weights); a members axis in per_step broadcasts over them.
    w = weights[mask]
    w = w.reshape(w.shape + (1,) * (picked.dim() - 1))
    return (picked * w).sum(), w.sum() * (picked.numel() // max(1, len(w)))


def _per_step(y: torch.Tensor, target: torch.Tensor, loss: str, quantiles: tuple[float, ...]) -> torch.Tensor:
    """The loss at each step (...), averaged over the horizon (and quantiles)."""
    target = target.expand(y.shape[:-1])
    if quantiles:
        q = y.new_tensor(quantiles)  # (Q,)
        error = target.unsqueeze(-1) - y  # (..., H, Q)
        per_step = torch.maximum(q * error, (q - 1) * error).mean(dim=(-1, -2))
    else:
        error = y[..., 0] - target  # (..., H)
        if loss == "mae":
            per_step = error.abs().mean(-1)
        elif loss == "mse":
            per_step = error.square().mean(-1)
        elif loss == "huber":
            per_step = torch.nn.functional.huber_loss(y[..., 0], target, reduction="none").mean(-1)
        else:  # "auto" is resolved by `choose_loss` before anything trains
            raise ValueError(f"unknown loss {loss!r}: expected one of {', '.join(LOSSES)}")
    return per_step
