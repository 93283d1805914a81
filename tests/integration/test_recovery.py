"""Restart, crash and takeover: nothing settled is lost, nothing is applied twice."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from engine.commands.replay import run_replay
from engine.commands.run import run_engine
from engine.core.batch import LogRecord, PartitionProcessor
from engine.core.codec import decode_event, encode
from engine.core.market import Market
from engine.core.partitioning import partition_for
from engine.errors import DeterminismError, FencedError, LogTruncatedError
from engine.producers.client import TradingClient
from engine.producers.simulation import OrderFlow, generated_listings
from engine.settings import Settings
from engine.store.connection import connected
from engine.store.settlement import Settlement, SettlementStore
from schemas.commands import TechnologyCommand
from schemas.events import Deal
from tests.integration.harness import (
    assert_settled_and_published_once,
    fetch_all,
    read_topic,
    running_engine,
    wait_until_settled,
)

pytestmark = pytest.mark.integration


def _stream(orders: int) -> list[TechnologyCommand]:
    flow = OrderFlow(99, generated_listings(4), invalid_ratio=0.02)
    return flow.listing_commands() + flow.next_commands(orders)


def _pure_deal_ids(commands: list[TechnologyCommand]) -> list[str]:
    market = Market()
    return [e.deal_id for c in commands for e in market.apply(c, 0, 0) if isinstance(e, Deal)]


async def _published_deals(settings: Settings) -> list[Deal]:
    records = await read_topic(settings, settings.topics.deals)
    deals = [decode_event(r.value) for rs in records.values() for r in rs]
    assert all(isinstance(d, Deal) for d in deals)
    return deals  # type: ignore[return-value]


async def test_restarted_engine_rebuilds_books_from_the_log(settings: Settings) -> None:
    """A second engine replays the first one's commands and goes on as if it never stopped."""
    commands = _stream(2000)
    first, second = commands[:1000], commands[1000:]
    async with TradingClient(settings) as client:
        async with running_engine(settings):
            await client.send_many(first)
            await wait_until_settled(settings)
        await client.send_many(second)
        async with running_engine(settings):
            await wait_until_settled(settings)

    # Resting orders of the first run still traded; a clean stop re-published nothing.
    await assert_settled_and_published_once(settings, commands)


async def test_a_lagging_published_mark_sends_nothing_twice(settings: Settings) -> None:
    """With transactions the broker's committed position wins over PostgreSQL's mark: a crash
    after the broker committed, before the mark was written, doubles nothing."""
    assert settings.output_guarantee == "exactly_once"
    commands = _stream(800)
    async with TradingClient(settings) as client, running_engine(settings):
        await client.send_many(commands)
        await wait_until_settled(settings)
    async with connected(settings.database_url) as connection:
        await connection.execute("UPDATE partition_state SET published_offset = 0")
    async with running_engine(settings):
        pass

    expected = sorted(_pure_deal_ids(commands))
    published = await _published_deals(settings)
    assert sorted(d.deal_id for d in published) == expected, "every deal exactly once"
    marks = await fetch_all(settings, "SELECT published_offset, next_offset FROM partition_state")
    assert all(r["published_offset"] == r["next_offset"] for r in marks), "marks caught up"


async def test_unpublished_events_are_published_again_after_a_crash(settings: Settings) -> None:
    """At least once: events settled but not marked published are re-derived from the log
    and re-sent (subscribers dedupe on the events' unique keys)."""
    settings = replace(settings, output_guarantee="at_least_once")
    commands = _stream(800)
    async with TradingClient(settings) as client, running_engine(settings):
        await client.send_many(commands)
        await wait_until_settled(settings)
    # As if the process died after the PostgreSQL commit, before publishing was recorded.
    async with connected(settings.database_url) as connection:
        await connection.execute("UPDATE partition_state SET published_offset = 0")
    async with running_engine(settings):
        pass

    expected = sorted(_pure_deal_ids(commands))
    published = await _published_deals(settings)
    assert len(published) == 2 * len(expected), "every deal was sent again"
    by_key: dict[tuple[str, int], set[bytes]] = {}
    for deal in published:
        by_key.setdefault((deal.technology_id, deal.seq), set()).add(deal.deal_id.encode())
    assert all(len(ids) == 1 for ids in by_key.values()), "a duplicate is the same deal"
    assert sorted({d.deal_id for d in published}) == expected
    stored = await fetch_all(settings, "SELECT count(*) FROM deals")
    assert stored[0][0] == len(expected), "nothing was settled twice"


