"""Exactly-once outputs: a read_committed subscriber sees every event once, byte for byte as a
pure replay makes them, whatever the previous owner of a partition left behind."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced

from engine.core.batch import SettlementBatch
from engine.core.partitioning import partition_for
from engine.errors import PublishFailedError
from engine.producers import transactions
from engine.producers.client import TradingClient
from engine.producers.simulation import OrderFlow, generated_listings
from engine.producers.transactions import TransactionalPublisher, transactional_id
from engine.settings import Settings
from engine.store.connection import connected
from schemas.commands import TechnologyCommand
from tests.integration.harness import (
    expected_outputs,
    read_topic,
    running_engine,
    wait_until_settled,
)

pytestmark = pytest.mark.integration

ZOMBIE_VALUE = b'{"type":"deal","note":"sent by an owner that died before committing"}'


def _stream(orders: int) -> list[TechnologyCommand]:
    flow = OrderFlow(23, generated_listings(6), invalid_ratio=0.03)
    return flow.listing_commands() + flow.next_commands(orders)


async def _assert_every_topic_is_the_replay(settings: Settings) -> None:
    """A read_committed reader of deals, executions and dead letters sees exactly what a
    pure replay of the command log makes: every record once, in order, byte for byte."""
    expected = await expected_outputs(settings)
    for topic, index in (
        (settings.topics.deals, 0),
        (settings.topics.executions, 1),
        (settings.topics.dead_letters, 2),
    ):
        committed = await read_topic(settings, topic)
        for p, records in committed.items():
            assert [r.value for r in records] == expected[p][index], f"{topic}[{p}] exactly once"


async def _read_uncommitted(settings: Settings, topic: str, partition: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        **settings.kafka_options(),
        group_id=None,
        isolation_level="read_uncommitted",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                values.extend(r.value for r in records if r.value is not None)
        return values
    finally:
        await asyncio.sleep(0)
        await consumer.stop()


async def test_a_dead_owners_open_transaction_is_aborted_and_never_seen(
    settings: Settings,
) -> None:
    """An owner died mid-transaction (its events written, not committed). The next owner
    fences it: read_committed never sees those records, the zombie cannot commit them later,
    and every topic holds exactly what a pure replay of the log makes."""
    commands = _stream(1500)
    async with TradingClient(settings) as client:
        await client.send_many(commands)
    partition = partition_for(commands[0].technology_id, settings.partitions)
    zombie = AIOKafkaProducer(
        **settings.kafka_options(),
        transactional_id=transactional_id(settings, partition),
    )
    await zombie.start()
    try:
        await zombie.begin_transaction()
        await zombie.send_and_wait(settings.topics.deals, ZOMBIE_VALUE, partition=partition)
        async with running_engine(settings):
            await wait_until_settled(settings)
        with pytest.raises(ProducerFenced):
            await zombie.commit_transaction()
    finally:
        await zombie.stop()

    await _assert_every_topic_is_the_replay(settings)
    uncommitted = await _read_uncommitted(settings, settings.topics.deals, partition)
    assert ZOMBIE_VALUE in uncommitted, "the aborted record is there, for uncommitted readers"


async def test_a_restart_with_a_lagging_mark_sends_every_event_once(settings: Settings) -> None:
    """Stop, forget the PostgreSQL published marks (a crash right after the broker committed),
    restart twice: the committed position in the outputs group keeps every topic exact."""
    commands = _stream(1200)
    async with TradingClient(settings) as client:
        async with running_engine(settings):
            await client.send_many(commands[:600])
            await wait_until_settled(settings)
        for rest in (commands[600:900], commands[900:]):
            async with connected(settings.database_url) as connection:
                await connection.execute("UPDATE partition_state SET published_offset = 0")
            await client.send_many(rest)
            async with running_engine(settings):
                await wait_until_settled(settings)

    await _assert_every_topic_is_the_replay(settings)


async def test_a_stale_engines_late_takeover_does_not_stop_the_owner(settings: Settings) -> None:
    """A stale engine's InitProducerId (its recovery finished after the partition moved on)
    fences the owner's producer. PostgreSQL still names the owner, so it takes its outputs
    over again and goes on: nothing stops, nothing doubles."""
    commands = _stream(1200)
    async with TradingClient(settings) as client, running_engine(settings) as engine:
        await client.send_many(commands[:600])
        await wait_until_settled(settings)
        for partition in range(settings.partitions):
            stale = AIOKafkaProducer(
                bootstrap_servers=settings.kafka_bootstrap,
                transactional_id=transactional_id(settings, partition),
            )
            await stale.start()  # InitProducerId: the owner's producer is fenced
            await stale.stop()
        await client.send_many(commands[600:])
        await wait_until_settled(settings)
        assert not engine.done(), "the owner went on"

    await _assert_every_topic_is_the_replay(settings)


def _deal_batch(first_offset: int, value: bytes) -> SettlementBatch:
    return SettlementBatch(0, first_offset, first_offset + 1, deals_out=[(b"k", value, [])])


async def _committed_position(settings: Settings) -> int | None:
    """How far partition 0's committed outputs reach, as the next owner reads it."""
    reader = TransactionalPublisher(settings)
    try:
        return await reader.open_partition(0, _always_owner)
    finally:
        await reader.close()


