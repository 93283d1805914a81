"""The call mechanism: a periodic uniform-price auction, driven through the market.

Worked examples in the manner of exchange rulebooks (maximum volume, minimum surplus, market
pressure, reference price), priority at the clearing price, carried partial fills, gtd
expiry at the uncross boundary; then properties against a brute force and a snapshot test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.codec import encode
from engine.core.market import Market
from engine.core.mechanisms.call import (
    MAX_CALL_INTERVAL_MS,
    CallKind,
    CallVenue,
    clearing_price,
)
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
from schemas.common import AuctionOutcome, CancelReason, ListingState, RejectReason, Side
from schemas.events import (
    AuctionClosed,
    CommandRejected,
    Deal,
    Event,
    ListingStateChanged,
    OrderAccepted,
    OrderCancelled,
    OrderDone,
    PriceLevel,
)

T0 = 1_700_000_000_000
#: The first uncross, one second after the listing; then one every second.
FIRST = T0 + 1_000
INTERVAL = 1_000
TECH = "C1"

#: (participant, quantity, price or None for a market order), in arrival order.
Book = Sequence[tuple[str, int, int | None]]


def call_listing(
    tick_size: int = 1,
    lot_size: int = 1,
    reserve_price: int | None = None,
    **parameters: int | bool | None,
) -> ListTechnology:
    fields: dict[str, int | bool | None] = {
        "first_uncross_at_ms": FIRST,
        "call_interval_ms": INTERVAL,
    }
    fields.update(parameters)
    return ListTechnology(
        TECH,
        "ops-seller",
        "Licence pool",
        tick_size,
        lot_size,
        "call",
        reserve_price,
        **fields,  # type: ignore[arg-type]
    )


@dataclass
class Driver:
    """A market with one call listing, fed records at increasing offsets."""

    market: Market = field(default_factory=Market)
    offset: int = 0
    events: list[Event] = field(default_factory=list)

    def apply(self, command: Command, timestamp_ms: int) -> list[Event]:
        events = self.market.apply(command, timestamp_ms, self.offset)
        self.offset += 1
        self.events.extend(events)
        return events

    def order(
        self,
        participant: str,
        client_id: str,
        side: str,
        quantity: int,
        price: int | None,
        timestamp_ms: int = T0,
        **options: str | int | None,
    ) -> list[Event]:
        order_type = "market" if price is None else "limit"
        command = PlaceOrder(
            TECH,
            participant,
            client_id,
            side,
            quantity,
            order_type,
            price,
            **options,  # type: ignore[arg-type]
        )
        return self.apply(command, timestamp_ms)

    def tick(self, timestamp_ms: int) -> list[Event]:
        return self.apply(Tick(), timestamp_ms)

    @property
    def venue(self) -> CallVenue:
        venue = self.market.venue(TECH)
        assert isinstance(venue, CallVenue)
        return venue


def listed(listing: ListTechnology | None = None) -> Driver:
    driver = Driver()
    driver.apply(listing or call_listing(), T0)
    return driver


def load(driver: Driver, bids: Book, offers: Book, timestamp_ms: int = T0) -> None:
    """Place the bids then the offers, each named by its participant and position."""
    for side, orders in (("bid", bids), ("offer", offers)):
        for i, (who, quantity, price) in enumerate(orders):
            (accepted,) = driver.order(who, f"{side}{i}", side, quantity, price, timestamp_ms)
            assert isinstance(accepted, OrderAccepted), accepted


def only_rejection(events: list[Event]) -> CommandRejected:
    assert len(events) == 1, events
    (event,) = events
    assert isinstance(event, CommandRejected), event
    return event


def report(events: list[Event]) -> AuctionClosed:
    (closed,) = [e for e in events if isinstance(e, AuctionClosed)]
    return closed


def _has_market(*sides: list[tuple[int | None, int]]) -> bool:
    """Whether a market order takes part: its unfilled rest is cancelled, a change reported."""
    return any(price is None for side in sides for price, _ in side)


def deals(events: list[Event]) -> list[tuple[str, str, int, int]]:
    """(buyer, seller, quantity, price) of each deal, in order."""
    return [(e.buyer_id, e.seller_id, e.quantity, e.price) for e in events if isinstance(e, Deal)]


# --- listing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listing", "reason", "detail"),
    [
        (call_listing(first_uncross_at_ms=None), RejectReason.INVALID_LISTING, "first_uncross"),
        (call_listing(call_interval_ms=None), RejectReason.INVALID_LISTING, "call_interval_ms"),
        (call_listing(call_interval_ms=0), RejectReason.INVALID_LISTING, "1.."),
        (call_listing(call_interval_ms=-5), RejectReason.INVALID_LISTING, "1.."),
        (
            call_listing(call_interval_ms=MAX_CALL_INTERVAL_MS + 1),
            RejectReason.INVALID_LISTING,
            "1..",
        ),
        (call_listing(ends_at_ms=T0), RejectReason.INVALID_LISTING, "ends_at_ms"),
        (call_listing(price_step=5), RejectReason.INVALID_LISTING, "price_step"),
        (call_listing(offered_quantity=5), RejectReason.INVALID_LISTING, "offered_quantity"),
        (call_listing(reserve_shown=True), RejectReason.INVALID_LISTING, "reserve_shown"),
        (
            call_listing(tick_size=10, starting_price=105),
            RejectReason.INVALID_LISTING,
            "starting_price: price 105 is not a multiple of tick 10",
        ),
        (
            call_listing(reserve_price=100, starting_price=90),
            RejectReason.INVALID_LISTING,
            "below reserve",
        ),
        (call_listing(tick_size=0), RejectReason.INVALID_TICK_SIZE, "tick size"),
        (call_listing(lot_size=0), RejectReason.INVALID_LOT_SIZE, "lot size"),
        (call_listing(tick_size=10, reserve_price=15), RejectReason.INVALID_RESERVE_PRICE, "15"),
    ],
)
def test_a_call_listing_with_bad_parameters_is_refused(
    listing: ListTechnology, reason: RejectReason, detail: str
) -> None:
    """Each missing, out-of-range or foreign parameter is refused with a precise detail."""
    market = Market()
    rejected = only_rejection(market.apply(listing, T0, 0))
    assert rejected.reason is reason
    assert detail in rejected.detail
    assert market.venue(TECH) is None


def test_an_empty_book_holds_no_uncross() -> None:
    """With no orders there is no deadline and no report, even when the schedule passes."""
    driver = listed()
    assert driver.venue.next_deadline() is None
    assert driver.tick(FIRST + 5 * INTERVAL) == []
    view = driver.venue.view(ListingState.OPEN, FIRST + 5 * INTERVAL, 0)
    assert view.next_uncross_at_ms == FIRST + 6 * INTERVAL
    assert view.indicative_volume == 0
    assert view.indicative_price is None


def test_a_first_uncross_long_past_does_not_replay_missed_calls() -> None:
    """An order placed long after the first scheduled uncross waits for the next one only."""
    driver = listed(call_listing(first_uncross_at_ms=0, call_interval_ms=1))
    driver.order("b", "b1", "bid", 5, 100, T0 + 7)
    assert driver.venue.next_deadline() == T0 + 8
    assert driver.tick(T0 + 8) == [], "an uncross that crosses nothing reports nothing"
    assert driver.venue.next_deadline() == T0 + 9


# --- the clearing price: worked examples ----------------------------------------------------


#: (name, bids, offers, starting price (the reference), expected price, expected volume).
#: Participants are all different, so no self-trade blocks anything.
CLEARING_EXAMPLES: list[tuple[str, Book, Book, int | None, int, int]] = [
    (
        "maximum volume alone",
        [("b1", 10, 101)],
        [("s1", 5, 99), ("s2", 10, 101)],
        None,
        101,
        10,
    ),
    (
        "volume ties at 100 and 101: the smaller surplus wins",
        [("b1", 10, 102), ("b2", 10, 101), ("b3", 10, 100)],
        [("s1", 10, 99), ("s2", 10, 100), ("s3", 10, 103)],
        None,
        101,
        20,
    ),
    (
        "equal volume and surplus, buyers left over at both: the highest",
        [("b1", 30, 102)],
        [("s1", 10, 100), ("s2", 10, 101)],
        None,
        102,
        20,
    ),
    (
        "equal volume and surplus, sellers left over at both: the lowest",
        [("b1", 10, 100), ("b2", 10, 101)],
        [("s1", 30, 99)],
        None,
        99,
        20,
    ),
    (
        "no surplus anywhere: closest to the reference 102",
        [("b1", 10, 103)],
        [("s1", 10, 100)],
        102,
        103,
        10,
    ),
    (
        "no surplus anywhere: closest to the reference 101",
        [("b1", 10, 103)],
        [("s1", 10, 100)],
        101,
        100,
        10,
    ),
    (
        "reference 102 equally far from 100 and 104: the lower",
        [("b1", 10, 104)],
        [("s1", 10, 100)],
        102,
        100,
        10,
    ),
    (
        "no reference at all: the lowest candidate",
        [("b1", 10, 104)],
        [("s1", 10, 100)],
        None,
        100,
        10,
    ),
    (
        "a market bid counts at every price",
        [("b1", 10, None)],
        [("s1", 5, 100), ("s2", 5, 101)],
        None,
        101,
        10,
    ),
    (
        # A sheet: volumes 0/5/15/30/30/10/0 at 98..104; 101 and 102 tie at 30 with
        # surplus +15 at 101 and -10 at 102: the smaller surplus decides.
        "a sheet of several levels each side",
        [("b1", 10, 103), ("b2", 20, 102), ("b3", 15, 101), ("b4", 5, 100), ("b5", 10, 98)],
        [("s1", 5, 99), ("s2", 10, 100), ("s3", 15, 101), ("s4", 10, 102), ("s5", 20, 104)],
        None,
        102,
        30,
    ),
    (
        "buyers left over at 100, sellers at 102: no pressure, the reference 102 decides",
        [("b1", 10, 102), ("b2", 5, 100)],
        [("s1", 10, 100), ("s2", 5, 102)],
        102,
        102,
        10,
    ),
    (
        "buyers left over at 100, sellers at 102, no reference: the lowest",
        [("b1", 10, 102), ("b2", 5, 100)],
        [("s1", 10, 100), ("s2", 5, 102)],
        None,
        100,
        10,
    ),
]


@pytest.mark.parametrize(
    ("bids", "offers", "reference", "price", "volume"),
    [example[1:] for example in CLEARING_EXAMPLES],
    ids=[example[0] for example in CLEARING_EXAMPLES],
)
def test_the_uncross_clears_at_the_rulebook_price(
    bids: Book, offers: Book, reference: int | None, price: int, volume: int
) -> None:
    """Volume, then surplus, then pressure, then reference price pick the one price."""
    driver = listed(call_listing(starting_price=reference))
    load(driver, bids, offers)
    events = driver.tick(FIRST)
    closed = report(events)
    assert (closed.outcome, closed.price, closed.quantity) == (AuctionOutcome.SOLD, price, volume)
    assert (closed.winner_id, closed.order_id, closed.bids) == (None, None, len(bids))
    assert closed.timestamp_ms == FIRST
    assert events[-1] is closed, "the report comes last"
    assert {p for _, _, _, p in deals(events)} == {price}
    assert sum(q for _, _, q, _ in deals(events)) == volume


def test_the_last_clearing_price_is_the_next_reference() -> None:
    """Once a call cleared at 103, a later tie between 100 and 104 goes to 104."""
    driver = listed()
    load(driver, [("b1", 10, 103)], [("s1", 10, 103)])
    assert report(driver.tick(FIRST)).price == 103
    driver.order("b2", "x", "bid", 10, 104, FIRST + 1)
    driver.order("s2", "y", "offer", 10, 100, FIRST + 2)
    closed = report(driver.tick(FIRST + INTERVAL))
    assert closed.price == 104
    assert driver.venue.view(ListingState.OPEN, FIRST + INTERVAL, 0).last_price == 104


def test_an_uncross_that_crosses_nothing_is_silent_and_orders_stay() -> None:
    """Bids below the offers: no report (nothing changed), the orders rest for the next."""
    driver = listed()
    load(driver, [("b1", 10, 99)], [("s1", 10, 101)])
    assert driver.tick(FIRST) == []
    assert len(driver.venue.live_orders()) == 2
    assert driver.venue.next_deadline() == FIRST + INTERVAL


def test_missed_idle_uncrosses_are_skipped_in_one_step() -> None:
    """A record arriving a million intervals late skips the idle uncrosses at once (nothing
    crossed, nothing changed), and the next uncross is the first one after it."""
    driver = listed()
    load(driver, [("b1", 10, 99)], [("s1", 10, 101)])
    late = FIRST + 1_000_000 * INTERVAL + 1
    events = driver.order("b2", "late", "bid", 10, 101, late)
    assert [type(e) for e in events] == [OrderAccepted]
    assert driver.venue.next_deadline() == FIRST + 1_000_001 * INTERVAL
    assert deals(driver.tick(FIRST + 1_000_001 * INTERVAL)) == [("b2", "s1", 10, 101)]


def test_a_missed_uncross_that_trades_is_reported_at_its_own_time() -> None:
    """A record arriving late first fires the uncross that was due, stamped with its time."""
    driver = listed()
    load(driver, [("b1", 10, 101)], [("s1", 10, 101)])
    events = driver.order("b2", "late", "bid", 10, 99, FIRST + 2 * INTERVAL + 1)
    closed = report(events)
    assert (closed.outcome, closed.timestamp_ms) == (AuctionOutcome.SOLD, FIRST)
    assert events[-1].timestamp_ms == FIRST + 2 * INTERVAL + 1


def test_market_orders_only_cannot_find_a_price_and_are_cancelled() -> None:
    """Without a limit price there is no candidate: unsold, market orders' rests cancelled."""
    driver = listed()
    load(driver, [("b1", 10, None)], [("s1", 10, None)])
    events = driver.tick(FIRST)
    assert [type(e) for e in events] == [OrderCancelled, OrderCancelled, AuctionClosed]
    assert {e.reason for e in events if isinstance(e, OrderCancelled)} == {
        CancelReason.MARKET_ORDER_UNFILLED
    }
    assert report(events).detail == "nothing crossed"
    assert driver.venue.next_deadline() is None


