"""Stateful property test: the real OrderBook against a deliberately naive reference model.

The model keeps every order in a dict and finds the resting ones by scanning; it matches an
incoming order by sorting the crossing opposite orders on (price priority, arrival). It has
no levels, no signed keys and no lazy deletion, so it shares none of the book's tricks.

Two machines run: one participant without self-trade prevention (the bare book), and several
participants with it, which is how the exchange's venues run the book.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import count

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from engine.orderbook import DepthLevel, Order, OrderBook, SelfTradeCancel
from schemas.common import Side

PRICES = st.integers(min_value=95, max_value=105)
QUANTITIES = st.integers(min_value=1, max_value=20)
SIDES = st.sampled_from([Side.BID, Side.OFFER])
#: Few participants, so that an order often meets its own participant's resting orders.
PARTICIPANTS = st.sampled_from(["alice", "bob", "carol"])

#: An execution as the tests compare it: ("trade", resting order id, quantity, price), or
#: ("self_trade", resting order id, open quantity cancelled, 0).
Trade = tuple[str, str, int, int]


@dataclass
class ModelOrder:
    order_id: str
    participant: str
    side: Side
    price: int | None  # None: market
    quantity: int
    arrival: int
    remaining: int
    resting: bool = False


class ReferenceBook:
    """The simplest book that could possibly work: a scan-and-sort over a dict of orders."""

    def __init__(self, self_trade_prevention: bool) -> None:
        self.orders: dict[str, ModelOrder] = {}
        self._arrivals = count()
        self.self_trade_prevention = self_trade_prevention

    def resting(self, side: Side) -> list[ModelOrder]:
        """Resting orders of one side in priority order: best price, then earliest arrival."""
        live = [o for o in self.orders.values() if o.resting and o.side is side]
        sign = -1 if side is Side.BID else 1  # bids: high price first; offers: low first
        return sorted(live, key=lambda o: (sign * (o.price or 0), o.arrival))

    def place(
        self, order_id: str, participant: str, side: Side, price: int | None, quantity: int
    ) -> list[Trade]:
        incoming = ModelOrder(
            order_id, participant, side, price, quantity, next(self._arrivals), quantity
        )
        self.orders[order_id] = incoming
        opposite = Side.OFFER if side is Side.BID else Side.BID
        trades: list[Trade] = []
        for resting in self.resting(opposite):
            if incoming.remaining == 0:
                break
            assert resting.price is not None
            if price is not None:
                crosses = resting.price <= price if side is Side.BID else resting.price >= price
                if not crosses:
                    break
            if self.self_trade_prevention and resting.participant == participant:
                trades.append(("self_trade", resting.order_id, resting.remaining, 0))
                resting.remaining = 0
                resting.resting = False
                continue
            quantity_traded = min(incoming.remaining, resting.remaining)
            incoming.remaining -= quantity_traded
            resting.remaining -= quantity_traded
            if resting.remaining == 0:
                resting.resting = False
            trades.append(("trade", resting.order_id, quantity_traded, resting.price))
        incoming.resting = price is not None and incoming.remaining > 0
        return trades

    def cancel(self, order_id: str) -> int:
        order = self.orders[order_id]
        if not order.resting:
            return 0
        open_quantity = order.remaining
        order.remaining = 0
        order.resting = False
        return open_quantity

    def depth(self, side: Side) -> list[DepthLevel]:
        quantity: dict[int, int] = {}
        orders: Counter[int] = Counter()
        for o in self.resting(side):  # priority order, so dict order is best price first
            assert o.price is not None
            quantity[o.price] = quantity.get(o.price, 0) + o.remaining
            orders[o.price] += 1
        return [DepthLevel(p, q, orders[p]) for p, q in quantity.items()]


class OrderBookMachine(RuleBasedStateMachine):
    """Drives OrderBook and ReferenceBook with the same commands and compares everything."""

    placed = Bundle("placed")
    #: Set by the concrete machines below.
    self_trade_prevention = False

    def __init__(self) -> None:
        super().__init__()
        self.book = OrderBook(self_trade_prevention=self.self_trade_prevention)
        self.model = ReferenceBook(self.self_trade_prevention)
        self.real: dict[str, Order] = {}
        self._ids = count(1)
        # Bookkeeping from the book's own outputs, for the conservation invariant.
        self.filled: Counter[str] = Counter()  # per order, from every fill it took part in
        self.cancelled: Counter[str] = Counter()  # per order, from cancel()'s return values
        self.bought = 0
        self.sold = 0

    def _place(self, participant: str, side: Side, price: int | None, quantity: int) -> str:
        order_id = f"{'M' if price is None else 'L'}{side.value}{next(self._ids)}"
        order = Order(order_id, participant, "c" + order_id, side, price, quantity)
        self.real[order_id] = order
        executions = self.book.place(order)
        got: list[Trade] = []
        fills = []
        for execution in executions:
            if isinstance(execution, SelfTradeCancel):
                resting = execution.resting
                assert resting.participant_id == participant, "only one's own order is cancelled"
                got.append(("self_trade", resting.order_id, execution.open_quantity, 0))
                self.cancelled[resting.order_id] += execution.open_quantity
            else:
                fills.append(execution)
                got.append(("trade", execution[0].order_id, execution[1], execution[2]))
        expected = self.model.place(order_id, participant, side, price, quantity)
        assert got == expected, f"{order!r}: book filled {got}, model filled {expected}"
        for resting, traded, _ in fills:
            if self.self_trade_prevention:
                assert resting.participant_id != participant, f"{order!r} traded with itself"
            assert resting.side is not side, f"{order!r} traded with its own side {resting!r}"
            assert traded > 0
            self.filled[resting.order_id] += traded
            self.filled[order_id] += traded
            if side is Side.BID:
                self.bought += traded  # the incoming bid buys...
            else:
                self.sold += traded
            if resting.side is Side.BID:  # ...and the resting side of the same fill
                self.bought += traded
            else:
                self.sold += traded
        return order_id

    @initialize(target=placed, who=PARTICIPANTS, side=SIDES, price=PRICES, quantity=QUANTITIES)
    def place_first_limit(self, who: str, side: Side, price: int, quantity: int) -> str:
        """Start with one order so that ``cancel`` always has something to draw from."""
        return self._place(self.participant(who), side, price, quantity)

    @rule(target=placed, who=PARTICIPANTS, side=SIDES, price=PRICES, quantity=QUANTITIES)
    def place_limit(self, who: str, side: Side, price: int, quantity: int) -> str:
        return self._place(self.participant(who), side, price, quantity)

    @rule(target=placed, who=PARTICIPANTS, side=SIDES, quantity=QUANTITIES)
    def place_market(self, who: str, side: Side, quantity: int) -> str:
        order_id = self._place(self.participant(who), side, None, quantity)
        assert self.real[order_id] not in self.book.resting_orders(side), "a market order rests"
        return order_id

    def participant(self, drawn: str) -> str:
        """Who places an order: always the same one in the bare machine."""
        return drawn if self.self_trade_prevention else "participant"

    @rule(order_id=placed)
    def cancel(self, order_id: str) -> None:
        got = self.book.cancel(self.real[order_id])
        expected = self.model.cancel(order_id)
        assert got == expected, f"cancel({self.real[order_id]!r}) returned {got}, not {expected}"
        self.cancelled[order_id] += got

    @invariant()
    def book_is_never_crossed(self) -> None:
        best_bid, best_offer = self.book.best_bid(), self.book.best_offer()
        if best_bid is not None and best_offer is not None:
            assert best_bid < best_offer, f"crossed book: bid {best_bid} >= offer {best_offer}"

    @invariant()
    def best_prices_match_model(self) -> None:
        bids, offers = self.model.resting(Side.BID), self.model.resting(Side.OFFER)
        assert self.book.best_bid() == (bids[0].price if bids else None)
        assert self.book.best_offer() == (offers[0].price if offers else None)

    @invariant()
    def depth_matches_model(self) -> None:
        for side in Side:
            expected = self.model.depth(side)
            assert self.book.depth(side, levels=1_000) == expected, side
            assert self.book.depth(side) == expected[:10], side
            assert self.book.depth(side, levels=2) == expected[:2], side

    @invariant()
    def resting_orders_match_model_priority(self) -> None:
        for side in Side:
            got = [(o.order_id, o.remaining) for o in self.book.resting_orders(side)]
            expected = [(o.order_id, o.remaining) for o in self.model.resting(side)]
            assert got == expected, side

    @invariant()
    def remaining_matches_model(self) -> None:
        for order_id, order in self.real.items():
            assert order.remaining == self.model.orders[order_id].remaining, order

    @invariant()
    def quantity_is_conserved(self) -> None:
        assert self.bought == self.sold, f"bought {self.bought} != sold {self.sold}"
        resting = {o.order_id for side in Side for o in self.book.resting_orders(side)}
        for order_id, order in self.real.items():
            assert 0 <= order.remaining <= order.quantity, order
            # Whatever did not trade is exactly one of: still resting, cancelled, or a market
            # remainder that was dropped (cancelled orders have remaining zeroed by the book).
            if order_id in resting:
                assert self.cancelled[order_id] == 0, order
                unfilled = order.remaining
            elif order.price is None:
                unfilled = order.remaining
            else:
                assert order.remaining == 0, f"{order!r} is neither resting nor done"
                unfilled = self.cancelled[order_id]
            assert order.quantity == self.filled[order_id] + unfilled, (
                f"{order!r}: filled {self.filled[order_id]} + unfilled {unfilled}"
            )


@settings(max_examples=200, stateful_step_count=40, deadline=None)
class BareBookMachine(OrderBookMachine):
    """One participant, no self-trade prevention: the book's own price-time priority."""


@settings(max_examples=200, stateful_step_count=40, deadline=None)
class VenueBookMachine(OrderBookMachine):
    """Several participants with self-trade prevention, as the exchange's venues run it."""

    self_trade_prevention = True


test_order_book_matches_reference_model = BareBookMachine.TestCase
test_order_book_with_self_trade_prevention_matches_reference_model = VenueBookMachine.TestCase
