"""Market snapshots: what recovery loads instead of replaying the whole log."""

from __future__ import annotations

import pytest

from engine.core.codec import encode
from engine.core.market import Market
from engine.core.mechanisms.continuous import ContinuousVenue
from engine.core.snapshot import (
    SNAPSHOT_VERSION,
    ContinuousState,
    ListingSnapshot,
    MarketState,
    RestingOrderState,
    encode_state,
    encode_venue,
)
from engine.errors import SnapshotError
from engine.producers.simulation import OrderFlow, generated_listings
from schemas.commands import ListTechnology, PlaceOrder, TechnologyCommand
from schemas.common import RejectReason
from schemas.events import CommandRejected


def _stream(count: int) -> list[TechnologyCommand]:
    flow = OrderFlow(3, generated_listings(6), invalid_ratio=0.03)
    return flow.listing_commands() + flow.next_commands(count)


def test_a_restored_market_answers_the_rest_of_the_log_byte_for_byte() -> None:
    """Snapshot mid-stream, restore, and both markets produce identical events from there."""
    commands = _stream(6000)
    original = Market()
    for offset, command in enumerate(commands[:4000]):
        original.apply(command, offset, offset)
    restored = Market.from_snapshot(original.snapshot())
    assert restored.state_digest() == original.state_digest()
    resting = original.venue("TECH-0000")
    assert isinstance(resting, ContinuousVenue)
    assert resting.to_state().bids or resting.to_state().offers, "books should hold orders"

    def run(market: Market) -> list[bytes]:
        return [
            encode(e)
            for offset, c in enumerate(commands[4000:], start=4000)
            for e in market.apply(c, offset, offset)
        ]

    assert run(restored) == run(original)


def test_a_snapshot_of_another_version_is_refused() -> None:
    """An unknown snapshot version fails loudly instead of building a wrong market."""
    with pytest.raises(SnapshotError, match="version"):
        Market.from_snapshot(encode_state(MarketState(99, [])))


def test_a_crossed_snapshot_is_refused() -> None:
    """A snapshot whose best bid meets its best offer cannot be a real book."""
    crossed = ContinuousState(
        "T1",
        1,
        1,
        None,
        2,
        2,
        0,
        bids=[RestingOrderState("T1:o1", "p", "b", 100, 1, 1)],
        offers=[RestingOrderState("T1:o2", "q", "o", 100, 1, 1)],
        ended_client_orders=[],
    )
    listing = ListingSnapshot("T1", "continuous", "p", "open", encode_venue(crossed), b"")
    with pytest.raises(SnapshotError, match="crossed"):
        Market.from_snapshot(encode_state(MarketState(SNAPSHOT_VERSION, [listing])))


@pytest.mark.parametrize("order_id", ["T2:o1", "T1:o", "T1:o01", "T1:x1", "T1:o1a"])
def test_a_snapshot_with_an_order_id_the_venue_never_gives_is_refused(order_id: str) -> None:
    """Restored orders keep only their number, so an id not of the form the venue gives
    (``{technology_id}:o{number}``) could not come back out the same: refused."""
    state = ContinuousState(
        "T1",
        1,
        1,
        None,
        1,
        1,
        0,
        bids=[RestingOrderState(order_id, "p", "b", 100, 1, 1)],
        offers=[],
        ended_client_orders=[],
    )
    listing = ListingSnapshot("T1", "continuous", "p", "open", encode_venue(state), b"")
    with pytest.raises(SnapshotError, match="foreign order id"):
        Market.from_snapshot(encode_state(MarketState(SNAPSHOT_VERSION, [listing])))


def test_ended_client_order_ids_survive_a_snapshot() -> None:
    """A market restored from a snapshot still refuses the resend of an order that ended."""
    market = Market()
    market.apply(ListTechnology("T1", "admin", "Coating", 1, 1), 1, 0)
    resent = PlaceOrder("T1", "b", "once", "bid", 1, "market", None)
    market.apply(resent, 2, 1)  # no liquidity: accepted, then cancelled unfilled
    restored = Market.from_snapshot(market.snapshot())
    assert restored.state_digest() == market.state_digest()
    (rejected,) = restored.apply(resent, 3, 2)
    assert isinstance(rejected, CommandRejected)
    assert rejected.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID


def test_restored_orders_keep_their_cancel_index() -> None:
    """A resting order restored from a snapshot can still be cancelled by its participant."""
    market = Market()
    commands = _stream(500)
    for offset, command in enumerate(commands):
        market.apply(command, offset, offset)
    venue = market.venue("TECH-0001")
    assert isinstance(venue, ContinuousVenue)
    state = venue.to_state()
    resting = (state.bids or state.offers)[0]
    restored = Market.from_snapshot(market.snapshot())
    restored_venue = restored.venue("TECH-0001")
    assert isinstance(restored_venue, ContinuousVenue)
    assert restored_venue.live_order(resting.participant_id, resting.client_order_id) is not None
