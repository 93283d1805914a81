"""Reads one command partition between two offsets, outside any consumer group.

Recovery uses it to rebuild a market before going live; operators use it through
``techx replay`` to audit or rebuild. Reading never commits anything anywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from engine.errors import LogTruncatedError
from engine.settings import Settings


async def read_partition(
    settings: Settings,
    topic: str,
    partition: int,
    start: int,
    end: int | None = None,
    chunk: int = 10_000,
) -> AsyncGenerator[list[ConsumerRecord[bytes, bytes]], None]:
    """Yield record lists of ``partition`` from ``start`` up to ``end`` (exclusive).

    ``end=None`` reads to the partition's end as it was when reading began. Raises
    LogTruncatedError if the log no longer holds all of ``start..end``.
    """
    consumer = AIOKafkaConsumer(
        **settings.kafka_options(),
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",  # as the live engine reads: replays stay identical
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    try:
        # Inside the try: a recovery cancelled while the consumer starts (a sibling
        # recovery failed) must still close it.
        await consumer.start()
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        log_end = (await consumer.end_offsets([tp]))[tp]
        if end is None:
            end = log_end
        if start >= end:
            return
        if log_end < end:
            # Without this check the reader would wait for records that never come: the
            # caller (recovery: PostgreSQL's commit point) knows of offsets the log lacks.
            raise LogTruncatedError(
                f"{topic}[{partition}] ends at offset {log_end}, but offsets up to {end - 1} "
                "were settled: the topic was deleted and created again, or the broker lost "
                "records, so the market cannot be rebuilt from it. Restore the topic, or run "
                "against a fresh database"
            )
        first_kept = (await consumer.beginning_offsets([tp]))[tp]
        if start < first_kept:
            raise LogTruncatedError(
                f"{topic}[{partition}] starts at offset {first_kept}; offsets {start}.."
                f"{first_kept - 1} were deleted, so the market cannot be rebuilt from them"
            )
        consumer.seek(tp, start)
        while True:
            fetched = await consumer.getmany(tp, timeout_ms=1000, max_records=chunk)
            # A fetch sent before the seek may still answer from the old position.
            records = [r for r in fetched.get(tp, []) if start <= r.offset < end]
            if records:
                yield records
                if records[-1].offset + 1 >= end:
                    return
            elif await consumer.position(tp) >= end:
                return
    finally:
        # Let the consumer's background tasks start before stopping it: aiokafka awaits a
        # task it has just cancelled, which raises CancelledError if the task never ran.
        await asyncio.sleep(0)
        await consumer.stop()
