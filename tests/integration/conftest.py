"""Fixtures for tests against the real Kafka broker and PostgreSQL server.

The local stack (``devstack``) is brought up once per session (idempotent: `make test` has
usually started it), and the engine is pointed at it, whatever ports TECHX_* chose;
each test gets its own topic prefix, consumer group and database, so tests never see each
other's records and can run against a long-lived dev stack.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiokafka.admin import AIOKafkaAdminClient

import devstack
from devstack import StackSettings
from engine.commands.setup import setup
from engine.settings import Settings, Topics
from engine.store.connection import connected

_counter = itertools.count()


@pytest.fixture(scope="session")
def local_stack() -> StackSettings:
    """The running development stack (or the servers TECHX_KAFKA_BOOTSTRAP/DATABASE_URL name)."""
    stack = StackSettings.from_env()
    devstack.up(stack)
    return stack


@pytest.fixture(scope="session")
def stack_settings(local_stack: StackSettings) -> Settings:
    return replace(
        Settings.from_env(),
        kafka_bootstrap=local_stack.kafka_bootstrap,
        database_url=local_stack.database_url,
    )


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
        tick_interval_ms=0,  # tests that need time to pass turn the ticker on themselves
        metrics_port=0,  # engines share this host; tests that scrape pick a free port
    )
    await setup(test_settings)
    yield test_settings
    async with connected(stack_settings.database_url) as connection:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    admin = AIOKafkaAdminClient(**stack_settings.kafka_options())
    await admin.start()
    try:
        await admin.delete_topics(list(test_settings.topics.all()))
    finally:
        await admin.close()