def test_a_market_order_takes_part_in_one_uncross_only() -> None:
    """A market bid fills what it can at the uncross; its rest is cancelled, not carried."""
    driver = listed()
    load(driver, [("b1", 10, None)], [("s1", 4, 100)])
    events = driver.tick(FIRST)
    assert [type(e) for e in events] == [Deal, OrderDone, OrderCancelled, AuctionClosed]
    cancelled = events[2]
    assert isinstance(cancelled, OrderCancelled)
    assert (cancelled.filled_quantity, cancelled.cancelled_quantity) == (4, 6)
    assert cancelled.reason is CancelReason.MARKET_ORDER_UNFILLED


# --- priority at the clearing price ---------------------------------------------------------


@pytest.mark.parametrize(
    ("bids", "filled"),
    [
        (
            [("early", 10, 100), ("late", 10, 100), ("better", 10, 101)],
            [("better", 10), ("early", 10), ("late", 5)],
        ),
        (
            [("late", 10, 100), ("better", 10, 101), ("early", 10, 100)],
            [("better", 10), ("late", 10), ("early", 5)],
        ),
    ],
    ids=["arrival order early-late", "arrival order swapped"],
)
def test_better_prices_fill_fully_then_arrival_decides_at_the_price(
    bids: Book, filled: list[tuple[str, int]]
) -> None:
    """25 offered at 100: the 101 bid fills, then the 100 bids in arrival order."""
    driver = listed()
    load(driver, bids, [("seller", 25, 100)])
    events = driver.tick(FIRST)
    assert [(buyer, quantity) for buyer, _, quantity, _ in deals(events)] == filled
    assert report(events).price == 100
    # Each Deal is followed by the OrderDone of the bid, then the offer, it completed.
    assert [type(e) for e in events] == [
        Deal,
        OrderDone,
        Deal,
        OrderDone,
        Deal,
        OrderDone,
        AuctionClosed,
    ]
    last_done = events[5]
    assert isinstance(last_done, OrderDone)
    assert last_done.participant_id == "seller"
    (rest,) = driver.venue.live_orders()
    assert (rest.participant_id, rest.remaining) == (filled[2][0], 5)


