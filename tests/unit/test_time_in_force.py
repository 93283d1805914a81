"""Time in force (gtc, ioc, fok, gtd) and post-only in the continuous book, through the market.

Tables follow the examples exchange rulebooks give for each order type; every scenario runs
through ``Market.apply`` with log times, so GTD expiry is fired by the market's deadlines.
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.core.codec import encode
from engine.core.market import Market
from engine.core.mechanisms.continuous import ContinuousVenue
from schemas.commands import (
    AmendOrder,
    CancelOrder,
    Command,
    ListTechnology,
    ManageListing,
    PlaceOrder,
    Tick,
)
from schemas.common import CancelReason, RejectReason, Side
from schemas.events import (
    CommandRejected,
    Deal,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderDone,
)

T0 = 1_700_000_000_000
TECH = "T1"
TICK = 10

#: What a test compares of an event: its kind and the fields that matter to the rules.
Summary = tuple[Any, ...]


def place(
    who: str,
    client_id: str,
    side: str,
    quantity: int,
    price: int | None = None,
    tif: str = "gtc",
    expires_at_ms: int | None = None,
    post_only: bool = False,
) -> PlaceOrder:
    """A limit order, or a market order when ``price`` is None."""
    order_type = "market" if price is None else "limit"
    return PlaceOrder(
        TECH, who, client_id, side, quantity, order_type, price, tif, expires_at_ms, post_only
    )


def summary(events: list[Event]) -> list[Summary]:
    out: list[Summary] = []
    for e in events:
        if isinstance(e, OrderAccepted):
            out.append(("accepted", e.client_order_id))
        elif isinstance(e, Deal):
            out.append(
                ("deal", e.bid_client_order_id, e.offer_client_order_id, e.quantity, e.price)
            )
        elif isinstance(e, OrderCancelled):
            out.append(
                ("cancelled", e.client_order_id, e.filled_quantity, e.cancelled_quantity, e.reason)
            )
        elif isinstance(e, OrderDone):
            out.append(("done", e.client_order_id, e.filled_quantity))
        elif isinstance(e, CommandRejected):
            out.append(("rejected", e.client_order_id, e.reason))
        elif isinstance(e, OrderAmended):
            out.append(("amended", e.client_order_id, e.open_quantity, e.price, e.priority_kept))
        else:
            out.append((type(e).__name__,))
    return out


def new_market(reserve_price: int | None = None) -> Market:
    market = Market()
    market.apply(
        ListTechnology(TECH, "seller", "Tech", TICK, 1, "continuous", reserve_price), T0, 0
    )
    return market


def venue(market: Market) -> ContinuousVenue:
    v = market.venue(TECH)
    assert isinstance(v, ContinuousVenue)
    return v


def resting(market: Market) -> list[tuple[str, str, int | None, int]]:
    """Every resting order, bids then offers, each side in priority order."""
    book = venue(market).book
    return [
        (o.client_order_id, o.side.value, o.price, o.remaining)
        for side in (Side.BID, Side.OFFER)
        for o in book.resting_orders(side)
    ]


def run(market: Market, commands: list[Command], at: int = T0) -> list[Event]:
    events: list[Event] = []
    for command in commands:
        events.extend(market.apply(command, at, 0))
    return events


ACCEPTED_THEN_KILLED = [
    ("accepted", "b"),
    ("cancelled", "b", 0, 8, CancelReason.FILL_OR_KILL),
]

#: (case, resting orders, the order under test, its events, the book after it).
SCENARIOS = [
    pytest.param(
        [place("s", "s1", "offer", 5, 100)],
        place("b", "b", "bid", 8, 100, "ioc"),
        [
            ("accepted", "b"),
            ("deal", "b", "s1", 5, 100),
            ("done", "s1", 5),
            ("cancelled", "b", 5, 3, CancelReason.IMMEDIATE_OR_CANCEL),
        ],
        [],
        id="ioc-fills-what-crosses-and-cancels-the-rest",
    ),
    pytest.param(
        [place("s", "s1", "offer", 5, 100), place("s", "s2", "offer", 5, 120)],
        place("b", "b", "bid", 5, 110, "ioc"),
        [("accepted", "b"), ("deal", "b", "s1", 5, 100), ("done", "s1", 5), ("done", "b", 5)],
        [("s2", "offer", 120, 5)],
        id="ioc-that-fills-completely-is-done",
    ),
    pytest.param(
        [place("s", "s1", "offer", 5, 110), place("x", "x1", "bid", 5, 100)],
        place("b", "b", "bid", 5, 100, "ioc"),
        [("accepted", "b"), ("cancelled", "b", 0, 5, CancelReason.IMMEDIATE_OR_CANCEL)],
        [("x1", "bid", 100, 5), ("s1", "offer", 110, 5)],
        id="ioc-that-crosses-nothing-never-rests-even-beside-a-level",
    ),
    pytest.param(
        [place("s", "s1", "offer", 3, 100), place("s", "s2", "offer", 3, 110)],
        place("b", "b", "bid", 8, 110, "fok"),
        ACCEPTED_THEN_KILLED,
        [("s1", "offer", 100, 3), ("s2", "offer", 110, 3)],
        id="fok-killed-when-the-book-is-short-nothing-trades",
    ),
    pytest.param(
        [place("s", "s1", "offer", 3, 100), place("s", "s2", "offer", 6, 120)],
        place("b", "b", "bid", 8, 110, "fok"),
        ACCEPTED_THEN_KILLED,
        [("s1", "offer", 100, 3), ("s2", "offer", 120, 6)],
        id="fok-counts-only-prices-within-its-limit",
    ),
    pytest.param(
        [place("s", "s1", "offer", 3, 100), place("t", "t1", "offer", 6, 110)],
        place("b", "b", "bid", 8, 110, "fok"),
        [
            ("accepted", "b"),
            ("deal", "b", "s1", 3, 100),
            ("done", "s1", 3),
            ("deal", "b", "t1", 5, 110),
            ("done", "b", 8),
        ],
        [("t1", "offer", 110, 1)],
        id="fok-fills-across-levels",
    ),
    pytest.param(
        [place("b", "own", "offer", 5, 100), place("s", "s1", "offer", 5, 100)],
        place("b", "b", "bid", 8, 100, "fok"),
        ACCEPTED_THEN_KILLED,
        [("own", "offer", 100, 5), ("s1", "offer", 100, 5)],
        id="fok-leaves-out-own-orders-and-a-kill-cancels-none-of-them",
    ),
    pytest.param(
        [place("b", "own", "offer", 5, 100), place("s", "s1", "offer", 8, 100)],
        place("b", "b", "bid", 8, 100, "fok"),
        [
            ("accepted", "b"),
            ("cancelled", "own", 0, 5, CancelReason.SELF_TRADE_PREVENTED),
            ("deal", "b", "s1", 8, 100),
            ("done", "s1", 8),
            ("done", "b", 8),
        ],
        [],
        id="fok-that-fills-cancels-own-orders-it-meets-like-any-order",
    ),
    pytest.param(
        [place("s", "s1", "offer", 3, 100)],
        place("b", "b", "bid", 8, None, "fok"),
        ACCEPTED_THEN_KILLED,
        [("s1", "offer", 100, 3)],
        id="market-fok-killed",
    ),
    pytest.param(
        [place("s", "s1", "offer", 3, 100), place("s", "s2", "offer", 9, 500)],
        place("b", "b", "bid", 8, None, "fok"),
        [
            ("accepted", "b"),
            ("deal", "b", "s1", 3, 100),
            ("done", "s1", 3),
            ("deal", "b", "s2", 5, 500),
            ("done", "b", 8),
        ],
        [("s2", "offer", 500, 4)],
        id="market-fok-fills-at-any-price",
    ),
    pytest.param(
        [place("s", "s1", "offer", 3, 100)],
        place("b", "b", "bid", 8, None, "ioc"),
        [
            ("accepted", "b"),
            ("deal", "b", "s1", 3, 100),
            ("done", "s1", 3),
            ("cancelled", "b", 3, 5, CancelReason.MARKET_ORDER_UNFILLED),
        ],
        [],
        id="market-ioc-is-a-market-order",
    ),
    pytest.param(
        [place("s", "s1", "offer", 3, 100)],
        place("b", "b", "bid", 8, 100, "gtd", T0 + 1000),
        [("accepted", "b"), ("deal", "b", "s1", 3, 100), ("done", "s1", 3)],
        [("b", "bid", 100, 5)],
        id="gtd-trades-then-rests",
    ),
    pytest.param(
        [place("s", "s1", "offer", 5, 110)],
        place("b", "b", "bid", 5, 100, post_only=True),
        [("accepted", "b")],
        [("b", "bid", 100, 5), ("s1", "offer", 110, 5)],
        id="post-only-that-does-not-cross-rests",
    ),
    pytest.param(
        [place("s", "s1", "offer", 5, 100)],
        place("b", "b", "bid", 5, 100, post_only=True),
        [("rejected", "b", RejectReason.POST_ONLY_WOULD_TRADE)],
        [("s1", "offer", 100, 5)],
        id="post-only-that-would-trade-is-refused",
    ),
    pytest.param(
        [place("b", "own", "offer", 5, 90)],
        place("b", "b", "bid", 5, 100, post_only=True),
        [("rejected", "b", RejectReason.POST_ONLY_WOULD_TRADE)],
        [("own", "offer", 90, 5)],
        id="post-only-meeting-only-own-orders-is-refused-and-cancels-none",
    ),
    pytest.param(
        [place("s", "s1", "offer", 5, 110)],
        place("b", "b", "bid", 5, 100, "gtd", T0 + 1, post_only=True),
        [("accepted", "b")],
        [("b", "bid", 100, 5), ("s1", "offer", 110, 5)],
        id="post-only-gtd-rests",
    ),
]


@pytest.mark.parametrize(("book", "order", "expected", "after"), SCENARIOS)
def test_time_in_force_scenarios(
    book: list[Command],
    order: PlaceOrder,
    expected: list[Summary],
    after: list[tuple[str, str, int | None, int]],
) -> None:
    """Each rulebook example gives exactly its events and leaves exactly its book."""
    market = new_market()
    run(market, book)
    assert summary(run(market, [order])) == expected
    assert resting(market) == after


REFUSALS = [
    pytest.param(
        place("b", "b", "bid", 5, 100, "day"), RejectReason.UNKNOWN_TIME_IN_FORCE, id="day"
    ),
    pytest.param(
        place("b", "b", "bid", 5, 100, "GTC"), RejectReason.UNKNOWN_TIME_IN_FORCE, id="GTC"
    ),
    pytest.param(
        place("b", "b", "bid", 5, 100, "gtd"), RejectReason.INVALID_EXPIRY, id="gtd-no-time"
    ),
    pytest.param(
        place("b", "b", "bid", 5, 100, "gtd", T0), RejectReason.INVALID_EXPIRY, id="gtd-now"
    ),
    pytest.param(
        place("b", "b", "bid", 5, 100, "gtd", T0 - 1), RejectReason.INVALID_EXPIRY, id="gtd-past"
    ),
    pytest.param(
        place("b", "b", "bid", 5, 100, "gtc", T0 + 1), RejectReason.INVALID_EXPIRY, id="gtc-expiry"
    ),
    pytest.param(
        place("b", "b", "bid", 5, 100, "ioc", T0 + 1), RejectReason.INVALID_EXPIRY, id="ioc-expiry"
    ),
    pytest.param(
        place("b", "b", "bid", 5, None, "gtd", T0 + 1), RejectReason.INVALID_EXPIRY, id="mkt-gtd"
    ),
    pytest.param(
        place("b", "b", "bid", 5, 100, "ioc", post_only=True),
        RejectReason.NOT_SUPPORTED_BY_MECHANISM,
        id="post-only-ioc",
    ),
    pytest.param(
        place("b", "b", "bid", 5, 100, "fok", post_only=True),
        RejectReason.NOT_SUPPORTED_BY_MECHANISM,
        id="post-only-fok",
    ),
    pytest.param(
        place("b", "b", "bid", 5, None, post_only=True),
        RejectReason.NOT_SUPPORTED_BY_MECHANISM,
        id="post-only-market",
    ),
    pytest.param(
        place("b", "b", "bid", 0, 100, "day"), RejectReason.QUANTITY_NOT_POSITIVE, id="qty-first"
    ),
]


@pytest.mark.parametrize(("order", "reason"), REFUSALS)
def test_refused_options_change_nothing(order: PlaceOrder, reason: RejectReason) -> None:
    """A refused order gets its reason code, takes no id and no order number, and trades nothing."""
    market = new_market()
    run(market, [place("s", "s1", "offer", 5, 110)])
    assert summary(run(market, [order])) == [("rejected", "b", reason)]
    assert resting(market) == [("s1", "offer", 110, 5)]
    (accepted, *_) = run(market, [place("b", "b", "bid", 5, 100)])
    assert isinstance(accepted, OrderAccepted)
    assert accepted.order_id == f"{TECH}:o2", "the refused order used no order number"


def test_gtd_expires_before_a_record_stamped_at_its_expiry() -> None:
    """An order with expires_at_ms=T is cancelled before a record stamped T is applied."""
    market = new_market()
    run(market, [place("b", "b", "bid", 5, 100, "gtd", T0 + 1000)])
    assert market.next_deadline() == T0 + 1000
    assert run(market, [Tick()], at=T0 + 999) == []
    events = run(market, [place("s", "s1", "offer", 5, 100)], at=T0 + 1000)
    assert summary(events) == [
        ("cancelled", "b", 0, 5, CancelReason.EXPIRED),
        ("accepted", "s1"),
    ]
    assert events[0].timestamp_ms == T0 + 1000
    assert [e.seq for e in events] == [3, 4]
    assert resting(market) == [("s1", "offer", 100, 5)]
    assert market.next_deadline() is None


def test_gtd_still_trades_one_millisecond_before_its_expiry() -> None:
    """A record stamped T-1 still meets the order, and a filled gtd order never expires."""
    market = new_market()
    run(market, [place("b", "b", "bid", 5, 100, "gtd", T0 + 1000)])
    events = run(market, [place("s", "s1", "offer", 5, 100)], at=T0 + 999)
    assert summary(events) == [
        ("accepted", "s1"),
        ("deal", "b", "s1", 5, 100),
        ("done", "b", 5),
        ("done", "s1", 5),
    ]
    assert market.next_deadline() is None
    assert run(market, [Tick()], at=T0 + 5000) == []


def test_expiry_is_stamped_at_its_own_time_and_reports_partial_fills() -> None:
    """A tick long after the expiry cancels the order stamped at its expiry, with what it filled."""
    market = new_market()
    run(market, [place("b", "b", "bid", 5, 100, "gtd", T0 + 1000)])
    run(market, [place("s", "s1", "offer", 2, 100)], at=T0 + 10)
    events = run(market, [Tick()], at=T0 + 60_000)
    assert summary(events) == [("cancelled", "b", 2, 3, CancelReason.EXPIRED)]
    assert events[0].timestamp_ms == T0 + 1000


def test_expiries_fire_by_time_then_arrival() -> None:
    """Orders expire earliest first, ties in arrival order, whatever order they were placed in."""
    market = new_market()
    run(
        market,
        [
            place("p", "late", "bid", 1, 100, "gtd", T0 + 3000),
            place("p", "tie1", "bid", 1, 90, "gtd", T0 + 2000),
            place("q", "tie2", "offer", 1, 200, "gtd", T0 + 2000),
            place("p", "first", "bid", 1, 80, "gtd", T0 + 1000),
            place("p", "gtc", "bid", 1, 70),
        ],
    )
    events = run(market, [Tick()], at=T0 + 2500)
    assert summary(events) == [
        ("cancelled", who, 0, 1, CancelReason.EXPIRED) for who in ("first", "tie1", "tie2")
    ]
    assert [e.timestamp_ms for e in events] == [T0 + 1000, T0 + 2000, T0 + 2000]
    assert market.next_deadline() == T0 + 3000
    assert [o[0] for o in resting(market)] == ["late", "gtc"]


def test_cancelled_or_closed_gtd_orders_never_expire() -> None:
    """A gtd order that left the book early leaves no deadline behind."""
    market = new_market()
    run(
        market,
        [
            place("p", "a", "bid", 1, 100, "gtd", T0 + 1000),
            place("p", "b", "bid", 1, 90, "gtd", T0 + 2000),
        ],
    )
    run(market, [CancelOrder(TECH, "p", "a")], at=T0 + 1)
    assert market.next_deadline() == T0 + 2000
    closed = run(market, [ManageListing(TECH, "seller", "close")], at=T0 + 2)
    assert ("cancelled", "b", 0, 1, CancelReason.TECHNOLOGY_CLOSED) in summary(closed)
    assert market.next_deadline() is None
    assert run(market, [Tick()], at=T0 + 10_000) == []


def test_gtd_survives_a_snapshot_and_still_expires() -> None:
    """A restored market holds the same expiries and fires them byte for byte like the original."""
    original = new_market()
    run(
        original,
        [
            place("p", "a", "bid", 5, 100, "gtd", T0 + 1000),
            place("q", "b", "offer", 5, 120, "gtd", T0 + 1000, post_only=True),
            place("p", "c", "bid", 5, 90, "gtd", T0 + 500),
            place("p", "d", "bid", 5, 80),
        ],
    )
    run(original, [CancelOrder(TECH, "p", "c")], at=T0 + 1)
    state = venue(original).to_state()
    assert state.expiries == [(T0 + 1000, f"{TECH}:o1"), (T0 + 1000, f"{TECH}:o2")]
    assert state.post_only == [f"{TECH}:o2"]
    restored = Market.from_snapshot(original.snapshot())
    assert restored.state_digest() == original.state_digest()
    assert restored.next_deadline() == original.next_deadline() == T0 + 1000
    later: list[Command] = [
        AmendOrder(TECH, "q", "b", price=100),  # post-only: would trade, refused
        place("r", "r1", "offer", 2, 100),
        Tick(),
    ]
    for at, command in zip((T0 + 2, T0 + 3, T0 + 1000), later, strict=True):
        events = original.apply(command, at, 7)
        assert [encode(e) for e in restored.apply(command, at, 7)] == [encode(e) for e in events]
    assert summary(events) == [
        ("cancelled", "a", 2, 3, CancelReason.EXPIRED),
        ("cancelled", "b", 0, 5, CancelReason.EXPIRED),
    ]
    assert resting(restored) == resting(original) == [("d", "bid", 80, 5)]


def test_plain_orders_need_no_option_fields() -> None:
    """A plain gtc order placed with defaults is neither gtd nor post-only and sets no deadline."""
    market = new_market()
    run(market, [place("p", "a", "bid", 5, 100)])
    assert market.next_deadline() is None
    assert venue(market).to_state().expiries == []
    assert venue(market).to_state().post_only == []
