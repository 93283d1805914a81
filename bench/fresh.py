"""Fresh topics and a fresh database per benchmark run, on the running local stack.

Every benchmark measures on its own prefix and database, so runs never read each other's
records and a long-lived development stack can host them all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

from aiokafka.admin import AIOKafkaAdminClient

import devstack
from devstack import StackSettings
from engine.commands.setup import setup
from engine.producers.client import TradingClient
from engine.producers.simulation import OrderFlow, generated_listings
from engine.settings import Settings, Topics
from engine.store.connection import connected


async def stack_settings(guarantee: str | None = None) -> Settings:
    """The engine's settings pointed at the local stack (started if it is not running)."""
    stack = StackSettings.from_env()
    await asyncio.to_thread(devstack.up, stack)
    base = replace(
        Settings.from_env(), kafka_bootstrap=stack.kafka_bootstrap, database_url=stack.database_url
    )
    return base if guarantee is None else replace(base, output_guarantee=guarantee)


async def fresh(base: Settings, tag: str) -> Settings:
    """``base`` with topics ``bench.<tag>.*``, group ``bench-<tag>`` and a new database."""
    database = f"techx_bench_{tag}"
    async with connected(base.database_url) as connection:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{database}"')
    settings = replace(
        base,
        topics=Topics(f"bench.{tag}"),
        group_id=f"bench-{tag}",
        database_url=f"{base.database_url.rpartition('/')[0]}/{database}",
    )
    await setup(settings)
    return settings


async def fresh_settings(tag: str, guarantee: str | None = None) -> Settings:
    """Settings on the running stack with fresh topics and a fresh database named by ``tag``."""
    return await fresh(await stack_settings(guarantee), tag)


async def remove(base: Settings, settings: Settings) -> None:
    """Drop what :func:`fresh` made."""
    async with connected(base.database_url) as connection:
        database = settings.database_url.rpartition("/")[2]
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    admin = AIOKafkaAdminClient(**settings.kafka_options())
    await admin.start()
    try:
        await admin.delete_topics(list(settings.topics.all()))
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def discarded_afterwards(keep: bool = False) -> AsyncIterator[list[Settings]]:
    """A list to put each run's fresh settings in: their topics and databases are dropped on
    the way out unless ``keep``. Kept, a development stack's runs grew to hundreds of
    databases (28 GB) and PostgreSQL's fsync slowed down for everything."""
    made: list[Settings] = []
    try:
        yield made
    finally:
        if made and not keep:
            base = await stack_settings()
            for settings in made:
                await remove(base, settings)


async def publish_backlog(settings: Settings, orders: int, seed: int, technologies: int) -> None:
    """The seeded backlog both pipelines consume: listings then ``orders`` orders."""
    flow = OrderFlow(seed, generated_listings(technologies), invalid_ratio=0.01)
    async with TradingClient(settings, client_id="bench-frontend") as client:
        await client.send_many(flow.listing_commands() + flow.next_commands(orders))