def test_a_partial_fill_is_carried_to_the_next_call() -> None:
    """The 5 left of a bid rest, then fill at the next uncross; OrderDone counts all 10."""
    driver = listed()
    load(driver, [("b1", 10, 100)], [("s1", 5, 100)])
    first = driver.tick(FIRST)
    assert [type(e) for e in first] == [Deal, OrderDone, AuctionClosed]
    assert driver.venue.next_deadline() == FIRST + INTERVAL
    driver.order("s2", "more", "offer", 5, 99, FIRST + 10)
    second = driver.tick(FIRST + INTERVAL)
    # 99 and 100 both clear 5 with no surplus: the last clearing price, 100, decides.
    assert deals(second) == [("b1", "s2", 5, 100)]
    done = [e for e in second if isinstance(e, OrderDone) and e.participant_id == "b1"]
    assert [e.filled_quantity for e in done] == [10]
    assert driver.venue.live_orders() == []
    assert driver.venue.next_deadline() is None


def test_an_order_at_the_uncross_time_misses_that_uncross() -> None:
    """The market fires the uncross at T before a record stamped T: the bid waits a call."""
    driver = listed()
    load(driver, [], [("s1", 10, 100)])
    events = driver.order("b1", "on-time", "bid", 10, 100, FIRST)
    assert [type(e) for e in events] == [OrderAccepted], "the uncross at T found nothing"
    assert deals(driver.tick(FIRST + INTERVAL)) == [("b1", "s1", 10, 100)]


