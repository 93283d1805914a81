"""The market of one partition: listings, refusals, event order, numbering and determinism."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from engine.core.codec import decode_command, encode
from engine.core.market import Market
from engine.core.mechanisms import continuous
from engine.core.mechanisms.continuous import ContinuousVenue
from engine.core.membership import BOOTSTRAP_OPERATOR
from schemas.commands import (
    AmendOrder,
    CancelOrder,
    Command,
    ListTechnology,
    ManageListing,
    PlaceOrder,
    RegisterParticipant,
    SetAccessMode,
    SuspendParticipant,
    TechnologyCommand,
    Tick,
)
from schemas.common import (
    MAX_NOTIONAL,
    MAX_PRICE,
    MAX_QUANTITY,
    CancelReason,
    ListingState,
    Mechanism,
    OrderType,
    RejectReason,
    Side,
)
from schemas.events import (
    CommandRejected,
    Deal,
    Event,
    OrderAccepted,
    OrderCancelled,
    OrderDone,
    TechnologyListed,
)

TS = 1_700_000_000_000
TICK = 10
LOT = 5
RESERVE = 100


def listing(
    technology_id: str = "T1",
    tick_size: int = TICK,
    lot_size: int = LOT,
    reserve_price: int | None = RESERVE,
    mechanism: str = "continuous",
) -> ListTechnology:
    name = f"Technology {technology_id}"
    return ListTechnology(
        technology_id, "admin", name, tick_size, lot_size, mechanism, reserve_price
    )


def bid(
    participant: str, client_id: str, quantity: int, price: int | None, technology: str = "T1"
) -> PlaceOrder:
    order_type = "market" if price is None else "limit"
    return PlaceOrder(technology, participant, client_id, "bid", quantity, order_type, price)


def offer(
    participant: str, client_id: str, quantity: int, price: int | None, technology: str = "T1"
) -> PlaceOrder:
    order_type = "market" if price is None else "limit"
    return PlaceOrder(technology, participant, client_id, "offer", quantity, order_type, price)


def cancel(participant: str, client_id: str, technology: str = "T1") -> CancelOrder:
    return CancelOrder(technology, participant, client_id)


def listed_market() -> Market:
    market = Market()
    (event,) = market.apply(listing(), TS, 0)
    assert isinstance(event, TechnologyListed)
    return market


def only_rejection(events: list[Event]) -> CommandRejected:
    assert len(events) == 1, events
    (event,) = events
    assert isinstance(event, CommandRejected), event
    return event


def resting(market: Market, technology_id: str = "T1") -> list[tuple[str, str, int, int]]:
    """(client order id, side, price, remaining) of every resting order, best first."""
    venue = market.venue(technology_id)
    assert isinstance(venue, ContinuousVenue)
    return [
        (o.client_order_id, o.side.value, o.price or 0, o.remaining)
        for side in (Side.BID, Side.OFFER)
        for o in venue.book.resting_orders(side)
    ]


# --- listing ---------------------------------------------------------------------------------


def test_listing_opens_the_technology_stream_at_seq_1() -> None:
    """A valid listing emits TechnologyListed with seq 1 and the listing's grid."""
    market = Market()
    events = market.apply(listing(reserve_price=None), TS, 0)
    assert events == [
        TechnologyListed(
            technology_id="T1",
            seq=1,
            timestamp_ms=TS,
            source_offset=0,
            participant_id="admin",
            name="Technology T1",
            mechanism=Mechanism.CONTINUOUS,
            tick_size=TICK,
            lot_size=LOT,
            reserve_price=None,
        )
    ]
    assert market.technologies() == ["T1"]


def test_duplicate_listing_is_refused_inside_the_existing_stream() -> None:
    """Listing a listed technology again is refused with the next seq; its grid is unchanged."""
    market = listed_market()
    rejected = only_rejection(market.apply(listing(tick_size=1, lot_size=1), TS + 1, 0))
    assert rejected.reason is RejectReason.TECHNOLOGY_ALREADY_LISTED
    assert rejected.seq == 2
    assert rejected.command == "list_technology"
    assert rejected.client_order_id == ""
    assert "T1 is already listed" in rejected.detail
    # The original tick still applies.
    assert only_rejection(market.apply(bid("p1", "c1", LOT, 105), TS, 0)).reason is (
        RejectReason.PRICE_OFF_TICK
    )


