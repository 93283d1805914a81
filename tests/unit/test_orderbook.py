"""Example-based tests of the continuous limit order book (engine/orderbook.py)."""

from __future__ import annotations

from itertools import count

from engine.orderbook import DepthLevel, Execution, Order, OrderBook, SelfTradeCancel
from schemas.common import Side

_ids = count(1)


def bid(price: int | None, quantity: int, name: str | None = None) -> Order:
    order_id = name or f"b{next(_ids)}"
    return Order(order_id, "p-" + order_id, "c-" + order_id, Side.BID, price, quantity)


def offer(price: int | None, quantity: int, name: str | None = None) -> Order:
    order_id = name or f"o{next(_ids)}"
    return Order(order_id, "p-" + order_id, "c-" + order_id, Side.OFFER, price, quantity)


def trades(fills: list[Execution]) -> list[tuple[str, int, int]]:
    """Fills as (resting order id, quantity, price), the way the tests compare them."""
    return [
        (fill[0].order_id, fill[1], fill[2])
        for fill in fills
        if not isinstance(fill, SelfTradeCancel)
    ]


def ids(orders: list[Order]) -> list[str]:
    return [o.order_id for o in orders]


def test_empty_book_has_no_best_prices_and_no_depth() -> None:
    """A new book has no best bid, no best offer, no depth and no resting orders."""
    book = OrderBook()
    assert book.best_bid() is None
    assert book.best_offer() is None
    assert book.depth(Side.BID) == []
    assert book.depth(Side.OFFER) == []
    assert book.resting_orders(Side.BID) == []
    assert book.resting_orders(Side.OFFER) == []


def test_non_crossing_limit_orders_rest_without_fills() -> None:
    """Limit orders that do not cross rest in full and produce no fills."""
    book = OrderBook()
    b, o = bid(99, 5), offer(101, 7)
    assert book.place(b) == []
    assert book.place(o) == []
    assert (b.remaining, o.remaining) == (5, 7)
    assert ids(book.resting_orders(Side.BID)) == [b.order_id]
    assert ids(book.resting_orders(Side.OFFER)) == [o.order_id]


def test_price_priority_incoming_bid_takes_lowest_offer_first() -> None:
    """An incoming bid trades against the lowest offer first, whatever the arrival order."""
    book = OrderBook()
    book.place(offer(103, 5, "o103"))
    book.place(offer(101, 5, "o101"))
    book.place(offer(102, 5, "o102"))
    fills = book.place(bid(103, 12))
    assert trades(fills) == [("o101", 5, 101), ("o102", 5, 102), ("o103", 2, 103)]


def test_price_priority_incoming_offer_takes_highest_bid_first() -> None:
    """An incoming offer trades against the highest bid first, whatever the arrival order."""
    book = OrderBook()
    book.place(bid(97, 5, "b97"))
    book.place(bid(99, 5, "b99"))
    book.place(bid(98, 5, "b98"))
    fills = book.place(offer(97, 12))
    assert trades(fills) == [("b99", 5, 99), ("b98", 5, 98), ("b97", 2, 97)]


def test_time_priority_at_one_price() -> None:
    """At one price, the oldest resting order is filled first."""
    book = OrderBook()
    for name in ("first", "second", "third"):
        book.place(offer(100, 4, name))
    fills = book.place(bid(100, 10))
    assert trades(fills) == [("first", 4, 100), ("second", 4, 100), ("third", 2, 100)]
    assert ids(book.resting_orders(Side.OFFER)) == ["third"]


def test_partial_fill_of_resting_order_keeps_it_at_the_front() -> None:
    """A partially filled resting order keeps its remainder and its place in the queue."""
    book = OrderBook()
    old, young = offer(100, 10, "old"), offer(100, 10, "young")
    book.place(old)
    book.place(young)
    incoming = bid(100, 4)
    assert trades(book.place(incoming)) == [("old", 4, 100)]
    assert (old.remaining, old.quantity - old.remaining) == (6, 4)
    assert incoming.remaining == 0
    assert book.depth(Side.OFFER) == [DepthLevel(100, 16, 2)]
    assert trades(book.place(bid(100, 7))) == [("old", 6, 100), ("young", 1, 100)]
    assert old.remaining == 0
    assert young.remaining == 9


def test_partial_fill_of_incoming_limit_order_rests_remainder() -> None:
    """An incoming limit order that is only partly filled rests its remainder at its price."""
    book = OrderBook()
    resting = offer(100, 3)
    book.place(resting)
    incoming = bid(101, 10)
    assert trades(book.place(incoming)) == [(resting.order_id, 3, 100)]
    assert resting.remaining == 0
    assert (incoming.remaining, incoming.quantity - incoming.remaining) == (7, 3)
    assert book.best_bid() == 101
    assert book.best_offer() is None
    assert book.depth(Side.BID) == [DepthLevel(101, 7, 1)]
    assert book.resting_orders(Side.BID) == [incoming]


