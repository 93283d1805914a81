"""The continuous mechanism: one technology's order book wrapped in the exchange's rules.

It validates orders against the listing (tick, lot, reserve), keeps the participant's
order index for cancels, numbers events and deals, and turns the book's fills into events.
Pure: the timestamp comes in with the command.
"""

from __future__ import annotations

from collections import deque

import msgspec

from engine.core.rules import check_listing, check_price, check_quantity, quoted, rejection
from engine.core.snapshot import ContinuousState, RestingOrderState, encode_venue
from engine.core.venue import ListingRefusal
from engine.errors import SnapshotError
from engine.orderbook import Order, OrderBook, SelfTradeCancel
from schemas.commands import AmendOrder, CancelOrder, ListTechnology, PlaceOrder
from schemas.common import CancelReason, ListingState, Mechanism, OrderType, RejectReason, Side
from schemas.events import (
    CommandRejected,
    Deal,
    Event,
    MarketView,
    OrderAccepted,
    OrderCancelled,
    OrderDone,
    PriceLevel,
)

#: How many ended orders' client order ids each technology remembers, oldest forgotten first.
#: A command sent twice (a producer retry without idempotence, a front-end that restarts and
#: resends) must not trade twice, so an id stays taken after its order ends; the bound keeps
#: memory and snapshots finite (about 150 bytes an id, 15 MB at most per technology).
ENDED_ORDERS_REMEMBERED = 100_000

#: Price levels of each side a market view shows.
_VIEW_LEVELS = 5

_SIDES = {"bid": Side.BID, "offer": Side.OFFER}
_ORDER_TYPES = {"limit": OrderType.LIMIT, "market": OrderType.MARKET}
_BID = Side.BID
_MARKET = OrderType.MARKET


