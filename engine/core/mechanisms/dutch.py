"""The dutch mechanism: a descending clock, the first bids take the units at its price.

Rules, as implemented:
- The listing needs ``starting_price``, ``price_step``, ``step_interval_ms`` (1 ms to 366
  days) and ``reserve_price`` (the floor); ``offered_quantity`` is the number of units for
  sale, a multiple of the lot (default: one lot). Prices are positive multiples of the
  tick; the starting price is at least the floor, and its value for every unit offered
  fits the notional limit, so every deal does. Parameters of other mechanisms are refused.
- The clock starts when the market calls :meth:`DutchVenue.start` with the listing's log
  time, right after opening the venue (``open`` cannot see that time); before that, bids
  are refused (auction_not_running). The price at log time ``t`` is
  ``max(floor, starting_price - price_step * ((t - start) // step_interval_ms))``: a step
  due at ``T`` applies to a bid stamped ``T`` (the market fires deadlines first). The
  price never goes below the floor and stays there; there is no event per step.
- A bid (side bid) accepts the current price: without a price (a market bid, or a limit bid
  with no price) or with a price at least the current one, on the tick grid (bid_too_low
  below it); it pays the current price, whatever it offered. It takes min(its quantity,
  the units left): Deal (buyer the bidder, seller the listing's participant, aggressor
  bid; no seller order: ``offer_order_id`` and ``offer_client_order_id`` are empty), then
  OrderDone, or OrderCancelled immediate_or_cancel for the part it could not get (an
  acceptance never rests). gtc and ioc are accepted and act alike; fok takes all of its
  quantity or nothing (OrderCancelled fill_or_kill); gtd, post-only and offers are refused
  (not_supported_by_mechanism). The seller may not bid (seller_may_not_bid).
- When the last unit goes: AuctionClosed sold, with the total ``quantity`` sold and the last
  deal's ``price`` (the lowest: the clock only falls); ``winner_id`` and ``order_id`` name
  the buyer when one bid took every unit, else they are null (the deals tell who bought);
  ``bids`` counts the accepted bids. The venue has then finished. ``close()`` ends it too:
  AuctionClosed sold (if some units went, detail "closed with N of M units sold") or
  unsold (detail "no bids").
- Cancel: cancel_not_allowed (nothing rests); amend: not_supported_by_mechanism.
- Deadlines: the next step time while the price is above the floor and units remain; the
  market view shows ``current_price``, ``next_step_at_ms`` and ``remaining_quantity`` (and
  the last deal).
- Client order ids: every id used in the auction stays taken (a Dutch auction is small, so
  the set of all of them is kept).

Pure: times are the log times passed in.
"""

from __future__ import annotations

from typing import Final

import msgspec

from engine.core.mechanisms import events as shared
from engine.core.rules import check_listing, check_price, check_quantity, quoted, rejection
from engine.core.snapshot import encode_venue
from engine.core.venue import ListingRefusal, Venue
from engine.errors import SnapshotError
from schemas.commands import AmendOrder, CancelOrder, ListTechnology, PlaceOrder
from schemas.common import (
    MAX_PRICE,
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
    Event,
    MarketView,
    OrderAccepted,
)

#: The longest step interval a listing may ask for: 366 days.
MAX_STEP_INTERVAL_MS: Final = 366 * 24 * 60 * 60 * 1000

#: Listing parameters of the other mechanisms: a dutch listing refuses them.
_OTHER_PARAMETERS: Final = (
    "min_increment",
    "ends_at_ms",
    "soft_close_window_ms",
    "soft_close_extension_ms",
    "buy_now_price",
    "first_uncross_at_ms",
    "call_interval_ms",
)

Refusal = tuple[RejectReason, str]


class DutchState(msgspec.Struct, array_like=True, frozen=True, tag="dutch"):
    """A dutch venue as bytes: its listing, clock, counters and the ids used."""

    technology_id: str
    seller_id: str
    tick_size: int
    lot_size: int
    floor_price: int
    starting_price: int
    price_step: int
    step_interval_ms: int
    offered_quantity: int
    started_at_ms: int | None
    steps_done: int
    remaining: int
    closed: bool
    seq: int
    order_count: int
    deal_count: int
    #: (participant, order id) of the first bid that bought, and how many bids bought.
    first_buyer: tuple[str, str] | None
    buyers: int
    last_price: int | None
    last_quantity: int | None
    #: (participant, client order id) of every accepted bid, in arrival order.
    client_orders: list[tuple[str, str]]


