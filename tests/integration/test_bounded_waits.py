"""A stale engine holds nothing hostage: the settlement store's waits and holds are bounded."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from engine.errors import StoreUnavailableError
from engine.settings import Settings
from engine.store.connection import connected
from engine.store.settlement import SESSION_BOUNDS, SettlementStore

pytestmark = pytest.mark.integration


async def test_a_claim_blocked_by_a_frozen_transaction_gives_up_and_is_retriable(
    settings: Settings,
) -> None:
    """A row lock held by another session stops a claim after lock_timeout, as a retry."""
    store = await SettlementStore.connect(
        settings.database_url, settings.topics.commands, session_bounds={"lock_timeout": "200ms"}
    )
    try:
        await store.claim(0)
        async with connected(settings.database_url) as frozen:
            transaction = frozen.transaction()
            await transaction.start()
            await frozen.execute(
                "SELECT * FROM partition_state WHERE topic = $1 AND partition = 0 FOR UPDATE",
                settings.topics.commands,
            )
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(StoreUnavailableError) as failure:
                await store.claim(0)
            assert failure.value.retriable
            assert loop.time() - started < 5, "the wait was bounded"
            await transaction.rollback()
        # The refused claim changed nothing; once the lock is gone the next one succeeds.
        assert (await store.claim(0)).owner_epoch == 2
    finally:
        await store.close()


async def test_an_idle_transaction_is_ended_by_the_server(settings: Settings) -> None:
    """A session left idle in a transaction loses it (and its locks) to the server's timeout."""
    async with connected(settings.database_url) as session:
        await session.execute("SET idle_in_transaction_session_timeout = '200ms'")
        transaction = session.transaction()
        await transaction.start()
        await session.execute("SELECT 1")
        await asyncio.sleep(0.6)  # idle on purpose: what a frozen engine does
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await session.execute("SELECT 1")
    assert SESSION_BOUNDS["idle_in_transaction_session_timeout"] == "5s"
