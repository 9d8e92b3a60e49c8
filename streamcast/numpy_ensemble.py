"""An ensemble's inference in numpy (`streamcast.model.EnsembleForecaster` in eval mode), members
side by side in the state, for `stream` without torch (`numpy_net` mirrors one network).

Members of one config (the default: three LSTMs that differ only by seed) run as one computation:
each weight stacked on a leading member axis, so every step is one batched matrix product and one
set of elementwise operations for all members, not one per member. One line at a time the
network's Python and numpy calls are most of its cost: the stack cut one step of the default
model from 214 to 153 µs (README, Benchmarks). numpy's batched product runs each member's
slice through the same kernel as a member alone, so the forecasts are the same
(tests/test_numpy_net.py checks them against the members one by one and against torch).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from streamcast.fallback import in_order
from streamcast.netconfig import COMBINES, ModelConfig, member_weights
from streamcast.numpy_net import (
    STEPS,
    Features,
    HeadRead,
    NumpyForecaster,
    State,
    WindowRead,
    checked,
    read_head,
    smoothed_lag_sets,
    weight_shapes,
)


@dataclass(frozen=True)
class MemberFeatures:
    """An ensemble's features: each member's, indexed together."""

    members: tuple[Features, ...]

    def __getitem__(self, index) -> MemberFeatures:
        # Members that share the carried window hold the same array: index (copy) it once.
        windows: dict[int, np.ndarray] = {}
        picked = []
        for f in self.members:
            window = None
            if f.window is not None:
                window = windows.setdefault(id(f.window), f.window[index])
            ahead = None if f.ahead is None else f.ahead[index]
            picked.append(Features(f.hidden[index], window, ahead))
        return MemberFeatures(tuple(picked))


@dataclass(frozen=True)
class StackedFeatures:
    """Features of members run stacked (`StackedMembers`): their top hidden states on a leading
    member axis (members, ..., hidden_size), and the window they share (..., ar)."""

    hidden: np.ndarray
    window: np.ndarray

    def __getitem__(self, index) -> StackedFeatures:
        at = index if isinstance(index, tuple) else (index,)
        return StackedFeatures(self.hidden[(slice(None), *at)], self.window[index])


class StackedMembers:
    """Members of one config as one network whose every weight has a leading member axis: a
    step is one batched product (members, B, H) @ (members, H, gates) and one pass of each
    elementwise operation, where the members in turn took as many of each as there are members.
    For a shared window, no conv and no inputs known ahead (`stackable`)."""

    def __init__(self, members: tuple[NumpyForecaster, ...]) -> None:
        self.config = members[0].config
        arrays = [m.serving_arrays() for m in members]
        self._layers = [
            dataclasses.replace(
                layers[0],
                w_ih=np.stack([layer.w_ih for layer in layers]),
                bias=np.stack([layer.bias for layer in layers])[:, None],
                w_hh=np.stack([layer.w_hh for layer in layers]),
                b_hn=None if layers[0].b_hn is None else np.stack([layer.b_hn for layer in layers])[:, None],
            )
            for layers in zip(*(a[0] for a in arrays), strict=True)
        ]
        w0, b0, w2 = (np.stack(ws) for ws in zip(*(a[1] for a in arrays), strict=True))
        self._head = (w0, b0[:, None], w2, np.stack([a[2] for a in arrays])[:, None])
        self._ar = np.stack([a[3] for a in arrays])  # (members, ar, horizon)
        # Smoothed lags differ by member (each learned its rates): their inputs are stacked too.
        self._smoothings = [m.smoothing for m in members] if members[0].smoothing is not None else None

    @staticmethod
    def stackable(configs: list[ModelConfig]) -> bool:
        c = configs[0]
        same = all(other == c for other in configs)
        return same and c.ar > 0 and c.conv <= 1 and c.known == 0 and c.cell != "segrnn"

    def encode_read(self, read: WindowRead, parts: list[State]) -> tuple[StackedFeatures, list[State]]:
        """Every member over the read window; `parts`: each member's (h, [c]), (B, layers, H)
        each, as `NumpyForecaster.encode_read` takes them; the new ones alike."""
        stacked = [np.stack(kind) for kind in zip(*parts, strict=True)]  # (members, B, layers, H)
        finals = [np.empty_like(kind) for kind in stacked]
        x, steps, shared = read.x, STEPS[self.config.cell], self._smoothings is None
        if not shared:
            x = self._member_inputs(read)
        for k, layer in enumerate(self._layers):
            xp = _stacked_linear(
                x, layer.w_ih, layer.bias, shared=shared and k == 0
            )  # (members, B, T, gates)
            x, final = steps(layer, xp, *(kind[:, :, k] for kind in stacked))
            for into, part in zip(finals, final, strict=True):
                into[:, :, k] = part
        return StackedFeatures(x, read.windows), [tuple(f[m] for f in finals) for m in range(len(x))]

    def _member_inputs(self, read: WindowRead) -> np.ndarray:
        """(members, B, T, F): the inputs the members share, then each member's smoothed lags,
        as each member's `own_read` gives them."""
        keep = read.x.shape[-1]  # the inputs and the plain lags
        windows = read.windows[..., -self.config.net_reads :]
        sets = smoothed_lag_sets(windows, self._smoothings, read.spread)
        x = np.empty((len(sets), *read.x.shape[:-1], keep + 2), dtype=np.float32)
        x[..., :keep] = read.x
        for into, lags in zip(x, sets, strict=True):
            into[..., keep:] = lags
        return x

    def decode(self, features: StackedFeatures, read: HeadRead) -> np.ndarray:
        """-> (members, ..., horizon, outputs_per_step), as each member's `decode` gives it."""
        c, hidden = self.config, features.hidden
        size = hidden.shape[-1]
        head_in = np.empty((*hidden.shape[:-1], size + read.shape.shape[-1]), dtype=np.float32)
        # The hidden state and the window side by side, as each member reads them; one window for all.
        head_in[..., :size] = hidden
        head_in[..., size:] = read.shape
        w0, b0, w2, b2 = self._head
        z = _stacked_linear(head_in, w0, b0)
        y = _stacked_linear(np.maximum(z, 0, out=z), w2, b2)
        if read.spread is not None:
            y *= read.spread
        y = y.reshape(*hidden.shape[:-1], c.horizon, c.outputs_per_step)
        return y + _stacked_linear(features.window, self._ar, shared=True)[..., None]


