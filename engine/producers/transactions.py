"""Exactly-once outputs: each command partition's events go out in Kafka transactions.

Why transactions: PostgreSQL is the commit point, so an engine that dies between its
PostgreSQL commit and the broker's acknowledgement leaves events the next owner must
publish again. With plain sends it cannot know which of them arrived, and subscribers see
duplicates. Here every batch's events (deals, executions, dead letters, market data) and the
command offset they reach are committed in one transaction:

- the transactional id is per command partition (``{group}.{commands topic}.{partition}``),
  so the engine that takes a partition over fences every earlier owner: the broker aborts
  their open transaction and refuses their next one;
- the offset goes to the consumer group ``{group}.outputs`` inside the same transaction,
  so the position read back at takeover is exactly what ``read_committed`` subscribers can
  see: what lies below it is never sent again, what lies above it was never visible.

One committer task per partition takes the batches in order. A batch's events are sent
as soon as it is matched, into the partition's open transaction, while PostgreSQL settles
it; the transaction stays open for the commit interval and then commits with every batch
sent meanwhile, once each of them is settled. A transaction costs a few round trips (about
10 ms here) whatever its size, and events appended early cost nothing, as ``read_committed``
subscribers see them only at the commit. (Kafka Streams works the same way.) A batch that
is never settled (the engine was fenced) takes its transaction down with it: aborted,
never seen. A batch's transaction never commits before the ones queued ahead of it.

A failed transaction (the broker restarted under the producer, or a stale engine's late
InitProducerId fenced it) is retried with a fresh producer, which reads the committed
position again and sends only what lies above it; but only after PostgreSQL confirms this
engine still owns the partition, so a rightful newer owner is never fenced in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import IllegalOperation, KafkaError
from aiokafka.producer import sender as aiokafka_sender

from engine.core.batch import SettlementBatch
from engine.errors import BrokerUnavailableError, FencedError, PublishFailedError, TechXError
from engine.kafka_security import kafka_error
from engine.producers.publisher import outputs_of, send_in_batches
from engine.retry import retrying
from engine.settings import Settings, Topics

log = structlog.get_logger()

# aiokafka waits a fixed 20 ms before retrying AddPartitionsToTxn while the previous
# transaction's markers are still being written (CONCURRENT_TRANSACTIONS, KAFKA-5477), and
# offers no setting for it. Every transaction but the first meets it; measured with four
# partitions committing side by side: p90 29-34 ms at 20 ms, 17-18 ms at 2 ms.
aiokafka_sender.BACKOFF_OVERRIDE = 0.002

#: The broker aborts a transaction left open this long (a frozen engine): read_committed
#: subscribers of its partitions wait at most that long before the next owner takes over.
TRANSACTION_TIMEOUT_MS = 10_000
#: aiokafka waits this long before asking again while the previous transaction's markers are
#: still being written (CONCURRENT_TRANSACTIONS); its default, 100 ms, triples the latency.
_RETRY_BACKOFF_MS = 10
#: Most batches joined in one transaction when the broker falls behind.
_MOST_BATCHES_PER_TRANSACTION = 64


def transactional_id(settings: Settings, partition: int) -> str:
    return f"{transactional_id_prefix(settings.group_id, settings.topics)}{partition}"


def transactional_id_prefix(group_id: str, topics: Topics) -> str:
    """What the transactional ids of every engine in ``group_id`` start with (the prefix an
    ACL grants them)."""
    return f"{group_id}.{topics.commands}."


def outputs_group(group_id: str) -> str:
    """The consumer group whose offsets say how far each partition's outputs are committed.

    Its own group, never joined by a consumer: the engines' group commits the settled offset
    for lag monitoring, and a commit there must never move the published position.
    """
    return f"{group_id}.outputs"


#: A batch, the future its transaction's commit resolves, and the future the engine resolves
#: once PostgreSQL has settled it (None: settled already).
_Pending = tuple[SettlementBatch, "asyncio.Future[None]", "asyncio.Future[None] | None"]


@dataclass(slots=True)
class _PartitionOutputs:
    producer: AIOKafkaProducer
    #: Asks PostgreSQL whether this engine still owns the partition.
    still_owner: Callable[[], Awaitable[bool]]
    queue: asyncio.Queue[_Pending] = field(default_factory=asyncio.Queue)
    #: The last attempt failed: the producer is replaced before the next.
    broken: bool = False
    committer: asyncio.Task[None] | None = None
    #: Set once a transaction failed for good: every later batch fails with it.
    failure: TechXError | None = None


class TransactionalPublisher:
    """The EventSink of an engine that promises exactly-once outputs."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._group = outputs_group(settings.group_id)
        self._admin: AIOKafkaAdminClient | None = None
        self._admin_lock = asyncio.Lock()
        self._partitions: dict[int, _PartitionOutputs] = {}
        self._closing = False

    async def open_partition(
        self, partition: int, still_owner: Callable[[], Awaitable[bool]]
    ) -> int | None:
        """Fence every earlier owner of the partition's outputs; return how far their
        committed outputs reach (a command offset), or None if nothing was ever committed.

        Starting the producer is Kafka's InitProducerId: it completes or aborts any
        transaction an earlier owner left, so the position read afterwards is final.
        """
        await self.close_partition(partition)
        producer, position = await self._start_producer(partition)
        outputs = _PartitionOutputs(producer, still_owner)
        outputs.committer = asyncio.create_task(self._commit_in_order(partition, outputs))
        self._partitions[partition] = outputs
        return position

    async def _start_producer(self, partition: int) -> tuple[AIOKafkaProducer, int | None]:
        producer = AIOKafkaProducer(
            **self._settings.kafka_options(),
            client_id=f"techx-engine-p{partition}",
            transactional_id=transactional_id(self._settings, partition),
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
            retry_backoff_ms=_RETRY_BACKOFF_MS,
            linger_ms=0,
            max_batch_size=1024 * 1024,
            max_request_size=4 * 1024 * 1024,
        )
        try:
            await producer.start()
            position = await self._committed_position(partition)
        except KafkaError as e:
            await _stop_quietly(producer)
            raise kafka_error(
                e, f"opening the outputs of partition {partition}", self._settings.kafka_security
            ) from e
        except BaseException:
            await _stop_quietly(producer)
            raise
        return producer, position

    async def close_partition(self, partition: int) -> None:
        """Let the partition go: the engine has drained it, so nothing is queued."""
        outputs = self._partitions.pop(partition, None)
        if outputs is None:
            return
        if outputs.committer is not None:
            outputs.committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await outputs.committer
        _fail_queued(outputs, PublishFailedError(f"partition {partition} was closed"))
        await _stop_quietly(outputs.producer)

    async def close(self) -> None:
        self._closing = True
        for partition in list(self._partitions):
            await self.close_partition(partition)
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    #: Appended events stay invisible until the commit: the engine may hand a batch over
    #: before PostgreSQL settles it, and the commit waits for its ``settled``.
    transactional = True

    async def send(
        self, batches: list[SettlementBatch], settled: asyncio.Future[None] | None = None
    ) -> list[asyncio.Future[None]]:
        """Queue the batches; each future resolves once its transaction is committed.

        ``settled``, when given, is resolved by the engine once PostgreSQL has settled the
        batches (or failed with why they never will be). Their events are appended at once,
        into the open transaction, but no transaction that holds them commits before it: an
        unsettled batch's events are aborted, never seen by ``read_committed`` subscribers.
        """
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for batch in batches:
            future: asyncio.Future[None] = loop.create_future()
            outputs = self._partitions.get(batch.partition)
            if outputs is None:
                future.set_exception(
                    PublishFailedError(f"partition {batch.partition}'s outputs are not open")
                )
            elif outputs.failure is not None:
                future.set_exception(outputs.failure)
            else:
                outputs.queue.put_nowait((batch, future, settled))
            futures.append(future)
        return futures

    async def publish(self, batches: list[SettlementBatch]) -> None:
        """Commit the batches' events and wait until they are visible to read_committed."""
        for result in await asyncio.gather(*await self.send(batches), return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    async def _started_admin(self) -> AIOKafkaAdminClient:
        """One admin client, started once however many partitions recover side by side."""
        async with self._admin_lock:
            if self._admin is None:
                admin = AIOKafkaAdminClient(
                    **self._settings.kafka_options(),
                    client_id="techx-engine-admin",
                )
                await admin.start()
                self._admin = admin
            return self._admin

    def _is_closing(self) -> bool:
        return self._closing

    async def _committed_position(self, partition: int) -> int | None:
        admin = await self._started_admin()
        tp = TopicPartition(self._settings.topics.commands, partition)
        offsets = await admin.list_consumer_group_offsets(self._group, partitions=[tp])
        found = offsets.get(tp)
        return found.offset if found is not None and found.offset >= 0 else None

    async def _commit_in_order(self, partition: int, outputs: _PartitionOutputs) -> None:
        """The partition's committer: one transaction at a time, batches first in first out."""
        while True:
            transaction = _Transaction([await outputs.queue.get()])
            try:
                await retrying(
                    "publish",
                    partial(self._deliver, partition, outputs, transaction),
                    give_up=self._is_closing,
                    partition=partition,
                )
                # A transaction of batches without events commits nothing, so nothing waited
                # for them: their futures still resolve only once PostgreSQL settled them.
                await _settled(transaction)
            except asyncio.CancelledError:
                # close_partition: the batches taken from the queue fail like those still in
                # it, or whoever awaits them waits for ever.
                for _, future, _ in transaction.pending:
                    if not future.done():
                        future.set_exception(
                            PublishFailedError(f"partition {partition} was closed")
                        )
                raise
            except Exception as e:
                # A TechXError gave up retrying; anything else is a bug here or in the client.
                # Either way the committer ends, and every batch it holds or will be given
                # fails with the error, so the engine stops instead of waiting for ever.
                failure = (
                    e
                    if isinstance(e, TechXError)
                    else PublishFailedError(f"partition {partition}'s committer failed: {e!r}")
                )
                outputs.failure = failure
                for _, future, _ in transaction.pending:
                    if not future.done():
                        future.set_exception(failure)
                _fail_queued(outputs, failure)
                return
            for _, future, _ in transaction.pending:
                if not future.done():
                    future.set_result(None)

    async def _deliver(
        self, partition: int, outputs: _PartitionOutputs, transaction: _Transaction
    ) -> None:
        """One attempt at committing ``transaction``. The first streams: it sends what comes
        from the queue until the commit interval ends. After a failed attempt (the producer
        is broken: only a failed attempt breaks it) the producer is replaced first, and only
        what its committed position does not cover is sent again."""
        if outputs.broken:
            position = await self._reopen(partition, outputs)
            transaction.batches[:] = _above(transaction.batches, position, partition)
            if not transaction.batches:
                return
            attempt = partial(self._resend, outputs.producer, partition, transaction)
        else:
            attempt = partial(self._stream, outputs, partition, transaction)
        try:
            async with asyncio.timeout(TRANSACTION_TIMEOUT_MS / 1000):
                await attempt()
        except (KafkaError, IllegalOperation, TimeoutError) as e:
            # Whatever failed (the broker restarted under the sender, a stale engine's
            # InitProducerId fenced this producer, a transaction hung, the producer's state
            # left the transaction: aiokafka's IllegalOperation is no KafkaError), the next
            # attempt starts from a fresh producer and the position it reads.
            outputs.broken = True
            raise BrokerUnavailableError(
                f"publishing partition {partition}'s events failed ({e!r}); "
                "taking its outputs over again"
            ) from e

    async def _reopen(self, partition: int, outputs: _PartitionOutputs) -> int | None:
        """Replace a failed producer, unless another engine owns the partition now: then
        taking the outputs over would fence the rightful owner, so this engine stops."""
        if not await outputs.still_owner():
            raise FencedError(
                f"partition {partition} was claimed by another engine while its events were "
                "being published: stopping (the new owner publishes them)",
                partition,
            )
        await _stop_quietly(outputs.producer)
        outputs.producer, position = await self._start_producer(partition)
        outputs.broken = False
        log.info("outputs_reopened", partition=partition, committed_position=position)
        return position

    async def _stream(
        self, outputs: _PartitionOutputs, partition: int, transaction: _Transaction
    ) -> None:
        """Send each batch into the open transaction as soon as it is queued; commit once the
        commit interval since the first send has passed (or the transaction is full).

        A batch with no events (ticks that fired nothing) needs no transaction: a replay from
        before it makes no events either. Alone, it ends at once.
        """
        loop = asyncio.get_running_loop()
        producer = outputs.producer
        deliveries: list[asyncio.Future[object]] = []
        closes_at: float | None = None
        sent = 0
        try:
            while True:
                for batch, _, _ in transaction.pending[sent:]:
                    messages_by_topic = outputs_of(batch, self._settings.topics)
                    if not messages_by_topic:
                        continue
                    # Recorded before anything can fail: a retry sends what is recorded.
                    transaction.batches.append(batch)
                    if closes_at is None:
                        await producer.begin_transaction()
                        closes_at = loop.time() + self._settings.commit_interval_ms / 1000
                    for topic, messages in messages_by_topic:
                        deliveries.extend(
                            await send_in_batches(producer, topic, partition, messages)
                        )
                sent = len(transaction.pending)
                if sent >= _MOST_BATCHES_PER_TRANSACTION or not await _joined(
                    outputs.queue, transaction, closes_at
                ):
                    break
            if transaction.batches:
                await self._commit(producer, partition, transaction, deliveries)
        finally:
            _retrieve_failures(deliveries)

    async def _resend(
        self, producer: AIOKafkaProducer, partition: int, transaction: _Transaction
    ) -> None:
        """Commit the transaction's batches again in one transaction, after a failed attempt."""
        deliveries: list[asyncio.Future[object]] = []
        try:
            await producer.begin_transaction()
            for batch in transaction.batches:
                for topic, messages in outputs_of(batch, self._settings.topics):
                    deliveries.extend(await send_in_batches(producer, topic, partition, messages))
            await self._commit(producer, partition, transaction, deliveries)
        finally:
            _retrieve_failures(deliveries)

    async def _commit(
        self,
        producer: AIOKafkaProducer,
        partition: int,
        transaction: _Transaction,
        deliveries: list[asyncio.Future[object]],
    ) -> None:
        """End the open transaction with the command offset its last batch reaches, once
        PostgreSQL has settled every batch in it; abort it if one will never be."""
        try:
            await _settled(transaction)
        except TechXError:
            with contextlib.suppress(KafkaError, IllegalOperation):
                await producer.abort_transaction()
            raise
        commands_tp = TopicPartition(self._settings.topics.commands, partition)
        await producer.send_offsets_to_transaction(
            {commands_tp: transaction.batches[-1].next_offset}, self._group
        )
        await asyncio.gather(*deliveries)
        await producer.commit_transaction()


@dataclass(slots=True)
class _Transaction:
    """The batches one transaction takes: it grows while the transaction is open."""

    pending: list[_Pending]
    #: The batches that have events, in order: what a retry sends again.
    batches: list[SettlementBatch] = field(default_factory=list)


async def _settled(transaction: _Transaction) -> None:
    """Wait until PostgreSQL has settled every batch the transaction took (or raise why one
    never will be). Shielded: the engine's ``settled`` is the settle stage's to resolve.
    Cancelled with an attempt (its timeout: PostgreSQL settles slowly), it would be gone for
    the retry, and the settle stage would fail resolving it."""
    await asyncio.gather(*(asyncio.shield(s) for _, _, s in transaction.pending if s is not None))


async def _joined(
    queue: asyncio.Queue[_Pending], transaction: _Transaction, closes_at: float | None
) -> bool:
    """Take the next queued batch into the transaction: at once if one waits, else only
    while the transaction is open and its interval has not run out."""
    if not queue.empty():
        transaction.pending.append(queue.get_nowait())
        return True
    if closes_at is None:
        return False
    remaining = closes_at - asyncio.get_running_loop().time()
    if remaining <= 0:
        return False
    try:
        async with asyncio.timeout(remaining):
            transaction.pending.append(await queue.get())
    except TimeoutError:
        return False
    return True


def _above(
    batches: list[SettlementBatch], position: int | None, partition: int
) -> list[SettlementBatch]:
    """The batches a fresh producer still has to commit: those at or above the committed
    position. One that straddles it (another engine committed part of it, in its own batch
    boundaries) cannot be split here: stop, and the restart republishes from the log."""
    if position is None:
        return batches
    kept = [b for b in batches if b.next_offset > position]
    if kept and kept[0].first_offset < position:
        raise PublishFailedError(
            f"partition {partition}: committed outputs reach offset {position}, inside a batch "
            f"of offsets {kept[0].first_offset}..{kept[0].next_offset - 1}; stopping so that "
            "the next start republishes exactly what is missing"
        )
    return kept


def _retrieve_failures(futures: list[asyncio.Future[object]]) -> None:
    """Mark the failures of abandoned deliveries as seen: the transaction that owned them
    failed as a whole, and asyncio would otherwise report each one at exit."""
    for future in futures:
        if future.done():
            if not future.cancelled():
                future.exception()
        else:
            future.add_done_callback(_seen)


def _seen(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


def _fail_queued(outputs: _PartitionOutputs, error: TechXError) -> None:
    while not outputs.queue.empty():
        _, future, _ = outputs.queue.get_nowait()
        if not future.done():
            future.set_exception(error)


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    """Close a producer that may never have started or may be fenced; its errors do not
    matter any more (the partition is being let go, was never taken, or is taken over by a
    fresh producer)."""
    with contextlib.suppress(KafkaError):
        await producer.stop()
