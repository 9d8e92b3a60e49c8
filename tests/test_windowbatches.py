"""`--segment-batches`: segrnn members trained on windows drawn at random from every lane step,
the windows serving holds, as many a epoch as a strided lane epoch, reproducibly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

import streamcast as sc
from streamcast import training
from streamcast.cli import main
from streamcast.errors import UsageError
from streamcast.model import RecurrentForecaster
from streamcast.modelheader import read_metadata
from streamcast.reading import read_series
from streamcast.windowbatches import epoch_draw, loss_steps, member_batches, window_forecasts, windows_at
from tests.conftest import CLI_TINY, TINY, hourly_frame


@pytest.fixture(scope="module")
def level_data():
    return read_series(hourly_frame(series=3, length=240, growth=0.0))


def test_mixed_alternates_the_segrnn_members_and_leaves_other_cells_on_lanes():
    cells = ["lstm", "segrnn", "segrnn", "gru", "segrnn"]
    assert member_batches("mixed", cells) == ["lanes", "lanes", "random", "lanes", "lanes"]
    assert member_batches("random", cells) == ["lanes", "random", "random", "lanes", "random"]
    assert member_batches("lanes", cells) == ["lanes"] * 5
    assert member_batches("mixed", ["segrnn"]) == ["lanes"]  # one segrnn network trains as before


@pytest.mark.parametrize("known", [False, True])
def test_a_drawn_window_forecasts_what_the_lane_forecasts_at_that_step(known):
    """The window is the one a lane carries to that step: the values before it, zeros before its
    series' start, for lanes starting at a series' start and mid-series alike; with the inputs
    known ahead (a future covariate) where the model reads them."""
    frame = hourly_frame(series=3, length=1200, growth=0.0)
    frame = frame.with_columns(temperature=(pl.col("value") * 0.1).sin())
    data = read_series(frame, target="value", future_covariates=["temperature"] if known else [])
    prepared = training.prepare(data, replace(TINY, cell="segrnn", ar=48, bptt=4, batch_size=6))
    model = training.member_config(prepared.model_config, "segrnn", 0)
    assert (model.known > 0) == known
    torch.manual_seed(0)
    net = RecurrentForecaster(model).eval()
    if known:
        with torch.no_grad():
            net.known.normal_()  # started at zero: make the known inputs count
    work, lanes = prepared.work, prepared.work.lanes
    assert len(lanes) > len(data.series_ids)  # some lanes start mid-series
    which = np.arange(len(lanes))
    rows = torch.from_numpy(lanes.rows[which])
    with torch.no_grad():
        walked, _ = net(work.table[rows], training.lane_state(net, work.values, lanes, which))
        steps = lanes.rows[which].reshape(-1)
        origins = np.repeat(lanes.origins[which], lanes.rows.shape[1])
        windows = windows_at(work.values, steps, origins, model.ar)
        drawn = window_forecasts(net, windows, work.table[torch.from_numpy(steps)])
    real = torch.from_numpy((np.arange(lanes.rows.shape[1]) < lanes.lengths[:, None]).reshape(-1))
    assert (~real).any()  # the padding of shorter lanes repeats a row: no window to compare
    walked = walked.reshape(-1, *walked.shape[2:])
    torch.testing.assert_close(drawn[real, 0], walked[real], rtol=0, atol=1e-6)
    assert (windows[0] == 0).any()  # a series' start


def test_an_epoch_draws_a_strided_epochs_count_from_every_series(level_data, monkeypatch):
    calls: list[np.ndarray] = []

    real = training._window_loss_terms  # the loss of one batch of drawn windows

    def spy(net, work, config, rows, origins):
        calls.append(rows.copy())
        return real(net, work, config, rows, origins)

    monkeypatch.setattr(training, "_window_loss_terms", spy)
    config = replace(TINY, cell="segrnn", segment_batches="random", segment_stride=3, epochs=1, ar=48)
    fitted = sc.fit(level_data, config)
    rows, _ = loss_steps(training.prepare(level_data, config).work.lanes)
    drawn = np.concatenate(calls)
    assert len(drawn) == len(rows) // 3 and len(set(drawn.tolist())) == len(drawn)  # none twice
    assert set(drawn.tolist()) <= set(rows.tolist())  # every one a training step
    size = training.windows_per_batch(fitted.info["batch_size"], config.bptt, 3)
    assert [len(c) for c in calls[:-1]] == [size] * (len(calls) - 1)
    assert len({int(r) // 240 for r in drawn}) == 3  # all three series (240 rows each) in the epoch
    steps = training._steps_per_epoch(training.prepare(level_data, config).work, config, True)
    assert len(calls) == steps  # what a warm-up-cosine schedule counts on


def test_random_windows_reproduce_under_a_seed_and_differ_from_lanes(level_data):
    config = replace(TINY, cell="segrnn", segment_batches="random", ar=48)
    one, again = sc.fit(level_data, config), sc.fit(level_data, config)
    lanes = sc.fit(level_data, replace(config, segment_batches="lanes"))
    for name, weight in one.net.state_dict().items():
        torch.testing.assert_close(again.net.state_dict()[name], weight, rtol=0, atol=0)
    assert not torch.equal(one.net.segments.out.weight, lanes.net.segments.out.weight)
    assert np.isfinite(one.info["history"][-1]["train_loss"])


def test_an_epoch_draw_covers_a_stride_of_the_steps_once_each():
    rng = np.random.default_rng(0)
    drawn = epoch_draw(rng, 100, 4)
    assert len(drawn) == 25 and len(set(drawn.tolist())) == 25 and drawn.max() < 100
    assert len(epoch_draw(rng, 3, 4)) == 1  # never an empty epoch


def test_the_default_ensemble_trains_its_second_segrnn_member_on_random_windows(level_data):
    fitted = sc.fit(level_data, replace(TINY, ensemble=3))
    members = fitted.info["members"]
    assert [(m["cell"], m["batches"]) for m in members] == [
        ("lstm", "lanes"),
        ("segrnn", "lanes"),
        ("segrnn", "random"),
    ]
    assert fitted.info["fit_config"]["segment_batches"] == "mixed"


def test_an_unknown_segment_batches_is_refused():
    with pytest.raises(UsageError, match="--segment-batches must be one of mixed, lanes, random"):
        sc.FitConfig(segment_batches="shuffled")


def test_cli_segment_batches_says_which_members_drew_random_windows(tmp_path):
    data = tmp_path / "level.csv"
    hourly_frame(series=2, length=240, growth=0.0).write_csv(data)
    model = tmp_path / "m.streamcast"
    runner = CliRunner()
    args = ["fit", str(data), "-o", str(model), *CLI_TINY]
    said = {
        ("--ensemble", "3"): "member 2 on lanes, member 3 on random windows (--segment-batches)",
        (
            "--ensemble",
            "3",
            "--segment-batches",
            "random",
        ): "member 2, 3 on random windows (--segment-batches)",
        (
            "--cell",
            "segrnn",
            "--segment-batches",
            "random",
        ): "one step in 4 (--segment-stride) on random windows",
    }
    for extra, line in said.items():
        fitted = runner.invoke(main, [*args, *extra])
        assert fitted.exit_code == 0, fitted.output
        assert line in fitted.stderr
        info = " ".join(runner.invoke(main, ["info", str(model)]).stdout.replace("│", " ").split())
        assert line in info
    lanes = runner.invoke(main, [*args, "--ensemble", "3", "--segment-batches", "lanes"])
    assert lanes.exit_code == 0 and "random windows" not in lanes.stderr
    assert [m["batches"] for m in read_metadata(model)["info"]["members"]] == ["lanes"] * 3
    refused = runner.invoke(main, [*args, "--segment-batches", "shuffled"])
    assert refused.exit_code == 2
    assert "Invalid value for '--segment-batches'" in refused.stderr
    served = runner.invoke(main, ["forecast", str(data), "-m", str(model), "-q"])
    assert served.exit_code == 0, served.output
    assert served.stdout.count("\n") == 1 + 2 * 6  # a header, 6 steps of each series
