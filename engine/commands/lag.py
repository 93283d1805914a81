"""``techx lag``: how far each consumer group is behind the command log, per partition.

The local stack ships no Kafka command-line tools, so this is ``kafka-consumer-groups
--describe`` for TechX's two groups on the command topic:

- the engines' group (TECHX_GROUP_ID): the settled offset, committed after each batch;
- ``<group>.outputs``: how far each partition's events are committed on the output topics
  (exactly once only: the transactions commit it; at least once leaves it empty).

Lag is the log's end minus the committed offset; a partition with no committed offset lags
by everything still in the log (end minus start).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import asdict, dataclass
from typing import TextIO

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code

from engine.errors import OperatorCommandError
from engine.kafka_security import kafka_error
from engine.producers.transactions import outputs_group
from engine.settings import Settings

#: Kafka's UNKNOWN_TOPIC_OR_PARTITION.
_UNKNOWN_TOPIC = 3


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    partition: int
    #: None: the group never committed an offset for this partition.
    committed: int | None
    log_start: int
    log_end: int

    @property
    def lag(self) -> int:
        return self.log_end - (self.committed if self.committed is not None else self.log_start)


async def group_lags(settings: Settings, groups: list[str] | None = None) -> list[PartitionLag]:
    """Each group's committed offset against the command log's ends, per partition."""
    topic = settings.topics.commands
    groups = groups or [settings.group_id, outputs_group(settings.group_id)]
    admin = AIOKafkaAdminClient(**settings.kafka_options(), client_id="techx-lag")
    consumer = AIOKafkaConsumer(
        **settings.kafka_options(), client_id="techx-lag", group_id=None, enable_auto_commit=False
    )
    try:
        await admin.start()
        await consumer.start()
        (description,) = await admin.describe_topics([topic])
        if description["error_code"] == _UNKNOWN_TOPIC:
            raise OperatorCommandError(f"topic {topic} does not exist: run `techx setup` first")
        if description["error_code"]:
            raise for_code(description["error_code"])(f"describing {topic}")
        partitions = sorted(p["partition"] for p in description["partitions"])
        tps = [TopicPartition(topic, p) for p in partitions]
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        lags: list[PartitionLag] = []
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            for tp in tps:
                meta = committed.get(tp)
                offset = meta.offset if meta is not None and meta.offset >= 0 else None
                lags.append(PartitionLag(group, tp.partition, offset, starts[tp], ends[tp]))
        return lags
    except KafkaError as e:
        raise kafka_error(
            e, f"reading group offsets at {settings.kafka_bootstrap}", settings.kafka_security
        ) from e
    finally:
        await asyncio.sleep(0)  # as log_reader: let aiokafka's tasks start before stopping
        await consumer.stop()
        await admin.close()


async def show_lag(
    settings: Settings,
    groups: list[str] | None = None,
    *,
    as_json: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    lags = await group_lags(settings, groups)
    if as_json:
        for lag in lags:
            out.write(msgspec.json.encode({**asdict(lag), "lag": lag.lag}).decode() + "\n")
        return 0
    out.write(f"topic {settings.topics.commands}\n")
    out.write(f"{'GROUP':<40} {'PARTITION':>9} {'COMMITTED':>12} {'LOG END':>12} {'LAG':>10}\n")
    for lag in lags:
        committed = "-" if lag.committed is None else str(lag.committed)
        out.write(
            f"{lag.group:<40} {lag.partition:>9} {committed:>12} {lag.log_end:>12} {lag.lag:>10}\n"
        )
    for group in dict.fromkeys(lag.group for lag in lags):
        total = sum(lag.lag for lag in lags if lag.group == group)
        out.write(f"{group}: {total} command(s) behind in total\n")
    outputs = outputs_group(settings.group_id)
    if any(lag.group == outputs for lag in lags):
        out.write(
            f"({outputs} moves only with commands that produced events: on a quiet partition"
            " its lag grows by every tick; the engines' group is the one to watch)\n"
        )
    return 0
