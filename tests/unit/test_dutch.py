"""The dutch mechanism: a descending clock whose first bids take the units, through the market.

The clock's start is the listing's log time, given by ``DutchVenue.start``; until the market
calls it itself, these tests call it right after the listing (a second call changes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.codec import encode
from engine.core.market import Market
from engine.core.mechanisms.dutch import MAX_STEP_INTERVAL_MS, DutchKind, DutchVenue
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
from schemas.common import (
    MAX_NOTIONAL,
    AuctionOutcome,
    CancelReason,
    ListingState,
    OrderType,
    RejectReason,
    Side,
)
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

T0 = 1_700_000_000_000
TECH = "D1"
SELLER = "inst-7"
#: The clock of most tests: 100 falling by 10 every 100 ms to the floor 50.
START, STEP, INTERVAL, FLOOR = 100, 10, 100, 50


def dutch_listing(
    tick_size: int = 10,
    lot_size: int = 1,
    reserve_price: int | None = FLOOR,
    **parameters: int | bool | None,
) -> ListTechnology:
    fields: dict[str, int | bool | None] = {
        "starting_price": START,
        "price_step": STEP,
        "step_interval_ms": INTERVAL,
    }
    fields.update(parameters)
    return ListTechnology(
        TECH,
        SELLER,
        "Know-how package",
        tick_size,
        lot_size,
        "dutch",
        reserve_price,
        **fields,  # type: ignore[arg-type]
    )


@dataclass
class Driver:
    """A market with one dutch listing, fed records at increasing offsets."""

    market: Market = field(default_factory=Market)
    offset: int = 0
    events: list[Event] = field(default_factory=list)

    def apply(self, command: Command, timestamp_ms: int) -> list[Event]:
        events = self.market.apply(command, timestamp_ms, self.offset)
        self.offset += 1
        self.events.extend(events)
        return events

    def bid(
        self,
        participant: str,
        client_id: str,
        quantity: int,
        timestamp_ms: int,
        price: int | None = None,
        **options: str | int | bool | None,
    ) -> list[Event]:
        command = PlaceOrder(
            TECH,
            participant,
            client_id,
            "bid",
            quantity,
            "limit",
            price,
            **options,  # type: ignore[arg-type]
        )
        return self.apply(command, timestamp_ms)

    @property
    def venue(self) -> DutchVenue:
        venue = self.market.venue(TECH)
        assert isinstance(venue, DutchVenue)
        return venue


def listed(listing: ListTechnology | None = None) -> Driver:
    """A market that listed the auction at T0 and started its clock then.

    Until the market calls ``start`` itself, the clock is started here and the market is
    reloaded from its snapshot, which schedules the venue's first step in the market."""
    driver = Driver()
    (listed_event,) = driver.apply(listing or dutch_listing(), T0)
    assert listed_event.seq == 1
    driver.venue.start(T0)
    driver.market = Market.from_snapshot(driver.market.snapshot())
    return driver


def only_rejection(events: list[Event]) -> CommandRejected:
    assert len(events) == 1, events
    (event,) = events
    assert isinstance(event, CommandRejected), event
    return event


def deals(events: list[Event]) -> list[tuple[str, int, int]]:
    """(buyer, quantity, price) of each deal, in order."""
    return [(e.buyer_id, e.quantity, e.price) for e in events if isinstance(e, Deal)]