def test_a_participant_never_trades_with_itself_at_the_uncross() -> None:
    """A bid skips its own participant's offer and takes the next one; its own stays."""
    driver = listed()
    load(driver, [("x", 10, 100)], [("x", 5, 100), ("y", 10, 100)])
    events = driver.tick(FIRST)
    assert deals(events) == [("x", "y", 10, 100)]
    (left,) = driver.venue.live_orders()
    assert (left.participant_id, left.side, left.remaining) == ("x", Side.OFFER, 5)


def test_a_blocked_self_trade_executes_nothing() -> None:
    """When the only counter order is the participant's own, nothing trades or is reported."""
    driver = listed()
    load(driver, [("x", 10, 100)], [("x", 10, 100)])
    assert driver.tick(FIRST) == []
    assert len(driver.venue.live_orders()) == 2


# --- time in force, cancel, amend, close ----------------------------------------------------


@pytest.mark.parametrize(
    ("expires_at_ms", "trades"),
    [(FIRST - 1, False), (FIRST, False), (FIRST + 1, True)],
    ids=["before the uncross", "at the uncross", "after the uncross"],
)
def test_a_gtd_order_expiring_at_the_uncross_time_is_gone_for_it(
    expires_at_ms: int, trades: bool
) -> None:
    """At equal times the expiry fires first: good till T is not good at T."""
    driver = listed()
    driver.order("b1", "gtd", "bid", 10, 100, T0, time_in_force="gtd", expires_at_ms=expires_at_ms)
    driver.order("s1", "gtc", "offer", 10, 100, T0)
    events = driver.tick(FIRST + 1)
    if trades:
        assert deals(events) == [("b1", "s1", 10, 100)]
        assert not any(isinstance(e, OrderCancelled) for e in events)
    else:
        assert deals(events) == []
        expired = events[0]
        assert isinstance(expired, OrderCancelled)
        assert (expired.reason, expired.timestamp_ms) == (CancelReason.EXPIRED, expires_at_ms)
        assert not any(isinstance(e, AuctionClosed) for e in events), "then nothing crossed"


