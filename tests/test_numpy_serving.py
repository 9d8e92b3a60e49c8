"""`stream` on the CPU serves the numpy mirror of the network (`modelparts.load_numpy`), without
importing torch: the forecasts must be torch's, the states and checkpoints interchangeable, and a
real process must answer without ever loading torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.modelparts import load_numpy
from streamcast.numpy_ensemble import NumpyEnsemble
from streamcast.numpy_net import NumpyForecaster
from streamcast.stepping import run_series
from streamcast.stream.state import StreamState, model_fingerprint
from tests.conftest import TINY, hourly_frame
from tests.test_cli_stream import lines_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Served as by default: an interval around the point, a blend with naive for some series, and
# an ensemble (two LSTMs, their window shared) or one GRU with conv and quantiles.
MODELS = {
    "ensemble": replace(TINY, ensemble=2, intervals=(0.1, 0.9), naive_fallback=1.5, ar=24, val_size=24),
    "gru-quantiles": replace(TINY, cell="gru", conv=3, quantiles=(0.1, 0.5, 0.9), ar=12, intervals=()),
}


@pytest.fixture(scope="module", params=list(MODELS))
def saved(request, tmp_path_factory, tiny_data):
    model = sc.fit(tiny_data, MODELS[request.param])
    assert model.quantiles == (0.1, 0.5, 0.9)
    assert request.param != "ensemble" or (model.intervals is not None and model.naive_share)
    path = tmp_path_factory.mktemp("numpy") / f"{request.param}.streamcast"
    sc.save(model, path)
    return path


def test_the_numpy_network_forecasts_what_torch_serves_with_interval_and_naive(saved, tiny_data):
    torch_model, numpy_model = sc.load(saved), load_numpy(saved)
    assert isinstance(numpy_model.net, NumpyForecaster | NumpyEnsemble)
    inputs = torch_model.inputs(tiny_data.frame)
    positions = [np.arange(0, n, 7) for n in inputs.lengths()]
    got = {}
    for name, model in (("torch", torch_model), ("numpy", numpy_model)):
        naive = model.naive_serving(inputs.series_ids)
        outputs, final = run_series(
            model.net, inputs.inputs, inputs.offsets, positions, naive=naive, intervals=model.intervals
        )
        values = model.point_and_quantiles(
            outputs,
            np.repeat(inputs.loc, [len(p) for p in positions]),
            np.repeat(inputs.scale, [len(p) for p in positions]),
        )
        got[name] = (values, [np.asarray(p) for p in final])
    assert got["numpy"][0].shape == got["torch"][0].shape and got["numpy"][0].shape[-1] == 3
    np.testing.assert_allclose(got["numpy"][0], got["torch"][0], rtol=1e-5, atol=1e-5)
    for mine, theirs in zip(got["numpy"][1], got["torch"][1], strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)


def test_both_loads_have_one_fingerprint_so_a_state_file_serves_either(saved):
    torch_model, numpy_model = sc.load(saved), load_numpy(saved)
    assert model_fingerprint(numpy_model) == model_fingerprint(torch_model)
    assert [p.shape for p in StreamState(numpy_model).hidden] == [
        tuple(p.shape) for p in StreamState(torch_model).hidden
    ]


def stream(path, args, text):
    return CliRunner().invoke(main, ["stream", "-m", str(path), *args], input=text, catch_exceptions=False)


def test_stream_on_the_cpu_prints_torchs_forecasts_and_either_engine_resumes_the_others_state(
    saved, tmp_path
):
    text = lines_for(hourly_frame(length=40))
    head, tail = "\n".join(text[:60]) + "\n", "\n".join(text[60:]) + "\n"
    outs = {}
    for first, then in (("cpu", "auto"), ("auto", "cpu")):
        state = tmp_path / f"{first}.state"
        a = stream(saved, ["--device", first, "--state", str(state)], head)
        b = stream(saved, ["--device", then, "--state", str(state)], tail)
        assert a.exit_code == b.exit_code == 0, a.stderr + b.stderr
        assert "resumed 3 series" in b.stderr
        outs[first] = [json.loads(line) for line in (a.stdout + b.stdout).splitlines()]
    numpy_first, torch_first = outs["cpu"], outs["auto"]
    assert len(numpy_first) == len(torch_first) == len(text)
    for mine, theirs in zip(numpy_first, torch_first, strict=True):
        assert (mine["series_id"], mine["timestamp"], mine["timestamps"]) == (
            theirs["series_id"],
            theirs["timestamp"],
            theirs["timestamps"],
        )
        for key in [k for k in mine if k == "forecast" or k.startswith("q")]:
            np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-5, atol=1e-4)


def stream_process(model_path, *args: str) -> tuple[subprocess.CompletedProcess, bool]:
    """A real `stream` process given one line, as the command runs it from start to summary, and
    whether it had loaded torch by the end."""
    probe = (
        "import sys\n"
        "from streamcast.cli import main\n"
        "try:\n"
        f"    main(['stream', '-m', {str(model_path)!r}, '-q', *{list(args)!r}])\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "sys.stderr.write(f'torch loaded: {\"torch\" in sys.modules}\\n')\n"
        "sys.exit(code)\n"
    )
    line = lines_for(hourly_frame(series=1, length=1))[0]
    done = subprocess.run(
        [sys.executable, "-c", probe],
        input=line + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["series_id"] == "s0"
    return done, "torch loaded: True" in done.stderr


def test_a_stream_process_on_the_cpu_never_imports_torch(model_path):
    assert stream_process(model_path)[1] is False
    assert stream_process(model_path, "--learn")[1] is True  # --learn trains with torch


def test_a_model_file_whose_weights_do_not_fit_its_header_is_refused_in_one_line(model_path, tmp_path):
    from streamcast import modelfile

    model = sc.load(model_path)
    other = replace(model, net=sc.load(model_path).net)
    other.net.head[0].bias.data = other.net.head[0].bias.data[:-1].clone()  # one weight short
    bad = tmp_path / "bad.streamcast"
    modelfile.save(other, bad)
    result = stream(bad, [], "s0,2024-01-01 00:00,1.0\n")
    assert result.exit_code != 0
    assert result.stderr.count("\n") == 1 and "damaged" in result.stderr and "Traceback" not in result.stderr


def test_a_state_that_learned_resumes_without_learn_serving_its_learned_weights(model_path, tmp_path):
    text = lines_for(hourly_frame(length=40))
    head, tail = "\n".join(text[:90]) + "\n", "\n".join(text[90:]) + "\n"
    learned = tmp_path / "learned.state"
    first = stream(
        model_path, ["--learn", "--learn-every", "8", "--learn-window", "4", "--state", str(learned)], head
    )
    assert first.exit_code == 0, first.stderr
    outs = {}
    for device in ("cpu", "auto"):
        copy = tmp_path / f"{device}.state"
        copy.write_bytes(learned.read_bytes())
        result = stream(model_path, ["--device", device, "--state", str(copy)], tail)
        assert result.exit_code == 0, result.stderr
        assert "resumed 3 series" in result.stderr
        outs[device] = result.stdout
    assert outs["cpu"] == outs["auto"]  # both served by the learner's weights, with torch
    # In Python, the numpy-served model says what to do instead of calling the file damaged.
    with pytest.raises(sc.ModelFileError, match="holds an online learner .* resume it with --learn"):
        StreamState.load(learned, load_numpy(model_path))


def test_what_needs_torch_refuses_a_numpy_served_model_in_one_line(model_path, tiny_data, tmp_path):
    model = load_numpy(model_path)
    for call in (
        lambda: sc.forecast(model, tiny_data),
        lambda: sc.save(model, tmp_path / "copy.streamcast"),
        lambda: model.to("cpu"),
    ):
        with pytest.raises(sc.UsageError, match="loaded by load_numpy, which serves stream alone"):
            call()
    # backtest serves either network: the same scores
    mine = sc.backtest(model, tiny_data, windows=2).overall
    theirs = sc.backtest(sc.load(model_path), tiny_data, windows=2).overall
    assert mine.columns == theirs.columns and mine.height == theirs.height > 0
    for column in [c for c, t in mine.schema.items() if t.is_float()]:
        np.testing.assert_allclose(mine[column].to_numpy(), theirs[column].to_numpy(), rtol=1e-5)
