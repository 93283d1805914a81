"""What the matching engine needs from the world, as small protocols it is given.

The engine decides (what to recover, when to settle, what to publish, when to hand a
partition back); these carry the decisions out. Production passes aiokafka's consumer, the
PostgreSQL settlement store, the Kafka publisher and the log reader (see
``engine.commands.run``); control tests pass hand-written stubs and drive the engine through
its public ``run``/``assign``/``release``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiokafka import TopicPartition

from engine.core.batch import CommandRecord, SettlementBatch
from engine.store.settlement import DealTotals, PartitionClaim, Settlement


class CommandConsumer(Protocol):
    """A consumer group member on the command topic (aiokafka's AIOKafkaConsumer is one)."""

    def subscribe(self, topics: list[str], listener: Any) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]: ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...


class SettlementLedger(Protocol):
    """The commit point (PostgreSQL's SettlementStore is one)."""

    async def claim(self, partition: int) -> PartitionClaim: ...

    async def latest_snapshot(self, partition: int, at_most: int) -> tuple[int, bytes] | None: ...

    async def settle(self, items: list[Settlement]) -> None: ...

    async def owns(self, claim: PartitionClaim) -> bool: ...

    async def mark_published(self, claim: PartitionClaim, published_offset: int) -> None: ...

    async def settled_deal_totals(
        self, partition: int, from_offset: int, below_offset: int
    ) -> DealTotals: ...


class EventSink(Protocol):
    """Where settled events go (the Kafka EventPublisher and TransactionalPublisher)."""

    async def open_partition(
        self, partition: int, still_owner: Callable[[], Awaitable[bool]]
    ) -> int | None:
        """Take the partition's outputs over (fencing earlier owners where the sink can);
        the command offset its published events are known to reach, if the sink knows.
        ``still_owner`` asks PostgreSQL whether this engine still owns the partition: a sink
        that must take its outputs over again (its producer failed or was fenced by a stale
        engine) asks first, so it never fences a rightful newer owner."""
        ...

    async def close_partition(self, partition: int) -> None: ...

    #: Whether appended events stay invisible until the sink commits them (Kafka
    #: transactions). Then the engine hands a batch over before PostgreSQL has settled it,
    #: with a ``settled`` future the sink's commit waits for.
    transactional: bool

    async def send(
        self, batches: list[SettlementBatch], settled: asyncio.Future[None] | None = None
    ) -> Sequence[asyncio.Future[Any]]: ...

    async def publish(self, batches: list[SettlementBatch]) -> None: ...


#: Reads a partition of a topic from ``start`` up to ``end`` (exclusive), in chunks; closed
#: (``aclose``) by the engine as soon as it stops reading.
LogReader = Callable[[str, int, int, int], AsyncGenerator[Sequence[CommandRecord], None]]
