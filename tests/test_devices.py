"""`--device`: the CPU path stays bit-identical, an absent device is one line, files load anywhere."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

import streamcast
from streamcast.devices import resolve_device
from streamcast.errors import UsageError
from tests.conftest import hourly_frame
from tests.test_cli_fit import FAST, run

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")


@pytest.fixture
def csv_path(tmp_path):
    path = tmp_path / "load.csv"
    hourly_frame(series=2, length=120).write_csv(path)
    return path


def info_row(model, key: str) -> str:
    """The value `streamcast info` shows for `key` (its table drawn with box characters)."""
    for line in run(["info", str(model)]).stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells[0] == key:
            return cells[1]
    raise AssertionError(f"no {key!r} row")


def test_fit_on_device_cpu_writes_the_default_fits_weights_byte_for_byte(tmp_path, csv_path):
    assert run(["fit", str(csv_path), *FAST, "-o", str(tmp_path / "a.streamcast")]).exit_code == 0
    cpu = run(["fit", str(csv_path), *FAST, "--device", "cpu", "-o", str(tmp_path / "b.streamcast")])
    assert cpu.exit_code == 0, cpu.stderr
    a, b = load_file(tmp_path / "a.streamcast"), load_file(tmp_path / "b.streamcast")
    assert a.keys() == b.keys() and all(a[k].numpy().tobytes() == b[k].numpy().tobytes() for k in a)


@NO_CUDA
@pytest.mark.parametrize("command", ["fit", "forecast", "backtest", "plot", "stream"])
def test_asking_for_an_absent_gpu_is_one_usage_line(tmp_path, csv_path, command):
    args = [command, str(csv_path), "--device", "cuda"]
    result = run(args + (["-o", str(tmp_path / "x.png")] if command == "plot" else []))
    assert result.exit_code == 2
    assert result.stderr == "Error: --device cuda: torch sees no CUDA GPU on this machine; use --device cpu\n"


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "gpu0", ""])
def test_a_device_name_torch_does_not_know_is_refused_with_the_choices(name):
    with pytest.raises(UsageError, match="is not a device: use auto, cpu, cuda, cuda:N or mps"):
        resolve_device(name)


@NO_CUDA
def test_auto_is_the_cpu_without_a_gpu():
    assert resolve_device("auto") == torch.device("cpu")


def test_info_tells_the_device_and_processes_a_model_trained_with(tmp_path, csv_path):
    model = tmp_path / "m.streamcast"
    assert run(["fit", str(csv_path), *FAST, "--device", "cpu", "-o", str(model)]).exit_code == 0
    meta = json.loads(run(["info", str(model), "--json"]).stdout)
    assert (meta["info"]["device"], meta["info"]["world_size"]) == ("cpu", 1)
    assert info_row(model, "trained on") == "cpu, 1 process"


def test_a_model_trained_on_a_gpu_by_four_processes_serves_on_the_cpu(tmp_path, tiny_model, tiny_data):
    info = {**tiny_model.info, "device": "cuda:0 (NVIDIA H100 80GB HBM3)", "world_size": 4}
    path = streamcast.save(replace(tiny_model, info=info), tmp_path / "gpu.streamcast")
    loaded = streamcast.load(path).to("cpu")
    assert next(loaded.net.parameters()).device == torch.device("cpu")
    assert streamcast.forecast(loaded, tiny_data).equals(streamcast.forecast(tiny_model, tiny_data))
    assert info_row(path, "trained on") == "cuda:0 (NVIDIA H100 80GB HBM3), 4 processes (torchrun)"


def test_a_model_file_with_an_impossible_world_size_is_refused(tmp_path, tiny_model):
    path = streamcast.save(
        replace(tiny_model, info={**tiny_model.info, "world_size": 0}), tmp_path / "bad.streamcast"
    )
    result = run(["info", str(path)])
    assert result.exit_code == 1
    assert "$.info.world_size" in result.stderr and result.stderr.count("\n") == 1
