"""The english mechanism: an open ascending auction of one lot.

Rules, as implemented:
- The listing needs ``starting_price``, ``min_increment`` and ``ends_at_ms``; it may add a
  ``reserve_price`` (hidden unless ``reserve_shown``, which then needs a reserve), a soft
  close (``soft_close_window_ms`` with ``soft_close_extension_ms``, both in 1..30 days) and a
  ``buy_now_price`` (at least the starting price and the reserve, so a buy-now sale never
  goes below either). Prices are positive multiples of the tick; parameters of other
  mechanisms are refused, so a seller never believes in a rule that does not apply.
- A bid is a limit ``bid`` for exactly the lot (the lot is the whole item), on the tick grid,
  gtc, no expiry, not post-only. The first bid must offer at least the starting price, every
  later one at least the high bid plus the increment (bid_too_low). The seller may not bid.
  The high bidder may raise its own bid (to reach a reserve, say). A bid below a hidden
  reserve is accepted: refusing it would reveal the reserve.
- A bid at or above the buy-now price wins at once at the buy-now price, even if it is below
  the high bid plus the increment (the buy-now price is always above the high bid).
- Soft close: a bid at a time ``t`` with ``end - window <= t < end`` moves the end to
  ``t + extension`` (AuctionExtended). The end never moves earlier: when ``t + extension``
  is not after the current end, nothing is extended.
- Bids cannot be withdrawn (cancel_not_allowed for a live bid, unknown_order for an id that
  names none, auction_not_running once decided) nor amended. Outbid bids stay live until
  the close: there is no "outbid" cancel reason, so every losing bid ends at the close with
  technology_closed, in arrival order.
- At the end (or at an early close, decided the same way): the high bid wins if it meets
  the reserve (or there is none): Deal (buyer the high bidder, seller the listing's
  participant, the high bid's price, the lot, aggressor bid), OrderDone for it,
  OrderCancelled technology_closed for the others, AuctionClosed sold. Otherwise every bid
  is cancelled and AuctionClosed is unsold with detail "no bids" or "reserve not met".
- The view shows the high bid as placed (a buy-now bid above the buy-now price shows its
  own price; the sale's price is last_price), the least next bid (capped by the buy-now
  price), the current end, the bid count, reserve_met only when the reserve is shown.
- The Deal has no seller order: ``offer_order_id`` and ``offer_client_order_id`` are empty.
- Client order ids: every id used in the auction stays taken (an auction is small, so the
  set of them all is kept rather than continuous's bounded window of ended ids).

- ``open`` gets no time: an ``ends_at_ms`` already past is accepted, and the auction is
  decided (no bids) before the next record is applied.

The parts english and sealed auctions share (bid checks, numbering, the close's events)
live here too, in :class:`AuctionVenue` and the functions above it; ``sealed`` imports them.

Pure: times are the log times passed in; bids are kept in arrival order.
"""

from __future__ import annotations

from typing import Final

import msgspec

from engine.core.mechanisms import events
from engine.core.rules import (
    Refusal,
    check_listing,
    check_price,
    check_quantity,
    quoted,
    rejection,
)
from engine.core.snapshot import encode_venue
from engine.core.venue import ListingRefusal
from engine.errors import SnapshotError
from schemas.commands import AmendOrder, CancelOrder, ListTechnology, PlaceOrder
from schemas.common import (
    MAX_NOTIONAL,
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
    AuctionExtended,
    CommandRejected,
    Event,
    MarketView,
    OrderAccepted,
    OrderCancelled,
)

#: The longest soft-close window or extension a listing may ask for: 30 days.
MAX_SOFT_CLOSE_MS: Final = 30 * 24 * 60 * 60 * 1000

#: Listing parameters of the call and dutch mechanisms: no auction of english or sealed takes
#: them.
OTHER_MECHANISMS_PARAMETERS: Final = (
    "first_uncross_at_ms",
    "call_interval_ms",
    "price_step",
    "step_interval_ms",
    "offered_quantity",
)


