"""The network contract, run over every cell: shapes, passed state, tick-by-tick = batched."""

from __future__ import annotations

import pytest
import torch

from streamcast.health import reach_profile
from streamcast.model import (
    STEP_CELLS,
    Features,
    ModelConfig,
    RecurrentForecaster,
    concat_states,
    detach_state,
    select_state,
)

CASES = [(cell, conv) for cell in STEP_CELLS for conv in (0, 3)]


def make_net(cell: str, conv: int = 0, quantiles=()) -> RecurrentForecaster:
    torch.manual_seed(0)
    config = ModelConfig(
        input_size=3,
        cell=cell,
        hidden_size=8,
        num_layers=2,
        horizon=5,
        quantiles=quantiles,
        conv=conv,
    )
    return RecurrentForecaster(config).eval()


@pytest.mark.parametrize(("cell", "conv"), CASES)
def test_forward_emits_a_whole_horizon_at_every_step(cell, conv):
    net = make_net(cell, conv, quantiles=(0.1, 0.5, 0.9))
    y, state = net(torch.randn(4, 7, 3), net.init_state(4))
    assert y.shape == (4, 7, 5, 3)
    assert all(s.shape[0] == 4 for s in state)


@pytest.mark.parametrize(("cell", "conv"), CASES)
def test_tick_by_tick_equals_one_batched_pass(cell, conv):
    net = make_net(cell, conv)
    x = torch.randn(2, 12, 3)
    with torch.no_grad():
        batched, final = net(x, net.init_state(2))
        state = net.init_state(2)
        ticks = []
        for t in range(12):
            y, state = net(x[:, t : t + 1], state)
            ticks.append(y)
    torch.testing.assert_close(torch.cat(ticks, dim=1), batched, rtol=1e-5, atol=1e-6)
    for a, b in zip(state, final, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("cell", "conv"), CASES)
def test_forward_never_changes_the_state_it_was_given(cell, conv):
    net = make_net(cell, conv)
    state = tuple(torch.randn_like(s) for s in net.init_state(3))
    before = tuple(s.clone() for s in state)
    with torch.no_grad():
        first, _ = net(torch.randn(3, 1, 3), state)
        _ = net(torch.randn(3, 4, 3), state)
    for a, b in zip(state, before, strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():
        again, _ = net(torch.zeros(3, 1, 3), state)
    assert again.shape == first.shape


def test_states_of_single_series_stack_into_a_batch_and_back():
    net = make_net("lstm", conv=3)
    x = torch.randn(3, 6, 3)
    with torch.no_grad():
        _, state = net(x, net.init_state(3))
        parts = [select_state(state, slice(i, i + 1)) for i in range(3)]
        joined = concat_states(parts)
    for a, b in zip(joined, state, strict=True):
        assert torch.equal(a, b)


def test_detached_state_carries_values_but_no_gradient():
    net = make_net("gru").train()
    _, state = net(torch.randn(2, 4, 3), net.init_state(2))
    assert state[0].requires_grad
    cut = detach_state(state)
    assert not cut[0].requires_grad
    assert torch.equal(cut[0], state[0])


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="cell must be one of"):
        ModelConfig(input_size=1, cell="transformer")


def test_reach_is_one_step_when_the_recurrence_is_cut():
    net = make_net("rnn")
    with torch.no_grad():
        for name, p in net.rnn.named_parameters():
            if "weight_hh" in name:
                p.zero_()
    profile = reach_profile(net, torch.randn(4, 10, 3))
    assert profile[0] == pytest.approx(1.0)
    assert profile[1:].max() == 0.0


def test_reach_spans_the_chunk_when_the_recurrence_is_the_identity():
    torch.manual_seed(0)
    net = RecurrentForecaster(ModelConfig(input_size=1, cell="rnn-relu", hidden_size=4, horizon=1)).eval()
    with torch.no_grad():
        net.rnn.weight_hh_l0.copy_(torch.eye(4))
        net.rnn.weight_ih_l0.fill_(1.0)
        net.rnn.bias_ih_l0.zero_()
        net.rnn.bias_hh_l0.zero_()
        net.head[0].weight.fill_(1.0)
        net.head[2].weight.fill_(1.0)
    profile = reach_profile(net, torch.ones(2, 30, 1))
    assert profile.min() == pytest.approx(1.0)


