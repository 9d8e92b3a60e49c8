"""The trained network's inference (eval mode) in numpy, so that `stream` can serve a model without
importing torch: torch takes 1.3 s to import, the stream's first forecast is due within 1.0 s.

A mirror of `streamcast.model`, formula for formula and in float32 like torch, with the same
weights (keyed as its `state_dict()`), the same state layout and the same features: the rest of
the serving code cannot tell the two apart. tests/test_numpy_net.py holds it to torch's numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from streamcast.netconfig import WINDOW_SCALE_FLOOR, ModelConfig

State = tuple[np.ndarray, ...]
"""(h, [c,] [conv,] [ar]), batch-first, exactly as `streamcast.model.State`."""

_GATES = {"rnn": 1, "rnn-relu": 1, "lstm": 4, "gru": 3, "segrnn": 3}  # segrnn: a GRU over segments


@dataclass(frozen=True)
class Features:
    """What `encode` hands `decode` at each step, as `model.Features`: the top hidden state
    (..., hidden_size), the last `ar` values (..., ar) as a strided view copied only where indexed,
    and the inputs known for the steps ahead (..., known * horizon)."""

    hidden: np.ndarray
    window: np.ndarray | None = None
    ahead: np.ndarray | None = None

    def __getitem__(self, index) -> Features:
        window = None if self.window is None else self.window[index]
        return Features(self.hidden[index], window, None if self.ahead is None else self.ahead[index])


@dataclass(frozen=True)
class WindowRead:
    """A chunk's inputs with the lag inputs added, the window at each step (B, T, ar) and the
    window carried on (B, ar); no window without `ar`; each window's spread (B, T, 1), the unit
    of its lag inputs, read once for the plain and the smoothed lags (`model.WindowRead`)."""

    x: np.ndarray
    windows: np.ndarray | None = None
    carried: np.ndarray | None = None
    spread: np.ndarray | None = None


@dataclass(frozen=True)
class HeadRead:
    """The window as the head reads it (`read_head`): its shape, and the spread that scales the
    head's output, if the head works in units of it."""

    shape: np.ndarray
    spread: np.ndarray | None = None


