"""The english auction through the market: worked examples, refusals, views and properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.codec import encode, encode_view
from engine.core.market import Market
from engine.core.mechanisms.english import MAX_SOFT_CLOSE_MS, EnglishKind
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
from schemas.common import ListingState, Mechanism, RejectReason
from schemas.events import (
    AuctionClosed,
    AuctionExtended,
    CommandRejected,
    Deal,
    Event,
    ListingStateChanged,
    MarketView,
    OrderAccepted,
    OrderCancelled,
    OrderDone,
)

TS = 1_700_000_000_000
#: Times in the tables are ms after TS; the auction ends at END unless extended.
END = 60_000
TICK = 10
LOT = 5
SELLER = "seller"
TICKER = Tick()


def english(**overrides: Any) -> ListTechnology:
    """An english listing: start 1000, increment 100, ends at END, lot 5, tick 10."""
    fields: dict[str, Any] = {
        "technology_id": "E1",
        "participant_id": SELLER,
        "name": "Patent E1",
        "tick_size": TICK,
        "lot_size": LOT,
        "mechanism": "english",
        "starting_price": 1000,
        "min_increment": 100,
        "ends_at_ms": TS + END,
    }
    fields.update(overrides)
    return ListTechnology(**fields)


def bid(participant: str, client_id: str, price: int | None, **overrides: Any) -> PlaceOrder:
    fields: dict[str, Any] = {"quantity": LOT, "price": price}
    fields.update(overrides)
    return PlaceOrder("E1", participant, client_id, "bid", **fields)


class Session:
    """A market with one english listing, fed commands at times relative to TS."""

    def __init__(self, **listing: Any) -> None:
        self.market = Market()
        self.offset = 0
        self.events: list[Event] = []
        (listed,) = self.apply(english(**listing), 0)
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
    if isinstance(event, AuctionExtended):
        return ("extended", event.ends_at_ms - TS)
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


# --- worked examples -------------------------------------------------------------------------

#: (name, listing overrides, [(time, command)], the events after the listing, summarised).
EXAMPLES: list[tuple[str, dict[str, Any], list[tuple[int, Command]], list[tuple[Any, ...]]]] = [
    (
        "plain_sale_to_the_high_bid",
        {},
        [(1_000, bid("alice", "a1", 1000)), (2_000, bid("bob", "b1", 1100)),
         (END - 1, TICKER), (END, TICKER)],
        [("accepted", "a1", 1000), ("accepted", "b1", 1100),
         ("deal", "bob", 1100, END), ("done", "b1"), ("cancelled", "a1", "technology_closed"),
         ("closed", "sold", "bob", 1100, ""), ("state", "closed")],
    ),
    (
        "soft_close_extended_twice",
        {"soft_close_window_ms": 10_000, "soft_close_extension_ms": 30_000},
        [(1_000, bid("alice", "a1", 1000)),  # long before the window: no extension
         (END - 5_000, bid("bob", "b1", 1100)),  # in the window: end -> END + 25 s
         (END + 20_000, bid("alice", "a2", 1200)),  # in the new window: END + 50 s
         (END + 49_999, TICKER), (END + 50_000, TICKER)],
        [("accepted", "a1", 1000),
         ("accepted", "b1", 1100), ("extended", END + 25_000),
         ("accepted", "a2", 1200), ("extended", END + 50_000),
         ("deal", "alice", 1200, END + 50_000), ("done", "a2"),
         ("cancelled", "a1", "technology_closed"), ("cancelled", "b1", "technology_closed"),
         ("closed", "sold", "alice", 1200, ""), ("state", "closed")],
    ),
    (
        "soft_close_window_starts_exactly_window_before_the_end",
        {"soft_close_window_ms": 10_000, "soft_close_extension_ms": 30_000},
        [(END - 10_001, bid("alice", "a1", 1000)), (END - 10_000, bid("bob", "b1", 1100))],
        [("accepted", "a1", 1000), ("accepted", "b1", 1100), ("extended", END + 20_000)],
    ),
    (
        "soft_close_never_moves_the_end_earlier",
        {"soft_close_window_ms": 10_000, "soft_close_extension_ms": 2_000},
        [(END - 5_000, bid("alice", "a1", 1000)),  # END - 3 s would be earlier: no move
         (END - 1_000, bid("bob", "b1", 1100)), (END, TICKER), (END + 1_000, TICKER)],
        [("accepted", "a1", 1000), ("accepted", "b1", 1100), ("extended", END + 1_000),
         ("deal", "bob", 1100, END + 1_000), ("done", "b1"),
         ("cancelled", "a1", "technology_closed"), ("closed", "sold", "bob", 1100, ""),
         ("state", "closed")],
    ),
    (
        "buy_now_wins_at_once_at_the_buy_now_price",
        {"buy_now_price": 5000},
        [(1_000, bid("alice", "a1", 1000)), (2_000, bid("bob", "b1", 6000)),
         (3_000, bid("carol", "c1", 7000))],
        [("accepted", "a1", 1000), ("accepted", "b1", 6000),
         ("deal", "bob", 5000, 2_000), ("done", "b1"), ("cancelled", "a1", "technology_closed"),
         ("closed", "sold", "bob", 5000, "buy now"), ("state", "closed"),
         ("rejected", "c1", "technology_closed")],
    ),
    (
        "buy_now_price_beats_the_increment_rule",
        {"buy_now_price": 5000},
        [(1_000, bid("alice", "a1", 4950)), (2_000, bid("bob", "b1", 5000))],
        [("accepted", "a1", 4950), ("accepted", "b1", 5000),
         ("deal", "bob", 5000, 2_000), ("done", "b1"), ("cancelled", "a1", "technology_closed"),
         ("closed", "sold", "bob", 5000, "buy now"), ("state", "closed")],
    ),
    (
        "reserve_not_met",
        {"reserve_price": 2000},
        [(1_000, bid("alice", "a1", 1000)), (2_000, bid("bob", "b1", 1900)), (END, TICKER)],
        [("accepted", "a1", 1000), ("accepted", "b1", 1900),
         ("cancelled", "a1", "technology_closed"), ("cancelled", "b1", "technology_closed"),
         ("closed", "unsold", None, None, "reserve not met"), ("state", "closed")],
    ),
    (
        "reserve_met_exactly",
        {"reserve_price": 2000},
        [(1_000, bid("alice", "a1", 1000)), (2_000, bid("bob", "b1", 2000)), (END, TICKER)],
        [("accepted", "a1", 1000), ("accepted", "b1", 2000),
         ("deal", "bob", 2000, END), ("done", "b1"), ("cancelled", "a1", "technology_closed"),
         ("closed", "sold", "bob", 2000, ""), ("state", "closed")],
    ),
    (
        "no_bids",
        {},
        [(END + 5, TICKER)],
        [("closed", "unsold", None, None, "no bids"), ("state", "closed")],
    ),
    (
        "shill_bid_refused",
        {},
        [(1_000, bid(SELLER, "s1", 1000)), (2_000, bid("alice", "a1", 1000))],
        [("rejected", "s1", "seller_may_not_bid"), ("accepted", "a1", 1000)],
    ),
    (
        "increments_at_the_boundary",
        {},
        [(1, bid("alice", "a1", 990)), (2, bid("alice", "a2", 1000)),
         (3, bid("bob", "b1", 1090)), (4, bid("bob", "b2", 1100)),
         (5, bid("alice", "a3", 1190)), (6, bid("bob", "b3", 1200))],
        [("rejected", "a1", "bid_too_low"), ("accepted", "a2", 1000),
         ("rejected", "b1", "bid_too_low"), ("accepted", "b2", 1100),
         ("rejected", "a3", "bid_too_low"), ("accepted", "b3", 1200)],
    ),
    (
        "high_bidder_may_raise_its_own_bid",
        {"reserve_price": 1500},
        [(1, bid("alice", "a1", 1000)), (2, bid("alice", "a2", 1500)), (END, TICKER)],
        [("accepted", "a1", 1000), ("accepted", "a2", 1500),
         ("deal", "alice", 1500, END), ("done", "a2"), ("cancelled", "a1", "technology_closed"),
         ("closed", "sold", "alice", 1500, ""), ("state", "closed")],
    ),
    (
        "seller_closes_early_and_the_auction_is_decided_as_at_its_end",
        {"reserve_price": 1000},
        [(1, bid("alice", "a1", 1000)), (2, bid("bob", "b1", 1100)),
         (3, ManageListing("E1", SELLER, "close"))],
        [("accepted", "a1", 1000), ("accepted", "b1", 1100),
         ("deal", "bob", 1100, 3), ("done", "b1"), ("cancelled", "a1", "technology_closed"),
         ("closed", "sold", "bob", 1100, ""), ("state", "closed")],
    ),
    (
        "operator_closes_early_below_the_reserve",
        {"reserve_price": 2000},
        [(1, bid("alice", "a1", 1000)), (3, ManageListing("E1", "exchange-ops", "close"))],
        [("accepted", "a1", 1000), ("cancelled", "a1", "technology_closed"),
         ("closed", "unsold", None, None, "reserve not met"), ("state", "closed")],
    ),
    (
        "halted_at_the_end_is_decided_then_closed_on_resume",
        {},
        [(1, bid("alice", "a1", 1000)), (2, ManageListing("E1", SELLER, "halt")),
         (END + 1, ManageListing("E1", SELLER, "resume"))],
        [("accepted", "a1", 1000), ("state", "halted"),
         ("deal", "alice", 1000, END), ("done", "a1"), ("closed", "sold", "alice", 1000, ""),
         ("state", "open"), ("state", "closed")],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "steps", "expected"),
    [case[1:] for case in EXAMPLES],
    ids=[case[0] for case in EXAMPLES],
)
def test_worked_example(
    overrides: dict[str, Any],
    steps: list[tuple[int, Command]],
    expected: list[tuple[Any, ...]],
) -> None:
    """Each worked example yields exactly its events, numbered 2, 3, ... without gaps."""
    session = Session(**overrides)
    for at, command in steps:
        session.apply(command, at)
    assert [summary(e) for e in session.events[1:]] == expected
    assert [e.seq for e in session.events] == list(range(1, len(session.events) + 1))


def test_deal_names_the_seller_and_the_winning_bid_and_no_seller_order() -> None:
    """The deal is bought by the high bid from the listing's participant, a bid aggressor."""
    session = Session()
    session.apply(bid("alice", "a1", 1000), 1)
    events = session.apply(TICKER, END)
    deal = events[0]
    assert isinstance(deal, Deal)
    assert deal == Deal(
        technology_id="E1",
        seq=3,
        timestamp_ms=TS + END,
        source_offset=2,
        deal_id="E1:d1",
        deal_number=1,
        price=1000,
        quantity=LOT,
        buyer_id="alice",
        seller_id=SELLER,
        bid_order_id="E1:o1",
        offer_order_id="",
        bid_client_order_id="a1",
        offer_client_order_id="",
        aggressor_side=deal.aggressor_side,
    )
    assert deal.aggressor_side.value == "bid"
    closed = events[2]
    assert isinstance(closed, AuctionClosed)
    assert (closed.order_id, closed.quantity, closed.bids) == ("E1:o1", LOT, 1)


