"""What a trading mechanism is to the market: the :class:`Venue` of one technology.

One module per mechanism under ``engine.core.mechanisms`` implements it: continuous, call,
english, sealed (first and second price) and dutch. The market owns what every mechanism
shares (routing, the listing's life, who may manage it, deadlines across technologies,
market-data conflation, snapshots); a venue owns its own rules, orders and sequence.

Time is an input: every method that can make events takes the log time (broker timestamp,
ms) and the source offset of the record being applied. A venue that must act at a time
(an auction's end, a Dutch step, a GTD expiry, a call uncross) says when through
:meth:`Venue.next_deadline`; the market calls :meth:`Venue.on_deadline` before it applies
any record stamped at or after that time.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from schemas.commands import AmendOrder, CancelOrder, ListTechnology, PlaceOrder
from schemas.common import ListingState, RejectReason
from schemas.events import Event, MarketView

#: A refused listing: the reason code and a detail for the seller.
ListingRefusal = tuple[RejectReason, str]


class Venue(Protocol):
    """One technology's trading, whatever its mechanism."""

    technology_id: str
    mechanism: str
    #: The last event sequence number used: every event of the technology takes the next one.
    seq: int
    #: Whether the mechanism can end by itself (an auction decided): the market then asks
    #: :meth:`finished` after each step and closes the listing.
    ends_by_itself: bool
    #: Whether any order may move the venue's deadlines (false for the continuous book,
    #: whose deadlines come only from orders that carry an expiry).
    orders_move_deadlines: bool
    #: Whether the venue's deadlines trade (a call's uncross): they wait through a halt.
    deadlines_trade: bool

    def next_seq(self) -> int: ...

    def place(self, command: PlaceOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        """An order, or a bid in an auction."""
        ...

    def cancel(self, command: CancelOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        """Withdraw a live order or bid, where the mechanism allows it."""
        ...

    def amend(self, command: AmendOrder, timestamp_ms: int, source_offset: int) -> list[Event]:
        """Change a live order's quantity or price, where the mechanism allows it."""
        ...

    def close(self, timestamp_ms: int, source_offset: int) -> list[Event]:
        """End trading now: an auction is decided as at its end; resting orders are cancelled
        (reason technology_closed)."""
        ...

    def has_orders(self) -> bool:
        """Whether any order or bid was ever accepted (a listing with some cannot be
        withdrawn, only closed)."""
        ...

    def finished(self) -> bool:
        """Whether the mechanism has ended by itself (an auction decided): the market then
        marks the listing closed."""
        ...

    def next_deadline(self) -> int | None:
        """The earliest log time at which :meth:`on_deadline` has work, or None."""
        ...

    def on_deadline(self, now_ms: int, source_offset: int) -> list[Event]:
        """Do everything due at or before ``now_ms`` (closes, steps, expiries, uncrosses),
        oldest first; events are stamped with the time each thing was due."""
        ...

    def view(self, state: ListingState, timestamp_ms: int, source_offset: int) -> MarketView:
        """What a public screen shows now: never a sealed bid, a hidden reserve or who bid."""
        ...

    def to_snapshot(self) -> bytes:
        """Everything that decides the venue's future answers, as bytes."""
        ...


@runtime_checkable
class ClockedVenue(Protocol):
    """A venue whose schedule runs from the log time of its listing (a Dutch clock)."""

    def start(self, timestamp_ms: int) -> None: ...


class VenueKind(Protocol):
    """A mechanism's constructors: from a listing command, or from a snapshot."""

    def open(self, listing: ListTechnology) -> Venue | ListingRefusal:
        """A venue for a new listing, or why the listing's parameters do not fit."""
        ...

    def restore(self, data: bytes) -> Venue:
        """A venue from :meth:`Venue.to_snapshot`'s bytes (raises SnapshotError)."""
        ...
