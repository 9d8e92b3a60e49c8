"""Model and state files that were damaged or crafted: a flipped bit anywhere, a header nested deep,
a header that contradicts itself. Each is refused in one line, exit 1 (issue 13)."""

from __future__ import annotations

import json
import random
import struct
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from click.testing import CliRunner

import streamcast as sc
from streamcast import safefile
from streamcast.cli import main
from streamcast.errors import ModelFileError
from streamcast.modelfile import read_metadata
from streamcast.stream.config import LearnConfig, StreamConfig
from streamcast.stream.engine import stream
from streamcast.stream.input import Observations
from streamcast.stream.state import StreamState
from streamcast.stream.watch import WatchConfig

COMMITTED = Path(__file__).parent / "data" / "tiny-v1.streamcast"
# The state of `committed_stream` after `committed_rows(0, 40)`, written by the streamcast that kept
# states in torch tensors: learning online and watching, with an anomaly flagged (s1 at hour 36).
COMMITTED_STATE = Path(__file__).parent / "data" / "tiny-v1-learned-watched.state"


@pytest.fixture(scope="module")
def state_path(tmp_path_factory, tiny_model):
    state = StreamState(tiny_model)
    rows = [{"series_id": f"s{i}", "timestamp": "2024-01-01T00:00", "value": 10.0 + i} for i in range(3)]
    for _ in stream(tiny_model, [Observations.from_records(rows, tiny_model)], state):
        pass
    return state.save(tmp_path_factory.mktemp("integrity_state") / "s.state")


def header_span(raw: bytes) -> int:
    return 8 + struct.unpack("<Q", raw[:8])[0]


def flipped(raw: bytes, bit: int) -> bytes:
    out = bytearray(raw)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def reseal(path: Path, change) -> None:
    """Rewrite the metadata and seal the file with a valid checksum, as a crafted file would be."""
    raw = path.read_bytes()
    meta = change(json.loads(json.loads(raw[8 : header_span(raw)])["__metadata__"]["streamcast"]))
    path.write_bytes(safefile.write(safetensors.torch.load(raw), meta))


def test_model_with_any_header_bit_flipped_is_refused(model_path, tmp_path):
    raw = model_path.read_bytes()
    bits = random.Random(0).sample(range(header_span(raw) * 8), 300)
    damaged = tmp_path / "m.streamcast"
    for bit in bits:
        damaged.write_bytes(flipped(raw, bit))
        with pytest.raises(ModelFileError) as raised:
            sc.load(damaged)
        assert "\n" not in str(raised.value)


def test_model_with_a_tensor_bit_flipped_is_refused_by_info_too(model_path, tmp_path):
    raw = model_path.read_bytes()
    damaged = tmp_path / "m.streamcast"
    for bit in random.Random(1).sample(range(header_span(raw) * 8, len(raw) * 8), 50):
        damaged.write_bytes(flipped(raw, bit))
        result = CliRunner().invoke(main, ["info", str(damaged)])
        assert result.exit_code == 1
        assert result.stderr.count("\n") == 1 and "damaged" in result.stderr


def test_model_whose_renamed_series_keeps_a_valid_json_header_is_refused(model_path, tmp_path):
    raw = model_path.read_bytes()
    damaged = tmp_path / "m.streamcast"
    damaged.write_bytes(raw.replace(b'\\"s1\\"', b'\\"s3\\"', 1))  # one bit: '1' is 0x31, '3' 0x33
    with pytest.raises(ModelFileError, match="its bytes do not match its checksum"):
        sc.load(damaged)


