"""Data-parallel fit: training throughput with 1 and 2 torchrun processes of 1 thread each.

`torchrun --nproc-per-node N -m streamcast fit DATASET --threads 1` on a Parquet dataset of
SERIES synthetic hourly series x LENGTH points (two files), one network, EPOCHS epochs. Throughput
is one process's training steps per epoch (lanes x steps, as `fit` counts them) over the median
epoch time (training and validation), so 1 and 2 processes are judged by the same work. The ranks
take one process's optimizer steps: the last column is the largest weight difference from the
one-process model: rounding alone, which Adam amplifies in weights whose gradient is near zero
(with `--optimizer sgd` it stays near 1e-8). The load average is read before and after each run:
on a shared machine, the cores other jobs take are cores the processes do not get.
STREAMCAST_BENCH_QUICK=1: 100 series x 600 points, one epoch.

    python benchmarks/bench_distributed.py [--series 400 --length 1000 --batch-size 128 --epochs 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from common import report, synthetic

import streamcast


def run_fit(processes: int, dataset: Path, model: Path, args: argparse.Namespace) -> float:
    """Train with `processes` ranks; the wall seconds of the whole command."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    options = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--ensemble", "1"]
    started = time.perf_counter()
    subprocess.run(
        [
            *command,
            "-m",
            "streamcast",
            "fit",
            str(dataset),
            *options,
            "--threads",
            "1",
            "-q",
            "-o",
            str(model),
        ],
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=400)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    if os.environ.get("STREAMCAST_BENCH_QUICK"):
        args.series, args.length, args.epochs = 100, 600, 1
    rows, models = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(tmp) / "dataset"
        dataset.mkdir()
        frame = synthetic(args.series, args.length)
        half = frame["series_id"].unique().sort()[args.series // 2]
        frame.filter(pl.col("series_id") < half).write_parquet(dataset / "part-0.parquet")
        frame.filter(pl.col("series_id") >= half).write_parquet(dataset / "part-1.parquet")
        work = None
        for processes in (1, 2):
            load_before = os.getloadavg()[0]
            model = Path(tmp) / f"{processes}.streamcast"
            wall = run_fit(processes, dataset, model, args)
            models[processes] = streamcast.load(model)
            history = models[processes].info["history"]
            epoch_s = statistics.median(h["seconds"] for h in history)
            if work is None:  # one process's steps per epoch: the work both runs do
                work = statistics.median(h["timesteps_per_second"] * h["seconds"] for h in history)
            one = models[1].net.state_dict()
            rows.append(
                {
                    "processes x threads": f"{processes} x 1",
                    "epoch s": epoch_s,
                    "timesteps/s": work / epoch_s,
                    "speed-up": rows[0]["epoch s"] / epoch_s if rows else 1.0,
                    "command s": wall,
                    "load before": load_before,
                    "load after": os.getloadavg()[0],
                    "max weight diff": max(
                        float((v - one[k]).abs().max()) for k, v in models[processes].net.state_dict().items()
                    ),
                }
            )
    note = (
        f"{args.series} series x {args.length} hourly points, batch {args.batch_size} lanes, LSTM hidden 64, "
        f"{args.epochs} epochs, gloo"
    )
    report("distributed_fit", rows, note)


if __name__ == "__main__":
    main()