def test_a_lone_gtd_order_expires_and_leaves_no_uncross() -> None:
    """The expiry empties the book: no uncross follows, and the deadline is gone."""
    driver = listed()
    driver.order("b1", "gtd", "bid", 10, 100, T0, time_in_force="gtd", expires_at_ms=T0 + 500)
    assert driver.venue.next_deadline() == T0 + 500
    events = driver.tick(FIRST + 5 * INTERVAL)
    assert [type(e) for e in events] == [OrderCancelled]
    assert driver.venue.next_deadline() is None


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"time_in_force": "ioc"}, RejectReason.NOT_SUPPORTED_BY_MECHANISM),
        ({"time_in_force": "fok"}, RejectReason.NOT_SUPPORTED_BY_MECHANISM),
        ({"time_in_force": "day"}, RejectReason.UNKNOWN_TIME_IN_FORCE),
        ({"time_in_force": "gtd"}, RejectReason.INVALID_EXPIRY),
        ({"time_in_force": "gtd", "expires_at_ms": T0}, RejectReason.INVALID_EXPIRY),
        ({"expires_at_ms": T0 + 5}, RejectReason.INVALID_EXPIRY),
    ],
)
def test_time_in_force_outside_gtc_and_gtd_is_refused(
    options: dict[str, str | int], reason: RejectReason
) -> None:
    """ioc and fok have nothing to fill at once; a gtd needs an expiry after its arrival."""
    driver = listed()
    rejected = only_rejection(driver.order("b1", "x", "bid", 10, 100, T0, **options))
    assert rejected.reason is reason