@pytest.mark.parametrize(
    ("command", "reason", "detail"),
    [
        (listing(mechanism="barter"), RejectReason.UNSUPPORTED_MECHANISM, '"barter"'),
        (listing(tick_size=0), RejectReason.INVALID_TICK_SIZE, "tick size 0"),
        (listing(tick_size=-10), RejectReason.INVALID_TICK_SIZE, "tick size -10"),
        (listing(tick_size=MAX_PRICE + 1), RejectReason.INVALID_TICK_SIZE, "tick size"),
        (listing(lot_size=0), RejectReason.INVALID_LOT_SIZE, "lot size 0"),
        (listing(lot_size=MAX_QUANTITY + 1), RejectReason.INVALID_LOT_SIZE, "lot size"),
        (listing(reserve_price=105), RejectReason.INVALID_RESERVE_PRICE, "reserve price 105"),
        (listing(reserve_price=0), RejectReason.INVALID_RESERVE_PRICE, "reserve price 0"),
        (listing(reserve_price=-10), RejectReason.INVALID_RESERVE_PRICE, "reserve price -10"),
    ],
    ids=[
        "unsupported_mechanism",
        "zero_tick",
        "negative_tick",
        "tick_too_large",
        "zero_lot",
        "lot_too_large",
        "reserve_off_tick",
        "zero_reserve",
        "negative_reserve",
    ],
)
def test_listing_refusal_lists_nothing(
    command: ListTechnology, reason: RejectReason, detail: str
) -> None:
    """A refused listing answers with seq 0 and its code; the technology stays unknown."""
    market = Market()
    rejected = only_rejection(market.apply(command, TS, 0))
    assert rejected.reason is reason
    assert rejected.seq == 0
    assert detail in rejected.detail
    assert market.technologies() == []
    assert only_rejection(market.apply(bid("p1", "c1", LOT, 100), TS, 0)).reason is (
        RejectReason.UNKNOWN_TECHNOLOGY
    )
    # A corrected listing afterwards still starts the stream at 1.
    (listed,) = market.apply(listing(), TS, 0)
    assert listed.seq == 1


# --- order refusals --------------------------------------------------------------------------

ORDER_REFUSALS: list[tuple[str, PlaceOrder, RejectReason, str]] = [
    ("unknown_side", PlaceOrder("T1", "p1", "c1", "buy", LOT, "limit", 100),
     RejectReason.UNKNOWN_SIDE, 'side "buy"'),
    ("unknown_order_type", PlaceOrder("T1", "p1", "c1", "bid", LOT, "stop", 100),
     RejectReason.UNKNOWN_ORDER_TYPE, 'order type "stop"'),
    ("limit_without_price", PlaceOrder("T1", "p1", "c1", "bid", LOT, "limit", None),
     RejectReason.PRICE_REQUIRED, "needs a price"),
    ("market_with_price", PlaceOrder("T1", "p1", "c1", "offer", LOT, "market", 100),
     RejectReason.PRICE_NOT_ALLOWED, "takes no price"),
    ("zero_price", bid("p1", "c1", LOT, 0), RejectReason.PRICE_NOT_POSITIVE, "price 0"),
    ("negative_price", offer("p1", "c1", LOT, -100), RejectReason.PRICE_NOT_POSITIVE,
     "price -100"),
    ("price_too_high", bid("p1", "c1", LOT, MAX_PRICE + TICK), RejectReason.PRICE_TOO_HIGH,
     f"above the limit {MAX_PRICE}"),
    ("price_off_tick", bid("p1", "c1", LOT, 105), RejectReason.PRICE_OFF_TICK,
     "not a multiple of tick 10"),
    ("price_below_reserve", offer("p1", "c1", LOT, 90), RejectReason.PRICE_BELOW_RESERVE,
     "below reserve 100"),
    ("zero_quantity", bid("p1", "c1", 0, 100), RejectReason.QUANTITY_NOT_POSITIVE,
     "quantity 0"),
    ("negative_quantity", bid("p1", "c1", -LOT, 100), RejectReason.QUANTITY_NOT_POSITIVE,
     "quantity -5"),
    ("quantity_too_large", bid("p1", "c1", MAX_QUANTITY + LOT, 100),
     RejectReason.QUANTITY_TOO_LARGE, f"above {MAX_QUANTITY}"),
    ("quantity_off_lot", bid("p1", "c1", 7, 100), RejectReason.QUANTITY_OFF_LOT,
     "not a multiple of lot 5"),
    ("notional_too_large", bid("p1", "c1", MAX_QUANTITY, MAX_PRICE),
     RejectReason.NOTIONAL_TOO_LARGE, f"above the limit {MAX_NOTIONAL}"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "reason", "detail"),
    [case[1:] for case in ORDER_REFUSALS],
    ids=[case[0] for case in ORDER_REFUSALS],
)
def test_order_refusal_has_its_reason_code(
    command: PlaceOrder, reason: RejectReason, detail: str
) -> None:
    """Each invalid order is refused with its own code, the next seq and nothing on the book."""
    market = listed_market()
    rejected = only_rejection(market.apply(command, TS + 1, 0))
    assert rejected == CommandRejected(
        technology_id="T1",
        seq=2,
        timestamp_ms=TS + 1,
        source_offset=0,
        command="place_order",
        participant_id="p1",
        client_order_id="c1",
        reason=reason,
        detail=rejected.detail,
    )
    assert detail in rejected.detail
    assert resting(market) == []
    # The refused order left no live client order id behind.
    assert only_rejection(market.apply(cancel("p1", "c1"), TS, 0)).reason is (
        RejectReason.UNKNOWN_ORDER
    )