def test_model_header_nested_200000_deep_is_one_line_for_info_and_forecast(tmp_path):
    body = b'{"__metadata__": {"streamcast": "{}"}, "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    body += b" " * (-len(body) % 8)
    path = tmp_path / "deep.streamcast"
    path.write_bytes(struct.pack("<Q", len(body)) + body)
    for args in (["info", str(path)], ["forecast", "-m", str(path)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, result.output
        assert result.stderr == f"Error: {path}: not a streamcast model file (header nested too deeply)\n"


def test_model_metadata_nested_deep_inside_its_info_is_refused(model_path, tmp_path):
    path = tmp_path / "m.streamcast"
    path.write_bytes(model_path.read_bytes())
    deep: list = []
    for _ in range(500):
        deep = [deep]
    reseal(path, lambda meta: {**meta, "info": {**meta["info"], "x": deep}})
    with pytest.raises(ModelFileError, match="nested too deeply"):
        read_metadata(path)


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda m: {**m, "feature_spec": {**m["feature_spec"], "freq": "0h"}}, "frequency '0h'"),
        (lambda m: {**m, "feature_spec": {**m["feature_spec"], "freq": "xyz"}}, "frequency 'xyz'"),
        (
            lambda m: {
                **m,
                "feature_spec": {
                    **m["feature_spec"],
                    "covariates": ["t"],
                    "covariate_loc": [0.0],
                    "covariate_scale": [1.0],
                },
                "columns": {**m["columns"], "covariates": ["t"]},
            },
            "the network takes 5 inputs, but the features are 6",
        ),
        (lambda m: {**m, "columns": {**m["columns"], "covariates": ["t"]}}, "covariate columns differ"),
        (
            lambda m: {**m, "model_config": {**m["model_config"], "hidden_size": "8"}},
            "model_config.hidden_size",
        ),
        (lambda m: {**m, "model_config": {**m["model_config"], "horizon": 0}}, "model_config.horizon"),
        (lambda m: {**m, "series_ids": ["s0", "s0", "s2"]}, "listed twice"),
        (
            lambda m: {**m, "feature_spec": {**m["feature_spec"], "calendar": ["moon_sin"] * 4}},
            "unknown calendar",
        ),
    ],
)
def test_stream_refuses_a_model_whose_header_contradicts_itself(model_path, tmp_path, change, field):
    path = tmp_path / "m.streamcast"
    path.write_bytes(model_path.read_bytes())
    reseal(path, change)
    result = CliRunner().invoke(main, ["stream", "-m", str(path)], input="s0,2024-01-01 00:00,1\n")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {path}: the model file's header is invalid (")
    assert field in result.stderr and result.stderr.count("\n") == 1


def test_state_with_any_bit_flipped_is_refused(tiny_model, state_path, tmp_path):
    raw = state_path.read_bytes()
    damaged = tmp_path / "s.state"
    span = header_span(raw)
    rng = random.Random(2)
    bits = rng.sample(range(span * 8, len(raw) * 8), 60) + rng.sample(range(span * 8), 60)
    for bit in bits:
        damaged.write_bytes(flipped(raw, bit))
        with pytest.raises(ModelFileError) as raised:
            StreamState.load(damaged, tiny_model)
        assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda m: {**m, "lines": "abc"}, "$.lines"),
        (lambda m: {**m, "accepted": -1}, "$.accepted"),
        (lambda m: {**m, "time_zone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        (
            lambda m: {**m, "series_ids": ["s0", "s1"]},
            "tensor 'loc' is float64 (3,), not float64 (2,)",
        ),
    ],
)
def test_stream_refuses_state_metadata_with_wrong_types(model_path, state_path, tmp_path, change, field):
    path = tmp_path / "s.state"
    path.write_bytes(state_path.read_bytes())
    reseal(path, change)
    result = CliRunner().invoke(
        main, ["stream", "-m", str(model_path), "--state", str(path)], input="s0,2024-01-01 01:00,1\n"
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"Error: {path}: the state file is damaged (")
    assert field in result.stderr and result.stderr.count("\n") == 1


def test_files_without_the_whole_file_checksum_keep_loading(tiny_data, tiny_model, tmp_path):
    assert "file_sha256" not in read_metadata(COMMITTED)
    assert sc.load(COMMITTED).horizon == 6
    path = tmp_path / "old.state"  # a state file of format 1: no checksum, plain json.dumps
    new = StreamState(tiny_model).save(tmp_path / "new.state").read_bytes()
    meta = json.loads(json.loads(new[8 : header_span(new)])["__metadata__"]["streamcast"])
    del meta["file_sha256"]
    meta["format_version"] = 1
    path.write_bytes(safetensors.torch.save(safetensors.torch.load(new), {"streamcast": json.dumps(meta)}))
    assert len(StreamState.load(path, tiny_model)) == 0


def committed_rows(first: int, end: int) -> list[dict]:
    """Four hourly series from 2024-01-01, hours `first` to `end`, with a spike in s1 at hour 36."""
    start = datetime(2024, 1, 1)
    return [
        {
            "series_id": f"s{i}",
            "timestamp": start + timedelta(hours=h),
            "value": 10.0 * (i + 1) + h % 5 + (100.0 if (i, h) == (1, 36) else 0.0),
        }
        for h in range(first, end)
        for i in range(4)
    ]


def committed_stream(model, state: StreamState, rows: list[dict]) -> list[tuple]:
    config = StreamConfig(warmup=8, learn=LearnConfig(lr=1e-2, window=4, every=8), watch=WatchConfig(z=3.0))
    batches = stream(model, [Observations.from_records(rows, model)], state, config)
    return [(f.series_id, f.forecast, f.anomaly) for batch in batches for f in batch]


