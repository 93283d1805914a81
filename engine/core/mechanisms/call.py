"""The call mechanism: a periodic uniform-price auction (a call market).

Rules, as implemented:
- The listing needs ``first_uncross_at_ms`` and ``call_interval_ms`` (1 ms to 366 days):
  uncrosses are scheduled at ``first_uncross_at_ms + k * call_interval_ms``. It may add a
  ``reserve_price`` (a floor for every limit price, as in the continuous book) and a
  ``starting_price`` (the reference price until the first clearing). Parameters of other
  mechanisms are refused (invalid_listing), so a seller never believes in a rule that does
  not apply.
- Orders (limit or market, both sides, quantities on the lot, prices on the tick and at
  least the reserve) collect during the call phase; nothing trades on arrival (post-only is
  therefore always met and has no effect). Time in force gtc or gtd; ioc and fok are
  refused (not_supported_by_mechanism): there is nothing to fill immediately. A gtd order
  needs ``expires_at_ms`` after its arrival and leaves at that time (OrderCancelled
  expired, stamped with it). Cancel works until the uncross; amend is refused.
- At an uncross, ONE clearing price, chosen among the limit prices present:
  1. the maximum executable volume, min(demand, supply) (market orders count at every price);
  2. then the minimum surplus |demand - supply|;
  3. then market pressure: if every remaining price has a buy surplus, the highest; if
     every one has a sell surplus, the lowest;
  4. then the price closest to the reference price (the last clearing price, else the
     listing's starting price, else its reserve, else the lowest remaining price);
     two prices equally close: the lower.
  With no limit price in the book, or no volume, nothing crosses.
- Allocation: price priority (market orders first), then time priority: bids eligible at the
  clearing price (market, or limit at or above it) are taken best first, offers likewise,
  and each bid in turn trades with the offers in priority order, so better-priced orders
  fill fully and the orders at the clearing price fill by arrival. Every deal is at the
  clearing price with ``aggressor_side`` bid (an auction has no aggressor; bid is a fixed
  convention). Self-trade: a bid never trades with its own participant's offer; it skips
  to the next offer, so with self-trades an uncross may execute less than the price's
  volume (the price itself is chosen without regard to who owns the orders).
- Events of an uncross, stamped with its scheduled time: each Deal, then OrderDone for the
  bid and then the offer it filled; then the unfilled rest of every market order is
  cancelled (market_order_unfilled: a market order takes part in one uncross only), bids
  then offers in priority order; last the uncross report, AuctionClosed: sold with the
  clearing ``price`` and executed ``quantity`` (winner_id and order_id null), or unsold
  with detail "nothing crossed"; ``bids`` counts the bid orders in the uncross. Unfilled
  limit orders, partly filled ones included, stay for the next call.
- Deadlines: at equal times gtd expiries come before the uncross (an order good till T is
  not in the uncross at T); an order arriving at a scheduled time T misses the uncross at T
  (the market fires deadlines before the record). An uncross is held only while orders
  rest: with an empty book the venue has no deadline, and the next order waits for the
  next scheduled time after its arrival. So a listing whose first uncross is long past, or
  an idle one, never replays a flood of empty reports.
- The market view, during the call phase: the indicative price, volume and signed surplus
  (demand minus supply at that price; positive: buyers left over) of an uncross now, the
  next uncross time (the scheduled one after the view's time while the book is empty), the
  five best limit price levels of each side (market orders show only in the indicative
  figures) and the last clearing price and volume.
- ``finished()`` is always False: a call market runs until its listing is closed; close
  cancels every resting order (technology_closed), bids first, each side in priority.
- Client order ids: continuous's bounded window (ENDED_ORDERS_REMEMBERED ended ids per
  technology, plus the live ones).

Pure: times are the log times passed in. Live orders are kept in arrival order (the
snapshot's order) and, per side, by price level: sorted prices with each level's remaining
quantity and its orders in arrival order, updated as orders arrive, fill and leave. So an
uncross walks only the orders it can fill, and the clearing price (from levels, not orders)
is computed once per change of the book, not at every uncross and view: a listing whose
book stopped moving costs the same at each call however many orders rest in it.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from heapq import heapify, heappop, heappush
from typing import Final, NamedTuple

import msgspec

from engine.core.mechanisms import events
from engine.core.mechanisms.call_state import CallOrderState, CallState
from engine.core.mechanisms.continuous import ENDED_ORDERS_REMEMBERED
from engine.core.rules import check_listing, check_price, check_quantity, quoted, rejection
from engine.core.snapshot import encode_venue
from engine.core.venue import ListingRefusal, Venue
from engine.errors import SnapshotError
from schemas.commands import AmendOrder, CancelOrder, ListTechnology, PlaceOrder
from schemas.common import (
    AuctionOutcome,
    CancelReason,
    ListingState,
    Mechanism,
    OrderType,
    RejectReason,
    Side,
)
from schemas.events import (
    AuctionClosed,
    CommandRejected,
    Deal,
    Event,
    MarketView,
    OrderAccepted,
    OrderCancelled,
    OrderDone,
    PriceLevel,
)

#: The longest call interval a listing may ask for: 366 days.
MAX_CALL_INTERVAL_MS: Final = 366 * 24 * 60 * 60 * 1000

#: Price levels of each side a market view shows.
_VIEW_LEVELS: Final = 5

#: Listing parameters of the other mechanisms: a call listing refuses them.
_OTHER_PARAMETERS: Final = (
    "min_increment",
    "ends_at_ms",
    "soft_close_window_ms",
    "soft_close_extension_ms",
    "buy_now_price",
    "price_step",
    "step_interval_ms",
    "offered_quantity",
)

_SIDES: Final = {"bid": Side.BID, "offer": Side.OFFER}
_ORDER_TYPES: Final = {"limit": OrderType.LIMIT, "market": OrderType.MARKET}
_BID: Final = Side.BID

Refusal = tuple[RejectReason, str]


class CallOrder:
    """A live order of the call phase. ``price`` None is a market order."""

    __slots__ = (
        "client_order_id",
        "expires_at_ms",
        "key",
        "number",
        "order_id",
        "participant_id",
        "price",
        "quantity",
        "remaining",
        "side",
    )

    def __init__(
        self,
        number: int,
        order_id: str,
        participant_id: str,
        client_order_id: str,
        side: Side,
        price: int | None,
        quantity: int,
        remaining: int,
        expires_at_ms: int | None,
    ) -> None:
        #: Arrival number (the N of ``<tech>:oN``): time priority.
        self.number = number
        self.order_id = order_id
        self.participant_id = participant_id
        self.client_order_id = client_order_id
        self.side = side
        self.price = price
        self.quantity = quantity
        self.remaining = remaining
        self.expires_at_ms = expires_at_ms
        self.key = _order_key(participant_id, client_order_id)

    def __repr__(self) -> str:
        return (
            f"CallOrder({self.order_id!r}, {self.side.value}, price={self.price}, "
            f"remaining={self.remaining}/{self.quantity})"
        )


class Clearing(NamedTuple):
    """What an uncross at ``price`` does, before self-trade prevention."""

    price: int
    #: min(demand, supply) at the price: the largest of all candidate prices.
    volume: int
    #: demand - supply at the price: positive means buyers are left over.
    surplus: int


def clearing_price(
    bids: list[tuple[int | None, int]],
    offers: list[tuple[int | None, int]],
    reference: int | None,
) -> Clearing | None:
    """The uniform price of an uncross of (price or None for market, quantity) orders, or
    None when nothing crosses. The four rules of the module's docstring, in order."""
    market_demand = market_supply = 0
    bid_at: dict[int, int] = {}
    offer_at: dict[int, int] = {}
    for price, quantity in bids:
        if price is None:
            market_demand += quantity
        else:
            bid_at[price] = bid_at.get(price, 0) + quantity
    for price, quantity in offers:
        if price is None:
            market_supply += quantity
        else:
            offer_at[price] = offer_at.get(price, 0) + quantity
    return clearing_from_levels(
        sorted(bid_at), bid_at, market_demand, sorted(offer_at), offer_at, market_supply, reference
    )


