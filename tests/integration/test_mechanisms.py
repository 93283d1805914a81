"""Each mechanism through the real broker and database: deadlines fired by the ticker alone.

The ticker runs inside the engine process (``tick_interval_ms``); after the last bid nobody
sends anything, yet the auction closes, the deal settles and is published, and a replay of
the log reproduces exactly what PostgreSQL holds.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import pytest

from engine.commands.replay import run_replay
from engine.core.codec import decode_event, decode_view
from engine.core.partitioning import partition_for
from engine.producers.client import TradingClient
from engine.settings import Settings
from schemas.common import AuctionOutcome, CancelReason
from schemas.events import AuctionClosed, Deal, Event, MarketView, OrderCancelled
from tests.integration.harness import read_topic, running_engine
from tests.polling import eventually

pytestmark = pytest.mark.integration

#: Ticks every 100 ms: a deadline is met within about that after it passes.
TICK_MS = 100


def _now_ms() -> int:
    """The broker stamps records with its wall clock (LogAppendTime); tests aim at it."""
    return int(time.time() * 1000)


async def _events(settings: Settings, technology_id: str) -> list[Event]:
    """Every event of one technology on the deals and executions topics, in seq order."""
    events: list[Event] = []
    for topic in (settings.topics.deals, settings.topics.executions):
        for records in (await read_topic(settings, topic)).values():
            events.extend(decode_event(r.value) for r in records if r.key == technology_id.encode())
    return sorted(events, key=lambda e: e.seq)


async def _views(settings: Settings, technology_id: str) -> list[MarketView]:
    records = await read_topic(settings, settings.topics.market_data)
    return [
        decode_view(r.value)
        for rs in records.values()
        for r in rs
        if r.key == technology_id.encode()
    ]


async def _replay_agrees(settings: Settings) -> None:
    for partition in range(settings.partitions):
        assert await run_replay(settings, partition, 0, None, None, compare=True) == 0


@dataclass(frozen=True)
class Auction:
    mechanism: str
    listing: dict[str, int | bool]
    #: (participant, price) bids, in the order sent.
    bids: list[tuple[str, int]]
    winner: str
    price: int


SEALED_BIDS = [("b1", 30_000), ("b2", 70_000), ("b3", 50_000)]

AUCTIONS = [
    Auction(
        "english",
        {"starting_price": 10_000, "min_increment": 1_000, "reserve_price": 50_000},
        [("b1", 20_000), ("b2", 60_000), ("b1", 61_000)],
        "b1",
        61_000,
    ),
    Auction("sealed_first", {"reserve_price": 40_000}, SEALED_BIDS, "b2", 70_000),
    Auction("sealed_second", {"reserve_price": 40_000}, SEALED_BIDS, "b2", 50_000),
]


@pytest.mark.parametrize("auction", AUCTIONS, ids=[a.mechanism for a in AUCTIONS])
async def test_an_auction_closes_on_time_with_no_further_command(
    settings: Settings, auction: Auction
) -> None:
    """Bids go in, then silence: the ticker's records close the auction at its end time."""
    settings = replace(settings, tick_interval_ms=TICK_MS)
    technology = f"PAT-{auction.mechanism.upper().replace('_', '-')}"
    ends_at = _now_ms() + 2_500
    async with running_engine(settings), TradingClient(settings) as client:
        listing = dict(auction.listing)
        reserve = listing.pop("reserve_price", None)
        assert reserve is None or isinstance(reserve, int)
        await client.list_technology(
            technology,
            "uni-hcm",
            "Battery patent",
            1_000,
            1,
            reserve,
            mechanism=auction.mechanism,
            ends_at_ms=ends_at,
            **listing,
        )
        for n, (bidder, price) in enumerate(auction.bids):
            await client.place(technology, bidder, f"{bidder}-{n}", "bid", 1, price)

        async def closed() -> bool:
            return any(isinstance(e, AuctionClosed) for e in await _events(settings, technology))

        await eventually(closed, 30, what=f"the {auction.mechanism} auction closed")
    events = await _events(settings, technology)
    (result,) = [e for e in events if isinstance(e, AuctionClosed)]
    assert (result.outcome, result.winner_id, result.price) == (
        AuctionOutcome.SOLD,
        auction.winner,
        auction.price,
    )
    assert result.timestamp_ms >= ends_at, "closed at or after its end, never before"
    (deal,) = [e for e in events if isinstance(e, Deal)]
    assert (deal.buyer_id, deal.seller_id, deal.price) == (auction.winner, "uni-hcm", auction.price)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "no gap, no duplicate"
    if auction.mechanism.startswith("sealed"):
        for view in await _views(settings, technology):
            shown = {view.high_bid, view.current_price, view.last_price}
            if view.state.value == "open":
                assert not shown & {price for _, price in auction.bids}, "a sealed bid leaked"
    await _replay_agrees(settings)


