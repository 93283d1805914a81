"""The engine's control logic (assignment, recovery order, offsets) with hand-written stubs.

The engine is given its consumer, store, publisher and log reader (``engine.consumers.ports``),
so these tests run the real ``MatchingEngine.run`` against stubs and drive it only through
what Kafka would do: rebalance callbacks and fetches. Ordering comes from events the stubs
set and the tests wait for, never from sleeps. Everything that talks to Kafka or PostgreSQL
for real is tested in tests/integration.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import structlog
from aiokafka import TopicPartition

from engine import retry
from engine.consumers.matching_engine import MatchingEngine
from engine.core.batch import CommandRecord, LogRecord, SettlementBatch
from engine.core.partitioning import partition_for
from engine.errors import (
    FencedError,
    OutputsAheadError,
    PublishFailedError,
    StoreUnavailableError,
)
from engine.settings import Settings
from engine.store.settlement import DealTotals, PartitionClaim, Settlement
from tests.polling import eventually

TOPIC = Settings().topics.commands


class StubStore:
    """Hands out claims like PostgreSQL's owner_epoch bump; a claim can be held at a gate."""

    def __init__(self) -> None:
        self.epochs: dict[int, int] = {}
        self.claimed: list[int] = []
        self.gates: dict[int, asyncio.Event] = {}
        self.waiting: dict[int, asyncio.Event] = {}
        self.settled: list[tuple[int, int, int]] = []
        self.batches: list[SettlementBatch] = []
        #: What PostgreSQL would hold per partition: next offset and published mark.
        self.next_offsets: dict[int, int] = {}
        self.published: dict[int, int] = {}

    def hold(self, partition: int) -> None:
        """The next claims of ``partition`` wait until :meth:`release_claims` opens the gate."""
        self.gates[partition] = asyncio.Event()
        self.waiting[partition] = asyncio.Event()

    def release_claims(self, partition: int) -> None:
        self.gates[partition].set()

    async def claim(self, partition: int) -> PartitionClaim:
        self.epochs[partition] = self.epochs.get(partition, 0) + 1
        epoch = self.epochs[partition]
        self.claimed.append(partition)
        if partition in self.gates:
            self.waiting[partition].set()
            await self.gates[partition].wait()
        return PartitionClaim(
            partition, epoch, self.next_offsets.get(partition, 0), self.published.get(partition, 0)
        )

    async def latest_snapshot(self, partition: int, at_most: int) -> tuple[int, bytes] | None:
        return None

    async def settle(self, items: list[Settlement]) -> None:
        self.batches.extend(item.batch for item in items)
        self.settled.extend(
            (i.batch.partition, i.batch.first_offset, i.batch.next_offset) for i in items
        )
        for item in items:
            self.next_offsets[item.batch.partition] = item.batch.next_offset

    async def owns(self, claim: PartitionClaim) -> bool:
        return self.epochs.get(claim.partition) == claim.owner_epoch

    async def mark_published(self, claim: PartitionClaim, published_offset: int) -> None:
        self.published[claim.partition] = max(
            self.published.get(claim.partition, 0), published_offset
        )

    async def settled_deal_totals(
        self, partition: int, from_offset: int, below_offset: int
    ) -> DealTotals:
        return DealTotals()


class StubPublisher:
    """Takes every batch at once, as a broker that acknowledges immediately."""

    def __init__(self) -> None:
        self.sent: list[SettlementBatch] = []
        self.opened: list[int] = []
        self.closed: list[int] = []
        #: What the outputs say they reach, per partition (a transactional sink's answer).
        self.published_at: dict[int, int] = {}

    transactional = False

    async def send(
        self, batches: list[SettlementBatch], settled: asyncio.Future[None] | None = None
    ) -> Sequence[asyncio.Future[Any]]:
        self.sent.extend(batches)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return [done]

    async def publish(self, batches: list[SettlementBatch]) -> None:
        self.sent.extend(batches)

    async def open_partition(
        self, partition: int, still_owner: Callable[[], Awaitable[bool]]
    ) -> int | None:
        self.opened.append(partition)
        return self.published_at.get(partition)

    async def close_partition(self, partition: int) -> None:
        self.closed.append(partition)