def test_trade_price_is_the_resting_orders_price() -> None:
    """The trade happens at the resting order's price, not the aggressive incoming price."""
    book = OrderBook()
    book.place(offer(98, 5, "cheap"))
    assert trades(book.place(bid(105, 5))) == [("cheap", 5, 98)]
    book.place(bid(102, 5, "generous"))
    assert trades(book.place(offer(95, 5))) == [("generous", 5, 102)]


def test_limit_order_does_not_trade_beyond_its_price() -> None:
    """A limit bid stops at its limit and rests the rest rather than trading at a worse price."""
    book = OrderBook()
    book.place(offer(100, 5, "o100"))
    book.place(offer(101, 5, "o101"))
    incoming = bid(100, 8)
    assert trades(book.place(incoming)) == [("o100", 5, 100)]
    assert incoming.remaining == 3
    assert (book.best_bid(), book.best_offer()) == (100, 101)


def test_market_order_sweeps_several_levels_and_never_rests() -> None:
    """A market order walks through price levels best first and its unfilled rest never rests."""
    book = OrderBook()
    book.place(offer(100, 2, "o100"))
    book.place(offer(101, 3, "o101"))
    book.place(offer(103, 4, "o103"))
    market = bid(None, 20)
    fills = book.place(market)
    assert trades(fills) == [("o100", 2, 100), ("o101", 3, 101), ("o103", 4, 103)]
    assert market.remaining == 11
    assert book.resting_orders(Side.BID) == []
    assert book.resting_orders(Side.OFFER) == []
    assert book.best_bid() is None
    assert book.best_offer() is None
    assert book.depth(Side.BID) == []


def test_market_offer_sweeps_bids_best_first() -> None:
    """A market offer hits the highest bids first and can fill completely."""
    book = OrderBook()
    book.place(bid(99, 5, "b99"))
    book.place(bid(100, 5, "b100"))
    market = offer(None, 7)
    assert trades(book.place(market)) == [("b100", 5, 100), ("b99", 2, 99)]
    assert market.remaining == 0
    assert book.depth(Side.BID) == [DepthLevel(99, 3, 1)]
    assert book.resting_orders(Side.OFFER) == []


def test_market_order_on_empty_book_has_no_fills_and_does_not_rest() -> None:
    """A market order against an empty opposite side gets no fills and leaves nothing behind."""
    book = OrderBook()
    book.place(bid(99, 5, "own-side"))
    market = bid(None, 10)
    assert book.place(market) == []
    assert market.remaining == 10
    assert ids(book.resting_orders(Side.BID)) == ["own-side"]
    assert book.depth(Side.BID) == [DepthLevel(99, 5, 1)]
    assert book.best_offer() is None

    empty = OrderBook()
    assert empty.place(offer(None, 3)) == []
    assert empty.resting_orders(Side.OFFER) == []
    assert empty.best_offer() is None


def test_cancel_returns_open_quantity_and_removes_level_from_depth() -> None:
    """Cancel returns the open (unfilled) quantity and an emptied price drops out of depth."""
    book = OrderBook()
    target = offer(101, 10)
    book.place(offer(102, 4))
    book.place(target)
    book.place(bid(101, 3))  # fills 3 of the target
    assert book.depth(Side.OFFER) == [DepthLevel(101, 7, 1), DepthLevel(102, 4, 1)]
    assert book.cancel(target) == 7
    assert target.remaining == 0
    assert book.depth(Side.OFFER) == [DepthLevel(102, 4, 1)]
    assert book.best_offer() == 102
    assert target not in book.resting_orders(Side.OFFER)


def test_cancel_one_of_several_orders_keeps_the_level() -> None:
    """Cancelling one order of a level lowers its totals but keeps the level and the others."""
    book = OrderBook()
    a, b, c = bid(100, 5, "a"), bid(100, 6, "b"), bid(100, 7, "c")
    for order in (a, b, c):
        book.place(order)
    assert book.cancel(b) == 6
    assert book.depth(Side.BID) == [DepthLevel(100, 12, 2)]
    assert ids(book.resting_orders(Side.BID)) == ["a", "c"]
    assert book.best_bid() == 100