def test_a_committed_state_file_holds_and_writes_back_what_streaming_makes_today(tmp_path):
    model = sc.load(COMMITTED)
    old = StreamState.load(COMMITTED_STATE, model)  # the model's fingerprint is unchanged too
    assert old.learner.steps == 8 and len(old.watch) == len(old) == 4
    state = StreamState(model)
    flagged = [row for row in committed_stream(model, state, committed_rows(0, 40)) if row[2]]
    assert [row[0] for row in flagged] == ["s1"]
    written = safetensors.torch.load_file(COMMITTED_STATE)
    made = safetensors.torch.load_file(state.save(tmp_path / "new.state"))
    assert sorted(made) == sorted(written)
    for name, tensor in written.items():  # the same stream makes the same numbers, laid out alike
        torch.testing.assert_close(made[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    raw, again = COMMITTED_STATE.read_bytes(), old.save(tmp_path / "again.state").read_bytes()
    assert again[header_span(again) :] == raw[header_span(raw) :]  # loaded and saved: the same bytes
    ignored = {"saved_at", "streamcast", safefile.CHECKSUM_KEY}
    assert {k: v for k, v in safefile.header(again).items() if k not in ignored} == {
        k: v for k, v in safefile.header(raw).items() if k not in ignored
    }
    # resumed from the old file, the stream goes on as from the state made today
    resumed = committed_stream(model, old, committed_rows(40, 50))
    today = committed_stream(model, state, committed_rows(40, 50))
    assert [row[0] for row in resumed] == [row[0] for row in today]
    np.testing.assert_allclose([row[1] for row in resumed], [row[1] for row in today], rtol=1e-5)


@pytest.mark.parametrize(
    "change, reason",
    [
        (
            lambda m: {**m, "info": {**m["info"], "best_epoch": 10**400}},
            "a number in the header is out of range",
        ),
        (
            lambda m: {**m, "versions": {**m["versions"], "torch": "\ud800"}},
            "a text in the header is not valid Unicode",
        ),
        (lambda m: {**m, "info": {**m["info"], "\udfff": 1}}, "a text in the header is not valid Unicode"),
    ],
)
def test_info_refuses_a_header_it_could_not_print(model_path, tmp_path, change, reason):
    path = tmp_path / "m.streamcast"
    path.write_bytes(model_path.read_bytes())
    reseal(path, change)
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {path}: not a streamcast model file ({reason})\n"


@pytest.mark.parametrize(
    "name, tensor",
    [
        ("last_covariates", [1.0, 2.0, 3.0]),
        ("welford", [[0.0] * 4] * 2),
        ("ticks", [[], [], []]),  # found by make fuzz: a float (3, 0) tensor broke the tick counts
        ("frozen", [0, 0, 0]),
        ("hidden.0", [[0.0]] * 3),
    ],
)
def test_state_with_tensors_of_the_wrong_shape_is_refused_even_with_a_valid_checksum(
    tiny_model, state_path, tmp_path, name, tensor
):
    import torch

    raw = state_path.read_bytes()
    tensors = safetensors.torch.load(raw)
    tensors[name] = torch.tensor(tensor, dtype=torch.float64)
    meta = json.loads(json.loads(raw[8 : header_span(raw)])["__metadata__"]["streamcast"])
    path = tmp_path / "s.state"
    path.write_bytes(safefile.write(tensors, meta))
    with pytest.raises(ModelFileError, match="the state file is damaged"):
        StreamState.load(path, tiny_model)


def test_model_whose_header_describes_an_enormous_network_is_refused_before_building_it(
    model_path, tmp_path, monkeypatch
):
    from streamcast import modelfile

    path = tmp_path / "m.streamcast"
    path.write_bytes(model_path.read_bytes())
    reseal(
        path, lambda m: {**m, "model_config": {**m["model_config"], "hidden_size": 65536, "horizon": 100_000}}
    )
    built_on = []

    class Recording(modelfile.RecurrentForecaster):
        def __init__(self, config):
            built_on.append(str(torch.get_default_device()))
            super().__init__(config)

    monkeypatch.setattr(modelfile, "RecurrentForecaster", Recording)
    with pytest.raises(ModelFileError, match="the weights do not fit the network the header describes"):
        sc.load(path)
    assert built_on == ["meta"]  # laid out without memory: 65536 x 100,000 float32 weights would be 26 GB
