"""Sealed-bid auctions (first and second price) through the market: worked examples,
refusals, confidential views and properties."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.codec import encode, encode_view
from engine.core.market import Market
from engine.core.mechanisms.sealed import SealedKind
from engine.errors import SnapshotError
from schemas.commands import (
    AmendOrder,
    CancelOrder,
    Command,
    ListTechnology,
    ManageListing,
    PlaceOrder,
    Tick,
)
from schemas.common import CancelReason, ListingState, Mechanism, RejectReason
from schemas.events import (
    AuctionClosed,
    CommandRejected,
    Deal,
    Event,
    ListingStateChanged,
    OrderAccepted,
    OrderCancelled,
    OrderDone,
)

TS = 1_700_000_000_000
#: Times in the tables are ms after TS; the auction ends at END.
END = 60_000
TICK = 10
LOT = 5
SELLER = "seller"
TICKER = Tick()
FIRST, SECOND = "sealed_first", "sealed_second"


def sealed(mechanism: str = SECOND, **overrides: Any) -> ListTechnology:
    """A sealed listing of lot 5, tick 10, ending at END."""
    fields: dict[str, Any] = {
        "technology_id": "S1",
        "participant_id": SELLER,
        "name": "Patent S1",
        "tick_size": TICK,
        "lot_size": LOT,
        "mechanism": mechanism,
        "ends_at_ms": TS + END,
    }
    fields.update(overrides)
    return ListTechnology(**fields)


def bid(participant: str, client_id: str, price: int | None, **overrides: Any) -> PlaceOrder:
    fields: dict[str, Any] = {"quantity": LOT, "price": price}
    fields.update(overrides)
    return PlaceOrder("S1", participant, client_id, "bid", **fields)


def cancel(participant: str, client_id: str) -> CancelOrder:
    return CancelOrder("S1", participant, client_id)


class Session:
    """A market with one sealed listing, fed commands at times relative to TS."""

    def __init__(self, mechanism: str = SECOND, **listing: Any) -> None:
        self.market = Market()
        self.offset = 0
        self.events: list[Event] = []
        (listed,) = self.apply(sealed(mechanism, **listing), 0)
        assert listed.seq == 1

    def apply(self, command: Command, at: int) -> list[Event]:
        events = self.market.apply(command, TS + at, self.offset)
        self.offset += 1
        self.events.extend(events)
        return events


def summary(event: Event) -> tuple[Any, ...]:
    """An event as the tables write it, times relative to TS."""
    if isinstance(event, OrderAccepted):
        return ("accepted", event.client_order_id, event.price)
    if isinstance(event, CommandRejected):
        return ("rejected", event.client_order_id, event.reason.value)
    if isinstance(event, Deal):
        return ("deal", event.buyer_id, event.price, event.timestamp_ms - TS)
    if isinstance(event, OrderDone):
        return ("done", event.client_order_id)
    if isinstance(event, OrderCancelled):
        return ("cancelled", event.client_order_id, event.reason.value)
    if isinstance(event, AuctionClosed):
        return ("closed", event.outcome.value, event.winner_id, event.price, event.detail)
    if isinstance(event, ListingStateChanged):
        return ("state", event.state.value)
    return (type(event).__name__,)


def closing(winner: str, client_id: str, price: int, *losers: str) -> list[tuple[Any, ...]]:
    """The events of a sale at END: deal, winner done, losers cancelled, closed, state."""
    return [
        ("deal", winner, price, END),
        ("done", client_id),
        *(("cancelled", loser, "technology_closed") for loser in losers),
        ("closed", "sold", winner, price, ""),
        ("state", "closed"),
    ]


# --- worked examples -------------------------------------------------------------------------

THREE_BIDS: list[tuple[int, Command]] = [
    (1, bid("alice", "a1", 2000)),
    (2, bid("bob", "b1", 1200)),
    (3, bid("carol", "c1", 1800)),
    (END, TICKER),
]
THREE_ACCEPTED = [("accepted", "a1", 2000), ("accepted", "b1", 1200), ("accepted", "c1", 1800)]

#: (name, mechanism, listing overrides, [(time, command)], the events after the listing).
EXAMPLES: list[
    tuple[str, str, dict[str, Any], list[tuple[int, Command]], list[tuple[Any, ...]]]
] = [
    ("vickrey_without_reserve_pays_the_second_bid", SECOND, {}, THREE_BIDS,
     [*THREE_ACCEPTED, *closing("alice", "a1", 1800, "b1", "c1")]),
    ("vickrey_reserve_below_the_second_bid_pays_the_second_bid", SECOND,
     {"reserve_price": 1500}, THREE_BIDS,
     [*THREE_ACCEPTED, *closing("alice", "a1", 1800, "b1", "c1")]),
    ("vickrey_reserve_above_the_second_bid_pays_the_reserve", SECOND,
     {"reserve_price": 1900}, THREE_BIDS,
     [*THREE_ACCEPTED, *closing("alice", "a1", 1900, "b1", "c1")]),
    ("first_price_pays_its_own_bid", FIRST, {"reserve_price": 1900}, THREE_BIDS,
     [*THREE_ACCEPTED, *closing("alice", "a1", 2000, "b1", "c1")]),
    ("one_bidder_with_reserve_pays_the_reserve", SECOND, {"reserve_price": 1500},
     [(1, bid("alice", "a1", 2000)), (END, TICKER)],
     [("accepted", "a1", 2000), *closing("alice", "a1", 1500)]),
    ("one_bidder_without_reserve_pays_its_own_bid", SECOND, {},
     [(1, bid("alice", "a1", 2000)), (END, TICKER)],
     [("accepted", "a1", 2000), *closing("alice", "a1", 2000)]),
    ("tie_goes_to_the_earliest_bid", SECOND, {},
     [(1, bid("bob", "b1", 2000)), (2, bid("alice", "a1", 2000)), (END, TICKER)],
     [("accepted", "b1", 2000), ("accepted", "a1", 2000),
      *closing("bob", "b1", 2000, "a1")]),
    ("a_replacement_arrives_anew_for_ties", FIRST, {},
     [(1, bid("bob", "b1", 2000)), (2, bid("alice", "a1", 2000)),
      (3, bid("bob", "b2", 2000)), (END, TICKER)],
     [("accepted", "b1", 2000), ("accepted", "a1", 2000),
      ("cancelled", "b1", "replaced"), ("accepted", "b2", 2000),
      *closing("alice", "a1", 2000, "b2")]),
    ("replacement_lowers_the_bid", SECOND, {},
     [(1, bid("alice", "a1", 3000)), (2, bid("bob", "b1", 1500)),
      (3, bid("alice", "a2", 1000)), (END, TICKER)],
     [("accepted", "a1", 3000), ("accepted", "b1", 1500),
      ("cancelled", "a1", "replaced"), ("accepted", "a2", 1000),
      *closing("bob", "b1", 1000, "a2")]),
    ("cancel_before_the_close", SECOND, {"reserve_price": 1000},
     [(1, bid("alice", "a1", 3000)), (2, bid("bob", "b1", 1500)),
      (3, cancel("alice", "a1")), (4, cancel("alice", "a1")), (END, TICKER)],
     [("accepted", "a1", 3000), ("accepted", "b1", 1500),
      ("cancelled", "a1", "cancelled_by_participant"), ("rejected", "a1", "unknown_order"),
      *closing("bob", "b1", 1000)]),
    ("reserve_not_met", SECOND, {"reserve_price": 2500}, THREE_BIDS,
     [*THREE_ACCEPTED, ("cancelled", "a1", "technology_closed"),
      ("cancelled", "b1", "technology_closed"), ("cancelled", "c1", "technology_closed"),
      ("closed", "unsold", None, None, "reserve not met"), ("state", "closed")]),
    ("no_bids", FIRST, {},
     [(1, bid("alice", "a1", 2000)), (2, cancel("alice", "a1")), (END, TICKER)],
     [("accepted", "a1", 2000), ("cancelled", "a1", "cancelled_by_participant"),
      ("closed", "unsold", None, None, "no bids"), ("state", "closed")]),
    ("shill_bid_refused", SECOND, {},
     [(1, bid(SELLER, "s1", 2000)), (END, TICKER)],
     [("rejected", "s1", "seller_may_not_bid"),
      ("closed", "unsold", None, None, "no bids"), ("state", "closed")]),
    ("a_bid_below_the_hidden_reserve_is_accepted", SECOND, {"reserve_price": 2000},
     [(1, bid("alice", "a1", 1000))],
     [("accepted", "a1", 1000)]),
    ("decided_while_halted_so_a_cancel_after_the_end_is_too_late", SECOND, {},
     [(1, bid("alice", "a1", 2000)), (2, ManageListing("S1", SELLER, "halt")),
      (END + 1, cancel("alice", "a1")), (END + 2, ManageListing("S1", SELLER, "resume"))],
     [("accepted", "a1", 2000), ("state", "halted"),
      ("deal", "alice", 2000, END), ("done", "a1"), ("closed", "sold", "alice", 2000, ""),
      ("rejected", "a1", "auction_not_running"), ("state", "open"), ("state", "closed")]),
    ("seller_closes_early", SECOND, {},
     [(1, bid("alice", "a1", 2000)), (2, bid("bob", "b1", 1500)),
      (3, ManageListing("S1", SELLER, "close")), (4, bid("carol", "c1", 9000))],
     [("accepted", "a1", 2000), ("accepted", "b1", 1500),
      ("deal", "alice", 1500, 3), ("done", "a1"), ("cancelled", "b1", "technology_closed"),
      ("closed", "sold", "alice", 1500, ""), ("state", "closed"),
      ("rejected", "c1", "technology_closed")]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mechanism", "overrides", "steps", "expected"),
    [case[1:] for case in EXAMPLES],
    ids=[case[0] for case in EXAMPLES],
)
def test_worked_example(
    mechanism: str,
    overrides: dict[str, Any],
    steps: list[tuple[int, Command]],
    expected: list[tuple[Any, ...]],
) -> None:
    """Each worked example yields exactly its events, numbered 2, 3, ... without gaps."""
    session = Session(mechanism, **overrides)
    for at, command in steps:
        session.apply(command, at)
    assert [summary(e) for e in session.events[1:]] == expected
    assert [e.seq for e in session.events] == list(range(1, len(session.events) + 1))


def test_the_deal_and_the_close_name_the_winning_bid() -> None:
    """The deal is the winner's bid against the seller, and AuctionClosed counts live bids."""
    session = Session(SECOND)
    for at, command in THREE_BIDS:
        session.apply(command, at)
    deal = next(e for e in session.events if isinstance(e, Deal))
    closed = next(e for e in session.events if isinstance(e, AuctionClosed))
    assert (deal.deal_id, deal.deal_number, deal.quantity, deal.seller_id) == (
        "S1:d1",
        1,
        LOT,
        SELLER,
    )
    assert (deal.bid_order_id, deal.bid_client_order_id, deal.offer_order_id) == (
        "S1:o1",
        "a1",
        "",
    )
    assert (closed.order_id, closed.quantity, closed.bids) == ("S1:o1", LOT, 3)


