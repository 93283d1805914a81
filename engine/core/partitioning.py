"""Which command partition a technology belongs to: Kafka's default rule for keyed records.

The Java client's default partitioner (and librdkafka's ``murmur2_random``) hash the key with
murmur2; the engine checks every record against it, so a front-end that routes differently
gets a dead letter instead of splitting a technology's book across two partitions. The hash
is written out here (it is Kafka's ``Utils.murmur2``) so the pure core loads no Kafka client.
"""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` as an unsigned 32-bit value (Java's int, reinterpreted)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(technology_id: str, partitions: int) -> int:
    """The partition of a key under Kafka's default partitioner: positive murmur2 mod count."""
    return (murmur2(technology_id.encode()) & 0x7FFFFFFF) % partitions