class ContinuousVenue:
    """Price-time priority trading of one technology."""

    mechanism = "continuous"

    __slots__ = (
        "_ended_in_order",
        "_live",
        "_taken",
        "book",
        "deal_count",
        "last_price",
        "last_quantity",
        "lot_size",
        "order_count",
        "reserve_price",
        "seq",
        "technology_id",
        "tick_size",
    )

    def __init__(
        self, technology_id: str, tick_size: int, lot_size: int, reserve_price: int | None
    ) -> None:
        self.technology_id = technology_id
        self.tick_size = tick_size
        self.lot_size = lot_size
        self.reserve_price = reserve_price
        self.book = OrderBook(self_trade_prevention=True)
        self.seq = 0
        self.order_count = 0
        self.deal_count = 0
        #: Live orders by (participant, client order id): the cancel index.
        self._live: dict[str, Order] = {}
        #: (participant, client order id) of the most recent ended orders, oldest first.
        self._ended_in_order: deque[str] = deque()
        #: Every id a new order may not use: the live ones and the remembered ended ones.
        self._taken: set[str] = set()
        self.last_price: int | None = None
        self.last_quantity: int | None = None

    @classmethod
    def open(cls, listing: ListTechnology) -> ContinuousVenue | ListingRefusal:
        refusal = check_listing(listing.tick_size, listing.lot_size, listing.reserve_price)
        if refusal is not None:
            return refusal
        return cls(
            listing.technology_id, listing.tick_size, listing.lot_size, listing.reserve_price
        )

    @classmethod
    def restore(cls, data: bytes) -> ContinuousVenue:
        try:
            state = _state_decoder.decode(data)
        except msgspec.DecodeError as e:
            raise SnapshotError(f"continuous venue snapshot does not decode: {e}") from e
        return cls.from_state(state)

    def to_snapshot(self) -> bytes:
        return encode_venue(self.to_state())

    def has_orders(self) -> bool:
        return self.order_count > 0

    def finished(self) -> bool:
        return False  # a continuous book trades until its listing is closed

    def next_deadline(self) -> int | None:
        return None

    def on_deadline(self, now_ms: int, source_offset: int) -> list[Event]:
        return []

    def amend(self, command: AmendOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        return [
            rejection(
                command,
                self.next_seq(),
                RejectReason.NOT_SUPPORTED_BY_MECHANISM,
                "amend is not available yet",
                timestamp_ms,
                source_offset,
            )
        ]

    def close(self, timestamp_ms: int, source_offset: int) -> list[Event]:
        """Cancel every resting order, best price first on each side, bids first."""
        events: list[Event] = []
        live = self._live
        for side in (Side.BID, Side.OFFER):
            for order in self.book.resting_orders(side):
                open_quantity = self.book.cancel(order)
                del live[order.owner_key]
                events.append(
                    self._cancelled(
                        order,
                        open_quantity,
                        timestamp_ms,
                        source_offset,
                        CancelReason.TECHNOLOGY_CLOSED,
                    )
                )
        return events

    def view(self, state: ListingState, timestamp_ms: int, source_offset: int) -> MarketView:
        book = self.book
        return MarketView(
            technology_id=self.technology_id,
            timestamp_ms=timestamp_ms,
            source_offset=source_offset,
            mechanism=Mechanism.CONTINUOUS,
            state=state,
            bids=[PriceLevel(*level) for level in book.depth(Side.BID, _VIEW_LEVELS)],
            offers=[PriceLevel(*level) for level in book.depth(Side.OFFER, _VIEW_LEVELS)],
            last_price=self.last_price,
            last_quantity=self.last_quantity,
        )

    def to_state(self) -> ContinuousState:
        book = self.book
        return ContinuousState(
            self.technology_id,
            self.tick_size,
            self.lot_size,
            self.reserve_price,
            self.seq,
            self.order_count,
            self.deal_count,
            [_resting_state(o) for o in book.resting_orders(Side.BID)],
            [_resting_state(o) for o in book.resting_orders(Side.OFFER)],
            [_split_key(key) for key in self._ended_in_order],
            self.last_price,
            self.last_quantity,
        )

    @classmethod
    def from_state(cls, state: ContinuousState) -> ContinuousVenue:
        venue = cls(state.technology_id, state.tick_size, state.lot_size, state.reserve_price)
        venue.seq, venue.order_count, venue.deal_count = (
            state.seq,
            state.order_count,
            state.deal_count,
        )
        venue.last_price, venue.last_quantity = state.last_price, state.last_quantity
        for side, orders in ((Side.BID, state.bids), (Side.OFFER, state.offers)):
            for resting in orders:
                key = _order_key(resting.participant_id, resting.client_order_id)
                order = Order(
                    resting.order_id,
                    resting.participant_id,
                    resting.client_order_id,
                    side,
                    resting.price,
                    resting.quantity,
                    key,
                )
                order.remaining = resting.remaining
                if venue.book.place(order):
                    raise SnapshotError(f"snapshot of {state.technology_id} has a crossed book")
                venue._live[key] = order
        venue._ended_in_order.extend(
            _order_key(who, client_order_id) for who, client_order_id in state.ended_client_orders
        )
        venue._taken.update(venue._live)
        venue._taken.update(venue._ended_in_order)
        return venue

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def live_order(self, participant_id: str, client_order_id: str) -> Order | None:
        return self._live.get(_order_key(participant_id, client_order_id))

    def place(self, command: PlaceOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        side = _SIDES.get(command.side)
        order_type = _ORDER_TYPES.get(command.order_type)
        key = f"{command.participant_id}\x1f{command.client_order_id}"
        refusal = self._refuse_order(command, side, order_type, key)
        if refusal is not None:
            reason, detail = refusal
            return [self.reject(command, reason, detail, timestamp_ms, source_offset)]
        assert side is not None
        assert order_type is not None
        technology_id = self.technology_id
        self._taken.add(key)
        self.order_count += 1
        order = Order(
            f"{technology_id}:o{self.order_count}",
            command.participant_id,
            command.client_order_id,
            side,
            command.price,
            command.quantity,
            key,
        )
        self.seq += 1
        events: list[Event] = [
            OrderAccepted(
                technology_id=technology_id,
                seq=self.seq,
                timestamp_ms=timestamp_ms,
                source_offset=source_offset,
                order_id=order.order_id,
                participant_id=order.participant_id,
                client_order_id=order.client_order_id,
                side=side,
                order_type=order_type,
                quantity=order.quantity,
                price=order.price,
            )
        ]
        live = self._live
        for execution in self.book.place(order):
            if type(execution) is SelfTradeCancel:  # rare: a wash trade prevented
                resting = execution.resting
                del live[resting.owner_key]
                events.append(
                    self._cancelled(
                        resting,
                        execution.open_quantity,
                        timestamp_ms,
                        source_offset,
                        CancelReason.SELF_TRADE_PREVENTED,
                    )
                )
                continue
            # A plain (resting, quantity, price) tuple: type() is cheaper than isinstance()
            # here, but mypy only narrows on the latter.
            resting, quantity, price = execution  # type: ignore[misc]
            self.deal_count += 1
            self.seq += 1
            self.last_price, self.last_quantity = price, quantity
            bid, offer = (order, resting) if side is _BID else (resting, order)
            events.append(
                Deal(
                    technology_id=technology_id,
                    seq=self.seq,
                    timestamp_ms=timestamp_ms,
                    source_offset=source_offset,
                    deal_id=f"{technology_id}:d{self.deal_count}",
                    deal_number=self.deal_count,
                    price=price,
                    quantity=quantity,
                    buyer_id=bid.participant_id,
                    seller_id=offer.participant_id,
                    bid_order_id=bid.order_id,
                    offer_order_id=offer.order_id,
                    bid_client_order_id=bid.client_order_id,
                    offer_client_order_id=offer.client_order_id,
                    aggressor_side=side,
                )
            )
            if not resting.remaining:
                del live[resting.owner_key]
                events.append(self._done(resting, timestamp_ms, source_offset))
        if not order.remaining:
            events.append(self._done(order, timestamp_ms, source_offset))
        elif order_type is _MARKET:
            events.append(
                self._cancelled(
                    order,
                    order.remaining,
                    timestamp_ms,
                    source_offset,
                    CancelReason.MARKET_ORDER_UNFILLED,
                )
            )
        else:
            live[key] = order
        return events

    def cancel(self, command: CancelOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        order = self._live.pop(_order_key(command.participant_id, command.client_order_id), None)
        if order is None:
            return [
                self.reject(
                    command,
                    RejectReason.UNKNOWN_ORDER,
                    f"participant {command.participant_id} has no live order "
                    f"{command.client_order_id} in {self.technology_id}",
                    timestamp_ms,
                    source_offset,
                )
            ]
        open_quantity = self.book.cancel(order)
        return [
            self._cancelled(
                order,
                open_quantity,
                timestamp_ms,
                source_offset,
                CancelReason.CANCELLED_BY_PARTICIPANT,
            )
        ]

    def reject(
        self,
        command: PlaceOrder | CancelOrder,
        reason: RejectReason,
        detail: str,
        timestamp_ms: int,
        source_offset: int,
    ) -> CommandRejected:
        return rejection(command, self.next_seq(), reason, detail, timestamp_ms, source_offset)

    def _refuse_order(
        self,
        command: PlaceOrder,
        side: Side | None,
        order_type: OrderType | None,
        key: str,
    ) -> tuple[RejectReason, str] | None:
        if side is None:
            return RejectReason.UNKNOWN_SIDE, f"side {quoted(command.side)} is not bid or offer"
        if order_type is None:
            return (
                RejectReason.UNKNOWN_ORDER_TYPE,
                f"order type {quoted(command.order_type)} is not limit or market",
            )
        refusal = check_quantity(command.quantity, self.lot_size)
        if refusal is not None:
            return refusal
        if order_type is _MARKET:
            if command.price is not None:
                return RejectReason.PRICE_NOT_ALLOWED, "a market order takes no price"
        elif command.price is None:
            return RejectReason.PRICE_REQUIRED, "a limit order needs a price"
        else:
            refusal = check_price(
                command.price, command.quantity, self.tick_size, self.reserve_price
            )
            if refusal is not None:
                return refusal
        if key not in self._taken:
            return None
        if key in self._live:
            return (
                RejectReason.DUPLICATE_CLIENT_ORDER_ID,
                f"client order id {command.client_order_id} is already live",
            )
        return (
            RejectReason.DUPLICATE_CLIENT_ORDER_ID,
            f"client order id {command.client_order_id} was used by an order that has "
            f"ended; ids are not reused within the last {ENDED_ORDERS_REMEMBERED} ended "
            f"orders of {self.technology_id}",
        )

    def _remember_ended(self, order: Order) -> None:
        """An ended order's id stays taken until ENDED_ORDERS_REMEMBERED newer ones ended."""
        in_order = self._ended_in_order
        in_order.append(order.owner_key)
        if len(in_order) > ENDED_ORDERS_REMEMBERED:
            self._taken.discard(in_order.popleft())

    def _done(self, order: Order, timestamp_ms: int, source_offset: int) -> OrderDone:
        self._remember_ended(order)
        self.seq += 1
        return OrderDone(
            technology_id=self.technology_id,
            seq=self.seq,
            timestamp_ms=timestamp_ms,
            source_offset=source_offset,
            order_id=order.order_id,
            participant_id=order.participant_id,
            client_order_id=order.client_order_id,
            filled_quantity=order.quantity,
        )

    def _cancelled(
        self,
        order: Order,
        open_quantity: int,
        timestamp_ms: int,
        source_offset: int,
        reason: CancelReason,
    ) -> OrderCancelled:
        self._remember_ended(order)
        self.seq += 1
        return OrderCancelled(
            technology_id=self.technology_id,
            seq=self.seq,
            timestamp_ms=timestamp_ms,
            source_offset=source_offset,
            order_id=order.order_id,
            participant_id=order.participant_id,
            client_order_id=order.client_order_id,
            filled_quantity=order.quantity - open_quantity,
            cancelled_quantity=open_quantity,
            reason=reason,
        )


def _order_key(participant_id: str, client_order_id: str) -> str:
    """One string for (participant, client order id): identifiers cannot hold the unit
    separator, and a string, unlike a tuple, is no work for the garbage collector."""
    return f"{participant_id}\x1f{client_order_id}"


def _split_key(key: str) -> tuple[str, str]:
    participant_id, client_order_id = key.split("\x1f")
    return participant_id, client_order_id


def _resting_state(order: Order) -> RestingOrderState:
    assert order.price is not None  # only limit orders rest
    return RestingOrderState(
        order.order_id,
        order.participant_id,
        order.client_order_id,
        order.price,
        order.quantity,
        order.remaining,
    )


_state_decoder = msgspec.msgpack.Decoder(ContinuousState)
