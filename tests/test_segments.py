"""segrnn members (SegRNN's segment recurrence over the carried window): the numpy server's
numbers, a state that is the window alone, the default mix of cells, and the commands end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

import streamcast as sc
from streamcast import training
from streamcast.cellshare import segment_share, share_weights
from streamcast.cli import main
from streamcast.features import FeatureSpec
from streamcast.forecaster import Forecaster
from streamcast.model import EnsembleForecaster, ModelConfig, RecurrentForecaster
from streamcast.modelfile import load, save
from streamcast.modelheader import read_metadata
from streamcast.modelparts import load_numpy
from streamcast.numpy_ensemble import numpy_network
from streamcast.numpy_net import NumpyForecaster
from streamcast.reading import read_series
from streamcast.training import _scored_forward, member_cells
from tests.conftest import CLI_TINY, TINY, hourly_frame

SEG = ModelConfig(input_size=3, cell="segrnn", hidden_size=8, horizon=10, ar=48, season=12, segment=12)


def numpy_of(net: torch.nn.Module):
    return NumpyForecaster(net.config, {k: v.detach().numpy() for k, v in net.state_dict().items()})


@pytest.mark.parametrize(
    "config",
    [
        SEG,
        replace(SEG, head_scale="window"),
        replace(SEG, quantiles=(0.1, 0.5, 0.9)),
        replace(
            SEG, horizon=7, segment=5, ar=23
        ),  # a last segment cut short, a window of 4 segments and 3 steps
    ],
)
def test_the_numpy_server_gives_torchs_forecasts_and_state(config):
    torch.manual_seed(0)
    net = RecurrentForecaster(config).eval()
    x = torch.randn(4, 60, 3)
    with torch.no_grad():
        y, state = net(x, net.init_state(4))
    served = numpy_of(net)
    y_np, state_np = served(x.numpy(), served.init_state(4))
    assert y.shape == (4, 60, config.horizon, config.outputs_per_step)
    np.testing.assert_allclose(y_np, y.numpy(), rtol=1e-5, atol=1e-5)
    assert len(state) == len(state_np) == 1
    np.testing.assert_array_equal(state_np[0], state[0].numpy())


def test_the_numpy_server_reads_more_windows_than_a_block_as_torch_does():
    """`stream` hands the segments thousands of windows at once, served in blocks of 512: the
    windows across a block's edge, and in a last block cut short, forecast as torch's, each
    as when served alone."""
    torch.manual_seed(2)
    net = RecurrentForecaster(replace(SEG, quantiles=(0.1, 0.5, 0.9))).eval()
    x = torch.randn(23, 60, 3)  # 1,380 windows: blocks of 512, 512 and 356
    with torch.no_grad():
        y, _ = net(x, net.init_state(23))
    served = numpy_of(net)
    y_np, _ = served(x.numpy(), served.init_state(23))
    np.testing.assert_allclose(y_np, y.numpy(), rtol=1e-5, atol=1e-5)
    alone, _ = served(x[8:9].numpy(), served.init_state(1))  # windows 480-539, across the first edge
    np.testing.assert_allclose(y_np[8:9], alone, rtol=1e-6, atol=1e-6)


def test_the_state_is_the_window_alone_and_ticks_equal_one_pass():
    torch.manual_seed(1)
    net = RecurrentForecaster(SEG).eval()
    x = torch.randn(2, 70, 3)
    with torch.no_grad():
        batched, final = net(x, net.init_state(2))
        state, ticks = net.init_state(2), []
        for t in range(70):
            y, state = net(x[:, t : t + 1], state)
            ticks.append(y)
    assert [s.shape for s in final] == [(2, 48)]
    torch.testing.assert_close(final[0], x[:, -48:, 0])  # the last `ar` values, nothing else
    torch.testing.assert_close(torch.cat(ticks, dim=1), batched, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stride, step", [(4, 0), (4, 5), (3, 1)])
def test_a_strided_segrnn_is_scored_at_every_nth_step_and_its_window_still_walks_all(stride, step):
    """The scored steps' forecasts are the full pass's at those steps, and the state is the full
    pass's, so the next chunk starts where it would have; an LSTM is scored at every step."""
    torch.manual_seed(3)
    x = torch.randn(2, 48, 3)
    net = RecurrentForecaster(SEG).eval()
    with torch.no_grad():
        full, full_state = net(x, net.init_state(2))
        y, state, scored = _scored_forward(net, x, net.init_state(2), stride, step)
    steps = [i for i in range(48) if (step + i) % stride == 0]  # lane steps on the stride's grid
    assert list(range(48))[scored] == steps
    torch.testing.assert_close(y, full[:, steps])
    torch.testing.assert_close(state[0], full_state[0])
    lstm = RecurrentForecaster(replace(SEG, cell="lstm", segment=0)).eval()
    with torch.no_grad():
        y, _, scored = _scored_forward(lstm, x, lstm.init_state(2), stride, step)
    assert y.shape[1] == 48 and scored == slice(None)