# --- refusals --------------------------------------------------------------------------------

#: (name, command, reason, a piece of the detail), against an auction where alice bid a1 and
#: then replaced it with a2.
REFUSALS: list[tuple[str, Command, RejectReason, str]] = [
    ("offer", PlaceOrder("S1", "bob", "x", "offer", LOT, "limit", 1200),
     RejectReason.NOT_SUPPORTED_BY_MECHANISM, "bids only"),
    ("market_bid", PlaceOrder("S1", "bob", "x", "bid", LOT, "market", None),
     RejectReason.NOT_SUPPORTED_BY_MECHANISM, "limit bid"),
    ("fok", bid("bob", "x", 1200, time_in_force="fok"),
     RejectReason.NOT_SUPPORTED_BY_MECHANISM, "fok"),
    ("seller", bid(SELLER, "x", 1200), RejectReason.SELLER_MAY_NOT_BID, "is the seller"),
    ("more_than_the_lot", bid("bob", "x", 1200, quantity=2 * LOT),
     RejectReason.QUANTITY_OFF_LOT, "whole lot"),
    ("no_price", bid("bob", "x", None), RejectReason.PRICE_REQUIRED, "needs a price"),
    ("off_tick", bid("bob", "x", 1205), RejectReason.PRICE_OFF_TICK, "tick 10"),
    ("live_client_order_id", bid("alice", "a2", 1200),
     RejectReason.DUPLICATE_CLIENT_ORDER_ID, "a2 is already live"),
    ("replaced_client_order_id", bid("alice", "a1", 1200),
     RejectReason.DUPLICATE_CLIENT_ORDER_ID, "a1 was used by a bid that has ended"),
    ("cancel_replaced_bid", cancel("alice", "a1"), RejectReason.UNKNOWN_ORDER,
     "no live bid a1"),
    ("cancel_someone_elses_bid", cancel("bob", "a2"), RejectReason.UNKNOWN_ORDER,
     "no live bid a2"),
    ("amend", AmendOrder("S1", "alice", "a2", price=1500),
     RejectReason.NOT_SUPPORTED_BY_MECHANISM, "cannot be amended"),
    ("withdraw", ManageListing("S1", SELLER, "withdraw"), RejectReason.LISTING_HAS_ORDERS,
     "close it instead"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "reason", "detail"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_refusal(command: Command, reason: RejectReason, detail: str) -> None:
    """Each refused command gets its own code and detail with the next seq, and the live bid
    stays (alice's a2 still wins)."""
    session = Session(FIRST)
    session.apply(bid("alice", "a1", 1000), 1)
    session.apply(bid("alice", "a2", 1100), 2)
    (rejected,) = session.apply(command, 3)
    assert isinstance(rejected, CommandRejected)
    assert (rejected.reason, rejected.seq) == (reason, 5)
    assert detail in rejected.detail
    closed = session.apply(TICKER, END)
    assert summary(closed[0]) == ("deal", "alice", 1100, END)


def test_the_venue_refuses_bids_and_cancels_once_decided() -> None:
    """After the close the venue itself answers auction_not_running (the market stops them
    first while the listing is closed)."""
    session = Session(SECOND)
    session.apply(bid("alice", "a1", 1000), 1)
    session.apply(TICKER, END)
    venue = session.market.venue("S1")
    assert venue is not None
    (placed,) = venue.place(bid("bob", "b1", 5000), TS + END, 9)
    (cancelled,) = venue.cancel(cancel("alice", "a1"), TS + END, 9)
    for refused in (placed, cancelled):
        assert isinstance(refused, CommandRejected)
        assert refused.reason is RejectReason.AUCTION_NOT_RUNNING
    assert (venue.finished(), venue.next_deadline(), venue.close(TS + END, 10)) == (True, None, [])


#: (name, listing overrides, reason, a piece of the detail).
LISTING_REFUSALS: list[tuple[str, dict[str, Any], RejectReason, str]] = [
    ("no_end", {"ends_at_ms": None}, RejectReason.INVALID_LISTING,
     "sealed_second needs ends_at_ms"),
    ("starting_price", {"starting_price": 1000}, RejectReason.INVALID_LISTING,
     "starting_price does not apply to sealed_second"),
    ("buy_now", {"buy_now_price": 1000}, RejectReason.INVALID_LISTING,
     "buy_now_price does not apply"),
    ("soft_close", {"soft_close_window_ms": 10, "soft_close_extension_ms": 10},
     RejectReason.INVALID_LISTING, "soft_close_window_ms does not apply"),
    ("shown_reserve", {"reserve_price": 1000, "reserve_shown": True},
     RejectReason.INVALID_LISTING, "reserve is never shown"),
    ("dutch_parameter", {"offered_quantity": 3}, RejectReason.INVALID_LISTING,
     "offered_quantity does not apply"),
    ("reserve_off_tick", {"reserve_price": 1005}, RejectReason.INVALID_RESERVE_PRICE,
     "reserve price 1005"),
    ("bad_lot", {"lot_size": 0}, RejectReason.INVALID_LOT_SIZE, "lot size 0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "reason", "detail"),
    [case[1:] for case in LISTING_REFUSALS],
    ids=[case[0] for case in LISTING_REFUSALS],
)
def test_listing_refusal(overrides: dict[str, Any], reason: RejectReason, detail: str) -> None:
    """A sealed listing with a missing, invalid or foreign parameter is refused precisely."""
    market = Market()
    (rejected,) = market.apply(sealed(SECOND, **overrides), TS, 0)
    assert isinstance(rejected, CommandRejected)
    assert (rejected.reason, rejected.seq) == (reason, 0)
    assert detail in rejected.detail
    assert market.technologies() == []


def test_garbage_snapshot_bytes_raise_snapshot_error() -> None:
    """Bytes that are not a sealed venue's snapshot raise SnapshotError."""
    with pytest.raises(SnapshotError, match="sealed"):
        SealedKind.restore(b"\x92\xa7english\x01")


# --- market views ----------------------------------------------------------------------------


def test_view_shows_only_the_count_and_the_end() -> None:
    """A sealed view carries bid_count (live bids) and ends_at_ms, and no other value."""
    session = Session(SECOND, reserve_price=1000)
    session.apply(bid("alice", "a1", 2000), 1)
    session.apply(bid("bob", "b1", 1500), 2)
    session.apply(bid("alice", "a2", 1700), 3)
    session.apply(TICKER, 4)
    session.apply(cancel("bob", "b1"), 5)
    session.apply(TICKER, 6)
    session.apply(TICKER, END)
    views = session.market.views_out
    assert [(v.state, v.bid_count, v.ends_at_ms) for v in views] == [
        (ListingState.OPEN, 2, TS + END),
        (ListingState.OPEN, 1, TS + END),
        (ListingState.CLOSED, 1, TS + END),
    ]
    for view in views:
        shown = {k: v for k, v in msgspec.structs.asdict(view).items() if v not in (None, [])}
        assert set(shown) == {
            "technology_id",
            "timestamp_ms",
            "source_offset",
            "mechanism",
            "state",
            "ends_at_ms",
            "bid_count",
        }
        assert view.mechanism is Mechanism.SEALED_SECOND


# --- properties ------------------------------------------------------------------------------

PARTICIPANTS = st.sampled_from(["alice", "bob", "carol", "dave", SELLER])
#: (time gap ms, participant, price in ticks; 0 cancels the participant's last bid, -1 ticks).
STEPS = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 1_000, 3_000, 6_000]),
        PARTICIPANTS,
        st.integers(min_value=-1, max_value=60).map(lambda n: n * 5 if n > 0 else n),
    ),
    min_size=1,
    max_size=30,
)
RESERVES = st.one_of(st.none(), st.integers(min_value=20, max_value=300).map(lambda t: t * TICK))
#: Every generated price is at least 50: no view value (counts, offsets, times) is one.
LOWEST_PRICE = 50