@pytest.mark.parametrize(
    ("side", "order_type", "quantity", "price", "reason"),
    [
        ("buy", "limit", 10, 100, RejectReason.UNKNOWN_SIDE),
        ("bid", "stop", 10, 100, RejectReason.UNKNOWN_ORDER_TYPE),
        ("bid", "limit", 7, 100, RejectReason.QUANTITY_OFF_LOT),
        ("bid", "limit", 10, None, RejectReason.PRICE_REQUIRED),
        ("bid", "market", 10, 100, RejectReason.PRICE_NOT_ALLOWED),
        ("bid", "limit", 10, 105, RejectReason.PRICE_OFF_TICK),
        ("offer", "limit", 10, 90, RejectReason.PRICE_BELOW_RESERVE),
    ],
)
def test_orders_off_the_grid_or_below_the_reserve_are_refused(
    side: str, order_type: str, quantity: int, price: int | None, reason: RejectReason
) -> None:
    """The listing's tick, lot and reserve apply to every order, as in the continuous book."""
    driver = listed(call_listing(tick_size=10, lot_size=5, reserve_price=100))
    command = PlaceOrder(TECH, "p1", "x", side, quantity, order_type, price)
    assert only_rejection(driver.apply(command, T0)).reason is reason


def test_cancel_before_the_uncross_takes_the_order_out() -> None:
    """A cancelled bid does not trade; a second cancel finds no live order."""
    driver = listed()
    load(driver, [("b1", 10, 100)], [("s1", 10, 100)])
    (cancelled,) = driver.apply(CancelOrder(TECH, "b1", "bid0"), T0 + 1)
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.reason is CancelReason.CANCELLED_BY_PARTICIPANT
    assert cancelled.cancelled_quantity == 10
    again = only_rejection(driver.apply(CancelOrder(TECH, "b1", "bid0"), T0 + 2))
    assert again.reason is RejectReason.UNKNOWN_ORDER
    assert deals(driver.tick(FIRST)) == []


def test_amend_is_not_supported() -> None:
    """An amend is refused: cancel and place again instead."""
    driver = listed()
    load(driver, [("b1", 10, 100)], [])
    rejected = only_rejection(driver.apply(AmendOrder(TECH, "b1", "bid0", quantity=5), T0))
    assert rejected.reason is RejectReason.NOT_SUPPORTED_BY_MECHANISM


def test_client_order_ids_stay_taken_after_the_order_ends() -> None:
    """An id is refused while live and after its order filled at an uncross."""
    driver = listed()
    load(driver, [("b1", 10, 100)], [("s1", 10, 100)])
    live = only_rejection(driver.order("b1", "bid0", "bid", 10, 100, T0 + 1))
    assert live.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    driver.tick(FIRST)
    ended = only_rejection(driver.order("b1", "bid0", "bid", 10, 100, FIRST + 1))
    assert ended.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    assert "ended" in ended.detail


def test_close_cancels_every_resting_order_bids_first_in_priority() -> None:
    """Closing the listing cancels the book (technology_closed) and ends the schedule."""
    driver = listed()
    load(driver, [("b1", 10, 99), ("b2", 10, 100)], [("s1", 10, 101)])
    events = driver.apply(ManageListing(TECH, "ops-seller", "close"), T0 + 1)
    assert [type(e) for e in events] == [
        OrderCancelled,
        OrderCancelled,
        OrderCancelled,
        ListingStateChanged,
    ]
    cancelled = [e for e in events if isinstance(e, OrderCancelled)]
    assert [e.participant_id for e in cancelled] == ["b2", "b1", "s1"]
    assert {e.reason for e in cancelled} == {CancelReason.TECHNOLOGY_CLOSED}
    assert driver.venue.next_deadline() is None
    assert not driver.venue.finished()
    assert driver.market.listing_state(TECH) is ListingState.CLOSED


def test_seq_and_deal_numbers_are_contiguous_across_uncrosses() -> None:
    """Every event of the technology takes the next seq; deal ids follow their numbers."""
    driver = listed()
    load(driver, [("b1", 10, 100), ("b2", 10, 100)], [("s1", 15, 100)])
    driver.tick(FIRST)
    driver.order("s2", "again", "offer", 5, 100, FIRST + 1)
    driver.tick(FIRST + INTERVAL)
    assert [e.seq for e in driver.events] == list(range(1, len(driver.events) + 1))
    numbered = [e for e in driver.events if isinstance(e, Deal)]
    assert [e.deal_number for e in numbered] == [1, 2, 3]
    assert [e.deal_id for e in numbered] == [f"{TECH}:d1", f"{TECH}:d2", f"{TECH}:d3"]
    assert all(e.aggressor_side is Side.BID for e in numbered)


