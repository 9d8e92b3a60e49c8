"""Files written whole or not at all: a large file being replaced is let go on a second thread,
and that leaves the new file in place, the old one's descriptor closed, nothing behind."""

from __future__ import annotations

import os
import threading

import pytest

from streamcast import atomic


def _releases() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "streamcast-release"]


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
@pytest.mark.parametrize("release_from", [0, 1 << 40], ids=["large: let go on a thread", "small"])
def test_replacing_a_file_leaves_the_new_one_and_no_descriptor_open(tmp_path, monkeypatch, release_from):
    monkeypatch.setattr(atomic, "RELEASE_FROM", release_from)
    path = tmp_path / "state.bin"
    path.write_bytes(b"old" * 1000)
    reader = open(path, "rb")  # a reader of the old file keeps reading the old file whole
    before = _open_descriptors()
    atomic.atomic_write_bytes(path, b"new")
    for thread in _releases():
        thread.join()
    assert path.read_bytes() == b"new"
    assert reader.read() == b"old" * 1000
    reader.close()
    assert _open_descriptors() == before - 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]


def test_a_failed_replace_keeps_the_old_file_and_closes_what_it_held(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "RELEASE_FROM", 0)
    path = tmp_path / "state.bin"
    path.write_bytes(b"old")

    def refuse(src, dst):
        raise PermissionError(13, "refused")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    before = _open_descriptors()
    with pytest.raises(PermissionError):
        atomic.atomic_write_bytes(path, b"new")
    for thread in _releases():
        thread.join()
    assert path.read_bytes() == b"old"
    assert _open_descriptors() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_named_pipe_in_the_way_is_replaced_without_being_opened(tmp_path, monkeypatch):
    # Opening a FIFO to read would wait for a writer forever; it is replaced like any file.
    monkeypatch.setattr(atomic, "RELEASE_FROM", 0)
    path = tmp_path / "out.bin"
    os.mkfifo(path)
    atomic.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and _releases() == []
