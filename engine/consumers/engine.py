"""The live engine: consume commands, match, settle in PostgreSQL, publish, repeat.

One consumer group member per process; each assigned partition gets its own market, rebuilt
from the command log when the partition is assigned.

Three stages run at once, joined by small bounded queues, so the CPU matches batch k+1
while PostgreSQL commits batch k and the broker acknowledges batch k-1:

    match (consumer, markets) -> settle (one transaction per partition batch)
        -> publish (hand to the producer) -> confirm (await delivery, advance published)

Order is kept because each stage is one task that takes batches first-in first-out. A
partition is only let go after both queues are drained, so a rebalance never strands work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from engine.batch import CommandRecord, PartitionProcessor, SettlementBatch
from engine.consumers.replay import read_partition
from engine.errors import DeterminismError, FencedError, TechXError
from engine.producers.publisher import EventPublisher
from engine.settings import Settings
from engine.store.settlement import PartitionClaim, Settlement, SettlementStore

log = structlog.get_logger()

_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 5.0
_OFFSET_COMMIT_INTERVAL_S = 1.0
_PROGRESS_INTERVAL_S = 10.0
_REPLAY_PROGRESS_EVERY = 100_000
#: Batches allowed between two stages: enough to overlap, few enough to bound memory.
_PIPELINE_DEPTH = 2
#: Records matched between two yields to the event loop (about 5 ms of CPU).
_YIELD_EVERY = 250


@dataclass(slots=True)
class PartitionWorker:
    """A partition this process owns: its market and how far each stage has got."""

    processor: PartitionProcessor
    claim: PartitionClaim
    #: Next offset to match (in memory only).
    matched_offset: int
    #: Next offset PostgreSQL holds: the commit point.
    settled_offset: int
    #: Every event of commands below this offset is on the output topics.
    published_offset: int
    #: The published offset PostgreSQL has recorded (what a restart would resume from).
    marked_offset: int
    #: Another engine took the partition over; this one must stop touching it.
    fenced: bool = False


@dataclass(slots=True)
class _InFlight:
    worker: PartitionWorker
    batch: SettlementBatch
    #: The settled offset this batch continues from: the fencing check in PostgreSQL.
    expected_offset: int


_Delivery = tuple[list[_InFlight], list["asyncio.Future[object]"]]


class MatchingEngine:
    def __init__(
        self, settings: Settings, store: SettlementStore, publisher: EventPublisher
    ) -> None:
        self._settings = settings
        self._store = store
        self._publisher = publisher
        self._workers: dict[int, PartitionWorker] = {}
        self._batch_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        self._to_settle: asyncio.Queue[list[_InFlight] | None] = asyncio.Queue(_PIPELINE_DEPTH)
        self._to_confirm: asyncio.Queue[_Delivery | None] = asyncio.Queue(_PIPELINE_DEPTH)
        self.commands_processed = 0
        self.deals_settled = 0

    def stop(self) -> None:
        """Ask the loop to finish the batches in flight and close; safe from a signal handler."""
        self._stopping.set()

    @property
    def owned_partitions(self) -> list[int]:
        return sorted(self._workers)

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Consume until stopped; ``ready`` is set once the first assignment is recovered."""
        self._ready = ready if ready is not None else asyncio.Event()
        settings = self._settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.group_id,
            client_id="techx-engine",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=16 * 1024 * 1024,
        )
        consumer.subscribe([settings.topics.commands], listener=_Rebalance(self, consumer))
        await consumer.start()
        log.info("engine_started", group=settings.group_id, topic=settings.topics.commands)
        try:
            async with asyncio.TaskGroup() as stages:
                stages.create_task(self._settle_stage())
                stages.create_task(self._confirm_stage())
                await self._match_stage(consumer)
                await self._to_settle.put(None)  # drain: each stage passes the end along
        finally:
            try:
                async with self._batch_lock:
                    await self._flush_published_marks()
                    await self._commit_group_offsets(consumer)
            except TechXError as e:
                log.warning("final_bookkeeping_failed", error=str(e))
            await consumer.stop()
            log.info("engine_stopped", commands=self.commands_processed, deals=self.deals_settled)

    async def _match_stage(self, consumer: AIOKafkaConsumer) -> None:
        settings = self._settings
        last_commit = last_progress = time.monotonic()
        progress_mark = 0
        while not self._stopping.is_set():
            fetched = await consumer.getmany(timeout_ms=100, max_records=settings.batch_max_records)
            now = time.monotonic()
            async with self._batch_lock:
                if fetched:
                    in_flight = await self._match(fetched)
                    if in_flight:
                        await self._to_settle.put(in_flight)
                else:
                    await self._flush_published_marks()
                if now - last_commit >= _OFFSET_COMMIT_INTERVAL_S:
                    await self._commit_group_offsets(consumer)
                    last_commit = now
            if now - last_progress >= _PROGRESS_INTERVAL_S:
                done = self.commands_processed - progress_mark
                log.info(
                    "engine_progress",
                    partitions=self.owned_partitions,
                    commands=self.commands_processed,
                    deals=self.deals_settled,
                    commands_per_s=round(done / (now - last_progress)),
                )
                last_progress, progress_mark = now, self.commands_processed

    async def _match(self, fetched: dict[TopicPartition, list[CommandRecord]]) -> list[_InFlight]:
        """Match a fetch, yielding to the event loop every few hundred records so the settle
        and confirm stages' round trips are not held up behind a long stretch of CPU."""
        in_flight: list[_InFlight] = []
        for tp, records in fetched.items():
            worker = self._workers.get(tp.partition)
            if worker is None:
                continue  # revoked while the fetch was in flight
            if worker.fenced:
                del self._workers[tp.partition]
                continue
            fresh = records
            if records[0].offset < worker.matched_offset:
                fresh = [r for r in records if r.offset >= worker.matched_offset]
                if not fresh:
                    continue
            batch = SettlementBatch(tp.partition, fresh[0].offset, fresh[0].offset)
            for start in range(0, len(fresh), _YIELD_EVERY):
                worker.processor.process_into(batch, fresh[start : start + _YIELD_EVERY])
                await asyncio.sleep(0)
            in_flight.append(_InFlight(worker, batch, worker.matched_offset))
            worker.matched_offset = batch.next_offset
        return in_flight

    async def _settle_stage(self) -> None:
        while (in_flight := await self._to_settle.get()) is not None:
            settled = await self._settle(in_flight)
            if settled:
                futures = await self._publisher.send([item.batch for item in settled])
                await self._to_confirm.put((settled, futures))
            self._to_settle.task_done()
        self._to_settle.task_done()
        await self._to_confirm.put(None)

    async def _settle(self, in_flight: list[_InFlight]) -> list[_InFlight]:
        """Settle a fetch's batches in one transaction, leaving out fenced partitions."""
        pending = [item for item in in_flight if not item.worker.fenced]
        while pending:
            items = [
                Settlement(i.batch, i.worker.claim, i.expected_offset, i.worker.published_offset)
                for i in pending
            ]
            try:
                await self._retrying("settle", partial(self._store.settle, items))
                break
            except FencedError as e:
                log.error("partition_fenced", partition=e.partition, reason=str(e))
                for item in pending:
                    if item.batch.partition == e.partition:
                        item.worker.fenced = True
                pending = [item for item in pending if not item.worker.fenced]
        for item in pending:
            item.worker.settled_offset = item.batch.next_offset
            self.commands_processed += item.batch.commands
            self.deals_settled += item.batch.deal_count
        return pending

    async def _confirm_stage(self) -> None:
        while (delivery := await self._to_confirm.get()) is not None:
            settled, futures = delivery
            try:
                await asyncio.gather(*futures)
            except KafkaError as e:
                # Deliveries of this batch may be partial: send it all again (consumers
                # dedupe on (technology_id, seq)) until the broker takes it.
                log.warning("publish_failed", error=str(e))
                batches = [item.batch for item in settled]
                await self._retrying("republish", partial(self._publisher.publish, batches))
            for item in settled:
                item.worker.published_offset = item.batch.next_offset
            self._to_confirm.task_done()
        self._to_confirm.task_done()

    async def _drain(self) -> None:
        """Wait until every matched batch is settled and confirmed."""
        await self._to_settle.join()
        await self._to_confirm.join()

    async def _flush_published_marks(self) -> None:
        """When idle, record what is published so a restart re-publishes nothing."""
        for worker in list(self._workers.values()):
            published = worker.published_offset  # the confirm stage may move it meanwhile
            if worker.fenced or published <= worker.marked_offset:
                continue
            await self._store.mark_published(worker.claim, published)
            worker.marked_offset = published

    async def _commit_group_offsets(self, consumer: AIOKafkaConsumer) -> None:
        """Kafka's group offsets are for lag monitoring only: PostgreSQL is the commit point."""
        offsets = {
            TopicPartition(self._settings.topics.commands, p): w.settled_offset
            for p, w in self._workers.items()
            if w.settled_offset > 0 and not w.fenced
        }
        if offsets:
            try:
                await consumer.commit(offsets)
            except KafkaError as e:  # lag reporting must never stop matching
                log.warning("group_offset_commit_failed", error=str(e))

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[None]]) -> None:
        delay = _RETRY_FIRST_S
        while True:
            try:
                await attempt()
                return
            except TechXError as e:
                if not e.retriable:
                    raise
                log.warning("retrying", what=what, error=str(e), delay_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)

    async def recover(self, tp: TopicPartition) -> PartitionWorker:
        """Rebuild a partition's market from its command log, then own it.

        Events of commands that were settled but perhaps not published are published again
        (consumers dedupe on ``(technology_id, seq)``); the recomputed deals must match the
        settled ones, or the engine refuses to go on.
        """
        started = time.monotonic()
        claim = await self._store.claim(tp.partition)
        processor = PartitionProcessor(tp.partition)
        unpublished: list[SettlementBatch] = []
        replayed = deals = 0
        async for records in read_partition(
            self._settings, tp.topic, tp.partition, 0, claim.next_offset
        ):
            silent = [r for r in records if r.offset < claim.published_offset]
            loud = [r for r in records if r.offset >= claim.published_offset]
            for part in (silent, loud):
                if part:
                    batch = processor.process(part)
                    deals += batch.deal_count
                    if part is loud:
                        unpublished.append(batch)
            previous = replayed
            replayed += len(records)
            if replayed // _REPLAY_PROGRESS_EVERY != previous // _REPLAY_PROGRESS_EVERY:
                log.info(
                    "replay_progress",
                    partition=tp.partition,
                    replayed=replayed,
                    of=claim.next_offset,
                )
        settled_deals = await self._store.settled_deal_count(tp.partition, claim.next_offset)
        if settled_deals != deals:
            raise DeterminismError(
                f"partition {tp.partition}: replay of offsets 0..{claim.next_offset - 1} "
                f"made {deals} deals but PostgreSQL holds {settled_deals}"
            )
        if unpublished:
            await self._retrying("republish", lambda: self._publisher.publish(unpublished))
        if claim.next_offset > claim.published_offset:
            await self._store.mark_published(claim, claim.next_offset)
        worker = PartitionWorker(
            processor,
            claim,
            matched_offset=claim.next_offset,
            settled_offset=claim.next_offset,
            published_offset=claim.next_offset,
            marked_offset=claim.next_offset,
        )
        log.info(
            "partition_recovered",
            partition=tp.partition,
            epoch=claim.owner_epoch,
            next_offset=claim.next_offset,
            replayed=replayed,
            deals=deals,
            republished_from=claim.published_offset,
            seconds=round(time.monotonic() - started, 3),
        )
        return worker

    async def adopt(self, assigned: list[TopicPartition], consumer: AIOKafkaConsumer) -> None:
        """Recover every newly assigned partition before the loop may touch any of them."""
        async with self._batch_lock:
            for tp in sorted(assigned, key=lambda t: t.partition):
                worker = await self.recover(tp)
                self._workers[tp.partition] = worker
                consumer.seek(tp, worker.matched_offset)
        self._ready.set()

    async def release(self, partitions: list[int]) -> None:
        """Hand partitions back only once their batches are settled and published."""
        async with self._batch_lock:
            await self._drain()
            await self._flush_published_marks()
            for partition in partitions:
                worker = self._workers.pop(partition, None)
                if worker is not None:
                    log.info(
                        "partition_released",
                        partition=partition,
                        settled_offset=worker.settled_offset,
                    )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Recovery on assignment, a clean hand-over on revocation."""

    def __init__(self, engine: MatchingEngine, consumer: AIOKafkaConsumer) -> None:
        self._engine = engine
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._engine.release([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._engine.adopt(assigned, self._consumer)
