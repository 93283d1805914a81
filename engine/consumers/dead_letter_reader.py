"""Reads the dead-letter topic as subscribers see it (``read_committed``), for operators.

PostgreSQL holds the same dead letters, whole; the topic is what a subscriber was told, with
each record's reason, detail and source position in its headers (engine/core/batch.py).
Values above the command size limit are cut on the topic: the ``truncated_from`` header
says from how many bytes. A record's time here is when the engine published the dead letter,
not the broker time of the original command that PostgreSQL keeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from engine.core.batch import (
    DLQ_DETAIL_HEADER,
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_REASON_HEADER,
)
from engine.kafka_security import kafka_error
from engine.settings import Settings
from engine.store.dead_letters import StoredDeadLetter


async def read_dead_letters(
    settings: Settings, partitions: list[int] | None = None
) -> AsyncIterator[StoredDeadLetter]:
    """Every dead letter on the topic now (up to each partition's end when reading began),
    partition by partition, oldest first."""
    topic = settings.topics.dead_letters
    consumer = AIOKafkaConsumer(
        **settings.kafka_options(),
        client_id="techx-dlq",
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        await consumer.start()
        wanted = partitions if partitions is not None else range(settings.partitions)
        tps = [TopicPartition(topic, p) for p in wanted]
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
            while await consumer.position(tp) < ends[tp]:
                fetched = await consumer.getmany(tp, timeout_ms=1000)
                for record in fetched.get(tp, []):
                    if record.offset < ends[tp]:
                        yield _dead_letter(record)
    except KafkaError as e:
        raise kafka_error(e, f"reading {topic}", settings.kafka_security) from e
    finally:
        await asyncio.sleep(0)  # as log_reader: let aiokafka's tasks start before stopping
        await consumer.stop()


def _dead_letter(record: ConsumerRecord[bytes, bytes]) -> StoredDeadLetter:
    headers = dict(record.headers)
    return StoredDeadLetter(
        int(headers.get(DLQ_PARTITION_HEADER, b"-1")),
        int(headers.get(DLQ_OFFSET_HEADER, b"-1")),
        headers.get(DLQ_REASON_HEADER, b"").decode("utf-8", "replace"),
        headers.get(DLQ_DETAIL_HEADER, b"").decode("utf-8", "replace"),
        record.key,
        record.value,
        record.timestamp,
    )