# --- refusals --------------------------------------------------------------------------------

#: (name, command, reason, a piece of the detail), each against an auction with one bid of 1000.
BID_REFUSALS: list[tuple[str, Command, RejectReason, str]] = [
    ("offer", PlaceOrder("E1", "bob", "x", "offer", LOT, "limit", 1200),
     RejectReason.NOT_SUPPORTED_BY_MECHANISM, "bids only"),
    ("unknown_side", PlaceOrder("E1", "bob", "x", "buy", LOT, "limit", 1200),
     RejectReason.UNKNOWN_SIDE, 'side "buy"'),
    ("market_bid", PlaceOrder("E1", "bob", "x", "bid", LOT, "market", None),
     RejectReason.NOT_SUPPORTED_BY_MECHANISM, "limit bid"),
    ("unknown_order_type", PlaceOrder("E1", "bob", "x", "bid", LOT, "stop", 1200),
     RejectReason.UNKNOWN_ORDER_TYPE, '"stop"'),
    ("ioc", bid("bob", "x", 1200, time_in_force="ioc"),
     RejectReason.NOT_SUPPORTED_BY_MECHANISM, "ioc"),
    ("unknown_time_in_force", bid("bob", "x", 1200, time_in_force="day"),
     RejectReason.UNKNOWN_TIME_IN_FORCE, '"day"'),
    ("expiry", bid("bob", "x", 1200, expires_at_ms=TS + 10),
     RejectReason.INVALID_EXPIRY, "no expiry"),
    ("post_only", bid("bob", "x", 1200, post_only=True),
     RejectReason.NOT_SUPPORTED_BY_MECHANISM, "post-only"),
    ("seller", bid(SELLER, "x", 1200), RejectReason.SELLER_MAY_NOT_BID, "is the seller"),
    ("more_than_the_lot", bid("bob", "x", 1200, quantity=2 * LOT),
     RejectReason.QUANTITY_OFF_LOT, "whole lot"),
    ("off_lot", bid("bob", "x", 1200, quantity=3), RejectReason.QUANTITY_OFF_LOT, "lot 5"),
    ("zero_quantity", bid("bob", "x", 1200, quantity=0),
     RejectReason.QUANTITY_NOT_POSITIVE, "quantity 0"),
    ("no_price", bid("bob", "x", None), RejectReason.PRICE_REQUIRED, "needs a price"),
    ("off_tick", bid("bob", "x", 1205), RejectReason.PRICE_OFF_TICK, "tick 10"),
    ("zero_price", bid("bob", "x", 0), RejectReason.PRICE_NOT_POSITIVE, "price 0"),
    ("too_low", bid("bob", "x", 1090), RejectReason.BID_TOO_LOW,
     "below 1100, the high bid 1000 plus the increment 100"),
    ("duplicate_client_order_id", bid("alice", "a1", 1200),
     RejectReason.DUPLICATE_CLIENT_ORDER_ID, "a1 is already live"),
    ("cancel", CancelOrder("E1", "alice", "a1"), RejectReason.CANCEL_NOT_ALLOWED,
     "cannot be withdrawn"),
    ("cancel_unknown", CancelOrder("E1", "bob", "a1"), RejectReason.UNKNOWN_ORDER,
     "no live bid a1"),
    ("amend", AmendOrder("E1", "alice", "a1", price=1500),
     RejectReason.NOT_SUPPORTED_BY_MECHANISM, "cannot be amended"),
    ("withdraw", ManageListing("E1", SELLER, "withdraw"), RejectReason.LISTING_HAS_ORDERS,
     "close it instead"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "reason", "detail"),
    [case[1:] for case in BID_REFUSALS],
    ids=[case[0] for case in BID_REFUSALS],
)
def test_refusal(command: Command, reason: RejectReason, detail: str) -> None:
    """Each refused command gets its own code and detail, the next seq, and changes nothing."""
    session = Session()
    session.apply(bid("alice", "a1", 1000), 1)
    before = session.market.snapshot()
    (rejected,) = session.apply(command, 2)
    assert isinstance(rejected, CommandRejected)
    assert (rejected.reason, rejected.seq) == (reason, 3)
    assert detail in rejected.detail
    # Nothing moved but the sequence: the next valid bid is still 1100 and gets seq 4.
    restored = Market.from_snapshot(before)
    assert restored.apply(bid("carol", "c9", 1100), TS + 3, 9)[0].seq == 3
    (accepted,) = session.apply(bid("carol", "c9", 1100), 3)
    assert (type(accepted), accepted.seq) == (OrderAccepted, 4)


