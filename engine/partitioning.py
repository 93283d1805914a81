"""Which command partition a technology belongs to: Kafka's default rule for keyed records.

The Java client's default partitioner (and librdkafka's ``murmur2_random``) hash the key with
murmur2; the engine checks every record against it, so a front-end that routes differently
gets a dead letter instead of splitting a technology's book across two partitions.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(technology_id: str, partitions: int) -> int:
    return int(murmur2(technology_id.encode()) & 0x7FFFFFFF) % partitions