# --- listing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listing", "reason", "detail"),
    [
        (dutch_listing(reserve_price=None), RejectReason.INVALID_LISTING, "reserve_price"),
        (dutch_listing(starting_price=None), RejectReason.INVALID_LISTING, "starting_price"),
        (dutch_listing(price_step=None), RejectReason.INVALID_LISTING, "price_step"),
        (dutch_listing(step_interval_ms=None), RejectReason.INVALID_LISTING, "step_interval"),
        (dutch_listing(price_step=0), RejectReason.INVALID_LISTING, "price_step 0"),
        (dutch_listing(price_step=15), RejectReason.INVALID_LISTING, "multiple of tick 10"),
        (dutch_listing(step_interval_ms=0), RejectReason.INVALID_LISTING, "1.."),
        (
            dutch_listing(step_interval_ms=MAX_STEP_INTERVAL_MS + 1),
            RejectReason.INVALID_LISTING,
            "1..",
        ),
        (
            dutch_listing(starting_price=40),
            RejectReason.INVALID_LISTING,
            "starting_price: price 40 is below reserve 50",
        ),
        (dutch_listing(starting_price=105), RejectReason.INVALID_LISTING, "not a multiple"),
        (
            dutch_listing(starting_price=10**12, offered_quantity=10**7),
            RejectReason.INVALID_LISTING,
            str(MAX_NOTIONAL),
        ),
        (
            dutch_listing(lot_size=5, offered_quantity=7),
            RejectReason.INVALID_LISTING,
            "offered_quantity: quantity 7 is not a multiple of lot 5",
        ),
        (dutch_listing(offered_quantity=0), RejectReason.INVALID_LISTING, "offered_quantity"),
        (dutch_listing(ends_at_ms=T0), RejectReason.INVALID_LISTING, "ends_at_ms"),
        (dutch_listing(min_increment=10), RejectReason.INVALID_LISTING, "min_increment"),
        (dutch_listing(first_uncross_at_ms=T0), RejectReason.INVALID_LISTING, "first_uncross"),
        (dutch_listing(reserve_shown=True), RejectReason.INVALID_LISTING, "reserve_shown"),
        (dutch_listing(reserve_price=55), RejectReason.INVALID_RESERVE_PRICE, "55"),
        (dutch_listing(tick_size=0), RejectReason.INVALID_TICK_SIZE, "tick size"),
    ],
)
def test_a_dutch_listing_with_bad_parameters_is_refused(
    listing: ListTechnology, reason: RejectReason, detail: str
) -> None:
    """Each missing, out-of-range or foreign parameter is refused with a precise detail."""
    market = Market()
    rejected = only_rejection(market.apply(listing, T0, 0))
    assert rejected.reason is reason
    assert detail in rejected.detail
    assert market.venue(TECH) is None


def test_offered_quantity_defaults_to_one_lot() -> None:
    """Without offered_quantity the auction sells one lot."""
    driver = listed(dutch_listing(lot_size=5))
    assert driver.venue.remaining == 5
    assert deals(driver.bid("b1", "x", 5, T0)) == [("b1", 5, START)]


def test_a_clock_not_started_takes_no_bid() -> None:
    """Before start() the auction is not running: bids are refused, no deadline, no price."""
    venue = DutchKind.open(dutch_listing())
    assert isinstance(venue, DutchVenue)
    assert venue.next_deadline() is None
    events = venue.place(PlaceOrder(TECH, "b1", "x", "bid", 1), T0 + 1, 0)
    assert only_rejection(events).reason is RejectReason.AUCTION_NOT_RUNNING
    assert venue.view(ListingState.OPEN, T0 + 1, 0).current_price is None
    venue.start(T0)
    venue.start(T0 + 50)  # the first start counts
    assert venue.next_deadline() == T0 + 100


# --- the clock -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after_ms", "price"),
    [
        (0, 100),
        (99, 100),
        (100, 90),
        (101, 90),
        (199, 90),
        (200, 80),
        (499, 60),
        (500, 50),
        (501, 50),
        (86_400_000, 50),
    ],
)
def test_a_bid_pays_the_price_of_its_log_time_steps_applying_at_their_boundary(
    after_ms: int, price: int
) -> None:
    """A step due at T applies to a bid stamped T; the price stops at the floor."""
    driver = listed()
    events = driver.bid("b1", "x", 1, T0 + after_ms)
    assert [type(e) for e in events] == [
        OrderAccepted,
        Deal,
        OrderDone,
        AuctionClosed,
        ListingStateChanged,
    ]
    assert deals(events) == [("b1", 1, price)]