@pytest.mark.parametrize(
    "command",
    [bid("p1", "c1", LOT, 100, "NOPE"), cancel("p1", "c1", "NOPE")],
    ids=["place", "cancel"],
)
def test_command_for_unknown_technology_is_refused_with_seq_0(command: Command) -> None:
    """Orders and cancels for an unlisted technology get UNKNOWN_TECHNOLOGY with seq 0."""
    market = listed_market()
    rejected = only_rejection(market.apply(command, TS, 0))
    assert rejected.reason is RejectReason.UNKNOWN_TECHNOLOGY
    assert rejected.seq == 0
    assert rejected.technology_id == "NOPE"
    assert "NOPE is not listed" in rejected.detail
    assert market.technologies() == ["T1"]
    # T1's stream was not advanced by the refusal.
    (accepted,) = market.apply(bid("p1", "c1", LOT, 100), TS, 0)
    assert accepted.seq == 2


def test_duplicate_live_client_order_id_is_refused() -> None:
    """A participant cannot reuse a client order id while that order is live."""
    market = listed_market()
    market.apply(bid("p1", "c1", LOT, 100), TS, 0)
    rejected = only_rejection(market.apply(offer("p1", "c1", LOT, 500), TS, 0))
    assert rejected.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    assert "c1 is already live" in rejected.detail
    assert resting(market) == [("c1", "bid", 100, LOT)]
    # The same id is free for another participant.
    (accepted,) = market.apply(offer("p2", "c1", LOT, 500), TS, 0)
    assert isinstance(accepted, OrderAccepted)


def test_duplicate_check_also_applies_to_market_orders() -> None:
    """A market order reusing a live client order id is refused before it can trade."""
    market = listed_market()
    market.apply(bid("p1", "c1", LOT, 100), TS, 0)
    market.apply(bid("p2", "x", LOT, 100), TS, 0)
    rejected = only_rejection(market.apply(offer("p1", "c1", LOT, None), TS, 0))
    assert rejected.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    assert resting(market) == [("c1", "bid", 100, LOT), ("x", "bid", 100, LOT)]


def test_cancel_of_unknown_order_is_refused() -> None:
    """Cancelling a client order id that was never placed gives UNKNOWN_ORDER."""
    market = listed_market()
    rejected = only_rejection(market.apply(cancel("p1", "ghost"), TS, 0))
    assert rejected.reason is RejectReason.UNKNOWN_ORDER
    assert rejected.command == "cancel_order"
    assert (rejected.participant_id, rejected.client_order_id, rejected.seq) == ("p1", "ghost", 2)
    assert "p1 has no live order ghost in T1" in rejected.detail


def test_cancel_of_another_participants_order_is_refused_and_the_order_stays() -> None:
    """Only the owner may cancel: another participant naming the same id gets UNKNOWN_ORDER."""
    market = listed_market()
    market.apply(offer("alice", "c1", LOT, 200), TS, 0)
    rejected = only_rejection(market.apply(cancel("mallory", "c1"), TS, 0))
    assert rejected.reason is RejectReason.UNKNOWN_ORDER
    assert resting(market) == [("c1", "offer", 200, LOT)]
    events = market.apply(bid("bob", "b1", LOT, 200), TS, 0)
    assert [type(e) for e in events] == [OrderAccepted, Deal, OrderDone, OrderDone]


def test_a_participant_going_from_one_live_order_to_several_and_back_keeps_each_findable() -> None:
    """The cancel index holds a lone order apart from several: every step between the two
    finds exactly the participant's live orders, whoever else uses the same client ids."""
    market = listed_market()
    market.apply(offer("bob", "c1", LOT, 300), TS, 0)
    market.apply(offer("alice", "c1", LOT, 200), TS, 0)
    market.apply(offer("alice", "c2", LOT, 210), TS, 0)
    refused = only_rejection(market.apply(offer("alice", "c2", LOT, 220), TS, 0))
    assert refused.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    assert [type(e) for e in market.apply(cancel("alice", "c1"), TS, 0)] == [OrderCancelled]
    assert only_rejection(market.apply(cancel("alice", "c1"), TS, 0)).reason is (
        RejectReason.UNKNOWN_ORDER
    )
    market.apply(offer("alice", "c3", LOT, 230), TS, 0)
    assert [type(e) for e in market.apply(cancel("alice", "c2"), TS, 0)] == [OrderCancelled]
    assert [type(e) for e in market.apply(cancel("alice", "c3"), TS, 0)] == [OrderCancelled]
    assert resting(market) == [("c1", "offer", 300, LOT)]
    market.apply(offer("alice", "c4", LOT, 240), TS, 0)
    events = market.apply(bid("carol", "b1", 2 * LOT, 300), TS, 0)
    assert [type(e) for e in events] == [OrderAccepted, Deal, OrderDone, Deal, OrderDone, OrderDone]
    assert resting(market) == []
    assert only_rejection(market.apply(cancel("bob", "c1"), TS, 0)).reason is (
        RejectReason.UNKNOWN_ORDER
    )


