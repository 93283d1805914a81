"""Helpers shared by the integration tests: run an engine, read topics, compute expectations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg
from aiokafka.structs import ConsumerRecord

from engine.commands.run import run_engine
from engine.consumers.log_reader import read_partition
from engine.consumers.matching_engine import MatchingEngine
from engine.core.batch import PartitionProcessor
from engine.core.codec import decode_event
from engine.core.market import Market
from engine.settings import Settings
from engine.store.connection import connected
from engine.store.reports import partition_positions
from schemas.commands import TechnologyCommand
from schemas.events import Deal
from tests.polling import eventually

#: Engines started by running_engine and not yet stopped by it: waits fail fast if one dies.
_running: set[asyncio.Task[MatchingEngine]] = set()


def engines_alive() -> None:
    """Raise at once if an engine of this test stopped by itself (it should run until the
    test stops it): waiting on its work would only time out, minutes later, saying less."""
    for task in _running:
        if task.done():
            error = None if task.cancelled() else task.exception()
            raise AssertionError(f"an engine stopped while the test waited: {error!r}") from error


@asynccontextmanager
async def running_engine(settings: Settings) -> AsyncIterator[asyncio.Task[MatchingEngine]]:
    """One engine process's worth of work, in this event loop, stopped gracefully on exit."""
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_engine(settings, ready, stop))
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        if task.done():
            task.result()
        raise AssertionError("engine was not ready within 60 s")
    _running.add(task)
    try:
        yield task
    finally:
        _running.discard(task)
        stop.set()
        await asyncio.wait_for(task, 30)


async def read_topic(
    settings: Settings, topic: str
) -> dict[int, list[ConsumerRecord[bytes, bytes]]]:
    """Everything on a topic now, per partition, in offset order."""
    records: dict[int, list[ConsumerRecord[bytes, bytes]]] = {}
    for partition in range(settings.partitions):
        records[partition] = [
            record
            for chunk in [c async for c in read_partition(settings, topic, partition, 0)]
            for record in chunk
        ]
    return records


async def command_end_offsets(settings: Settings) -> dict[int, int]:
    records = await read_topic(settings, settings.topics.commands)
    return {p: (rs[-1].offset + 1 if rs else 0) for p, rs in records.items()}


async def settled_offsets(settings: Settings) -> dict[int, int]:
    positions = await partition_positions(settings.database_url, settings.topics.commands)
    return {partition: position.next_offset for partition, position in positions.items()}


async def wait_until_settled(settings: Settings, timeout_s: float = 120) -> dict[int, int]:
    """Wait until PostgreSQL's offsets reach the end of every command partition."""
    ends = await command_end_offsets(settings)

    async def caught_up() -> bool:
        engines_alive()
        settled = await settled_offsets(settings)
        return all(settled.get(p, 0) >= end for p, end in ends.items())

    await eventually(caught_up, timeout_s, what=f"settling up to {ends}")
    return ends


async def expected_outputs(
    settings: Settings,
) -> dict[int, tuple[list[bytes], list[bytes], list[bytes]]]:
    """What the pure engine makes of the command log, per partition: (deals, executions, dlq)."""
    commands = await read_topic(settings, settings.topics.commands)
    expected: dict[int, tuple[list[bytes], list[bytes], list[bytes]]] = {}
    for partition, records in commands.items():
        if not records:
            expected[partition] = ([], [], [])
            continue
        batch = PartitionProcessor(partition, settings.partitions).process(records)
        expected[partition] = (
            [value for _, value, _ in batch.deals_out if value is not None],
            [value for _, value, _ in batch.executions_out if value is not None],
            [value for _, value, _ in batch.dead_letters_out if value is not None],
        )
    return expected


async def fetch_all(settings: Settings, query: str, *args: object) -> list[asyncpg.Record]:
    async with connected(settings.database_url) as connection:
        return list(await connection.fetch(query, *args))


async def assert_settled_and_published_once(
    settings: Settings, commands: Sequence[TechnologyCommand]
) -> list[str]:
    """The deals a pure market makes of ``commands`` are in PostgreSQL once each and on the
    deals topic once each: nothing lost, nothing doubled, whatever happened on the way.
    Returns the deal ids, sorted."""
    market = Market()
    expected = sorted(
        e.deal_id for c in commands for e in market.apply(c, 0, 0) if isinstance(e, Deal)
    )
    stored = sorted(r["deal_id"] for r in await fetch_all(settings, "SELECT deal_id FROM deals"))
    assert stored == expected, "every deal settled exactly once"
    published = await read_topic(settings, settings.topics.deals)
    events = [decode_event(r.value) for rs in published.values() for r in rs]
    assert sorted(e.deal_id for e in events if isinstance(e, Deal)) == expected, (
        "every settled deal published exactly once"
    )
    return expected