def test_a_floor_between_two_steps_is_where_the_clock_stops() -> None:
    """100 falling by 30 to a floor of 50: 100, 70, then 50 (never 40), then no deadline."""
    driver = listed(dutch_listing(price_step=30))
    venue = driver.venue
    assert [venue.price_at(T0 + t) for t in (0, 100, 200, 300, 10_000)] == [100, 70, 50, 50, 50]
    assert venue.next_deadline() == T0 + 100
    driver.apply(Tick(), T0 + 100)
    assert venue.next_deadline() == T0 + 200
    driver.apply(Tick(), T0 + 250)
    assert venue.next_deadline() is None
    view = venue.view(ListingState.OPEN, T0 + 250, 0)
    assert (view.current_price, view.next_step_at_ms) == (50, None)
    assert not venue.finished()


def test_ticks_step_the_clock_and_each_step_publishes_a_view() -> None:
    """Ticks alone make the market fire each step; the flushed views show the fall."""
    driver = listed()
    for t in range(0, 700, 50):
        assert driver.apply(Tick(), T0 + t) == []
    shown = [(v.current_price, v.next_step_at_ms) for v in driver.market.views_out]
    assert shown == [
        (100, T0 + 100),
        (90, T0 + 200),
        (80, T0 + 300),
        (70, T0 + 400),
        (60, T0 + 500),
        (50, None),
    ]
    assert driver.market.next_deadline() is None


def test_the_view_shows_the_clock_and_the_units_left() -> None:
    """current_price, next_step_at_ms and remaining_quantity, and the last deal."""
    driver = listed(dutch_listing(offered_quantity=4))
    view = driver.venue.view(ListingState.OPEN, T0 + 150, 0)
    assert (view.current_price, view.next_step_at_ms, view.remaining_quantity) == (
        90,
        T0 + 200,
        4,
    )
    driver.bid("b1", "x", 1, T0 + 150)
    view = driver.venue.view(ListingState.OPEN, T0 + 150, 1)
    assert (view.remaining_quantity, view.last_price, view.last_quantity) == (3, 90, 1)
    assert view.bids == []
    assert view.high_bid is None


# --- acceptances -----------------------------------------------------------------------------


def test_several_bids_share_the_units_and_the_last_one_closes_the_auction() -> None:
    """2 of 5 go at 90, the next bid for 5 gets the 3 left at 70 and the rest is cancelled."""
    driver = listed(dutch_listing(offered_quantity=5))
    first = driver.bid("b1", "x", 2, T0 + 100)
    assert [type(e) for e in first] == [OrderAccepted, Deal, OrderDone]
    assert deals(first) == [("b1", 2, 90)]
    second = driver.bid("b2", "y", 5, T0 + 300, price=80)
    assert [type(e) for e in second] == [
        OrderAccepted,
        Deal,
        OrderCancelled,
        AuctionClosed,
        ListingStateChanged,
    ]
    assert deals(second) == [("b2", 3, 70)], "a limit of 80 pays the clock's 70"
    rest = second[2]
    assert isinstance(rest, OrderCancelled)
    assert (rest.filled_quantity, rest.cancelled_quantity) == (3, 2)
    assert rest.reason is CancelReason.IMMEDIATE_OR_CANCEL
    closed = second[3]
    assert isinstance(closed, AuctionClosed)
    assert (closed.outcome, closed.price, closed.quantity, closed.bids) == (
        AuctionOutcome.SOLD,
        70,
        5,
        2,
    )
    assert (closed.winner_id, closed.order_id) == (None, None)
    assert driver.venue.finished()
    assert driver.venue.next_deadline() is None
    assert driver.market.listing_state(TECH) is ListingState.CLOSED
    late = only_rejection(driver.bid("b3", "z", 1, T0 + 301))
    assert late.reason is RejectReason.TECHNOLOGY_CLOSED


