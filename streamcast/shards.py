"""The one shard key: which of N shards a series belongs to, the way Kafka partitions keyed messages.

A series belongs to shard `murmur2(utf8(series_id)) & 0x7fffffff mod N`, exactly Kafka's default
partitioner for a keyed record, so a topic keyed by series id with N partitions and streamcast's N
shards hold the same series: the process behind partition K serves shard K. Every place that splits
series (forecast/backtest parts, stream partitions, data-parallel ranks) calls `shard_of`.
Shards are numbered from 0, like Kafka partitions and torchrun ranks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from streamcast.errors import UsageError

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` (seed 0x9747b28c), as a signed 32-bit int like Java's."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length // 4
    for i in range(whole):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = data[4 * whole :]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


@functools.lru_cache(maxsize=1 << 20)
def _positive_hash(series_id: str) -> int:
    return murmur2(series_id.encode("utf-8")) & 0x7FFFFFFF


def shard_of(series_id: object, shards: int) -> int:
    """The shard (0..shards-1) of a series; ids are keyed by their text, as a Kafka key string is."""
    return _positive_hash(str(series_id)) % shards


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: a process's share of the series."""

    index: int
    count: int

    def holds(self, series_id: object) -> bool:
        return shard_of(series_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, option: str = "--shard") -> Shard:
    """`"K/N"` -> Shard(K, N), refusing anything else with the fix in the message."""
    parts = str(text).strip().split("/")
    try:
        index, count = (int(p) for p in parts)
    except ValueError:
        index, count = -1, 0
    if len(parts) != 2 or count < 1 or not 0 <= index < count:
        raise UsageError(
            f"{option} {text!r}: expected K/N with N >= 1 and 0 <= K < N (shards count from 0, "
            f"like Kafka partitions), e.g. {option} 0/4"
        )
    return Shard(index, count)
