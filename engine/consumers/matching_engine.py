"""The live engine: consume commands, match, settle in PostgreSQL, publish, repeat.

One consumer group member per process. Four stages run at once, joined by small bounded
queues, so the CPU matches batch k+1 while PostgreSQL commits batch k and the broker
acknowledges batch k-1:

    recover (replay the log of newly assigned partitions, off the rebalance callback)
    match (consumer, markets) -> settle (one transaction per fetch)
        -> publish (hand to the producer) -> confirm (await delivery, advance published)

With exactly-once outputs publish comes first: a batch's events go into the partition's
open Kafka transaction while PostgreSQL settles it, and the transaction commits only once
it is settled (see ``engine.producers.transactions``). The match stage then queues the batch
for confirmation itself: a transaction may span more batches than the confirm queue holds,
and its commit waits for the last of them to be settled, so settling never waits for room.

Order is kept because each stage is one task taking batches first-in first-out. A partition
is handed back only after both queues are drained. Any stage failing stops the whole engine
(and a waiting rebalance): PostgreSQL holds a consistent commit point, so a restart loses
nothing and redoes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

import structlog
from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from engine import native_codec
from engine.consumers.ports import CommandConsumer, EventSink, LogReader, SettlementLedger
from engine.core.batch import CommandRecord, PartitionProcessor, SettlementBatch
from engine.core.market import Market
from engine.errors import (
    DeterminismError,
    OutputsAheadError,
    PipelineBrokenError,
    PublishFailedError,
    SnapshotError,
    StoreUnavailableError,
    TechXError,
)
from engine.kafka_security import kafka_error
from engine.observability.health import EngineState, PartitionProgress
from engine.observability.metrics import EngineMetrics
from engine.retry import retrying
from engine.settings import Settings
from engine.store.settlement import DealTotals, PartitionClaim, Settlement

log = structlog.get_logger()

T = TypeVar("T")

_OFFSET_COMMIT_INTERVAL_S = 1.0
_OFFSET_COMMIT_TIMEOUT_S = 5.0
_PROGRESS_INTERVAL_S = 10.0
_REPLAY_PROGRESS_EVERY = 100_000
#: Batches allowed between two stages: enough to overlap, few enough to bound memory.
_PIPELINE_DEPTH = 2
#: Batches allowed to wait for the broker. Deeper than the other stages because with
#: exactly-once outputs a batch is confirmed only when its transaction commits, up to the
#: commit interval (50 ms) plus a commit later: at a few hundred small fetches a second, a
#: shallower queue would hold matching back until the commit.
_PUBLISH_DEPTH = 64
#: Records matched between two yields to the event loop (about 1.5 ms of CPU), so settle and
#: confirm round trips, and heartbeats during a long replay, are not held up. Every await in
#: those stages waits a loop turn, and a PostgreSQL settlement takes some 25 turns: behind
#: 5 ms turns it took 150 ms, behind 0.5 ms turns 16 ms (measured with a match-like task).
_YIELD_EVERY = 50


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
    #: Commands matched since the last snapshot of this market.
    since_snapshot: int = 0


@dataclass(slots=True)
class _InFlight:
    worker: PartitionWorker
    batch: SettlementBatch
    #: The settled offset this batch continues from: the fencing check in PostgreSQL.
    expected_offset: int


@dataclass(slots=True)
class _Matched:
    """A fetch's matched batches on their way through settle and confirm."""

    in_flight: list[_InFlight]
    #: With exactly-once outputs the batches are handed to the producer as soon as they are
    #: matched: their delivery futures, and ``settled``, which their transactions' commit
    #: waits for and the settle stage resolves. Otherwise ``settled`` stays None, and the
    #: deliveries and hand-over time are set once the batches are settled.
    deliveries: Sequence[asyncio.Future[Any]] = ()
    settled: asyncio.Future[None] | None = None
    handed_over_at: float = 0.0