def test_over_stride_epochs_a_segrnn_member_trains_once_on_every_step(level_data, monkeypatch):
    """Each epoch a different third of the steps (evenly spaced, across chunk boundaries), so
    that three epochs of `--segment-stride 3` cover every step of every lane exactly once."""
    scored_by_epoch: list[list[int]] = [[], [], []]
    epochs: list = []

    def spy(net, x, state, stride, step):
        y, state, scored = _scored_forward(net, x, state, stride, step)
        start = step - (len(epochs) + 1)  # the chunk's first lane step
        scored_by_epoch[len(epochs)].extend(start + i for i in range(x.shape[1])[scored])
        return y, state, scored

    monkeypatch.setattr(training, "_scored_forward", spy)
    config = replace(TINY, cell="segrnn", segment_stride=3, epochs=3, patience=10, batch_size=64)
    sc.fit(level_data, config, on_epoch=epochs.append)
    assert len(epochs) == 3
    seen = [set(steps) for steps in scored_by_epoch]
    width = max(max(s) for s in seen) + 1
    assert width > config.bptt  # several chunks per lane
    for epoch, steps in enumerate(seen, 1):
        assert steps == {t for t in range(width) if (t + epoch) % 3 == 0}
    assert set().union(*seen) == set(range(width))


def test_segment_stride_trains_the_segrnn_members_alone_on_fewer_steps(level_data):
    """The LSTM member is the same weight for weight; the segrnn members differ, and each run is
    reproducible."""
    config = replace(TINY, ensemble=3, segment_stride=4)
    strided, again, full = (
        sc.fit(level_data, config),
        sc.fit(level_data, config),
        sc.fit(level_data, replace(config, segment_stride=1)),
    )
    for a, b, c in zip(strided.net.members, again.net.members, full.net.members, strict=True):
        for (name, p), q, r in zip(
            a.state_dict().items(), b.state_dict().values(), c.state_dict().values(), strict=True
        ):
            torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
            if a.config.cell == "lstm":
                torch.testing.assert_close(p, r, rtol=0, atol=0, msg=name)
    pairs = zip(strided.net.members, full.net.members, strict=True)
    segrnn = [(a, c) for a, c in pairs if a.config.cell == "segrnn"]
    assert len(segrnn) == 2
    assert all(not torch.equal(a.segments.out.weight, c.segments.out.weight) for a, c in segrnn)
    assert strided.info["fit_config"]["segment_stride"] == 4


def test_the_forecast_is_the_newest_value_plus_what_the_segments_add():
    """Zero output weights: the segments add nothing, and the forecast is the last value."""
    net = RecurrentForecaster(SEG).eval()
    with torch.no_grad():
        net.segments.out.weight.zero_()
        net.segments.out.bias.zero_()
        x = torch.randn(3, 50, 3)
        y, _ = net(x, net.init_state(3))
    expected = x[:, :, 0, None].expand(3, 50, 10)
    torch.testing.assert_close(y[..., 0], expected)