def test_one_bid_taking_every_unit_is_the_winner() -> None:
    """A single buyer of all units is named in the AuctionClosed."""
    driver = listed(dutch_listing(offered_quantity=3))
    events = driver.bid("b1", "x", 3, T0 + 200)
    closed = events[3]
    assert isinstance(closed, AuctionClosed)
    assert (closed.winner_id, closed.order_id, closed.price, closed.quantity) == (
        "b1",
        f"{TECH}:o1",
        80,
        3,
    )
    deal = events[1]
    assert isinstance(deal, Deal)
    assert (deal.seller_id, deal.offer_order_id, deal.offer_client_order_id) == (SELLER, "", "")
    assert (deal.aggressor_side, deal.deal_id, deal.deal_number) == (Side.BID, f"{TECH}:d1", 1)
    accepted = events[0]
    assert isinstance(accepted, OrderAccepted)
    assert (accepted.order_type, accepted.price) == (OrderType.MARKET, None)


@pytest.mark.parametrize(
    ("quantity", "filled"),
    [(2, 2), (3, 3), (4, 0)],
)
def test_fill_or_kill_takes_all_of_its_quantity_or_nothing(quantity: int, filled: int) -> None:
    """With 3 units left, fok for 4 is cancelled whole; for 2 or 3 it fills."""
    driver = listed(dutch_listing(offered_quantity=3))
    events = driver.bid("b1", "x", quantity, T0, time_in_force="fok")
    assert sum(q for _, q, _ in deals(events)) == filled
    if not filled:
        accepted, killed = events
        assert isinstance(accepted, OrderAccepted)
        assert isinstance(killed, OrderCancelled)
        assert (killed.reason, killed.cancelled_quantity) == (CancelReason.FILL_OR_KILL, quantity)
        assert driver.venue.remaining == 3


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (PlaceOrder(TECH, SELLER, "x", "bid", 1), RejectReason.SELLER_MAY_NOT_BID),
        (
            PlaceOrder(TECH, "s2", "x", "offer", 1, "limit", 90),
            RejectReason.NOT_SUPPORTED_BY_MECHANISM,
        ),
        (PlaceOrder(TECH, "b1", "x", "buy", 1), RejectReason.UNKNOWN_SIDE),
        (PlaceOrder(TECH, "b1", "x", "bid", 1, "stop"), RejectReason.UNKNOWN_ORDER_TYPE),
        (PlaceOrder(TECH, "b1", "x", "bid", 1, "market", 100), RejectReason.PRICE_NOT_ALLOWED),
        (PlaceOrder(TECH, "b1", "x", "bid", 1, "limit", 90), RejectReason.BID_TOO_LOW),
        (PlaceOrder(TECH, "b1", "x", "bid", 1, "limit", 105), RejectReason.PRICE_OFF_TICK),
        (PlaceOrder(TECH, "b1", "x", "bid", 0), RejectReason.QUANTITY_NOT_POSITIVE),
        (
            PlaceOrder(TECH, "b1", "x", "bid", 1, time_in_force="gtd", expires_at_ms=T0 + 9),
            RejectReason.NOT_SUPPORTED_BY_MECHANISM,
        ),
        (
            PlaceOrder(TECH, "b1", "x", "bid", 1, time_in_force="day"),
            RejectReason.UNKNOWN_TIME_IN_FORCE,
        ),
        (PlaceOrder(TECH, "b1", "x", "bid", 1, expires_at_ms=T0 + 9), RejectReason.INVALID_EXPIRY),
        (
            PlaceOrder(TECH, "b1", "x", "bid", 1, post_only=True),
            RejectReason.NOT_SUPPORTED_BY_MECHANISM,
        ),
        (CancelOrder(TECH, "b1", "x"), RejectReason.CANCEL_NOT_ALLOWED),
        (AmendOrder(TECH, "b1", "x", quantity=1), RejectReason.NOT_SUPPORTED_BY_MECHANISM),
    ],
)
def test_what_a_dutch_auction_refuses(command: Command, reason: RejectReason) -> None:
    """Offers, the seller's bids, bids below the clock, resting options, cancel and amend."""
    driver = listed()
    rejected = only_rejection(driver.apply(command, T0 + 1))
    assert rejected.reason is reason
    assert rejected.seq == 2
    assert driver.venue.remaining == 1