class StubConsumer:
    """A group member whose fetches the test feeds, and whose rebalances the test triggers."""

    def __init__(self) -> None:
        self.listener: Any = None
        self.fetches: asyncio.Queue[dict[TopicPartition, list[CommandRecord]]] = asyncio.Queue()
        self.resumed: list[int] = []
        self.seeks: list[tuple[int, int]] = []

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]:
        try:
            return await asyncio.wait_for(self.fetches.get(), timeout_ms / 1000)
        except TimeoutError:
            return {}

    def pause(self, *partitions: TopicPartition) -> None:
        return None

    def resume(self, *partitions: TopicPartition) -> None:
        self.resumed.extend(tp.partition for tp in partitions)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition.partition, offset))

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        return None

    async def assign(self, *partitions: int) -> None:
        await self.listener.on_partitions_assigned([TopicPartition(TOPIC, p) for p in partitions])

    async def revoke(self, *partitions: int) -> None:
        await self.listener.on_partitions_revoked([TopicPartition(TOPIC, p) for p in partitions])


#: (partition, start, end) of every log read the engine asked for.
LOG_READS: list[tuple[int, int, int]] = []


async def empty_log(
    topic: str, partition: int, start: int, end: int
) -> AsyncGenerator[Sequence[CommandRecord], None]:
    LOG_READS.append((partition, start, end))
    return
    yield


@asynccontextmanager
async def running(
    store: StubStore, consumer: StubConsumer, publisher: StubPublisher | None = None
) -> AsyncIterator[MatchingEngine]:
    engine = MatchingEngine(Settings(), store, publisher or StubPublisher(), consumer, empty_log)
    task = asyncio.create_task(engine.run())
    await eventually(lambda: consumer.listener is not None, what="the engine subscribed")
    try:
        yield engine
    finally:
        engine.stop()
        await asyncio.wait_for(task, 10)


async def test_a_partition_reassigned_during_recovery_goes_live_with_the_newest_claim() -> None:
    """Revoke-and-reassign mid-recovery: a recovery overtaken by a newer assignment never goes
    live; every live worker holds the newest claim."""
    store, consumer = StubStore(), StubConsumer()
    async with running(store, consumer) as engine:
        store.hold(0)
        await consumer.assign(0, 1)
        await store.waiting[0].wait()  # partition 0 is being claimed for the first assignment
        await consumer.revoke(0, 1)  # an eager rebalance revokes everything...
        await consumer.assign(0, 1)  # ...and gives it all back
        store.release_claims(0)
        await eventually(lambda: engine.owned_partitions == [0, 1], what="both partitions live")
        # Recoveries run side by side: partition 1 went live in the first assignment and again
        # in the second; partition 0's first recovery, overtaken, never went live.
        assert consumer.resumed.count(0) == 1, "the stale recovery of 0 was thrown away"
        assert consumer.resumed.count(1) == 2
        assert engine.owner_epochs == store.epochs, "every live worker holds the newest epoch"


async def test_a_partition_revoked_during_its_recovery_never_goes_live() -> None:
    """A recovery that finishes after its partition was taken away is thrown away."""
    store, consumer = StubStore(), StubConsumer()
    async with running(store, consumer) as engine:
        store.hold(0)
        await consumer.assign(0)
        await store.waiting[0].wait()
        await consumer.revoke(0)
        store.release_claims(0)
        await consumer.assign(1)
        await eventually(lambda: engine.owned_partitions == [1], what="partition 1 live")
        assert consumer.resumed == [1]
        assert 0 not in engine.owner_epochs


def _technology_on(partition: int) -> str:
    """A technology id whose commands route to ``partition`` (of the default 4)."""
    return next(f"T-{i}" for i in range(100) if partition_for(f"T-{i}", 4) == partition)


def _listing(technology: str) -> bytes:
    return msgspec.json.encode(
        {
            "type": "list_technology",
            "technology_id": technology,
            "participant_id": "ops",
            "name": "x",
            "tick_size": 1,
            "lot_size": 1,
        }
    )


async def test_a_gap_in_offsets_is_not_mistaken_for_a_stale_fetch() -> None:
    """Transaction markers leave gaps: records after one are matched, not dropped forever."""
    technology = _technology_on(0)
    tp = TopicPartition(TOPIC, 0)

    def record(offset: int) -> LogRecord:
        return LogRecord(offset, 1, technology.encode(), _listing(technology))

    store, consumer = StubStore(), StubConsumer()
    async with running(store, consumer) as engine:
        await consumer.assign(0)
        await eventually(lambda: engine.owned_partitions == [0], what="partition 0 live")
        await consumer.fetches.put({tp: [record(0), record(1)]})
        await consumer.fetches.put({tp: [record(3)]})  # offset 2 was a transaction marker
        await consumer.fetches.put({tp: [record(2), record(3)]})  # a fetch from before a seek
        await eventually(lambda: consumer.fetches.empty() and len(store.settled) >= 2)
    assert store.settled == [(0, 0, 2), (0, 3, 4)], "records already matched never apply twice"
    assert consumer.seeks == [(0, 0)]


