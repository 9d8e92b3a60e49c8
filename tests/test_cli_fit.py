"""`streamcast fit` and `streamcast info` end to end through click's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

import streamcast
from streamcast.cli import main
from tests.conftest import hourly_frame

FAST = ["--hidden", "8", "--epochs", "2", "--horizon", "6", "--bptt", "16", "--ensemble", "1", "-q"]


@pytest.fixture
def csv_path(tmp_path):
    path = tmp_path / "load.csv"
    hourly_frame(series=2, length=120).write_csv(path)
    return path


def run(args, **kwargs):
    return CliRunner().invoke(main, args, catch_exceptions=False, **kwargs)


def test_version_prints_the_package_version():
    result = run(["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"streamcast, version {streamcast.__version__}\n"


def test_fit_writes_the_default_model_in_the_working_directory(tmp_path, csv_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(["fit", str(csv_path), *FAST])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # stdout is for data only
    meta = json.loads(run(["info", "--json"]).stdout)
    assert meta["info"]["data"]["source"] == str(csv_path)
    assert meta["info"]["data"]["fingerprint"].startswith("sha256:")
    assert meta["model_config"]["horizon"] == 6
    assert meta["columns"] == {
        "id": "series_id",
        "time": "timestamp",
        "target": "value",
        "covariates": [],
    }


def test_fit_logs_one_plain_line_per_epoch_when_not_on_a_terminal(tmp_path, csv_path):
    out = tmp_path / "m.streamcast"
    result = run(["fit", str(csv_path), *FAST[:-1], "-o", str(out)])
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2
    assert "grad_norm_median=" in epochs[0] and "clipped=" in epochs[0] and "reach=" in epochs[0]
    assert any(line.startswith("gradient health:") for line in lines)
    assert lines[-1] == f"wrote {out}"
    assert "\x1b[" not in result.stderr  # no colours or cursor codes in a log


@pytest.mark.parametrize("cell", ["rnn", "rnn-relu", "lstm", "gru"])
def test_fit_trains_every_cell_from_the_cli(tmp_path, csv_path, cell):
    out = tmp_path / f"{cell}.streamcast"
    result = run(
        [
            "fit",
            str(csv_path),
            *FAST,
            "--cell",
            cell,
            "--conv",
            "3",
            "--quantiles",
            "0.1,0.9",
            "-o",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.stderr
    meta = json.loads(run(["info", str(out), "--json"]).stdout)
    assert meta["model_config"]["cell"] == cell
    assert meta["model_config"]["quantiles"] == [0.1, 0.5, 0.9]


def test_info_shows_a_table_of_the_model(tmp_path, csv_path):
    out = tmp_path / "m.streamcast"
    run(["fit", str(csv_path), *FAST, "-o", str(out)])
    result = run(["info", str(out)])
    assert result.exit_code == 0
    for word in ("cell", "lstm hidden=8", "horizon", "gradient health", "frequency", "1h"):
        assert word in result.stdout


def test_fit_on_a_missing_file_is_one_line_and_exit_1(tmp_path):
    result = run(["fit", str(tmp_path / "nope.csv"), *FAST])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: ")
    assert "nope.csv" in result.stderr


def test_fit_with_bad_quantiles_is_a_usage_error(csv_path):
    result = run(["fit", str(csv_path), *FAST, "--quantiles", "0.1,abc"])
    assert result.exit_code == 2
    assert (
        result.stderr
        == "Error: --quantiles takes numbers separated by commas, e.g. 0.1,0.5,0.9; got '0.1,abc'\n"
    )


def test_fit_with_a_series_too_short_names_it(tmp_path):
    path = tmp_path / "short.csv"
    hourly_frame(series=1, length=10).write_csv(path)
    result = run(["fit", str(path), *FAST])
    assert result.exit_code == 1
    assert "series 's0' has 10 points but fit needs at least 14" in result.stderr


def test_info_on_a_file_that_is_not_a_model(tmp_path):
    path = tmp_path / "x.streamcast"
    path.write_text("hello, this is plain text")
    result = run(["info", str(path)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {path}: not a streamcast model file (bad header)\n"


def test_fit_on_a_folder_without_parquet_files_says_so(tmp_path):
    result = run(["fit", str(tmp_path), *FAST])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: '{tmp_path}' is a folder with no Parquet files: give a Parquet or CSV file, "
        "or a folder or glob of .parquet files (a dataset)\n"
    )


def test_fit_refuses_a_model_path_that_is_a_folder_before_training(tmp_path, csv_path):
    result = run(["fit", str(csv_path), *FAST, "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.endswith(
        f"Error: Invalid value for '-o' / '--output': File '{tmp_path}' is a directory.\n"
    )


def test_fit_refuses_to_write_the_model_over_its_own_data(csv_path):
    result = run(["fit", str(csv_path), "-o", str(csv_path), *FAST])
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"Error: -o {csv_path} is the data file: the model would overwrite it; choose another path\n"
    )
    assert csv_path.read_text().startswith("series_id,timestamp,value")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--patience", "0"], "--patience must be at least 1 epoch"),
        (["--weight-decay", "-1"], "--weight-decay must be >= 0"),
        (["--lr", "inf"], "--lr must be a positive number"),
        (["--seed", "-1"], "--seed must be between 0 and 2**32 - 1"),
        (["--covariate", "value", "--covariate", "value"], "each --covariate may be given once"),
    ],
)
def test_fit_refuses_options_that_cannot_train(csv_path, option, message):
    result = run(["fit", str(csv_path), *FAST, *option])
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}\n"


def test_ctrl_c_keeps_the_best_model_and_exits_130(tmp_path, csv_path, monkeypatch):
    from streamcast.display import FitProgress

    def interrupt_after_epoch_1(self, stats):
        self.rows.append(stats)
        raise KeyboardInterrupt

    monkeypatch.setattr(FitProgress, "epoch", interrupt_after_epoch_1)
    out = tmp_path / "m.streamcast"
    result = run(["fit", str(csv_path), "-o", str(out), *FAST[:-1]])
    assert result.exit_code == 130
    assert "best epoch 1 (interrupted, best kept)" in result.stderr
    assert streamcast.load(out).info["interrupted"] is True


def test_info_json_is_strict_json_even_after_a_diverged_epoch(tmp_path, csv_path):
    out = tmp_path / "m.streamcast"
    assert run(["fit", str(csv_path), "-o", str(out), *FAST]).exit_code == 0
    model = streamcast.load(out)
    model.info["history"][0]["val_loss"] = float("nan")
    streamcast.save(model, out)
    text = run(["info", str(out), "--json"]).stdout
    meta = json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in JSON"))
    assert meta["info"]["history"][0]["val_loss"] is None


def test_info_names_the_pinball_loss_of_a_quantile_model(tmp_path, csv_path):
    out = tmp_path / "q.streamcast"
    assert run(["fit", str(csv_path), "-o", str(out), *FAST, "--quantiles", "0.1,0.9"]).exit_code == 0
    assert "(pinball, scaled, series weighted soft-mase)" in run(["info", str(out)]).stdout


def test_the_live_table_shows_skipped_steps_lr_and_an_eta():
    from rich.console import Console

    from streamcast.display import FitProgress
    from streamcast.training import EpochStats

    progress = FitProgress(epochs=10)
    for epoch in (1, 2):
        progress.rows.append(EpochStats(epoch, 0.5, 0.4, 0.1, 0.2, 0.0, 3, 20, 0.003, 2.0, 1000.0))
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(progress._table())
    text = console.export_text()
    assert "skipped" in text and "lr" in text and "0.003" in text
    assert "ETA at most 16s (8 epochs left)" in text


def test_the_eta_counts_each_members_epochs_and_members_trained_side_by_side():
    from rich.console import Console

    from streamcast.display import FitProgress
    from streamcast.training import EpochStats

    def eta(order):
        progress = FitProgress(epochs=10, members=2)
        for member, epoch in order:
            progress.rows.append(
                EpochStats(epoch, 0.5, 0.4, 0.1, 0.2, 0.0, 0, 20, 0.003, 2.0, 1000.0, member=member)
            )
        console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
        console.print(progress._table())
        return console.export_text()

    assert "ETA at most 34s (17 epochs left)" in eta([(1, 1), (1, 2), (2, 1)])  # in turn
    # Two at once: 16 epochs' work shared by two, and at most what the longer may run alone.
    assert "ETA at most 24s (16 epochs left)" in eta([(1, 1), (2, 1), (1, 2), (2, 2)])


def test_val_size_is_checked_against_the_horizon_taken_from_the_data(tmp_path):
    """Daily data without --horizon forecasts 14 steps: --val-size 20 is enough, 10 is not."""
    import polars as pl

    daily = tmp_path / "daily.csv"
    days = pl.datetime(2024, 1, 1) + pl.duration(days=pl.int_range(pl.len()).over("series_id"))
    hourly_frame(series=2, length=200).with_columns(timestamp=days).write_csv(daily)
    args = ["fit", str(daily), "--epochs", "1", "--hidden", "8", "--ensemble", "1", "-o", str(tmp_path / "d")]
    fitted = CliRunner().invoke(main, [*args, "--val-size", "20"])
    assert fitted.exit_code == 0, fitted.output
    assert streamcast.load(tmp_path / "d").horizon == 14
    short = CliRunner().invoke(main, [*args, "--val-size", "10"])
    assert short.exit_code == 2 and "--val-size must be >= --horizon (10 < 14)" in short.output


def test_fit_learns_smoothed_lags_that_forecast_and_stream_serve(tmp_path, csv_path):
    out = tmp_path / "smoothed.streamcast"
    result = run(
        [
            "fit",
            str(csv_path),
            *FAST[:-3],
            "--ensemble",
            "2",
            "--lag-inputs",
            "smoothed",
            "-q",
            "-o",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.stderr
    meta = json.loads(run(["info", str(out), "--json"]).stdout)
    assert meta["model_config"]["lag_inputs"] == "smoothed"
    model = streamcast.load(out)
    decays = [m.lag_decay.detach() for m in model.net.members]
    assert all(d.shape == (2,) and d.abs().min() > 0 for d in decays)  # trained from 0, each its own
    assert not torch.equal(decays[0], decays[1])
    forecast = run(["forecast", "-m", str(out), str(csv_path), "-o", str(tmp_path / "f.csv")])
    assert forecast.exit_code == 0, forecast.stderr
    assert pl.read_csv(tmp_path / "f.csv")["forecast"].is_finite().all()
    lines = "".join(f"s{i % 2},2024-01-06 {i // 2:02d}:00,{10 + i}\n" for i in range(8))
    served = {}
    for device in ("cpu", "auto"):  # numpy's twin and torch serve the same forecasts
        done = subprocess.run(
            [sys.executable, "-m", "streamcast", "stream", "-m", str(out), "--device", device, "-q"],
            input=lines.encode(),
            capture_output=True,
            check=True,
        )
        served[device] = [json.loads(line)["forecast"] for line in done.stdout.splitlines()]
    assert len(served["cpu"]) == 8
    np.testing.assert_allclose(served["cpu"], served["auto"], rtol=1e-4)