def test_a_mixed_ensemble_is_served_by_numpy_as_by_torch():
    torch.manual_seed(2)
    lstm = replace(SEG, cell="lstm", segment=0)
    net = EnsembleForecaster([lstm, SEG, SEG], "mean").eval()
    x = torch.randn(3, 30, 3)
    with torch.no_grad():
        y, state = net(x, net.init_state(3))
    served = numpy_network(
        [m.config for m in net.members], {k: v.numpy() for k, v in net.state_dict().items()}, "mean"
    )
    y_np, state_np = served(x.numpy(), served.init_state(3))
    assert served.stacked is None  # the members differ: each in turn
    np.testing.assert_allclose(y_np, y.numpy(), rtol=1e-5, atol=1e-5)
    assert len(state) == 3  # the LSTM's h and c, and the one window all three share


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"segment": 0}, "a segrnn cell needs a window"),
        ({"segment": 49}, "a segrnn cell needs a window"),
        ({"conv": 3}, "it takes no conv"),
        ({"cell": "lstm"}, "only a segrnn cell has segments"),
    ],
)
def test_a_config_that_cannot_be_built_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        replace(SEG, **changes)


def spec(**fields) -> FeatureSpec:
    return FeatureSpec(freq="1h", calendar=(), covariates=(), covariate_loc=(), covariate_scale=(), **fields)


@pytest.mark.parametrize(
    ("config", "fields", "ar", "cells"),
    [
        (TINY, {}, 168, ("lstm",)),  # one member
        (replace(TINY, ensemble=3), {}, 168, ("lstm", "segrnn", "segrnn")),
        (replace(TINY, ensemble=3, cell="gru"), {}, 168, ("gru", "segrnn", "segrnn")),
        (replace(TINY, ensemble=3), {"transform": "log"}, 168, ("lstm",)),  # in logs (M4)
        (replace(TINY, ensemble=3), {"static": ("region",)}, 168, ("lstm",)),  # reads more than the window
        (replace(TINY, ensemble=3), {"future_steps": 6}, 168, ("lstm",)),
        (replace(TINY, ensemble=3), {}, 0, ("lstm",)),  # no window to cut
        (replace(TINY, ensemble=3, ensemble_cells=("lstm",)), {}, 168, ("lstm",)),
    ],
)
def test_the_default_mixes_two_segrnn_members_in_three_where_the_data_suits(config, fields, ar, cells):
    model = ModelConfig(input_size=1, ar=ar, season=24)
    assert member_cells(config, spec(**fields), model) == cells


@pytest.mark.parametrize(
    ("config", "fields", "cells"),
    [
        (replace(TINY, ensemble=3), {}, ("segrnn",)),
        (replace(TINY, ensemble=3), {"transform": "log"}, ("segrnn",)),  # logs too
        (replace(TINY, ensemble=3), {"static": ("region",)}, ("lstm",)),  # the window alone would lose it
        (TINY, {}, ("lstm",)),  # one network: --cell
        (replace(TINY, ensemble=3, ensemble_cells=("gru",)), {}, ("gru",)),
    ],
)
def test_yearly_data_takes_segrnn_members_alone(config, fields, cells):
    yearly = FeatureSpec(
        freq="1y", calendar=(), covariates=(), covariate_loc=(), covariate_scale=(), **fields
    )
    assert member_cells(config, yearly, ModelConfig(input_size=1, ar=8, season=1)) == cells


@pytest.fixture(scope="module")
def level_data():
    """Hourly series around a fixed level: `--transform auto` keeps them in their own units."""
    return read_series(hourly_frame(series=3, length=240, growth=0.0))


@pytest.fixture(scope="module")
def mixed(level_data):
    return sc.fit(level_data, replace(TINY, ensemble=3))