async def test_a_partition_given_straight_back_keeps_its_market_without_a_replay() -> None:
    """Eager rebalancing revokes everything; a partition that comes back untouched (no other
    owner claimed it, all settled and published) keeps its in-memory market: no log read."""
    technology = _technology_on(0)
    tp = TopicPartition(TOPIC, 0)
    store, consumer = StubStore(), StubConsumer()
    async with running(store, consumer) as engine:
        await consumer.assign(0)
        await eventually(lambda: engine.owned_partitions == [0], what="partition 0 live")
        await consumer.fetches.put(
            {tp: [LogRecord(0, 1, technology.encode(), _listing(technology))]}
        )
        await eventually(lambda: store.published.get(0) == 1, what="the listing published")
        LOG_READS.clear()
        await consumer.revoke(0)
        await consumer.assign(0)
        await eventually(lambda: engine.owned_partitions == [0], what="partition 0 live again")
        assert LOG_READS == [], "kept, not rebuilt from the log"
        assert engine.owner_epochs == {0: 2}
        order = msgspec.json.encode(
            {"type": "place_order", "technology_id": technology, "participant_id": "p",
             "client_order_id": "c", "side": "bid", "quantity": 1, "price": 5}
        )  # fmt: skip
        await consumer.fetches.put({tp: [LogRecord(1, 2, technology.encode(), order)]})
        await eventually(lambda: store.next_offsets.get(0) == 2, what="the order settled")
    outcome = msgspec.json.decode(store_outcome(store, 1))
    assert outcome[0]["type"] == "order_accepted", "the kept market still knows the listing"


def store_outcome(store: StubStore, offset: int) -> bytes:
    return next(
        o.events_json for batch in store.batches for o in batch.outcomes if o.offset == offset
    )


async def test_a_partition_another_engine_claimed_meanwhile_is_rebuilt() -> None:
    """If the epoch moved by more than this engine's own claim, the parked market is stale."""
    store, consumer = StubStore(), StubConsumer()
    async with running(store, consumer) as engine:
        await consumer.assign(0)
        await eventually(lambda: engine.owned_partitions == [0], what="partition 0 live")
        await consumer.revoke(0)
        await store.claim(0)  # another engine took it over in between
        LOG_READS.clear()
        await consumer.assign(0)
        await eventually(lambda: engine.owned_partitions == [0], what="partition 0 live again")
        assert len(LOG_READS) == 1, "rebuilt from the log"


class FlakyStore(StubStore):
    """Refuses the first claims as PostgreSQL would while it restarts."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def claim(self, partition: int) -> PartitionClaim:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("connection refused")
        return await super().claim(partition)


async def test_an_outage_is_logged_as_a_few_lines_not_one_per_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five failed claims in a row make one 'retrying' line and one 'retry_succeeded' line."""
    monkeypatch.setattr(retry, "FIRST_DELAY_S", 0.001)
    monkeypatch.setattr(retry, "MAX_DELAY_S", 0.001)
    store, consumer = FlakyStore(failures=5), StubConsumer()
    with structlog.testing.capture_logs() as logs:
        async with running(store, consumer) as engine:
            await consumer.assign(0)
            await eventually(lambda: engine.owned_partitions == [0], what="partition 0 live")
    events = [entry["event"] for entry in logs if "retr" in entry["event"]]
    assert events == ["retrying", "retry_succeeded"]
    succeeded = next(entry for entry in logs if entry["event"] == "retry_succeeded")
    assert succeeded["attempts"] == 5


async def test_one_slow_claim_does_not_hold_back_the_other_partitions() -> None:
    """A claim stuck behind a frozen owner (partition 0) does not delay partition 1's."""
    store, consumer = StubStore(), StubConsumer()
    async with running(store, consumer) as engine:
        store.hold(0)
        await consumer.assign(0, 1)
        await store.waiting[0].wait()
        await eventually(lambda: engine.owned_partitions == [1], what="partition 1 live first")
        store.release_claims(0)
        await eventually(lambda: engine.owned_partitions == [0, 1], what="both live")


def _log_of(technology: str, count: int) -> Any:
    """A log reader serving ``count`` listings of ``technology`` (no deals to verify)."""

    async def read(
        topic: str, partition: int, start: int, end: int
    ) -> AsyncGenerator[Sequence[CommandRecord], None]:
        LOG_READS.append((partition, start, end))
        yield [
            LogRecord(offset, 1, technology.encode(), _listing(technology))
            for offset in range(start, min(end, count))
        ]

    return read