def weight_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every weight's name and shape in a torch `RecurrentForecaster` of this config."""
    c = config
    gates = _GATES[c.cell] * c.hidden_size
    shapes: dict[str, tuple[int, ...]] = {}
    if c.cell == "segrnn":  # streamcast.segments
        shapes["segments.embed.weight"] = (c.hidden_size, c.segment)
        shapes["segments.embed.bias"] = (c.hidden_size,)
        shapes["segments.rnn.weight_ih_l0"] = shapes["segments.rnn.weight_hh_l0"] = (gates, c.hidden_size)
        shapes["segments.rnn.bias_ih_l0"] = shapes["segments.rnn.bias_hh_l0"] = (gates,)
        shapes["segments.position"] = (-(-c.horizon // c.segment), c.hidden_size)
        shapes["segments.out.weight"] = (c.segment * c.outputs_per_step, c.hidden_size)
        shapes["segments.out.bias"] = (c.segment * c.outputs_per_step,)
        if c.known > 0:
            shapes["known"] = (c.known, c.horizon)
        return shapes
    if c.conv > 1:
        shapes["conv.weight"] = (c.hidden_size, c.rnn_input_size, c.conv)
        shapes["conv.bias"] = (c.hidden_size,)
    rnn_input = c.hidden_size if c.conv > 1 else c.rnn_input_size
    for k in range(c.num_layers):
        shapes[f"rnn.weight_ih_l{k}"] = (gates, rnn_input if k == 0 else c.hidden_size)
        shapes[f"rnn.weight_hh_l{k}"] = (gates, c.hidden_size)
        shapes[f"rnn.bias_ih_l{k}"] = (gates,)
        shapes[f"rnn.bias_hh_l{k}"] = (gates,)
    shapes["head.0.weight"] = (c.hidden_size, c.hidden_size + c.net_reads)
    shapes["head.0.bias"] = (c.hidden_size,)
    shapes["head.2.weight"] = (c.horizon * c.outputs_per_step, c.hidden_size)
    shapes["head.2.bias"] = (c.horizon * c.outputs_per_step,)
    if c.ar > 0:
        shapes["ar.weight"] = (c.horizon, c.ar)
    if c.known > 0:
        shapes["known"] = (c.known, c.horizon)
    if c.lag_inputs == "smoothed" and c.lag_count:
        shapes["lag_decay"] = (2,)
    return shapes


def checked(weights: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The weights as float32, once their names and shapes match the config: a file's header
    could describe another network than its weights."""
    missing = sorted(shapes.keys() - weights.keys())
    unexpected = sorted(weights.keys() - shapes.keys())
    if missing or unexpected:
        raise ValueError(f"the weights do not fit the config: missing {missing}, unexpected {unexpected}")
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    wrong = [f"{k} {a.shape} (expected {shapes[k]})" for k, a in arrays.items() if a.shape != shapes[k]]
    if wrong:
        raise ValueError(f"the weights do not fit the config: {', '.join(wrong)}")
    return arrays


@dataclass(frozen=True)
class _Layer:
    """One recurrent layer's weights, transposed for `x @ w` and with the rows of every sigmoid
    gate halved, so that one tanh serves all gates: sigmoid(a) = 0.5 + 0.5 * tanh(a / 2), and
    halving is exact in floating point."""

    w_ih: np.ndarray  # (input, gates * H)
    bias: np.ndarray  # (gates * H,): both biases, but the GRU's recurrent one of n
    w_hh: np.ndarray  # (H, gates * H)
    b_hn: np.ndarray | None  # (H,): the GRU's recurrent bias of n, which r scales
    scale: np.ndarray  # (gates * H,): 0.5 on a sigmoid gate, 1 on a tanh gate
    shift: np.ndarray  # (gates * H,): 0.5 on a sigmoid gate, 0 on a tanh gate


def _layer(weights: dict[str, np.ndarray], k: int, cell: str, hidden: int, prefix: str = "rnn") -> _Layer:
    halve = np.ones(_GATES[cell] * hidden, dtype=np.float32)
    if cell == "lstm":  # gates i, f, g, o: g alone is a tanh
        halve[: 2 * hidden] = halve[3 * hidden :] = 0.5
    elif cell == "gru":  # gates r, z, n: n alone is a tanh
        halve[: 2 * hidden] = 0.5
    b_ih, b_hh = weights[f"{prefix}.bias_ih_l{k}"], weights[f"{prefix}.bias_hh_l{k}"]
    b_hn = None
    if cell == "gru":
        b_hn = b_hh[2 * hidden :].copy()
        b_hh = np.concatenate([b_hh[: 2 * hidden], np.zeros(hidden, dtype=np.float32)])
    return _Layer(
        w_ih=np.ascontiguousarray((weights[f"{prefix}.weight_ih_l{k}"] * halve[:, None]).T),
        bias=(b_ih + b_hh) * halve,
        w_hh=np.ascontiguousarray((weights[f"{prefix}.weight_hh_l{k}"] * halve[:, None]).T),
        b_hn=b_hn,
        scale=halve,
        shift=0.5 * (halve != 1.0).astype(np.float32),
    )


def _rnn_steps(
    layer: _Layer, xp: np.ndarray, h: np.ndarray, act: Callable[..., np.ndarray]
) -> tuple[np.ndarray, State]:
    """nn.RNN over the projected inputs xp (..., B, T, H): h = act(xp + h W_hh), act in place.
    Any axes before B (an ensemble's members, `numpy_ensemble`) go along, the weights' with them."""
    out = np.empty(xp.shape, dtype=np.float32)  # (..., B, T, H)
    for t in range(xp.shape[-2]):
        pre = h @ layer.w_hh
        pre += xp[..., t, :]
        h = act(pre, out=pre)
        out[..., t, :] = h
    return out, (h,)


def _relu(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0, out=out)


def _lstm_steps(layer: _Layer, xp: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, State]:
    """nn.LSTM over the projected inputs xp (..., B, T, 4H), gates in torch's order i, f, g, o."""
    size = h.shape[-1]
    out = np.empty((*xp.shape[:-1], size), dtype=np.float32)  # (..., B, T, H)
    for t in range(xp.shape[-2]):
        gates = h @ layer.w_hh
        gates += xp[..., t, :]
        np.tanh(gates, out=gates)
        gates *= layer.scale  # the sigmoid gates from their halved rows' tanh
        gates += layer.shift
        i, f, g, o = (gates[..., j * size : (j + 1) * size] for j in range(4))
        c = f * c + i * g
        h = o * np.tanh(c)
        out[..., t, :] = h
    return out, (h, c)


def _gru_steps(layer: _Layer, xp: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, State]:
    """nn.GRU over the projected inputs xp (B, T, 3H), gates r, z, n with
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) and h' = (1 - z) * n + z * h."""
    size = h.shape[-1]
    out = np.empty((*xp.shape[:-1], size), dtype=np.float32)  # (..., B, T, H)
    for t in range(xp.shape[-2]):
        hh = h @ layer.w_hh  # (..., B, 3H)
        x_t = xp[..., t, :]
        rz = x_t[..., : 2 * size] + hh[..., : 2 * size]
        np.tanh(rz, out=rz)
        rz *= 0.5
        rz += 0.5
        n = hh[..., 2 * size :]
        n += layer.b_hn
        n *= rz[..., :size]
        n += x_t[..., 2 * size :]
        np.tanh(n, out=n)
        h = n + rz[..., size:] * (h - n)
        out[..., t, :] = h
    return out, (h,)


STEPS = {  # each cell's walk over the steps of a chunk
    "rnn": partial(_rnn_steps, act=np.tanh),
    "rnn-relu": partial(_rnn_steps, act=_relu),
    "lstm": _lstm_steps,
    "gru": _gru_steps,
}


def _linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """x (..., in) @ w (in, out) [+ b] as one matmul over every leading index."""
    y = x.reshape(-1, w.shape[0]) @ w
    if b is not None:
        y += b
    return y.reshape(*x.shape[:-1], w.shape[1])


def _steps_of(a: np.ndarray, size: int) -> np.ndarray:
    """(B, N, ...) -> (B, N - size + 1, ..., size): the last `size` rows at each step, a read-only
    view (numpy's as_strided took a tenth of a one-step `encode`)."""
    a = np.ascontiguousarray(a)
    strides = (a.strides[0], a.strides[1], *a.strides[2:], a.strides[1])
    shape = (a.shape[0], a.shape[1] - size + 1, *a.shape[2:], size)
    view = np.ndarray(shape, a.dtype, buffer=a, strides=strides)
    view.flags.writeable = False
    return view


def window_spread(windows: np.ndarray) -> np.ndarray:
    """(B, T, 1): each window's mean distance from its newest value (`model.window_spread`)."""
    distance = windows - windows[..., -1:]  # (B, T, ar)
    return np.abs(distance, out=distance).sum(axis=-1, keepdims=True) / windows.shape[-1] + WINDOW_SCALE_FLOOR


def _lags(windows: np.ndarray, season: int, spread: np.ndarray) -> np.ndarray:
    """(B, T, 2): each step's change since the step before and since one season back, in units
    of its window's `spread` (`model._lags`)."""
    size = windows.shape[-1]
    latest = windows[..., -1:]
    back = min(season, size - 1)
    lagged = windows[..., [size - 2, size - 1 - back]]  # (B, T, 2)
    return (latest - lagged) / spread


def smoothing_weights(decays: np.ndarray, size: int, season: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The level's and the profile's weights and the profile's positions (`model.smoothing_weights`)."""
    back = max(1, min(season, size - 1))
    phases = [size - 1 - back * j for j in range(1, (size - 1) // back + 1)]
    level = decays[0] ** np.arange(size - 2, -1, -1, dtype=np.float32)
    profile = decays[1] ** np.arange(len(phases), dtype=np.float32)
    return (level / level.sum())[:, None], (profile / profile.sum())[:, None], phases


def smoothed_lag_sets(windows: np.ndarray, smoothings: list[tuple], spread: np.ndarray) -> list[np.ndarray]:
    """(B, T, 2) for each `smoothing_weights` given (of the same phases): the change since the
    smoothed level and seasonal profile, in units of the windows' `spread` (`model.smoothed_lags`).
    The phases are read once for all, each set by the same operations as alone, so the same bits."""
    latest = windows[..., -1:]
    older, seasons = windows[..., :-1], windows[..., smoothings[0][2]]
    return [
        (latest - np.concatenate([older @ level, seasons @ profile], axis=-1)) / spread
        for level, profile, _ in smoothings
    ]


def read_head(window: np.ndarray, head_scale: str) -> HeadRead:
    """The window as the head reads it, relative to the newest value, and with
    `head_scale="window"` in units of its spread (`model.read_head`)."""
    shape = window - window[..., -1:]
    if head_scale != "window":
        return HeadRead(shape)
    spread = np.abs(shape).sum(axis=-1, keepdims=True) / shape.shape[-1] + WINDOW_SCALE_FLOOR  # (..., 1)
    shape /= spread
    return HeadRead(shape, spread)


class NumpyForecaster:
    """`model.RecurrentForecaster` in eval mode: (conv ->) RNN/LSTM/GRU -> head, with the `ar`
    highway and the `known` path."""

    def __init__(self, config: ModelConfig, weights: dict[str, np.ndarray]) -> None:
        self.config = c = config
        self._weights = checked(weights, weight_shapes(config))
        w = self._weights
        self._known = w["known"][..., None] if c.known > 0 else None  # (K, horizon, 1)
        self.smoothing = None  # the smoothed lags' weights (`smoothing_weights`), fixed with the rates
        if c.cell == "segrnn":
            self._segments = NumpySegments(c, w)
            return
        self._layers = [_layer(w, k, c.cell, c.hidden_size) for k in range(c.num_layers)]
        self._conv = self._conv_bias = None
        if c.conv > 1:  # (F * conv, H): rows in the order of a (F, conv) window flattened
            self._conv = np.ascontiguousarray(w["conv.weight"].reshape(c.hidden_size, -1).T)
            self._conv_bias = w["conv.bias"]
        self._head = (w["head.0.weight"].T.copy(), w["head.0.bias"], w["head.2.weight"].T.copy())
        self._head_bias = w["head.2.bias"]
        self._ar = w["ar.weight"].T.copy() if c.ar > 0 else None  # (ar, horizon)
        if "lag_decay" in w:
            decays = (1 / (1 + np.exp(-w["lag_decay"]))).astype(np.float32)
            self.smoothing = smoothing_weights(decays, c.net_reads, c.season)

    def state_dict(self) -> dict[str, np.ndarray]:
        return dict(self._weights)

    def serving_arrays(self) -> tuple[list[_Layer], tuple[np.ndarray, ...], np.ndarray, np.ndarray | None]:
        """The weights as serving reads them (transposed, sigmoid rows halved): the recurrent
        layers, the head's (w0, b0, w2), its last bias and the highway; what an ensemble stacks."""
        return self._layers, self._head, self._head_bias, self._ar

    def init_state(self, batch: int) -> State:
        """The state of a series never seen: zeros, laid out as torch's."""
        c = self.config
        if c.cell == "segrnn":  # its state is the window alone
            return (np.zeros((batch, c.ar), dtype=np.float32),)
        state = [np.zeros((batch, c.num_layers, c.hidden_size), dtype=np.float32)]
        if c.cell == "lstm":
            state.append(np.zeros((batch, c.num_layers, c.hidden_size), dtype=np.float32))
        if c.conv > 1:
            state.append(np.zeros((batch, c.conv - 1, c.rnn_input_size), dtype=np.float32))
        if c.ar > 0:
            state.append(np.zeros((batch, c.ar), dtype=np.float32))
        return tuple(state)

    def __call__(self, x: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """x: (B, T, input_size) -> forecasts (B, T, horizon, outputs_per_step) and the new state."""
        features, state = self.encode(x, state)
        return self.decode(features), state

    def encode(self, x: np.ndarray, state: State) -> tuple[Features, State]:
        """Advance the state over x (B, T, input_size): what the head needs at every step and
        the new state; the state given is left as it was."""
        parts = list(state)
        x = np.asarray(x, dtype=np.float32)
        read = self.read_window(x, parts.pop() if self.config.ar > 0 else None)
        return self.encode_read(read, tuple(parts))

    def read_window(self, x: np.ndarray, carried: np.ndarray | None) -> WindowRead:
        """The carried window advanced over x and the lag inputs read from it (`model.read_window`)."""
        return self.own_read(self.read_shared(x, carried))

    def read_shared(self, x: np.ndarray, carried: np.ndarray | None) -> WindowRead:
        """The window advanced over x and the plain lags, as every member sharing it reads them."""
        c = self.config
        if c.ar == 0:
            return WindowRead(x)
        history = np.concatenate([carried, x[..., 0]], axis=1)  # (B, ar + T)
        windows = _steps_of(history, c.ar)[:, 1:]  # (B, T, ar)
        if not c.lag_count:
            return WindowRead(x, windows, history[:, -c.ar :])
        read = windows[..., -c.net_reads :]  # what the network reads of it; the highway reads all
        spread = window_spread(read)
        x = np.concatenate([x, _lags(read, c.season, spread)], axis=-1)
        return WindowRead(x, windows, history[:, -c.ar :], spread)

    def own_read(self, read: WindowRead) -> WindowRead:
        """A shared read with this network's smoothed lags added (`model.own_read`)."""
        if self.smoothing is None:
            return read
        lags = smoothed_lag_sets(read.windows[..., -self.config.net_reads :], [self.smoothing], read.spread)
        return dataclasses.replace(read, x=np.concatenate([read.x, *lags], axis=-1))

    def encode_read(self, read: WindowRead, state: State) -> tuple[Features, State]:
        """`encode` from a read window; `state` is this network's state without the window."""
        c = self.config
        x, parts = read.x, list(state)
        ahead = x[..., c.known_at : c.known_at + c.known * c.horizon] if c.known else None
        if c.cell == "segrnn":  # nothing to step: no hidden state, the window carried on
            return Features(x[..., :0], read.windows, ahead), (read.carried,)
        conv_state = []
        if self._conv is not None:
            window = np.concatenate([parts.pop(), x], axis=1)  # (B, conv - 1 + T, F)
            x = self._convolve(window)
            conv_state = [window[:, -(c.conv - 1) :]]
        hidden, rnn_state = self._recur(x, parts)
        new_state = (*rnn_state, *conv_state, *(() if read.carried is None else (read.carried,)))
        return Features(hidden, read.windows, ahead), new_state

    def _convolve(self, window: np.ndarray) -> np.ndarray:
        """Conv1d then ReLU over (B, conv - 1 + T, F) -> (B, T, H): one matmul over every step's
        (F, conv) window, unfolded as the weight's rows are."""
        steps = _steps_of(window, self.config.conv)  # (B, T, F, conv), a view
        x = steps.reshape(*steps.shape[:2], self._conv.shape[0])  # (B, T, F * conv), a copy
        x = _linear(x, self._conv, self._conv_bias)
        return np.maximum(x, 0, out=x)

    def _recur(self, x: np.ndarray, parts: list[np.ndarray]) -> tuple[np.ndarray, State]:
        """The stacked recurrent layers over x (B, T, F): the top layer's outputs (B, T, H) and
        the final (h, [c]) as (B, num_layers, H) each. Each layer's input projection is one
        matmul over all steps, as torch's."""
        steps = STEPS[self.config.cell]
        finals = tuple(np.empty(p.shape, dtype=np.float32) for p in parts)  # (B, num_layers, H) each
        for k, layer in enumerate(self._layers):
            xp = _linear(x, layer.w_ih, layer.bias)  # (B, T, gates * H)
            x, final = steps(layer, xp, *(p[:, k] for p in parts))
            for into, part in zip(finals, final, strict=True):
                into[:, k] = part
        return x, finals

    def decode(self, features: Features, read: HeadRead | None = None) -> np.ndarray:
        """Features from `encode` (indexed or not) -> (..., horizon, outputs_per_step) scaled
        forecasts; `read`: the window as `read_head` gives it, where an ensemble read it once."""
        y = self._decode(features, read)
        if features.ahead is None:
            return y
        c = self.config
        ahead = features.ahead.reshape(*features.ahead.shape[:-1], c.known, c.horizon, 1)
        return y + (self._known * ahead).sum(axis=-3)

    def _decode(self, features: Features, read: HeadRead | None) -> np.ndarray:
        c = self.config
        hidden, window = features.hidden, features.window
        shape = (*hidden.shape[:-1], c.horizon, c.outputs_per_step)
        if window is None:
            return self._run_head(hidden).reshape(shape)
        read = read if read is not None else read_head(window[..., -c.net_reads :], c.head_scale)
        if c.cell == "segrnn":  # the newest value, and the segments' forecast relative to it
            return self._segments(window, read.spread) + window[..., -1:, None]
        y = self._run_head(np.concatenate([hidden, read.shape], axis=-1))
        if read.spread is not None:
            y *= read.spread
        return y.reshape(shape) + _linear(window, self._ar)[..., None]  # the same base for every quantile

    def _run_head(self, x: np.ndarray) -> np.ndarray:
        """Linear, ReLU, Linear."""
        w0, b0, w2 = self._head
        z = _linear(x, w0, b0)
        return _linear(np.maximum(z, 0, out=z), w2, self._head_bias)


_BLOCK = 512
"""Windows a segrnn member reads in one pass: its GRU's arrays for 512 windows stay in a core's
cache, where `stream`'s thousands at once spilled to memory, each fresh array paying its page
faults (this and `_GateSplit` halved the time per window: README, segrnn members)."""


@dataclass(frozen=True)
class _GateSplit:
    """A GRU layer's weights (`_Layer`, sigmoid rows halved) with the gates r, z, n on a leading
    axis: one batched product gives each gate's (N, H) as a contiguous array, where the slices of
    one (N, 3H) product made every elementwise pass stride over the other gates' columns (about
    2x slower on thousands of windows), and one call still makes all three."""

    w_ih: np.ndarray  # (3, input, H)
    bias: np.ndarray  # (3, 1, H): both biases, but the recurrent one of n
    w_hh: np.ndarray  # (3, H, H)
    b_hn: np.ndarray  # (H,)

    @classmethod
    def of(cls, layer: _Layer) -> _GateSplit:
        def gates(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(a.reshape(*a.shape[:-1], 3, -1).swapaxes(-2, 0))

        return cls(gates(layer.w_ih), gates(layer.bias[None]), gates(layer.w_hh), layer.b_hn)

    def project(self, x: np.ndarray) -> np.ndarray:
        """Each gate's input projection of x (..., input): (3, ..., H)."""
        y = x.reshape(1, -1, x.shape[-1]) @ self.w_ih
        y += self.bias
        return y.reshape(3, *x.shape[:-1], y.shape[-1])

    def last(self, xp: np.ndarray) -> np.ndarray:
        """nn.GRU's last state over the projected inputs xp (3, T, N, H), step-major, from a zero
        state, as `_gru_steps` (whose outputs the segments never read)."""
        h = np.zeros(xp.shape[2:], dtype=np.float32)
        for t in range(xp.shape[1]):
            if t:
                g = h @ self.w_hh  # (3, N, H)
            else:  # from the zero state, every recurrent product is zero
                g = np.zeros(xp[:, 0].shape, dtype=np.float32)
            g[:2] += xp[:2, t]
            h = self.step(h, g, xp[2, t])
        return h

    def step(self, h: np.ndarray, g: np.ndarray, xn: np.ndarray) -> np.ndarray:
        """One GRU step from g (3, N, H), overwritten: the pre-activations of r and z (input and
        recurrent products summed) and n's recurrent product h @ W_hn; xn: n's projected input.
        The new state, a fresh array; `_gru_steps`'s operations in its order."""
        rz = g[:2]
        np.tanh(rz, out=rz)  # sigmoid(a) = 0.5 + 0.5 * tanh(a / 2), the rows halved
        rz *= 0.5
        rz += 0.5
        n = g[2]
        n += self.b_hn
        n *= g[0]
        n += xn
        np.tanh(n, out=n)
        new = h - n
        new *= g[1]
        new += n
        return new


class NumpySegments:
    """`segments.SegmentRecurrence` in eval mode (no dropout), formula for formula."""

    def __init__(self, config: ModelConfig, weights: dict[str, np.ndarray]) -> None:
        self.config = config
        self._embed = (weights["segments.embed.weight"].T.copy(), weights["segments.embed.bias"])
        self._gru = _GateSplit.of(_layer(weights, 0, "gru", config.hidden_size, prefix="segments.rnn"))
        # Each position's input projection is the same for every window: made once.
        self._position = self._gru.project(weights["segments.position"])  # (3, ahead, H)
        self._out = (weights["segments.out.weight"].T.copy(), weights["segments.out.bias"])

    def __call__(self, window: np.ndarray, spread: np.ndarray | None) -> np.ndarray:
        """window (..., ar), spread (..., 1) or None -> (..., horizon, outputs_per_step)."""
        c = self.config
        count = c.ar // c.segment
        x = window[..., -count * c.segment :] - window[..., -1:]
        if spread is not None:
            x = x / spread
        lead = x.shape[:-1]
        x = x.reshape(-1, count, c.segment)
        y = np.empty((len(x), c.horizon, c.outputs_per_step), dtype=np.float32)
        for at in range(0, len(x), _BLOCK):
            y[at : at + _BLOCK] = self._block(x[at : at + _BLOCK])
        y = y.reshape(*lead, c.horizon, c.outputs_per_step)
        return y if spread is None else y * spread[..., None]

    def _block(self, x: np.ndarray) -> np.ndarray:
        """(N, count, segment) scaled segments -> (N, horizon, outputs_per_step)."""
        c = self.config
        embedded = _linear(x.transpose(1, 0, 2), *self._embed)  # (count, N, H): step-major
        last = self._gru.last(self._gru.project(np.maximum(embedded, 0, out=embedded)))
        # Every position decodes from the same last state: its recurrent products are made once.
        products = last @ self._gru.w_hh  # (3, N, H)
        decoded = np.empty((self._position.shape[1], *last.shape), dtype=np.float32)
        for into, position in zip(decoded, self._position.swapaxes(0, 1), strict=True):
            g = products.copy()
            g[:2] += position[:2, None]
            into[...] = self._gru.step(last, g, position[2])
        y = _linear(decoded, *self._out)  # (ahead, N, segment * outputs)
        y = y.reshape(len(decoded), len(x), c.segment, c.outputs_per_step).transpose(1, 0, 2, 3)
        return y.reshape(len(x), -1, c.outputs_per_step)[:, : c.horizon]
