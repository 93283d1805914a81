"""The Kafka consumer the live engine reads commands with: one group member per process."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer

from engine.settings import Settings


def command_consumer(settings: Settings) -> AIOKafkaConsumer:
    """A group member that commits nothing by itself (PostgreSQL is the commit point) and
    reads only committed records, as replay and recovery do, so their outputs agree."""
    return AIOKafkaConsumer(
        **settings.kafka_options(),
        group_id=settings.group_id,
        client_id="techx-engine",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
        # How fast a dead engine's partitions move: the group waits this long for a member
        # that stopped heart-beating. Shorter is faster failover but more false alarms on a
        # stalled machine; heartbeats come from a background task, so long batches and
        # replays do not count against it.
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(100, settings.session_timeout_ms // 3),
    )