def clearing_from_levels(
    bid_prices: list[int],
    bid_at: dict[int, int],
    market_demand: int,
    offer_prices: list[int],
    offer_at: dict[int, int],
    market_supply: int,
    reference: int | None,
) -> Clearing | None:
    """:func:`clearing_price` from aggregated levels: each side's distinct limit prices,
    ascending, with the quantity at each, and the market orders' total. O(levels)."""
    if not bid_prices:
        prices = offer_prices
    elif not offer_prices:
        prices = bid_prices
    else:
        # Two ascending runs: the sort merges them in linear time; equal prices then dedupe.
        prices = list(dict.fromkeys(sorted(bid_prices + offer_prices)))
    if not prices:
        return None
    supply: list[int] = []
    total = market_supply
    for price in prices:
        total += offer_at.get(price, 0)
        supply.append(total)
    demand = [0] * len(prices)
    total = market_demand
    for i in range(len(prices) - 1, -1, -1):
        total += bid_at.get(prices[i], 0)
        demand[i] = total
    volumes = [min(d, s) for d, s in zip(demand, supply, strict=True)]
    volume = max(volumes)
    if not volume:
        return None
    candidates = [i for i, v in enumerate(volumes) if v == volume]
    least = min(abs(demand[i] - supply[i]) for i in candidates)
    candidates = [i for i in candidates if abs(demand[i] - supply[i]) == least]
    if all(demand[i] > supply[i] for i in candidates):
        chosen = candidates[-1]  # buyers left over everywhere: the highest price
    elif all(demand[i] < supply[i] for i in candidates):
        chosen = candidates[0]  # sellers left over everywhere: the lowest price
    else:
        anchor = prices[candidates[0]] if reference is None else reference
        chosen = min(candidates, key=lambda i: (abs(prices[i] - anchor), prices[i]))
    return Clearing(prices[chosen], volume, demand[chosen] - supply[chosen])


