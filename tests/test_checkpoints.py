"""Checkpoints of a large state are written by a second thread while the stream goes on."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

import streamcast as sc
from streamcast import safefile
from streamcast.stream import checkpoints
from streamcast.stream.checkpoints import Checkpoints
from streamcast.stream.input import Observations
from streamcast.stream.session import SessionOptions
from streamcast.stream.state import StreamState
from tests.conftest import hourly_frame
from tests.test_cli_stream import ROOT, lines_for, run


def feed(model, state, frame):
    for _ in sc.stream(model, [Observations.from_records(frame.to_dicts(), model)], state):
        pass


def test_a_background_checkpoint_holds_the_state_as_it_was_when_taken(tiny_model, tmp_path, monkeypatch):
    fed = threading.Event()
    write = checkpoints._write

    def after_the_stream_moved_on(*args):  # the writer builds and writes only once it has
        assert fed.wait(30)
        return write(*args)

    monkeypatch.setattr(checkpoints, "_write", after_the_stream_moved_on)
    frame = hourly_frame(length=40)
    state = StreamState(tiny_model)
    feed(tiny_model, state, frame.head(60))
    hidden = [p[: len(state)].copy() for p in state.hidden]
    accepted, columns = state.accepted, (list(state.last_value), list(state.ticks), list(state.welford))
    points = Checkpoints(state, SessionOptions(state_path=str(tmp_path / "s.state")), background_from=0)
    points.save(tiny_model)
    feed(tiny_model, state, frame.slice(60))  # the stream goes on while the file is written
    fed.set()
    points.close()
    back = StreamState.load(tmp_path / "s.state", tiny_model)
    assert back.accepted == accepted < state.accepted
    assert (
        (back.last_value, back.ticks, back.welford)
        == columns
        != (state.last_value, state.ticks, state.welford)
    )
    for a, b in zip(back.hidden, hidden, strict=True):
        np.testing.assert_array_equal(a[: len(back)], b)


def test_the_next_checkpoint_waits_for_the_one_in_flight_and_raises_its_error(tiny_model, tmp_path):
    state = StreamState(tiny_model)
    feed(tiny_model, state, hourly_frame(length=5))
    missing = tmp_path / "gone" / "s.state"  # its folder does not exist: the write fails
    points = Checkpoints(state, SessionOptions(state_path=str(missing)), background_from=0)
    points.save(tiny_model)  # returns: the error belongs to the thread until it is asked for
    with pytest.raises(FileNotFoundError):
        points.save(tiny_model)
    points.close()  # nothing in flight any more


def test_stream_writes_large_states_from_a_second_thread_and_lands_the_last(
    model_path, tmp_path, tiny_model, monkeypatch
):
    threads = []
    save = safefile.save

    def spy(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return save(*args, **kwargs)

    monkeypatch.setattr(checkpoints, "BACKGROUND_FROM", 0)
    monkeypatch.setattr(safefile, "save", spy)
    lines = lines_for(hourly_frame(length=40))
    state = tmp_path / "s.state"
    result = run(model_path, ["--state", str(state), "--checkpoint-every", "30"], "\n".join(lines) + "\n")
    assert result.exit_code == 0, result.stderr
    assert threads[:-1] and not any(threads[:-1])  # every periodic one from the writer's thread
    assert threads[-1]  # the last one, at the end of input, written before the run returns
    assert StreamState.load(state, tiny_model).accepted == len(lines)


def test_a_failed_background_write_stops_the_stream_with_one_line(model_path, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "BACKGROUND_FROM", 0)

    def disk_full(path, build):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(checkpoints, "_write", disk_full)
    state = tmp_path / "s.state"
    lines = lines_for(hourly_frame(length=10))
    result = run(
        model_path,
        ["--state", str(state), "--checkpoint-every", "5", "--batch-lines", "5"],
        "\n".join(lines) + "\n",
    )
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: cannot use ") and "No space left on device" in last
    assert len(result.stdout.splitlines()) < len(lines)  # it stopped at the next batch, not at the end


def test_a_failed_write_in_flight_does_not_hide_the_error_that_ended_the_run(
    model_path, tmp_path, monkeypatch
):
    monkeypatch.setattr(checkpoints, "BACKGROUND_FROM", 0)
    release = threading.Event()

    def slow_and_failing(path, build):
        release.wait(30)
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(checkpoints, "_write", slow_and_failing)
    text = "s0,2024-01-01 00:00,10\ns0,2024-01-01 01:00,11\ns0,2024-01-01 02:00,x\n"
    args = ["--state", str(tmp_path / "s.state"), "--strict", "--checkpoint-every", "2", "--batch-lines", "1"]
    threading.Timer(0.5, release.set).start()
    result = run(model_path, args, text)
    assert result.exit_code == 1
    err = result.stderr.splitlines()
    assert any(line.startswith("checkpoint: ") and "No space left" in line for line in err)
    assert err[-1].startswith("Error: line 3: value 'x' is not a number")


FAILING_WRITER = """
import sys
from streamcast.cli import main
from streamcast.stream import checkpoints

def disk_full(path, build):
    raise OSError(28, "No space left on device", path)

checkpoints.BACKGROUND_FROM = 0
checkpoints._write = disk_full
main(sys.argv[1:])
"""


def test_an_idle_stream_stops_soon_after_its_background_write_failed(model_path, tmp_path):
    args = ["stream", "-m", str(model_path), "--state", str(tmp_path / "s.state"), "--checkpoint-every", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-c", FAILING_WRITER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        for h in range(2):  # the second line's checkpoint goes to the writer, which fails
            proc.stdin.write(f"s0,2024-01-01 0{h}:00,{10 + h}\n".encode())
            proc.stdin.flush()
            proc.stdout.readline()
        assert proc.wait(30) == 1  # no more input, stdin still open: it stops all the same
        assert "No space left on device" in proc.stderr.read().decode().splitlines()[-1]
    finally:
        proc.kill()
        proc.stdin.close()


def test_each_checkpoint_names_the_series_held_then_through_new_and_evicted_series(tiny_model, tmp_path):
    # The ids a checkpoint encoded are reused by the next one: series added since, and a state
    # renumbered by eviction, must still be named exactly, in order.
    path = tmp_path / "s.state"
    frame = hourly_frame(series=3, length=4)
    ids = frame["series_id"].unique(maintain_order=True).to_list()
    state = StreamState(tiny_model)
    feed(tiny_model, state, frame.filter(frame["series_id"] != ids[2]))
    state.save(path)
    assert StreamState.load(path, tiny_model).ids == ids[:2]
    feed(tiny_model, state, frame.filter(frame["series_id"] == ids[2]))
    state.save(path)
    back = StreamState.load(path, tiny_model)
    assert back.ids == ids and back.index == {sid: s for s, sid in enumerate(ids)}
    state.evict([0])
    points = Checkpoints(state, SessionOptions(state_path=str(path)), background_from=0)
    points.save(tiny_model)
    points.close()
    back = StreamState.load(path, tiny_model)
    assert back.ids == ids[1:]
    np.testing.assert_array_equal(back.hidden[0][:2], state.hidden[0][:2])
    back.save(path)  # a loaded state encodes its ids afresh
    assert StreamState.load(path, tiny_model).ids == ids[1:]
