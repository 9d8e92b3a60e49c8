"""`stream --partition K/N`: each process serves the series of its shard (streamcast.shards, Kafka's
keyed partitioning) and counts and skips the others' lines, so N processes together serve all."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import polars as pl
import pytest

import streamcast as sc
from streamcast.shards import Shard, shard_of
from tests.conftest import hourly_frame
from tests.test_cli_stream import ROOT, assert_same_forecasts, lines_for, run

LINES = lines_for(hourly_frame(length=20))  # s0, s1, s2 interleaved: 60 lines
TEXT = "\n".join(LINES) + "\n"


@pytest.mark.parametrize("shards", [2, 3])
def test_the_partitions_together_print_exactly_the_unpartitioned_forecasts(model_path, shards):
    whole = run(model_path, [], TEXT).stdout.splitlines()
    parts = []
    for k in range(shards):
        result = run(model_path, ["--partition", f"{k}/{shards}"], TEXT)
        assert result.exit_code == 0, result.stderr
        out = result.stdout.splitlines()
        ids = {json.loads(line)["series_id"] for line in out}
        assert ids == {sid for sid in ("s0", "s1", "s2") if shard_of(sid, shards) == k}
        assert result.stderr.endswith(f", other_partition={60 - len(out)}\n")
        parts += out
    key = lambda line: (json.loads(line)["timestamp"], json.loads(line)["series_id"])  # noqa: E731
    assert_same_forecasts(sorted(parts, key=key), sorted(whole, key=key))


def test_a_bad_partition_is_a_usage_error_with_the_fix(model_path):
    result = run(model_path, ["--partition", "3/3"], TEXT)
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: --partition '3/3': expected K/N with N >= 1 and 0 <= K < N (shards count from 0, "
        "like Kafka partitions), e.g. --partition 0/4\n"
    )


def test_warmup_warms_only_the_partitions_series(model_path, tmp_path):
    history = tmp_path / "history.csv"
    hourly_frame().filter(pl.col("timestamp") < datetime(2024, 1, 7, 6)).write_csv(history)
    result = run(model_path, ["--partition", "1/2", "--warmup", str(history)], "s1,2024-01-07 06:00,12\n")
    assert result.stderr.splitlines()[0] == f"warmed 2 series from {history}"  # s1 and s2; s0 is 0/2
    assert json.loads(result.stdout)["warming_up"] is False


def test_the_library_twin_skips_other_partitions(tiny_model):
    state = sc.StreamState(tiny_model)
    config = sc.StreamConfig(partition=Shard(0, 2))
    records = [
        {"series_id": sid, "timestamp": "2024-01-01 00:00", "value": 10.0} for sid in ("s0", "s1", "s2")
    ]
    (batch,) = sc.stream(tiny_model, [sc.Observations.from_records(records, tiny_model)], state, config)
    assert [f.series_id for f in batch] == ["s0"]
    assert batch.other_partition == 2
    assert state.ids == ["s0"]  # the others hold no state here


def test_two_processes_behind_one_pipe_each_serve_their_own_series(model_path, tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "streamcast", "stream", "-m", str(model_path), "--partition", f"{k}/2"]
            + ["--state", str(tmp_path / f"state-{k}.safetensors")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        for k in range(2)
    ]
    outs = [p.communicate(TEXT.encode(), timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    served = [
        sorted({json.loads(line)["series_id"] for line in out.decode().splitlines()}) for out, _ in outs
    ]
    assert served == [["s0"], ["s1", "s2"]]
    assert [len(out.decode().splitlines()) for out, _ in outs] == [20, 40]
    assert "other_partition=40" in outs[0][1].decode() and "other_partition=20" in outs[1][1].decode()
    assert sc.StreamState.load(tmp_path / "state-1.safetensors", sc.load(model_path)).ids == ["s1", "s2"]
