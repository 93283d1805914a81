"""Fixtures for tests against the real Kafka broker and PostgreSQL server.

The stack is brought up once per session (idempotent: `make test` has usually started it);
each test gets its own topic prefix, consumer group and database, so tests never see each
other's records and can run against a long-lived dev stack.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from engine import stack
from engine.commands.setup import setup
from engine.settings import Settings, Topics
from engine.store.connection import connected

_counter = itertools.count()


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    settings = Settings.from_env()
    stack.up(settings)
    return settings


async def _create_database(admin_url: str, name: str) -> None:
    async with connected(admin_url) as connection:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await connection.execute(f'CREATE DATABASE "{name}"')


@pytest.fixture
async def settings(stack_settings: Settings) -> AsyncIterator[Settings]:
    """Fresh topics, consumer group and database for one test."""
    tag = f"t{os.getpid()}x{next(_counter)}"
    base, _, _ = stack_settings.database_url.rpartition("/")
    database = f"techx_{tag}"
    await _create_database(stack_settings.database_url, database)
    test_settings = replace(
        stack_settings,
        topics=Topics(f"test.{tag}"),
        group_id=f"test-{tag}",
        database_url=f"{base}/{database}",
        batch_max_records=500,
    )
    await setup(test_settings)
    yield test_settings
    async with connected(stack_settings.database_url) as connection:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    admin = AIOKafkaAdminClient(bootstrap_servers=stack_settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(list(test_settings.topics.all()))
    finally:
        await admin.close()


async def eventually(
    condition: Callable[[], Awaitable[bool]], timeout_s: float = 60.0, what: str = "condition"
) -> None:
    """Poll until ``condition`` holds instead of sleeping a guessed amount."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s} s")
        await asyncio.sleep(0.1)
