"""The sealed mechanisms: confidential bids for one lot, decided at a fixed end.

``sealed_first`` (the winner pays its own bid) and ``sealed_second`` (Vickrey: the winner pays
the second-highest bid, never less than the reserve) share this venue; the listing's
mechanism tells which.

Rules, as implemented:
- The listing needs ``ends_at_ms`` and may add a ``reserve_price``; the reserve is never shown
  and the parameters of other mechanisms (starting price, increments, soft close, buy now,
  reserve_shown, call and dutch parameters) are refused.
- A bid is a limit ``bid`` for exactly the lot (an auction sells the whole lot), on the tick
  grid, gtc, no expiry, not post-only; the seller may not bid. A bid below the reserve is
  accepted (refusing it would reveal the reserve): it simply cannot win.
- One live bid per participant: a new bid replaces the previous one, which ends with
  OrderCancelled reason replaced, emitted before the new bid's OrderAccepted (so the event
  stream never shows two live bids of one participant). The new bid's arrival is its own:
  a replacement goes behind every bid already live for ties.
- A participant may cancel its live bid until the close (cancelled_by_participant); bids
  cannot be amended (bid again to replace).
- At the end, or at an early close decided the same way: the highest live bid wins, ties to
  the earliest arrival. No bids: unsold "no bids"; highest below the reserve: unsold
  "reserve not met". First price pays its own bid. Second price pays
  max(second-highest live bid, reserve); with a single bid it pays the reserve, or its own
  bid when there is no reserve (nothing else sets a price: the auction then degrades to
  first price rather than selling for one tick). So a second price never exceeds the
  winner's bid and never goes below the reserve. Deal + OrderDone for the winner,
  OrderCancelled technology_closed for the other live bids in arrival order, AuctionClosed.
- The market view shows only ``bid_count`` (live bids) and ``ends_at_ms``, before and after
  the close: never a price (the deal itself is on the deals topic).
- Client order ids: every id used in the auction stays taken, live or ended (an auction is
  small, so the set of them all is kept rather than continuous's bounded window).

- ``open`` gets no time: an ``ends_at_ms`` already past is accepted, and the auction is
  decided (no bids) before the next record is applied.

Pure: times are the log times passed in; live bids are kept in arrival order.
"""

from __future__ import annotations

from typing import Final

import msgspec

from engine.core.mechanisms.english import (
    OTHER_MECHANISMS_PARAMETERS,
    AuctionVenue,
    Bid,
    bid_key,
    bid_refusal,
    check_ends_at,
    duplicate_refusal,
    unused_parameters,
)
from engine.core.rules import Refusal, check_listing
from engine.core.snapshot import encode_venue
from engine.core.venue import ListingRefusal
from engine.errors import SnapshotError
from schemas.commands import AmendOrder, CancelOrder, ListTechnology, PlaceOrder
from schemas.common import CancelReason, ListingState, Mechanism, RejectReason
from schemas.events import Event, MarketView

_MECHANISMS: Final = {m.value: m for m in (Mechanism.SEALED_FIRST, Mechanism.SEALED_SECOND)}

#: What a sealed listing may not carry: every english-only parameter and those of call, dutch.
_NOT_SEALED_PARAMETERS: Final = (
    "starting_price",
    "min_increment",
    "soft_close_window_ms",
    "soft_close_extension_ms",
    "buy_now_price",
    *OTHER_MECHANISMS_PARAMETERS,
)


class SealedState(msgspec.Struct, array_like=True, frozen=True, tag="sealed"):
    """A sealed venue as bytes: its listing, counters, live bids and every id used."""

    technology_id: str
    mechanism: str
    seller_id: str
    tick_size: int
    lot_size: int
    reserve_price: int | None
    ends_at_ms: int
    seq: int
    order_count: int
    deal_count: int
    decided: bool
    #: Live bids (one per participant) in arrival order; after the close, those it decided.
    bids: list[Bid]
    #: (participant, client order id) of every bid ever accepted, in order of use.
    used_client_orders: list[tuple[str, str]]