async def test_a_stale_owner_is_fenced(settings: Settings) -> None:
    """Once another engine claims a partition, the old owner's writes are refused whole."""
    store = await SettlementStore.connect(settings.database_url, settings.topics.commands)
    try:
        stale = await store.claim(0)
        await store.claim(0)  # the new owner
        processor = PartitionProcessor(0)
        batch = processor.process([LogRecord(0, 0, b"X", b"not json")])
        with pytest.raises(FencedError):
            await store.settle([Settlement(batch, stale, 0, 0)])
        rows = await fetch_all(settings, "SELECT count(*) FROM dead_letters")
        assert rows[0][0] == 0
    finally:
        await store.close()


async def test_replay_compare_detects_a_tampered_deal(settings: Settings) -> None:
    """`techx replay --compare` agrees with an honest store and flags an altered price."""
    commands = _stream(600)
    async with TradingClient(settings) as client, running_engine(settings):
        await client.send_many(commands)
        await wait_until_settled(settings)
    partition = (await fetch_all(settings, "SELECT source_partition FROM deals LIMIT 1"))[0][0]
    assert await run_replay(settings, partition, 0, None, None, compare=True) == 0
    async with connected(settings.database_url) as connection:
        await connection.execute(
            "UPDATE deals SET price = price + 1 WHERE deal_id = "
            "(SELECT deal_id FROM deals WHERE source_partition = $1 LIMIT 1)",
            partition,
        )
    assert await run_replay(settings, partition, 0, None, None, compare=True) == 1


async def test_a_settlement_retried_after_a_lost_commit_answer_is_not_applied_twice(
    settings: Settings,
) -> None:
    """Settling the same batch again (the commit's answer was lost) succeeds and adds nothing."""
    commands = _stream(300)
    records = [
        LogRecord(offset, 0, command.technology_id.encode(), encode(command))
        for offset, command in enumerate(commands)
    ]
    home = [
        r
        for r, c in zip(records, commands, strict=True)
        if partition_for(c.technology_id, settings.partitions) == 0
    ]
    records = [LogRecord(i, 0, r.key, r.value) for i, r in enumerate(home)]
    batch = PartitionProcessor(0, settings.partitions).process(records)
    assert batch.deals, "the batch should settle some deals"
    store = await SettlementStore.connect(settings.database_url, settings.topics.commands)
    try:
        claim = await store.claim(0)
        await store.settle([Settlement(batch, claim, 0, 0)])
        await store.settle([Settlement(batch, claim, 0, 0)])  # the retry
    finally:
        await store.close()
    rows = await fetch_all(settings, "SELECT count(*) FROM deals")
    assert rows[0][0] == len(batch.deals)


