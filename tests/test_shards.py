"""The shard key: Kafka's partitioner, bit for bit, so topic partitions and streamcast shards agree."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcast.errors import UsageError
from streamcast.shards import Shard, murmur2, parse_shard, shard_of

# Kafka's own test vectors for Utils.murmur2 (clients/src/test/.../UtilsTest.java).
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), KAFKA_MURMUR2.items())
def test_murmur2_equals_kafkas_utils_murmur2(key, expected):
    assert murmur2(key) == expected


def test_shard_is_kafkas_default_partition_for_the_key():
    # Kafka: Utils.toPositive(Utils.murmur2(key)) % numPartitions
    for key, h in KAFKA_MURMUR2.items():
        for n in (1, 3, 12, 100):
            assert shard_of(key.decode(), n) == (h & 0x7FFFFFFF) % n


def test_integer_ids_are_keyed_by_their_text():
    assert shard_of(21, 7) == shard_of("21", 7)


@given(st.text(max_size=40), st.integers(1, 64))
def test_every_series_lands_in_exactly_one_shard(series_id, n):
    owners = [k for k in range(n) if Shard(k, n).holds(series_id)]
    assert owners == [shard_of(series_id, n)]


def test_shards_spread_series_evenly():
    counts = [0] * 4
    for i in range(4000):
        counts[shard_of(f"series-{i}", 4)] += 1
    assert min(counts) > 900


def test_parse_shard_reads_k_of_n():
    assert parse_shard("2/4") == Shard(2, 4)
    assert str(parse_shard(" 0/1 ")) == "0/1"


@pytest.mark.parametrize("text", ["4/4", "-1/4", "1", "a/b", "1/0", "1/2/3", ""])
def test_parse_shard_refuses_bad_values_with_the_fix(text):
    with pytest.raises(UsageError, match=r"expected K/N .* e\.g\. --shard 0/4"):
        parse_shard(text)