def _stacked_linear(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, shared: bool = False
) -> np.ndarray:
    """x (members, ..., in), or (..., in) the same for every member where `shared`, @ w
    (members, in, out) [+ b (members, 1, out)] -> (members, ..., out): each member's slice is the
    product `numpy_net._linear` takes for that member alone."""
    members, _, out = w.shape
    lead = x.shape[:-1] if shared else x.shape[1:-1]
    y = (x.reshape(-1, x.shape[-1]) if shared else x.reshape(members, -1, x.shape[-1])) @ w
    if b is not None:
        y += b
    return y.reshape(members, *lead, out)


class NumpyEnsemble:
    """`model.EnsembleForecaster` in eval mode: members side by side in the state, members with
    the same window carrying it once, last; the forecast is their mean or median."""

    def __init__(
        self,
        configs: list[ModelConfig],
        weights: dict[str, np.ndarray],
        combine: str,
        mean_weights: tuple[float, ...] | None = None,
    ) -> None:
        if combine not in COMBINES:
            raise ValueError(f"an ensemble combines by {' or '.join(COMBINES)}, not {combine!r}")
        if len({(c.input_size, c.horizon, c.quantiles) for c in configs}) != 1:
            raise ValueError("ensemble members must share inputs, horizon and quantiles")
        expected = {f"members.{i}.{k}": s for i, c in enumerate(configs) for k, s in weight_shapes(c).items()}
        checked(weights, expected)
        self.combine = combine
        self.weights = member_weights(mean_weights, len(configs))
        self.config = configs[0]
        self.members = tuple(NumpyForecaster(c, _member_weights(weights, i)) for i, c in enumerate(configs))
        self._shared_window = (
            len({(c.ar, c.net_reads, c.season, c.lag_inputs) for c in configs}) == 1 and configs[0].ar > 0
        )
        drop = 1 if self._shared_window else 0
        self._state_sizes = [len(m.init_state(1)) - drop for m in self.members]
        self._same_head = len({c.head_scale for c in configs}) == 1
        self.stacked = StackedMembers(self.members) if StackedMembers.stackable(configs) else None

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f"members.{i}.{k}": v for i, m in enumerate(self.members) for k, v in m.state_dict().items()}

    def init_state(self, batch: int) -> State:
        states = [m.init_state(batch) for m in self.members]
        if not self._shared_window:
            return tuple(s for state in states for s in state)
        return (*(s for state in states for s in state[:-1]), states[0][-1])

    def _split_state(self, state: State) -> list[State]:
        """Each member's part of the state (without the shared window, which is the last part)."""
        parts, at = [], 0
        for size in self._state_sizes:
            parts.append(tuple(state[at : at + size]))
            at += size
        return parts

    def __call__(self, x: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        features, state = self.encode(x, state)
        return self.decode(features), state

    def encode(self, x: np.ndarray, state: State) -> tuple[MemberFeatures | StackedFeatures, State]:
        """Each member over x, stacked or in turn; a shared window is read once and carried on once."""
        x = np.asarray(x, dtype=np.float32)
        member_states = self._split_state(state)
        parts = zip(self.members, member_states, strict=True)
        if not self._shared_window:
            pieces = [m.encode(x, part) for m, part in parts]
            return MemberFeatures(tuple(f for f, _ in pieces)), tuple(p for _, s in pieces for p in s)
        read = self.members[0].read_shared(x, state[-1])
        if self.stacked is not None:
            features, new_parts = self.stacked.encode_read(read, member_states)
            return features, (*(p for part in new_parts for p in part), read.carried)
        pieces = [m.encode_read(m.own_read(read), part) for m, part in parts]
        new_state = [p for _, s in pieces for p in s[:-1]]
        return MemberFeatures(tuple(f for f, _ in pieces)), (*new_state, read.carried)

    def decode_members(self, features: MemberFeatures | StackedFeatures) -> np.ndarray:
        """-> (..., members, horizon, outputs_per_step); a shared window read alike is read once."""
        if isinstance(features, StackedFeatures):
            read = read_head(features.window[..., -self.config.net_reads :], self.config.head_scale)
            return np.ascontiguousarray(np.moveaxis(self.stacked.decode(features, read), 0, -3))
        read = None
        window = features.members[0].window
        if self._shared_window and self._same_head and window is not None:
            read = read_head(window[..., -self.config.net_reads :], self.config.head_scale)
        pieces = zip(self.members, features.members, strict=True)
        return np.stack([m.decode(f, read) for m, f in pieces], axis=-3)

    def decode(self, features: MemberFeatures | StackedFeatures) -> np.ndarray:
        members = self.decode_members(features)
        if self.combine == "median":
            return median_of_members(members)
        return mean_of_members(members, self.weights)


def _member_weights(weights: dict[str, np.ndarray], member: int) -> dict[str, np.ndarray]:
    """A member's weights from an ensemble's `state_dict()`, named as a single network's."""
    prefix = f"members.{member}."
    return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}


