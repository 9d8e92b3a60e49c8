"""Data-parallel `fit` under torchrun: 2 gloo processes on the CPU train one process's model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import streamcast
from streamcast.cli import main
from streamcast.errors import DataError
from streamcast.reading import read_series
from streamcast.shards import Shard, shard_of
from streamcast.torchrun import fit_parallel
from streamcast.training import FitConfig, fit
from tests.conftest import hourly_frame

FAST = ["--hidden", "8", "--epochs", "2", "--horizon", "6", "--bptt", "16", "--ensemble", "1", "-q"]
CONFIG = FitConfig(hidden_size=8, epochs=2, horizon=6, bptt=16, ensemble=1)


def with_covariate(frame: pl.DataFrame) -> pl.DataFrame:
    rng = np.random.default_rng(1)
    return frame.with_columns(pl.Series("temp", rng.normal(15, 5, frame.height)))


@pytest.fixture
def dataset(tmp_path):
    """Six series in two Parquet files; s0 and s4 hash to rank 0 of 2, s1, s2, s3 and s5 to rank 1."""
    frame = with_covariate(hourly_frame(series=6, length=150))
    folder = tmp_path / "dataset"
    folder.mkdir()
    frame.filter(pl.col("series_id") < "s3").write_parquet(folder / "part-0.parquet")
    frame.filter(pl.col("series_id") >= "s3").write_parquet(folder / "part-1.parquet")
    return folder


def torchrun(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STREAMCAST_DIST_TIMEOUT": "60"}
    return subprocess.run(
        [*command, "-m", "streamcast", *args], capture_output=True, text=True, env=env, timeout=180
    )


def test_two_gloo_ranks_train_the_weights_one_process_trains(dataset, tmp_path):
    assert {shard_of(f"s{i}", 2) for i in range(6)} == {0, 1}  # both ranks hold series
    config = ["--covariate", "temp", "--series-weight", "mase", *FAST]
    done = torchrun("fit", str(dataset), *config, "-o", str(tmp_path / "two.streamcast"))
    assert done.returncode == 0, done.stderr

    two = streamcast.load(tmp_path / "two.streamcast")
    data = read_series(dataset, covariates=["temp"])
    one = fit(data, FitConfig(**{**CONFIG.__dict__, "covariates": ("temp",), "series_weight": "mase"}))
    assert list(two.scaler.loc) == list(one.scaler.loc)  # every series, in one process's order
    assert two.scaler == one.scaler
    assert two.spec.covariate_loc == pytest.approx(one.spec.covariate_loc, rel=1e-12)
    for name, weight in one.net.state_dict().items():
        torch.testing.assert_close(two.net.state_dict()[name], weight, rtol=1e-4, atol=1e-5)
    assert [h["val_loss"] for h in two.info["history"]] == pytest.approx(
        [h["val_loss"] for h in one.info["history"]], rel=1e-5
    )
    assert (two.info["world_size"], two.info["device"]) == (2, "cpu")
    assert two.info["data"]["source"] == str(dataset.resolve())
    assert two.info["data"]["series"] == 6 and two.info["lanes"] == one.info["lanes"]


SPY = """
import json, os, sys
from streamcast import training
from streamcast.cli import main
real = training._scored_forward
def spy(net, x, state, stride, step):
    y, state, scored = real(net, x, state, stride, step)
    with open(os.path.join(os.environ["SPY_DIR"], os.environ.get("RANK", "0")), "a") as f:
        f.write(json.dumps([net.config.cell, step]) + "\\n")
    return y, state, scored