def test_every_reject_reason_is_reachable() -> None:
    """One market session produces every RejectReason code with the right command."""
    market = Market()
    seen: dict[RejectReason, str] = {}
    clock = iter(range(TS, TS + 10_000))

    def at() -> int:
        return next(clock)

    def refuse(command: Command) -> None:
        rejected = only_rejection(market.apply(command, at(), 0))
        seen[rejected.reason] = rejected.command

    def apply(command: Command) -> None:
        market.apply(command, at(), 0)

    for command in (
        listing(mechanism="barter"),
        listing(tick_size=0),
        listing(lot_size=0),
        listing(reserve_price=15),
        listing(mechanism="english"),  # no starting price, increment or end
        bid("p1", "c1", LOT, 100),  # unknown technology
    ):
        refuse(command)
    apply(listing())
    refuse(listing())
    for _, command, _, _ in ORDER_REFUSALS:
        refuse(command)
    apply(bid("p1", "c1", LOT, 100))
    refuse(bid("p1", "c1", LOT, 100))
    refuse(cancel("p2", "c1"))
    refuse(PlaceOrder("T1", "p1", "c2", "bid", LOT, "limit", 100, "day"))
    refuse(PlaceOrder("T1", "p1", "c3", "bid", LOT, "limit", 100, "gtd"))
    apply(offer("p2", "s1", LOT, 200))
    refuse(PlaceOrder("T1", "p3", "c4", "bid", LOT, "limit", 200, post_only=True))
    refuse(AmendOrder("T1", "p1", "c1", quantity=LOT, price=100))
    refuse(ManageListing("T1", "p1", "halt"))  # not the seller
    refuse(ManageListing("T1", "admin", "resume"))  # not halted
    refuse(ManageListing("T1", "admin", "withdraw"))  # it has orders
    apply(ManageListing("T1", "admin", "halt"))
    refuse(bid("p1", "c5", LOT, 100))
    apply(ManageListing("T1", "admin", "close"))
    refuse(bid("p1", "c6", LOT, 100))
    ends = TS + 5_000
    apply(
        ListTechnology(
            "E1", "uni", "Patent", TICK, 1, "english",
            starting_price=100, min_increment=10, ends_at_ms=ends,
        )
    )  # fmt: skip
    refuse(PlaceOrder("E1", "p1", "e0", "offer", 1, "limit", 100))  # offers: not here
    refuse(PlaceOrder("E1", "p1", "e1", "bid", 1, "limit", 50))  # below the starting price
    refuse(PlaceOrder("E1", "uni", "e2", "bid", 1, "limit", 100))  # the seller
    apply(PlaceOrder("E1", "p1", "e3", "bid", 1, "limit", 100))
    refuse(CancelOrder("E1", "p1", "e3"))  # english bids stand
    apply(ManageListing("E1", "uni", "halt"))
    market.apply(Tick(), ends + 1, 0)  # decided while halted
    rejected = only_rejection(market.apply(CancelOrder("E1", "p1", "e3"), ends + 2, 0))
    seen[rejected.reason] = rejected.command
    clock = iter(range(ends + 3, ends + 10_000))
    ops = BOOTSTRAP_OPERATOR
    refuse(RegisterParticipant("mallory", "m", ["buyer"]))  # not an operator
    refuse(RegisterParticipant(ops, "b", ["broker"]))  # a broker for nobody
    refuse(SuspendParticipant(ops, "nobody"))
    apply(listing("T2"))
    refuse(PlaceOrder("T2", "p1", "x1", "bid", LOT, "limit", 100, submitted_by="eve"))
    apply(SetAccessMode(ops, "members_only"))
    refuse(PlaceOrder("T2", "p9", "x2", "bid", LOT, "limit", 100))  # not registered
    apply(RegisterParticipant(ops, "s1", ["seller"]))
    refuse(PlaceOrder("T2", "s1", "x3", "bid", LOT, "limit", 100))  # not a buyer
    apply(RegisterParticipant(ops, "b1", ["buyer"]))
    apply(SuspendParticipant(ops, "b1"))
    refuse(PlaceOrder("T2", "b1", "x4", "bid", LOT, "limit", 100))
    assert set(seen) == set(RejectReason), sorted(set(RejectReason) - set(seen))
    assert seen[RejectReason.UNKNOWN_ORDER] == "cancel_order"
    assert seen[RejectReason.TECHNOLOGY_ALREADY_LISTED] == "list_technology"
    assert seen[RejectReason.PRICE_OFF_TICK] == "place_order"
    assert seen[RejectReason.NOT_PERMITTED] == "manage_listing"
    assert seen[RejectReason.AMEND_CHANGES_NOTHING] == "amend_order"
    assert seen[RejectReason.OPERATOR_ONLY] == "register_participant"
    assert seen[RejectReason.NOT_ACTING_FOR] == "place_order"


# --- matching and events ---------------------------------------------------------------------