async def _always_owner() -> bool:
    return True


async def test_events_are_appended_at_once_and_seen_only_when_their_transaction_commits(
    settings: Settings,
) -> None:
    """Latency without giving up exactly once: a settled batch's events reach the log at
    once, inside the open transaction, and later batches join it until its interval ends;
    read_committed subscribers see them all together at its commit, and not before."""
    settings = replace(settings, commit_interval_ms=1_500)
    publisher = TransactionalPublisher(settings)
    deals = settings.topics.deals
    try:
        assert await publisher.open_partition(0, _always_owner) is None
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        futures = await publisher.send([_deal_batch(0, b"first")])
        while await _read_uncommitted(settings, deals, 0) != [b"first"]:
            assert loop.time() - sent_at < 1.0, "the first batch was not appended at once"
            await asyncio.sleep(0.02)
        futures += await publisher.send([_deal_batch(1, b"second")])
        while await _read_uncommitted(settings, deals, 0) != [b"first", b"second"]:
            assert loop.time() - sent_at < 1.2, "a later batch did not join the open transaction"
            await asyncio.sleep(0.02)
        assert not any(f.done() for f in futures), "committed before the interval ended"
        assert (await read_topic(settings, deals))[0] == []
        await asyncio.gather(*futures)
        assert loop.time() - sent_at >= 1.4
        committed = (await read_topic(settings, deals))[0]
        assert [r.value for r in committed] == [b"first", b"second"]
        # One transaction: the two events, then one commit marker.
        assert committed[-1].offset == 1
    finally:
        await publisher.close()


