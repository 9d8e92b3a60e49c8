"""`fit` with every process of a torchrun job: the Python twin of `torchrun ... -m streamcast fit`.

    torchrun --nproc-per-node 2 train.py   # train.py calls fit_parallel(...)

Each rank reads only its share of the series (a Parquet dataset is scanned lazily and filtered by
`streamcast.shards.shard_of`), and the ranks train one model together (`streamcast.dataparallel`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamcast.devices import resolve_device
from streamcast.distributed import PeerFailed, joined
from streamcast.errors import StreamcastError, UsageError
from streamcast.forecaster import Forecaster
from streamcast.reading import SeriesFrame, read_series
from streamcast.shards import Shard
from streamcast.training import EpochStats, FitConfig, fit


def fit_parallel(
    source: str | Path,
    config: FitConfig | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    *,
    threads: int | None = None,
    device: str = "auto",
    on_read: Callable[[tuple[str, ...]], None] | None = None,
    adjust: Callable[[FitConfig, SeriesFrame], FitConfig] | None = None,
    jobs: int | str = 1,
    **read_options: Any,
) -> Forecaster:
    """Train on `source` with all ranks of the torchrun job this process runs in (plain `fit` when
    it runs alone). Every rank returns the same model; rank 0 alone calls `on_epoch` and `on_read`
    (with the reading notes), and should be the one to save it. `adjust` may settle what depends on
    the data once it is read (the CLI's horizon by frequency); every rank calls it. `jobs`: as
    `fit`'s, for a process of its own (under torchrun the ranks already share the cores).

    A user error on one rank names the rank; torchrun then stops the others.
    """
    config = config or FitConfig()
    chosen = resolve_device(device)
    with joined(chosen) as cluster:
        if cluster is None:
            data = read_series(source, **read_options)
            if on_read is not None:
                on_read(data.notes)
            config = adjust(config, data) if adjust else config
            return fit(data, config, on_epoch, threads=threads, device=chosen, jobs=jobs)
        if str(source) == "-":
            raise UsageError("under torchrun every process reads the data itself: give a file, not -")
        try:
            with cluster.together():
                data = read_series(source, shard=Shard(cluster.rank, cluster.world_size), **read_options)
            if on_read is not None and cluster.is_main:
                on_read(data.notes)
            config = adjust(config, data) if adjust else config
            return fit(data, config, on_epoch if cluster.is_main else None, threads=threads, cluster=cluster)
        except PeerFailed:
            raise
        except StreamcastError as exc:
            exc.args = (f"rank {cluster.rank} of {cluster.world_size}: {exc}", *exc.args[1:])
            raise
