"""Scale-out is Kafka's consumer group: engines joining and leaving hand partitions over."""

from __future__ import annotations

import pytest

from engine.producers.client import TradingClient
from engine.producers.simulation import OrderFlow, generated_listings
from engine.settings import Settings
from tests.integration.harness import (
    assert_settled_and_published_once,
    running_engine,
    wait_until_settled,
)

pytestmark = pytest.mark.integration


async def test_a_second_engine_takes_half_the_partitions_without_loss_or_duplicates(
    settings: Settings,
) -> None:
    """Orders before, during and after a rebalance settle exactly once, in book order."""
    flow = OrderFlow(5, generated_listings(12), invalid_ratio=0.02)
    commands = flow.listing_commands() + flow.next_commands(3000)
    first, second, third = commands[:1000], commands[1000:2000], commands[2000:]
    async with TradingClient(settings) as client, running_engine(settings):
        await client.send_many(first)
        await wait_until_settled(settings)
        async with running_engine(settings) as joined:
            await client.send_many(second)
            await wait_until_settled(settings)
        assert (await joined).commands_processed > 0, "the second engine did take partitions"
        await client.send_many(third)  # the first engine takes everything back
        await wait_until_settled(settings)

    await assert_settled_and_published_once(settings, commands)
