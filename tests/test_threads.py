"""Torch threads (and numpy's BLAS threads, where `stream` serves the network's numpy mirror): one
by default in every command and library entry point, `--threads N`, `threads=N` or
STREAMCAST_THREADS for more, and a count below one refused on one line."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.model import RecurrentForecaster
from streamcast.numpy_net import NumpyForecaster
from streamcast.stream.engine import Observations
from streamcast.threads import _blas
from tests.conftest import TINY, hourly_frame

pytest.importorskip("matplotlib")

FAST_FIT = ["--hidden", "8", "--epochs", "1", "--horizon", "6", "--bptt", "16", "--ensemble", "1", "-q"]


def blas_threads() -> int:
    (count,) = {lib.get_num_threads() for lib in _blas().lib_controllers}
    return count


@pytest.fixture
def seen(monkeypatch) -> list[int]:
    """The thread count at every pass of the network's recurrent encoder, whoever runs it:
    torch's for torch's network, numpy's BLAS's for its numpy mirror (`stream` on the CPU)."""
    counts: list[int] = []
    for network, threads in ((RecurrentForecaster, torch.get_num_threads), (NumpyForecaster, blas_threads)):

        def recording(self, *args, _encode=network.encode, _threads=threads, **kwargs):
            counts.append(_threads())
            return _encode(self, *args, **kwargs)

        monkeypatch.setattr(network, "encode", recording)
    return counts


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("threads")
    hourly_frame(length=200).write_csv(folder / "data.csv")
    sc.save(tiny_model, folder / "model.streamcast")
    return folder


def commands(files) -> dict[str, tuple[list[str], str | None]]:
    """Each command that runs torch, as a quick run on the tiny files: (arguments, stdin)."""
    data, model = str(files / "data.csv"), str(files / "model.streamcast")
    return {
        "fit": (["fit", data, "-o", str(files / "fitted.streamcast"), *FAST_FIT], None),
        "forecast": (["forecast", data, "-m", model, "-q"], None),
        "backtest": (["backtest", data, *FAST_FIT, "--windows", "2", "--json"], None),
        "plot": (["plot", data, "-m", model, "-o", str(files / "plot.png"), "-q"], None),
        "stream": (["stream", "-m", model, "-q"], "s0,2024-02-01 00:00,10\ns0,2024-02-01 01:00,11\n"),
    }


COMMANDS = ["fit", "forecast", "backtest", "plot", "stream"]


def invoke(args: list[str], stdin: str | None = None, **kwargs):
    return CliRunner().invoke(main, args, input=stdin, catch_exceptions=False, **kwargs)


@pytest.mark.parametrize("command", COMMANDS)
def test_threads_option_reaches_torch_in_every_command(command, files, seen):
    args, stdin = commands(files)[command]
    result = invoke([*args, "--threads", "2"], stdin)
    assert result.exit_code == 0, result.stderr
    assert seen and set(seen) == {2}
    # The CLI owns its process: the count holds after the run.
    assert (blas_threads() if command == "stream" else torch.get_num_threads()) == 2


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_runs_on_one_thread_without_the_option(command, files, seen):
    torch.set_num_threads(2)  # torch's own default on 2 cores: the command must not inherit it
    _blas().limit(limits=2)  # OpenBLAS's too
    args, stdin = commands(files)[command]
    result = invoke(args, stdin)
    assert result.exit_code == 0, result.stderr
    assert seen and set(seen) == {1}


def test_the_environment_variable_sets_the_default_and_the_option_overrides_it(files, seen, monkeypatch):
    monkeypatch.setenv("STREAMCAST_THREADS", "2")
    args, _ = commands(files)["forecast"]
    assert invoke(args).exit_code == 0
    assert set(seen) == {2}
    seen.clear()
    assert invoke([*args, "--threads", "1"]).exit_code == 0
    assert set(seen) == {1}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("threads", ["0", "-3"])
def test_threads_below_one_is_a_one_line_usage_error(command, threads, files, seen):
    args, stdin = commands(files)[command]
    result = invoke([*args, "--threads", threads], stdin)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"Error: --threads must be at least 1 (torch threads); got {threads}\n"
    assert seen == []  # refused before any work


@pytest.mark.parametrize("value", ["0", "two"])
def test_a_bad_environment_variable_is_a_one_line_usage_error(value, files, monkeypatch):
    monkeypatch.setenv("STREAMCAST_THREADS", value)
    args, _ = commands(files)["forecast"]
    result = invoke(args)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("Error: STREAMCAST_THREADS")


def test_library_fit_defaults_to_one_thread_and_gives_the_callers_count_back(tiny_data, seen):
    torch.set_num_threads(2)
    sc.fit(tiny_data, TINY)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2
    seen.clear()
    torch.set_num_threads(1)
    sc.fit(tiny_data, TINY, threads=2)
    assert seen and set(seen) == {2}
    assert torch.get_num_threads() == 1


def test_library_forecast_and_backtest_take_threads(tiny_model, tiny_data, seen):
    tiny_model.forecast(tiny_data, threads=2)
    sc.backtest(tiny_model, tiny_data, windows=2, threads=2)
    assert seen and set(seen) == {2}


def test_library_stream_holds_its_count_only_while_it_computes(tiny_model, seen):
    rows = [{"series_id": "s0", "timestamp": f"2024-02-01 0{h}:00", "value": 10.0 + h} for h in range(3)]
    batches = [Observations.from_records([row], tiny_model) for row in rows]
    state = sc.StreamState(tiny_model)
    torch.set_num_threads(2)
    for _ in sc.stream(tiny_model, batches, state):
        assert torch.get_num_threads() == 2  # the caller's own count between batches
    assert seen and set(seen) == {1}
    seen.clear()
    sc.warm_up(tiny_model, sc.StreamState(tiny_model), sc.read_series(hourly_frame()), threads=2)
    assert seen and set(seen) == {2}


def test_library_refuses_threads_below_one(tiny_data):
    with pytest.raises(sc.UsageError, match="at least 1"):
        sc.fit(tiny_data, TINY, threads=0)