async def test_a_dutch_clock_falls_with_the_ticker_and_the_first_bid_buys(
    settings: Settings,
) -> None:
    """The price steps down on ticks alone; a bid takes the lot at the price of the moment."""
    settings = replace(settings, tick_interval_ms=TICK_MS)
    technology = "PAT-DUTCH"
    async with running_engine(settings), TradingClient(settings) as client:
        await client.list_technology(
            technology,
            "inst-7",
            "Know-how package",
            1_000,
            1,
            40_000,
            mechanism="dutch",
            starting_price=100_000,
            price_step=10_000,
            step_interval_ms=400,
        )

        async def fallen() -> bool:
            views = await _views(settings, technology)
            return any(v.current_price is not None and v.current_price <= 70_000 for v in views)

        await eventually(fallen, 30, what="the Dutch clock fell to 70,000")
        await client.place(technology, "buyer-1", "take-1", "bid", 1)
        await _wait_for(
            settings, technology, lambda events: any(isinstance(e, Deal) for e in events)
        )
    events = await _events(settings, technology)
    (deal,) = [e for e in events if isinstance(e, Deal)]
    assert 40_000 <= deal.price <= 70_000
    assert (deal.price - 40_000) % 10_000 == 0, "a price of the clock's schedule"
    (result,) = [e for e in events if isinstance(e, AuctionClosed)]
    assert result.outcome is AuctionOutcome.SOLD
    await _replay_agrees(settings)


async def test_a_call_market_uncrosses_on_schedule(settings: Settings) -> None:
    """Orders collect; at the scheduled time one price clears both sides, with no command."""
    settings = replace(settings, tick_interval_ms=TICK_MS)
    technology = "LIC-CALL"
    async with running_engine(settings), TradingClient(settings) as client:
        await client.list_technology(
            technology,
            "uni-hcm",
            "Licence pool",
            1,
            1,
            mechanism="call",
            first_uncross_at_ms=_now_ms() + 2_000,
            call_interval_ms=60_000,
        )
        await client.place(technology, "b1", "b1-1", "bid", 10, 105)
        await client.place(technology, "s1", "s1-1", "offer", 10, 100)
        await _wait_for(
            settings, technology, lambda events: any(isinstance(e, Deal) for e in events)
        )
    events = await _events(settings, technology)
    (deal,) = [e for e in events if isinstance(e, Deal)]
    assert deal.quantity == 10
    assert deal.price in (100, 105)
    await _replay_agrees(settings)


async def test_a_good_till_date_order_expires_on_time(settings: Settings) -> None:
    """A GTD order leaves the book at its expiry, fired by the ticker with no command."""
    settings = replace(settings, tick_interval_ms=TICK_MS)
    technology = "LIC-GTD"
    async with running_engine(settings), TradingClient(settings) as client:
        await client.list_technology(technology, "uni-hcm", "Licence", 1, 1)
        expires = _now_ms() + 1_500
        await client.place(
            technology, "b1", "b1-1", "bid", 5, 100, time_in_force="gtd", expires_at_ms=expires
        )
        await _wait_for(
            settings,
            technology,
            lambda events: any(
                isinstance(e, OrderCancelled) and e.reason is CancelReason.EXPIRED for e in events
            ),
        )
    events = await _events(settings, technology)
    (expired,) = [e for e in events if isinstance(e, OrderCancelled)]
    assert expired.timestamp_ms == expires, "stamped with its expiry, the time it was due"
    await _replay_agrees(settings)


async def _wait_for(
    settings: Settings, technology: str, condition: Callable[[list[Event]], bool]
) -> None:
    async def holds() -> bool:
        return condition(await _events(settings, technology))

    check: Callable[[], Awaitable[bool]] = holds
    await eventually(check, 30, what=f"events of {technology}")


def _has_deal(events: list[Event]) -> bool:
    return any(isinstance(e, Deal) for e in events)


def test_the_technologies_used_here_spread_over_partitions() -> None:
    """The ids above are not all on one partition, so the ticker reaches several."""
    ids = ["PAT-ENGLISH", "PAT-SEALED-FIRST", "PAT-SEALED-SECOND", "PAT-DUTCH", "LIC-CALL"]
    assert len({partition_for(i, 4) for i in ids}) > 1