class DutchKind:
    """Opens and restores dutch venues."""

    @staticmethod
    def open(listing: ListTechnology) -> Venue | ListingRefusal:
        refusal = _listing_refusal(listing)
        if refusal is not None:
            return refusal
        assert listing.reserve_price is not None
        assert listing.starting_price is not None
        assert listing.price_step is not None
        assert listing.step_interval_ms is not None
        return DutchVenue(
            listing.technology_id,
            listing.participant_id,
            listing.tick_size,
            listing.lot_size,
            listing.reserve_price,
            listing.starting_price,
            listing.price_step,
            listing.step_interval_ms,
            listing.lot_size if listing.offered_quantity is None else listing.offered_quantity,
        )

    @staticmethod
    def restore(data: bytes) -> Venue:
        try:
            state = _state_decoder.decode(data)
        except msgspec.DecodeError as e:
            raise SnapshotError(f"dutch venue snapshot does not decode: {e}") from e
        return DutchVenue.from_state(state)


def _listing_refusal(listing: ListTechnology) -> ListingRefusal | None:
    tick, lot, floor = listing.tick_size, listing.lot_size, listing.reserve_price
    refusal = check_listing(tick, lot, floor)
    if refusal is not None:
        return refusal
    for name in _OTHER_PARAMETERS:
        if getattr(listing, name) is not None:
            return RejectReason.INVALID_LISTING, f"{name} does not apply to dutch"
    if listing.reserve_shown:
        return RejectReason.INVALID_LISTING, "reserve_shown does not apply to dutch"
    if floor is None:
        return RejectReason.INVALID_LISTING, "dutch needs reserve_price (the clock's floor)"
    for name in ("starting_price", "price_step", "step_interval_ms"):
        if getattr(listing, name) is None:
            return RejectReason.INVALID_LISTING, f"dutch needs {name}"
    offered = lot if listing.offered_quantity is None else listing.offered_quantity
    refusal = check_quantity(offered, lot)
    if refusal is not None:
        return RejectReason.INVALID_LISTING, f"offered_quantity: {refusal[1]}"
    assert listing.starting_price is not None
    refusal = check_price(listing.starting_price, offered, tick, floor)
    if refusal is not None:
        return RejectReason.INVALID_LISTING, f"starting_price: {refusal[1]}"
    step = listing.price_step
    assert step is not None
    if not 0 < step <= MAX_PRICE or step % tick:
        return (
            RejectReason.INVALID_LISTING,
            f"price_step {step} must be a positive multiple of tick {tick}, at most {MAX_PRICE}",
        )
    interval = listing.step_interval_ms
    assert interval is not None
    if not 0 < interval <= MAX_STEP_INTERVAL_MS:
        return (
            RejectReason.INVALID_LISTING,
            f"step_interval_ms {interval} must be in 1..{MAX_STEP_INTERVAL_MS}",
        )
    return None


