"""The cached key-hash partitioner chooses the partitions aiokafka's default one does."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from justwalk.kafka_topics import KeyHashPartitioner


def test_same_partition_as_the_default_partitioner() -> None:
    ours, default = KeyHashPartitioner(), DefaultPartitioner()
    keys = [f"ms-{i:04d}".encode() for i in range(500)] + [b"", b"x", "pé".encode()]
    for n in (1, 4, 8, 12):
        parts = list(range(n))
        for _ in range(2):  # the second time from the cache
            assert [ours(k, parts, parts) for k in keys] == [default(k, parts, parts)
                                                             for k in keys]
    assert {ours(k, [0, 1, 2, 3], [0, 1, 2, 3]) for k in keys} == {0, 1, 2, 3}
    assert ours(None, [0, 1], [1]) == 1  # no key: one of the available partitions
