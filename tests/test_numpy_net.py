"""The numpy network serves what the torch network serves: the same forecasts at every step, the
same state, over two chunks with the state carried between them, for every cell and option."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import streamcast.numpy_net
from streamcast.model import STEP_CELLS, EnsembleForecaster, ModelConfig, RecurrentForecaster
from streamcast.numpy_ensemble import NumpyEnsemble, numpy_network
from streamcast.numpy_net import NumpyForecaster

HORIZON = 3
QUANTILES = (0.1, 0.5, 0.9)
# (ar, lag_inputs, head_scale): without a window there are no lags and nothing for the head to scale.
WINDOWS = [(0, "none", "global")] + [(12, lag, s) for lag in ("none", "season") for s in ("global", "window")]


def make_config(
    cell: str = "lstm",
    conv: int = 0,
    num_layers: int = 1,
    window: tuple[int, str, str] = (12, "season", "window"),
    quantiles: tuple[float, ...] = QUANTILES,
    known: int = 2,
    net_window: int = 0,
) -> ModelConfig:
    ar, lag_inputs, head_scale = window
    return ModelConfig(
        input_size=3 + 2 * HORIZON,  # the value, one input, two known inputs (or not), one more
        cell=cell,
        hidden_size=8,
        num_layers=num_layers,
        horizon=HORIZON,
        quantiles=quantiles,
        conv=conv,
        ar=ar,
        season=4,
        known=known,
        known_at=2 if known else 0,
        head_scale=head_scale,
        lag_inputs=lag_inputs,
        net_window=net_window,
    )


def torch_net(configs: list[ModelConfig], combine: str = "mean"):
    """Torch's default init with every bias, `known` and `ar` weight moved off its start, so
    that no part of the network is zero or the identity."""
    torch.manual_seed(0)
    net = RecurrentForecaster(configs[0]) if len(configs) == 1 else EnsembleForecaster(configs, combine)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "bias" in name or name.endswith(("known", "ar.weight", "lag_decay")):
                p.add_(0.3 * torch.randn_like(p))
    return net.eval()


def twin(net, combine: str | None = None):
    weights = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    configs = [m.config for m in net.members] if isinstance(net, EnsembleForecaster) else [net.config]
    return numpy_network(configs, weights, combine)


def assert_close(ours: np.ndarray, theirs: torch.Tensor) -> None:
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-5)


def assert_serves_alike(net, ours, batch: int = 3, chunks: tuple[int, ...] = (5, 4)) -> None:
    """Both networks over the same chunks from the same random state: every step's forecast,
    some indexed steps' forecasts, every state part, and the state given left as it was."""
    rng = np.random.default_rng(1)
    zeros = ours.init_state(batch)
    assert [s.shape for s in zeros] == [tuple(s.shape) for s in net.init_state(batch)]
    assert all(s.dtype == np.float32 and not s.any() for s in zeros)
    state = tuple(rng.standard_normal(s.shape).astype(np.float32) for s in zeros)
    theirs = tuple(torch.from_numpy(s.copy()) for s in state)
    for steps in chunks:
        x = rng.standard_normal((batch, steps, net.config.input_size)).astype(np.float32)
        passed, given = state, tuple(s.copy() for s in state)
        features, state = ours.encode(x, passed)
        with torch.no_grad():
            their_features, theirs = net.encode(torch.from_numpy(x), theirs)
            rows, at = rng.integers(0, batch, 7), rng.integers(0, steps, 7)
            their_picked = their_features[torch.from_numpy(rows), torch.from_numpy(at)]
            assert_close(ours.decode(features), net.decode(their_features))
            assert_close(ours.decode(features[rows, at]), net.decode(their_picked))
            if isinstance(net, EnsembleForecaster):
                assert_close(ours.decode_members(features), net.decode_members(their_features))
                assert_close(ours.decode_members(features[rows, at]), net.decode_members(their_picked))
        assert all(np.array_equal(a, b) for a, b in zip(passed, given, strict=True))
        assert len(state) == len(theirs)
        for mine, their in zip(state, theirs, strict=True):
            assert_close(mine, their)


@pytest.mark.parametrize("known", [0, 2])
@pytest.mark.parametrize("quantiles", [(), QUANTILES], ids=["point", "quantiles"])
@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: "-".join(map(str, w)))
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("conv", [0, 3])
@pytest.mark.parametrize("cell", STEP_CELLS)
def test_numpy_network_serves_what_torch_serves(cell, conv, num_layers, window, quantiles, known):
    net = torch_net([make_config(cell, conv, num_layers, window, quantiles, known)])
    ours = twin(net)
    assert isinstance(ours, NumpyForecaster)
    assert_serves_alike(net, ours)