def test_fit_trains_an_lstm_and_two_segrnn_members_by_default(mixed):
    assert mixed.spec.transform == "none"
    cells = [m.config.cell for m in mixed.net.members]
    assert cells == ["lstm", "segrnn", "segrnn"]
    assert [m.config.segment for m in mixed.net.members] == [0, 24, 24]  # a day of hourly data
    assert all(m["best_epoch"] >= 1 for m in mixed.info["members"])


def test_the_model_file_is_format_10_and_loads_to_the_same_forecasts(mixed, level_data, tmp_path):
    path = save(mixed, tmp_path / "m.streamcast")
    loaded = load(path)
    assert read_metadata(path)["format_version"] == 10  # a reader of 9 says "upgrade streamcast"
    assert [m.config.cell for m in loaded.net.members] == ["lstm", "segrnn", "segrnn"]
    before = sc.forecast(mixed, level_data)
    after = sc.forecast(loaded, level_data)
    np.testing.assert_allclose(after["forecast"].to_numpy(), before["forecast"].to_numpy(), rtol=1e-5)


def test_cli_fit_info_forecast_and_stream_with_segrnn_members(tmp_path):
    data = tmp_path / "level.csv"
    hourly_frame(series=2, length=240, growth=0.0).write_csv(data)
    model = tmp_path / "m.streamcast"
    runner = CliRunner()
    fitted = runner.invoke(main, ["fit", str(data), "-o", str(model), *CLI_TINY, "--ensemble", "3", "-q"])
    assert fitted.exit_code == 0, fitted.output
    info = runner.invoke(main, ["info", str(model)])
    assert "3 members (lstm, segrnn, segrnn)" in info.stdout
    assert "tothesegrnnmembers" in "".join(info.stdout.replace("│", " ").split())  # their fitted share
    out = tmp_path / "f.csv"
    forecast = runner.invoke(main, ["forecast", str(data), "-m", str(model), "-o", str(out)])
    assert forecast.exit_code == 0, forecast.output
    assert pl.read_csv(out).height == 2 * 6
    lines = "".join(
        f"s0,2024-01-{1 + h // 24:02d} {h % 24:02d}:00,{10 + np.sin(h / 4):.3f}\n" for h in range(60)
    )
    streamed = subprocess.run(
        [sys.executable, "-m", "streamcast", "stream", "-m", str(model)],
        input=lines,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert streamed.returncode == 0, streamed.stderr
    rows = [json.loads(line) for line in streamed.stdout.splitlines()]
    assert len(rows) == 60 and all(len(r["forecast"]) == 6 for r in rows)
    assert all(np.isfinite(r["forecast"]).all() for r in rows)


def test_a_segrnn_cell_without_a_window_is_a_usage_error(tmp_path):
    data = tmp_path / "level.csv"
    hourly_frame(series=1, length=120, growth=0.0).write_csv(data)
    result = CliRunner().invoke(main, ["fit", str(data), *CLI_TINY, "--cell", "segrnn", "--ar", "0"])
    assert result.exit_code == 2
    assert "segrnn" in result.stderr and "--ar" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "cells",
    [
        ["--cell", "segrnn"],
        ["--cell", "segrnn", "--ensemble", "1"],
        ["--ensemble-cells", "segrnn"],
        ["--ensemble", "1", "--ensemble-cells", "segrnn,lstm"],  # one member: the segrnn alone
    ],
)
def test_conv_on_segrnn_cells_alone_is_a_usage_error_and_beside_another_cell_is_kept(tmp_path, cells):
    data = tmp_path / "level.csv"
    hourly_frame(series=1, length=120, growth=0.0).write_csv(data)
    runner = CliRunner()
    result = runner.invoke(
        main, ["fit", str(data), *CLI_TINY, *cells, "--conv", "3", "-o", str(tmp_path / "m")]
    )
    assert result.exit_code == 2
    assert "segrnn" in result.stderr and "--conv" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "m").exists()
    model = tmp_path / "mixed.streamcast"
    mixed = ["--cell", "segrnn", "--ensemble", "2", "--ensemble-cells", "lstm,segrnn", "--conv", "3"]
    assert runner.invoke(main, ["fit", str(data), *CLI_TINY, *mixed, "-o", str(model)]).exit_code == 0
    convs = [m["conv"] for m in read_metadata(model)["member_configs"]]
    assert convs == [3, 0]  # the LSTM convolves, the segrnn member reads its window


