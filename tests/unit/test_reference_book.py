"""The benchmark's reference book (bench/reference_book.py) fills exactly like engine.orderbook:
issue 11's "fills identical to a reference matcher", on the benchmark's own seeded streams."""

from __future__ import annotations

import pytest

from bench.matching import CANCEL, BookCommand, deep_orders, issue_stream
from bench.reference_book import ReferenceBook, ReferenceFill
from engine.orderbook import Order, OrderBook, SelfTradeCancel
from schemas.common import Side


def _engine_fills(commands: list[BookCommand]) -> tuple[list[ReferenceFill], int]:
    book = OrderBook()
    orders: dict[int, Order] = {}
    fills: list[ReferenceFill] = []
    for kind, order_id, is_bid, price, quantity in commands:
        if kind == CANCEL:
            book.cancel(orders[order_id])
            continue
        side = Side.BID if is_bid else Side.OFFER
        order = orders[order_id] = Order(str(order_id), "p", str(order_id), side, price, quantity)
        for execution in book.place(order):
            assert not isinstance(execution, SelfTradeCancel)
            resting, traded, at = execution
            fills.append((order_id, int(resting.order_id), traded, at))
    resting_count = len(book.resting_orders(Side.BID)) + len(book.resting_orders(Side.OFFER))
    return fills, resting_count


def _reference_fills(commands: list[BookCommand]) -> tuple[list[ReferenceFill], int]:
    book = ReferenceBook()
    fills: list[ReferenceFill] = []
    for kind, order_id, is_bid, price, quantity in commands:
        if kind == CANCEL:
            book.cancel(order_id)
        else:
            fills.extend(book.place(order_id, is_bid, price, quantity))
    return fills, book.resting()


@pytest.mark.parametrize("seed", [1, 7, 42, 2024])
def test_thin_stream_fills_match_the_engine_book(seed: int) -> None:
    """On the issue's 70/22/8 stream the two books make the same fills and leave as many orders."""
    commands = issue_stream(seed, 20_000)
    engine, reference = _engine_fills(commands), _reference_fills(commands)
    assert engine[0], "the stream trades"
    assert engine == reference


@pytest.mark.parametrize("seed", [3, 11])
def test_deep_book_fills_match_the_engine_book(seed: int) -> None:
    """With a resting book under the stream (market orders sweep into it) fills still agree."""
    commands = deep_orders(5_000) + issue_stream(seed, 20_000, first_id=5_000, half_spread=12)
    assert _engine_fills(commands) == _reference_fills(commands)


def test_cancel_of_a_filled_or_unknown_order_changes_nothing() -> None:
    """Cancelling twice, or an order that traded away, returns 0 like the engine's book."""
    book = ReferenceBook()
    assert book.place(1, True, 100, 5) == []
    assert book.place(2, False, 99, 5) == [(2, 1, 5, 100)]
    assert book.cancel(1) == 0
    assert book.place(3, False, 101, 4) == []
    assert book.cancel(3) == 4
    assert book.cancel(3) == 0
    assert book.place(4, True, None, 10) == []
    assert book.resting() == 0
