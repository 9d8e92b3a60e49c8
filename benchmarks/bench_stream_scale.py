"""`stream` holding many series in one process: memory per series, a tick of every series, and the
checkpoint (save and load) of all their states, beside the time the disk takes to write and sync
a plain file of the same size (the floor under any checkpoint's landing).

For each count of series: every series gets a first observation (a new series: the rules line by
line) and a second one through `stream` in micro-batches of 8,192 lines, then the state file is
written six times over (as a stream checkpoints again and again; the first writes of a process also
pay for fresh pages: on this project's virtual machines the first gigabytes a process writes took
3-4 s where the later took 1.1-1.5 s), twice more as `stream` checkpoints (from 100,000 series a second thread writes
a copy: how long the stream is held, and when the file has landed), and read back twice. Memory is the resident size the held states add, split into the hidden-state
tensors (their rows; the tensor grows by doubling) and everything else (ids, index, scales, clocks).
GRU hidden 64, horizon 24. Usage: python bench_stream_scale.py [MAX_SERIES] [MEMBERS] (default
1,000,000 series of one network; MEMBERS 3 measures the default ensemble's size of state).
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import machine, report, synthetic

import streamcast as sc
from streamcast.stream.checkpoints import Checkpoints
from streamcast.stream.input import parser_for
from streamcast.stream.session import SessionOptions

BATCH = 8192
SAVES = 6


def rss_bytes() -> int:
    """The resident size of this process now (not its peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def tick(model: sc.Forecaster, state: sc.StreamState, lines: list[str]) -> float:
    """Seconds to stream `lines` through `state` in micro-batches, forecasts included."""
    parser = parser_for(model)
    batches = (parser.parse(lines[i : i + BATCH], i + 1) for i in range(0, len(lines), BATCH))
    started = time.perf_counter()
    emitted = sum(len(b) for b in sc.stream(model, batches, state))
    assert emitted == len(lines)
    return time.perf_counter() - started


def disk_floor(size: int, tmp: Path) -> float:
    """Seconds to write `size` bytes to a new file beside the checkpoint and sync it, in 16 MB
    writes: what the disk itself allows a checkpoint of that size, whatever builds the bytes."""
    block = b"\x5a" * (16 << 20)
    path = tmp / "floor.bin"
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        left = size
        while left > 0:
            left -= os.write(fd, block[: min(left, len(block))])
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - started
    path.unlink()
    return seconds


def measure(model: sc.Forecaster, series: int, tmp: Path) -> dict:
    first = [f"s{i:07d},2024-01-01 00:00,{10 + i % 7}" for i in range(series)]
    second = [line.replace(" 00:00,", " 01:00,") for line in first]
    gc.collect()
    before = rss_bytes()
    state = sc.StreamState(model)
    new_seconds = tick(model, state, first)
    gc.collect()
    held = rss_bytes() - before
    tensor_bytes = sum(p[0].nbytes for p in state.hidden) * len(state)
    next_seconds = tick(model, state, second)
    path = tmp / "state.safetensors"
    saves = []
    for _ in range(SAVES):  # a stream checkpoints over and over; the first pays for fresh pages
        started = time.perf_counter()
        state.save(path)
        saves.append(time.perf_counter() - started)
    # As `stream` takes them: from BACKGROUND_FROM series a copy is taken and a second thread
    # writes it, so the stream is held only for the copy; the next checkpoint waits for it.
    points = Checkpoints(state, SessionOptions(state_path=str(path)))
    stalls, lands = [], []
    for _ in range(2):
        started = time.perf_counter()
        points.save(model)
        stalls.append(time.perf_counter() - started)
        points.landed()
        lands.append(time.perf_counter() - started)
    points.close()
    loads = []
    for _ in range(2):
        started = time.perf_counter()
        loaded = sc.StreamState.load(path, model)
        loads.append(time.perf_counter() - started)
        assert len(loaded) == series
        del loaded
    return {
        "series": series,
        "bytes/series (not tensors)": (held - tensor_bytes) / series,
        "tensor bytes/series": tensor_bytes / series,
        "new series: ticks/s": series / new_seconds,
        "next tick: ticks/s": series / next_seconds,
        "checkpoint save s, first": saves[0],
        "checkpoint save s, median of the next": statistics.median(saves[1:]),
        "checkpoint save s, last": saves[-1],
        "stream held s (background from 100k)": max(stalls),
        "background write lands s": max(lands),
        "checkpoint load s, first / second": f"{loads[0]:.2f} / {loads[1]:.2f}",
        "file MB": path.stat().st_size / 1e6,
        "the disk: as many bytes written and synced, s": disk_floor(path.stat().st_size, tmp),
    }


def main() -> None:
    most = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    counts = [n for n in (10_000, 100_000, 1_000_000) if n <= most] or [most]
    frame = synthetic(20, 200)
    members = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    config = sc.FitConfig(cell="gru", hidden_size=64, horizon=24, epochs=1, ensemble=members)
    model = sc.fit(sc.read_series(frame), config)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            rows.append(measure(model, n, Path(tmp)))
            gc.collect()
    load = os.getloadavg()[0]
    report(
        "stream_scale" if members == 1 else f"stream_scale_ensemble{members}",
        rows,
        note=f"GRU hidden 64 x {members} member(s), horizon 24, one process; load {load:.1f}; {machine()}",
    )


if __name__ == "__main__":
    main()