async def _until_appended(settings: Settings, values: list[bytes], within_s: float) -> None:
    """Wait until the deals partition 0 holds ``values`` (committed or not)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while await _read_uncommitted(settings, settings.topics.deals, 0) != values:
        assert loop.time() - started < within_s, f"{values} were not appended"
        await asyncio.sleep(0.02)


async def _first_batch_appended(
    settings: Settings, value: bytes = b"first", settled: asyncio.Future[None] | None = None
) -> tuple[TransactionalPublisher, list[asyncio.Future[None]]]:
    """A publisher of partition 0 whose open transaction holds one appended batch, ``value``
    (the interval, or a ``settled`` left unresolved, must keep it open a while); the caller
    closes the publisher."""
    publisher = TransactionalPublisher(settings)
    try:
        assert await publisher.open_partition(0, _always_owner) is None
        futures = await publisher.send([_deal_batch(0, value)], settled)
        await _until_appended(settings, [value], within_s=2)
    except BaseException:
        await publisher.close()
        raise
    return publisher, futures


async def test_a_transaction_fenced_while_open_is_committed_again_whole(
    settings: Settings,
) -> None:
    """A stale InitProducerId fences the producer while its transaction is open and batches
    keep joining it: the attempt fails, and the retry commits every batch taken, in order,
    once, with the offset of the last one that has events; no future resolves before."""
    settings = replace(settings, commit_interval_ms=3_000)
    publisher, futures = await _first_batch_appended(settings)
    try:
        stale = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            transactional_id=transactional_id(settings, 0),
        )
        await stale.start()  # the broker aborts the open transaction
        await stale.stop()
        futures += await publisher.send([SettlementBatch(0, 1, 2)])  # no events
        futures += await publisher.send([_deal_batch(2, b"second")])
        futures += await publisher.send([SettlementBatch(0, 3, 4)])  # no events, last
        assert not any(f.done() for f in futures)
        await asyncio.wait_for(asyncio.gather(*futures), 15)
        committed = (await read_topic(settings, settings.topics.deals))[0]
        assert [r.value for r in committed] == [b"first", b"second"]
    finally:
        await publisher.close()
    assert await _committed_position(settings) == 3


async def test_closing_a_partition_fails_the_batches_of_its_open_transaction(
    settings: Settings,
) -> None:
    """close_partition while the committer holds batches in an open transaction: their
    futures fail (none is left pending for ever, none resolves as committed), and the next
    owner sees nothing of them."""
    settings = replace(settings, commit_interval_ms=5_000)
    publisher, futures = await _first_batch_appended(settings)
    try:
        futures += await publisher.send([_deal_batch(1, b"second")])
        await _until_appended(settings, [b"first", b"second"], within_s=2)
        await publisher.close_partition(0)
        assert all(f.done() for f in futures), "a batch's future was left pending"
        for future in futures:
            with pytest.raises(PublishFailedError):
                future.result()
        assert await publisher.open_partition(0, _always_owner) is None
        assert (await read_topic(settings, settings.topics.deals))[0] == []
    finally:
        await publisher.close()


async def test_with_no_commit_interval_every_queued_batch_commits_in_order(
    settings: Settings,
) -> None:
    """commit_interval_ms=0: a transaction takes what is queued and commits at once."""
    settings = replace(settings, commit_interval_ms=0)
    publisher = TransactionalPublisher(settings)
    try:
        assert await publisher.open_partition(0, _always_owner) is None
        values = [f"deal {i}".encode() for i in range(100)]
        futures = await publisher.send([_deal_batch(i, v) for i, v in enumerate(values)])
        await asyncio.wait_for(asyncio.gather(*futures), 10)
        committed = (await read_topic(settings, settings.topics.deals))[0]
        assert [r.value for r in committed] == values
    finally:
        await publisher.close()
    assert await _committed_position(settings) == 100


async def test_a_bug_in_the_committer_fails_its_batches_instead_of_leaving_them_pending(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error that is no TechXError (a bug, a client's assertion) ends the committer: the
    batches it holds, those queued and those sent later fail with a PublishFailedError
    naming it, so the engine stops instead of waiting for ever."""
    publisher = TransactionalPublisher(settings)
    try:
        assert await publisher.open_partition(0, _always_owner) is None

        def broken(batch: SettlementBatch, topics: object) -> list[object]:
            raise RuntimeError("a bug")

        monkeypatch.setattr(transactions, "outputs_of", broken)
        futures = await publisher.send([_deal_batch(0, b"first"), _deal_batch(1, b"second")])
        done, _ = await asyncio.wait(futures, timeout=10)
        assert len(done) == 2, "a batch's future was left pending"
        later = await publisher.send([_deal_batch(2, b"third")])
        for future in [*futures, *later]:
            with pytest.raises(PublishFailedError, match="a bug"):
                future.result()
    finally:
        await publisher.close()


