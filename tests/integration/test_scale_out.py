"""Scale-out is Kafka's consumer group: engines joining and leaving hand partitions over."""

from __future__ import annotations

import pytest

from engine.core.codec import decode_event
from engine.core.market import Market
from engine.producers.client import TradingClient
from engine.producers.simulation import OrderFlow, generated_listings
from engine.settings import Settings
from schemas.events import Deal
from tests.integration.harness import fetch_all, read_topic, running_engine, wait_until_settled

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

    market = Market()
    expected = sorted(
        e.deal_id for c in commands for e in market.apply(c, 0, 0) if isinstance(e, Deal)
    )
    stored = sorted(r[0] for r in await fetch_all(settings, "SELECT deal_id FROM deals"))
    assert stored == expected
    published = await read_topic(settings, settings.topics.deals)
    deal_ids = sorted(decode_event(r.value).deal_id for rs in published.values() for r in rs)  # type: ignore[union-attr]
    assert deal_ids == expected, "hand-overs re-publish nothing and lose nothing"
