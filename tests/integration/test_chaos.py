"""Servers going away under the engine: it waits, or it stops; it never loses or doubles."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

import devstack
from devstack import StackSettings
from engine.commands.run import run_engine
from engine.errors import FencedError
from engine.producers.client import TradingClient
from engine.producers.simulation import OrderFlow, generated_listings
from engine.settings import Settings
from engine.store.settlement import SettlementStore
from schemas.commands import TechnologyCommand
from tests.integration.harness import (
    assert_settled_and_published_once,
    fetch_all,
    running_engine,
    wait_until_settled,
)
from tests.polling import eventually

pytestmark = pytest.mark.integration


def _stream(orders: int) -> list[TechnologyCommand]:
    flow = OrderFlow(41, generated_listings(6), invalid_ratio=0.02)
    return flow.listing_commands() + flow.next_commands(orders)


async def test_a_postgresql_restart_mid_stream_loses_and_doubles_nothing(
    settings: Settings, local_stack: StackSettings
) -> None:
    """While PostgreSQL is down the engine retries; afterwards every deal is settled once."""
    if local_stack.external_database is not None:
        pytest.skip("restarts the local PostgreSQL that `python -m devstack up` started")
    commands = _stream(3000)
    async with TradingClient(settings) as client, running_engine(settings):
        await client.send_many(commands[:1500])
        await wait_until_settled(settings)
        with capture_logs() as logs:
            await asyncio.to_thread(devstack.stop_postgres, local_stack)
            try:
                await client.send_many(commands[1500:])

                async def settle_retried() -> bool:
                    return any(
                        log["event"] == "retrying" and log.get("what") == "settle" for log in logs
                    )

                # The engine matches, fails to settle and retries, with the database down.
                await eventually(settle_retried, 60, what="a settle retry with PostgreSQL down")
            finally:
                await asyncio.to_thread(devstack.start_postgres, local_stack)
        await wait_until_settled(settings)

    await assert_settled_and_published_once(settings, commands)


async def test_an_engine_fenced_by_a_new_owner_stops(settings: Settings) -> None:
    """When another engine claims its partitions, the old one's next commit fails and it exits."""
    ready, stop = asyncio.Event(), asyncio.Event()
    engine = asyncio.create_task(run_engine(settings, ready, stop))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        store = await SettlementStore.connect(settings.database_url, settings.topics.commands)
        try:
            for partition in range(settings.partitions):
                await store.claim(partition)  # what a new owner does first
        finally:
            await store.close()
        async with TradingClient(settings) as client:
            await client.send_many(_stream(300))
        with pytest.raises(BaseExceptionGroup) as failure:
            await asyncio.wait_for(engine, 60)
        assert failure.group_contains(FencedError)
    finally:
        stop.set()
        if not engine.done():
            await asyncio.wait_for(engine, 30)
    deals = await fetch_all(settings, "SELECT count(*) FROM deals")
    assert deals[0][0] == 0, "the fenced engine settled nothing"
