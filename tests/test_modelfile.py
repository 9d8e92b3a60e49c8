"""The model file: safetensors + JSON, never a pickle; round trips exactly; refuses what is not ours."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from safetensors import safe_open

from streamcast import safefile
from streamcast.errors import ModelFileError
from streamcast.modelfile import load, read_metadata, save
from streamcast.stepping import run_series

COMMITTED = Path(__file__).parent / "data" / "tiny-v1.streamcast"


def last_forecasts(forecaster, data) -> torch.Tensor:
    inputs = forecaster.inputs(data.frame)
    positions = [np.array([n - 1]) for n in inputs.lengths()]
    outputs, _ = run_series(forecaster.net, inputs.inputs, inputs.offsets, positions)
    return outputs


def test_save_then_load_gives_identical_forecasts(tmp_path, tiny_model, tiny_data):
    path = save(tiny_model, tmp_path / "m.streamcast")
    loaded = load(path)
    assert torch.equal(last_forecasts(tiny_model, tiny_data), last_forecasts(loaded, tiny_data))
    assert loaded.scaler == tiny_model.scaler
    assert loaded.spec == tiny_model.spec
    assert loaded.columns == tiny_model.columns
    assert loaded.info["history"] == tiny_model.info["history"]


def test_the_file_is_plain_safetensors_with_json_metadata(tmp_path, tiny_model):
    path = save(tiny_model, tmp_path / "m.streamcast")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["streamcast"])
        assert "scaler.loc" in f.keys()
    assert meta["format"] == "streamcast-model"
    assert meta["model_config"]["hidden_size"] == 8
    assert meta["info"]["data"]["series"] == 3
    assert set(meta["versions"]) >= {"streamcast", "torch"}
    header_size = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert json.loads(path.read_bytes()[8 : 8 + header_size])  # the whole header is JSON


def test_saving_over_an_existing_model_leaves_no_temporary_files(tmp_path, tiny_model):
    save(tiny_model, tmp_path / "m.streamcast")
    save(tiny_model, tmp_path / "m.streamcast")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.streamcast"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a streamcast model file"),
        (b"\x80\x04\x95pickle", "not a streamcast model file"),
        (struct.pack("<Q", 2) + b"{}", "no streamcast metadata"),
    ],
)
def test_a_foreign_file_is_refused_with_a_clear_error(tmp_path, content, message):
    path = tmp_path / "x.streamcast"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        load(path)


def test_a_truncated_model_file_is_refused_even_where_only_the_metadata_is_read(tmp_path, tiny_model):
    path = save(tiny_model, tmp_path / "m.streamcast")
    path.write_bytes(path.read_bytes()[:-100])
    for reader in (load, read_metadata):
        with pytest.raises(ModelFileError, match="damaged"):
            reader(path)


def test_a_missing_default_model_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFileError, match="run `streamcast fit DATA` first"):
        load("model.streamcast")


def rewrite_metadata(path: Path, change) -> None:
    """Edit a model file's JSON metadata in place, keeping its tensors, and seal it again with a
    valid checksum, as someone crafting a file would: what the schema must catch on its own."""
    raw = path.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + size])
    meta = change(json.loads(header["__metadata__"]["streamcast"]))
    if isinstance(meta, dict):
        path.write_bytes(safefile.write(safetensors.torch.load(raw), meta))
        return
    header["__metadata__"]["streamcast"] = json.dumps(meta)
    new_header = json.dumps(header).encode()
    new_header += b" " * (-len(new_header) % 8)
    path.write_bytes(struct.pack("<Q", len(new_header)) + new_header + raw[8 + size :])


def test_a_model_from_a_newer_format_asks_for_an_upgrade(tmp_path, tiny_model):
    path = save(tiny_model, tmp_path / "m.streamcast")
    rewrite_metadata(path, lambda meta: {**meta, "format_version": 99})
    with pytest.raises(ModelFileError, match="upgrade streamcast"):
        read_metadata(path)


def test_weights_damaged_on_disk_fail_their_checksum(tmp_path, tiny_model):
    path = save(tiny_model, tmp_path / "m.streamcast")
    raw = bytearray(path.read_bytes())
    raw[-60:-10] = bytes(50)  # zero 50 bytes of tensor data: still a valid safetensors file
    path.write_bytes(bytes(raw))
    for reader in (load, read_metadata):
        with pytest.raises(ModelFileError, match="damaged \\(its bytes do not match its checksum\\)"):
            reader(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda meta: [meta], "not a streamcast model file"),
        (lambda meta: {**meta, "format_version": "2"}, "format version '2'"),
        (lambda meta: {**meta, "series_ids": meta["series_ids"][:1]}, "damaged or from an incompatible"),
        (lambda meta: {k: v for k, v in meta.items() if k != "info"}, "damaged or from an incompatible"),
        (  # a network said to read more of the window than the window holds
            lambda meta: {**meta, "model_config": {**meta["model_config"], "net_window": 10_000}},
            "damaged or from an incompatible",
        ),
    ],
)
def test_metadata_that_does_not_fit_its_tensors_is_refused_in_one_line(tmp_path, tiny_model, change, message):
    path = save(tiny_model, tmp_path / "m.streamcast")
    rewrite_metadata(path, change)
    with pytest.raises(ModelFileError, match=message) as raised:
        load(path)
    assert "\n" not in str(raised.value)


def test_the_committed_model_file_still_loads_and_forecasts(tiny_data):
    """A file written by an earlier release must keep loading as the format evolves."""
    model = load(COMMITTED)
    outputs = last_forecasts(model, tiny_data)
    assert outputs.shape == (3, model.horizon, 1)
    assert torch.isfinite(outputs).all()