def test_crossing_order_events_come_in_order() -> None:
    """A crossing order gives accepted, deal, resting done, incoming done, at the resting price."""
    market = listed_market()
    (rest_accepted,) = market.apply(offer("seller", "s1", 10, 200), TS + 1, 0)
    events = market.apply(bid("buyer", "b1", 10, 250), TS + 2, 0)
    assert events == [
        OrderAccepted(
            "T1", 3, TS + 2, 0, "T1:o2", "buyer", "b1", Side.BID, OrderType.LIMIT, 10, 250
        ),
        Deal(
            technology_id="T1",
            seq=4,
            timestamp_ms=TS + 2,
            source_offset=0,
            deal_id="T1:d1",
            deal_number=1,
            price=200,
            quantity=10,
            buyer_id="buyer",
            seller_id="seller",
            bid_order_id="T1:o2",
            offer_order_id="T1:o1",
            bid_client_order_id="b1",
            offer_client_order_id="s1",
            aggressor_side=Side.BID,
        ),
        OrderDone("T1", 5, TS + 2, 0, "T1:o1", "seller", "s1", 10),
        OrderDone("T1", 6, TS + 2, 0, "T1:o2", "buyer", "b1", 10),
    ]
    assert isinstance(rest_accepted, OrderAccepted)
    assert rest_accepted.order_id == "T1:o1"
    assert resting(market) == []


def test_sweep_interleaves_each_resting_done_after_its_deal() -> None:
    """Sweeping levels: each deal is followed by its resting order's done; a remainder rests."""
    market = listed_market()
    market.apply(bid("b1", "x", 5, 300), TS, 0)
    market.apply(bid("b2", "y", 10, 290), TS, 0)
    market.apply(bid("b3", "z", 10, 290), TS, 0)
    events = market.apply(offer("s", "o", 30, 290), TS, 0)
    summary = [
        (type(e).__name__, getattr(e, "client_order_id", getattr(e, "bid_client_order_id", "")))
        for e in events
    ]
    assert summary == [
        ("OrderAccepted", "o"),
        ("Deal", "x"),
        ("OrderDone", "x"),
        ("Deal", "y"),
        ("OrderDone", "y"),
        ("Deal", "z"),
        ("OrderDone", "z"),
    ]
    deals = [e for e in events if isinstance(e, Deal)]
    assert [(d.price, d.quantity, d.aggressor_side) for d in deals] == [
        (300, 5, Side.OFFER),
        (290, 10, Side.OFFER),
        (290, 10, Side.OFFER),
    ]
    assert resting(market) == [("o", "offer", 290, 5)]


def test_market_order_remainder_is_cancelled_not_rested() -> None:
    """A market order fills what it can; the rest is OrderCancelled(market_order_unfilled)."""
    market = listed_market()
    market.apply(offer("s", "a", 5, 200), TS, 0)
    market.apply(offer("s", "b", 5, 210), TS, 0)
    events = market.apply(bid("buyer", "m", 15, None), TS, 0)
    assert [type(e) for e in events] == [
        OrderAccepted,
        Deal,
        OrderDone,
        Deal,
        OrderDone,
        OrderCancelled,
    ]
    accepted, cancelled = events[0], events[-1]
    assert isinstance(accepted, OrderAccepted)
    assert (accepted.order_type, accepted.price) == (OrderType.MARKET, None)
    assert cancelled == OrderCancelled(
        "T1", events[-2].seq + 1, TS, 0, accepted.order_id, "buyer", "m", 10, 5,
        CancelReason.MARKET_ORDER_UNFILLED,
    )  # fmt: skip
    assert resting(market) == []


def test_market_order_into_an_empty_book_is_cancelled_whole() -> None:
    """With no liquidity a market order is accepted then cancelled with nothing filled."""
    market = listed_market()
    events = market.apply(offer("s", "m", 10, None), TS, 0)
    assert [type(e) for e in events] == [OrderAccepted, OrderCancelled]
    cancelled = events[1]
    assert isinstance(cancelled, OrderCancelled)
    assert (cancelled.filled_quantity, cancelled.cancelled_quantity) == (0, 10)
    assert cancelled.reason is CancelReason.MARKET_ORDER_UNFILLED
    # Nothing is live: the id is free again and a cancel of it is refused.
    assert (
        only_rejection(market.apply(cancel("s", "m"), TS, 0)).reason is RejectReason.UNKNOWN_ORDER
    )


def test_cancel_after_partial_fill_reports_filled_and_cancelled() -> None:
    """Cancelling a partly filled order reports what filled and what was withdrawn."""
    market = listed_market()
    market.apply(bid("buyer", "b1", 20, 150), TS, 0)
    market.apply(offer("seller", "s1", 15, 150), TS, 0)
    (cancelled,) = market.apply(cancel("buyer", "b1"), TS + 9, 0)
    assert cancelled == OrderCancelled(
        "T1", 6, TS + 9, 0, "T1:o1", "buyer", "b1", 15, 5, CancelReason.CANCELLED_BY_PARTICIPANT
    )
    assert resting(market) == []
    # The order is gone: a later offer at its price does not trade.
    events = market.apply(offer("seller", "s2", 5, 150), TS, 0)
    assert [type(e) for e in events] == [OrderAccepted]