def test_a_bid_to_a_decided_auction_is_not_running() -> None:
    """The venue itself refuses a bid once decided (the market normally stops it first)."""
    session = Session()
    session.apply(bid("alice", "a1", 1000), 1)
    session.apply(TICKER, END)
    venue = session.market.venue("E1")
    assert venue is not None
    assert venue.finished()
    (rejected,) = venue.place(bid("bob", "b1", 5000), TS + END + 1, 9)
    assert isinstance(rejected, CommandRejected)
    assert rejected.reason is RejectReason.AUCTION_NOT_RUNNING
    assert venue.close(TS + END + 2, 10) == []
    assert venue.next_deadline() is None


#: (name, listing overrides, reason, a piece of the detail).
LISTING_REFUSALS: list[tuple[str, dict[str, Any], RejectReason, str]] = [
    ("no_starting_price", {"starting_price": None}, RejectReason.INVALID_LISTING,
     "english needs starting_price"),
    ("no_increment", {"min_increment": None}, RejectReason.INVALID_LISTING,
     "english needs min_increment"),
    ("no_end", {"ends_at_ms": None}, RejectReason.INVALID_LISTING, "english needs ends_at_ms"),
    ("starting_off_tick", {"starting_price": 1005}, RejectReason.INVALID_LISTING,
     "starting_price 1005 must be a positive multiple of tick 10"),
    ("zero_increment", {"min_increment": 0}, RejectReason.INVALID_LISTING,
     "min_increment 0 must be a positive multiple"),
    ("window_without_extension", {"soft_close_window_ms": 1000},
     RejectReason.INVALID_LISTING, "go together"),
    ("zero_window", {"soft_close_window_ms": 0, "soft_close_extension_ms": 10},
     RejectReason.INVALID_LISTING, "soft_close_window_ms 0 must be in 1.."),
    ("huge_extension",
     {"soft_close_window_ms": 10, "soft_close_extension_ms": MAX_SOFT_CLOSE_MS + 1},
     RejectReason.INVALID_LISTING, "soft_close_extension_ms"),
    ("buy_now_below_start", {"buy_now_price": 990}, RejectReason.INVALID_LISTING,
     "buy_now_price 990 is below starting_price 1000"),
    ("buy_now_below_reserve", {"buy_now_price": 1500, "reserve_price": 2000},
     RejectReason.INVALID_LISTING, "buy_now_price 1500 is below reserve_price 2000"),
    ("buy_now_off_tick", {"buy_now_price": 1501}, RejectReason.INVALID_LISTING,
     "buy_now_price 1501"),
    ("shown_reserve_without_reserve", {"reserve_shown": True}, RejectReason.INVALID_LISTING,
     "reserve_shown needs a reserve_price"),
    ("dutch_parameter", {"price_step": 10}, RejectReason.INVALID_LISTING,
     "price_step does not apply to english"),
    ("call_parameter", {"first_uncross_at_ms": TS}, RejectReason.INVALID_LISTING,
     "first_uncross_at_ms does not apply"),
    ("bad_tick", {"tick_size": 0}, RejectReason.INVALID_TICK_SIZE, "tick size 0"),
    ("reserve_off_tick", {"reserve_price": 1505}, RejectReason.INVALID_RESERVE_PRICE,
     "reserve price 1505"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "reason", "detail"),
    [case[1:] for case in LISTING_REFUSALS],
    ids=[case[0] for case in LISTING_REFUSALS],
)
def test_listing_refusal(overrides: dict[str, Any], reason: RejectReason, detail: str) -> None:
    """An english listing with a missing or invalid parameter is refused precisely."""
    market = Market()
    (rejected,) = market.apply(english(**overrides), TS, 0)
    assert isinstance(rejected, CommandRejected)
    assert (rejected.reason, rejected.seq) == (reason, 0)
    assert detail in rejected.detail
    assert market.technologies() == []


