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


def _offsets(raw: bytes) -> dict[str, list[int]]:
    size = int.from_bytes(raw[:8], "little")
    entries = json.loads(raw[8 : 8 + size])
    entries.pop("__metadata__")
    return {name: e["data_offsets"] for name, e in entries.items()}


def test_tensors_built_later_are_written_after_the_others_and_read_back_the_same(monkeypatch):
    # A checkpoint's columns are built while its hidden rows are written: they come last in the
    # file, still aligned, and the file holds what building them first would have held.
    monkeypatch.setattr(safefile, "_CHUNK", 64)  # the threaded writing path
    rows = np.arange(64, dtype=np.float32).reshape(8, 8)
    loc = np.linspace(0.0, 1.0, 8)
    ticks = np.arange(8, dtype=np.int64)
    built = []

    def build(array):
        return lambda: built.append(1) or array

    lazy = {
        "hidden": rows,
        "loc": safefile.Later("float64", (8,), build(loc)),
        "ticks": safefile.Later("int64", (8,), build(ticks)),
    }
    raw = safefile.write(lazy, {"format": "x"})
    assert len(built) == 2
    offsets = _offsets(raw)
    assert offsets["hidden"] == [0, 256] and min(offsets["loc"][0], offsets["ticks"][0]) == 256
    read = safefile.read_tensors(bytearray(raw))
    eager = {"hidden": rows, "loc": loc, "ticks": ticks}
    for name, array in eager.items():
        np.testing.assert_array_equal(read[name], array, strict=True)
    assert safefile.check(raw, safefile.header(raw), required=True)
    assert_same(safetensors.torch.load(raw), {k: torch.from_numpy(v) for k, v in eager.items()})


def test_tensors_built_later_that_would_lose_their_alignment_are_built_first():
    odd = np.ones(3, dtype=np.float32)  # 12 bytes: a float64 after it would sit unaligned
    lazy = {"odd": odd, "loc": safefile.Later("float64", (2,), lambda: np.array([1.5, 2.5]))}
    raw = safefile.write(lazy, {"format": "x"})
    assert _offsets(raw) == {"loc": [0, 16], "odd": [16, 28]}  # widest first, as safetensors lays them
    np.testing.assert_array_equal(safefile.read_tensors(bytearray(raw))["loc"], [1.5, 2.5])


def test_a_tensor_built_otherwise_than_announced_is_refused():
    lazy = {"loc": safefile.Later("float64", (3,), lambda: np.zeros(2))}
    with pytest.raises(ValueError, match="'loc' was built float64 \\(2,\\), not float64 \\(3,\\)"):
        safefile.write(lazy, {"format": "x"})


@pytest.mark.parametrize("start", [0, 2, 5])
def test_a_list_encoded_in_parts_makes_the_same_file_as_the_list_itself(start):
    # A stream encodes its series' ids once and adds the new ones at each checkpoint.
    ids = ["a", 'quote"d', "back\\slash", "naïve", "日本", "\u2028", "", "z"][: start + 3]
    tensors = {"x": np.arange(3, dtype=np.float32)}
    plain = safefile.write(tensors, {"format": "x", "series_ids": ids, "lines": 3})
    before = safefile.encoded_list(ids[:start]) if start else None
    parts = safefile.encoded_list(ids, before, start)
    assert safefile.write(tensors, {"format": "x", "series_ids": parts, "lines": 3}) == plain
    assert safefile.header(plain)["series_ids"] == ids
    assert safefile.encoded_list(ids, parts, len(ids)) is parts
