"""Asks the broker, once and quickly, how a TechX topic is laid out before an operator
command works on it, so a wrong partition or a topic never set up fails at once with one
line instead of waiting on a partition that does not exist.

The admin API is asked, not a consumer's metadata: a consumer's or producer's metadata
request may create a missing topic on brokers that allow it, with the wrong count.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from engine.errors import BrokerUnavailableError, CommandLineError
from engine.kafka_security import kafka_error
from engine.settings import Settings

#: How long an operator command waits for the broker before giving up.
METADATA_TIMEOUT_S = 10.0
_UNKNOWN_TOPIC = 3


async def partition_count(settings: Settings, topic: str) -> int:
    """The topic's partition count; CommandLineError when the topic does not exist."""
    admin = AIOKafkaAdminClient(
        **settings.kafka_options(),
        client_id="techx-cli",
        request_timeout_ms=int(METADATA_TIMEOUT_S * 1000),
    )
    doing = f"connecting to Kafka at {settings.kafka_bootstrap}"
    try:
        await asyncio.wait_for(admin.start(), METADATA_TIMEOUT_S)
        (description,) = await asyncio.wait_for(admin.describe_topics([topic]), METADATA_TIMEOUT_S)
    except KafkaError as e:
        raise kafka_error(e, doing, settings.kafka_security) from e
    except TimeoutError as e:
        raise BrokerUnavailableError(f"{doing}: no answer within {METADATA_TIMEOUT_S:g} s") from e
    finally:
        await admin.close()
    if description["error_code"] == _UNKNOWN_TOPIC or not description["partitions"]:
        raise CommandLineError(
            f"topic {topic} does not exist: run `techx setup` (or check TECHX_TOPIC_PREFIX)"
        )
    return len(description["partitions"])


def check_partition(topic: str, partition: int, count: int) -> None:
    """Refuse a partition number the topic does not have."""
    if not 0 <= partition < count:
        raise CommandLineError(
            f"partition {partition} does not exist: {topic} has {count} partitions (0-{count - 1})"
        )


async def end_offset(settings: Settings, topic: str, partition: int) -> int:
    """The partition's end as a read_committed reader sees it, after checking it exists."""
    check_partition(topic, partition, await partition_count(settings, topic))
    consumer = AIOKafkaConsumer(
        **settings.kafka_options(),
        client_id="techx-cli",
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    tp = TopicPartition(topic, partition)
    try:
        await consumer.start()
        ends = await asyncio.wait_for(consumer.end_offsets([tp]), METADATA_TIMEOUT_S)
    except (KafkaError, TimeoutError) as e:
        raise BrokerUnavailableError(f"reading the end of {topic}[{partition}]: {e!r}") from e
    finally:
        # aiokafka awaits a background task it has just cancelled on stop; let it start first.
        await asyncio.sleep(0)
        await consumer.stop()
    return int(ends[tp])