def test_garbage_snapshot_bytes_raise_snapshot_error() -> None:
    """Bytes that are not an english venue's snapshot raise SnapshotError."""
    with pytest.raises(SnapshotError, match="english"):
        EnglishKind.restore(b"\x93\xa6sealed\x01\x02")


# --- market views ----------------------------------------------------------------------------


def views_after(session: Session, at: int) -> list[MarketView]:
    session.apply(TICKER, at)
    views, session.market.views_out = session.market.views_out, []
    return views


def test_view_shows_high_bid_next_minimum_end_and_count() -> None:
    """The public view: high bid, least next bid, current end, count; no reserve when hidden."""
    session = Session(reserve_price=2000, soft_close_window_ms=100, soft_close_extension_ms=200)
    (view,) = views_after(session, 1)
    assert (view.mechanism, view.state, view.high_bid, view.next_minimum_bid) == (
        Mechanism.ENGLISH,
        ListingState.OPEN,
        None,
        1000,
    )
    assert (view.ends_at_ms, view.bid_count, view.reserve_met) == (TS + END, 0, None)
    session.apply(bid("alice", "a1", 1000), 2)
    session.apply(bid("bob", "b1", 1500), END - 50)
    (view,) = views_after(session, END - 40)
    assert (view.high_bid, view.next_minimum_bid, view.ends_at_ms, view.bid_count) == (
        1500,
        1600,
        TS + END + 150,
        2,
    )
    assert view.reserve_met is None  # hidden reserve: never hinted
    assert (view.last_price, view.bids, view.offers) == (None, [], [])