def test_a_client_order_id_is_used_once_per_auction() -> None:
    """A second bid with an id already used is refused, even though the first ended."""
    driver = listed(dutch_listing(offered_quantity=3))
    driver.bid("b1", "x", 1, T0)
    rejected = only_rejection(driver.bid("b1", "x", 1, T0 + 1))
    assert rejected.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    assert [type(e) for e in driver.bid("b2", "x", 1, T0 + 2)][:2] == [OrderAccepted, Deal]


def test_close_without_bids_is_unsold() -> None:
    """The seller closes before any bid: AuctionClosed unsold, "no bids", then closed."""
    driver = listed()
    events = driver.apply(ManageListing(TECH, SELLER, "close"), T0 + 250)
    assert [type(e) for e in events] == [AuctionClosed, ListingStateChanged]
    closed = events[0]
    assert isinstance(closed, AuctionClosed)
    assert (closed.outcome, closed.price, closed.quantity, closed.detail) == (
        AuctionOutcome.UNSOLD,
        None,
        0,
        "no bids",
    )
    assert driver.venue.finished()
    assert driver.venue.next_deadline() is None


def test_close_after_some_units_went_is_sold_for_those() -> None:
    """2 of 5 sold, then closed: AuctionClosed sold for 2 at the last price."""
    driver = listed(dutch_listing(offered_quantity=5))
    driver.bid("b1", "x", 2, T0 + 100)
    events = driver.apply(ManageListing(TECH, SELLER, "close"), T0 + 150)
    closed = events[0]
    assert isinstance(closed, AuctionClosed)
    assert (closed.outcome, closed.price, closed.quantity, closed.winner_id) == (
        AuctionOutcome.SOLD,
        90,
        2,
        "b1",
    )
    assert closed.detail == "closed with 2 of 5 units sold"


def test_seq_is_contiguous_across_refusals_deals_and_the_close() -> None:
    """Every event of the technology takes the next seq."""
    driver = listed(dutch_listing(offered_quantity=3))
    driver.bid(SELLER, "own", 1, T0)
    driver.bid("b1", "x", 1, T0 + 120)
    driver.apply(CancelOrder(TECH, "b1", "x"), T0 + 130)
    driver.bid("b2", "y", 9, T0 + 260)
    assert [e.seq for e in driver.events] == list(range(1, len(driver.events) + 1))
    assert driver.events[-1].seq == driver.venue.seq


def test_a_bad_snapshot_is_refused() -> None:
    """Bytes that are no dutch venue raise SnapshotError."""
    with pytest.raises(SnapshotError):
        DutchKind.restore(b"\x93not a dutch venue")


# --- properties ------------------------------------------------------------------------------