class Bid(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """An accepted auction bid (its quantity is always the listing's lot)."""

    order_id: str
    participant_id: str
    client_order_id: str
    price: int


# --- what english and sealed auctions share -------------------------------------------------


def bid_key(participant_id: str, client_order_id: str) -> str:
    """One string for (participant, client order id): identifiers cannot hold ``\\x1f``."""
    return f"{participant_id}\x1f{client_order_id}"


def unused_parameters(listing: ListTechnology, names: tuple[str, ...]) -> ListingRefusal | None:
    """A parameter the mechanism does not take is refused rather than silently ignored."""
    for name in names:
        if getattr(listing, name) is not None:
            return (
                RejectReason.INVALID_LISTING,
                f"{name} does not apply to {listing.mechanism}",
            )
    return None


def check_ends_at(listing: ListTechnology) -> ListingRefusal | None:
    if listing.ends_at_ms is None:
        return (
            RejectReason.INVALID_LISTING,
            f"{listing.mechanism} needs ends_at_ms (the log time the auction ends)",
        )
    return None


def price_parameter_refusal(name: str, value: int, tick_size: int) -> ListingRefusal | None:
    if not 0 < value <= MAX_PRICE or value % tick_size:
        return (
            RejectReason.INVALID_LISTING,
            f"{name} {value} must be a positive multiple of tick {tick_size}, at most {MAX_PRICE}",
        )
    return None


def bid_refusal(
    command: PlaceOrder, seller_id: str, tick_size: int, lot_size: int
) -> Refusal | None:
    """What every auction asks of a bid: a gtc limit bid for the whole lot, on the grid, not
    from the seller. Reserve and increments are each mechanism's own business."""
    if command.side != "bid":
        if command.side == "offer":
            return (
                RejectReason.NOT_SUPPORTED_BY_MECHANISM,
                "an auction takes bids only: the seller's listing is the offer",
            )
        return RejectReason.UNKNOWN_SIDE, f"side {quoted(command.side)} is not bid or offer"
    if command.order_type != "limit":
        if command.order_type == "market":
            return (
                RejectReason.NOT_SUPPORTED_BY_MECHANISM,
                "an auction bid is a limit bid with a price",
            )
        return (
            RejectReason.UNKNOWN_ORDER_TYPE,
            f"order type {quoted(command.order_type)} is not limit or market",
        )
    if command.time_in_force != "gtc":
        if command.time_in_force in ("ioc", "fok", "gtd"):
            return (
                RejectReason.NOT_SUPPORTED_BY_MECHANISM,
                f"time in force {command.time_in_force} does not apply to an auction bid: "
                "a bid lasts until the auction is decided",
            )
        return (
            RejectReason.UNKNOWN_TIME_IN_FORCE,
            f"time in force {quoted(command.time_in_force)} is not gtc, ioc, fok or gtd",
        )
    if command.expires_at_ms is not None:
        return RejectReason.INVALID_EXPIRY, "an auction bid takes no expiry"
    if command.post_only:
        return RejectReason.NOT_SUPPORTED_BY_MECHANISM, "post-only does not apply to an auction"
    if command.participant_id == seller_id:
        return (
            RejectReason.SELLER_MAY_NOT_BID,
            f"{command.participant_id} is the seller of {command.technology_id}",
        )
    refusal = check_quantity(command.quantity, lot_size)
    if refusal is not None:
        return refusal
    if command.quantity != lot_size:
        return (
            RejectReason.QUANTITY_OFF_LOT,
            f"quantity {command.quantity} is not the lot {lot_size}: an auction sells the "
            "whole lot",
        )
    if command.price is None:
        return RejectReason.PRICE_REQUIRED, "an auction bid needs a price"
    # No reserve here: a bid below a hidden reserve is accepted, or the reserve leaks.
    return check_price(command.price, command.quantity, tick_size, None)


def duplicate_refusal(client_order_id: str, live: bool) -> Refusal:
    if live:
        return (
            RejectReason.DUPLICATE_CLIENT_ORDER_ID,
            f"client order id {client_order_id} is already live",
        )
    return (
        RejectReason.DUPLICATE_CLIENT_ORDER_ID,
        f"client order id {client_order_id} was used by a bid that has ended; ids are not "
        "reused within an auction",
    )


class AuctionVenue:
    """What english and sealed venues share: the grid, the numbering, the events of a bid's
    life and of the close."""

    ends_by_itself = True
    orders_move_deadlines = True
    deadlines_trade = False

    __slots__ = (
        "deal_count",
        "lot_size",
        "order_count",
        "reserve_price",
        "seller_id",
        "seq",
        "technology_id",
        "tick_size",
    )

    def __init__(
        self,
        technology_id: str,
        seller_id: str,
        tick_size: int,
        lot_size: int,
        reserve_price: int | None,
    ) -> None:
        self.technology_id = technology_id
        self.seller_id = seller_id
        self.tick_size = tick_size
        self.lot_size = lot_size
        self.reserve_price = reserve_price
        #: The last event sequence number used; orders and deals numbered so far.
        self.seq = 0
        self.order_count = 0
        self.deal_count = 0

    def has_orders(self) -> bool:
        return self.order_count > 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def new_bid(self, command: PlaceOrder) -> Bid:
        assert command.price is not None
        self.order_count += 1
        return Bid(
            f"{self.technology_id}:o{self.order_count}",
            command.participant_id,
            command.client_order_id,
            command.price,
        )

    def not_running(self) -> Refusal:
        return RejectReason.AUCTION_NOT_RUNNING, f"the auction of {self.technology_id} has ended"

    def unknown_bid(self, command: CancelOrder) -> Refusal:
        return (
            RejectReason.UNKNOWN_ORDER,
            f"participant {command.participant_id} has no live bid {command.client_order_id} "
            f"in {self.technology_id}",
        )

    def reject(
        self,
        command: PlaceOrder | CancelOrder | AmendOrder,
        reason: RejectReason,
        detail: str,
        timestamp_ms: int,
        source_offset: int,
    ) -> CommandRejected:
        return rejection(command, self.next_seq(), reason, detail, timestamp_ms, source_offset)

    def accepted(self, bid: Bid, timestamp_ms: int, source_offset: int) -> OrderAccepted:
        return OrderAccepted(
            technology_id=self.technology_id,
            seq=self.next_seq(),
            timestamp_ms=timestamp_ms,
            source_offset=source_offset,
            order_id=bid.order_id,
            participant_id=bid.participant_id,
            client_order_id=bid.client_order_id,
            side=Side.BID,
            order_type=OrderType.LIMIT,
            quantity=self.lot_size,
            price=bid.price,
        )

    def cancelled(
        self, bid: Bid, reason: CancelReason, timestamp_ms: int, source_offset: int
    ) -> OrderCancelled:
        return events.cancelled(
            self,
            bid.order_id,
            bid.participant_id,
            bid.client_order_id,
            0,
            self.lot_size,
            reason,
            timestamp_ms,
            source_offset,
        )

    def sold(
        self,
        bids: list[Bid],
        winner: Bid,
        price: int,
        detail: str,
        timestamp_ms: int,
        source_offset: int,
    ) -> list[Event]:
        """Deal and OrderDone for the winner, the other bids cancelled (technology_closed) in
        arrival order, AuctionClosed sold."""
        technology_id, lot = self.technology_id, self.lot_size
        sale: list[Event] = [
            events.deal(
                self,
                buyer_id=winner.participant_id,
                bid_order_id=winner.order_id,
                bid_client_order_id=winner.client_order_id,
                seller_id=self.seller_id,
                price=price,
                quantity=lot,
                timestamp_ms=timestamp_ms,
                source_offset=source_offset,
            ),
            events.done(
                self,
                winner.order_id,
                winner.participant_id,
                winner.client_order_id,
                lot,
                timestamp_ms,
                source_offset,
            ),
        ]
        sale.extend(
            self.cancelled(bid, CancelReason.TECHNOLOGY_CLOSED, timestamp_ms, source_offset)
            for bid in bids
            if bid is not winner
        )
        sale.append(
            AuctionClosed(
                technology_id=technology_id,
                seq=self.next_seq(),
                timestamp_ms=timestamp_ms,
                source_offset=source_offset,
                outcome=AuctionOutcome.SOLD,
                winner_id=winner.participant_id,
                order_id=winner.order_id,
                price=price,
                quantity=lot,
                bids=len(bids),
                detail=detail,
            )
        )
        return sale

    def unsold(
        self, bids: list[Bid], detail: str, timestamp_ms: int, source_offset: int
    ) -> list[Event]:
        """Every bid cancelled (technology_closed) in arrival order, AuctionClosed unsold."""
        events: list[Event] = [
            self.cancelled(bid, CancelReason.TECHNOLOGY_CLOSED, timestamp_ms, source_offset)
            for bid in bids
        ]
        events.append(
            AuctionClosed(
                technology_id=self.technology_id,
                seq=self.next_seq(),
                timestamp_ms=timestamp_ms,
                source_offset=source_offset,
                outcome=AuctionOutcome.UNSOLD,
                winner_id=None,
                order_id=None,
                price=None,
                quantity=0,
                bids=len(bids),
                detail=detail,
            )
        )
        return events


# --- english ----------------------------------------------------------------------------------


class EnglishState(msgspec.Struct, array_like=True, frozen=True, tag="english"):
    """An english venue as bytes: its listing, counters, current end and bids."""

    technology_id: str
    seller_id: str
    tick_size: int
    lot_size: int
    reserve_price: int | None
    reserve_shown: bool
    starting_price: int
    min_increment: int
    #: The current end, after any soft-close extension.
    ends_at_ms: int
    soft_close_window_ms: int | None
    soft_close_extension_ms: int | None
    buy_now_price: int | None
    seq: int
    order_count: int
    deal_count: int
    decided: bool
    #: Every accepted bid, in arrival order (so ascending: the last is the high bid).
    bids: list[Bid]
    last_price: int | None
    last_quantity: int | None


class EnglishVenue(AuctionVenue):
    """One technology sold by open ascending bids."""

    mechanism = "english"

    __slots__ = (
        "_used",
        "bids",
        "buy_now_price",
        "decided",
        "ends_at_ms",
        "last_price",
        "last_quantity",
        "min_increment",
        "reserve_shown",
        "soft_close_extension_ms",
        "soft_close_window_ms",
        "starting_price",
    )

    def __init__(
        self,
        technology_id: str,
        seller_id: str,
        tick_size: int,
        lot_size: int,
        reserve_price: int | None,
        reserve_shown: bool,
        starting_price: int,
        min_increment: int,
        ends_at_ms: int,
        soft_close_window_ms: int | None,
        soft_close_extension_ms: int | None,
        buy_now_price: int | None,
    ) -> None:
        super().__init__(technology_id, seller_id, tick_size, lot_size, reserve_price)
        self.reserve_shown = reserve_shown
        self.starting_price = starting_price
        self.min_increment = min_increment
        #: The current end: soft-close extensions move it.
        self.ends_at_ms = ends_at_ms
        self.soft_close_window_ms = soft_close_window_ms
        self.soft_close_extension_ms = soft_close_extension_ms
        self.buy_now_price = buy_now_price
        #: Every accepted bid in arrival order: each beats the one before, the last is high.
        self.bids: list[Bid] = []
        #: (participant, client order id) of every bid: taken for the whole auction.
        self._used: set[str] = set()
        self.decided = False
        self.last_price: int | None = None
        self.last_quantity: int | None = None

    @classmethod
    def open(cls, listing: ListTechnology) -> EnglishVenue | ListingRefusal:
        refusal = check_listing(listing.tick_size, listing.lot_size, listing.reserve_price)
        if refusal is not None:
            return refusal
        refusal = unused_parameters(listing, OTHER_MECHANISMS_PARAMETERS) or check_ends_at(listing)
        if refusal is not None:
            return refusal
        tick, reserve = listing.tick_size, listing.reserve_price
        starting, increment = listing.starting_price, listing.min_increment
        if starting is None:
            return RejectReason.INVALID_LISTING, "english needs starting_price"
        if increment is None:
            return RejectReason.INVALID_LISTING, "english needs min_increment"
        refusal = price_parameter_refusal(
            "starting_price", starting, tick
        ) or price_parameter_refusal("min_increment", increment, tick)
        if refusal is not None:
            return refusal
        if starting * listing.lot_size > MAX_NOTIONAL:
            return (
                RejectReason.INVALID_LISTING,
                f"starting_price {starting} times lot {listing.lot_size} is above the limit "
                f"{MAX_NOTIONAL} đồng: no bid could be accepted",
            )
        if listing.reserve_shown and reserve is None:
            return RejectReason.INVALID_LISTING, "reserve_shown needs a reserve_price"
        window, extension = listing.soft_close_window_ms, listing.soft_close_extension_ms
        if (window is None) != (extension is None):
            return (
                RejectReason.INVALID_LISTING,
                "soft_close_window_ms and soft_close_extension_ms go together: give both or "
                "neither",
            )
        for name, duration in (
            ("soft_close_window_ms", window),
            ("soft_close_extension_ms", extension),
        ):
            if duration is not None and not 0 < duration <= MAX_SOFT_CLOSE_MS:
                return (
                    RejectReason.INVALID_LISTING,
                    f"{name} {duration} must be in 1..{MAX_SOFT_CLOSE_MS} (30 days)",
                )
        buy_now = listing.buy_now_price
        if buy_now is not None:
            refusal = price_parameter_refusal("buy_now_price", buy_now, tick)
            if refusal is not None:
                return refusal
            if buy_now < starting:
                return (
                    RejectReason.INVALID_LISTING,
                    f"buy_now_price {buy_now} is below starting_price {starting}",
                )
            if reserve is not None and buy_now < reserve:
                return (
                    RejectReason.INVALID_LISTING,
                    f"buy_now_price {buy_now} is below reserve_price {reserve}",
                )
        assert listing.ends_at_ms is not None
        return cls(
            listing.technology_id,
            listing.participant_id,
            tick,
            listing.lot_size,
            reserve,
            listing.reserve_shown,
            starting,
            increment,
            listing.ends_at_ms,
            window,
            extension,
            buy_now,
        )

    @classmethod
    def restore(cls, data: bytes) -> EnglishVenue:
        try:
            state = _state_decoder.decode(data)
        except msgspec.DecodeError as e:
            raise SnapshotError(f"english venue snapshot does not decode: {e}") from e
        venue = cls(
            state.technology_id,
            state.seller_id,
            state.tick_size,
            state.lot_size,
            state.reserve_price,
            state.reserve_shown,
            state.starting_price,
            state.min_increment,
            state.ends_at_ms,
            state.soft_close_window_ms,
            state.soft_close_extension_ms,
            state.buy_now_price,
        )
        venue.seq, venue.order_count, venue.deal_count = (
            state.seq,
            state.order_count,
            state.deal_count,
        )
        venue.decided = state.decided
        venue.bids = list(state.bids)
        venue._used.update(bid_key(b.participant_id, b.client_order_id) for b in state.bids)
        venue.last_price, venue.last_quantity = state.last_price, state.last_quantity
        return venue

    def to_snapshot(self) -> bytes:
        return encode_venue(
            EnglishState(
                self.technology_id,
                self.seller_id,
                self.tick_size,
                self.lot_size,
                self.reserve_price,
                self.reserve_shown,
                self.starting_price,
                self.min_increment,
                self.ends_at_ms,
                self.soft_close_window_ms,
                self.soft_close_extension_ms,
                self.buy_now_price,
                self.seq,
                self.order_count,
                self.deal_count,
                self.decided,
                self.bids,
                self.last_price,
                self.last_quantity,
            )
        )

    def finished(self) -> bool:
        return self.decided

    def next_deadline(self) -> int | None:
        return None if self.decided else self.ends_at_ms

    def on_deadline(self, now_ms: int, source_offset: int) -> list[Event]:
        if self.decided or now_ms < self.ends_at_ms:
            return []
        return self._decide(self.ends_at_ms, source_offset)

    def close(self, timestamp_ms: int, source_offset: int) -> list[Event]:
        """Decide now, as the end would: the high bid wins if it meets the reserve."""
        return [] if self.decided else self._decide(timestamp_ms, source_offset)

    def minimum_bid(self) -> int:
        """The least a new bid must offer (a buy-now bid aside)."""
        bids = self.bids
        return self.starting_price if not bids else bids[-1].price + self.min_increment

    def place(self, command: PlaceOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        refusal = self._refuse(command, timestamp_ms)
        if refusal is not None:
            reason, detail = refusal
            return [self.reject(command, reason, detail, timestamp_ms, source_offset)]
        bid = self.new_bid(command)
        self.bids.append(bid)
        self._used.add(bid_key(bid.participant_id, bid.client_order_id))
        events: list[Event] = [self.accepted(bid, timestamp_ms, source_offset)]
        buy_now = self.buy_now_price
        if buy_now is not None and bid.price >= buy_now:
            events.extend(self._decide(timestamp_ms, source_offset, buy_now=buy_now))
            return events
        window, extension = self.soft_close_window_ms, self.soft_close_extension_ms
        if window is not None and extension is not None:
            end = self.ends_at_ms
            if end - window <= timestamp_ms < end and timestamp_ms + extension > end:
                self.ends_at_ms = timestamp_ms + extension
                events.append(
                    AuctionExtended(
                        technology_id=self.technology_id,
                        seq=self.next_seq(),
                        timestamp_ms=timestamp_ms,
                        source_offset=source_offset,
                        ends_at_ms=self.ends_at_ms,
                        order_id=bid.order_id,
                    )
                )
        return events

    def cancel(self, command: CancelOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        if self.decided:
            reason, detail = self.not_running()
        elif bid_key(command.participant_id, command.client_order_id) in self._used:
            reason, detail = RejectReason.CANCEL_NOT_ALLOWED, "english bids cannot be withdrawn"
        else:
            reason, detail = self.unknown_bid(command)
        return [self.reject(command, reason, detail, timestamp_ms, source_offset)]

    def amend(self, command: AmendOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        return [
            self.reject(
                command,
                RejectReason.NOT_SUPPORTED_BY_MECHANISM,
                "english bids cannot be amended: bid again, higher",
                timestamp_ms,
                source_offset,
            )
        ]

    def view(self, state: ListingState, timestamp_ms: int, source_offset: int) -> MarketView:
        bids = self.bids
        high = bids[-1].price if bids else None
        next_minimum: int | None = None
        if not self.decided:
            next_minimum = self.minimum_bid()
            if self.buy_now_price is not None:
                next_minimum = min(next_minimum, self.buy_now_price)
        reserve_met: bool | None = None
        if self.reserve_shown and self.reserve_price is not None:
            reserve_met = high is not None and high >= self.reserve_price
        return MarketView(
            technology_id=self.technology_id,
            timestamp_ms=timestamp_ms,
            source_offset=source_offset,
            mechanism=Mechanism.ENGLISH,
            state=state,
            last_price=self.last_price,
            last_quantity=self.last_quantity,
            high_bid=high,
            next_minimum_bid=next_minimum,
            ends_at_ms=self.ends_at_ms,
            reserve_met=reserve_met,
            bid_count=len(bids),
        )

    def _refuse(self, command: PlaceOrder, timestamp_ms: int) -> Refusal | None:
        if self.decided or timestamp_ms >= self.ends_at_ms:
            return self.not_running()
        refusal = bid_refusal(command, self.seller_id, self.tick_size, self.lot_size)
        if refusal is not None:
            return refusal
        if bid_key(command.participant_id, command.client_order_id) in self._used:
            return duplicate_refusal(command.client_order_id, live=True)
        price, minimum = command.price, self.minimum_bid()
        assert price is not None
        if price < minimum and (self.buy_now_price is None or price < self.buy_now_price):
            if self.bids:
                why = f"the high bid {self.bids[-1].price} plus the increment {self.min_increment}"
            else:
                why = "the starting price"
            return RejectReason.BID_TOO_LOW, f"bid {price} is below {minimum}, {why}"
        return None

    def _decide(
        self, timestamp_ms: int, source_offset: int, buy_now: int | None = None
    ) -> list[Event]:
        self.decided = True
        bids = self.bids
        if not bids:
            return self.unsold(bids, "no bids", timestamp_ms, source_offset)
        winner = bids[-1]
        reserve = self.reserve_price
        if buy_now is None and reserve is not None and winner.price < reserve:
            return self.unsold(bids, "reserve not met", timestamp_ms, source_offset)
        price = winner.price if buy_now is None else buy_now
        self.last_price, self.last_quantity = price, self.lot_size
        detail = "" if buy_now is None else "buy now"
        return self.sold(bids, winner, price, detail, timestamp_ms, source_offset)


_state_decoder = msgspec.msgpack.Decoder(EnglishState)


class EnglishKind:
    """Opens and restores english venues."""

    @staticmethod
    def open(listing: ListTechnology) -> EnglishVenue | ListingRefusal:
        return EnglishVenue.open(listing)

    @staticmethod
    def restore(data: bytes) -> EnglishVenue:
        return EnglishVenue.restore(data)