def test_cancel_of_a_non_best_level_removes_exactly_that_level() -> None:
    """Cancelling the only order of a middle or worst level removes that price and no other."""
    book = OrderBook()
    middle, worst = bid(99, 5), bid(97, 5)
    for order in (bid(100, 5), bid(98, 5), middle, worst):
        book.place(order)
    assert book.cancel(middle) == 5
    assert [level.price for level in book.depth(Side.BID)] == [100, 98, 97]
    assert book.cancel(worst) == 5
    assert [level.price for level in book.depth(Side.BID)] == [100, 98]
    assert book.best_bid() == 100
    fills = book.place(offer(97, 10))
    assert [price for _, _, price in trades(fills)] == [100, 98]


def test_cancel_of_filled_or_cancelled_order_returns_zero() -> None:
    """Cancelling an order already filled, already cancelled, or a market order returns 0."""
    book = OrderBook()
    filled = offer(100, 5)
    book.place(filled)
    book.place(bid(100, 5))
    assert filled.remaining == 0
    assert book.cancel(filled) == 0

    cancelled = offer(100, 5)
    book.place(cancelled)
    assert book.cancel(cancelled) == 5
    assert book.cancel(cancelled) == 0

    market = bid(None, 5)
    book.place(market)
    assert market.remaining == 5
    assert book.cancel(market) == 0

    assert book.depth(Side.OFFER) == []
    assert book.depth(Side.BID) == []
    assert book.best_bid() is None
    assert book.best_offer() is None


def test_cancelled_order_is_skipped_by_later_matching() -> None:
    """A cancelled order never trades: matching skips it and fills the next one in time."""
    book = OrderBook()
    first, second, third = offer(100, 5, "first"), offer(100, 5, "second"), offer(100, 5, "third")
    for order in (first, second, third):
        book.place(order)
    book.cancel(first)
    book.cancel(third)
    incoming = bid(100, 8)
    assert trades(book.place(incoming)) == [("second", 5, 100)]
    assert incoming.remaining == 3
    assert book.best_offer() is None
    assert book.depth(Side.BID) == [DepthLevel(100, 3, 1)]
    assert book.resting_orders(Side.BID) == [incoming]


def _offers_at_100_with_a_cancelled_one_queued() -> OrderBook:
    """Offers ``live`` then ``dead`` (cancelled, still queued) at 100, and ``next`` at 101."""
    book = OrderBook()
    live, dead = offer(100, 5, "live"), offer(100, 5, "dead")
    book.place(live)
    book.place(dead)
    book.place(offer(101, 5, "next"))
    book.cancel(dead)
    return book


def test_level_with_only_cancelled_orders_left_disappears_after_matching() -> None:
    """A level whose live orders all fill leaves the book even if cancelled orders remain queued."""
    book = _offers_at_100_with_a_cancelled_one_queued()
    assert trades(book.place(bid(100, 5))) == [("live", 5, 100)]
    assert book.best_offer() == 101
    assert book.depth(Side.OFFER) == [DepthLevel(101, 5, 1)]
    assert ids(book.resting_orders(Side.OFFER)) == ["next"]
    assert trades(book.place(bid(101, 1))) == [("next", 1, 101)]


def test_a_new_price_after_levels_emptied_shows_only_its_own_orders() -> None:
    """Emptied levels are reused for new prices: none may bring back an old order or total."""
    book = _offers_at_100_with_a_cancelled_one_queued()
    book.place(bid(100, 5))  # the 100 level empties with "dead" still queued
    cancelled = bid(90, 7, "cancelled")
    book.place(cancelled)
    book.cancel(cancelled)  # the 90 level empties by a cancel
    for price in (95, 96, 97):
        book.place(bid(price, 2, f"new{price}"))
    assert book.depth(Side.BID) == [
        DepthLevel(97, 2, 1),
        DepthLevel(96, 2, 1),
        DepthLevel(95, 2, 1),
    ]
    assert ids(book.resting_orders(Side.BID)) == ["new97", "new96", "new95"]
    assert trades(book.place(offer(None, 6))) == [
        ("new97", 2, 97),
        ("new96", 2, 96),
        ("new95", 2, 95),
    ]
    assert book.depth(Side.OFFER) == [DepthLevel(101, 5, 1)]


def test_depth_aggregates_per_price_bids_descending_offers_ascending() -> None:
    """Depth sums live quantity and counts orders per price; bids best (high) first, offers low."""
    book = OrderBook()
    for price, quantity in ((98, 1), (100, 2), (99, 3), (100, 4), (98, 5)):
        book.place(bid(price, quantity))
    for price, quantity in ((103, 1), (101, 2), (102, 3), (101, 4), (103, 5)):
        book.place(offer(price, quantity))
    assert book.depth(Side.BID) == [
        DepthLevel(100, 6, 2),
        DepthLevel(99, 3, 1),
        DepthLevel(98, 6, 2),
    ]
    assert book.depth(Side.OFFER) == [
        DepthLevel(101, 6, 2),
        DepthLevel(102, 3, 1),
        DepthLevel(103, 6, 2),
    ]