class CallSide:
    """One side's live orders by price level, updated as orders arrive, fill and leave, so
    an uncross or a view reads levels instead of sorting every live order.

    Each level (and the market orders) holds its orders in arrival order: they arrive with
    rising numbers, and a restore adds them by number.
    """

    __slots__ = ("count", "is_bid", "levels", "market", "market_quantity", "prices", "quantity")

    def __init__(self, is_bid: bool) -> None:
        #: Bids: best is highest; offers: best is lowest.
        self.is_bid = is_bid
        #: Distinct limit prices with live orders, ascending.
        self.prices: list[int] = []
        #: Live limit orders by price, each level by order key in arrival order.
        self.levels: dict[int, dict[str, CallOrder]] = {}
        #: Remaining quantity at each price of ``prices``.
        self.quantity: dict[int, int] = {}
        #: Live market orders by order key, in arrival order.
        self.market: dict[str, CallOrder] = {}
        #: Remaining quantity of the market orders.
        self.market_quantity = 0
        #: Live orders of the side.
        self.count = 0

    def add(self, order: CallOrder) -> None:
        self.count += 1
        price = order.price
        if price is None:
            self.market[order.key] = order
            self.market_quantity += order.remaining
            return
        level = self.levels.get(price)
        if level is None:
            insort(self.prices, price)
            self.levels[price] = {order.key: order}
            self.quantity[price] = order.remaining
        else:
            level[order.key] = order
            self.quantity[price] += order.remaining

    def remove(self, order: CallOrder) -> None:
        """The order leaves with its ``remaining`` as it stands."""
        self.count -= 1
        price = order.price
        if price is None:
            del self.market[order.key]
            self.market_quantity -= order.remaining
            return
        level = self.levels[price]
        del level[order.key]
        if level:
            self.quantity[price] -= order.remaining
        else:
            del self.levels[price]
            del self.quantity[price]
            prices = self.prices
            del prices[bisect_left(prices, price)]

    def filled(self, order: CallOrder, quantity: int) -> None:
        """``quantity`` of the order traded (its ``remaining`` is reduced by the caller)."""
        price = order.price
        if price is None:
            self.market_quantity -= quantity
        else:
            self.quantity[price] -= quantity

    def best_first(self) -> list[CallOrder]:
        """Every live order in priority order: market first, then best price, then arrival."""
        return self.eligible(None)

    def eligible(self, clearing_price: int | None) -> list[CallOrder]:
        """The orders that trade at ``clearing_price`` (every one for None), in priority."""
        orders = list(self.market.values())
        levels = self.levels
        if self.is_bid:
            for price in reversed(self.prices):
                if clearing_price is not None and price < clearing_price:
                    break
                orders.extend(levels[price].values())
        else:
            for price in self.prices:
                if clearing_price is not None and price > clearing_price:
                    break
                orders.extend(levels[price].values())
        return orders

    def top(self, count: int) -> list[PriceLevel]:
        """The ``count`` best limit price levels, best first."""
        prices = self.prices
        best = prices[-count:][::-1] if self.is_bid else prices[:count]
        quantity, levels = self.quantity, self.levels
        return [PriceLevel(price, quantity[price], len(levels[price])) for price in best]