def test_the_view_shows_the_indicative_uncross_and_five_levels() -> None:
    """During the call phase: indicative price, volume, surplus, next uncross, top levels."""
    driver = listed()
    load(
        driver,
        [(f"b{i}", 10, 100 - i) for i in range(7)] + [("b9", 5, 100)],
        [("s1", 8, 95)],
    )
    view = driver.venue.view(ListingState.OPEN, T0 + 1, 9)
    assert view.bids == [
        PriceLevel(100, 15, 2),
        PriceLevel(99, 10, 1),
        PriceLevel(98, 10, 1),
        PriceLevel(97, 10, 1),
        PriceLevel(96, 10, 1),
    ]
    assert view.offers == [PriceLevel(95, 8, 1)]
    # Supply is 8 from 95 up, demand 65 at 95 down to 15 at 100: the surplus is least at 100.
    assert (view.indicative_price, view.indicative_volume, view.surplus) == (100, 8, 7)
    assert view.next_uncross_at_ms == FIRST
    assert view.last_price is None
    driver.tick(FIRST)
    after = driver.venue.view(ListingState.OPEN, FIRST, 10)
    assert (after.last_price, after.last_quantity) == (100, 8)
    assert after.next_uncross_at_ms == FIRST + INTERVAL


def test_a_bad_snapshot_is_refused() -> None:
    """Bytes that are no call venue raise SnapshotError."""
    with pytest.raises(SnapshotError):
        CallKind.restore(b"\x93not a call venue")


# --- properties -----------------------------------------------------------------------------

PRICES = st.integers(min_value=95, max_value=105)
ORDERS = st.lists(
    st.tuples(st.one_of(st.none(), PRICES), st.integers(min_value=1, max_value=30)),
    max_size=12,
)


def brute_force(
    bids: list[tuple[int | None, int]], offers: list[tuple[int | None, int]]
) -> dict[int, tuple[int, int]]:
    """(volume, surplus) at every limit price present, summing order by order."""
    prices = {p for p, _ in bids + offers if p is not None}
    result: dict[int, tuple[int, int]] = {}
    for price in prices:
        demand = sum(q for p, q in bids if p is None or p >= price)
        supply = sum(q for p, q in offers if p is None or p <= price)
        result[price] = (min(demand, supply), demand - supply)
    return result


@given(ORDERS, ORDERS, st.one_of(st.none(), PRICES))
def test_the_clearing_price_maximizes_volume_then_minimizes_surplus(
    bids: list[tuple[int | None, int]],
    offers: list[tuple[int | None, int]],
    reference: int | None,
) -> None:
    """Against a brute force over the candidate prices: best volume, then least surplus."""
    table = brute_force(bids, offers)
    best = max((volume for volume, _ in table.values()), default=0)
    clearing = clearing_price(bids, offers, reference)
    if best == 0:
        assert clearing is None
        return
    assert clearing is not None
    assert clearing.price in table
    assert (clearing.volume, clearing.surplus) == table[clearing.price]
    assert clearing.volume == best
    least = min(abs(s) for v, s in table.values() if v == best)
    assert abs(clearing.surplus) == least


#: A place step: participant, side, price (None: a market order; 98 is below the reserve),
#: quantity, and how long a gtd order lasts (None: gtc).
PLACE = st.tuples(
    st.just("place"),
    st.sampled_from(["alice", "bob", "carol", "dave"]),
    st.sampled_from(["bid", "offer"]),
    st.sampled_from([None, 98, 99, 100, 100, 101, 101, 102, 103, 104]),
    st.integers(min_value=1, max_value=20),
    st.sampled_from([None, None, None, 200, 1_000, 2_500]),
)
#: One step of a random session: place (most often), cancel or let time pass.
STEPS = st.lists(
    st.one_of(
        PLACE,
        PLACE,
        PLACE,
        PLACE,
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=40)),
        st.tuples(st.just("wait"), st.sampled_from([1, 300, 999, 1_000, 1_001, 2_500])),
    ),
    min_size=10,
    max_size=50,
)

RESERVE = 99