class SealedVenue(AuctionVenue):
    """One technology sold by confidential bids, at the first or the second price."""

    __slots__ = ("_live", "_used", "decided", "ends_at_ms", "mechanism")

    def __init__(
        self,
        technology_id: str,
        mechanism: Mechanism,
        seller_id: str,
        tick_size: int,
        lot_size: int,
        reserve_price: int | None,
        ends_at_ms: int,
    ) -> None:
        super().__init__(technology_id, seller_id, tick_size, lot_size, reserve_price)
        self.mechanism: str = mechanism.value
        self.ends_at_ms = ends_at_ms
        #: Live bids by participant, in arrival order (a replacement is re-inserted last).
        self._live: dict[str, Bid] = {}
        #: (participant, client order id) of every bid accepted, in order of use.
        self._used: dict[str, None] = {}
        self.decided = False

    @classmethod
    def open(cls, listing: ListTechnology) -> SealedVenue | ListingRefusal:
        mechanism = _MECHANISMS.get(listing.mechanism)
        if mechanism is None:
            return (
                RejectReason.UNSUPPORTED_MECHANISM,
                f"mechanism {listing.mechanism} is not sealed_first or sealed_second",
            )
        refusal = check_listing(listing.tick_size, listing.lot_size, listing.reserve_price)
        if refusal is not None:
            return refusal
        refusal = unused_parameters(listing, _NOT_SEALED_PARAMETERS) or check_ends_at(listing)
        if refusal is not None:
            return refusal
        if listing.reserve_shown:
            return (
                RejectReason.INVALID_LISTING,
                f"reserve_shown does not apply to {listing.mechanism}: its reserve is never shown",
            )
        assert listing.ends_at_ms is not None
        return cls(
            listing.technology_id,
            mechanism,
            listing.participant_id,
            listing.tick_size,
            listing.lot_size,
            listing.reserve_price,
            listing.ends_at_ms,
        )

    @classmethod
    def restore(cls, data: bytes) -> SealedVenue:
        try:
            state = _state_decoder.decode(data)
        except msgspec.DecodeError as e:
            raise SnapshotError(f"sealed venue snapshot does not decode: {e}") from e
        mechanism = _MECHANISMS.get(state.mechanism)
        if mechanism is None:
            raise SnapshotError(
                f"sealed venue snapshot of {state.technology_id} has mechanism {state.mechanism!r}"
            )
        venue = cls(
            state.technology_id,
            mechanism,
            state.seller_id,
            state.tick_size,
            state.lot_size,
            state.reserve_price,
            state.ends_at_ms,
        )
        venue.seq, venue.order_count, venue.deal_count = (
            state.seq,
            state.order_count,
            state.deal_count,
        )
        venue.decided = state.decided
        for bid in state.bids:
            if bid.participant_id in venue._live:
                raise SnapshotError(
                    f"sealed venue snapshot of {state.technology_id} has two live bids of "
                    f"{bid.participant_id}"
                )
            venue._live[bid.participant_id] = bid
        venue._used = dict.fromkeys(
            bid_key(who, client) for who, client in state.used_client_orders
        )
        return venue

    def to_snapshot(self) -> bytes:
        return encode_venue(
            SealedState(
                self.technology_id,
                self.mechanism,
                self.seller_id,
                self.tick_size,
                self.lot_size,
                self.reserve_price,
                self.ends_at_ms,
                self.seq,
                self.order_count,
                self.deal_count,
                self.decided,
                list(self._live.values()),
                [_split_key(key) for key in self._used],
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
        """Decide now among the live bids, as the end would."""
        return [] if self.decided else self._decide(timestamp_ms, source_offset)

    def place(self, command: PlaceOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        refusal = self._refuse(command, timestamp_ms)
        if refusal is not None:
            reason, detail = refusal
            return [self.reject(command, reason, detail, timestamp_ms, source_offset)]
        events: list[Event] = []
        live = self._live
        previous = live.pop(command.participant_id, None)
        if previous is not None:
            events.append(
                self.cancelled(previous, CancelReason.REPLACED, timestamp_ms, source_offset)
            )
        bid = self.new_bid(command)
        live[bid.participant_id] = bid
        self._used[bid_key(bid.participant_id, bid.client_order_id)] = None
        events.append(self.accepted(bid, timestamp_ms, source_offset))
        return events

    def cancel(self, command: CancelOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        if self.decided or timestamp_ms >= self.ends_at_ms:
            reason, detail = self.not_running()
            return [self.reject(command, reason, detail, timestamp_ms, source_offset)]
        bid = self._live.get(command.participant_id)
        if bid is None or bid.client_order_id != command.client_order_id:
            reason, detail = self.unknown_bid(command)
            return [self.reject(command, reason, detail, timestamp_ms, source_offset)]
        del self._live[command.participant_id]
        return [
            self.cancelled(bid, CancelReason.CANCELLED_BY_PARTICIPANT, timestamp_ms, source_offset)
        ]

    def amend(self, command: AmendOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        return [
            self.reject(
                command,
                RejectReason.NOT_SUPPORTED_BY_MECHANISM,
                "sealed bids cannot be amended: bid again to replace it",
                timestamp_ms,
                source_offset,
            )
        ]

    def view(self, state: ListingState, timestamp_ms: int, source_offset: int) -> MarketView:
        """How many live bids and when it ends: never a price, a reserve or a bidder."""
        return MarketView(
            technology_id=self.technology_id,
            timestamp_ms=timestamp_ms,
            source_offset=source_offset,
            mechanism=Mechanism(self.mechanism),
            state=state,
            ends_at_ms=self.ends_at_ms,
            bid_count=len(self._live),
        )

    def _refuse(self, command: PlaceOrder, timestamp_ms: int) -> Refusal | None:
        if self.decided or timestamp_ms >= self.ends_at_ms:
            return self.not_running()
        refusal = bid_refusal(command, self.seller_id, self.tick_size, self.lot_size)
        if refusal is not None:
            return refusal
        if bid_key(command.participant_id, command.client_order_id) in self._used:
            live = self._live.get(command.participant_id)
            is_live = live is not None and live.client_order_id == command.client_order_id
            return duplicate_refusal(command.client_order_id, live=is_live)
        return None

    def _decide(self, timestamp_ms: int, source_offset: int) -> list[Event]:
        self.decided = True
        bids = list(self._live.values())
        if not bids:
            return self.unsold(bids, "no bids", timestamp_ms, source_offset)
        winner = bids[0]
        for bid in bids[1:]:
            if bid.price > winner.price:  # strictly: a tie stays with the earlier bid
                winner = bid
        reserve = self.reserve_price
        if reserve is not None and winner.price < reserve:
            return self.unsold(bids, "reserve not met", timestamp_ms, source_offset)
        return self.sold(
            bids, winner, self.price_paid(bids, winner), "", timestamp_ms, source_offset
        )

    def price_paid(self, bids: list[Bid], winner: Bid) -> int:
        """First price: the winner's bid. Second price: the best other bid, at least the
        reserve; with no other bid, the reserve, or the winner's own bid without one."""
        if self.mechanism == Mechanism.SEALED_FIRST.value:
            return winner.price
        second = max((bid.price for bid in bids if bid is not winner), default=None)
        floors = [p for p in (second, self.reserve_price) if p is not None]
        return max(floors) if floors else winner.price


def _split_key(key: str) -> tuple[str, str]:
    participant_id, client_order_id = key.split("\x1f")
    return participant_id, client_order_id


_state_decoder = msgspec.msgpack.Decoder(SealedState)


class SealedKind:
    """Opens and restores sealed venues (sealed_first and sealed_second)."""

    @staticmethod
    def open(listing: ListTechnology) -> SealedVenue | ListingRefusal:
        return SealedVenue.open(listing)

    @staticmethod
    def restore(data: bytes) -> SealedVenue:
        return SealedVenue.restore(data)