def window_net(head_scale: str, lag_inputs: str = "none", conv: int = 0) -> RecurrentForecaster:
    torch.manual_seed(0)
    config = ModelConfig(
        input_size=3,
        hidden_size=8,
        horizon=6,
        ar=12,
        season=4,
        head_scale=head_scale,
        lag_inputs=lag_inputs,
        conv=conv,
    )
    return RecurrentForecaster(config).eval()


@pytest.mark.parametrize(
    ("head_scale", "lag_inputs", "conv"),
    [
        ("global", "none", 0),
        ("window", "none", 0),
        ("window", "season", 0),
        ("global", "season", 3),
        ("window", "smoothed", 0),
    ],
)
def test_tick_by_tick_equals_one_batched_pass_whatever_the_head(head_scale, lag_inputs, conv):
    net = window_net(head_scale, lag_inputs, conv)
    x = torch.randn(2, 20, 3)
    with torch.no_grad():
        batched, _ = net(x, net.init_state(2))
        state, ticks = net.init_state(2), []
        for t in range(20):
            y, state = net(x[:, t : t + 1], state)
            ticks.append(y)
    torch.testing.assert_close(torch.cat(ticks, dim=1), batched, rtol=1e-5, atol=1e-6)


def test_window_head_scale_makes_corrections_as_fine_as_the_series_moves():
    """Shrink a window's moves around its level by 1000: under `window` the forecast's moves shrink
    with them (a smooth series gets a smooth forecast); under `global` the head's output does not."""
    hidden, window = torch.randn(3, 8), torch.randn(3, 12)
    level = 5.0
    for head_scale, follows in (("window", True), ("global", False)):
        net = window_net(head_scale)
        with torch.no_grad():
            big = net.decode(Features(hidden, level + window))
            small = net.decode(Features(hidden, level + window / 1000))
        shrunk = (big - level) / 1000 + level
        assert torch.allclose(small, shrunk, atol=1e-4) is follows


def test_unknown_head_scale_is_refused():
    with pytest.raises(ValueError, match="head_scale must be one of"):
        ModelConfig(input_size=1, head_scale="local")


def test_lag_inputs_are_the_changes_since_a_step_and_a_season_back_in_window_spreads():
    from streamcast.model import _lags, window_spread

    values = torch.arange(12.0).pow(2)  # one window of 12 values, the newest last
    lags = _lags(values.view(1, 1, 12), 4, window_spread(values.view(1, 1, 12)))
    spread = (values - values[-1]).abs().mean()
    expected = torch.stack([values[-1] - values[-2], values[-1] - values[-5]]) / (spread + 1e-5)
    torch.testing.assert_close(lags.view(2), expected)
    assert window_net("window", "season").rnn.input_size == 5  # 3 inputs + 2 lags


def test_smoothed_lags_at_full_rates_are_the_plain_lags_and_weigh_the_past_by_their_decay():
    from streamcast.model import _lags, smoothed_lags, window_spread

    values = torch.arange(12.0).pow(2).view(1, 1, 12)  # one window of 12 values, the newest last
    spread = window_spread(values)
    # Decays of almost nothing: the level is the step before, the profile the same phase a season back.
    torch.testing.assert_close(
        smoothed_lags(values, 4, torch.full((2,), -40.0), spread), _lags(values, 4, spread)
    )
    v = values.view(12)
    lags = smoothed_lags(values, 4, torch.zeros(2), spread)  # decays of a half
    level_weights = 0.5 ** torch.arange(10.0, -1.0, -1.0)  # the 11 older values, the newest of them 1
    level = (v[:-1] * level_weights).sum() / level_weights.sum()
    profile = (v[7] * 1.0 + v[3] * 0.5) / 1.5  # the same phase one and two seasons back
    by_hand = (v - v[-1]).abs().mean() + 1e-5  # the window's spread
    torch.testing.assert_close(lags.view(2), torch.stack([v[-1] - level, v[-1] - profile]) / by_hand)
    net = window_net("window", "smoothed")
    assert net.rnn.input_size == 3 + 2 + 2  # the inputs, the plain lags, the smoothed ones
    assert torch.equal(net.lag_decay.detach(), torch.zeros(2))
