"""The sealed safetensors container: written straight from the tensors' memory (a million series'
stream state is a gigabyte), from torch tensors or numpy arrays alike, read back as numpy views of
one buffer, and refused when it does not hold together, as safetensors itself would refuse it."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import safetensors.torch
import torch

from streamcast import safefile

MIXED = {
    "f64": torch.arange(6, dtype=torch.float64).reshape(2, 3) / 7,
    "f32": torch.linspace(-1, 1, 5),
    "bf16": torch.tensor([0.5, -2.0], dtype=torch.bfloat16),
    "i64": torch.tensor([3, -4, 5]),
    "flags": torch.tensor([True, False, True]),
    "scalar": torch.tensor(2.5),
    "empty": torch.zeros((4, 0)),
}
READABLE = {name: t for name, t in MIXED.items() if t.dtype != torch.bfloat16}  # numpy has no bfloat16


def assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert torch.equal(a[name], b[name]), name


def assert_read_as(arrays: dict[str, np.ndarray], tensors: dict[str, torch.Tensor]) -> None:
    assert sorted(arrays) == sorted(tensors)
    for name, array in arrays.items():
        assert isinstance(array, np.ndarray), name
        np.testing.assert_array_equal(array, tensors[name].numpy(), strict=True)


def test_the_written_file_is_plain_safetensors_sealed_with_its_sha256():
    raw = safefile.write(MIXED, {"format": "x", "n": 1})
    assert_same(safetensors.torch.load(raw), MIXED)
    meta = safefile.header(raw)
    assert meta["format"] == "x" and len(meta[safefile.CHECKSUM_KEY]) == 64
    assert safefile.check(raw, meta, required=True)
    damaged = bytearray(raw)
    damaged[-1] ^= 1
    with pytest.raises(safefile.Damaged, match="do not match its checksum"):
        safefile.check(bytes(damaged), meta, required=True)


def test_a_file_of_many_chunks_hashed_beside_its_writing_is_sealed_the_same(monkeypatch):
    tensors = {"big": torch.arange(10_000, dtype=torch.float32), "small": torch.ones(3)}
    whole = safefile.write(tensors, {"format": "x"})
    monkeypatch.setattr(safefile, "_CHUNK", 1024)  # 40 chunks: the threaded path
    assert safefile.write(tensors, {"format": "x"}) == whole


def test_save_writes_the_file_atomically(tmp_path):
    path = tmp_path / "f.safetensors"
    path.write_bytes(b"old")
    safefile.save(path, MIXED, {"format": "x"})
    assert_same(safetensors.torch.load_file(path), MIXED)
    assert [p.name for p in tmp_path.iterdir()] == ["f.safetensors"]


def test_numpy_arrays_are_written_as_the_same_bytes_as_the_torch_tensors_they_equal():
    tensors = {**READABLE, "transposed": torch.arange(6, dtype=torch.int32).reshape(2, 3).t()}
    arrays = {name: t.numpy() for name, t in tensors.items()}
    assert not arrays["transposed"].flags.c_contiguous  # laid out in order as it is written
    assert safefile.write(arrays, {"format": "x"}) == safefile.write(tensors, {"format": "x"})


def test_tensors_are_read_as_numpy_views_of_the_buffer_they_came_in():
    raw = bytearray(safefile.write(READABLE, {"format": "x"}))
    arrays = safefile.read_tensors(raw)
    assert_read_as(arrays, READABLE)
    arrays["f32"][0] = 9.0  # the buffer is the storage: no copy was made
    assert safetensors.torch.load(bytes(raw))["f32"][0] == 9.0


def test_a_file_from_safetensors_itself_reads_the_same():
    raw = bytearray(safetensors.torch.save(READABLE, metadata={"streamcast": "{}"}))
    assert_read_as(safefile.read_tensors(raw), READABLE)


def test_a_bfloat16_tensor_is_written_but_refused_when_read_by_name():
    raw = bytearray(safefile.write(MIXED, {"format": "x"}))
    assert_same(safetensors.torch.load(bytes(raw)), MIXED)  # model files may hold one
    with pytest.raises(ValueError, match="tensor 'bf16' is BF16, which numpy cannot hold"):
        safefile.read_tensors(raw)


def rewritten(entries: dict, data: bytes) -> bytearray:
    head = json.dumps(entries).encode()
    head += b" " * (-len(head) % 8)
    return bytearray(struct.pack("<Q", len(head)) + head + data)


@pytest.mark.parametrize(
    "entries, data, message",
    [
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8), "does not fit its bytes"),
        ({"a": {"dtype": "Q9", "shape": [2], "data_offsets": [0, 8]}}, bytes(8), "not described"),
        ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, -8]}}, bytes(8), "does not fit its bytes"),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            bytes(12),
            "not where the one before it ends",
        ),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(16), "do not fill the file"),
        ({"a": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\x01\x07", "neither 0 nor 1"),
        ([1, 2], b"", "not a JSON object"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, float("inf")]}}, bytes(8), "not described"),
        ({"a": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 0]}}, b"", "not described"),
        ({"a": {"dtype": "F32", "shape": "12", "data_offsets": [0, 8]}}, bytes(8), "not described"),
        ({"a": {"dtype": "F32", "shape": [True, 2], "data_offsets": [0, 8]}}, bytes(8), "not described"),
    ],
)
def test_a_file_that_does_not_hold_together_is_refused(entries, data, message):
    with pytest.raises(ValueError, match=message):
        safefile.read_tensors(rewritten(entries, data))