def session(steps: list[tuple[object, ...]]) -> list[tuple[Command, int]]:
    """The commands of a random session with their log times, starting with the listing."""
    commands: list[tuple[Command, int]] = [(call_listing(reserve_price=RESERVE), T0)]
    now = T0
    placed: list[tuple[str, str]] = []
    for step in steps:
        now += 1
        if step[0] == "place":
            _, who, side, price, quantity, lasts = step
            assert isinstance(who, str)
            assert isinstance(side, str)
            assert isinstance(quantity, int)
            assert price is None or isinstance(price, int)
            assert lasts is None or isinstance(lasts, int)
            client_id = f"c{len(placed)}"
            placed.append((who, client_id))
            options: dict[str, str | int] = (
                {} if lasts is None else {"time_in_force": "gtd", "expires_at_ms": now + lasts}
            )
            order_type = "market" if price is None else "limit"
            command = PlaceOrder(
                TECH,
                who,
                client_id,
                side,
                quantity,
                order_type,
                price,
                **options,  # type: ignore[arg-type]
            )
            commands.append((command, now))
        elif step[0] == "cancel" and placed:
            index = step[1]
            assert isinstance(index, int)
            who, client_id = placed[index % len(placed)]
            commands.append((CancelOrder(TECH, who, client_id), now))
        elif step[0] == "wait":
            delay = step[1]
            assert isinstance(delay, int)
            now += delay
            commands.append((Tick(), now))
    commands.append((Tick(), now + 10 * INTERVAL))
    return commands


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STEPS)
def test_random_sessions_conserve_quantity_and_respect_the_reserve(
    steps: list[tuple[object, ...]],
) -> None:
    """Every accepted quantity is filled, cancelled or still resting; no deal below the
    reserve, none with oneself, each uncross reports what its deals add up to."""
    driver = Driver()
    for command, timestamp_ms in session(steps):
        driver.apply(command, timestamp_ms)
    accepted = {e.order_id: e.quantity for e in driver.events if isinstance(e, OrderAccepted)}
    filled = dict.fromkeys(accepted, 0)
    ended: dict[str, int] = {}
    since_report = 0
    for event in driver.events:
        if isinstance(event, Deal):
            assert event.price >= RESERVE
            assert event.buyer_id != event.seller_id
            filled[event.bid_order_id] += event.quantity
            filled[event.offer_order_id] += event.quantity
            since_report += event.quantity
        elif isinstance(event, OrderCancelled):
            ended[event.order_id] = event.cancelled_quantity
            assert event.filled_quantity == filled[event.order_id]
        elif isinstance(event, OrderDone):
            ended[event.order_id] = 0
            assert event.filled_quantity == accepted[event.order_id]
        elif isinstance(event, AuctionClosed):
            assert event.quantity == since_report
            since_report = 0
    resting = {o.order_id: o.remaining for o in driver.venue.live_orders()}
    for order_id, quantity in accepted.items():
        left = ended.get(order_id, resting.get(order_id))
        assert left is not None, order_id
        assert filled[order_id] + left == quantity
        assert (order_id in ended) != (order_id in resting)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.one_of(st.none(), PRICES), st.integers(min_value=1, max_value=30)),
        min_size=1,
        max_size=10,
    ),
    st.lists(
        st.tuples(st.one_of(st.none(), PRICES), st.integers(min_value=1, max_value=30)),
        min_size=1,
        max_size=10,
    ),
)
def test_without_self_trades_the_uncross_executes_the_best_volume(
    bids: list[tuple[int | None, int]], offers: list[tuple[int | None, int]]
) -> None:
    """With every order its own participant's, the deals add up to the brute-force maximum."""
    driver = listed()
    load(
        driver,
        [(f"b{i}", q, p) for i, (p, q) in enumerate(bids)],
        [(f"s{i}", q, p) for i, (p, q) in enumerate(offers)],
    )
    events = driver.tick(FIRST)
    best = max((volume for volume, _ in brute_force(bids, offers).values()), default=0)
    assert sum(q for _, _, q, _ in deals(events)) == best
    reports = [e for e in events if isinstance(e, AuctionClosed)]
    assert [r.quantity for r in reports] == ([best] if best or _has_market(bids, offers) else [])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STEPS, st.integers(min_value=0, max_value=60))
def test_a_snapshot_mid_stream_gives_identical_events_afterwards(
    steps: list[tuple[object, ...]], cut: int
) -> None:
    """A market restored from a snapshot at any point answers the rest byte for byte."""
    commands = session(steps)
    cut = min(cut, len(commands))
    original = Driver()
    for command, timestamp_ms in commands[:cut]:
        original.apply(command, timestamp_ms)
    restored = Driver(Market.from_snapshot(original.market.snapshot()), original.offset)
    assert restored.market.snapshot() == original.market.snapshot()
    for command, timestamp_ms in commands[cut:]:
        left = [encode(e) for e in original.apply(command, timestamp_ms)]
        right = [encode(e) for e in restored.apply(command, timestamp_ms)]
        assert left == right
    assert original.market.state_digest() == restored.market.state_digest()