class CallKind:
    """Opens and restores call venues."""

    @staticmethod
    def open(listing: ListTechnology) -> Venue | ListingRefusal:
        refusal = _listing_refusal(listing)
        if refusal is not None:
            return refusal
        assert listing.first_uncross_at_ms is not None
        assert listing.call_interval_ms is not None
        return CallVenue(
            listing.technology_id,
            listing.tick_size,
            listing.lot_size,
            listing.reserve_price,
            listing.starting_price,
            listing.first_uncross_at_ms,
            listing.call_interval_ms,
        )

    @staticmethod
    def restore(data: bytes) -> Venue:
        try:
            state = _state_decoder.decode(data)
        except msgspec.DecodeError as e:
            raise SnapshotError(f"call venue snapshot does not decode: {e}") from e
        return CallVenue.from_state(state)


def _listing_refusal(listing: ListTechnology) -> ListingRefusal | None:
    refusal = check_listing(listing.tick_size, listing.lot_size, listing.reserve_price)
    if refusal is not None:
        return refusal
    for name in _OTHER_PARAMETERS:
        if getattr(listing, name) is not None:
            return RejectReason.INVALID_LISTING, f"{name} does not apply to call"
    if listing.reserve_shown:
        return RejectReason.INVALID_LISTING, "reserve_shown does not apply to call"
    if listing.first_uncross_at_ms is None:
        return (
            RejectReason.INVALID_LISTING,
            "call needs first_uncross_at_ms (the log time of the first uncross)",
        )
    interval = listing.call_interval_ms
    if interval is None:
        return (
            RejectReason.INVALID_LISTING,
            "call needs call_interval_ms (the time between uncrosses)",
        )
    if not 0 < interval <= MAX_CALL_INTERVAL_MS:
        return (
            RejectReason.INVALID_LISTING,
            f"call_interval_ms {interval} must be in 1..{MAX_CALL_INTERVAL_MS}",
        )
    if listing.starting_price is not None:
        refusal = check_price(listing.starting_price, 0, listing.tick_size, listing.reserve_price)
        if refusal is not None:
            return RejectReason.INVALID_LISTING, f"starting_price: {refusal[1]}"
    return None


