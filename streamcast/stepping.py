"""Advance hidden states over observations: the one step that validation, forecast, backtest and
stream all share, so that every one of them serves the model exactly as training ran it.

The only serving code that knows the network's device: inputs, states and forecasts come in and go
out on the CPU, and move to the network's device (a GPU) only for the network's own work.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from streamcast.model import Network, State, concat_states, select_state


@torch.no_grad()
def advance(net: Network, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    """One call over (B, T, F) inputs: the forecasts at every step (B, T, H, Q) and the new state."""
    device = _device(net)
    y, state = net(x.to(device), _to(state, device))
    return y.to(x.device), _to(state, x.device)


@torch.no_grad()
def run_series(
    net: Network,
    inputs: np.ndarray,
    offsets: np.ndarray,
    positions: Sequence[np.ndarray],
    *,
    initial: State | None = None,
    series_batch: int = 256,
    time_chunk: int = 64,
) -> tuple[torch.Tensor, State]:
    """Run every series from its start (or from `initial`) to its end, batched across series.

    Returns the forecasts at the requested positions of each series, (R, H, Q) in the order of
    `positions`, and each series' state after its last step. Memory grows with `series_batch` x
    `time_chunk`, never with the number of forecasts or the length of the history. 256 series x 64
    steps measured fastest on one thread (2,000 series x 1,000 steps: 1.6x the speed of 2048 x 128
    for an ensemble of three LSTMs, 1.2x for one network): a chunk's activations stay in cache.
    """
    lengths = np.diff(offsets)
    order = np.argsort(-lengths, kind="stable")  # similar lengths share a batch
    counts = np.array([len(p) for p in positions], dtype=np.int64)
    out_start = np.concatenate([[0], np.cumsum(counts)])
    c = net.config
    outputs = torch.empty(int(out_start[-1]), c.horizon, c.outputs_per_step)
    final: list[State | None] = [None] * len(lengths)
    table = torch.from_numpy(inputs).to(_device(net))  # the forecasts come back to the CPU
    for b in range(0, len(order), series_batch):
        batch = order[b : b + series_batch]
        if initial is None:
            state = net.init_state(len(batch))
        else:
            state = _to(select_state(initial, torch.from_numpy(batch)), _device(net))
        wanted = [(positions[i], out_start[i]) for i in batch.tolist()]
        finals = _run_batch(net, table, offsets[batch], lengths[batch], wanted, state, outputs, time_chunk)
        for i, s in zip(batch.tolist(), finals, strict=True):
            final[i] = s
    return outputs, concat_states(final)  # type: ignore[arg-type]


def _run_batch(net, table, starts, lengths, wanted, state, outputs, time_chunk) -> list[State]:
    """Walk one batch of series through time; a series leaves the batch when its history ends."""
    final: list[State] = [()] * len(starts)
    active = np.arange(len(starts))
    t = 0
    while len(active):
        stop = min(t + time_chunk, int(lengths[active].min()))
        rows = starts[active][:, None] + np.arange(t, stop)[None, :]  # (B, T)
        hidden, state = net.encode(table[torch.from_numpy(rows)], state)  # Features (B, T, ...)
        pick_row, pick_step, pick_out = [], [], []
        for j, i in enumerate(active.tolist()):
            positions, first_out = wanted[i]
            hit = np.flatnonzero((positions >= t) & (positions < stop))
            if len(hit):
                pick_row.append(np.full(len(hit), j))
                pick_step.append(positions[hit] - t)
                pick_out.append(first_out + hit)
        if pick_row:
            rows_at = torch.from_numpy(np.concatenate(pick_row))
            steps_at = torch.from_numpy(np.concatenate(pick_step))
            decoded = net.decode(hidden[rows_at, steps_at]).to(outputs.device)
            outputs[torch.from_numpy(np.concatenate(pick_out))] = decoded
        done = lengths[active] == stop
        for j in np.flatnonzero(done).tolist():
            final[active[j]] = _to(select_state(state, slice(j, j + 1)), outputs.device)
        state = select_state(state, torch.from_numpy(np.flatnonzero(~done)))
        active = active[~done]
        t = stop
    return final


def _device(net: Network) -> torch.device:
    """Where the network's weights are: its inputs go there."""
    return next(net.parameters()).device


def _to(state: State, device: torch.device) -> State:
    return tuple(s.to(device) for s in state)