def test_a_resent_order_never_trades_twice() -> None:
    """The same bytes sent again after the order filled or was cancelled are rejected."""
    market = listed_market()
    market.apply(offer("s", "a", 5, 200), TS, 0)
    resent = bid("b", "same", 5, 200)
    assert Deal in [type(e) for e in market.apply(resent, TS, 1)]  # fills: done
    again = only_rejection(market.apply(resent, TS, 2))
    assert again.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    assert "was used by an order that has ended" in again.detail
    market.apply(bid("b", "rests", 5, 150), TS, 3)
    market.apply(cancel("b", "rests"), TS, 4)
    assert only_rejection(market.apply(bid("b", "rests", 5, 150), TS, 5)).reason is (
        RejectReason.DUPLICATE_CLIENT_ORDER_ID
    )
    # The id is taken per participant: another participant may use the same one.
    assert [type(e) for e in market.apply(bid("c", "same", 5, 150), TS, 6)] == [OrderAccepted]


def test_ended_client_order_ids_are_remembered_within_a_bounded_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the most recent ENDED_ORDERS_REMEMBERED ids stay taken; older ones are reusable."""
    monkeypatch.setattr(continuous, "ENDED_ORDERS_REMEMBERED", 3)
    market = listed_market()
    for n in range(5):
        market.apply(bid("b", f"c{n}", 5, 150), TS, n)
        market.apply(cancel("b", f"c{n}"), TS, n)
    # c0 and c1 fell out of the window; c2..c4 are still taken.
    assert [type(e) for e in market.apply(bid("b", "c0", 5, 150), TS, 9)] == [OrderAccepted]
    assert [type(e) for e in market.apply(bid("b", "c1", 5, 150), TS, 9)] == [OrderAccepted]
    for n in (2, 3, 4):
        rejected = only_rejection(market.apply(bid("b", f"c{n}", 5, 150), TS, 9))
        assert rejected.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    venue = market.venue("T1")
    assert isinstance(venue, continuous.ContinuousVenue)
    assert len(venue.to_state().ended_client_orders) == 3


def test_unknown_technology_rejections_are_told_apart_by_source_offset() -> None:
    """seq 0 events repeat; their source offsets make each one's dedupe key unique."""
    market = Market()
    first = only_rejection(market.apply(bid("b", "x", 5, 150, "NOPE"), TS, 10))
    second = only_rejection(market.apply(bid("b", "x", 5, 150, "NOPE"), TS, 11))
    assert (first.seq, second.seq) == (0, 0)
    assert (first.source_offset, second.source_offset) == (10, 11)


