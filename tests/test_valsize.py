"""`--val-size` by default: about 40,000 validation points over all series, within the horizon
and a fifth of what the shortest series that trains has beyond its first 1,000 points."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.shortseries import needed_points
from streamcast.valsize import default_val_size
from tests.conftest import CLI_TINY, hourly_frame


def test_many_short_series_keep_one_horizon_and_few_long_ones_get_more():
    assert default_val_size(np.full(414, 700), 48) == 48  # M4 Hourly: 414 x 48 points already
    assert default_val_size(np.full(60, 652), 48) == 48  # few, but short: every point trains
    assert default_val_size(np.array([8640]), 96) == (8640 - 1000) // 5  # one long series
    assert default_val_size(np.full(7, 8640), 96) == 1528  # ETTh1's seven columns
    assert default_val_size(np.full(7, 34560), 96) == 5715  # ETTm1's: 40,000 points over seven
    assert default_val_size(np.full(10, 60), 24) == 24  # never under the horizon


def test_the_default_never_makes_a_series_too_short_to_train():
    lengths = np.array([10, 1300, 5000, 5000])  # 10 is too short even for a horizon's validation
    val = default_val_size(lengths, 6)
    assert val == (1300 - 1000) // 5  # the shortest series that trains sets the bound, not the one left out
    assert (lengths[1:] >= needed_points(6, val)).all()
    assert default_val_size(np.array([10, 12]), 6) == 6  # none trains: the horizon, and fit says why


class _TwoRanks:
    """A torchrun stand-in: the other rank holds one series of 1,600 points."""

    def sum(self, values):
        return np.asarray(values, dtype=np.float64) + 1

    def min(self, values):
        return np.minimum(np.asarray(values, dtype=np.float64), 1600)


def test_under_torchrun_every_ranks_series_count():
    assert default_val_size(np.array([3000]), 6) == 2000 // 5
    assert default_val_size(np.array([3000]), 6, _TwoRanks()) == 600 // 5


def test_fit_records_and_info_shows_the_validation_part(tmp_path):
    data = tmp_path / "d.csv"
    hourly_frame(series=2, length=1300, growth=0.0).write_csv(data)
    out = tmp_path / "m.streamcast"
    runner = CliRunner()
    fitted = runner.invoke(main, ["fit", str(data), *CLI_TINY, "-o", str(out)])
    assert fitted.exit_code == 0
    assert "validation: the last 60 steps of each series, not trained on" in fitted.stderr
    assert sc.load(out).info["val_size"] == 300 // 5
    assert "the last 60 steps of each series" in runner.invoke(main, ["info", str(out)]).stdout
    given = runner.invoke(main, ["fit", str(data), *CLI_TINY, "--val-size", "12", "-o", str(out)])
    assert given.exit_code == 0 and sc.load(out).info["val_size"] == 12
    assert "validation:" not in given.stderr  # asked for: nothing to say


def test_fit_auto_sizes_the_validation_part_the_same_way():
    from dataclasses import replace

    from streamcast.autofit import fit_auto
    from tests.conftest import TINY

    data = sc.read_series(hourly_frame(series=2, length=1300, growth=0.0))
    model = fit_auto(data, replace(TINY, val_size=None, epochs=1), time_budget=0.01)
    assert model.info["val_size"] == 300 // 5 and model.info["val_size_chosen"]
    given = fit_auto(data, replace(TINY, epochs=1), time_budget=0.01)  # TINY asks for 6
    assert given.info["val_size"] == 6 and "val_size_chosen" not in given.info