def commands_of(steps: list[tuple[int, str, int]]) -> list[tuple[int, Command]]:
    """Timed commands, each bid with a fresh client order id, cancels of the last one."""
    timed: list[tuple[int, Command]] = []
    last: dict[str, str] = {}
    at = 0
    for n, (gap, who, ticks) in enumerate(steps):
        at += gap
        if ticks < 0:
            timed.append((at, TICKER))
        elif ticks == 0:
            timed.append((at, cancel(who, last.get(who, "none"))))
        else:
            last[who] = f"c{n}"
            timed.append((at, bid(who, f"c{n}", max(ticks * TICK, LOWEST_PRICE))))
    return timed


def live_bids_at_close(events: list[Event]) -> list[OrderAccepted]:
    """The bids alive when the auction closed, in arrival order, as the events tell it."""
    live: dict[str, OrderAccepted] = {}
    for event in events:
        if isinstance(event, OrderAccepted):
            live[event.order_id] = event
        elif isinstance(event, OrderCancelled) and event.reason is not (
            CancelReason.TECHNOLOGY_CLOSED
        ):
            del live[event.order_id]
        elif isinstance(event, AuctionClosed):
            break
    return list(live.values())


@settings(max_examples=200)
@given(
    steps=STEPS,
    reserve=RESERVES,
    mechanism=st.sampled_from([FIRST, SECOND]),
    end=st.sampled_from([5_000, 20_000]),
)
def test_the_price_follows_the_rule_and_never_exceeds_the_winners_bid(
    steps: list[tuple[int, str, int]], reserve: int | None, mechanism: str, end: int
) -> None:
    """The highest live bid (earliest on ties) wins if it meets the reserve; the price is its
    bid (first) or max(second bid, reserve) (second): never above its bid, never below the
    reserve; one live bid per participant."""
    session = Session(mechanism, reserve_price=reserve, ends_at_ms=TS + end)
    for at, command in commands_of(steps):
        session.apply(command, at)
    session.apply(TICKER, 10**9)
    live = live_bids_at_close(session.events)
    participants = [b.participant_id for b in live]
    assert len(participants) == len(set(participants))
    assert SELLER not in participants
    deals = [e for e in session.events if isinstance(e, Deal)]
    (closed,) = [e for e in session.events if isinstance(e, AuctionClosed)]
    assert closed.bids == len(live)
    prices = [b.price or 0 for b in live]
    if not live or (reserve is not None and max(prices) < reserve):
        assert deals == []
        return
    winner = live[prices.index(max(prices))]
    assert winner.price is not None
    (deal,) = deals
    assert (deal.bid_order_id, closed.order_id) == (winner.order_id, winner.order_id)
    assert deal.price <= winner.price
    assert reserve is None or deal.price >= reserve
    others = [b.price or 0 for b in live if b is not winner]
    if mechanism == FIRST:
        assert deal.price == winner.price
    elif others:
        assert deal.price == max(*others, reserve or 0)
    else:
        assert deal.price == (winner.price if reserve is None else reserve)