def test_cli_segment_stride_fits_says_so_in_info_and_refuses_zero(tmp_path):
    data = tmp_path / "level.csv"
    hourly_frame(series=2, length=240, growth=0.0).write_csv(data)
    model = tmp_path / "m.streamcast"
    runner = CliRunner()
    args = ["fit", str(data), "-o", str(model), *CLI_TINY, "--ensemble", "3"]
    for stride, said in (("4", "one step in 4"), ("1", "every step")):
        fitted = runner.invoke(main, [*args, "--segment-stride", stride])
        assert fitted.exit_code == 0, fitted.output
        assert f"training: segrnn trained on {said} (--segment-stride)" in fitted.stderr
        info = " ".join(runner.invoke(main, ["info", str(model)]).stdout.replace("│", " ").split())
        assert f"training segrnn trained on {said} (--segment-stride)" in info
    assert read_metadata(model)["info"]["fit_config"]["segment_stride"] == 1
    refused = runner.invoke(main, [*args, "--segment-stride", "0"])
    assert refused.exit_code == 2
    assert refused.stderr.strip() == "Error: --bptt and --segment-stride must be at least 1"


@pytest.mark.parametrize(
    ("args", "cells"),
    [
        (["--cell", "segrnn"], ["segrnn"]),  # one segrnn network
        (["--ensemble-cells", "segrnn"], ["segrnn"]),
        (["--cell", "segrnn", "--ensemble", "2", "--ensemble-cells", "lstm,segrnn"], ["lstm", "segrnn"]),
        (["--cell", "segrnn", "--auto", "--time-budget", "5"], None),  # tries a GRU beside it
    ],
)
def test_cli_fits_and_serves_segrnn_as_the_cell(tmp_path, args, cells):
    """`--cell segrnn` (or a segrnn member beside another cell): fitted and forecast from the
    file like any other cell, not a traceback."""
    data = tmp_path / "level.csv"
    hourly_frame(series=2, length=240, growth=0.0).write_csv(data)
    model, out = tmp_path / "m.streamcast", tmp_path / "f.csv"
    runner = CliRunner()
    tiny = CLI_TINY[:-2] if "--auto" in args else CLI_TINY  # --auto chooses the members itself
    fitted = runner.invoke(main, ["fit", str(data), "-o", str(model), *tiny, *args, "-q"])
    assert fitted.exit_code == 0, fitted.output
    meta = read_metadata(model)
    served = (
        [m["cell"] for m in meta["info"]["members"]]
        if "members" in meta["info"]
        else [meta["model_config"]["cell"]]
    )
    if cells is not None:
        assert served == cells
    forecast = runner.invoke(main, ["forecast", str(data), "-m", str(model), "-o", str(out), "-q"])
    assert forecast.exit_code == 0, forecast.output
    frame = pl.read_csv(out)
    assert frame.height == 2 * 6 and frame["forecast"].is_finite().all()


