"""Amending live orders in the continuous book: quantity and price, priority, and refusals.

``AmendOrder.quantity`` is the order's new *open* quantity (what is left to trade); its total
becomes what it filled plus that. A lower open quantity at the same price keeps the order's
place in the queue; a new price or a higher open quantity sends it to the back of its (new)
price as a new arrival, where it matches at once if it crosses.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from random import Random
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.market import Market
from engine.core.mechanisms.continuous import ContinuousVenue
from schemas.commands import AmendOrder, CancelOrder, Command, ListTechnology, PlaceOrder, Tick
from schemas.common import MAX_PRICE, MAX_QUANTITY, CancelReason, RejectReason, Side
from schemas.events import (
    CommandRejected,
    Deal,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderDone,
)
from tests.unit.test_time_in_force import TECH, Summary, place, summary

T0 = 1_700_000_000_000
TICK = 10
LOT = 5
RESERVE = 50

Resting = list[tuple[str, str, int | None, int]]


def new_market() -> Market:
    market = Market()
    market.apply(ListTechnology(TECH, "seller", "Tech", TICK, LOT, "continuous", RESERVE), T0, 0)
    return market


def venue(market: Market) -> ContinuousVenue:
    v = market.venue(TECH)
    assert isinstance(v, ContinuousVenue)
    return v


def resting(market: Market) -> Resting:
    """Every resting order, bids then offers, each side in priority order."""
    book = venue(market).book
    return [
        (o.client_order_id, o.side.value, o.price, o.remaining)
        for side in (Side.BID, Side.OFFER)
        for o in book.resting_orders(side)
    ]


def run(market: Market, commands: Sequence[Command], at: int = T0) -> list[Event]:
    return [e for command in commands for e in market.apply(command, at, 0)]


def amend(who: str, client_id: str, quantity: int | None = None, price: int | None = None) -> Any:
    return AmendOrder(TECH, who, client_id, quantity, price)


TWO_BIDS = [place("p", "b1", "bid", 10, 100), place("q", "b2", "bid", 10, 100)]

#: (setup, the amend, its events, the book after it).
AMENDS = [
    pytest.param(
        TWO_BIDS,
        amend("p", "b1", quantity=5),
        [("amended", "b1", 5, 100, True)],
        [("b1", "bid", 100, 5), ("b2", "bid", 100, 10)],
        id="quantity-down-keeps-priority",
    ),
    pytest.param(
        TWO_BIDS,
        amend("p", "b1", quantity=5, price=100),
        [("amended", "b1", 5, 100, True)],
        [("b1", "bid", 100, 5), ("b2", "bid", 100, 10)],
        id="quantity-down-with-the-same-price-given-keeps-priority",
    ),
    pytest.param(
        TWO_BIDS,
        amend("p", "b1", quantity=15),
        [("amended", "b1", 15, 100, False)],
        [("b2", "bid", 100, 10), ("b1", "bid", 100, 15)],
        id="quantity-up-loses-priority",
    ),
    pytest.param(
        [place("p", "b1", "bid", 10, 100), place("q", "b2", "bid", 10, 90)],
        amend("p", "b1", price=90),
        [("amended", "b1", 10, 90, False)],
        [("b2", "bid", 90, 10), ("b1", "bid", 90, 10)],
        id="price-change-goes-to-the-back-of-the-new-price",
    ),
    pytest.param(
        TWO_BIDS,
        amend("p", "b1", quantity=5, price=90),
        [("amended", "b1", 5, 90, False)],
        [("b2", "bid", 100, 10), ("b1", "bid", 90, 5)],
        id="quantity-down-with-a-new-price-loses-priority",
    ),
    pytest.param(
        [place("s", "s1", "offer", 5, 110), place("p", "b1", "bid", 10, 100)],
        amend("p", "b1", price=110),
        [("amended", "b1", 10, 110, False), ("deal", "b1", "s1", 5, 110), ("done", "s1", 5)],
        [("b1", "bid", 110, 5)],
        id="price-amend-that-crosses-trades-and-rests-the-rest",
    ),
    pytest.param(
        [place("s", "s1", "offer", 10, 110), place("p", "b1", "bid", 10, 100)],
        amend("p", "b1", price=120),
        [
            ("amended", "b1", 10, 120, False),
            ("deal", "b1", "s1", 10, 110),
            ("done", "s1", 10),
            ("done", "b1", 10),
        ],
        [],
        id="price-amend-that-crosses-fills-at-the-resting-price",
    ),
    pytest.param(
        [
            place("p", "own", "offer", 5, 110),
            place("s", "s1", "offer", 5, 110),
            place("p", "b1", "bid", 10, 100),
        ],
        amend("p", "b1", price=110),
        [
            ("amended", "b1", 10, 110, False),
            ("cancelled", "own", 0, 5, CancelReason.SELF_TRADE_PREVENTED),
            ("deal", "b1", "s1", 5, 110),
            ("done", "s1", 5),
        ],
        [("b1", "bid", 110, 5)],
        id="crossing-amend-goes-through-self-trade-prevention",
    ),
    pytest.param(
        [place("s", "s1", "offer", 5, 110), place("p", "o1", "offer", 5, 120, post_only=True)],
        amend("p", "o1", price=130),
        [("amended", "o1", 5, 130, False)],
        [("s1", "offer", 110, 5), ("o1", "offer", 130, 5)],
        id="post-only-amend-that-does-not-cross",
    ),
]


@pytest.mark.parametrize(("setup", "command", "expected", "after"), AMENDS)
def test_amend_scenarios(
    setup: list[Command], command: AmendOrder, expected: list[Summary], after: Resting
) -> None:
    """Each amend gives exactly its events and leaves exactly its book."""
    market = new_market()
    run(market, setup)
    assert summary(run(market, [command])) == expected
    assert resting(market) == after


ONE_BID = [place("p", "b1", "bid", 10, 100)]

#: (setup, the amend, its reason). The book must be left as it was.
REFUSALS = [
    pytest.param([], amend("p", "nope", quantity=5), RejectReason.UNKNOWN_ORDER, id="never-placed"),
    pytest.param(
        ONE_BID, amend("mallory", "b1", quantity=5), RejectReason.UNKNOWN_ORDER, id="not-the-owner"
    ),
    pytest.param(
        [*ONE_BID, place("s", "s1", "offer", 10, 100)],
        amend("p", "b1", quantity=5),
        RejectReason.UNKNOWN_ORDER,
        id="filled",
    ),
    pytest.param(
        [*ONE_BID, CancelOrder(TECH, "p", "b1")],
        amend("p", "b1", quantity=5),
        RejectReason.UNKNOWN_ORDER,
        id="cancelled",
    ),
    pytest.param(
        [place("s", "s1", "offer", 5, 100), place("p", "m1", "bid", 10)],
        amend("p", "m1", quantity=5),
        RejectReason.UNKNOWN_ORDER,
        id="market-order",
    ),
    pytest.param(
        [place("p", "i1", "bid", 10, 100, "ioc")],
        amend("p", "i1", price=90),
        RejectReason.UNKNOWN_ORDER,
        id="ioc-rest",
    ),
    pytest.param(ONE_BID, amend("p", "b1"), RejectReason.AMEND_CHANGES_NOTHING, id="nothing-given"),
    pytest.param(
        ONE_BID, amend("p", "b1", quantity=10), RejectReason.AMEND_CHANGES_NOTHING, id="same-qty"
    ),
    pytest.param(
        ONE_BID, amend("p", "b1", price=100), RejectReason.AMEND_CHANGES_NOTHING, id="same-price"
    ),
    pytest.param(
        ONE_BID, amend("p", "b1", 10, 100), RejectReason.AMEND_CHANGES_NOTHING, id="same-both"
    ),
    pytest.param(
        [*ONE_BID, place("s", "s1", "offer", 5, 100)],
        amend("p", "b1", quantity=5),
        RejectReason.AMEND_CHANGES_NOTHING,
        id="open-quantity-already-that-after-a-fill",
    ),
    pytest.param(
        ONE_BID, amend("p", "b1", quantity=0), RejectReason.QUANTITY_NOT_POSITIVE, id="qty-zero"
    ),
    pytest.param(
        ONE_BID, amend("p", "b1", quantity=-5), RejectReason.QUANTITY_NOT_POSITIVE, id="qty-neg"
    ),
    pytest.param(
        ONE_BID, amend("p", "b1", quantity=7), RejectReason.QUANTITY_OFF_LOT, id="qty-off-lot"
    ),
    pytest.param(
        ONE_BID,
        amend("p", "b1", quantity=MAX_QUANTITY + LOT),
        RejectReason.QUANTITY_TOO_LARGE,
        id="qty-too-large",
    ),
    pytest.param(ONE_BID, amend("p", "b1", price=105), RejectReason.PRICE_OFF_TICK, id="off-tick"),
    pytest.param(ONE_BID, amend("p", "b1", price=0), RejectReason.PRICE_NOT_POSITIVE, id="zero"),
    pytest.param(
        ONE_BID, amend("p", "b1", price=40), RejectReason.PRICE_BELOW_RESERVE, id="below-reserve"
    ),
    pytest.param(
        ONE_BID, amend("p", "b1", price=MAX_PRICE + TICK), RejectReason.PRICE_TOO_HIGH, id="high"
    ),
    pytest.param(
        [place("p", "b1", "bid", 5, MAX_PRICE)],
        amend("p", "b1", quantity=1005),
        RejectReason.NOTIONAL_TOO_LARGE,
        id="notional-with-the-order-s-own-price",
    ),
    pytest.param(
        [place("p", "b1", "bid", 1005, 100)],
        amend("p", "b1", price=MAX_PRICE),
        RejectReason.NOTIONAL_TOO_LARGE,
        id="notional-with-the-open-quantity",
    ),
    pytest.param(
        [place("s", "s1", "offer", 5, 110), place("p", "b1", "bid", 5, 100, post_only=True)],
        amend("p", "b1", price=110),
        RejectReason.POST_ONLY_WOULD_TRADE,
        id="post-only-amend-that-would-trade",
    ),
]


@pytest.mark.parametrize(("setup", "command", "reason"), REFUSALS)
def test_refused_amends_change_nothing(
    setup: list[Command], command: AmendOrder, reason: RejectReason
) -> None:
    """A refused amend gives its reason code and leaves the book and its priorities alone."""
    market = new_market()
    run(market, setup, at=T0)
    before = msgspec.structs.replace(venue(market).to_state(), seq=0)
    events = run(market, [command], at=T0 + 10)
    assert summary(events) == [("rejected", command.client_order_id, reason)]
    rejected = events[0]
    assert isinstance(rejected, CommandRejected)
    assert rejected.command == "amend_order"
    assert msgspec.structs.replace(venue(market).to_state(), seq=0) == before


def test_an_amend_stamped_at_the_expiry_finds_the_order_expired() -> None:
    """The market fires the expiry first, so an amend stamped at it meets no live order."""
    market = new_market()
    run(market, [place("p", "g1", "bid", 10, 100, "gtd", T0 + 5)])
    assert summary(run(market, [amend("p", "g1", quantity=5)], at=T0 + 5)) == [
        ("cancelled", "g1", 0, 10, CancelReason.EXPIRED),
        ("rejected", "g1", RejectReason.UNKNOWN_ORDER),
    ]


def test_quantity_is_the_new_open_quantity_and_the_total_follows() -> None:
    """After a fill of 4, an amend to 8 leaves 8 open and a total of 12 to report at the end."""
    market = new_market()
    run(market, [place("p", "b1", "bid", 10, 100), place("s", "s1", "offer", 5, 100)])
    assert resting(market) == [("b1", "bid", 100, 5)]
    assert summary(run(market, [amend("p", "b1", quantity=10)])) == [
        ("amended", "b1", 10, 100, False)
    ]
    events = run(market, [place("s", "s2", "offer", 10, 100)])
    assert summary(events) == [
        ("accepted", "s2"),
        ("deal", "b1", "s2", 10, 100),
        ("done", "b1", 15),
        ("done", "s2", 10),
    ]


def test_a_reduced_order_reports_what_it_filled_and_what_it_cancelled() -> None:
    """Fill 5 of 20, reduce to 5 open, cancel: filled 5, cancelled 5."""
    market = new_market()
    run(market, [place("p", "b1", "bid", 20, 100), place("s", "s1", "offer", 5, 100)])
    run(market, [amend("p", "b1", quantity=5)])
    assert summary(run(market, [CancelOrder(TECH, "p", "b1")])) == [
        ("cancelled", "b1", 5, 5, CancelReason.CANCELLED_BY_PARTICIPANT)
    ]


def test_reduced_order_keeps_its_place_when_the_next_seller_comes() -> None:
    """Amended down, b1 still trades first; amended up, b1 trades after b2."""
    market = new_market()
    run(market, TWO_BIDS)
    run(market, [amend("p", "b1", quantity=5)])
    sold = run(market, [place("s", "s1", "offer", 5, 100)])
    assert [(e.bid_client_order_id, e.quantity) for e in sold if isinstance(e, Deal)] == [("b1", 5)]
    market = new_market()
    run(market, TWO_BIDS)
    run(market, [amend("p", "b1", quantity=15)])
    sold = run(market, [place("s", "s1", "offer", 15, 100)])
    assert [(e.bid_client_order_id, e.quantity) for e in sold if isinstance(e, Deal)] == [
        ("b2", 10),
        ("b1", 5),
    ]


def test_an_amended_order_keeps_its_ids_and_its_expiry() -> None:
    """A re-placed gtd order trades under its order id and still expires at its time."""
    market = new_market()
    (accepted,) = run(market, [place("p", "g1", "bid", 10, 100, "gtd", T0 + 1000)])
    assert isinstance(accepted, OrderAccepted)
    run(market, [amend("p", "g1", price=110)], at=T0 + 1)
    run(market, [amend("p", "g1", quantity=5)], at=T0 + 2)
    assert venue(market).to_state().expiries == [(T0 + 1000, accepted.order_id)]
    traded = run(market, [place("s", "s1", "offer", 5, 110)], at=T0 + 3)
    assert summary(traded)[1:3] == [("deal", "g1", "s1", 5, 110), ("done", "g1", 5)]
    deal = traded[1]
    assert isinstance(deal, Deal)
    assert deal.bid_order_id == accepted.order_id
    assert market.next_deadline() is None

    market = new_market()
    run(market, [place("p", "g1", "bid", 10, 100, "gtd", T0 + 1000)])
    run(market, [amend("p", "g1", price=110)], at=T0 + 1)
    assert market.next_deadline() == T0 + 1000
    expired = run(market, [Tick()], at=T0 + 1000)
    assert summary(expired) == [("cancelled", "g1", 0, 10, CancelReason.EXPIRED)]
    assert isinstance(expired[0], OrderCancelled)
    assert expired[0].order_id == accepted.order_id


# --- property: random place/amend/cancel streams ---------------------------------------------

PARTICIPANTS = ("alice", "bob", "carol")


@st.composite
def operations(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(["place", "place", "place", "amend", "amend", "cancel", "tick"]))
    who = draw(st.sampled_from(PARTICIPANTS))
    if kind == "place":
        side = draw(st.sampled_from(["bid", "offer"]))
        market_order = draw(st.booleans()) and draw(st.booleans())  # a quarter are market
        price = None if market_order else draw(st.integers(95, 105)) * TICK
        tif = draw(st.sampled_from(["gtc", "gtc", "ioc", "fok", "gtd"]))
        if market_order and tif == "gtd":
            tif = "gtc"
        post_only = price is not None and tif in ("gtc", "gtd") and draw(st.booleans())
        expiry = draw(st.integers(1, 100)) if tif == "gtd" else None
        return ("place", who, side, draw(st.integers(1, 6)) * LOT, price, tif, expiry, post_only)
    if kind == "amend":
        quantity = draw(st.none() | st.integers(1, 6).map(lambda q: q * LOT))
        price = draw(st.none() | st.integers(95, 105).map(lambda p: p * TICK))
        return ("amend", who, draw(st.integers(0, 30)), quantity, price)
    if kind == "cancel":
        return ("cancel", who, draw(st.integers(0, 30)))
    return ("tick", draw(st.integers(1, 30)))


class Ledger:
    """Every order's quantities as the events tell them, checked against each other."""

    def __init__(self) -> None:
        self.total: dict[str, int] = {}
        self.filled: defaultdict[str, int] = defaultdict(int)
        self.open: dict[str, int] = {}
        self.ended: set[str] = set()
        self.bought = 0
        self.sold = 0

    def read(self, events: list[Event]) -> None:
        for e in events:
            if isinstance(e, OrderAccepted):
                self.total[e.order_id] = self.open[e.order_id] = e.quantity
            elif isinstance(e, Deal):
                assert e.quantity > 0
                for order_id in (e.bid_order_id, e.offer_order_id):
                    assert order_id not in self.ended
                    self.filled[order_id] += e.quantity
                    self.open[order_id] -= e.quantity
                    assert self.open[order_id] >= 0, e
                self.bought += e.quantity
                self.sold += e.quantity
            elif isinstance(e, OrderAmended):
                assert e.order_id not in self.ended
                self.open[e.order_id] = e.open_quantity
                self.total[e.order_id] = self.filled[e.order_id] + e.open_quantity
            elif isinstance(e, OrderCancelled):
                assert (e.filled_quantity, e.cancelled_quantity) == (
                    self.filled[e.order_id],
                    self.open[e.order_id],
                ), e
                self.open[e.order_id] = 0
                self.ended.add(e.order_id)
            elif isinstance(e, OrderDone):
                assert self.open[e.order_id] == 0, e
                assert e.filled_quantity == self.filled[e.order_id] == self.total[e.order_id]
                self.ended.add(e.order_id)

    def check(self, market: Market) -> None:
        book = venue(market).book
        best_bid, best_offer = book.best_bid(), book.best_offer()
        assert best_bid is None or best_offer is None or best_bid < best_offer, "crossed"
        assert self.bought == self.sold
        ids = venue(market).order_id
        on_book = {ids(o): o for side in Side for o in book.resting_orders(side)}
        for order_id, total in self.total.items():
            if order_id in self.ended:
                assert order_id not in on_book
                continue
            order = on_book[order_id]  # not ended: it must rest, with what the events say
            assert order.remaining == self.open[order_id] > 0
            assert order.quantity == total == self.filled[order_id] + order.remaining
        for side in Side:
            shown = sum(level.quantity for level in book.depth(side, levels=1_000))
            assert shown == sum(o.remaining for o in on_book.values() if o.side is side)