def test_a_limit_order_worth_more_than_the_notional_limit_is_rejected() -> None:
    """price * quantity above MAX_NOTIONAL is refused, so every deal value fits in int64."""
    market = Market()
    market.apply(listing("A", tick_size=1, lot_size=1, reserve_price=None), TS, 0)
    too_big = bid("b", "x", MAX_QUANTITY, MAX_NOTIONAL // MAX_QUANTITY + 1, "A")
    rejected = only_rejection(market.apply(too_big, TS, 1))
    assert rejected.reason is RejectReason.NOTIONAL_TOO_LARGE
    at_limit = bid("b", "y", MAX_QUANTITY, MAX_NOTIONAL // MAX_QUANTITY, "A")
    assert [type(e) for e in market.apply(at_limit, TS, 2)] == [OrderAccepted]


def test_seq_is_contiguous_per_technology_across_event_types() -> None:
    """Each technology's events, of every type, are numbered 1, 2, 3... without gaps."""
    market = Market()
    commands: list[TechnologyCommand] = [
        listing("A"),
        listing("B", tick_size=1, lot_size=1, reserve_price=None),
        bid("p1", "c1", 10, 100, "A"),
        offer("p2", "c2", 3, 7, "B"),
        listing("A"),  # duplicate: rejected inside A's stream
        offer("p3", "c3", 5, 100, "A"),
        bid("p4", "c4", 5, None, "B"),  # market: deal + done + cancel remainder
        bid("p1", "bad", 7, 100, "A"),  # off lot
        cancel("p1", "c1", "A"),
        cancel("p1", "c1", "A"),  # unknown now
        bid("p1", "x", 5, 100, "C"),  # unknown technology: seq 0
        offer("p9", "o", 10, None, "A"),  # market into an empty bid side
    ]
    by_technology: dict[str, list[int]] = defaultdict(list)
    types: set[type] = set()
    for command in commands:
        for event in market.apply(command, TS, 0):
            by_technology[event.technology_id].append(event.seq)
            types.add(type(event))
    assert by_technology["A"] == list(range(1, len(by_technology["A"]) + 1))
    assert by_technology["B"] == list(range(1, len(by_technology["B"]) + 1))
    assert by_technology["C"] == [0]
    assert len(by_technology["A"]) == 11
    assert types == {
        TechnologyListed,
        OrderAccepted,
        CommandRejected,
        Deal,
        OrderCancelled,
        OrderDone,
    }


def test_deal_numbers_are_contiguous_and_deal_ids_derived() -> None:
    """deal_number counts each technology's deals from 1; deal_id is TECH:dN."""
    market = Market()
    market.apply(listing("A", reserve_price=None), TS, 0)
    market.apply(listing("B", reserve_price=None), TS, 0)
    deals: dict[str, list[Deal]] = defaultdict(list)
    for i in range(6):
        for technology in ("A", "B", "A"):
            n = len(deals[technology])
            commands = [
                offer("s", f"s{technology}{i}-{n}", 10, 100, technology),
                bid("b", f"b{technology}{i}-{n}", 5, 100, technology),
                bid("b", f"c{technology}{i}-{n}", 5, None, technology),
            ]
            for command in commands:
                deals[technology].extend(
                    e for e in market.apply(command, TS, 0) if isinstance(e, Deal)
                )
    for technology, expected_count in (("A", 24), ("B", 12)):
        numbers = [d.deal_number for d in deals[technology]]
        assert numbers == list(range(1, expected_count + 1))
        assert [d.deal_id for d in deals[technology]] == [f"{technology}:d{n}" for n in numbers]


# --- determinism -----------------------------------------------------------------------------

#: Order flow goes mostly to the listed technologies, a little to one never listed.
_TECHNOLOGIES = ["T1", "T1", "T2", "T2", "T3", "GHOST"]
_PARTICIPANTS = [f"p{i}" for i in range(6)]


def random_commands(seed: int, count: int) -> list[TechnologyCommand]:
    """A reproducible stream of mostly valid and some invalid commands over few ids."""
    rng = random.Random(seed)
    commands: list[TechnologyCommand] = [
        listing("T1"),
        listing("T2", reserve_price=None),
        listing("T3", tick_size=1, lot_size=1, reserve_price=None),
    ]
    while len(commands) < count:
        technology = rng.choice(_TECHNOLOGIES)
        participant = rng.choice(_PARTICIPANTS)
        client_id = f"c{rng.randrange(25)}"
        roll = rng.random()
        if roll < 0.01:  # listings: duplicates, bad grids, unsupported mechanisms
            commands.append(
                ListTechnology(
                    rng.choice(["T1", "T4", "T5"]),
                    participant,
                    f"name {rng.randrange(1000)}",
                    rng.choice([TICK, 0, 3]),
                    rng.choice([LOT, 0]),
                    rng.choice(["continuous", "dutch"]),
                    rng.choice([None, RESERVE, 15]),
                )
            )
        elif roll < 0.2:
            commands.append(CancelOrder(technology, participant, client_id))
        else:
            side = rng.choice(["bid", "offer"] * 20 + ["sell"])
            order_type = rng.choice(["limit"] * 16 + ["market"] * 3 + ["stop"])
            price: int | None = TICK * rng.randint(8, 30)
            if rng.random() < 0.04:
                price = rng.choice([None, 0, -TICK, 155, MAX_PRICE + TICK])
            elif order_type == "market":
                price = None if rng.random() < 0.9 else price
            quantity = LOT * rng.randint(1, 12)
            if rng.random() < 0.03:
                quantity = rng.choice([0, -LOT, 7, MAX_QUANTITY + LOT])
            commands.append(
                PlaceOrder(technology, participant, client_id, side, quantity, order_type, price)
            )
    return commands


def run_stream(seed: int, count: int) -> tuple[bytes, str, dict[str, int]]:
    """Every encoded event of the stream through a fresh Market, its digest, and tallies."""
    market = Market()
    chunks: list[bytes] = []
    tallies: dict[str, int] = defaultdict(int)
    for i, command in enumerate(random_commands(seed, count)):
        # Through the wire, as the engine sees it: every generated command must decode.
        wire = decode_command(encode(command))
        for event in market.apply(wire, TS + i, 0):
            chunks.append(encode(event))
            tallies[type(event).__name__] += 1
            if isinstance(event, CommandRejected):
                tallies[event.reason.value] += 1
    return b"\n".join(chunks), market.state_digest(), dict(tallies)


SEED = 20240611
STREAM_LENGTH = 4000


def test_same_command_stream_gives_identical_events_and_state() -> None:
    """Two fresh markets fed the same seeded stream emit identical bytes and digests."""
    first_events, first_digest, tallies = run_stream(SEED, STREAM_LENGTH)
    second_events, second_digest, _ = run_stream(SEED, STREAM_LENGTH)
    assert first_events == second_events
    assert first_digest == second_digest
    # The stream is not trivial: it trades, cancels, rests orders and refuses bad commands.
    assert tallies["Deal"] > 100
    assert tallies["OrderCancelled"] > 50
    assert tallies["CommandRejected"] > 100
    assert tallies["TechnologyListed"] >= 3
    refused = {reason.value for reason in RejectReason} & set(tallies)
    assert len(refused) >= 15, sorted(refused)
    assert first_digest != Market().state_digest()
    # A different stream does end elsewhere: the comparison can fail.
    other_events, other_digest, _ = run_stream(SEED + 1, STREAM_LENGTH)
    assert other_events != first_events
    assert other_digest != first_digest


_SUBPROCESS_SCRIPT = """
import hashlib, importlib.util, sys
spec = importlib.util.spec_from_file_location("market_stream", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
events, digest, _ = module.run_stream(int(sys.argv[2]), int(sys.argv[3]))
print(hashlib.sha256(events).hexdigest(), digest)
"""


def test_events_do_not_depend_on_the_hash_seed() -> None:
    """Processes with PYTHONHASHSEED 1 and 2 produce the same events as this one."""
    events, digest, _ = run_stream(SEED, STREAM_LENGTH)
    expected = f"{hashlib.sha256(events).hexdigest()} {digest}"
    outputs = []
    for hash_seed in ("1", "2"):
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                _SUBPROCESS_SCRIPT,
                str(Path(__file__).resolve()),
                str(SEED),
                str(STREAM_LENGTH),
            ],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout.strip())
    assert outputs == [expected, expected]