class DutchVenue:
    """A descending-clock auction of ``offered_quantity`` units of one technology."""

    mechanism = "dutch"
    ends_by_itself = True
    orders_move_deadlines = True
    deadlines_trade = False

    __slots__ = (
        "_client_orders",
        "_taken",
        "buyers",
        "closed",
        "deal_count",
        "first_buyer",
        "floor_price",
        "last_price",
        "last_quantity",
        "lot_size",
        "offered_quantity",
        "order_count",
        "price_step",
        "remaining",
        "seller_id",
        "seq",
        "started_at_ms",
        "starting_price",
        "step_interval_ms",
        "steps_done",
        "technology_id",
        "tick_size",
    )

    def __init__(
        self,
        technology_id: str,
        seller_id: str,
        tick_size: int,
        lot_size: int,
        floor_price: int,
        starting_price: int,
        price_step: int,
        step_interval_ms: int,
        offered_quantity: int,
    ) -> None:
        self.technology_id = technology_id
        self.seller_id = seller_id
        self.tick_size = tick_size
        self.lot_size = lot_size
        self.floor_price = floor_price
        self.starting_price = starting_price
        self.price_step = price_step
        self.step_interval_ms = step_interval_ms
        self.offered_quantity = offered_quantity
        #: The clock's start (the listing's log time), once the market has told it.
        self.started_at_ms: int | None = None
        #: Steps the deadlines have applied so far (the price is a function of time; this
        #: only says which step deadline comes next).
        self.steps_done = 0
        self.remaining = offered_quantity
        self.closed = False
        self.seq = 0
        self.order_count = 0
        self.deal_count = 0
        self.first_buyer: tuple[str, str] | None = None
        self.buyers = 0
        self.last_price: int | None = None
        self.last_quantity: int | None = None
        #: Keys of every accepted bid, in arrival order, and the same as a set.
        self._client_orders: list[str] = []
        self._taken: set[str] = set()

    # --- snapshots -------------------------------------------------------------------------

    def to_snapshot(self) -> bytes:
        return encode_venue(self.to_state())

    def to_state(self) -> DutchState:
        return DutchState(
            self.technology_id,
            self.seller_id,
            self.tick_size,
            self.lot_size,
            self.floor_price,
            self.starting_price,
            self.price_step,
            self.step_interval_ms,
            self.offered_quantity,
            self.started_at_ms,
            self.steps_done,
            self.remaining,
            self.closed,
            self.seq,
            self.order_count,
            self.deal_count,
            self.first_buyer,
            self.buyers,
            self.last_price,
            self.last_quantity,
            [_split_key(key) for key in self._client_orders],
        )

    @classmethod
    def from_state(cls, state: DutchState) -> DutchVenue:
        venue = cls(
            state.technology_id,
            state.seller_id,
            state.tick_size,
            state.lot_size,
            state.floor_price,
            state.starting_price,
            state.price_step,
            state.step_interval_ms,
            state.offered_quantity,
        )
        if not 0 <= state.remaining <= state.offered_quantity or state.step_interval_ms <= 0:
            raise SnapshotError(f"snapshot of {state.technology_id} is inconsistent")
        venue.started_at_ms = state.started_at_ms
        venue.steps_done = state.steps_done
        venue.remaining = state.remaining
        venue.closed = state.closed
        venue.seq, venue.order_count, venue.deal_count = (
            state.seq,
            state.order_count,
            state.deal_count,
        )
        venue.first_buyer, venue.buyers = state.first_buyer, state.buyers
        venue.last_price, venue.last_quantity = state.last_price, state.last_quantity
        venue._client_orders = [_order_key(*pair) for pair in state.client_orders]
        venue._taken = set(venue._client_orders)
        return venue

    # --- the clock -------------------------------------------------------------------------

    def start(self, timestamp_ms: int) -> None:
        """Start the clock at the listing's log time (the first call wins)."""
        if self.started_at_ms is None:
            self.started_at_ms = timestamp_ms

    def steps_at(self, timestamp_ms: int) -> int:
        """How many steps the clock has taken at ``timestamp_ms`` (none past the floor)."""
        started = self.started_at_ms
        if started is None or timestamp_ms < started:
            return 0
        return min(self._steps_to_floor(), (timestamp_ms - started) // self.step_interval_ms)

    def price_at(self, timestamp_ms: int) -> int:
        """The clock's price at ``timestamp_ms``: never below the floor."""
        return max(
            self.floor_price, self.starting_price - self.price_step * self.steps_at(timestamp_ms)
        )

    def _steps_to_floor(self) -> int:
        return -(-(self.starting_price - self.floor_price) // self.price_step)

    def _running(self) -> bool:
        return self.started_at_ms is not None and not self.closed and self.remaining > 0

    def _step_time(self, steps: int) -> int | None:
        """When step number ``steps + 1`` is due, or None at the floor or once ended."""
        started = self.started_at_ms
        if started is None or not self._running() or steps >= self._steps_to_floor():
            return None
        return started + (steps + 1) * self.step_interval_ms

    # --- the Venue protocol ----------------------------------------------------------------

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def has_orders(self) -> bool:
        return self.order_count > 0

    def finished(self) -> bool:
        return self.closed or self.remaining == 0

    def next_deadline(self) -> int | None:
        return self._step_time(self.steps_done)

    def on_deadline(self, now_ms: int, source_offset: int) -> list[Event]:
        """The steps due by ``now_ms``: no events, only a new price (and view)."""
        if self._running():
            self.steps_done = max(self.steps_done, self.steps_at(now_ms))
        return []

    def place(self, command: PlaceOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        price = self.price_at(timestamp_ms)
        key = _order_key(command.participant_id, command.client_order_id)
        refusal = self._refuse_bid(command, key, price)
        if refusal is not None:
            return [self.reject(command, *refusal, timestamp_ms, source_offset)]
        self.steps_done = max(self.steps_done, self.steps_at(timestamp_ms))
        technology_id = self.technology_id
        self._client_orders.append(key)
        self._taken.add(key)
        self.order_count += 1
        order_id = f"{technology_id}:o{self.order_count}"
        participant_id, client_order_id = command.participant_id, command.client_order_id
        quantity = command.quantity
        events: list[Event] = [
            OrderAccepted(
                technology_id=technology_id,
                seq=self.next_seq(),
                timestamp_ms=timestamp_ms,
                source_offset=source_offset,
                order_id=order_id,
                participant_id=participant_id,
                client_order_id=client_order_id,
                side=Side.BID,
                order_type=OrderType.MARKET if command.price is None else OrderType.LIMIT,
                quantity=quantity,
                price=command.price,
            )
        ]
        if command.time_in_force == "fok" and quantity > self.remaining:
            filled = 0
        else:
            filled = min(quantity, self.remaining)
        if filled:
            self.remaining -= filled
            self.buyers += 1
            if self.first_buyer is None:
                self.first_buyer = (participant_id, order_id)
            self.last_price, self.last_quantity = price, filled
            events.append(
                shared.deal(
                    self,
                    buyer_id=participant_id,
                    bid_order_id=order_id,
                    bid_client_order_id=client_order_id,
                    seller_id=self.seller_id,
                    price=price,
                    quantity=filled,
                    timestamp_ms=timestamp_ms,
                    source_offset=source_offset,
                )
            )
        if filled == quantity:
            events.append(
                shared.done(
                    self,
                    order_id,
                    participant_id,
                    client_order_id,
                    filled,
                    timestamp_ms,
                    source_offset,
                )
            )
        else:
            events.append(
                shared.cancelled(
                    self,
                    order_id,
                    participant_id,
                    client_order_id,
                    filled,
                    quantity - filled,
                    CancelReason.FILL_OR_KILL
                    if command.time_in_force == "fok"
                    else CancelReason.IMMEDIATE_OR_CANCEL,
                    timestamp_ms,
                    source_offset,
                )
            )
        if not self.remaining:
            events.append(self._result("", timestamp_ms, source_offset))
        return events

    def cancel(self, command: CancelOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        return [
            self.reject(
                command,
                RejectReason.CANCEL_NOT_ALLOWED,
                "a Dutch acceptance trades at once and never rests: there is nothing to cancel",
                timestamp_ms,
                source_offset,
            )
        ]

    def amend(self, command: AmendOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        return [
            self.reject(
                command,
                RejectReason.NOT_SUPPORTED_BY_MECHANISM,
                "a Dutch acceptance trades at once and never rests: there is nothing to amend",
                timestamp_ms,
                source_offset,
            )
        ]

    def close(self, timestamp_ms: int, source_offset: int) -> list[Event]:
        """End the auction now: sold if some units went, else unsold."""
        if self.finished():
            return []
        self.closed = True
        sold = self.offered_quantity - self.remaining
        detail = f"closed with {sold} of {self.offered_quantity} units sold" if sold else "no bids"
        return [self._result(detail, timestamp_ms, source_offset)]

    def view(self, state: ListingState, timestamp_ms: int, source_offset: int) -> MarketView:
        running = self._running()
        return MarketView(
            technology_id=self.technology_id,
            timestamp_ms=timestamp_ms,
            source_offset=source_offset,
            mechanism=Mechanism.DUTCH,
            state=state,
            last_price=self.last_price,
            last_quantity=self.last_quantity,
            current_price=self.price_at(timestamp_ms) if running else None,
            next_step_at_ms=self._step_time(self.steps_at(timestamp_ms)),
            remaining_quantity=self.remaining,
        )

    # --- helpers ---------------------------------------------------------------------------

    def reject(
        self,
        command: PlaceOrder | CancelOrder | AmendOrder,
        reason: RejectReason,
        detail: str,
        timestamp_ms: int,
        source_offset: int,
    ) -> CommandRejected:
        return rejection(command, self.next_seq(), reason, detail, timestamp_ms, source_offset)

    def _refuse_bid(self, command: PlaceOrder, key: str, price: int) -> Refusal | None:
        if not self._running():
            state = "has not started" if self.started_at_ms is None else "has ended"
            return (
                RejectReason.AUCTION_NOT_RUNNING,
                f"the Dutch auction of {self.technology_id} {state}",
            )
        if command.side != "bid":
            if command.side == "offer":
                return (
                    RejectReason.NOT_SUPPORTED_BY_MECHANISM,
                    "a Dutch auction takes bids only: the seller's listing is the offer",
                )
            return RejectReason.UNKNOWN_SIDE, f"side {quoted(command.side)} is not bid or offer"
        if command.participant_id == self.seller_id:
            return (
                RejectReason.SELLER_MAY_NOT_BID,
                f"{command.participant_id} is the seller of {command.technology_id}",
            )
        if command.order_type not in ("limit", "market"):
            return (
                RejectReason.UNKNOWN_ORDER_TYPE,
                f"order type {quoted(command.order_type)} is not limit or market",
            )
        if command.order_type == "market" and command.price is not None:
            return RejectReason.PRICE_NOT_ALLOWED, "a market bid takes no price"
        time_in_force = command.time_in_force
        if time_in_force == "gtd":
            return (
                RejectReason.NOT_SUPPORTED_BY_MECHANISM,
                "time in force gtd does not apply to a Dutch auction: a bid never rests",
            )
        if time_in_force not in ("gtc", "ioc", "fok"):
            return (
                RejectReason.UNKNOWN_TIME_IN_FORCE,
                f"time in force {quoted(time_in_force)} is not gtc, ioc, fok or gtd",
            )
        if command.expires_at_ms is not None:
            return RejectReason.INVALID_EXPIRY, "only a gtd order takes expires_at_ms"
        if command.post_only:
            return (
                RejectReason.NOT_SUPPORTED_BY_MECHANISM,
                "post-only does not apply to a Dutch auction: a bid always trades",
            )
        refusal = check_quantity(command.quantity, self.lot_size)
        if refusal is not None:
            return refusal
        if command.price is not None:
            refusal = check_price(command.price, command.quantity, self.tick_size, None)
            if refusal is not None:
                return refusal
            if command.price < price:
                return (
                    RejectReason.BID_TOO_LOW,
                    f"price {command.price} is below the current price {price}",
                )
        if key in self._taken:
            return (
                RejectReason.DUPLICATE_CLIENT_ORDER_ID,
                f"client order id {command.client_order_id} was already used in this auction",
            )
        return None

    def _result(self, detail: str, timestamp_ms: int, source_offset: int) -> AuctionClosed:
        sold = self.offered_quantity - self.remaining
        winner = self.first_buyer if self.buyers == 1 else None
        return AuctionClosed(
            technology_id=self.technology_id,
            seq=self.next_seq(),
            timestamp_ms=timestamp_ms,
            source_offset=source_offset,
            outcome=AuctionOutcome.SOLD if sold else AuctionOutcome.UNSOLD,
            winner_id=None if winner is None else winner[0],
            order_id=None if winner is None else winner[1],
            price=self.last_price if sold else None,
            quantity=sold,
            bids=self.order_count,
            detail=detail,
        )


def _order_key(participant_id: str, client_order_id: str) -> str:
    """One string for (participant, client order id): identifiers cannot hold ``\\x1f``."""
    return f"{participant_id}\x1f{client_order_id}"


def _split_key(key: str) -> tuple[str, str]:
    participant_id, client_order_id = key.split("\x1f")
    return participant_id, client_order_id


_state_decoder = msgspec.msgpack.Decoder(DutchState)
