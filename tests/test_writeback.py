"""A large file's chunks are handed to the disk as they are written: every byte after the header
exactly once, in order, and the file the same as without."""

from __future__ import annotations

import io
import platform

import numpy as np
import pytest

from streamcast import safefile, writeback


def test_each_written_chunk_starts_its_writeback_once_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(safefile, "_CHUNK", 4096)  # 40 chunks: the threaded path
    started = []
    monkeypatch.setattr(
        writeback, "_sync_file_range", lambda: lambda fd, at, n, flags: started.append((at, n))
    )
    tensors = {"rows": np.arange(40_960, dtype=np.float32)}
    path = tmp_path / "state.bin"
    safefile.save(path, tensors, {"format": "x"})
    raw = path.read_bytes()
    first = len(raw) - 4 * 40_960  # the header's bytes come before the tensors'
    assert started == [(first + i * 4096, 4096) for i in range(40)]
    assert raw == safefile.write(tensors, {"format": "x"})  # in memory: no writeback, same bytes


def test_writeback_of_an_in_memory_file_is_skipped(monkeypatch):
    called = []
    monkeypatch.setattr(writeback, "_sync_file_range", lambda: lambda *args: called.append(args))
    writeback.start_writeback(io.BytesIO(b"x"), 0, 1)  # no descriptor: nothing to do, no error
    assert called == []


@pytest.mark.skipif(platform.system() != "Linux", reason="sync_file_range is Linux's")
def test_the_kernel_takes_the_call_on_a_real_file(tmp_path):
    call = writeback._sync_file_range()
    assert call is not None
    with open(tmp_path / "f.bin", "wb") as f:
        f.write(b"\x01" * 8192)
        f.flush()
        assert call(f.fileno(), 0, 8192, writeback.SYNC_FILE_RANGE_WRITE) == 0
    assert (tmp_path / "f.bin").read_bytes() == b"\x01" * 8192