def test_view_with_shown_reserve_and_buy_now_then_the_sale() -> None:
    """reserve_met turns true at the reserve, the next minimum is capped by buy-now, and the
    sale shows its price and quantity."""
    session = Session(reserve_price=2000, reserve_shown=True, buy_now_price=3000)
    session.apply(bid("alice", "a1", 1900), 1)
    (view,) = views_after(session, 2)
    assert (view.high_bid, view.reserve_met, view.next_minimum_bid) == (1900, False, 2000)
    session.apply(bid("bob", "b1", 2950), 3)
    (view,) = views_after(session, 4)
    assert (view.reserve_met, view.next_minimum_bid) == (True, 3000)
    session.apply(bid("alice", "a2", 3000), 5)
    (view,) = views_after(session, 6)
    assert (view.state, view.last_price, view.last_quantity, view.next_minimum_bid) == (
        ListingState.CLOSED,
        3000,
        LOT,
        None,
    )


# --- properties ------------------------------------------------------------------------------

PARTICIPANTS = st.sampled_from(["alice", "bob", "carol", SELLER])
#: (time gap ms, participant, raise in ticks over the last price asked, or None for a clock
#: tick): the gaps straddle the end and the soft-close window, most raises are valid.
STEPS = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 1_000, 2_500, 4_000, 7_000]),
        PARTICIPANTS,
        st.integers(min_value=-3, max_value=40).map(lambda n: None if n == -3 else n),
    ),
    min_size=1,
    max_size=30,
)
RESERVES = st.one_of(st.none(), st.integers(min_value=50, max_value=400).map(lambda t: t * TICK))