def test_resting_orders_are_in_priority_order() -> None:
    """resting_orders lists best price first and, within a price, oldest first."""
    book = OrderBook()
    for name, price in (("a", 99), ("b", 100), ("c", 99), ("d", 100), ("e", 98)):
        book.place(bid(price, 1, name))
    assert ids(book.resting_orders(Side.BID)) == ["b", "d", "a", "c", "e"]
    for name, price in (("f", 102), ("g", 101), ("h", 102), ("i", 101)):
        book.place(offer(price, 1, name))
    assert ids(book.resting_orders(Side.OFFER)) == ["g", "i", "f", "h"]


def test_depth_levels_limit() -> None:
    """depth(levels=n) returns only the n best prices, and nothing for n <= 0."""
    book = OrderBook()
    for price in range(90, 100):
        book.place(bid(price, 1))
    for price in range(101, 113):
        book.place(offer(price, 1))
    assert len(book.depth(Side.BID)) == 10  # the default
    assert len(book.depth(Side.OFFER)) == 10
    assert [lv.price for lv in book.depth(Side.BID, levels=3)] == [99, 98, 97]
    assert [lv.price for lv in book.depth(Side.OFFER, levels=3)] == [101, 102, 103]
    assert [lv.price for lv in book.depth(Side.OFFER, levels=1)] == [101]
    assert len(book.depth(Side.OFFER, levels=50)) == 12
    assert book.depth(Side.BID, levels=0) == []
    assert book.depth(Side.OFFER, levels=-1) == []


def test_best_bid_and_best_offer_follow_placements_fills_and_cancels() -> None:
    """best_bid/best_offer move as better orders arrive, levels are consumed and orders cancel."""
    book = OrderBook()
    low_bid, high_bid = bid(98, 5), bid(99, 5)
    book.place(low_bid)
    assert book.best_bid() == 98
    book.place(high_bid)
    assert book.best_bid() == 99
    book.place(bid(97, 5))
    assert book.best_bid() == 99  # a worse bid does not move the best

    book.place(offer(103, 5))
    assert book.best_offer() == 103
    book.place(offer(101, 5))
    assert book.best_offer() == 101

    book.place(offer(99, 5))  # consumes the whole 99 bid level
    assert book.best_bid() == 98
    assert book.best_offer() == 101

    book.cancel(low_bid)
    assert book.best_bid() == 97

    book.place(offer(96, 7))  # eats the 97 bid and rests 2 at 96
    assert book.best_bid() is None
    assert book.best_offer() == 96


def test_cancelled_orders_behind_a_live_one_do_not_pile_up() -> None:
    """Replacing an order many times behind a long-lived one keeps the level's queue short."""
    book = OrderBook()
    book.place(Order("first", "p", "c0", Side.BID, 100, 5))
    for i in range(10_000):
        order = Order(f"o{i}", "q", f"c{i}", Side.BID, 100, 1)
        book.place(order)
        assert book.cancel(order) == 1
    level = book._bid_levels[100]
    assert len(level.orders) < 200
    assert book.depth(Side.BID) == [DepthLevel(100, 5, 1)]


def test_cancel_of_an_order_this_book_never_rested_changes_nothing() -> None:
    """A cancel for an unknown price level returns 0 instead of corrupting the book."""
    book = OrderBook()
    book.place(Order("a", "p", "c", Side.BID, 100, 5))
    assert book.cancel(Order("x", "p", "x", Side.BID, 101, 3)) == 0
    assert book.depth(Side.BID) == [DepthLevel(100, 5, 1)]


def test_self_trade_prevention_cancels_the_resting_order_and_matching_goes_on() -> None:
    """With prevention on, an order skips (and cancels) its own participant's resting order."""
    book = OrderBook(self_trade_prevention=True)
    own = Order("own", "p", "c1", Side.OFFER, 100, 4)
    other = Order("other", "q", "c2", Side.OFFER, 100, 5)
    book.place(own)
    book.place(other)
    incoming = Order("in", "p", "c3", Side.BID, 100, 3)
    fills = book.place(incoming)
    assert fills == [SelfTradeCancel(own, 4), (other, 3, 100)]
    assert own.remaining == 0
    assert book.depth(Side.OFFER) == [DepthLevel(100, 2, 1)]


def test_without_self_trade_prevention_a_participant_trades_with_itself() -> None:
    """The plain book (the default) matches by price and time only."""
    book = OrderBook()
    own = Order("own", "p", "c1", Side.OFFER, 100, 4)
    book.place(own)
    assert book.place(Order("in", "p", "c2", Side.BID, 100, 3)) == [(own, 3, 100)]