@pytest.mark.parametrize("head_scale", ["global", "window"])
@pytest.mark.parametrize("cell", STEP_CELLS)
def test_smoothed_lags_are_served_as_torch_serves_them(cell, head_scale):
    net = torch_net([make_config(cell, window=(12, "smoothed", head_scale))])
    assert net.lag_decay.shape == (2,) and net.rnn.input_size == 9 + 4
    assert_serves_alike(net, twin(net))


@pytest.mark.parametrize("lags", ["season", "smoothed"])
@pytest.mark.parametrize("head_scale", ["global", "window"])
def test_a_network_reading_part_of_a_longer_highway_window_is_served_as_torch_serves_it(lags, head_scale):
    net = torch_net([make_config("lstm", window=(16, lags, head_scale), net_window=8)])
    assert net.head[0].in_features == 8 + 8 and net.ar.in_features == 16
    assert_serves_alike(net, twin(net))
    # Values older than the network's 8 reach the forecast through the highway alone.
    with torch.no_grad():
        net.ar.weight.zero_()
        x = torch.randn(2, 3, net.config.input_size)
        state = list(net.init_state(2))
        state[-1] = torch.randn(2, 16)
        older = [s.clone() for s in state]
        older[-1][:, :5] += 10.0  # 5 + 3 new steps: out of the network's 8 by the last step
        late = net(x, tuple(state))[0][:, -1]
        assert torch.equal(net(x, tuple(older))[0][:, -1], late)
        older[-1][:, 5:] += 1.0
        assert not torch.equal(net(x, tuple(older))[0][:, -1], late)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_an_empty_batch_is_served_as_torch_serves_it(cell):
    net = torch_net([make_config(cell, conv=3)])
    ours = twin(net)
    features, state = ours.encode(np.zeros((0, 4, 9), dtype=np.float32), ours.init_state(0))
    with torch.no_grad():
        their_features, theirs = net.encode(torch.zeros(0, 4, 9), net.init_state(0))
        assert ours.decode(features).shape == net.decode(their_features).shape
    assert [s.shape for s in state] == [tuple(s.shape) for s in theirs]


ENSEMBLES = {
    # Members with the same window carry it once and, reading it alike, read it once.
    "shared-window": [
        make_config("lstm"),
        make_config("gru", conv=3),
        make_config("rnn", num_layers=2, known=0),
    ],
    # The same window read two ways: carried once, read by each member.
    "shared-window-two-heads": [
        make_config("gru", window=(12, "season", "global")),
        make_config("rnn-relu", window=(12, "season", "window")),
    ],
    # Smoothed lags are each member's own (their rates learned apart), the window still shared.
    "shared-window-smoothed": [
        make_config("lstm", window=(12, "smoothed", "window")),
        make_config("gru", window=(12, "smoothed", "window")),
    ],
    # The network reads the newest 8 of a 16-value window that its highway reads whole.
    "shared-window-read-in-part": [
        make_config("lstm", window=(16, "season", "window"), net_window=8),
        make_config("gru", conv=3, window=(16, "season", "window"), net_window=8),
    ],
    "own-windows": [
        make_config("lstm", window=(12, "none", "window")),
        make_config("gru", conv=3, window=(8, "season", "global")),
        make_config("rnn", window=(0, "none", "global"), known=0),
    ],
}


@pytest.mark.parametrize("combine", ["mean", "median"])
@pytest.mark.parametrize("members", ENSEMBLES.values(), ids=ENSEMBLES.keys())
def test_numpy_ensemble_serves_what_torch_serves(members, combine):
    net = torch_net(members, combine)
    ours = twin(net, combine)
    assert isinstance(ours, NumpyEnsemble)
    assert (ours.combine, ours.config, len(ours.members)) == (combine, members[0], len(members))
    assert_serves_alike(net, ours)


ALIKE = {
    # Members of one config (the default ensemble's case) run stacked on a member axis.
    "lstm-x3-points": [make_config("lstm", known=0, quantiles=())] * 3,
    "gru-x2-two-layers-quantiles": [make_config("gru", num_layers=2, known=0)] * 2,
    "rnn-relu-x3-global-head": [make_config("rnn-relu", window=(12, "none", "global"), known=0)] * 3,
    "rnn-x4-window-head": [make_config("rnn", window=(12, "season", "window"), known=0, quantiles=())] * 4,
    "lstm-x3-smoothed": [make_config("lstm", window=(12, "smoothed", "window"), known=0)] * 3,
    "lstm-x3-part-of-the-window": [
        make_config("lstm", window=(16, "smoothed", "window"), known=0, net_window=8)
    ]
    * 3,
}


