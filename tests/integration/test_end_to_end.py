"""The whole path on the real broker and server: front-end → Kafka → engine → PostgreSQL → Kafka."""

from __future__ import annotations

import msgspec
import pytest

from engine.core.batch import DLQ_DETAIL_HEADER, DLQ_OFFSET_HEADER, DLQ_REASON_HEADER
from engine.core.codec import decode_event, encode
from engine.core.market import Market
from engine.producers.client import TradingClient
from engine.producers.simulation import OrderFlow, generated_listings
from engine.settings import Settings
from schemas.commands import TechnologyCommand
from schemas.events import Deal
from tests.integration.harness import (
    expected_outputs,
    fetch_all,
    read_topic,
    running_engine,
    wait_until_settled,
)

pytestmark = pytest.mark.integration

SEED = 20261126
ORDERS = 4000


def seeded_stream() -> list[TechnologyCommand]:
    flow = OrderFlow(SEED, generated_listings(8), invalid_ratio=0.03)
    return flow.listing_commands() + flow.next_commands(ORDERS)


async def test_seeded_stream_settles_exactly_the_deals_the_pure_book_computes(
    settings: Settings,
) -> None:
    """A few thousand orders through Kafka settle and publish exactly the pure market's deals."""
    commands = seeded_stream()
    async with running_engine(settings):
        async with TradingClient(settings) as client:
            assert await client.send_many(commands) == len(commands)
        await wait_until_settled(settings)

    # The pure market over the same stream, technology by technology (time set aside).
    pure = Market()
    pure_deals = [e for c in commands for e in pure.apply(c, 0, 0) if isinstance(e, Deal)]
    assert len(pure_deals) > 500, "the stream should trade a lot"

    stored = await fetch_all(
        settings,
        "SELECT deal_id, price, quantity, buyer_id, seller_id,"
        " bid_order_id, offer_order_id FROM deals",
    )
    assert sorted(tuple(r) for r in stored) == sorted(
        (d.deal_id, d.price, d.quantity, d.buyer_id, d.seller_id, d.bid_order_id, d.offer_order_id)
        for d in pure_deals
    )

    published = await read_topic(settings, settings.topics.deals)
    published_deals = [decode_event(r.value) for rs in published.values() for r in rs]
    assert len(published_deals) == len(pure_deals), "no loss and no duplicate on the topic"
    assert sorted(
        encode(msgspec.structs.replace(d, timestamp_ms=0, source_offset=0)) for d in published_deals
    ) == sorted(encode(d) for d in pure_deals)

    # Byte for byte, with the broker's timestamps: replaying the log gives the same outputs.
    expected = await expected_outputs(settings)
    executions = await read_topic(settings, settings.topics.executions)
    for partition, (deals, execution_events, _) in expected.items():
        assert [r.value for r in published[partition]] == deals
        assert [r.value for r in executions[partition]] == execution_events

    rejected = await fetch_all(
        settings,
        "SELECT count(*) FROM command_outcomes, json_array_elements(events) AS e"
        " WHERE e->>'type' = 'command_rejected'",
    )
    assert rejected[0][0] > 0, "the stream's bad orders were answered with rejections"


async def test_malformed_record_is_dead_lettered_and_later_orders_still_match(
    settings: Settings,
) -> None:
    """Bad bytes go to the dead-letter topic with a reason; the orders after them still trade."""
    async with running_engine(settings):
        async with TradingClient(settings) as client:
            await client.list_technology("PAT-DLQ", "ops", "Dead letter test", 100, 1)
            await client.place("PAT-DLQ", "seller", "s1", "offer", 3, 1_000)
            bad_offset = await client.send_raw("PAT-DLQ", b'{"type": "place_order", "price": ')
            await client.place("PAT-DLQ", "buyer", "b1", "bid", 2, 1_100)
        await wait_until_settled(settings)

    dead = await read_topic(settings, settings.topics.dead_letters)
    records = [r for rs in dead.values() for r in rs]
    assert len(records) == 1
    assert records[0].value == b'{"type": "place_order", "price": '
    headers = dict(records[0].headers)
    assert headers[DLQ_OFFSET_HEADER] == str(bad_offset).encode()
    assert headers[DLQ_REASON_HEADER] == b"malformed_json"
    assert headers[DLQ_DETAIL_HEADER].startswith(b"not valid JSON")

    stored = await fetch_all(settings, "SELECT source_offset, reason, detail FROM dead_letters")
    assert [tuple(r) for r in stored] == [
        (bad_offset, "malformed_json", headers[DLQ_DETAIL_HEADER].decode())
    ]
    deals = await fetch_all(settings, "SELECT price, quantity, buyer_id, seller_id FROM deals")
    assert [tuple(r) for r in deals] == [(1_000, 2, "buyer", "seller")]