@given(
    st.integers(min_value=1, max_value=50),  # floor, in ticks
    st.integers(min_value=0, max_value=200),  # start above the floor, in ticks
    st.integers(min_value=1, max_value=60),  # step, in ticks
    st.integers(min_value=1, max_value=1_000),  # interval
    st.lists(st.integers(min_value=0, max_value=100_000), min_size=1, max_size=20),
)
def test_the_price_falls_by_whole_steps_and_never_below_the_floor(
    floor: int, above: int, step: int, interval: int, times: list[int]
) -> None:
    """At any time the price is on the step schedule or the floor, and never rises."""
    tick = 10
    listing = dutch_listing(
        reserve_price=floor * tick,
        starting_price=(floor + above) * tick,
        price_step=step * tick,
        step_interval_ms=interval,
    )
    venue = DutchKind.open(listing)
    assert isinstance(venue, DutchVenue)
    venue.start(T0)
    previous = venue.price_at(T0)
    assert previous == (floor + above) * tick
    for t in sorted(times):
        price = venue.price_at(T0 + t)
        assert floor * tick <= price <= previous
        assert price == floor * tick or (venue.starting_price - price) % (step * tick) == 0
        assert price == max(floor * tick, venue.starting_price - step * tick * (t // interval))
        previous = price


#: A session: bids (participant, quantity, price in tens or None) at delays, ticks between.
SESSION = st.lists(
    st.tuples(
        st.sampled_from(["bid", "bid", "tick", "close"]),
        st.sampled_from(["b1", "b2", "b3", SELLER]),
        st.integers(min_value=1, max_value=4),
        st.sampled_from([None, None, 5, 7, 10, 12]),
        st.sampled_from([0, 1, 49, 50, 99, 100, 101, 250]),
    ),
    max_size=25,
)


def session_commands(
    steps: list[tuple[str, str, int, int | None, int]], offered: int
) -> list[tuple[Command, int]]:
    commands: list[tuple[Command, int]] = [(dutch_listing(offered_quantity=offered), T0)]
    now = T0
    for i, (kind, who, quantity, tens, delay) in enumerate(steps):
        now += delay
        if kind == "tick":
            commands.append((Tick(), now))
        elif kind == "close" and i % 5 == 4:
            commands.append((ManageListing(TECH, SELLER, "close"), now))
        else:
            price = None if tens is None else tens * 10
            commands.append((PlaceOrder(TECH, who, f"c{i}", "bid", quantity, "limit", price), now))
    return commands


def run(commands: list[tuple[Command, int]], cut: int | None = None) -> Driver:
    """The commands through a market whose clock starts at the listing; restored from its
    snapshot after ``cut`` commands if given."""
    driver = Driver()
    for index, (command, timestamp_ms) in enumerate(commands):
        if index == cut:
            restored = Market.from_snapshot(driver.market.snapshot())
            driver = Driver(restored, driver.offset, driver.events)
        driver.apply(command, timestamp_ms)
        if index == 0:
            driver.venue.start(T0)
            restored = Market.from_snapshot(driver.market.snapshot())
            driver = Driver(restored, driver.offset, driver.events)
    return driver


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SESSION, st.integers(min_value=1, max_value=6))
def test_random_sessions_sell_at_most_the_offer_never_below_the_floor(
    steps: list[tuple[str, str, int, int | None, int]], offered: int
) -> None:
    """Units sold never exceed the offer, every bid is filled plus cancelled exactly, every
    deal is at the clock's price of its time, at or above the floor, never to the seller."""
    driver = run(session_commands(steps, offered))
    venue = driver.venue
    sold = 0
    accepted: dict[str, int] = {}
    filled: dict[str, int] = {}
    for event in driver.events:
        if isinstance(event, OrderAccepted):
            accepted[event.order_id] = event.quantity
        elif isinstance(event, Deal):
            assert event.price >= FLOOR
            assert event.price == venue.price_at(event.timestamp_ms)
            assert event.buyer_id != SELLER
            assert event.seller_id == SELLER
            sold += event.quantity
            filled[event.bid_order_id] = event.quantity
        elif isinstance(event, OrderDone):
            assert event.filled_quantity == accepted[event.order_id] == filled[event.order_id]
        elif isinstance(event, OrderCancelled):
            assert event.filled_quantity == filled.get(event.order_id, 0)
            assert event.filled_quantity + event.cancelled_quantity == accepted[event.order_id]
        elif isinstance(event, AuctionClosed):
            assert event.quantity == sold
    assert sold + venue.remaining == offered
    assert len([e for e in driver.events if isinstance(e, AuctionClosed)]) == int(venue.finished())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SESSION, st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=30))
def test_a_snapshot_mid_stream_gives_identical_events_afterwards(
    steps: list[tuple[str, str, int, int | None, int]], offered: int, cut: int
) -> None:
    """A market restored from a snapshot at any point answers the rest byte for byte."""
    commands = session_commands(steps, offered)
    whole = run(commands)
    restored = run(commands, cut)
    assert [encode(e) for e in whole.events] == [encode(e) for e in restored.events]
    assert whole.market.state_digest() == restored.market.state_digest()
