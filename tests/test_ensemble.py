"""`fit --ensemble N`: members trained apart, served as one file and one state by every command."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import safetensors.torch
import torch
from click.testing import CliRunner

import streamcast as sc
from streamcast import safefile
from streamcast.cli import main
from streamcast.forecaster import Forecaster
from streamcast.model import EnsembleForecaster, ModelConfig, RecurrentForecaster, median_of_members
from streamcast.online import LearnConfig
from streamcast.stepping import run_series
from streamcast.stream.engine import StreamConfig, stream
from streamcast.stream.input import Observations
from streamcast.stream.state import StreamState
from streamcast.training import member_seed
from tests.conftest import TINY, hourly_frame

ENSEMBLE = replace(TINY, ensemble=3, ensemble_cells=("lstm", "gru"), quantiles=(0.1, 0.9))


@pytest.fixture(scope="module")
def ensemble(tiny_data):
    return sc.fit(tiny_data, ENSEMBLE)


def member(model: Forecaster, m: int) -> Forecaster:
    """One member of an ensemble as a forecaster of its own."""
    return Forecaster(model.net.members[m], model.spec, model.scaler, model.columns, model.info)


def test_members_take_the_cells_in_turn_and_seeds_of_their_own(ensemble):
    assert isinstance(ensemble.net, EnsembleForecaster)
    assert [m.config.cell for m in ensemble.net.members] == ["lstm", "gru", "lstm"]
    seeds = [m["seed"] for m in ensemble.info["members"]]
    assert seeds[0] == ENSEMBLE.seed and len(set(seeds)) == 3  # the first member: --seed itself
    assert all(m["best_epoch"] >= 1 for m in ensemble.info["members"])
    assert np.isfinite(ensemble.info["ensemble_val_loss"])


def test_fits_under_different_seeds_share_no_member():
    """Under --seed + m, --seed 0 and --seed 1 shared two of three members, so a spread over
    successive seeds looked narrower than the noise it was to measure."""
    seeds = [member_seed(seed, m) for seed in range(200) for m in range(10)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**32 for s in seeds)
    assert [member_seed(7, 0), member_seed(-1, 0)] == [7, 2**32 - 1]  # wrapped as numpy takes seeds


def test_the_first_member_is_the_single_model_of_the_same_seed(tiny_data, ensemble):
    single = sc.fit(tiny_data, replace(ENSEMBLE, ensemble=1))
    first = ensemble.net.members[0].state_dict()
    for name, weight in single.net.state_dict().items():
        assert torch.equal(weight, first[name]), name


def test_the_forecast_is_the_median_of_the_members_forecasts(ensemble, tiny_data):
    net = EnsembleForecaster.of(list(ensemble.net.members), "median")
    got = sc.forecast(
        Forecaster(net, ensemble.spec, ensemble.scaler, ensemble.columns, ensemble.info), tiny_data
    )
    each = [sc.forecast(member(ensemble, m), tiny_data) for m in range(3)]
    for column in ("forecast", "q0.1", "q0.9"):
        members = np.stack([f[column].to_numpy() for f in each])
        np.testing.assert_allclose(got[column].to_numpy(), np.median(members, axis=0), rtol=1e-6)


def test_the_default_forecast_is_the_members_mean_in_the_networks_own_units(ensemble, tiny_data):
    assert ensemble.net.combine == "mean"
    # In the scaled (for positive data, log) units the network forecasts in: for data in logs the
    # served forecast is the members' geometric mean.
    torch.manual_seed(0)
    x = torch.randn(2, 9, ensemble.net.config.input_size)
    with torch.no_grad():
        y, _ = ensemble.net(x, ensemble.net.init_state(2))
        each, _ = ensemble.net.member_forward(x, ensemble.net.init_state(2))
    torch.testing.assert_close(y, each.sort(dim=-1).values.mean(dim=-3))
    got = sc.forecast(ensemble, tiny_data)["forecast"].to_numpy()
    members = np.stack([sc.forecast(member(ensemble, m), tiny_data)["forecast"].to_numpy() for m in range(3)])
    assert (members.min(axis=0) <= got + 1e-4).all() and (got <= members.max(axis=0) + 1e-4).all()


def test_the_file_keeps_how_members_combine_and_older_files_keep_the_median(ensemble, tmp_path):
    path = tmp_path / "e.streamcast"
    sc.save(
        Forecaster(
            EnsembleForecaster.of(list(ensemble.net.members), "median"),
            ensemble.spec,
            ensemble.scaler,
            ensemble.columns,
            ensemble.info,
        ),
        path,
    )
    assert sc.load(path).net.combine == "median"
    assert safefile.header(path.read_bytes())["format_version"] == 4  # as an older reader reads it
    sc.save(ensemble, path)
    assert sc.load(path).net.combine == "mean"
    raw = path.read_bytes()
    meta = safefile.header(raw)
    del meta["ensemble_combine"]  # as written before the mean was the default
    path.write_bytes(safefile.write(safetensors.torch.load(raw), meta))
    assert sc.load(path).net.combine == "median"


def test_cli_fit_ensemble_combine_is_an_option_and_info_shows_it(tmp_path, tiny_data):
    data = tmp_path / "d.csv"
    tiny_data.frame.write_csv(data)
    model = tmp_path / "m.streamcast"
    args = [
        "fit",
        str(data),
        "--horizon",
        "6",
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--ensemble",
        "2",
        "--quiet",
    ]
    result = CliRunner().invoke(main, [*args, "--ensemble-combine", "median", "-o", str(model)])
    assert result.exit_code == 0, result.output
    assert "their median served" in CliRunner().invoke(main, ["info", str(model)]).stdout
    bad = CliRunner().invoke(main, [*args, "--ensemble-combine", "max", "-o", str(model)])
    assert bad.exit_code == 2 and "--ensemble-combine" in bad.output


def test_the_median_of_an_even_number_of_members_is_the_mean_of_the_middle_two():
    y = torch.tensor([1.0, 5.0, 2.0, 9.0]).reshape(4, 1, 1)
    assert median_of_members(y).item() == 3.5


def test_ensemble_state_ticks_equal_one_batched_pass_and_forecasting_leaves_it_alone():
    torch.manual_seed(0)
    configs = [ModelConfig(input_size=3, cell=c, hidden_size=8, horizon=5, ar=6) for c in ("lstm", "gru")]
    net = EnsembleForecaster(configs).eval()
    x = torch.randn(2, 10, 3)
    with torch.no_grad():
        batched, final = net(x, net.init_state(2))
        state, ticks = net.init_state(2), []
        for t in range(10):
            given = tuple(s.clone() for s in state)
            y, new = net(x[:, t : t + 1], state)
            assert all(torch.equal(a, b) for a, b in zip(given, state, strict=True))  # passed, not moved
            state = new
            ticks.append(y)
    torch.testing.assert_close(torch.cat(ticks, dim=1), batched, rtol=1e-5, atol=1e-6)
    for a, b in zip(state, final, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scales", [("window", "window"), ("global", "window")])
def test_an_ensemble_decodes_exactly_as_its_members_alone(scales):
    """Members reading one shared window read it once; each forecast stays what the member alone
    gives, bit for bit, for members that read it alike and for members that do not."""
    torch.manual_seed(1)
    configs = [
        ModelConfig(input_size=3, cell="gru", hidden_size=8, horizon=5, ar=12, season=4, head_scale=h)
        for h in scales
    ]
    net = EnsembleForecaster(configs).eval()
    x = torch.randn(3, 7, 3)
    with torch.no_grad():
        features, _ = net.encode(x, net.init_state(3))
        picked = features[torch.tensor([0, 2]), torch.tensor([6, 3])]
        together = net.decode_members(picked)
        alone = [m.decode(f) for m, f in zip(net.members, picked.members, strict=True)]
    assert together.shape == (2, 2, 5, 1)
    for m, y in enumerate(alone):
        assert torch.equal(together[:, m], y)


def test_members_with_other_horizons_cannot_form_an_ensemble():
    with pytest.raises(ValueError, match="share inputs, horizon and quantiles"):
        EnsembleForecaster([ModelConfig(input_size=1, horizon=3), ModelConfig(input_size=1, horizon=4)])


def test_save_then_load_gives_identical_forecasts(ensemble, tiny_data, tmp_path):
    path = sc.save(ensemble, tmp_path / "e.streamcast")
    back = sc.load(path)
    assert isinstance(back.net, EnsembleForecaster) and len(back.net.members) == 3
    assert sc.forecast(back, tiny_data).equals(sc.forecast(ensemble, tiny_data))


def test_streaming_an_ensemble_ends_where_forecast_starts(ensemble, tiny_data):
    frame = tiny_data.frame
    state = StreamState(ensemble)
    rows = frame.sort("timestamp", "series_id").to_dicts()
    last = {}
    for batch in stream(ensemble, [Observations.from_records(rows, ensemble)], state):
        for r, sid in enumerate(batch.series_ids):
            last[sid] = batch.values[r, :, ensemble.point_index]
    expected = sc.forecast(ensemble, tiny_data)
    for sid, values in last.items():
        want = expected.filter(expected["series_id"] == sid)["forecast"].to_numpy()
        np.testing.assert_allclose(values, want, rtol=1e-4, atol=1e-4)


def test_online_learning_trains_every_member(ensemble, tiny_data):
    rows = hourly_frame(length=60).sort("timestamp", "series_id").to_dicts()
    state = StreamState(ensemble)
    config = StreamConfig(learn=LearnConfig(lr=1e-2, window=8, every=16))
    list(stream(ensemble, [Observations.from_records(rows, ensemble)], state, config))
    assert state.learner.steps > 0
    for before, after in zip(ensemble.net.members, state.learner.serving.members, strict=True):
        assert not torch.equal(before.head[-1].weight, after.head[-1].weight)


def test_run_series_of_an_ensemble_gives_the_models_output_shape(ensemble, tiny_data):
    inputs = ensemble.inputs(tiny_data.frame)
    outputs, state = run_series(ensemble.net, inputs.inputs, inputs.offsets, [np.array([5, 9])] * 3)
    assert outputs.shape == (6, ensemble.horizon, 3)
    assert len(state) == len(ensemble.net.init_state(1))


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


FAST = ["--hidden", "8", "--epochs", "1", "--horizon", "6", "--bptt", "16", "-q"]


def test_fit_ensemble_from_the_cli_is_served_by_forecast_and_shown_by_info(tmp_path):
    data = tmp_path / "d.csv"
    hourly_frame(series=2, length=120).write_csv(data)
    out = tmp_path / "e.streamcast"
    cells = [
        "--ensemble",
        "2",
        "--ensemble-cells",
        "lstm,gru",
        "--naive-fallback",
        "0",
    ]  # no blends (format 6)
    result = run(["fit", str(data), *FAST, *cells, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    meta = json.loads(run(["info", "--json", str(out)]).stdout)
    assert [m["cell"] for m in meta["member_configs"]] == ["lstm", "gru"]
    # ensembles came with 2, the whole-file checksum with 3, the members' mean with 5: a reader of
    # 4 would serve it as their median, so it asks for an upgrade instead
    assert meta["format_version"] == 5
    assert "ensemble" in run(["info", str(out)]).stdout
    forecast = run(["forecast", "-m", str(out), str(data)])
    assert forecast.exit_code == 0 and len(forecast.stdout.splitlines()) == 1 + 2 * 6


def test_fit_trains_an_ensemble_of_three_by_default(tmp_path):
    data = tmp_path / "d.csv"
    hourly_frame(series=2, length=120).write_csv(data)
    out = tmp_path / "m.streamcast"
    result = run(["fit", str(data), *FAST, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    meta = json.loads(run(["info", "--json", str(out)]).stdout)
    seeds = [m["seed"] for m in meta["info"]["members"]]
    assert seeds == [member_seed(0, m) for m in range(3)] and seeds[0] == 0 and len(set(seeds)) == 3


def test_fit_logs_which_member_each_epoch_trained(tmp_path):
    data = tmp_path / "d.csv"
    hourly_frame(series=2, length=120).write_csv(data)
    result = run(["fit", str(data), *FAST[:-1], "--ensemble", "2", "-o", str(tmp_path / "m.streamcast")])
    lines = result.stderr.splitlines()
    assert [line.split(" train_loss")[0] for line in lines if "grad_norm_median=" in line] == [
        "member 1/2 epoch 1",
        "member 2/2 epoch 1",
    ]
    assert any(line.startswith("ensemble of 2 members: val_loss=") for line in lines)
    assert any(line.startswith("member 1: best epoch 1 (1 epochs)") for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ensemble", "0"], "--ensemble must be between 1 and 64 members"),
        (["--ensemble-cells", "lstm,tcn"], "--ensemble-cells must name cells among"),
    ],
)
def test_impossible_ensembles_are_one_line_usage_errors(tmp_path, args, message):
    data = tmp_path / "d.csv"
    hourly_frame(series=1, length=120).write_csv(data)
    result = run(["fit", str(data), *FAST, *args, "-o", str(tmp_path / "m.streamcast")])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_single_model_is_not_wrapped(tiny_model):
    assert isinstance(tiny_model.net, RecurrentForecaster)
    assert "members" not in tiny_model.info