async def test_republishing_starts_where_the_committed_outputs_end() -> None:
    """PostgreSQL's published mark lags (a crash after the broker committed): the sink's
    position wins, so the events below it are not sent a second time."""
    technology = _technology_on(0)
    store, consumer, publisher = StubStore(), StubConsumer(), StubPublisher()
    store.next_offsets[0], store.published[0] = 3, 0
    publisher.published_at[0] = 2
    engine = MatchingEngine(Settings(), store, publisher, consumer, _log_of(technology, 3))
    task = asyncio.create_task(engine.run())
    try:
        await eventually(lambda: consumer.listener is not None, what="the engine subscribed")
        await consumer.assign(0)
        await eventually(lambda: engine.owned_partitions == [0], what="partition 0 live")
    finally:
        engine.stop()
        await asyncio.wait_for(task, 10)
    assert [(b.first_offset, b.next_offset) for b in publisher.sent] == [(2, 3)]
    assert store.published[0] == 3
    assert publisher.opened == [0]


async def test_outputs_ahead_of_postgresql_stop_the_engine() -> None:
    """Topics that hold events PostgreSQL never settled belong to another database: stop."""
    store, consumer, publisher = StubStore(), StubConsumer(), StubPublisher()
    store.next_offsets[0] = 3
    publisher.published_at[0] = 5
    engine = MatchingEngine(Settings(), store, publisher, consumer, empty_log)
    task = asyncio.create_task(engine.run())
    await eventually(lambda: consumer.listener is not None, what="the engine subscribed")
    await consumer.assign(0)
    with pytest.raises(BaseExceptionGroup) as failure:
        await asyncio.wait_for(task, 10)
    assert failure.group_contains(OutputsAheadError)
    assert engine.owned_partitions == []


async def test_a_released_partition_lets_its_outputs_go() -> None:
    """Handing a partition back closes its transactional producer; taking it again reopens."""
    store, consumer, publisher = StubStore(), StubConsumer(), StubPublisher()
    async with running(store, consumer, publisher) as engine:
        await consumer.assign(0, 1)
        await eventually(lambda: engine.owned_partitions == [0, 1], what="both live")
        await consumer.revoke(1)
        assert publisher.closed == [1]
        await consumer.assign(1)
        await eventually(lambda: engine.owned_partitions == [0, 1], what="1 live again")
    assert sorted(publisher.opened) == [0, 1, 1]


class HeldSettlementStore(StubStore):
    """Settles only when the test says so, or refuses, as a fenced PostgreSQL would."""

    def __init__(self) -> None:
        super().__init__()
        self.settling = asyncio.Event()
        self.answer: asyncio.Future[None] | None = None

    async def settle(self, items: list[Settlement]) -> None:
        self.answer = asyncio.get_running_loop().create_future()
        self.settling.set()
        await self.answer
        await super().settle(items)


class TransactionalStubPublisher(StubPublisher):
    """A sink whose appends stay invisible until it commits: it keeps each ``settled``."""

    transactional = True

    def __init__(self) -> None:
        super().__init__()
        self.settled_futures: list[asyncio.Future[None] | None] = []

    async def send(
        self, batches: list[SettlementBatch], settled: asyncio.Future[None] | None = None
    ) -> Sequence[asyncio.Future[Any]]:
        self.settled_futures.append(settled)
        return await super().send(batches, settled)


async def _fetch_listing(consumer: StubConsumer, offset: int, partition: int = 0) -> None:
    """One fetch: a listing of a technology that routes to ``partition``, at ``offset``."""
    technology = _technology_on(partition)
    record = LogRecord(offset, 1, technology.encode(), _listing(technology))
    await consumer.fetches.put({TopicPartition(TOPIC, partition): [record]})


async def _held_settlement(
    store: HeldSettlementStore, consumer: StubConsumer, engine: MatchingEngine
) -> None:
    """Partition 0 live, one listing fetched and its settlement waiting in the store."""
    await consumer.assign(0)
    await eventually(lambda: engine.owned_partitions == [0], what="partition 0 live")
    await _fetch_listing(consumer, 0)
    await asyncio.wait_for(store.settling.wait(), 10)