def test_an_order_never_trades_with_its_own_participant() -> None:
    """Self-trade prevention: the resting order is cancelled with a reason, no deal is made."""
    market = Market()
    market.apply(ListTechnology("T9", "ops", "Patent", 1, 1), 0, 0)
    market.apply(PlaceOrder("T9", "p", "mine", "offer", 4, "limit", 100), 1, 0)
    market.apply(PlaceOrder("T9", "q", "theirs", "offer", 5, "limit", 100), 2, 0)
    events = market.apply(PlaceOrder("T9", "p", "buy", "bid", 3, "limit", 100), 3, 0)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["OrderAccepted", "OrderCancelled", "Deal", "OrderDone"]
    cancelled = events[1]
    assert isinstance(cancelled, OrderCancelled)
    assert (cancelled.client_order_id, cancelled.reason, cancelled.cancelled_quantity) == (
        "mine",
        CancelReason.SELF_TRADE_PREVENTED,
        4,
    )
    deal = events[2]
    assert isinstance(deal, Deal)
    assert (deal.buyer_id, deal.seller_id, deal.quantity) == ("p", "q", 3)
    # The cancelled order is gone from the cancel index too.
    rejected = market.apply(CancelOrder("T9", "p", "mine"), 4, 0)
    assert isinstance(rejected[0], CommandRejected)


def test_a_halted_call_market_does_not_uncross_until_resumed() -> None:
    """A halt stops trading: the call's uncross waits and runs at the resume."""
    market = Market()
    listed = ListTechnology(
        "K1", "ueh", "Licences", 1, 1, "call", first_uncross_at_ms=TS + 100, call_interval_ms=100
    )
    market.apply(listed, TS, 0)
    market.apply(PlaceOrder("K1", "b", "b1", "bid", 5, "limit", 10), TS + 1, 1)
    market.apply(PlaceOrder("K1", "s", "s1", "offer", 5, "limit", 10), TS + 2, 2)
    market.apply(ManageListing("K1", "ueh", "halt"), TS + 3, 3)
    assert not any(isinstance(e, Deal) for e in market.apply(Tick(), TS + 500, 4))
    resumed = market.apply(ManageListing("K1", "ueh", "resume"), TS + 600, 5)
    assert [type(e).__name__ for e in resumed][:2] == ["ListingStateChanged", "Deal"]


def test_an_english_auction_ends_on_time_through_a_halt() -> None:
    """Time runs through a halt for an auction: it is decided at its end, closed on resume."""
    market = Market()
    ends = TS + 1_000
    market.apply(
        ListTechnology(
            "E9", "uni", "Patent", 1, 1, "english",
            starting_price=10, min_increment=1, ends_at_ms=ends,
        ),
        TS,
        0,
    )  # fmt: skip
    market.apply(PlaceOrder("E9", "b", "b1", "bid", 1, "limit", 20), TS + 1, 1)
    market.apply(ManageListing("E9", "uni", "halt"), TS + 2, 2)
    decided = market.apply(Tick(), ends + 1, 3)
    assert any(isinstance(e, Deal) for e in decided)
    assert market.listing_state("E9") is ListingState.HALTED
    market.apply(ManageListing("E9", "uni", "resume"), ends + 2, 4)
    assert market.listing_state("E9") is ListingState.CLOSED


def test_own_events_only_says_when_every_event_is_the_commands_technologys() -> None:
    """The flag the batch trusts instead of reading each event's technology: true after a plain
    order, false when a deadline of another technology fired before the command."""
    market = Market()
    market.apply(listing("T1"), TS, 0)
    market.apply(listing("T2"), TS, 1)
    market.apply(PlaceOrder("T2", "p2", "g1", "bid", LOT, "limit", 100, "gtd", TS + 100), TS, 2)

    events = market.apply(bid("p1", "c1", LOT, 100, "T1"), TS + 50, 3)
    assert market.own_events_only
    assert {e.technology_id for e in events} == {"T1"}

    events = market.apply(bid("p1", "c2", LOT, 100, "T1"), TS + 200, 4)  # T2's gtd expires first
    assert not market.own_events_only
    assert [e.technology_id for e in events] == ["T2", "T1"]
    assert isinstance(events[0], OrderCancelled)

    market.apply(bid("p1", "c3", LOT, 100, "T1"), TS + 300, 5)
    assert market.own_events_only