class CallVenue:
    """Periodic uniform-price auctions of one technology."""

    mechanism = "call"
    ends_by_itself = False
    orders_move_deadlines = True
    deadlines_trade = True

    __slots__ = (
        "_bids",
        "_clearing",
        "_clearing_known",
        "_ended_in_order",
        "_expiries",
        "_live",
        "_offers",
        "_taken",
        "call_interval_ms",
        "deal_count",
        "first_uncross_at_ms",
        "last_price",
        "last_quantity",
        "lot_size",
        "order_count",
        "reserve_price",
        "seq",
        "starting_price",
        "technology_id",
        "tick_size",
        "uncross_at_ms",
    )

    def __init__(
        self,
        technology_id: str,
        tick_size: int,
        lot_size: int,
        reserve_price: int | None,
        starting_price: int | None,
        first_uncross_at_ms: int,
        call_interval_ms: int,
    ) -> None:
        self.technology_id = technology_id
        self.tick_size = tick_size
        self.lot_size = lot_size
        self.reserve_price = reserve_price
        self.starting_price = starting_price
        self.first_uncross_at_ms = first_uncross_at_ms
        self.call_interval_ms = call_interval_ms
        #: The pending uncross: set while orders rest, None while the book is empty.
        self.uncross_at_ms: int | None = None
        self.seq = 0
        self.order_count = 0
        self.deal_count = 0
        self.last_price: int | None = None
        self.last_quantity: int | None = None
        #: Live orders by (participant, client order id), in arrival order.
        self._live: dict[str, CallOrder] = {}
        #: (expires_at_ms, arrival number, order) of gtd orders; ended ones are skipped lazily.
        self._expiries: list[tuple[int, int, CallOrder]] = []
        #: (participant, client order id) of the most recent ended orders, oldest first.
        self._ended_in_order: deque[str] = deque()
        #: Every id a new order may not use: the live ones and the remembered ended ones.
        self._taken: set[str] = set()
        #: The live orders of ``_live`` by side and price level.
        self._bids = CallSide(is_bid=True)
        self._offers = CallSide(is_bid=False)
        #: The clearing price of an uncross now, valid while ``_clearing_known``: any change
        #: of the book or of the reference price clears that flag.
        self._clearing: Clearing | None = None
        self._clearing_known = False

    # --- snapshots -------------------------------------------------------------------------

    def to_snapshot(self) -> bytes:
        return encode_venue(self.to_state())

    def to_state(self) -> CallState:
        return CallState(
            self.technology_id,
            self.tick_size,
            self.lot_size,
            self.reserve_price,
            self.starting_price,
            self.first_uncross_at_ms,
            self.call_interval_ms,
            self.uncross_at_ms,
            self.seq,
            self.order_count,
            self.deal_count,
            [
                CallOrderState(
                    o.number,
                    o.order_id,
                    o.participant_id,
                    o.client_order_id,
                    o.side,
                    o.price,
                    o.quantity,
                    o.remaining,
                    o.expires_at_ms,
                )
                for o in self._live.values()
            ],
            [_split_key(key) for key in self._ended_in_order],
            self.last_price,
            self.last_quantity,
        )

    @classmethod
    def from_state(cls, state: CallState) -> CallVenue:
        venue = cls(
            state.technology_id,
            state.tick_size,
            state.lot_size,
            state.reserve_price,
            state.starting_price,
            state.first_uncross_at_ms,
            state.call_interval_ms,
        )
        venue.uncross_at_ms = state.uncross_at_ms
        venue.seq, venue.order_count, venue.deal_count = (
            state.seq,
            state.order_count,
            state.deal_count,
        )
        venue.last_price, venue.last_quantity = state.last_price, state.last_quantity
        for saved in state.orders:
            order = CallOrder(
                saved.number,
                saved.order_id,
                saved.participant_id,
                saved.client_order_id,
                saved.side,
                saved.price,
                saved.quantity,
                saved.remaining,
                saved.expires_at_ms,
            )
            if order.key in venue._live or not 0 < order.remaining <= order.quantity:
                raise SnapshotError(f"snapshot of {state.technology_id} has a bad order {order}")
            venue._live[order.key] = order
            if order.expires_at_ms is not None:
                venue._expiries.append((order.expires_at_ms, order.number, order))
        if bool(venue._live) != (venue.uncross_at_ms is not None):
            raise SnapshotError(f"snapshot of {state.technology_id} has a bad uncross time")
        # The levels are not in the snapshot (its format predates them): rebuilt, by number
        # so that each level is in arrival order.
        for order in sorted(venue._live.values(), key=_number):
            venue._side(order).add(order)
        heapify(venue._expiries)
        venue._ended_in_order.extend(
            _order_key(who, client_order_id) for who, client_order_id in state.ended_client_orders
        )
        venue._taken.update(venue._live)
        venue._taken.update(venue._ended_in_order)
        return venue

    # --- the Venue protocol ----------------------------------------------------------------

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def has_orders(self) -> bool:
        return self.order_count > 0

    def finished(self) -> bool:
        return False  # a call market runs until its listing is closed

    def next_deadline(self) -> int | None:
        expiry = self._next_expiry()
        uncross = self.uncross_at_ms
        if expiry is None:
            return uncross
        if uncross is None:
            return expiry
        return min(expiry, uncross)

    def on_deadline(self, now_ms: int, source_offset: int) -> list[Event]:
        """Expiries and uncrosses due at or before ``now_ms``, oldest first; at equal times
        the expiries first."""
        events: list[Event] = []
        while True:
            expiry = self._next_expiry()
            uncross = self.uncross_at_ms
            if expiry is not None and expiry <= now_ms and (uncross is None or expiry <= uncross):
                self._expire(expiry, source_offset, events)
            elif uncross is not None and uncross <= now_ms:
                if not self._uncross(uncross, source_offset, events):
                    self._skip_idle_uncrosses(now_ms)
            else:
                return events

    def _skip_idle_uncrosses(self, now_ms: int) -> None:
        """After an uncross that changed nothing, every later one does nothing either until
        the book changes: jump to the first due after ``now_ms`` or at the next expiry, so a
        long quiet spell costs one step, not one per missed interval."""
        if self.uncross_at_ms is None:
            return
        expiry = self._next_expiry()
        horizon = now_ms if expiry is None else min(now_ms, expiry - 1)
        if horizon >= self.uncross_at_ms:
            self.uncross_at_ms = self._scheduled_after(horizon)

    def place(self, command: PlaceOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        side = _SIDES.get(command.side)
        order_type = _ORDER_TYPES.get(command.order_type)
        key = _order_key(command.participant_id, command.client_order_id)
        refusal = self._refuse_order(command, side, order_type, key, timestamp_ms)
        if refusal is not None:
            return [self.reject(command, *refusal, timestamp_ms, source_offset)]
        assert side is not None
        assert order_type is not None
        self.order_count += 1
        number = self.order_count
        expires_at_ms = command.expires_at_ms if command.time_in_force == "gtd" else None
        order = CallOrder(
            number,
            f"{self.technology_id}:o{number}",
            command.participant_id,
            command.client_order_id,
            side,
            command.price,
            command.quantity,
            command.quantity,
            expires_at_ms,
        )
        self._taken.add(key)
        self._live[key] = order
        self._side(order).add(order)
        self._clearing_known = False
        if expires_at_ms is not None:
            heappush(self._expiries, (expires_at_ms, number, order))
        if self.uncross_at_ms is None:
            self.uncross_at_ms = self._scheduled_after(timestamp_ms)
        return [
            OrderAccepted(
                technology_id=self.technology_id,
                seq=self.next_seq(),
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

    def cancel(self, command: CancelOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        order = self._live.get(_order_key(command.participant_id, command.client_order_id))
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
        return [
            self._cancel(order, CancelReason.CANCELLED_BY_PARTICIPANT, timestamp_ms, source_offset)
        ]

    def amend(self, command: AmendOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        return [
            self.reject(
                command,
                RejectReason.NOT_SUPPORTED_BY_MECHANISM,
                "a call auction order cannot be amended: cancel it and place a new one",
                timestamp_ms,
                source_offset,
            )
        ]

    def close(self, timestamp_ms: int, source_offset: int) -> list[Event]:
        """Cancel every resting order, bids first, each side in priority order."""
        return [
            self._cancel(order, CancelReason.TECHNOLOGY_CLOSED, timestamp_ms, source_offset)
            for order in self.live_orders()
        ]

    def view(self, state: ListingState, timestamp_ms: int, source_offset: int) -> MarketView:
        indicative = self._clearing_now()
        next_uncross = self.uncross_at_ms
        if next_uncross is None:
            next_uncross = self._scheduled_after(timestamp_ms)
        return MarketView(
            technology_id=self.technology_id,
            timestamp_ms=timestamp_ms,
            source_offset=source_offset,
            mechanism=Mechanism.CALL,
            state=state,
            bids=self._bids.top(_VIEW_LEVELS),
            offers=self._offers.top(_VIEW_LEVELS),
            last_price=self.last_price,
            last_quantity=self.last_quantity,
            indicative_price=None if indicative is None else indicative.price,
            indicative_volume=0 if indicative is None else indicative.volume,
            surplus=None if indicative is None else indicative.surplus,
            next_uncross_at_ms=next_uncross,
        )

    # --- helpers ---------------------------------------------------------------------------

    def live_orders(self) -> list[CallOrder]:
        """Every live order, bids then offers, each side in priority order."""
        return [*self._bids.best_first(), *self._offers.best_first()]

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
        key: str,
        timestamp_ms: int,
    ) -> Refusal | None:
        if side is None:
            return RejectReason.UNKNOWN_SIDE, f"side {quoted(command.side)} is not bid or offer"
        if order_type is None:
            return (
                RejectReason.UNKNOWN_ORDER_TYPE,
                f"order type {quoted(command.order_type)} is not limit or market",
            )
        time_in_force = command.time_in_force
        if time_in_force in ("ioc", "fok"):
            return (
                RejectReason.NOT_SUPPORTED_BY_MECHANISM,
                f"time in force {time_in_force} does not apply to a call auction: orders "
                "only trade at the uncross (use gtc or gtd)",
            )
        if time_in_force not in ("gtc", "gtd"):
            return (
                RejectReason.UNKNOWN_TIME_IN_FORCE,
                f"time in force {quoted(time_in_force)} is not gtc, ioc, fok or gtd",
            )
        refusal = check_quantity(command.quantity, self.lot_size)
        if refusal is not None:
            return refusal
        if order_type is OrderType.MARKET:
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
        expires_at_ms = command.expires_at_ms
        if time_in_force == "gtd":
            if expires_at_ms is None:
                return RejectReason.INVALID_EXPIRY, "a gtd order needs expires_at_ms"
            if expires_at_ms <= timestamp_ms:
                return (
                    RejectReason.INVALID_EXPIRY,
                    f"expires_at_ms {expires_at_ms} is not after the order's time {timestamp_ms}",
                )
        elif expires_at_ms is not None:
            return RejectReason.INVALID_EXPIRY, "only a gtd order takes expires_at_ms"
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

    def _scheduled_after(self, timestamp_ms: int) -> int:
        """The first scheduled uncross strictly after ``timestamp_ms``."""
        first, interval = self.first_uncross_at_ms, self.call_interval_ms
        if timestamp_ms < first:
            return first
        return first + ((timestamp_ms - first) // interval + 1) * interval

    def _reference_price(self) -> int | None:
        if self.last_price is not None:
            return self.last_price
        if self.starting_price is not None:
            return self.starting_price
        return self.reserve_price

    def _side(self, order: CallOrder) -> CallSide:
        return self._bids if order.side is _BID else self._offers

    def _clearing_now(self) -> Clearing | None:
        """The clearing price of an uncross now, computed from the levels once per change."""
        if not self._clearing_known:
            bids, offers = self._bids, self._offers
            self._clearing = clearing_from_levels(
                bids.prices,
                bids.quantity,
                bids.market_quantity,
                offers.prices,
                offers.quantity,
                offers.market_quantity,
                self._reference_price(),
            )
            self._clearing_known = True
        return self._clearing

    def _next_expiry(self) -> int | None:
        """The earliest expiry of a live gtd order (ended orders' entries are dropped)."""
        expiries, live = self._expiries, self._live
        while expiries:
            order = expiries[0][2]
            if live.get(order.key) is order:
                return expiries[0][0]
            heappop(expiries)
        return None

    def _expire(self, due_ms: int, source_offset: int, events: list[Event]) -> None:
        """Every live gtd order expiring at ``due_ms``, in arrival order."""
        expiries, live = self._expiries, self._live
        while expiries and expiries[0][0] == due_ms:
            order = heappop(expiries)[2]
            if live.get(order.key) is order:
                events.append(self._cancel(order, CancelReason.EXPIRED, due_ms, source_offset))

    def _uncross(self, due_ms: int, source_offset: int, events: list[Event]) -> bool:
        """The uncross scheduled at ``due_ms``: deals, dones, market rests cancelled, report.

        Returns whether it changed anything. One that crosses nothing and cancels nothing
        reports nothing: the market view's next uncross time moves on instead."""
        before = len(events)
        bids, offers = self._bids, self._offers
        bid_count = bids.count
        clearing = self._clearing_now()
        # Taken before any fill: the ones left unfilled are cancelled after the matching.
        market_orders = [*bids.market.values(), *offers.market.values()]
        executed = 0
        if clearing is not None:
            price = clearing.price
            eligible_offers = offers.eligible(price)
            first = 0  # the first eligible offer that may still have something left
            for bid in bids.eligible(price):
                i = first
                while bid.remaining and i < len(eligible_offers):
                    offer = eligible_offers[i]
                    if not offer.remaining:
                        if i == first:
                            first += 1
                        i += 1
                        continue
                    if offer.participant_id == bid.participant_id:
                        i += 1  # no self-trade: the next offer
                        continue
                    quantity = min(bid.remaining, offer.remaining)
                    bid.remaining -= quantity
                    offer.remaining -= quantity
                    bids.filled(bid, quantity)
                    offers.filled(offer, quantity)
                    executed += quantity
                    events.append(self._deal(bid, offer, price, quantity, due_ms, source_offset))
                    events.extend(
                        self._done(filled, due_ms, source_offset)
                        for filled in (bid, offer)
                        if not filled.remaining
                    )
                if first >= len(eligible_offers):
                    break
        events.extend(
            self._cancel(order, CancelReason.MARKET_ORDER_UNFILLED, due_ms, source_offset)
            for order in market_orders
            if order.remaining
        )
        if executed:
            assert clearing is not None
            self.last_price, self.last_quantity = clearing.price, executed
            self._clearing_known = False  # the fills, and a new reference price
        changed = len(events) > before
        if not changed:
            self.uncross_at_ms = due_ms + self.call_interval_ms if self._live else None
            return False
        events.append(
            AuctionClosed(
                technology_id=self.technology_id,
                seq=self.next_seq(),
                timestamp_ms=due_ms,
                source_offset=source_offset,
                outcome=AuctionOutcome.SOLD if executed else AuctionOutcome.UNSOLD,
                winner_id=None,
                order_id=None,
                price=clearing.price if executed and clearing is not None else None,
                quantity=executed,
                bids=bid_count,
                detail="" if executed else "nothing crossed",
            )
        )
        self.uncross_at_ms = due_ms + self.call_interval_ms if self._live else None
        return True

    def _deal(
        self,
        bid: CallOrder,
        offer: CallOrder,
        price: int,
        quantity: int,
        timestamp_ms: int,
        source_offset: int,
    ) -> Deal:
        return events.deal(
            self,
            buyer_id=bid.participant_id,
            bid_order_id=bid.order_id,
            bid_client_order_id=bid.client_order_id,
            seller_id=offer.participant_id,
            offer_order_id=offer.order_id,
            offer_client_order_id=offer.client_order_id,
            price=price,
            quantity=quantity,
            timestamp_ms=timestamp_ms,
            source_offset=source_offset,
        )

    def _end(self, order: CallOrder) -> None:
        """The order leaves the book; its id stays taken within the window of ended ids."""
        live = self._live
        del live[order.key]
        self._side(order).remove(order)
        self._clearing_known = False
        if not live:
            self.uncross_at_ms = None
        in_order = self._ended_in_order
        in_order.append(order.key)
        if len(in_order) > ENDED_ORDERS_REMEMBERED:
            self._taken.discard(in_order.popleft())

    def _done(self, order: CallOrder, timestamp_ms: int, source_offset: int) -> OrderDone:
        self._end(order)
        return events.done(
            self,
            order.order_id,
            order.participant_id,
            order.client_order_id,
            order.quantity,
            timestamp_ms,
            source_offset,
        )

    def _cancel(
        self, order: CallOrder, reason: CancelReason, timestamp_ms: int, source_offset: int
    ) -> OrderCancelled:
        self._end(order)
        open_quantity, order.remaining = order.remaining, 0
        return events.cancelled(
            self,
            order.order_id,
            order.participant_id,
            order.client_order_id,
            order.quantity - open_quantity,
            open_quantity,
            reason,
            timestamp_ms,
            source_offset,
        )


def _number(order: CallOrder) -> int:
    return order.number


def _order_key(participant_id: str, client_order_id: str) -> str:
    """One string for (participant, client order id): identifiers cannot hold ``\\x1f``."""
    return f"{participant_id}\x1f{client_order_id}"


def _split_key(key: str) -> tuple[str, str]:
    participant_id, client_order_id = key.split("\x1f")
    return participant_id, client_order_id


_state_decoder = msgspec.msgpack.Decoder(CallState)