@settings(max_examples=100)
@given(
    steps=STEPS,
    reserve=RESERVES,
    mechanism=st.sampled_from([FIRST, SECOND]),
    split=st.integers(min_value=0, max_value=30),
)
def test_snapshot_mid_auction_gives_identical_events_afterwards(
    steps: list[tuple[int, str, int]], reserve: int | None, mechanism: str, split: int
) -> None:
    """A market restored from a snapshot at any point emits byte-identical events and views."""
    session = Session(mechanism, reserve_price=reserve, ends_at_ms=TS + 20_000)
    timed = [*commands_of(steps), (10**9, TICKER)]
    split = min(split, len(timed))
    for at, command in timed[:split]:
        session.apply(command, at)
    original = session.market
    restored = Market.from_snapshot(original.snapshot())
    assert restored.snapshot() == original.snapshot()
    original.views_out.clear()

    def run(market: Market) -> list[bytes]:
        out = [
            encode(e)
            for offset, (at, command) in enumerate(timed[split:], start=100)
            for e in market.apply(command, TS + at, offset)
        ]
        return out + [encode_view(v) for v in market.views_out] + [market.snapshot()]

    assert run(restored) == run(original)


def _numbers(value: object) -> list[int]:
    """Every integer in a decoded JSON value."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


@settings(max_examples=150)
@given(steps=STEPS, reserve=RESERVES, mechanism=st.sampled_from([FIRST, SECOND]))
def test_no_view_shows_a_bid_price_or_the_reserve_before_the_close(
    steps: list[tuple[int, str, int]], reserve: int | None, mechanism: str
) -> None:
    """Encoded market views published while the auction runs hold no bid price and no
    reserve, with a view flushed after every command."""
    session = Session(mechanism, reserve_price=reserve, ends_at_ms=TS + 30_000)
    secret = set() if reserve is None else {reserve}
    for at, command in commands_of(steps):
        if at >= 30_000:
            break
        session.apply(command, at)
        session.apply(TICKER, at)
        secret.update(e.price for e in session.events if isinstance(e, OrderAccepted) and e.price)
    views = [encode_view(v) for v in session.market.views_out]
    assert views, "the listing's first view is always published"
    for raw in views:
        assert not secret & set(_numbers(msgspec.json.decode(raw))), raw