async def _committed_once_settled(
    settings: Settings,
    settled: asyncio.Future[None],
    futures: list[asyncio.Future[None]],
    value: bytes,
) -> None:
    """The batch is not committed yet; resolve ``settled``: it commits, and a read_committed
    reader sees ``value``, once."""
    assert not any(f.done() for f in futures), "committed before it was settled"
    settled.set_result(None)
    await asyncio.wait_for(asyncio.gather(*futures), 10)
    committed = (await read_topic(settings, settings.topics.deals))[0]
    assert [r.value for r in committed] == [value]


async def test_a_batch_handed_over_before_it_is_settled_commits_only_once_it_is(
    settings: Settings,
) -> None:
    """The engine hands a batch over while PostgreSQL settles it: its events are appended
    at once, but its transaction outlives the commit interval until ``settled`` resolves,
    and only then do read_committed subscribers see them."""
    settings = replace(settings, commit_interval_ms=0)
    settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    publisher, futures = await _first_batch_appended(settings, b"first", settled)
    try:
        await asyncio.sleep(0.5)
        assert (await read_topic(settings, settings.topics.deals))[0] == []
        await _committed_once_settled(settings, settled, futures, b"first")
    finally:
        await publisher.close()
    assert await _committed_position(settings) == 1


async def test_a_batch_that_is_never_settled_is_aborted_and_never_seen(
    settings: Settings,
) -> None:
    """PostgreSQL refused a batch already handed over (the engine was fenced): the open
    transaction is aborted, the batch and the later ones fail with why, and nothing of it
    ever reaches a read_committed subscriber or the committed position."""
    settings = replace(settings, commit_interval_ms=0)
    settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    publisher, futures = await _first_batch_appended(settings, b"unsettled", settled)
    try:
        settled.set_exception(PublishFailedError("fenced by a newer owner"))
        done, _ = await asyncio.wait(futures, timeout=10)
        assert len(done) == 1, "the unsettled batch's future was left pending"
        later = await publisher.send([_deal_batch(1, b"later")])
        for future in [*futures, *later]:
            with pytest.raises(PublishFailedError, match="fenced by a newer owner"):
                future.result()
    finally:
        await publisher.close()
    assert await _committed_position(settings) is None
    assert (await read_topic(settings, settings.topics.deals))[0] == []


async def test_a_settlement_slower_than_the_transaction_timeout_is_committed_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL takes longer to settle a batch than a transaction may stay open (an outage,
    the settle retried): the attempt times out and the committer starts again with a fresh
    producer, but ``settled`` stays the engine's to resolve, and once it is the batch is
    committed, once."""
    monkeypatch.setattr(transactions, "TRANSACTION_TIMEOUT_MS", 1_000)
    settings = replace(settings, commit_interval_ms=0)
    settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    publisher, futures = await _first_batch_appended(settings, b"slow", settled)
    try:
        await asyncio.sleep(2.5)  # past the timeout: the first attempt gave up meanwhile
        assert not settled.done(), "the committer's timeout cancelled the engine's future"
        await _committed_once_settled(settings, settled, futures, b"slow")
    finally:
        await publisher.close()
    assert await _committed_position(settings) == 1


async def test_a_batch_without_events_is_not_reported_committed_before_it_is_settled(
    settings: Settings,
) -> None:
    """A batch that makes no events needs no transaction, but its future still means
    "settled and published": it resolves only once ``settled`` does, as the engine's
    confirm stage advances the published mark from it."""
    settings = replace(settings, commit_interval_ms=0)
    publisher = TransactionalPublisher(settings)
    try:
        assert await publisher.open_partition(0, _always_owner) is None
        settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        futures = await publisher.send([SettlementBatch(0, 0, 1)], settled)
        await asyncio.sleep(0.5)
        assert not any(f.done() for f in futures), "reported published before it was settled"
        settled.set_result(None)
        await asyncio.wait_for(asyncio.gather(*futures), 10)
    finally:
        await publisher.close()
