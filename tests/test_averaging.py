"""`fit --average-epochs`: a member serves the mean of its best epochs' weights where that
scores better on the validation part, and its best epoch's weights otherwise."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from streamcast import FitConfig, fit, read_series
from streamcast.averaging import AVERAGE_EPOCHS, BestEpochs
from streamcast.cli import main
from streamcast.modelfile import load as load_model
from tests.conftest import TINY, hourly_frame

# Six epochs on these series: the mean of epochs 4-6 scores better than epoch 5 alone (seed 1),
# and no mean does better than epoch 3 alone (seed 0). Both checked below, not assumed.
KEPT = replace(TINY, epochs=6, seed=1, average_epochs=3)
DROPPED = replace(TINY, epochs=6, seed=0, average_epochs=3)


def weights(**values: float) -> dict[str, torch.Tensor]:
    return {name: torch.tensor([value]) for name, value in values.items()}


def test_best_epochs_keeps_the_lowest_losses_as_copies():
    best = BestEpochs(2)
    live = weights(w=1.0)
    best.offer(0.5, 1, live)
    live["w"].fill_(9.0)  # training goes on in place: what was kept must not move with it
    best.offer(0.3, 2, weights(w=3.0))
    best.offer(0.9, 3, weights(w=5.0))  # worse than both kept
    best.offer(float("nan"), 4, weights(w=7.0))  # a diverged epoch is never among the best
    assert best.epochs == (1, 2)
    assert best.mean()["w"].item() == 2.0


def test_an_equal_loss_keeps_the_earlier_epoch():
    best = BestEpochs(2)
    for epoch, w in ((1, 1.0), (2, 2.0), (3, 3.0)):
        best.offer(0.5, epoch, weights(w=w))
    assert best.epochs == (1, 2)


def test_the_mean_of_one_epoch_is_none_and_count_1_keeps_nothing():
    one = BestEpochs(3)
    one.offer(0.5, 1, weights(w=1.0))
    assert one.mean() is None
    off = BestEpochs(1)
    off.offer(0.5, 1, weights(w=1.0))
    off.offer(0.4, 2, weights(w=2.0))
    assert off.epochs == () and off.mean() is None


def test_a_weight_the_same_in_every_epoch_comes_back_to_the_bit():
    fixed = torch.tensor([0.1, 1 / 3, 7e-8, -2.5e6], dtype=torch.float32)
    best = BestEpochs(3)
    for epoch in (1, 2, 3):
        best.offer(0.1 * epoch, epoch, {"fixed": fixed.clone(), "steps": torch.tensor([epoch])})
    mean = best.mean()
    assert torch.equal(mean["fixed"], fixed) and mean["fixed"].dtype == torch.float32
    assert mean["steps"].item() == 1  # not floating point: the best epoch's


def test_fit_serves_the_mean_of_the_best_epochs_where_it_validates_better(monkeypatch):
    offered: dict[int, dict[str, torch.Tensor]] = {}
    real_offer = BestEpochs.offer

    def spy(self, loss, epoch, state):
        offered[epoch] = {k: v.clone() for k, v in state.items()}
        real_offer(self, loss, epoch, state)

    monkeypatch.setattr(BestEpochs, "offer", spy)
    model = fit(read_series(hourly_frame(series=3, seed=1)), KEPT)
    history = [h["val_loss"] for h in model.info["history"]]
    averaged = model.info["averaged"]
    assert len(averaged) == 3
    assert sorted(history)[:3] == sorted(history[e - 1] for e in averaged)  # the three best epochs
    assert model.info["averaged_val_loss"] < min(history)
    for name, served in model.net.state_dict().items():
        mean = sum(offered[e][name].double() for e in averaged) / 3
        torch.testing.assert_close(served, mean.to(served.dtype), rtol=0, atol=0)


def test_fit_keeps_the_best_epoch_where_the_mean_does_no_better():
    data = read_series(hourly_frame(series=3, seed=0))
    model = fit(data, DROPPED)
    alone = fit(data, replace(DROPPED, average_epochs=1))
    assert model.info["averaged"] == [] and model.info["averaged_val_loss"] is None
    for name, served in model.net.state_dict().items():
        assert torch.equal(served, alone.net.state_dict()[name])


def test_each_member_averages_on_its_own(tmp_path):
    model = fit(read_series(hourly_frame(series=3, seed=1)), replace(KEPT, ensemble=2))
    members = model.info["members"]
    assert members[0]["averaged"] == model.info["averaged"] and len(members[0]["averaged"]) == 3
    assert members[0]["val_loss"] == model.info["averaged_val_loss"]  # what member 1 serves


def test_the_default_is_three_epochs():
    assert FitConfig().average_epochs == AVERAGE_EPOCHS == 3
    option = next(p for p in main.commands["fit"].params if p.name == "average_epochs")
    assert option.default == AVERAGE_EPOCHS  # the CLI's literal default (no torch for --help)


CLI = ["--hidden", "8", "--epochs", "6", "--horizon", "6", "--bptt", "16", "--batch-size", "8"]
CLI += ["--ensemble", "1", "--naive-fallback", "0", "--val-size", "6", "--ar", "168", "--seed", "1"]


def test_fit_says_whose_mean_it_serves_and_info_shows_it(tmp_path):
    path = tmp_path / "load.csv"
    hourly_frame(series=3, seed=1).write_csv(path)
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(main, ["fit", str(path), *CLI, "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    model = load_model(out)
    epochs = ", ".join(str(e) for e in model.info["averaged"])
    assert len(model.info["averaged"]) == 3
    assert f"weights: the mean of epochs {epochs}, val_loss=" in result.stderr
    shown = CliRunner().invoke(main, ["info", str(out)], catch_exceptions=False)
    assert shown.exit_code == 0
    assert f"the mean of epochs {epochs}" in shown.stdout


@pytest.mark.parametrize("count", ["0", "-2"])
def test_average_epochs_under_1_is_a_usage_error(tmp_path, count):
    path = tmp_path / "load.csv"
    hourly_frame(series=2, length=120).write_csv(path)
    result = CliRunner().invoke(main, ["fit", str(path), *CLI, "--average-epochs", count])
    assert result.exit_code == 2
    assert result.stderr == "Error: --average-epochs must be at least 1 (1: the best epoch alone)\n"


def test_fit_counts_the_members_that_serve_a_mean(tmp_path):
    path = tmp_path / "load.csv"
    hourly_frame(series=3, seed=1).write_csv(path)
    out = tmp_path / "m.safetensors"
    args = ["fit", str(path), *CLI, "--ensemble", "3", "--jobs", "1", "-o", str(out)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    members = load_model(out).info["members"]
    count = sum(bool(m["averaged"]) for m in members)
    assert count >= 1  # member 1 is the single model above, which serves a mean
    assert f"weights: the mean of the best epochs in {count} of 3 members (--average-epochs)" in result.stderr