def test_cli_a_model_without_segrnn_members_says_nothing_of_the_stride(tmp_path):
    """Other cells train on every step whatever `--segment-stride` says: nothing to report."""
    data = tmp_path / "level.csv"
    hourly_frame(series=2, length=240, growth=0.0).write_csv(data)
    model = tmp_path / "m.streamcast"
    runner = CliRunner()
    args = ["fit", str(data), "-o", str(model), *CLI_TINY, "--ensemble", "2", "--ensemble-cells", "lstm"]
    fitted = runner.invoke(main, args)
    assert fitted.exit_code == 0, fitted.output
    assert "wrote" in fitted.stderr and "segment-stride" not in fitted.stderr
    info = runner.invoke(main, ["info", str(model)])
    assert info.exit_code == 0 and "2 members (lstm, lstm)" in info.stdout
    assert "segment-stride" not in info.stdout


def test_the_segrnn_share_is_the_one_whose_blend_scores_best_on_validation():
    rng = np.random.default_rng(0)
    step, segment = (
        torch.from_numpy(rng.normal(size=(50, 6, 1))),
        torch.from_numpy(rng.normal(size=(50, 6, 1))),
    )
    truth = 0.25 * step + 0.75 * segment
    share, scores = segment_share(step, segment, lambda y: float(((y - truth) ** 2).mean()))
    assert share == 0.75
    assert len(scores) == 13 and min(scores) == scores[9] < 1e-12


def test_the_share_is_split_among_the_members_of_each_kind():
    assert share_weights(["lstm", "segrnn", "segrnn"], 0.5) == (0.5, 0.25, 0.25)
    assert share_weights(["lstm", "segrnn", "segrnn", "lstm"], 0.0) == (0.5, 0.0, 0.0, 0.5)


def test_a_weighted_mean_is_served_alike_by_torch_numpy_and_the_file(mixed, tmp_path):
    weights = mixed.net.weights
    share = mixed.info["segment_share"]["share"]
    assert weights == pytest.approx(share_weights(["lstm", "segrnn", "segrnn"], share))
    assert len(mixed.info["segment_share"]["val_losses"]) == 13
    x = torch.randn(2, 40, mixed.net.config.input_size)
    with torch.no_grad():
        features, _ = mixed.net.encode(x, mixed.net.init_state(2))
        members = mixed.net.decode_members(features)
        served = mixed.net.decode(features)
    expected = sum(w * members[..., m, :, :] for m, w in enumerate((0.2, 0.3, 0.5)))
    reweighted = EnsembleForecaster.of(list(mixed.net.members), "mean", (0.2, 0.3, 0.5))
    with torch.no_grad():
        torch.testing.assert_close(reweighted.decode(features), expected)
    torch.testing.assert_close(served, sum(w * members[..., m, :, :] for m, w in enumerate(weights)))
    path = save(mixed, tmp_path / "weighted.streamcast")
    assert read_metadata(path)["member_weights"] == pytest.approx(list(weights))
    assert load(path).net.weights == pytest.approx(weights)
    numpy_served = load_numpy(path)
    assert numpy_served.net.weights == pytest.approx(weights)
    with torch.no_grad():
        y, _ = mixed.net(x, mixed.net.init_state(2))
    y_np, _ = numpy_served.net(x.numpy(), numpy_served.net.init_state(2))
    np.testing.assert_allclose(y_np, y.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.5, 0.6, -0.1), (0.2, 0.2, 0.2)])
def test_weights_that_do_not_make_a_mean_are_refused(weights):
    with pytest.raises(ValueError, match="weights in \\[0, 1\\] summing to 1"):
        EnsembleForecaster([SEG, SEG, SEG], "mean", weights)


def test_a_weighted_mean_alone_makes_the_file_format_10(tiny_model, tmp_path):
    """A reader of 9 would serve the members unweighted: it must refuse the file instead."""
    lstm = tiny_model.net.config
    net = EnsembleForecaster([lstm, lstm], "mean", (0.25, 0.75))
    model = Forecaster(net, tiny_model.spec, tiny_model.scaler, tiny_model.columns, tiny_model.info)
    path = save(model, tmp_path / "weighted.streamcast")
    assert read_metadata(path)["format_version"] == 10
    assert load(path).net.weights == (0.25, 0.75)
