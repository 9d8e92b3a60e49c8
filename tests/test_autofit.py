"""`fit --auto`: candidates within a time budget, the best kept, what was tried recorded."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from streamcast.autofit import candidate_plans, fit_auto
from streamcast.cli import main
from streamcast.errors import UsageError
from streamcast.training import prepare
from tests.conftest import TINY, hourly_frame


def test_candidates_change_one_thing_at_a_time_from_the_defaults(tiny_data):
    plans = candidate_plans(prepare(tiny_data, TINY))
    base = plans[0].model
    # The defaults, with what `prepare` resolved: --loss auto is MAE, --scaling auto the mean and
    # --lag-inputs auto the smoothed lags and --series-weight auto soft-mase for the positive tiny
    # series (in logs); an LSTM walks lanes (`--segment-batches` is for segrnn members).
    resolved = replace(
        TINY,
        loss="mae",
        scaling="mean",
        lag_inputs="smoothed",
        series_weight="soft-mase",
        segment_batches="lanes",
    )
    assert plans[0].config == resolved and plans[0].seed == TINY.seed
    assert plans[1].model.cell == "gru"
    assert plans[2].model.hidden_size == 2 * base.hidden_size
    assert plans[3].config.lr == pytest.approx(TINY.lr / 3)
    assert plans[4].model.ar == 2 * base.ar and plans[4].model.net_window == 2 * base.net_window
    assert plans[5].model == base and plans[5].seed != plans[0].seed
    assert len({p.seed for p in plans}) == len(plans)


def test_auto_keeps_the_candidate_or_the_few_that_validate_best(tiny_data):
    model = fit_auto(tiny_data, replace(TINY, epochs=1), time_budget=600)
    auto = model.info["auto"]
    assert len(auto["tried"]) == 6
    losses = [t["val_loss"] for t in auto["tried"]]
    best = min(losses)
    if len(auto["chosen"]) == 1:
        assert losses[auto["chosen"][0] - 1] == best
        assert model.info["history"][model.info["best_epoch"] - 1]["val_loss"] == best
    else:
        assert sorted(losses[i - 1] for i in auto["chosen"]) == sorted(losses)[: len(auto["chosen"])]
        assert model.info["ensemble_val_loss"] < best


def test_no_candidate_starts_after_the_budget(tiny_data):
    model = fit_auto(tiny_data, replace(TINY, epochs=50, patience=50), time_budget=0.01)
    tried = model.info["auto"]["tried"]
    assert len(tried) == 1 and tried[0]["epochs"] == 1  # one epoch always, then the deadline holds


def test_auto_chooses_its_own_members_and_refuses_a_budget_that_is_not_positive(tiny_data):
    model = fit_auto(tiny_data, replace(TINY, ensemble=5), time_budget=0.01)
    assert len(model.info["auto"]["tried"]) == 1  # the budget, not --ensemble, decides
    with pytest.raises(UsageError, match="--time-budget must be a positive"):
        fit_auto(tiny_data, TINY, time_budget=0)


def test_fit_auto_from_the_cli_reports_what_it_tried(tmp_path):
    data = tmp_path / "d.csv"
    hourly_frame(series=2, length=120).write_csv(data)
    out = tmp_path / "m.streamcast"
    fast = ["--hidden", "8", "--epochs", "1", "--horizon", "6", "--bptt", "16"]
    runner = CliRunner()
    result = runner.invoke(main, ["fit", str(data), *fast, "--auto", "--time-budget", "600", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    tried = [line for line in result.stderr.splitlines() if line.startswith("tried ")]
    assert len(tried) == 6 and any(line.endswith("*chosen") for line in tried)
    assert any(line.startswith("candidate 6 epoch 1") for line in result.stderr.splitlines())
    meta = json.loads(runner.invoke(main, ["info", "--json", str(out)]).stdout)
    assert len(meta["info"]["auto"]["tried"]) == 6
    bad = runner.invoke(main, ["fit", str(data), *fast, "--auto", "--time-budget", "0"])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1 and "--time-budget" in bad.stderr
    both = runner.invoke(main, ["fit", str(data), *fast, "--auto", "--ensemble", "2"])
    assert both.exit_code == 2 and "leave out --ensemble" in both.stderr
