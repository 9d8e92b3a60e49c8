"""What the ranks of a data-parallel `fit` agree on, so that N processes train one process's model.

Each rank holds only its share of the series (`streamcast.shards.shard_of(id, world_size)`). Every
number that one process computes over all series (the log-transform choice, covariate scales, the
MASE weights' median, the batch size, the lane order) is computed here from all ranks' parts, so
each rank ends up with the value one process would have had, and the same random lane order picks
the same batches everywhere: a batch's lanes are trained by the ranks that hold them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from streamcast.distributed import Cluster
from streamcast.errors import DataError
from streamcast.features import FeatureSpec, Scaler, _safe_scale, calendar_names, choose_floor
from streamcast.lanes import Lanes, loss_chunks


def check_holds_series(cluster: Cluster, series: int) -> None:
    """A rank without series would have nothing to train: say how to avoid it, on every rank."""
    counts = cluster.gather(series)
    empty = [r for r, n in enumerate(counts) if n == 0]
    if empty:
        raise DataError(
            f"rank {empty[0]} of {cluster.world_size} holds none of the {sum(counts)} series "
            "(each rank trains the series whose id hashes to it): run fewer processes"
        )


def agree_freq(cluster: Cluster, freq: str) -> str:
    """Every rank must have read its series at the same frequency."""
    found = sorted(set(cluster.gather(freq)))
    if len(found) > 1:
        raise DataError(
            f"the ranks' shares of the data step by different frequencies ({', '.join(found)}): "
            "give series that share one frequency"
        )
    return freq


def agree_transform(cluster: Cluster, train_values: np.ndarray, requested: str) -> str:
    """`--transform auto` over all ranks' data: log only when every rank's values are positive."""
    if requested != "auto":
        return requested
    finite = train_values[np.isfinite(train_values)]
    positive = bool(finite.size) and bool((finite > 0).all())
    return "log" if cluster.min([float(positive)])[0] > 0 else "none"


def agree_floor(cluster: Cluster, train_values: np.ndarray, requested: str, transform: str) -> float | None:
    """`features.choose_floor` over all ranks' data: 0 only when every rank's values are >= 0."""
    here = choose_floor(train_values, requested, transform)
    return here if cluster.min([float(here is not None)])[0] > 0 else None


def agree_feature_spec(
    cluster: Cluster,
    frame: pl.DataFrame,
    freq: str,
    covariates: tuple[str, ...],
    scaling: str,
    transform: str,
) -> FeatureSpec:
    """`features.fit_feature_spec` over all ranks' training rows: covariate means, then spreads,
    each summed over ranks (two passes keep the variance as exact as one process's)."""
    columns = [frame[c].cast(pl.Float64).drop_nulls().to_numpy() for c in covariates]
    count_sum = cluster.sum([x for v in columns for x in (v.size, v.sum())])
    counts, sums = count_sum[0::2], count_sum[1::2]
    loc = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    squares = cluster.sum([float(np.square(v - m).sum()) for v, m in zip(columns, loc, strict=True)])
    std = np.sqrt(np.divide(squares, counts, out=np.zeros_like(squares), where=counts > 0))
    scale = tuple(_safe_scale(float(s), float(m)) for s, m in zip(std, loc, strict=True))
    return FeatureSpec(
        freq, calendar_names(freq), covariates, tuple(float(m) for m in loc), scale, scaling, transform
    )


def agree_median(cluster: Cluster, weights: np.ndarray) -> float:
    """The median of every rank's finite weights (one float per series)."""
    finite = np.concatenate(cluster.gather(weights[np.isfinite(weights)]))
    return float(np.median(finite)) if finite.size else 1.0


def gather_scaler(cluster: Cluster, scaler: Scaler) -> Scaler:
    """Every rank's per-series scales in one scaler, in one process's order (series ids sorted)."""
    loc: dict[str, float] = {}
    scale: dict[str, float] = {}
    for part_loc, part_scale in cluster.gather((scaler.loc, scaler.scale)):
        loc.update(part_loc)
        scale.update(part_scale)
    ids = sorted(loc)
    return Scaler({s: loc[s] for s in ids}, {s: scale[s] for s in ids})


@dataclass
class GlobalLanes:
    """Every rank's lanes in the order one process would have made them, as indices only.

    `owner[g]` holds lane g, as its own lane `local[g]`; `lengths` and the loss chunks are what
    every rank needs to walk a batch in step with the others.
    """

    owner: np.ndarray  # (G,) rank
    local: np.ndarray  # (G,) index into the owner's Lanes
    lengths: np.ndarray  # (G,) real steps per lane
    chunks_with_loss: np.ndarray  # (G,)
    firsts: np.ndarray  # (G,) each lane's first loss step (after its warm-up), for random windows

    def __len__(self) -> int:
        return len(self.owner)

    def mine(self, group: np.ndarray, rank: int) -> np.ndarray:
        """This rank's own lane indices among a batch of global lanes, in batch order."""
        return self.local[group[self.owner[group] == rank]]


def global_lanes(
    cluster: Cluster, series_ids: list[str], lanes_per_series: np.ndarray, lanes: Lanes, bptt: int
) -> GlobalLanes:
    """Lay every rank's lanes out as one process would: series by series in sorted id order (the
    order `read_series` gives), each series' lanes in time order."""
    firsts = lanes.lengths - lanes.loss_mask.sum(axis=1)  # a lane's loss steps run to its end
    parts = cluster.gather((series_ids, lanes_per_series, lanes.lengths, loss_chunks(lanes, bptt), firsts))
    entries = []  # (series id, rank, first local lane, lanes)
    for rank, (ids, per_series, *_) in enumerate(parts):
        starts = np.concatenate([[0], np.cumsum(per_series)])
        entries.extend((sid, rank, int(starts[i]), int(per_series[i])) for i, sid in enumerate(ids))
    entries.sort(key=lambda e: e[0])
    owner, local, lengths, chunks, loss_from = [], [], [], [], []
    for _, rank, first, count in entries:
        owner.append(np.full(count, rank, dtype=np.int64))
        local.append(np.arange(first, first + count, dtype=np.int64))
        lengths.append(parts[rank][2][first : first + count])
        chunks.append(parts[rank][3][first : first + count])
        loss_from.append(parts[rank][4][first : first + count])
    return GlobalLanes(
        *(
            np.concatenate(a) if a else np.zeros(0, dtype=np.int64)
            for a in (owner, local, lengths, chunks, loss_from)
        )
    )
