"""Two topic prefixes (tenants, test runs) settle side by side in one database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from engine.commands.setup import setup
from engine.core.market import Market
from engine.producers.client import TradingClient
from engine.producers.simulation import OrderFlow, generated_listings
from engine.settings import Settings, Topics
from engine.store.reports import settled_deals
from schemas.events import Deal
from tests.integration.harness import fetch_all, running_engine, wait_until_settled

pytestmark = pytest.mark.integration


@pytest.fixture
async def neighbour(settings: Settings) -> AsyncIterator[Settings]:
    """A second prefix and consumer group on the same database as ``settings``."""
    other = replace(
        settings,
        topics=Topics(f"{settings.topics.prefix}.neighbour"),
        group_id=f"{settings.group_id}-neighbour",
    )
    await setup(other)
    yield other
    admin = AIOKafkaAdminClient(**other.kafka_options())
    await admin.start()
    try:
        await admin.delete_topics(list(other.topics.all()))
    finally:
        await admin.close()


async def test_two_prefixes_settle_the_same_technologies_in_one_database(
    settings: Settings, neighbour: Settings
) -> None:
    """The same deal ids under two prefixes do not collide: each tenant keeps its own deals."""
    flow = OrderFlow(17, generated_listings(4), invalid_ratio=0.02)
    commands = flow.listing_commands() + flow.next_commands(600)
    market = Market()
    expected = [e for c in commands for e in market.apply(c, 0, 0) if isinstance(e, Deal)]
    expected_ids = [e.deal_id for e in expected]
    assert expected_ids, "the stream should trade"

    for tenant in (settings, neighbour):
        async with running_engine(tenant), TradingClient(tenant) as client:
            await client.send_many(commands)
            await wait_until_settled(tenant)

    rows = await fetch_all(settings, "SELECT topic, deal_id FROM deals")
    for tenant in (settings, neighbour):
        ids = sorted(row["deal_id"] for row in rows if row["topic"] == tenant.topics.commands)
        assert ids == sorted(expected_ids)
        stored = [
            deal
            for partition in range(tenant.partitions)
            for deal in await settled_deals(
                tenant.database_url, tenant.topics.commands, partition, 0, None
            )
        ]
        assert len(stored) == len(expected)
    outcome_topics = await fetch_all(settings, "SELECT DISTINCT topic FROM command_outcomes")
    assert sorted(row["topic"] for row in outcome_topics) == sorted(
        [settings.topics.commands, neighbour.topics.commands]
    )