@pytest.mark.parametrize("combine", ["mean", "median"])
@pytest.mark.parametrize("members", ALIKE.values(), ids=ALIKE.keys())
def test_members_of_one_config_run_stacked_serve_what_torch_serves_and_each_member_alone(members, combine):
    net = torch_net(members, combine)
    ours, in_turn = twin(net, combine), twin(net, combine)
    in_turn.stacked = None  # the members one after the other, as for members of different configs
    assert ours.stacked is not None
    assert_serves_alike(net, ours)
    rng = np.random.default_rng(2)
    state = tuple(rng.standard_normal(s.shape).astype(np.float32) for s in ours.init_state(4))
    for steps in (1, 6):
        x = rng.standard_normal((4, steps, members[0].input_size)).astype(np.float32)
        (stacked, new), (alone, new_alone) = ours.encode(x, state), in_turn.encode(x, state)
        rows, at = np.array([3, 0, 0, 2]), np.array([0, steps - 1, 0, steps // 2])
        for a, b in ((stacked, alone), (stacked[rows, at], alone[rows, at])):
            np.testing.assert_array_equal(ours.decode_members(a), in_turn.decode_members(b))
            np.testing.assert_array_equal(ours.decode(a), in_turn.decode(b))
        assert len(new) == len(new_alone) and all(map(np.array_equal, new, new_alone))
        state = new


@pytest.mark.parametrize("members", ENSEMBLES.values(), ids=ENSEMBLES.keys())
def test_members_of_different_configs_or_with_conv_or_known_inputs_run_in_turn(members):
    assert twin(torch_net(members)).stacked is None
    assert twin(torch_net([make_config("gru", conv=3, known=0)] * 2)).stacked is None
    assert twin(torch_net([make_config("gru", known=2)] * 2)).stacked is None


def test_members_sharing_a_window_index_it_once():
    ours = twin(torch_net(ENSEMBLES["shared-window"]))
    features, _ = ours.encode(np.ones((2, 4, 9), dtype=np.float32), ours.init_state(2))
    picked = features[np.array([0, 1, 1]), np.array([3, 0, 2])]
    assert picked.members[0].window.shape == (3, 12)
    assert all(m.window is picked.members[0].window for m in picked.members)


def test_an_ensemble_combines_by_the_median_unless_told():
    net = torch_net(ENSEMBLES["own-windows"], "median")
    assert twin(net).combine == "median"


@pytest.mark.parametrize("members", [ENSEMBLES["shared-window"], [make_config("gru", conv=3)]])
def test_state_dict_gives_back_the_weights_by_torch_names(members):
    net = torch_net(members)
    weights = twin(net).state_dict()
    assert list(weights) == list(net.state_dict())
    for name, tensor in net.state_dict().items():
        assert weights[name].dtype == np.float32
        assert np.array_equal(weights[name], tensor.numpy())


def other_cell(weights: dict) -> None:
    weights.update(twin(torch_net([make_config("gru")])).state_dict())


def one_layer_short(weights: dict) -> None:
    for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        del weights[f"rnn.{part}_l1"]


MISFITS = {
    "missing": lambda w: w.pop("head.0.bias"),
    "unexpected": lambda w: w.update({"head.4.weight": np.zeros((3, 3), dtype=np.float32)}),
    "transposed": lambda w: w.update({"ar.weight": w["ar.weight"].T}),
    "other-cell": other_cell,
    "one-layer-short": one_layer_short,
}


@pytest.mark.parametrize("misfit", MISFITS.values(), ids=MISFITS.keys())
def test_weights_that_do_not_fit_the_config_are_refused(misfit):
    net = torch_net([make_config("lstm", num_layers=2)])
    weights = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    misfit(weights)
    with pytest.raises(ValueError, match="do not fit the config"):
        numpy_network([net.config], weights)


@pytest.mark.parametrize("misfit", ["members.1.known", "members.3.known"])
def test_an_ensembles_weights_that_do_not_fit_its_members_are_refused(misfit):
    net = torch_net(ENSEMBLES["own-windows"])
    weights = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    weights[misfit] = np.zeros((2, HORIZON + 1), dtype=np.float32)
    with pytest.raises(ValueError, match="do not fit the config"):
        numpy_network(ENSEMBLES["own-windows"], weights)


def test_an_ensemble_of_members_that_do_not_fit_together_is_refused():
    first, second = make_config(), make_config(quantiles=())
    net = torch_net([first])
    weights = {f"members.{i}.{k}": v.numpy() for i in (0, 1) for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="must share inputs"):
        numpy_network([first, second], weights)
    with pytest.raises(ValueError, match="combines by"):
        numpy_network([first, first], weights, "max")


def test_the_numpy_network_imports_without_torch():
    code = "import sys, streamcast.numpy_net\nassert 'torch' not in sys.modules\nprint(streamcast.numpy_net.__file__)"
    root = str(Path(streamcast.numpy_net.__file__).parents[1])  # the code under test, not an installed copy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == streamcast.numpy_net.__file__