def mean_of_members(y: np.ndarray, weights: tuple[float, ...] | None = None) -> np.ndarray:
    """(..., N, H, Q) -> (..., H, Q): the mean over members (weighted by `weights`), each
    member's quantiles in order."""
    if weights is None:
        return in_order(y).mean(axis=-3)
    return (in_order(y) * np.asarray(weights, dtype=y.dtype)[:, None, None]).sum(axis=-3)


def median_of_members(y: np.ndarray) -> np.ndarray:
    """(..., N, H, Q) -> (..., H, Q): the median over members (the mean of the middle two for
    even N), each member's quantiles in order first."""
    ordered = np.sort(in_order(y), axis=-3)
    n = y.shape[-3]
    return (ordered[..., (n - 1) // 2, :, :] + ordered[..., n // 2, :, :]) / 2


def numpy_network(
    configs: list[ModelConfig],
    weights: dict[str, np.ndarray],
    combine: str | None = None,
    mean_weights: tuple[float, ...] | None = None,
) -> NumpyForecaster | NumpyEnsemble:
    """The network of these configs with these weights (keyed as torch's `state_dict()`), ready
    to serve: one config gives a single network, several an ensemble (combined by the median
    when `combine` is None, as files from before the mean had it). Raises ValueError where the
    weights do not fit the configs."""
    if not configs:
        raise ValueError("a network needs at least one config")
    if len(configs) == 1:
        return NumpyForecaster(configs[0], weights)
    return NumpyEnsemble(list(configs), weights, combine if combine is not None else "median", mean_weights)


NumpyNetwork = NumpyForecaster | NumpyEnsemble
"""Either numpy network: what `modelparts.load_numpy` serves and `stepping.run_series` walks."""
