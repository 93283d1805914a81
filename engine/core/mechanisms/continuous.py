"""The continuous mechanism: one technology's order book wrapped in the exchange's rules.

It validates orders against the listing (tick, lot, reserve), keeps the participant's
order index for cancels and amends, numbers events and deals, and turns the book's fills
into events. Pure: the timestamp comes in with the command.

Order types (self-trade prevention is always on: an incoming order cancels, never trades
with, its own participant's resting orders it meets):
- ``gtc`` rests until filled or cancelled; a market order never rests (whatever its time in
  force, gtc or ioc, its unfilled rest is cancelled: ``market_order_unfilled``).
- ``ioc`` trades what crosses now; the rest is cancelled (``immediate_or_cancel``).
- ``fok`` trades its whole quantity now or nothing: when what would really trade now (the
  crossing opposite orders, the participant's own left out since they would be cancelled,
  not traded) is less than the quantity, the order is accepted and at once cancelled
  (``fill_or_kill``) and the book is left as it was: no deal, no self-trade cancel. A FOK
  that fills cancels the own orders it meets on the way, like any order.
- ``gtd`` rests until ``expires_at_ms`` (log time, after the command's own time): the market
  fires the expiry before it applies any record stamped at or after it, and the order is
  cancelled (``expired``) stamped with its expiry time. Other orders take no expiry.
- ``post_only`` (limit gtc or gtd only) is refused (``post_only_would_trade``) when its price
  meets the best opposite price, even if only the participant's own orders are there: a
  post-only order never takes liquidity nor cancels any. An amend of a post-only order to a
  price that would trade is refused alike.
An order's checks run in this order: side, order type, quantity, price, client order id,
time in force, expiry, options that do not go together, and last whether a post-only order
would trade.

Amends change the open quantity (what is left to trade) and/or the price of a live limit
order: see :meth:`ContinuousVenue.amend`.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Any, Final, cast

import msgspec

from engine.core.rules import check_listing, check_price, check_quantity, quoted, rejection
from engine.core.snapshot import ContinuousState, RestingOrderState, encode_venue
from engine.core.venue import ListingRefusal
from engine.errors import SnapshotError
from engine.orderbook import Fill, Order, OrderBook, SelfTradeCancel
from schemas.commands import AmendOrder, CancelOrder, ListTechnology, PlaceOrder
from schemas.common import (
    CancelReason,
    ListingState,
    Mechanism,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)
from schemas.events import (
    CommandRejected,
    Deal,
    Event,
    MarketView,
    OrderAccepted,
    OrderAmended,
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
_VIEW_LEVELS: Final = 5

# The names the hot path reads are Final: compiled, each is a C static, not a lookup in the
# module's dict at every use (imported names included, hence the aliases of event classes).
# Events are built with positional arguments, in their fields' order: msgspec matches
# keywords to fields one by one, a few hundred instructions an event.
_SIDES: Final = {"bid": Side.BID, "offer": Side.OFFER}
_ORDER_TYPES: Final = {"limit": OrderType.LIMIT, "market": OrderType.MARKET}
_TIMES_IN_FORCE: Final = {tif.value: tif for tif in TimeInForce}
_BID: Final = Side.BID
_OFFER: Final = Side.OFFER
_LIMIT: Final = OrderType.LIMIT
_MARKET: Final = OrderType.MARKET
_IOC: Final = TimeInForce.IOC
_FOK: Final = TimeInForce.FOK
_GTD: Final = TimeInForce.GTD
_SELF_TRADE_PREVENTED: Final = CancelReason.SELF_TRADE_PREVENTED
_MARKET_ORDER_UNFILLED: Final = CancelReason.MARKET_ORDER_UNFILLED
_CANCELLED_BY_PARTICIPANT: Final = CancelReason.CANCELLED_BY_PARTICIPANT
_ORDER_ACCEPTED: Final = OrderAccepted
_DEAL: Final = Deal
_ORDER_DONE: Final = OrderDone
_ORDER_CANCELLED: Final = OrderCancelled
_ORDER_AMENDED: Final = OrderAmended
_MARKET_VIEW: Final = MarketView
_PRICE_LEVEL: Final = PriceLevel
_CONTINUOUS: Final = Mechanism.CONTINUOUS
_SELF_TRADE_CANCEL: Final = SelfTradeCancel
_COMMAND_REJECTED: Final = CommandRejected
_CANCEL_ORDER_TAG: Final = cast(str, CancelOrder.__struct_config__.tag)
_UNKNOWN_ORDER: Final = RejectReason.UNKNOWN_ORDER
#: A place_order's fields in their declared order, as msgspec.structs.astuple reads them: one
#: call for all of them, where each attribute read of a command costs a generic attribute
#: lookup (compiled, about 160 instructions). The assert below keeps the two in step.
#: Typed as a plain tuple, read by index into typed names: as the exact eleven-item tuple
#: type, the compiled core would check and unpack all eleven into a C struct at once (about
#: 300 instructions), then copy the struct into each call it is passed to.
PlaceFields = tuple[Any, ...]
_PLACE_FIELDS = (
    "technology_id",
    "participant_id",
    "client_order_id",
    "side",
    "quantity",
    "order_type",
    "price",
    "time_in_force",
    "expires_at_ms",
    "post_only",
    "submitted_by",
)
assert PlaceOrder.__struct_fields__ == _PLACE_FIELDS, "PlaceFields must follow PlaceOrder"
#: A cancel_order's fields (technology, participant, client order id, submitted_by), likewise.
CancelFields = tuple[Any, ...]
assert CancelOrder.__struct_fields__ == (
    "technology_id",
    "participant_id",
    "client_order_id",
    "submitted_by",
), "CancelFields must follow CancelOrder"
_astuple: Final = msgspec.structs.astuple
#: A log time or offset on its way into events: typed Any, the compiled core keeps it the
#: int object it was given, where an int-typed one is a native int boxed afresh, a new int
#: object, for each event built from it (a placed order makes two or three).
BoxedInt = Any
#: The expiry heap is rebuilt without its dead entries once it is at least this long and
#: twice as long as its live entries were at the last rebuild.
_EXPIRIES_COMPACT_MIN: Final = 64
#: Participant ids a venue keeps one copy of before it starts over (see _participant).
_PARTICIPANTS_SHARED_MAX: Final = 10_000
#: Resting prices a venue keeps one copy of before it starts over (see _price).
_PRICES_SHARED_MAX: Final = 10_000


class ContinuousOrder(Order):
    """An order of this venue: it keeps its order number, not its order id string.

    The id (``{technology_id}:o{number}``) is built when an event or a snapshot needs it
    (:meth:`ContinuousVenue.order_id`): a resting order then costs an int, 30-odd bytes,
    instead of a string of 60-odd. The book's ``order_id`` stays empty and ``owner_key``
    unused: the venue finds its orders by participant and client order id.
    """

    __slots__ = ("number",)

    def __init__(
        self,
        number: int,
        participant_id: str,
        client_order_id: str,
        side: Side,
        price: int | None,
        quantity: int,
    ) -> None:
        super().__init__("", participant_id, client_order_id, side, price, quantity)
        self.number = number


class OrderWithOptions(ContinuousOrder):
    """A resting order with what a plain gtc order lacks: an expiry, post-only.

    A subclass, so that plain orders, the hot path, carry and set neither.
    """

    __slots__ = ("expires_at_ms", "post_only")

    def __init__(
        self,
        number: int,
        participant_id: str,
        client_order_id: str,
        side: Side,
        price: int | None,
        quantity: int,
        expires_at_ms: int | None,
        post_only: bool,
    ) -> None:
        super().__init__(number, participant_id, client_order_id, side, price, quantity)
        self.expires_at_ms = expires_at_ms
        self.post_only = post_only


#: A live gtd order's place in the expiry queue: (expires_at_ms, arrival, order). Arrival
#: numbers are unique, so orders are never compared; an entry whose order has
#: ``remaining == 0`` is dead (filled, cancelled, expired, or replaced by an amend).
_Expiry = tuple[int, int, ContinuousOrder]

#: The ended client order ids of one participant: the id itself while there is one, else a
#: set of them (as _Owned, a set for a single id would cost more than the id).
_Ended = str | set[str]

#: The live orders of one participant: the order itself while it has only one (a dict for a
#: single order would cost more than the joined key string it replaces), else a dict of its
#: live orders by client order id.
_Owned = ContinuousOrder | dict[str, ContinuousOrder]


class ContinuousVenue:
    """Price-time priority trading of one technology."""

    mechanism = "continuous"
    ends_by_itself = False
    orders_move_deadlines = False
    deadlines_trade = False

    __slots__ = (
        "_deal_prefix",
        "_ended",
        "_ended_entries",
        "_ended_in_order",
        "_ended_start",
        "_expiries",
        "_expiries_compact_at",
        "_expiry_arrivals",
        "_live",
        "_order_prefix",
        "_participants",
        "_prices",
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
        #: What every order id and deal id starts with: built once, so an id is one
        #: concatenation, not a three-part format.
        self._order_prefix = f"{technology_id}:o"
        self._deal_prefix = f"{technology_id}:d"
        self.tick_size = tick_size
        self.lot_size = lot_size
        self.reserve_price = reserve_price
        self.book = OrderBook(self_trade_prevention=True)
        self.seq = 0
        self.order_count = 0
        self.deal_count = 0
        #: Live orders by participant then client order id (see _Owned): the cancel index.
        #: Keyed by strings the orders hold anyway, so an entry costs no string of its own.
        self._live: dict[str, _Owned] = {}
        #: The participant and client order id of the most recent ended orders, oldest
        #: first, two entries an order, from _ended_start on: the strings the orders held,
        #: neither a joined key (built and hashed afresh for every order placed and ended)
        #: nor a tuple (more work for the garbage collector). The dead head is cut off once
        #: it is half the list.
        self._ended_in_order: list[str] = []
        self._ended_start = 0
        #: How many entries _ended_in_order keeps live: read from the module once per venue,
        #: not at every ended order.
        self._ended_entries = 2 * ENDED_ORDERS_REMEMBERED
        #: The client order ids in _ended_in_order by participant, to look up (see _Ended).
        #: A new order may use neither these nor a live order's (not copied here: an entry
        #: for each of a million resting orders costs 30-odd bytes each).
        self._ended: dict[str, _Ended] = {}
        #: One copy of each participant id for the orders to share (each decoded command
        #: brings its own): 60-odd bytes less per resting order.
        self._participants: dict[str, str] = {}
        #: One copy of each resting price for the orders to share, as participant ids: each
        #: decoded command's price is an int object of its own (32 bytes). For amended, gtd
        #: and restored orders: a plain order placed takes its level's (OrderBook.place).
        self._prices: dict[object, object] = {}
        self.last_price: int | None = None
        self.last_quantity: int | None = None
        #: Live gtd orders by (expiry, arrival): a heap with lazy deletion.
        self._expiries: list[_Expiry] = []
        self._expiry_arrivals = 0
        self._expiries_compact_at = _EXPIRIES_COMPACT_MIN

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
        """The earliest expiry of a live gtd order: dead entries on top are dropped first, so
        the answer is exact (a restored venue, which has none, gives the same)."""
        expiries = self._expiries
        while expiries:
            if expiries[0][2].remaining:
                return expiries[0][0]
            heappop(expiries)
        return None

    def on_deadline(self, now_ms: int, source_offset: int) -> list[Event]:
        """Cancel (``expired``) every live gtd order expiring at or before ``now_ms``, by
        expiry then arrival, each stamped with its own expiry time."""
        events: list[Event] = []
        expiries = self._expiries
        while expiries and expiries[0][0] <= now_ms:
            expires_at_ms, _, order = heappop(expiries)
            if not order.remaining:
                continue
            open_quantity = self.book.cancel(order)
            self._forget(order)
            events.append(
                self._cancelled(
                    order,
                    self.order_id(order),
                    open_quantity,
                    expires_at_ms,
                    source_offset,
                    CancelReason.EXPIRED,
                )
            )
        return events

    def amend(self, command: AmendOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        """Change a live limit order's open quantity and/or price (see AmendOrder).

        ``quantity`` is the new *open* quantity (what is left to trade), not a new total: the
        order's total becomes what it filled plus that. Given values are checked like a new
        order's (lot, tick, reserve, and price times the new open quantity within the notional
        limit). A lower open quantity at the same price keeps the order's place in the queue;
        anything else (a new price, a higher open quantity) takes it out and puts it back as a
        new arrival at the back of its price, keeping its order id and client order id, and
        matches it at once like a new order. Events: ``order_amended``, then any deals,
        self-trade cancels and the order's own ``order_done``.
        """
        order = self._find(command.participant_id, command.client_order_id)
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
        if command.quantity is None and command.price is None:
            return [
                self.reject(
                    command,
                    RejectReason.AMEND_CHANGES_NOTHING,
                    "an amend needs a new quantity, a new price or both",
                    timestamp_ms,
                    source_offset,
                )
            ]
        old_price = order.price
        assert old_price is not None  # only limit orders rest
        open_quantity = order.remaining if command.quantity is None else command.quantity
        price = old_price if command.price is None else command.price
        refusal = None if command.quantity is None else check_quantity(open_quantity, self.lot_size)
        if refusal is None:
            refusal = check_price(price, open_quantity, self.tick_size, self.reserve_price)
        if refusal is None and price == old_price and open_quantity == order.remaining:
            refusal = (
                RejectReason.AMEND_CHANGES_NOTHING,
                f"order {command.client_order_id} already has open quantity {open_quantity} "
                f"at price {price}",
            )
        if refusal is not None:
            reason, detail = refusal
            return [self.reject(command, reason, detail, timestamp_ms, source_offset)]
        book = self.book
        if price == old_price and open_quantity < order.remaining:
            book.reduce(order, open_quantity)
            return [self._amended(order, self.order_id(order), True, timestamp_ms, source_offset)]
        post_only = type(order) is OrderWithOptions and order.post_only
        if post_only and book.would_cross(order.side, price):
            return [
                self.reject(
                    command,
                    RejectReason.POST_ONLY_WOULD_TRADE,
                    f"post-only order {command.client_order_id} at {price} would trade "
                    f"against the best {_opposite(order.side)}",
                    timestamp_ms,
                    source_offset,
                )
            ]
        filled = order.quantity - order.remaining
        book.cancel(order)
        # A new object: the book may still hold the old one, dead, in its old queue.
        if type(order) is OrderWithOptions:
            replacement: ContinuousOrder = OrderWithOptions(
                order.number,
                order.participant_id,
                order.client_order_id,
                order.side,
                self._price(price),
                filled + open_quantity,
                order.expires_at_ms,
                order.post_only,
            )
        else:
            replacement = ContinuousOrder(
                order.number,
                order.participant_id,
                order.client_order_id,
                order.side,
                self._price(price),
                filled + open_quantity,
            )
        replacement.remaining = open_quantity
        replacement_id = self.order_id(replacement)
        events: list[Event] = [
            self._amended(replacement, replacement_id, False, timestamp_ms, source_offset)
        ]
        self._execute(replacement, replacement_id, events, timestamp_ms, source_offset)
        if replacement.remaining:
            self._file(replacement)
            self._schedule(replacement)
        else:
            self._forget(replacement)
        return events

    def close(self, timestamp_ms: int, source_offset: int) -> list[Event]:
        """Cancel every resting order, best price first on each side, bids first."""
        events: list[Event] = []
        self._expiries.clear()
        for side in (Side.BID, Side.OFFER):
            for order in self.book.resting_orders(side):
                open_quantity = self.book.cancel(order)
                self._forget(order)
                events.append(
                    self._cancelled(
                        order,
                        self.order_id(order),
                        open_quantity,
                        timestamp_ms,
                        source_offset,
                        CancelReason.TECHNOLOGY_CLOSED,
                    )
                )
        return events

    def view(self, state: ListingState, timestamp_ms: int, source_offset: int) -> MarketView:
        book = self.book
        return _MARKET_VIEW(
            self.technology_id,
            timestamp_ms,
            source_offset,
            _CONTINUOUS,  # mechanism
            state,
            [_PRICE_LEVEL(p, q, n) for p, q, n in book.top(_BID, _VIEW_LEVELS)],  # bids
            [_PRICE_LEVEL(p, q, n) for p, q, n in book.top(_OFFER, _VIEW_LEVELS)],  # offers
            self.last_price,
            self.last_quantity,
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
            [self._resting_state(o) for o in book.resting_orders(Side.BID)],
            [self._resting_state(o) for o in book.resting_orders(Side.OFFER)],
            self._ended_pairs(),
            self.last_price,
            self.last_quantity,
            [
                (expires, self.order_id(order))
                for expires, _, order in sorted(self._live_expiries())
            ],
            [
                self.order_id(o)
                for side in (Side.BID, Side.OFFER)
                for o in book.resting_orders(side)
                if type(o) is OrderWithOptions and o.post_only
            ],
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
        expiry_of = {order_id: expires for expires, order_id in state.expiries}
        post_only = set(state.post_only)
        restored: dict[str, ContinuousOrder] = {}
        for side, orders in ((Side.BID, state.bids), (Side.OFFER, state.offers)):
            for resting in orders:
                order_id = resting.order_id
                number = _order_number(state.technology_id, order_id)
                if order_id in expiry_of or order_id in post_only:
                    order: ContinuousOrder = OrderWithOptions(
                        number,
                        venue._participant(resting.participant_id),
                        resting.client_order_id,
                        side,
                        venue._price(resting.price),
                        resting.quantity,
                        expiry_of.get(order_id),
                        order_id in post_only,
                    )
                else:
                    order = ContinuousOrder(
                        number,
                        venue._participant(resting.participant_id),
                        resting.client_order_id,
                        side,
                        venue._price(resting.price),
                        resting.quantity,
                    )
                order.remaining = resting.remaining
                if venue.book.place(order):
                    raise SnapshotError(f"snapshot of {state.technology_id} has a crossed book")
                venue._file(order)
                restored[order_id] = order
        if len(expiry_of) != len(state.expiries) or not expiry_of.keys() <= restored.keys():
            raise SnapshotError(f"snapshot of {state.technology_id} has unknown gtd expiries")
        if not post_only <= restored.keys():
            raise SnapshotError(f"snapshot of {state.technology_id} has unknown post-only orders")
        for _, order_id in state.expiries:  # by expiry then arrival: already a heap's order
            venue._schedule(restored[order_id])
        for who, client_order_id in state.ended_client_orders:
            venue._add_ended(venue._participant(who), client_order_id)
        return venue

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _participant(self, participant_id: str) -> str:
        """The venue's copy of ``participant_id``; forgotten wholesale when the ids of many
        participants have passed (any sender may name any id), which only costs copies."""
        participants = self._participants
        shared = participants.get(participant_id)
        if shared is None:
            if len(participants) >= _PARTICIPANTS_SHARED_MAX:
                participants.clear()
            shared = participants[participant_id] = participant_id
        return shared

    def _price(self, price: int | None) -> int | None:
        """The venue's copy of a resting order's ``price``, kept like participant ids."""
        # Handled as objects: narrowed to an int, the compiled core would unbox the price
        # and box it afresh, a new int object, for each dict operation.
        given: object = price
        prices = self._prices
        shared = prices.get(given)
        if shared is None and given is not None:
            if len(prices) >= _PRICES_SHARED_MAX:
                prices.clear()
            shared = prices[given] = given
        return cast("int | None", shared)

    def order_id(self, order: Order) -> str:
        """The order id events and snapshots carry, built from the order's number."""
        return self._order_prefix + str(cast(ContinuousOrder, order).number)

    def live_order(self, participant_id: str, client_order_id: str) -> ContinuousOrder | None:
        return self._find(participant_id, client_order_id)

    def _find(self, participant_id: str, client_order_id: str) -> ContinuousOrder | None:
        owned = self._live.get(participant_id)
        if owned is None:
            return None
        if isinstance(owned, dict):
            return owned.get(client_order_id)
        return owned if owned.client_order_id == client_order_id else None

    def _file(self, order: ContinuousOrder) -> None:
        """Enter a live order in the cancel index (replacing one with its client order id)."""
        live = self._live
        participant_id = order.participant_id
        owned = live.get(participant_id)
        if owned is None:
            live[participant_id] = order
        elif isinstance(owned, dict):
            owned[order.client_order_id] = order
        elif owned.client_order_id == order.client_order_id:
            live[participant_id] = order
        else:
            live[participant_id] = {owned.client_order_id: owned, order.client_order_id: order}

    def _forget(self, order: Order) -> None:
        """Take a live order out of the cancel index."""
        live = self._live
        participant_id = order.participant_id
        owned = live[participant_id]
        if isinstance(owned, dict):
            del owned[order.client_order_id]
            if not owned:
                del live[participant_id]
        else:
            del live[participant_id]

    def place(self, command: PlaceOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        return self.place_fields(command, place_fields(command), timestamp_ms, source_offset)

    def place_fields(
        self, command: PlaceOrder, fields: PlaceFields, timestamp_ms: int, source_offset: int
    ) -> list[Event]:
        """A new order, whose fields the caller read (:func:`place_fields`). A plain gtc one
        (limit or market) is the hot path; any other time in force, an expiry or post-only
        takes :meth:`_place_with_options`. Both match through :meth:`_execute`, shared with
        amends."""
        participant_id: str = fields[1]
        client_order_id: str = fields[2]
        side_text: str = fields[3]
        quantity: int = fields[4]
        order_type_text: str = fields[5]
        price: int | None = fields[6]
        time_in_force: str = fields[7]
        expires_at_ms: int | None = fields[8]
        post_only: bool = fields[9]
        if time_in_force != "gtc" or expires_at_ms is not None or post_only:
            return self._place_with_options(command, timestamp_ms, source_offset)
        # Compared, not looked up in _SIDES and _ORDER_TYPES: no hash, no dict probe.
        side = _BID if side_text == "bid" else _OFFER if side_text == "offer" else None
        order_type = (
            _LIMIT
            if order_type_text == "limit"
            else _MARKET
            if order_type_text == "market"
            else None
        )
        # The venue's copy first: the index lookups below then find their keys by identity,
        # without comparing the strings.
        participant_id = self._participant(participant_id)
        refusal = self._refuse_order(
            command, side, order_type, participant_id, client_order_id, quantity, price
        )
        if refusal is not None:
            reason, detail = refusal
            return [self.reject(command, reason, detail, timestamp_ms, source_offset)]
        assert side is not None
        assert order_type is not None
        self.order_count += 1
        number = self.order_count
        order_id = self._order_prefix + str(number)
        order = ContinuousOrder(number, participant_id, client_order_id, side, price, quantity)
        # Boxed once for all the order's events (see BoxedInt).
        at: BoxedInt = timestamp_ms
        offset: BoxedInt = source_offset
        events: list[Event] = [self._accepted(order, order_id, order_type, at, offset)]
        self._execute(order, order_id, events, at, offset)
        if not order.remaining:
            return events
        if order_type is _MARKET:
            events.append(
                self._cancelled(
                    order, order_id, order.remaining, at, offset, _MARKET_ORDER_UNFILLED
                )
            )
        else:
            self._file(order)  # its price is its level's (OrderBook.place), not _price's
        return events

    def _place_with_options(
        self, command: PlaceOrder, timestamp_ms: int, source_offset: int
    ) -> list[Event]:
        """A new order other than plain gtc: checked like one, then for its options; a fok
        that cannot fill is killed before it touches the book; the rest of an ioc or fok is
        cancelled, a gtd one rests and is filed for expiry."""
        side = _SIDES.get(command.side)
        order_type = _ORDER_TYPES.get(command.order_type)
        participant_id = command.participant_id
        client_order_id = command.client_order_id
        refusal = self._refuse_order(
            command,
            side,
            order_type,
            participant_id,
            client_order_id,
            command.quantity,
            command.price,
        ) or self._refuse_options(command, side, order_type, timestamp_ms)
        if refusal is not None:
            return [self.reject(command, *refusal, timestamp_ms, source_offset)]
        assert side is not None
        assert order_type is not None
        tif = _TIMES_IN_FORCE[command.time_in_force]
        self.order_count += 1
        number = self.order_count
        order_id = self._order_prefix + str(number)
        order: ContinuousOrder
        if command.expires_at_ms is None and not command.post_only:  # ioc, fok
            order = ContinuousOrder(
                number,
                self._participant(participant_id),
                client_order_id,
                side,
                command.price,
                command.quantity,
            )
        else:
            order = OrderWithOptions(
                number,
                self._participant(participant_id),
                client_order_id,
                side,
                command.price,
                command.quantity,
                command.expires_at_ms,
                command.post_only,
            )
        events: list[Event] = [
            self._accepted(order, order_id, order_type, timestamp_ms, source_offset)
        ]
        if tif is _FOK and self.book.fillable(order) < order.remaining:
            events.append(
                self._cancelled(
                    order,
                    order_id,
                    order.remaining,
                    timestamp_ms,
                    source_offset,
                    CancelReason.FILL_OR_KILL,
                )
            )
            return events
        self._execute(order, order_id, events, timestamp_ms, source_offset)
        open_quantity = order.remaining
        if not open_quantity:
            return events
        reason: CancelReason
        if order_type is _MARKET:
            reason = CancelReason.MARKET_ORDER_UNFILLED
        elif tif is _IOC or tif is _FOK:  # fok: never after fillable(), but never rest it
            reason = CancelReason.IMMEDIATE_OR_CANCEL if tif is _IOC else CancelReason.FILL_OR_KILL
            self.book.cancel(order)  # its rest went into the book a moment ago: out again
        else:
            order.price = self._price(order.price)
            self._file(order)
            self._schedule(order)
            return events
        events.append(
            self._cancelled(order, order_id, open_quantity, timestamp_ms, source_offset, reason)
        )
        return events

    def _accepted(
        self,
        order: ContinuousOrder,
        order_id: str,
        order_type: OrderType,
        timestamp_ms: BoxedInt,
        source_offset: BoxedInt,
    ) -> Event:
        self.seq += 1
        return _ORDER_ACCEPTED(
            self.technology_id,
            self.seq,
            timestamp_ms,
            source_offset,
            order_id,
            order.participant_id,
            order.client_order_id,
            order.side,
            order_type,
            order.quantity,
            order.price,
        )

    def _execute(
        self,
        order: ContinuousOrder,
        order_id: str,
        events: list[Event],
        timestamp_ms: BoxedInt,
        source_offset: BoxedInt,
    ) -> None:
        """Match ``order`` in the book (a limit rest stays there) and add what happened to
        ``events``: self-trade cancels, deals, filled resting orders' and the order's own
        ``order_done``. The caller files or cancels the order's rest."""
        technology_id = self.technology_id
        side = order.side
        for execution in self.book.place(order):
            if type(execution) is _SELF_TRADE_CANCEL:  # rare: a wash trade prevented
                resting = execution.resting
                self._forget(resting)
                events.append(
                    self._cancelled(
                        resting,
                        self.order_id(resting),
                        execution.open_quantity,
                        timestamp_ms,
                        source_offset,
                        _SELF_TRADE_PREVENTED,
                    )
                )
                continue
            # A plain (resting, quantity, price) tuple: type() is cheaper than isinstance()
            # here, but mypy only narrows on the latter; cast, the compiled core unpacks it
            # in place rather than through an iterator (the price stays an object: see Fill).
            resting, quantity, price = cast(Fill, execution)
            self.deal_count += 1
            self.seq += 1
            self.last_price, self.last_quantity = price, quantity
            resting_id = self.order_id(resting)
            bid: Order
            offer: Order
            if side is _BID:
                bid, offer, bid_order_id, offer_order_id = order, resting, order_id, resting_id
            else:
                bid, offer, bid_order_id, offer_order_id = resting, order, resting_id, order_id
            events.append(
                _DEAL(
                    technology_id,
                    self.seq,
                    timestamp_ms,
                    source_offset,
                    self._deal_prefix + str(self.deal_count),  # deal_id
                    self.deal_count,  # deal_number
                    price,
                    quantity,
                    bid.participant_id,  # buyer_id
                    offer.participant_id,  # seller_id
                    bid_order_id,
                    offer_order_id,
                    bid.client_order_id,
                    offer.client_order_id,
                    side,  # aggressor_side
                )
            )
            if not resting.remaining:
                self._forget(resting)
                events.append(self._done(resting, resting_id, timestamp_ms, source_offset))
        if not order.remaining:
            events.append(self._done(order, order_id, timestamp_ms, source_offset))

    def cancel(self, command: CancelOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        return self.cancel_fields(cancel_fields(command), timestamp_ms, source_offset)

    def cancel_fields(
        self, fields: CancelFields, timestamp_ms: int, source_offset: int
    ) -> list[Event]:
        """A cancel, whose fields the caller read (:func:`cancel_fields`)."""
        technology_id: str = fields[0]
        participant_id: str = fields[1]
        client_order_id: str = fields[2]
        order = self._find(participant_id, client_order_id)
        if order is None:
            # Common (the order filled or ended before the cancel came): built here from the
            # fields read once, as rejection() would build it.
            return [
                _COMMAND_REJECTED(
                    technology_id,
                    self.next_seq(),
                    timestamp_ms,
                    source_offset,
                    _CANCEL_ORDER_TAG,  # command
                    participant_id,
                    client_order_id,
                    _UNKNOWN_ORDER,
                    f"participant {participant_id} has no live order "
                    f"{client_order_id} in {self.technology_id}",
                )
            ]
        self._forget(order)
        open_quantity = self.book.cancel(order)
        return [
            self._cancelled(
                order,
                self.order_id(order),
                open_quantity,
                timestamp_ms,
                source_offset,
                _CANCELLED_BY_PARTICIPANT,
            )
        ]

    def reject(
        self,
        command: PlaceOrder | CancelOrder | AmendOrder,
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
        participant_id: str,
        client_order_id: str,
        quantity: int,
        price: int | None,
    ) -> tuple[RejectReason, str] | None:
        """Why ``command`` (whose fields from ``participant_id`` on the caller passes, read
        once) cannot be placed, if it cannot."""
        if side is None:
            return RejectReason.UNKNOWN_SIDE, f"side {quoted(command.side)} is not bid or offer"
        if order_type is None:
            return (
                RejectReason.UNKNOWN_ORDER_TYPE,
                f"order type {quoted(command.order_type)} is not limit or market",
            )
        refusal = check_quantity(quantity, self.lot_size)
        if refusal is not None:
            return refusal
        if order_type is _MARKET:
            if price is not None:
                return RejectReason.PRICE_NOT_ALLOWED, "a market order takes no price"
        elif price is None:
            return RejectReason.PRICE_REQUIRED, "a limit order needs a price"
        else:
            refusal = check_price(price, quantity, self.tick_size, self.reserve_price)
            if refusal is not None:
                return refusal
        if self._find(participant_id, client_order_id) is None:
            if not self._ended or not self._has_ended(participant_id, client_order_id):
                return None
        else:
            return (
                RejectReason.DUPLICATE_CLIENT_ORDER_ID,
                f"client order id {client_order_id} is already live",
            )
        return (
            RejectReason.DUPLICATE_CLIENT_ORDER_ID,
            f"client order id {client_order_id} was used by an order that has "
            f"ended; ids are not reused within the last {ENDED_ORDERS_REMEMBERED} ended "
            f"orders of {self.technology_id}",
        )

    def _refuse_options(
        self,
        command: PlaceOrder,
        side: Side | None,
        order_type: OrderType | None,
        timestamp_ms: int,
    ) -> tuple[RejectReason, str] | None:
        """Time in force, expiry and post-only, once the order is otherwise fine."""
        tif = _TIMES_IN_FORCE.get(command.time_in_force)
        if tif is None:
            return (
                RejectReason.UNKNOWN_TIME_IN_FORCE,
                f"time in force {quoted(command.time_in_force)} is not gtc, ioc, fok or gtd",
            )
        expires_at_ms = command.expires_at_ms
        if tif is _GTD:
            if order_type is _MARKET:
                return (
                    RejectReason.INVALID_EXPIRY,
                    "a market order never rests, so it cannot be gtd",
                )
            if expires_at_ms is None:
                return RejectReason.INVALID_EXPIRY, "a gtd order needs expires_at_ms"
            if expires_at_ms <= timestamp_ms:
                return (
                    RejectReason.INVALID_EXPIRY,
                    f"expires_at_ms {expires_at_ms} is not after the order's time {timestamp_ms}",
                )
        elif expires_at_ms is not None:
            return (
                RejectReason.INVALID_EXPIRY,
                f"expires_at_ms is for gtd orders only, not {tif.value}",
            )
        if command.post_only:
            if order_type is _MARKET or tif is _IOC or tif is _FOK:
                kind = "market" if order_type is _MARKET else tif.value
                return (
                    RejectReason.NOT_SUPPORTED_BY_MECHANISM,
                    f"post-only is for limit orders that rest (gtc, gtd), not {kind} orders",
                )
            assert side is not None
            if self.book.would_cross(side, command.price):
                return (
                    RejectReason.POST_ONLY_WOULD_TRADE,
                    f"post-only {side.value} at {command.price} would trade against the "
                    f"best {_opposite(side)}",
                )
        return None

    def _schedule(self, order: ContinuousOrder) -> None:
        """File a resting gtd order in the expiry queue (other orders: nothing to do)."""
        if type(order) is not OrderWithOptions or order.expires_at_ms is None:
            return
        expiries = self._expiries
        heappush(expiries, (order.expires_at_ms, self._expiry_arrivals, order))
        self._expiry_arrivals += 1
        if len(expiries) >= self._expiries_compact_at:
            # Cancelled and filled gtd orders leave dead entries behind until their expiry:
            # drop them once they could be most of the heap (amortised O(log n) a push).
            expiries[:] = self._live_expiries()
            heapify(expiries)
            self._expiries_compact_at = max(_EXPIRIES_COMPACT_MIN, 2 * len(expiries))

    def _resting_state(self, order: Order) -> RestingOrderState:
        assert order.price is not None  # only limit orders rest
        return RestingOrderState(
            self.order_id(order),
            order.participant_id,
            order.client_order_id,
            order.price,
            order.quantity,
            order.remaining,
        )

    def _live_expiries(self) -> list[_Expiry]:
        return [entry for entry in self._expiries if entry[2].remaining]

    def _amended(
        self,
        order: Order,
        order_id: str,
        priority_kept: bool,
        timestamp_ms: int,
        source_offset: int,
    ) -> OrderAmended:
        self.seq += 1
        return _ORDER_AMENDED(
            self.technology_id,
            self.seq,
            timestamp_ms,
            source_offset,
            order_id,
            order.participant_id,
            order.client_order_id,
            order.remaining,
            order.price,
            priority_kept,
        )

    def _remember_ended(self, order: Order) -> None:
        """An ended order's id stays taken until ENDED_ORDERS_REMEMBERED newer ones ended."""
        self._add_ended(order.participant_id, order.client_order_id)
        in_order = self._ended_in_order
        start = self._ended_start
        if len(in_order) - start > self._ended_entries:
            self._drop_ended(in_order[start], in_order[start + 1])
            start += 2
            if 2 * start >= len(in_order):
                del in_order[:start]
                start = 0
            self._ended_start = start

    def _add_ended(self, participant_id: str, client_order_id: str) -> None:
        self._ended_in_order.append(participant_id)
        self._ended_in_order.append(client_order_id)
        ended = self._ended
        taken = ended.get(participant_id)
        if taken is None:
            ended[participant_id] = client_order_id
        elif isinstance(taken, set):
            taken.add(client_order_id)
        elif taken != client_order_id:
            ended[participant_id] = {taken, client_order_id}

    def _drop_ended(self, participant_id: str, client_order_id: str) -> None:
        """Forget one (the oldest) ended id, as discarding it from a set of keys would."""
        ended = self._ended
        taken = ended.get(participant_id)
        if taken is None:
            return
        if isinstance(taken, set):
            taken.discard(client_order_id)
            if not taken:
                del ended[participant_id]
        elif taken == client_order_id:
            del ended[participant_id]

    def _has_ended(self, participant_id: str, client_order_id: str) -> bool:
        taken = self._ended.get(participant_id)
        if taken is None:
            return False
        if isinstance(taken, set):
            return client_order_id in taken
        return taken == client_order_id

    def _ended_pairs(self) -> list[tuple[str, str]]:
        """(participant, client order id) of the remembered ended orders, oldest first."""
        in_order = self._ended_in_order
        return [(in_order[i], in_order[i + 1]) for i in range(self._ended_start, len(in_order), 2)]

    def _done(
        self, order: Order, order_id: str, timestamp_ms: BoxedInt, source_offset: BoxedInt
    ) -> OrderDone:
        self._remember_ended(order)
        self.seq += 1
        return _ORDER_DONE(
            self.technology_id,
            self.seq,
            timestamp_ms,
            source_offset,
            order_id,
            order.participant_id,
            order.client_order_id,
            order.quantity,
        )

    def _cancelled(
        self,
        order: Order,
        order_id: str,
        open_quantity: int,
        timestamp_ms: BoxedInt,
        source_offset: BoxedInt,
        reason: CancelReason,
    ) -> OrderCancelled:
        self._remember_ended(order)
        self.seq += 1
        return _ORDER_CANCELLED(
            self.technology_id,
            self.seq,
            timestamp_ms,
            source_offset,
            order_id,
            order.participant_id,
            order.client_order_id,
            order.quantity - open_quantity,
            open_quantity,
            reason,
        )


def place_fields(command: PlaceOrder) -> PlaceFields:
    """All of ``command``'s fields in one call (see PlaceFields)."""
    return _astuple(command)


def cancel_fields(command: CancelOrder) -> CancelFields:
    """All of ``command``'s fields in one call (see PlaceFields)."""
    return _astuple(command)


def _opposite(side: Side) -> str:
    return "offer" if side is _BID else "bid"


def _order_number(technology_id: str, order_id: str) -> int:
    """The number in an order id this venue gave (``{technology_id}:o{number}``)."""
    prefix = f"{technology_id}:o"
    digits = order_id[len(prefix) :]
    if not order_id.startswith(prefix) or not digits.isdigit() or str(int(digits)) != digits:
        raise SnapshotError(f"snapshot of {technology_id} has a foreign order id {order_id!r}")
    return int(digits)


_state_decoder = msgspec.msgpack.Decoder(ContinuousState)