def check_time_in_force(command: PlaceOrder, events: list[Event], market: Market) -> None:
    """What each option promises about the order's own arrival."""
    mine = [e for e in events if getattr(e, "client_order_id", None) == command.client_order_id]
    if not mine or isinstance(mine[0], CommandRejected):
        assert len(events) == 1 or isinstance(events[0], OrderCancelled)  # an expiry first
        return
    assert isinstance(mine[0], OrderAccepted)
    order_id = mine[0].order_id
    ids = venue(market).order_id
    still_resting = any(
        ids(o) == order_id for side in Side for o in venue(market).book.resting_orders(side)
    )
    if command.time_in_force == "fok":
        killed = summary([mine[-1]]) == [
            ("cancelled", command.client_order_id, 0, command.quantity, CancelReason.FILL_OR_KILL)
        ]
        assert killed or isinstance(mine[-1], OrderDone), events
        if killed:  # nothing at all happened but the acceptance and the kill
            assert len(mine) == 2, events
            assert events[-2:] == mine, events
    if command.time_in_force in ("ioc", "fok") or command.price is None:
        assert not still_resting
    if command.post_only:
        assert not any(isinstance(e, Deal | OrderCancelled) for e in events[-len(mine) :])


@settings(max_examples=200, deadline=None)
@given(st.lists(operations(), min_size=20, max_size=100), st.randoms(use_true_random=False))
def test_random_place_amend_cancel_streams_keep_the_book_sound(
    ops: list[tuple[Any, ...]], rng: Random
) -> None:
    """Any stream of orders, amends, cancels and ticks keeps the book uncrossed and every
    order's quantity accounted for (filled + open + cancelled), across a snapshot too."""
    market = new_market()
    ledger = Ledger()
    now = T0
    placed: list[tuple[str, str]] = []
    for offset, op in enumerate(ops, start=1):
        command: Command
        if op[0] == "place":
            _, who, side, quantity, price, tif, expiry, post_only = op
            client_id = f"c{offset}"
            placed.append((who, client_id))
            expires = None if expiry is None else now + expiry
            command = place(who, client_id, side, quantity, price, tif, expires, post_only)
        elif op[0] in ("amend", "cancel"):
            who, index = op[1], op[2]
            # Mostly a live order by its owner; sometimes an ended one, or someone else's.
            live = [t for t in placed if venue(market).live_order(*t) is not None]
            pool = live if live and index % 5 else placed
            owner, client_id = pool[index % len(pool)] if pool else (who, "none")
            sender = who if index % 7 == 0 else owner
            if op[0] == "amend":
                command = AmendOrder(TECH, sender, client_id, *op[3:])
            else:
                command = CancelOrder(TECH, sender, client_id)
        else:
            now += op[1]
            command = Tick()
        now += rng.choice((0, 0, 1, 2))  # time passes between records too, expiring gtd orders
        events = market.apply(command, now, offset)
        ledger.read(events)
        ledger.check(market)
        if isinstance(command, PlaceOrder):
            check_time_in_force(command, events, market)
    restored = Market.from_snapshot(market.snapshot())
    assert restored.state_digest() == market.state_digest()
    assert restored.next_deadline() == market.next_deadline()
    final = now + 1_000
    expired = market.apply(Tick(), final, len(ops) + 1)
    assert expired == restored.apply(Tick(), final, len(ops) + 1)
    ledger.read(expired)
    ledger.check(market)
    assert market.next_deadline() is None