def listing_of(reserve: int | None, buy_now: int | None, soft: bool) -> dict[str, Any]:
    """A 20-second auction, so that generated bids often fall in its soft-close window."""
    overrides: dict[str, Any] = {
        "reserve_price": reserve,
        "buy_now_price": buy_now,
        "ends_at_ms": TS + 20_000,
    }
    if soft:
        overrides |= {"soft_close_window_ms": 8_000, "soft_close_extension_ms": 10_000}
    return overrides


def commands_of(steps: list[tuple[int, str, int | None]]) -> list[tuple[int, Command]]:
    timed: list[tuple[int, Command]] = []
    at, asked = 0, 1000
    for n, (gap, who, raised) in enumerate(steps):
        at += gap
        if raised is None:
            timed.append((at, TICKER))
        else:
            asked += raised * TICK
            timed.append((at, bid(who, f"c{n}", asked)))
    return timed


@settings(max_examples=150)
@given(
    steps=STEPS,
    reserve=RESERVES,
    buy_now=st.one_of(st.none(), st.integers(min_value=400, max_value=500)),
    soft=st.booleans(),
)
def test_no_deal_below_the_reserve_and_the_high_bid_wins(
    steps: list[tuple[int, str, int | None]], reserve: int | None, buy_now: int | None, soft: bool
) -> None:
    """At most one deal, never below the reserve; sold exactly when the high bid meets it."""
    buy_now_price = None if buy_now is None else buy_now * TICK
    session = Session(**listing_of(reserve, buy_now_price, soft))
    for at, command in commands_of(steps):
        session.apply(command, at)
    session.apply(TICKER, 10**9)
    accepted = [e for e in session.events if isinstance(e, OrderAccepted)]
    deals = [e for e in session.events if isinstance(e, Deal)]
    (closed,) = [e for e in session.events if isinstance(e, AuctionClosed)]
    prices = [e.price for e in accepted if e.price is not None]
    assert prices == sorted(prices)
    high = max(prices, default=None)
    bought_now = buy_now_price is not None and high is not None and high >= buy_now_price
    meets = high is not None and (reserve is None or high >= reserve)
    assert len(deals) == (1 if meets or bought_now else 0)
    for deal in deals:
        assert reserve is None or deal.price >= reserve
        assert deal.price == (buy_now_price if bought_now else high)
        assert closed.price == deal.price
    assert all(e.participant_id != SELLER for e in accepted)


@settings(max_examples=100)
@given(
    steps=STEPS,
    reserve=RESERVES,
    soft=st.booleans(),
    split=st.integers(min_value=0, max_value=30),
)
def test_snapshot_mid_auction_gives_identical_events_afterwards(
    steps: list[tuple[int, str, int | None]], reserve: int | None, soft: bool, split: int
) -> None:
    """A market restored from a snapshot at any point emits byte-identical events and views."""
    session = Session(**listing_of(reserve, None, soft))
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


def test_snapshot_round_trips_a_finished_auction() -> None:
    """A decided auction restores decided, with its sale in the view and no deadline."""
    session = Session(buy_now_price=2000)
    session.apply(bid("alice", "a1", 2000), 1)
    venue = session.market.venue("E1")
    assert venue is not None
    again = EnglishKind.restore(venue.to_snapshot())
    assert again.to_snapshot() == venue.to_snapshot()
    assert (again.finished(), again.next_deadline(), again.has_orders()) == (True, None, True)
    assert again.view(ListingState.CLOSED, TS, 0) == venue.view(ListingState.CLOSED, TS, 0)
