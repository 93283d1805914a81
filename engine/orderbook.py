"""The continuous limit order book: pure price-time priority matching on integers.

Nothing here knows about Kafka, PostgreSQL, clocks or events: the book takes orders and
returns fills, so it can be replayed, property-tested and benchmarked on its own.

Layout, chosen for a hot path in pure Python:
- each side keeps ``{key: PriceLevel}`` plus an ascending list of its keys with the best
  *last*, so reading and dropping the best level are O(1) list operations; a bid's key is
  its price and an offer's is minus its price, so both sides share one matching loop;
- a level is a FIFO deque; a cancel only zeroes the order and adjusts the level's totals
  (O(1)), and the dead order is dropped when matching reaches it or the level empties.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from typing import Any, Final, NamedTuple

from schemas.common import Side


class Order:
    """A live order. ``remaining`` is mutated by matching; zero means it left the book."""

    __slots__ = (
        "client_order_id",
        "order_id",
        "owner_key",
        "participant_id",
        "price",
        "quantity",
        "remaining",
        "side",
    )

    def __init__(
        self,
        order_id: str,
        participant_id: str,
        client_order_id: str,
        side: Side,
        price: int | None,
        quantity: int,
        owner_key: str = "",
    ) -> None:
        self.order_id = order_id
        self.participant_id = participant_id
        self.client_order_id = client_order_id
        self.side = side
        self.price = price
        self.quantity = quantity
        self.remaining = quantity
        #: Whatever key the book's owner finds the order by; the book never reads it. Carried
        #: here so that a filled resting order needs no key rebuilt on the hot path.
        self.owner_key = owner_key

    def __repr__(self) -> str:
        return (
            f"Order({self.order_id!r}, {self.side.value}, price={self.price}, "
            f"remaining={self.remaining}/{self.quantity})"
        )


class PriceLevel:
    """All live orders at one price on one side, oldest first.

    A level out of its book (its book's spare, see OrderBook) holds no order and zero totals.
    """

    __slots__ = ("live_count", "live_quantity", "orders", "price")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: deque[Order] = deque()
        self.live_quantity = 0
        self.live_count = 0

    def compact(self) -> None:
        """Drop cancelled orders once they outnumber live ones, so memory stays bounded
        when a participant keeps replacing an order behind a long-lived one."""
        if len(self.orders) > _COMPACT_MIN and len(self.orders) > 2 * self.live_count:
            self.orders = deque(o for o in self.orders if o.remaining)


#: One execution against a resting order: (resting order, quantity, the resting order's price).
#: A plain tuple rather than a NamedTuple: it is built once per fill on the hot path. The
#: price is the resting order's own int object, typed Any so that the compiled book and its
#: callers pass that object on as it is: an int-typed one is boxed afresh, a new int object,
#: wherever it goes into a tuple or an event.
Fill = tuple[Order, int, Any]


class SelfTradeCancel(NamedTuple):
    """The resting order was the incoming order's own participant's: cancelled, untraded."""

    resting: Order
    open_quantity: int


#: What matching an incoming order reports, in the order it happened.
Execution = Fill | SelfTradeCancel

# Final: the compiled book reads them as C constants, not from the module's dict per order.
_BID: Final = Side.BID
#: Levels shorter than this are never compacted: scanning them costs more than it saves.
_COMPACT_MIN: Final = 64
#: Below every signed key: a market order crosses any price.
_NO_LIMIT: Final = -(1 << 62)
#: A level's queue operations, called as functions: compiled, ``queue.popleft()`` looks the
#: method up by name at every fill, these call it directly.
_POPLEFT: Final = deque.popleft
_APPEND: Final = deque.append
_CLEAR: Final = deque.clear
#: Emptied levels a book keeps for reuse (see OrderBook._spares): a few catch most new
#: prices (bench.instructions' 20k orders made 3,259 levels; with 1 spare 1,630, with 4 767).
_SPARES: Final = 4


class DepthLevel(NamedTuple):
    price: int
    quantity: int
    orders: int


class OrderBook:
    """One technology's continuous book. Validation (tick, lot, reserve) is the caller's job."""

    __slots__ = (
        "_bid_levels",
        "_bid_prices",
        "_offer_keys",
        "_offer_levels",
        "_spares",
        "self_trade_prevention",
    )

    def __init__(self, self_trade_prevention: bool = False) -> None:
        #: Cancel a resting order instead of trading it against its own participant's
        #: incoming order (no wash trades); the incoming order goes on matching.
        self.self_trade_prevention = self_trade_prevention
        self._bid_levels: dict[int, PriceLevel] = {}  # keyed by price
        self._bid_prices: list[int] = []  # ascending: best bid last
        self._offer_levels: dict[int, PriceLevel] = {}  # keyed by minus price
        self._offer_keys: list[int] = []  # minus prices ascending: best (lowest) offer last
        #: The levels that emptied last (at most _SPARES), cleared, for new prices to reuse: a
        #: new level costs a deque, whose first block comes from libc malloc, and freeing both
        #: later. Which object a level is never shows, so reuse keeps the book deterministic.
        self._spares: list[PriceLevel] = []

    def place(self, order: Order) -> list[Execution]:  # noqa: PLR0915 - one flat hot path on purpose
        """Match ``order`` against the other side; a limit remainder rests, a market one never.

        ``order.price is None`` means a market order. The caller reads ``order.remaining``
        afterwards, and the ``remaining`` of each filled resting order to see who is done.

        This is the hot path, so it is one flat function: both sides share it through signed
        keys (bids keyed by price, offers by minus price, best key last on each side), and
        an incoming order crosses while the best opposite key is at least ``threshold``.
        """
        limit = order.price
        if order.side is _BID:
            opposite_keys, opposite_levels = self._offer_keys, self._offer_levels
            own_keys, own_levels = self._bid_prices, self._bid_levels
            threshold = _NO_LIMIT if limit is None else -limit
            own_key = limit
        else:
            opposite_keys, opposite_levels = self._bid_prices, self._bid_levels
            own_keys, own_levels = self._offer_keys, self._offer_levels
            threshold = _NO_LIMIT if limit is None else limit
            own_key = None if limit is None else -limit
        fills: list[Execution] = []
        wanted = order.remaining
        own_participant = order.participant_id if self.self_trade_prevention else None
        while wanted and opposite_keys:
            best_key = opposite_keys[-1]
            if best_key < threshold:
                break
            level = opposite_levels[best_key]
            queue = level.orders
            while wanted and queue:
                resting = queue[0]
                available = resting.remaining
                if not available:  # cancelled earlier: drop it now
                    _POPLEFT(queue)
                    continue
                if resting.participant_id == own_participant:
                    _POPLEFT(queue)
                    resting.remaining = 0
                    level.live_quantity -= available
                    level.live_count -= 1
                    fills.append(SelfTradeCancel(resting, available))
                    continue
                traded = wanted if wanted < available else available
                resting.remaining = available - traded
                wanted -= traded
                level.live_quantity -= traded
                fills.append((resting, traded, resting.price))  # the level's price
                if traded == available:
                    _POPLEFT(queue)
                    level.live_count -= 1
            if not level.live_count:
                opposite_keys.pop()
                del opposite_levels[best_key]
                if len(self._spares) < _SPARES:
                    _CLEAR(queue)  # dead orders may be left behind the last live one
                    self._spares.append(level)
        order.remaining = wanted
        if wanted and own_key is not None:
            own_level = own_levels.get(own_key)
            if own_level is None:
                spares = self._spares
                if spares:
                    own_level = spares.pop()
                    own_level.price = limit  # type: ignore[assignment]
                else:
                    own_level = PriceLevel(limit)  # type: ignore[arg-type]
                own_levels[own_key] = own_level
                if not own_keys or own_key > own_keys[-1]:
                    own_keys.append(own_key)  # the common case: a new best price
                else:
                    own_keys.insert(bisect_left(own_keys, own_key), own_key)
            elif own_level.orders:
                # One int object for the price of a level's orders: each decoded order
                # brings its own (32 bytes), and equal ints never show which is which.
                order.price = own_level.orders[0].price
            _APPEND(own_level.orders, order)
            own_level.live_quantity += wanted
            own_level.live_count += 1
        return fills

    def cancel(self, order: Order) -> int:
        """Take a resting order out in O(1); returns the quantity that was still open.

        The order must be one this book accepted (the venue's live-order index is the only
        caller); a filled, cancelled or market order returns 0 and changes nothing.
        """
        remaining = order.remaining
        price = order.price
        if not remaining or price is None:
            return 0
        if order.side is _BID:
            keys, levels, key = self._bid_prices, self._bid_levels, price
        else:
            keys, levels, key = self._offer_keys, self._offer_levels, -price
        level = levels.get(key)
        if level is None:
            return 0
        order.remaining = 0
        level.live_quantity -= remaining
        level.live_count -= 1
        if level.live_count:
            level.compact()
        else:
            del levels[key]
            if keys[-1] == key:
                keys.pop()
            else:
                del keys[bisect_left(keys, key)]
            if len(self._spares) < _SPARES:
                _CLEAR(level.orders)  # the dead orders, this one among them
                self._spares.append(level)
        return remaining

    def reduce(self, order: Order, remaining: int) -> None:
        """Cut a resting order's open quantity to ``remaining`` in O(1), keeping its place.

        ``0 < remaining < order.remaining``; the order's ``quantity`` shrinks by as much (what
        it filled stays as it was). Anything else is a caller's bug: ValueError.
        """
        price = order.price
        cut = order.remaining - remaining
        if price is None or remaining <= 0 or cut <= 0:
            raise ValueError(f"cannot reduce {order!r} to {remaining}")
        level = self._bid_levels[price] if order.side is _BID else self._offer_levels[-price]
        level.live_quantity -= cut
        order.remaining = remaining
        order.quantity -= cut

    def would_cross(self, side: Side, price: int | None) -> bool:
        """Whether an order of ``side`` at ``price`` (None: market, which meets any price)
        would meet the best opposite price if it came in now, whoever's orders are there."""
        if side is _BID:
            keys = self._offer_keys
            return bool(keys) and (price is None or -keys[-1] <= price)
        keys = self._bid_prices
        return bool(keys) and (price is None or keys[-1] >= price)

    def fillable(self, order: Order) -> int:
        """How much of ``order.remaining`` placing it now would trade, without placing it.

        Counts the opposite side best price first, up to the order's limit, and stops once it
        has enough; with self-trade prevention the order's own participant's resting orders
        are not counted (they would be cancelled, not traded). Costs what matching would.
        """
        wanted = order.remaining
        limit = order.price
        if order.side is _BID:
            keys, levels = self._offer_keys, self._offer_levels
            threshold = _NO_LIMIT if limit is None else -limit
        else:
            keys, levels = self._bid_prices, self._bid_levels
            threshold = _NO_LIMIT if limit is None else limit
        own = order.participant_id if self.self_trade_prevention else None
        found = 0
        for key in reversed(keys):
            if key < threshold:
                break
            level = levels[key]
            if own is None:
                found += level.live_quantity
            else:
                for resting in level.orders:
                    if resting.participant_id != own:
                        found += resting.remaining  # zero for an order already gone
                        if found >= wanted:
                            return wanted
            if found >= wanted:
                return wanted
        return found

    def best_bid(self) -> int | None:
        return self._bid_prices[-1] if self._bid_prices else None

    def best_offer(self) -> int | None:
        return -self._offer_keys[-1] if self._offer_keys else None

    def depth(self, side: Side, levels: int = 10) -> list[DepthLevel]:
        """Aggregated live quantity per price, best first, at most ``levels`` prices."""
        keys, book = self._side(side)
        best_first = [book[key] for key in reversed(keys[-levels:])] if levels > 0 else []
        return [DepthLevel(lv.price, lv.live_quantity, lv.live_count) for lv in best_first]

    def top(self, side: Side, levels: int) -> list[tuple[int, int, int]]:
        """(price, live quantity, live orders) of the best ``levels`` prices, best first: what
        a market view shows, as plain tuples (cheaper than :meth:`depth`'s)."""
        keys, book = self._side(side)
        best_first = [book[key] for key in reversed(keys[-levels:])] if levels > 0 else []
        return [(lv.price, lv.live_quantity, lv.live_count) for lv in best_first]

    def resting_orders(self, side: Side) -> list[Order]:
        """Every live order of one side, best price first, each level oldest first."""
        keys, book = self._side(side)
        return [o for key in reversed(keys) for o in book[key].orders if o.remaining]

    def _side(self, side: Side) -> tuple[list[int], dict[int, PriceLevel]]:
        if side is _BID:
            return self._bid_prices, self._bid_levels
        return self._offer_keys, self._offer_levels
