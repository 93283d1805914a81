"""A plain-Python reference limit order book: the yardstick for ``engine.orderbook``.

Issue 11 asks that the engine's book be "never slower than the plain-Python reference book"
and that its fills equal a reference matcher's. This is the simplest fast design one would
write from a textbook, kept deliberately independent of the engine's code:

- per side, ``{price: deque of [remaining, order_id]}`` (FIFO: price-time priority) and a
  heap of prices (max-heap by negated bid prices) with lazy deletion: a price whose level is
  gone is skipped when it reaches the top;
- a cancel zeroes the entry through an ``{order_id: entry}`` index (O(1)); matching drops
  zeroed entries when it reaches them;
- fills are plain integer tuples ``(incoming_id, resting_id, quantity, price)``.

Same semantics as ``engine.orderbook.OrderBook`` without self-trade prevention: a limit
order trades at the resting order's price while the best opposite price is at or better
than its limit, and its remainder rests; a market order (``price is None``) trades what it
can and never rests.
"""

from __future__ import annotations

import heapq
from collections import deque

#: One execution: (incoming order id, resting order id, quantity, the resting order's price).
ReferenceFill = tuple[int, int, int, int]


class ReferenceBook:
    """One instrument's continuous book; integer ids, prices and quantities."""

    __slots__ = ("_bid_heap", "_bids", "_index", "_live", "_offer_heap", "_offers")

    def __init__(self) -> None:
        self._bids: dict[int, deque[list[int]]] = {}
        self._offers: dict[int, deque[list[int]]] = {}
        #: Live orders per price, per side: a level with none left is dropped from its dict.
        self._live: dict[tuple[bool, int], int] = {}
        self._bid_heap: list[int] = []  # negated prices: the best bid on top
        self._offer_heap: list[int] = []  # prices: the best offer on top
        #: order id -> (entry, is_bid, price): what a cancel needs.
        self._index: dict[int, tuple[list[int], bool, int]] = {}

    def place(
        self, order_id: int, is_bid: bool, price: int | None, quantity: int
    ) -> list[ReferenceFill]:
        """Match against the other side, then rest a limit remainder; returns the fills."""
        fills: list[ReferenceFill] = []
        if is_bid:
            levels, heap, sign = self._offers, self._offer_heap, 1
        else:
            levels, heap, sign = self._bids, self._bid_heap, -1
        live = self._live
        index = self._index
        wanted = quantity
        while wanted and heap:
            best = heap[0] * sign  # the best opposite price
            queue = levels.get(best)
            if queue is None:  # a level emptied by cancels: lazy deletion
                heapq.heappop(heap)
                continue
            if price is not None and (best > price if is_bid else best < price):
                break
            level_key = (not is_bid, best)
            while wanted and queue:
                entry = queue[0]
                available = entry[0]
                if not available:
                    queue.popleft()
                    continue
                traded = min(wanted, available)
                entry[0] = available - traded
                wanted -= traded
                fills.append((order_id, entry[1], traded, best))
                if traded == available:
                    queue.popleft()
                    del index[entry[1]]
                    live[level_key] -= 1
            if not live[level_key]:
                del levels[best], live[level_key]
                heapq.heappop(heap)
        if wanted and price is not None:
            own_levels = self._bids if is_bid else self._offers
            entry = [wanted, order_id]
            queue = own_levels.get(price)
            key = (is_bid, price)
            if queue is None:
                queue = own_levels[price] = deque()
                live[key] = 0
                heapq.heappush(
                    self._bid_heap if is_bid else self._offer_heap, -price if is_bid else price
                )
            queue.append(entry)
            live[key] += 1
            index[order_id] = (entry, is_bid, price)
        return fills

    def cancel(self, order_id: int) -> int:
        """Withdraw a resting order; returns its open quantity (0 if it is not resting)."""
        found = self._index.pop(order_id, None)
        if found is None:
            return 0
        entry, is_bid, price = found
        remaining = entry[0]
        entry[0] = 0
        key = (is_bid, price)
        self._live[key] -= 1
        if not self._live[key]:
            del self._live[key]
            del (self._bids if is_bid else self._offers)[price]  # its heap entry goes lazily
        return remaining

    def resting(self) -> int:
        """How many orders rest in the book."""
        return len(self._index)