@dataclass(slots=True)
class _Replay:
    """What replaying a partition's log rebuilt: the market and what it re-derived."""

    processor: PartitionProcessor
    #: Deals of the whole replay: checked against what PostgreSQL holds.
    totals: DealTotals
    #: Batches of commands at or above the published mark: they go out again.
    unpublished: list[SettlementBatch]
    replayed: int


class MatchingEngine:
    """One consumer group member: owns some command partitions and runs their pipeline."""

    def __init__(
        self,
        settings: Settings,
        store: SettlementLedger,
        publisher: EventSink,
        consumer: CommandConsumer,
        read_log: LogReader,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self._settings = settings
        self.metrics = metrics if metrics is not None else EngineMetrics()
        self._store = store
        self._publisher = publisher
        self._consumer = consumer
        self._read_log = read_log
        self._workers: dict[int, PartitionWorker] = {}
        #: Partitions handed back at a rebalance, fully settled and published, kept in memory
        #: in case the same rebalance gives them straight back (eager rebalancing revokes all).
        self._parked: dict[int, PartitionWorker] = {}
        #: Partitions the group gave us, each with the generation of its assignment.
        self._assigned: dict[int, int] = {}
        self._generation = 0
        self._batch_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._broken = asyncio.Event()
        self._ready = asyncio.Event()
        #: Newly assigned partitions, with the generation of the assignment they belong to.
        self._to_recover: asyncio.Queue[tuple[int, list[TopicPartition]]] = asyncio.Queue()
        self._to_settle: asyncio.Queue[_Matched | None] = asyncio.Queue(_PIPELINE_DEPTH)
        self._to_confirm: asyncio.Queue[_Matched | None] = asyncio.Queue(_PUBLISH_DEPTH)
        #: The group offset commit in flight (lag bookkeeping, beside the match loop).
        self._offset_commit: asyncio.Task[None] | None = None
        self.commands_processed = 0
        self.deals_settled = 0
        #: Commands replayed by recoveries: what snapshots save.
        self.replayed_commands = 0

    def stop(self) -> None:
        """Ask the loop to finish the batches in flight and close; safe from a signal handler."""
        self._stopping.set()

    @property
    def owned_partitions(self) -> list[int]:
        return sorted(self._workers)

    @property
    def owner_epochs(self) -> dict[int, int]:
        """The owner epoch each live partition was claimed with: what fences this process."""
        return {p: w.claim.owner_epoch for p, w in sorted(self._workers.items())}

    def state(self) -> EngineState:
        """Assignment and recovery, for /readyz."""
        return EngineState(
            owned=tuple(sorted(self._workers)),
            recovering=tuple(sorted(p for p in self._assigned if p not in self._workers)),
            stopping=self._stopping.is_set() or self._broken.is_set(),
        )

    def progress(self) -> list[PartitionProgress]:
        """Each owned partition's stage offsets, for /metrics and /healthz."""
        return [
            PartitionProgress(p, w.matched_offset, w.settled_offset, w.published_offset)
            for p, w in sorted(self._workers.items())
        ]

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Consume until stopped; ``ready`` is set once an assignment is fully recovered."""
        self._ready = ready if ready is not None else asyncio.Event()
        settings, consumer = self._settings, self._consumer
        consumer.subscribe([settings.topics.commands], listener=_Rebalance(self))
        try:
            await consumer.start()
        except KafkaError as e:
            await consumer.stop()
            raise kafka_error(e, "starting the command consumer", settings.kafka_security) from e
        log.info(
            "engine_started",
            group=settings.group_id,
            topic=settings.topics.commands,
            command_decoder=native_codec.STATUS,
        )
        try:
            async with asyncio.TaskGroup() as stages:
                stages.create_task(self._guard(self._settle_stage()))
                stages.create_task(self._guard(self._confirm_stage()))
                recovery = stages.create_task(self._guard(self._recovery_stage()))
                await self._match_stage()
                recovery.cancel()
                await self._to_settle.put(None)  # drain: each stage passes the end along
        finally:
            try:
                async with self._batch_lock:
                    await self._flush_published_marks()
                    await self._commit_group_offsets()
            except TechXError as e:
                log.warning("final_bookkeeping_failed", error=str(e))
            await consumer.stop()
            log.info("engine_stopped", commands=self.commands_processed, deals=self.deals_settled)

    async def _guard(self, stage: Coroutine[Any, Any, None]) -> None:
        """Run a stage; if it fails, tell anyone waiting on the pipeline before re-raising."""
        try:
            await stage
        except Exception:
            self._broken.set()
            raise

    # -- recovery -----------------------------------------------------------------------

    def assign(self, assigned: list[TopicPartition]) -> None:
        """Take new partitions: paused until recovered, so the rebalance callback returns at
        once and heartbeats go on however long the replay takes."""
        if not assigned:
            return
        self._consumer.pause(*assigned)
        kept = {tp.partition for tp in assigned}
        for partition in [p for p in self._parked if p not in kept]:
            del self._parked[partition]  # gone elsewhere: its market is another engine's now
        self._generation += 1
        for tp in assigned:
            self._assigned[tp.partition] = self._generation
        self._ready.clear()
        self._to_recover.put_nowait((self._generation, sorted(assigned, key=lambda t: t.partition)))

    async def _recovery_stage(self) -> None:
        """Recover each assignment's partitions side by side: one partition's slow claim (a
        frozen previous owner) or long replay does not hold the others back."""
        while True:
            generation, assigned = await self._to_recover.get()
            # Each recovery runs to its end even if another fails: cancelling one midway
            # through a Kafka call leaves the client's connections to the garbage collector.
            outcomes = await asyncio.gather(
                *(self._recover_into_service(tp, generation) for tp in assigned),
                return_exceptions=True,
            )
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            if failures:
                if self._stopping.is_set() and all(isinstance(f, TechXError) for f in failures):
                    return  # a stop cut the recovery short: nothing to report
                raise failures[0]
            if self._to_recover.empty():
                self._ready.set()

    async def _recover_into_service(self, tp: TopicPartition, generation: int) -> None:
        if self._assigned.get(tp.partition) != generation:
            return  # revoked before its recovery started (and maybe queued again since)
        started, replayed = time.monotonic(), self.replayed_commands
        worker = await self.recover(tp)
        self.metrics.recovered(time.monotonic() - started, self.replayed_commands - replayed)
        async with self._batch_lock:
            if self._assigned.get(tp.partition) != generation:
                # Revoked (and maybe queued again) while replaying. Assignments recover one
                # after another, so no newer recovery of it has opened its outputs yet.
                await self._publisher.close_partition(tp.partition)
                return
            self._workers[tp.partition] = worker
            self._consumer.seek(tp, worker.matched_offset)
            self._consumer.resume(tp)

    async def recover(self, tp: TopicPartition) -> PartitionWorker:
        """Rebuild a partition's market from its snapshot and command log, then own it.

        Claim (fencing any previous owner), load the newest usable snapshot, replay the log
        after it, check the replay against what PostgreSQL settled (the determinism
        tripwire), and publish again what may not have reached the broker (consumers dedupe
        on the events' unique keys).
        """
        started = time.monotonic()
        claim = await self._retrying("claim partition", partial(self._store.claim, tp.partition))
        claim = await self._open_outputs(claim)
        kept = self._keep_parked(claim)
        if kept is not None:
            return kept
        start, market = await self._load_snapshot(claim)
        replay = await self._replay(tp, claim, start, market)
        await self._verify(claim, start, replay.totals)
        await self._republish(claim, replay.unpublished)
        self.replayed_commands += replay.replayed
        log.info(
            "partition_recovered",
            partition=tp.partition,
            epoch=claim.owner_epoch,
            next_offset=claim.next_offset,
            snapshot_at=start if market is not None else None,
            replayed=replay.replayed,
            deals=replay.totals.deals,
            republished_from=claim.published_offset,
            seconds=round(time.monotonic() - started, 3),
        )
        return PartitionWorker(
            replay.processor,
            claim,
            matched_offset=claim.next_offset,
            settled_offset=claim.next_offset,
            published_offset=claim.next_offset,
            marked_offset=claim.next_offset,
            since_snapshot=replay.replayed,  # replay since the last snapshot counts toward the next
        )

    async def _open_outputs(self, claim: PartitionClaim) -> PartitionClaim:
        """Take the partition's outputs over and settle where publishing resumes.

        With transactions the broker knows exactly how far committed outputs reach;
        PostgreSQL's mark is written after the broker's acknowledgement, so it may lag (a
        crash in between) but never leads. Their maximum is where republishing starts.
        """
        reached = await self._retrying(
            "open outputs",
            partial(
                self._publisher.open_partition, claim.partition, partial(self._store.owns, claim)
            ),
        )
        if reached is None or reached <= claim.published_offset:
            return claim
        if reached > claim.next_offset:
            raise OutputsAheadError(
                f"partition {claim.partition}: the output topics hold events of commands up to"
                f" offset {reached - 1}, but PostgreSQL has settled only below"
                f" {claim.next_offset}; the database and the topics do not belong together"
            )
        await self._retrying(
            "mark published", partial(self._store.mark_published, claim, reached)
        )  # catch the lagging mark up, so the snapshots it selects are the newest usable
        return replace(claim, published_offset=reached)

    def _keep_parked(self, claim: PartitionClaim) -> PartitionWorker | None:
        """The market this process handed back at the last rebalance, if nothing happened to
        the partition since: no other owner claimed it (the epoch moved by exactly ours) and
        everything it matched is settled and published. Then a rebalance costs no replay."""
        parked = self._parked.pop(claim.partition, None)
        if (
            parked is None
            or claim.owner_epoch != parked.claim.owner_epoch + 1
            or claim.next_offset != parked.settled_offset
            or parked.matched_offset != parked.settled_offset
            or claim.published_offset != claim.next_offset
        ):
            return None
        log.info(
            "partition_kept", partition=claim.partition, epoch=claim.owner_epoch,
            next_offset=claim.next_offset,
        )  # fmt: skip
        return PartitionWorker(
            parked.processor,
            claim,
            matched_offset=claim.next_offset,
            settled_offset=claim.next_offset,
            published_offset=claim.next_offset,
            marked_offset=claim.next_offset,
            since_snapshot=parked.since_snapshot,
        )

    async def _load_snapshot(self, claim: PartitionClaim) -> tuple[int, Market | None]:
        """The newest snapshot no later than the published mark, as (offset, market).

        Not later: everything after the mark must be replayed anyway, to re-derive events
        that may not have reached the broker. An unreadable snapshot (say, from another
        engine version) only costs time: the replay starts from the beginning instead.
        """
        snapshot = await self._retrying(
            "load snapshot",
            partial(self._store.latest_snapshot, claim.partition, claim.published_offset),
        )
        if snapshot is None:
            return 0, None
        # Its size is what the gauge shows until this engine settles a snapshot of its own.
        self.metrics.snapshot_bytes.labels(str(claim.partition)).set(len(snapshot[1]))
        try:
            return snapshot[0], Market.from_snapshot(snapshot[1])
        except SnapshotError as e:
            log.warning(
                "snapshot_unusable", partition=claim.partition, at=snapshot[0], error=str(e)
            )
            return 0, None

    async def _replay(
        self, tp: TopicPartition, claim: PartitionClaim, start: int, market: Market | None
    ) -> _Replay:
        """Apply the log from ``start`` up to the settled offset; silently below the published
        mark, keeping the batches at or above it to publish again."""
        processor = PartitionProcessor(tp.partition, self._settings.partitions, market)
        replay = _Replay(processor, DealTotals(), [], 0)
        published = claim.published_offset
        log_reader = self._read_log(tp.topic, tp.partition, start, claim.next_offset)
        async with contextlib.aclosing(log_reader):
            async for records in log_reader:
                for first in range(0, len(records), _YIELD_EVERY):
                    chunk = list(records[first : first + _YIELD_EVERY])
                    silent = [r for r in chunk if r.offset < published]
                    loud = [r for r in chunk if r.offset >= published]
                    if silent:
                        replay.totals = replay.totals.add(processor.process(silent))
                    if loud:
                        batch = processor.process(loud)
                        replay.totals = replay.totals.add(batch)
                        replay.unpublished.append(batch)
                    await asyncio.sleep(0)
                previous = replay.replayed
                replay.replayed += len(records)
                if replay.replayed // _REPLAY_PROGRESS_EVERY != previous // _REPLAY_PROGRESS_EVERY:
                    log.info(
                        "replay_progress",
                        partition=tp.partition,
                        replayed=replay.replayed,
                        of=claim.next_offset - start,
                    )
        return replay

    async def _verify(self, claim: PartitionClaim, start: int, totals: DealTotals) -> None:
        """The determinism tripwire: the replay must make the deals PostgreSQL settled."""
        settled = await self._retrying(
            "total settled deals",
            partial(self._store.settled_deal_totals, claim.partition, start, claim.next_offset),
        )
        if settled != totals:
            raise DeterminismError(
                f"partition {claim.partition}: replay of offsets {start}..{claim.next_offset - 1}"
                f" made {totals} but PostgreSQL holds {settled}"
            )

    async def _republish(self, claim: PartitionClaim, unpublished: list[SettlementBatch]) -> None:
        if unpublished:
            await self._retrying("republish", partial(self._publisher.publish, unpublished))
        if claim.next_offset > claim.published_offset:
            await self._retrying(
                "mark published", partial(self._store.mark_published, claim, claim.next_offset)
            )

    async def release(self, partitions: list[int]) -> None:
        """Hand partitions back only once their batches are settled and published."""
        async with self._batch_lock:
            for partition in partitions:
                self._assigned.pop(partition, None)
            await self._drain()
            await self._flush_published_marks()
            for partition in partitions:
                worker = self._workers.pop(partition, None)
                if worker is not None:
                    # Only a partition in service: one still recovering closes its own.
                    await self._publisher.close_partition(partition)
                    self._parked[partition] = worker
                    log.info(
                        "partition_released",
                        partition=partition,
                        settled_offset=worker.settled_offset,
                    )

    # -- the pipeline --------------------------------------------------------------------

    async def _match_stage(self) -> None:
        try:
            await self._match_until_stopped()
        finally:
            if self._offset_commit is not None:  # bounded by _OFFSET_COMMIT_TIMEOUT_S
                await self._offset_commit

    async def _match_until_stopped(self) -> None:
        settings, consumer = self._settings, self._consumer
        last_commit = last_progress = time.monotonic()
        progress_mark = 0
        while not self._stopping.is_set():
            fetched = await consumer.getmany(timeout_ms=100, max_records=settings.batch_max_records)
            now = time.monotonic()
            async with self._batch_lock:
                if fetched:
                    started = time.monotonic()
                    in_flight = await self._match(fetched)
                    self.metrics.match_seconds.observe(time.monotonic() - started)
                    if in_flight:
                        matched = await self._matched(in_flight)
                        await self._to_settle.put(matched)
                        if matched.settled is not None:
                            # Queued for confirmation here, not by the settle stage: its
                            # transaction's commit waits for settling, so settling must
                            # never wait for the confirm stage to make room.
                            await self._to_confirm.put(matched)
                else:
                    await self._flush_published_marks()
            if now - last_commit >= _OFFSET_COMMIT_INTERVAL_S and (
                self._offset_commit is None or self._offset_commit.done()
            ):
                # Beside matching, not in its way: awaited here, the broker round trip held
                # every fetch behind it once a second.
                self._offset_commit = asyncio.create_task(self._commit_group_offsets())
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
        in_flight: list[_InFlight] = []
        for tp, records in fetched.items():
            worker = self._workers.get(tp.partition)
            if worker is None:
                continue  # revoked, or still recovering, while the fetch was in flight
            fresh = records
            if records[0].offset < worker.matched_offset:
                # Already matched (a fetch that crossed a seek): never apply twice. A first
                # offset above matched_offset is normal: transaction markers and aborted
                # batches leave gaps, and aiokafka drops fetches from before a seek itself.
                fresh = [r for r in records if r.offset >= worker.matched_offset]
                if not fresh:
                    continue
            batch = SettlementBatch(tp.partition, fresh[0].offset, fresh[0].offset)
            for first in range(0, len(fresh), _YIELD_EVERY):
                worker.processor.process_into(batch, fresh[first : first + _YIELD_EVERY])
                await asyncio.sleep(0)
            worker.since_snapshot += len(fresh)
            every = self._settings.snapshot_every
            if every and worker.since_snapshot >= every:
                batch.snapshot = worker.processor.market.snapshot()
                worker.since_snapshot = 0
            in_flight.append(_InFlight(worker, batch, worker.matched_offset))
            worker.matched_offset = batch.next_offset
        return in_flight

    async def _matched(self, in_flight: list[_InFlight]) -> _Matched:
        """With exactly-once outputs, hand the batches to the producer now: they are appended
        into the open Kafka transaction while PostgreSQL settles them (the append waits
        neither for the WAL flush nor for the settlements queued ahead), and the
        transaction commits, making them visible, only once ``settled`` is resolved."""
        matched = _Matched(in_flight)
        if self._publisher.transactional:
            matched.settled = asyncio.get_running_loop().create_future()
            matched.handed_over_at = time.monotonic()
            matched.deliveries = await self._hand_over(in_flight, matched.settled)
        return matched

    async def _settle_stage(self) -> None:
        ending = False
        while not ending:
            taken = [await self._to_settle.get()]
            # Whatever was matched while the last settlement ran goes into this one: a
            # PostgreSQL transaction costs about the same for one batch as for several, so
            # under load the queue empties at each turn instead of every batch waiting for
            # the ones ahead of it to commit one by one.
            while taken[-1] is not None and not self._to_settle.empty():
                taken.append(self._to_settle.get_nowait())
            ending = taken[-1] is None
            matched = [m for m in taken if m is not None]
            try:
                if matched:
                    await self._settle(matched)
            except BaseException as e:
                # The producer holds some of them: their transactions must abort, not wait.
                reason = PublishFailedError(f"batches handed over were not settled: {e!r}")
                for unsettled in (*matched, *_drained(self._to_settle)):
                    _refuse(unsettled, reason)
                raise
            for _ in taken:
                self._to_settle.task_done()
        await self._to_confirm.put(None)

    async def _settle(self, matched: list[_Matched]) -> None:
        in_flight = [item for m in matched for item in m.in_flight]
        items = [
            Settlement(i.batch, i.worker.claim, i.expected_offset, i.worker.published_offset)
            for i in in_flight
        ]
        # FencedError is not retriable: another engine owns a partition now, and this
        # process stops instead of guessing what else it may have missed.
        started = time.monotonic()
        await self._retrying("settle", partial(self._store.settle, items))
        self.metrics.settled([i.batch for i in in_flight], time.monotonic() - started)
        for item in in_flight:
            item.worker.settled_offset = item.batch.next_offset
            self.commands_processed += item.batch.commands
            self.deals_settled += item.batch.deal_count
        for m in matched:
            if m.settled is None:
                m.handed_over_at = time.monotonic()
                m.deliveries = await self._hand_over(m.in_flight, None)
                await self._to_confirm.put(m)
            else:
                m.settled.set_result(None)  # the match stage queued it for confirmation

    async def _hand_over(
        self, in_flight: list[_InFlight], settled: asyncio.Future[None] | None
    ) -> Sequence[asyncio.Future[Any]]:
        try:
            return await self._publisher.send([item.batch for item in in_flight], settled)
        except TechXError as e:
            raise PublishFailedError(f"handing events to the producer: {e}") from e

    async def _confirm_stage(self) -> None:
        while (matched := await self._to_confirm.get()) is not None:
            settled, sent_at = matched.in_flight, matched.handed_over_at
            try:
                await asyncio.gather(*matched.deliveries)
            except KafkaError as e:
                raise PublishFailedError(
                    f"the broker did not take settled events ({e!r}); stopping so that a "
                    "restart republishes them, in order, from the command log"
                ) from e
            self.metrics.published([i.batch for i in settled], time.monotonic() - sent_at)
            for item in settled:
                item.worker.published_offset = item.batch.next_offset
            self._to_confirm.task_done()
        self._to_confirm.task_done()

    async def _drain(self) -> None:
        """Wait until every matched batch is settled and confirmed, or the pipeline died."""

        async def drained() -> None:
            await self._to_settle.join()
            await self._to_confirm.join()

        joined = asyncio.ensure_future(drained())
        broken = asyncio.ensure_future(self._broken.wait())
        done, pending = await asyncio.wait({joined, broken}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if joined not in done:
            raise PipelineBrokenError("a stage failed while partitions were being handed back")

    async def _flush_published_marks(self) -> None:
        """Record what is published, so a restart re-publishes as little as possible."""
        for worker in list(self._workers.values()):
            published = worker.published_offset  # the confirm stage may move it meanwhile
            if published <= worker.marked_offset:
                continue
            try:
                await self._store.mark_published(worker.claim, published)
            except StoreUnavailableError as e:
                log.warning(
                    "published_mark_deferred", partition=worker.claim.partition, error=str(e)
                )
                return  # only bookkeeping: the next idle moment tries again
            worker.marked_offset = published

    async def _commit_group_offsets(self) -> None:
        """Kafka's group offsets are for lag monitoring only: PostgreSQL is the commit point."""
        offsets = {
            TopicPartition(self._settings.topics.commands, p): w.settled_offset
            for p, w in self._workers.items()
            if w.settled_offset > 0
        }
        if offsets:
            try:
                async with asyncio.timeout(_OFFSET_COMMIT_TIMEOUT_S):
                    await self._consumer.commit(offsets)
            except (KafkaError, TimeoutError) as e:  # lag reporting must never stop matching
                log.warning("group_offset_commit_failed", error=repr(e))

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Retry what may succeed later; give up on a stop request (nothing is lost: the
        offset in PostgreSQL did not move) or on an error that retrying cannot mend."""
        return await retrying(what, attempt, give_up=self._stopping.is_set)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Quick callbacks: hand-over waits for the pipeline; recovery happens in its own stage."""

    def __init__(self, engine: MatchingEngine) -> None:
        self._engine = engine

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._engine.release([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._engine.assign(list(assigned))


def _drained(queue: asyncio.Queue[_Matched | None]) -> list[_Matched]:
    """What is left in the queue, taken out (the stage that reads it is failing)."""
    left = []
    while not queue.empty():
        if (matched := queue.get_nowait()) is not None:
            left.append(matched)
    return left


def _refuse(matched: _Matched, reason: PublishFailedError) -> None:
    """Tell the producer this batch will never be settled (its transaction aborts)."""
    if matched.settled is not None and not matched.settled.done():
        matched.settled.set_exception(reason)
        matched.settled.exception()  # retrieved: a committer that already ended never reads it