async def test_a_transactional_sink_gets_a_batch_before_it_is_settled_and_hears_when() -> None:
    """Exactly once: a batch is appended as soon as it is matched (the deal's append waits
    neither for the WAL flush nor for the settlements ahead of it), and the sink learns the
    end of its settlement, which its commit waits for."""
    store, consumer = HeldSettlementStore(), StubConsumer()
    publisher = TransactionalStubPublisher()
    async with running(store, consumer, publisher) as engine:
        await _held_settlement(store, consumer, engine)
        assert [b.first_offset for b in publisher.sent] == [0], "handed over while settling"
        # The next fetch is appended too, without waiting for the settlement ahead of it.
        await _fetch_listing(consumer, 1)
        await eventually(lambda: len(publisher.sent) == 2, what="the next batch handed over")
        first, second = publisher.settled_futures
        assert first is not None
        assert second is not None
        assert not first.done()
        assert store.answer is not None
        store.answer.set_result(None)
        held = store.answer
        await asyncio.wait_for(first, 10)
        await eventually(lambda: store.answer is not held, what="the second settlement held")
        assert not second.done(), "settled is resolved only once its own settlement is"
        store.answer.set_result(None)
        await asyncio.wait_for(second, 10)
        assert store.settled == [(0, 0, 1), (0, 1, 2)]


async def test_a_batch_the_store_refuses_is_reported_unsettled_to_the_sink() -> None:
    """PostgreSQL refuses a batch already handed over (another engine owns the partition):
    the sink hears it will never be settled, so its transaction is aborted, and the engine
    stops with the store's reason."""
    store, consumer = HeldSettlementStore(), StubConsumer()
    publisher = TransactionalStubPublisher()
    engine = MatchingEngine(Settings(), store, publisher, consumer, empty_log)
    task = asyncio.create_task(engine.run())
    await eventually(lambda: consumer.listener is not None, what="the engine subscribed")
    await _held_settlement(store, consumer, engine)
    assert store.answer is not None
    store.answer.set_exception(FencedError("partition 0 is another engine's now", 0))
    with pytest.raises(BaseExceptionGroup) as failure:
        await asyncio.wait_for(task, 10)
    assert failure.group_contains(FencedError)
    (settled,) = publisher.settled_futures
    assert settled is not None
    assert settled.done()
    with pytest.raises(PublishFailedError, match="not settled"):
        settled.result()


class CommittingStubPublisher(StubPublisher):
    """Like the Kafka committer: a partition's batches join its open transaction, which
    closes ``interval_s`` after its first batch and commits once each batch in it is
    settled; only then do their futures resolve."""

    transactional = True

    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._open: dict[int, list[tuple[asyncio.Future[Any], asyncio.Future[None] | None]]] = {}
        self._commits: set[asyncio.Task[None]] = set()

    async def send(
        self, batches: list[SettlementBatch], settled: asyncio.Future[None] | None = None
    ) -> Sequence[asyncio.Future[Any]]:
        self.sent.extend(batches)
        futures: list[asyncio.Future[Any]] = []
        for batch in batches:
            transaction = self._open.get(batch.partition)
            if transaction is None:
                transaction = self._open[batch.partition] = []
                commit = asyncio.create_task(self._commit(batch.partition, transaction))
                self._commits.add(commit)
                commit.add_done_callback(self._commits.discard)
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            transaction.append((done, settled))
            futures.append(done)
        return futures

    async def _commit(
        self,
        partition: int,
        transaction: list[tuple[asyncio.Future[Any], asyncio.Future[None] | None]],
    ) -> None:
        await asyncio.sleep(self._interval_s)
        del self._open[partition]  # later batches open the next transaction
        await asyncio.gather(*(asyncio.shield(s) for _, s in transaction if s is not None))
        for done, _ in transaction:
            done.set_result(None)


async def test_a_transaction_spanning_more_batches_than_the_confirm_queue_still_commits() -> None:
    """Two partitions' fetches alternate while a transaction stays open: one transaction's
    batches lie farther apart than the batches the confirm stage may hold. Its commit waits
    for them to be settled, so settling must never wait for the confirm stage."""
    store, consumer = StubStore(), StubConsumer()
    publisher = CommittingStubPublisher(interval_s=1.0)
    fetches = 200
    async with running(store, consumer, publisher) as engine:
        await consumer.assign(0, 1)
        await eventually(lambda: engine.owned_partitions == [0, 1], what="both live")
        for n in range(fetches):
            await _fetch_listing(consumer, offset=n // 2, partition=n % 2)
        await eventually(
            lambda: len(store.settled) == fetches, timeout_s=20, what="every fetch settled"
        )
        await eventually(
            lambda: [p.published for p in engine.progress()] == [fetches // 2] * 2,
            timeout_s=20,
            what="every fetch published",
        )