async def test_a_settlement_of_consecutive_batches_of_one_partition_can_be_retried(
    settings: Settings,
) -> None:
    """The engine settles what it matched while the last settlement ran in one transaction,
    which can hold several batches of one partition: a retry after a lost commit answer must
    still be recognised as already settled (not as another engine's write), and add nothing."""
    commands = _stream(300)
    home = [c for c in commands if partition_for(c.technology_id, settings.partitions) == 0]
    records = [
        LogRecord(offset, 0, c.technology_id.encode(), encode(c)) for offset, c in enumerate(home)
    ]
    processor = PartitionProcessor(0, settings.partitions)
    half = len(records) // 2
    first, second = processor.process(records[:half]), processor.process(records[half:])
    assert first.deals, "the first batch should settle some deals"
    assert second.deals, "the second batch should settle some deals"
    store = await SettlementStore.connect(settings.database_url, settings.topics.commands)
    try:
        claim = await store.claim(0)
        both = [
            Settlement(first, claim, 0, 0),
            Settlement(second, claim, first.next_offset, 0),
        ]
        await store.settle(both)
        await store.settle(both)  # the retry
    finally:
        await store.close()
    rows = await fetch_all(settings, "SELECT count(*) FROM deals")
    assert rows[0][0] == len(first.deals) + len(second.deals)
    state = await fetch_all(settings, "SELECT next_offset FROM partition_state WHERE partition = 0")
    assert state[0][0] == second.next_offset


async def _recovery_after(settings: Settings, tampering: str) -> BaseExceptionGroup:
    """Settle a stream, change what PostgreSQL holds behind the engine's back, and start an
    engine again: what its recovery fails with."""
    async with TradingClient(settings) as client, running_engine(settings):
        await client.send_many(_stream(300))
        await wait_until_settled(settings)
    async with connected(settings.database_url) as connection:
        await connection.execute(tampering)
    with pytest.raises(BaseExceptionGroup) as failure:
        await asyncio.wait_for(run_engine(settings, asyncio.Event(), asyncio.Event()), 60)
    return failure.value


async def test_a_replay_that_disagrees_with_postgresql_stops_the_engine(
    settings: Settings,
) -> None:
    """The determinism tripwire: a settled deal missing from the store fails recovery loudly."""
    failure = await _recovery_after(
        settings, "DELETE FROM deals WHERE deal_id = (SELECT deal_id FROM deals LIMIT 1)"
    )
    assert failure.subgroup(DeterminismError) is not None


async def test_a_log_shorter_than_what_postgresql_settled_stops_the_engine(
    settings: Settings,
) -> None:
    """A command topic deleted and created again under a database that outlived it (a dev
    stack rebuilt beside old data, a restore gone wrong): recovery cannot rebuild the
    markets, and it says so at once instead of waiting for records that never come."""
    failure = await _recovery_after(
        settings,
        "UPDATE partition_state SET next_offset = next_offset + 50, "
        "published_offset = published_offset + 50",
    )
    truncated = failure.subgroup(LogTruncatedError)
    assert truncated is not None
    assert "were settled" in str(truncated.exceptions[0])


async def test_recovery_starts_from_the_latest_snapshot(settings: Settings) -> None:
    """With snapshots every 200 commands, a restart replays only the log after the newest."""
    settings = replace(settings, snapshot_every=200)
    commands = _stream(2400)
    first, second = commands[:1600], commands[1600:]
    async with TradingClient(settings) as client:
        async with running_engine(settings):
            await client.send_many(first)
            await wait_until_settled(settings)
        snapshots = await fetch_all(settings, "SELECT count(*) FROM market_snapshots")
        assert snapshots[0][0] > 0
        async with running_engine(settings) as idle:  # recovers, then has nothing to settle
            await wait_until_settled(settings)
        sizes = [
            sample.value
            for metric in (await idle).metrics.registry.collect()
            if metric.name == "techx_engine_snapshot_size_bytes"
            for sample in metric.samples
        ]
        assert sizes, "the snapshots it recovered from"
        assert all(size > 0 for size in sizes)
        await client.send_many(second)
        async with running_engine(settings) as restarted:
            await wait_until_settled(settings)
    engine = await restarted
    assert engine.replayed_commands < len(first) // 2, "most of the log was skipped"
    expected = _pure_deal_ids(commands)
    stored = [r[0] for r in await fetch_all(settings, "SELECT deal_id FROM deals")]
    assert sorted(stored) == sorted(expected), "the restored books traded as the originals"