training._scored_forward = spy
main()
"""


def fit_spied(spy_code: str, config: list[str], tmp_path) -> tuple:
    """`fit` run by `spy_code` under 2 gloo ranks, then in one process: the folders where each
    wrote what it saw, a file per rank."""
    spy = tmp_path / "spy.py"
    spy.write_text(spy_code)
    ranks, alone = tmp_path / "ranks", tmp_path / "alone"
    ranks.mkdir(), alone.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STREAMCAST_DIST_TIMEOUT": "60", "SPY_DIR": str(ranks)}
    done = subprocess.run([*command, str(spy), "fit", *config], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    env = {**env, "SPY_DIR": str(alone)}
    done = subprocess.run([sys.executable, str(spy), "fit", *config], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return ranks, alone


def test_two_gloo_ranks_score_a_strided_segrnn_on_one_processs_steps(dataset, tmp_path):
    """`--segment-stride` under torchrun: each rank scores its lanes' chunks from the same lane
    steps (shifted by the same epoch) as one process, so the batches train the same steps.
    (The weights agree only in distribution: a segrnn member's dropout draws differ per process.)"""
    config = [str(dataset), "--cell", "segrnn", "--segment-stride", "3", *FAST, "-o", str(tmp_path / "m")]
    ranks, alone = fit_spied(SPY, config, tmp_path)

    def steps(folder):
        calls = [json.loads(line) for f in sorted(folder.iterdir()) for line in f.read_text().splitlines()]
        return sorted({step for cell, step in calls if cell == "segrnn"})

    assert len(list(ranks.iterdir())) == 2  # both ranks trained lanes
    assert steps(ranks) == steps(alone)
    assert len(steps(alone)) > 2  # chunks at several lane steps, over two epochs
    assert streamcast.load(tmp_path / "m").info["fit_config"]["segment_stride"] == 3


WINDOW_SPY = """
import json, os
from streamcast import training
from streamcast.cli import main
from streamcast.windowbatches import windows_at
real, real_mine = training._window_loss_terms, training.mine
batch, calls = [-1], [0]
def spy_mine(*args):
    batch[0] += 1  # every rank reaches every batch, holding windows of it or not
    return real_mine(*args)
def spy(net, work, config, rows, origins):  # the loss of one batch of drawn windows
    windows = windows_at(work.values, rows, origins, net.config.ar)
    seen = sorted([round(float(w.sum()), 4), round(float(w[-1]), 5)] for w in windows)
    index = batch[0] if batch[0] >= 0 else calls[0]
    calls[0] += 1
    with open(os.path.join(os.environ["SPY_DIR"], os.environ.get("RANK", "0")), "a") as f:
        f.write(json.dumps([index, seen]) + "\\n")
    return real(net, work, config, rows, origins)
training._window_loss_terms, training.mine = spy, spy_mine
main()
"""


def test_two_gloo_ranks_draw_one_processs_random_windows(dataset, tmp_path):
    """`--segment-batches random` under torchrun: every rank draws one process's positions over
    all ranks' lanes and scores those of its series, so each batch holds the windows one
    process's batch holds, split between the ranks."""
    random = ["--cell", "segrnn", "--segment-batches", "random", "--ar", "24"]
    ranks, alone = fit_spied(WINDOW_SPY, [str(dataset), *random, *FAST, "-o", str(tmp_path / "m")], tmp_path)

    def batches(path):
        return [json.loads(line) for line in path.read_text().splitlines()]

    one = dict(batches(alone / "0"))
    assert len(one) > 4  # batches over two epochs
    joined: dict[int, list] = {}
    for rank in ("0", "1"):
        held = batches(ranks / rank)
        assert held  # both ranks' series are drawn
        for index, seen in held:
            joined.setdefault(index, []).extend(seen)
    assert {i: sorted(seen) for i, seen in joined.items()} == one
    assert streamcast.load(tmp_path / "m").info["fit_config"]["segment_batches"] == "random"


def test_a_failing_rank_stops_every_rank_with_one_line_each(dataset, tmp_path):
    short = pl.read_parquet(dataset / "part-0.parquet").filter(pl.col("series_id") == "s1").head(10)
    frame = pl.read_parquet(dataset / "part-0.parquet").filter(pl.col("series_id") != "s1")
    pl.concat([frame, short]).write_parquet(dataset / "part-0.parquet")  # s1 lives on rank 1

    done = torchrun("fit", str(dataset), *FAST, "-o", str(tmp_path / "never.streamcast"))
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert sorted(errors) == [
        "Error: rank 0 of 2: stopped, as rank 1 failed (see its error)",
        "Error: rank 1 of 2: series 's1' has 10 points but fit needs at least 14 (--val-size 6 + "
        "--horizon 6 + 2); 1 series are that short: lower --horizon or --val-size, or drop them",
    ]
    assert not (tmp_path / "never.streamcast").exists()


def test_one_torchrun_process_writes_plain_fits_weights_byte_for_byte(dataset, tmp_path, monkeypatch):
    runner = CliRunner()
    plain = runner.invoke(main, ["fit", str(dataset), *FAST, "-o", str(tmp_path / "plain.streamcast")])
    assert plain.exit_code == 0, plain.stderr
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)  # what torchrun --nproc-per-node 1 sets
    alone = runner.invoke(main, ["fit", str(dataset), *FAST, "-o", str(tmp_path / "alone.streamcast")])
    assert alone.exit_code == 0, alone.stderr
    a, b = load_file(tmp_path / "plain.streamcast"), load_file(tmp_path / "alone.streamcast")
    assert a.keys() == b.keys() and all(a[k].numpy().tobytes() == b[k].numpy().tobytes() for k in a)


def test_fit_parallel_outside_torchrun_is_plain_fit(dataset):
    alone = fit_parallel(dataset, CONFIG)
    plain = fit(read_series(dataset), CONFIG)
    assert alone.info["world_size"] == 1
    assert all(torch.equal(v, plain.net.state_dict()[k]) for k, v in alone.net.state_dict().items())


def test_a_dataset_folder_or_glob_reads_as_one_table(dataset):
    whole = pl.concat([pl.read_parquet(p) for p in sorted(dataset.glob("*.parquet"))])
    for source in (dataset, f"{dataset}/part-*.parquet"):
        frame = read_series(source, covariates=["temp"]).frame
        assert frame.sort("series_id", "timestamp").equals(frame)
        assert frame.height == whole.height
        assert frame["series_id"].unique().sort().to_list() == [f"s{i}" for i in range(6)]


def test_each_shard_reads_only_its_series_and_the_shards_cover_all(dataset):
    seen = []
    for k in range(2):
        ids = read_series(dataset, shard=Shard(k, 2)).series_ids
        assert ids and all(shard_of(s, 2) == k for s in ids)
        seen += ids
    assert sorted(seen) == [f"s{i}" for i in range(6)]


def test_a_shard_that_holds_no_series_says_so(dataset):
    only = pl.read_parquet(dataset / "part-0.parquet").filter(pl.col("series_id") == "s0")
    for part in dataset.glob("*.parquet"):
        part.unlink()
    only.write_parquet(dataset / "s0.parquet")  # s0 hashes to shard 0 of 2
    with pytest.raises(
        DataError, match=r"^none of the 1 series of .* hash to shard 1/2: use fewer processes"
    ):
        read_series(dataset, shard=Shard(1, 2))


def test_a_glob_without_parquet_files_says_so(tmp_path):
    result = CliRunner().invoke(main, ["fit", f"{tmp_path}/*.parquet", *FAST])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: '{tmp_path}/*.parquet' matches no Parquet files: ")
