"""The market of one command partition: routes each command to its technology's venue.

A venue is a mechanism's state for one technology (:mod:`engine.core.venue`; one module per
mechanism in :mod:`engine.core.mechanisms`). The market owns what all of them share:
- the listing's life: open -> halted <-> open -> closed, or withdrawn before any order;
  only the seller (the listing participant) or an operator may change it;
- time: before any record is applied, every deadline at or before its log time fires, in
  deadline order (ties in listing order), so auctions close, Dutch clocks step and GTD
  orders expire at the same log positions live and in replay;
- market data: views of the technologies touched, published when they changed, at every
  tick and every 1,024th offset: conflated, yet a function of the log alone;
- snapshots of all of it.

Pure and deterministic: the caller passes the broker timestamp and the offset, listings are
kept in listing order, and ids come from counters, so one command log always yields the
same events.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from heapq import heappop, heappush
from typing import Final, cast

import msgspec

from engine.core.mechanisms.call import CallKind
from engine.core.mechanisms.continuous import ContinuousVenue, cancel_fields, place_fields
from engine.core.mechanisms.dutch import DutchKind
from engine.core.mechanisms.english import EnglishKind
from engine.core.mechanisms.sealed import SealedKind
from engine.core.membership import Register
from engine.core.rules import may_manage, quoted, rejection
from engine.core.snapshot import (
    SNAPSHOT_VERSION,
    ListingSnapshot,
    MarketState,
    decode_state,
    encode_state,
)
from engine.core.venue import ClockedVenue, Venue, VenueKind
from schemas.commands import (
    AmendOrder,
    CancelOrder,
    Command,
    ListTechnology,
    ManageListing,
    PlaceOrder,
    RegisterParticipant,
    ReinstateParticipant,
    SetAccessMode,
    SuspendParticipant,
    TechnologyCommand,
    Tick,
)
from schemas.common import AccessMode, ListingState, Mechanism, RejectReason, Role
from schemas.events import (
    CommandRejected,
    Event,
    ListingStateChanged,
    MarketView,
    TechnologyListed,
)

#: Each mechanism's constructors, by the name a listing gives.
MECHANISMS: dict[str, VenueKind] = {
    Mechanism.CONTINUOUS.value: ContinuousVenue,
    Mechanism.CALL.value: CallKind,
    Mechanism.ENGLISH.value: EnglishKind,
    Mechanism.SEALED_FIRST.value: SealedKind,
    Mechanism.SEALED_SECOND.value: SealedKind,
    Mechanism.DUTCH.value: DutchKind,
}

#: Market views are flushed at every tick and whenever an offset is the last of a block.
MARKET_DATA_BLOCK: Final = 1024
_BLOCK_MASK: Final = MARKET_DATA_BLOCK - 1
assert MARKET_DATA_BLOCK & _BLOCK_MASK == 0, "a power of two"
# Final: compiled, each is a C static rather than a lookup in the module's dict at every
# use; the command classes are aliased for that alone.
_OPEN: Final = ListingState.OPEN
_HALTED: Final = ListingState.HALTED
_CLOSED: Final = ListingState.CLOSED
_WITHDRAWN: Final = ListingState.WITHDRAWN
_OPEN_ACCESS: Final = AccessMode.OPEN
_MEMBERSHIP: Final = frozenset(
    (RegisterParticipant, SuspendParticipant, ReinstateParticipant, SetAccessMode)
)
_PLACE_ORDER: Final = PlaceOrder
_CANCEL_ORDER: Final = CancelOrder
_AMEND_ORDER: Final = AmendOrder
_LIST_TECHNOLOGY: Final = ListTechnology
_MANAGE_LISTING: Final = ManageListing
_TICK: Final = Tick
_SELLER: Final = Role.SELLER
_TECHNOLOGY_HALTED: Final = RejectReason.TECHNOLOGY_HALTED
_TECHNOLOGY_CLOSED: Final = RejectReason.TECHNOLOGY_CLOSED
#: Each listing state's text: an enum's ``value`` is a property, slow to read.
_STATE_TEXT: Final = {state: state.value for state in ListingState}
#: The role a place_order's owner needs, by side (an unknown side is the venue's to refuse).
_ROLE_FOR_SIDE: Final = {"bid": Role.BUYER, "offer": _SELLER}

_view_encoder = msgspec.json.Encoder()
# Bound once, Final: compiled, each is called without a lookup by name at every view.
_encode_shown: Final = _view_encoder.encode
_replace: Final = msgspec.structs.replace


@dataclass(slots=True)
class Listing:
    """A listed technology: its venue and what the market keeps about it."""

    venue: Venue
    mechanism: str
    seller_id: str
    state: ListingState
    #: Position in listing order: breaks ties between deadlines at the same time.
    index: int
    #: The last view published (encoded, without time and offset), or empty.
    last_view: bytes = b""
    #: The deadline this listing has in the market's heap, if any.
    scheduled: int | None = None
    #: Open, no order can move its deadlines, nothing scheduled: a plain order needs none of
    #: the bookkeeping (a cache of those three facts for the hot path, kept by _after).
    plain: bool = False
    #: Whether the technology is in the market's touched set: read on the hot path, where it
    #: costs less than a lookup in the set.
    touched: bool = False


class Market:
    """All technologies whose commands arrive on one partition."""

    __slots__ = ("_deadlines", "_listings", "_touched", "own_events_only", "register", "views_out")

    def __init__(self) -> None:
        self._listings: dict[str, Listing] = {}
        #: Who may act as whom (engine.core.membership).
        self.register = Register()
        #: (deadline, listing index, technology): a lazy heap; stale entries are skipped.
        self._deadlines: list[tuple[int, int, str]] = []
        #: Technologies whose view may have changed since the last flush, in first-touch order.
        self._touched: dict[str, None] = {}
        #: Market views made by the commands applied so far; the caller takes them away.
        self.views_out: list[MarketView] = []
        #: Whether all events of the last command were its own technology's: true on the hot
        #: path (only the command's venue acted, nothing fell due). Otherwise deadlines of other
        #: technologies may have fired, and whoever keys events by technology reads each one's.
        self.own_events_only = False

    def apply(self, command: Command, timestamp_ms: int, source_offset: int) -> list[Event]:
        """Apply one command; returns the events it caused, in the order they happened.

        ``timestamp_ms`` and ``source_offset`` are the command record's broker time and
        offset: the market's only clock, and the position every event is stamped with.
        """
        deadlines = self._deadlines
        due = bool(deadlines) and deadlines[0][0] <= timestamp_ms
        if not due and self.register.mode is _OPEN_ACCESS:
            # The hot path: an order, a cancel or an amend that its owner sent for an open
            # continuous book with nothing scheduled. Such a book has no live gtd order, and
            # none of these gives it one, so _after would change nothing but the touched set.
            # The compiled core calls the book directly, not through a Python method call.
            kind = type(command)
            if kind is _PLACE_ORDER:
                order = cast(PlaceOrder, command)
                fields = place_fields(order)  # read once, for the book too
                if fields[8] is None and fields[10] is None:  # expires_at_ms, submitted_by
                    technology_id: str = fields[0]
                    listing = self._plain_continuous(technology_id)
                    if listing is not None:
                        venue = cast(ContinuousVenue, listing.venue)
                        events = venue.place_fields(order, fields, timestamp_ms, source_offset)
                        return self._touch(
                            listing, technology_id, events, timestamp_ms, source_offset
                        )
            elif kind is _CANCEL_ORDER:
                ids = cancel_fields(cast(CancelOrder, command))
                if ids[3] is None:  # submitted_by
                    technology_id = ids[0]
                    listing = self._plain_continuous(technology_id)
                    if listing is not None:
                        venue = cast(ContinuousVenue, listing.venue)
                        events = venue.cancel_fields(ids, timestamp_ms, source_offset)
                        return self._touch(
                            listing, technology_id, events, timestamp_ms, source_offset
                        )
            elif kind is _AMEND_ORDER:
                amendment = cast(AmendOrder, command)
                if amendment.submitted_by is None:
                    technology_id = amendment.technology_id
                    listing = self._plain_continuous(technology_id)
                    if listing is not None:
                        venue = cast(ContinuousVenue, listing.venue)
                        events = venue.amend(amendment, timestamp_ms, source_offset)
                        return self._touch(
                            listing, technology_id, events, timestamp_ms, source_offset
                        )
        self.own_events_only = False
        fired = self._fire_deadlines(timestamp_ms, source_offset) if due else None
        events = self._apply(command, timestamp_ms, source_offset)
        if fired:
            fired.extend(events)
            events = fired
        if source_offset & _BLOCK_MASK == _BLOCK_MASK or type(command) is _TICK:
            self._flush_views(timestamp_ms, source_offset)
        return events

    def _plain_continuous(self, technology_id: str) -> Listing | None:
        """The listing of ``technology_id`` if it is plain (see Listing) and continuous."""
        listing = self._listings.get(technology_id)
        if listing is not None and listing.plain and isinstance(listing.venue, ContinuousVenue):
            return listing
        return None

    def _touch(
        self,
        listing: Listing,
        technology_id: str,
        events: list[Event],
        timestamp_ms: int,
        source_offset: int,
    ) -> list[Event]:
        """The hot path's bookkeeping: the view may have changed, and may be due."""
        self.own_events_only = True
        if not listing.touched:
            listing.touched = True
            self._touched[technology_id] = None
        if source_offset & _BLOCK_MASK == _BLOCK_MASK:
            self._flush_views(timestamp_ms, source_offset)
        return events

    def _apply(self, command: Command, timestamp_ms: int, source_offset: int) -> list[Event]:
        kind = type(command)
        if kind is _TICK:
            return []
        if kind in _MEMBERSHIP:
            return self.register.apply(command, timestamp_ms, source_offset)  # type: ignore[arg-type]
        # A cast, not an isinstance assert: asked of msgspec's classes, isinstance goes
        # through their metaclass for every class the command is not.
        command = cast(TechnologyCommand, command)
        technology_id = command.technology_id
        listing = self._listings.get(technology_id)
        register = self.register
        if register.checks_needed(command):
            if kind is _PLACE_ORDER:
                needs = _ROLE_FOR_SIDE.get(cast(PlaceOrder, command).side)
            else:
                needs = _SELLER if kind is _LIST_TECHNOLOGY else None
            refusal = register.refusal(command, needs)
            if refusal is not None:
                seq = listing.venue.next_seq() if listing is not None else 0
                return [rejection(command, seq, *refusal, timestamp_ms, source_offset)]
        # Narrowed by casts: mypy narrows on type(command) is PlaceOrder, not on the Final
        # aliases the compiled core reads without a lookup.
        if kind is _LIST_TECHNOLOGY:
            return self._list(cast(ListTechnology, command), listing, timestamp_ms, source_offset)
        if listing is None:
            return [_unknown_technology(command, timestamp_ms, source_offset)]
        state = listing.state
        venue = listing.venue
        # Each venue call twice over: narrowed, the compiled core calls the continuous book
        # directly rather than through a Python method call.
        if kind is _PLACE_ORDER:
            if state is not _OPEN:
                return [_not_open(listing, command, timestamp_ms, source_offset)]
            order = cast(PlaceOrder, command)
            if isinstance(venue, ContinuousVenue):
                events = venue.place(order, timestamp_ms, source_offset)
            else:
                events = venue.place(order, timestamp_ms, source_offset)
        elif kind is _CANCEL_ORDER:
            if state is _CLOSED or state is _WITHDRAWN:
                return [_not_open(listing, command, timestamp_ms, source_offset)]
            withdrawal = cast(CancelOrder, command)
            if isinstance(venue, ContinuousVenue):
                events = venue.cancel(withdrawal, timestamp_ms, source_offset)
            else:
                events = venue.cancel(withdrawal, timestamp_ms, source_offset)
        elif kind is _AMEND_ORDER:
            if state is not _OPEN:
                return [_not_open(listing, command, timestamp_ms, source_offset)]
            amendment = cast(AmendOrder, command)
            if isinstance(venue, ContinuousVenue):
                events = venue.amend(amendment, timestamp_ms, source_offset)
            else:
                events = venue.amend(amendment, timestamp_ms, source_offset)
        else:
            assert kind is _MANAGE_LISTING
            manage = cast(ManageListing, command)
            events = self._manage(listing, manage, timestamp_ms, source_offset)
        self._after(technology_id, listing, events, timestamp_ms, source_offset)
        return events

    def _after(
        self,
        technology_id: str,
        listing: Listing,
        events: list[Event],
        timestamp_ms: int,
        source_offset: int,
    ) -> None:
        """Bookkeeping after a venue acted: its view, its deadline, whether it ended."""
        if not listing.touched:
            listing.touched = True
            self._touched[technology_id] = None
        venue = listing.venue
        if isinstance(venue, ContinuousVenue):
            # Narrowed (a direct call): a continuous book never ends by itself, and no order
            # moves its deadlines.
            deadline = venue.next_deadline()
            plain = deadline is None and listing.state is _OPEN
        else:
            if venue.ends_by_itself and listing.state is _OPEN and venue.finished():
                events.append(self._change_state(listing, _CLOSED, "", timestamp_ms, source_offset))
            deadline = venue.next_deadline()
            plain = _plain(listing, deadline)
        if deadline is not None and deadline != listing.scheduled:
            heappush(self._deadlines, (deadline, listing.index, technology_id))
        listing.scheduled = deadline
        listing.plain = plain

    def _fire_deadlines(self, now_ms: int, source_offset: int) -> list[Event]:
        events: list[Event] = []
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now_ms:
            due, _, technology_id = heappop(deadlines)
            listing = self._listings[technology_id]
            if listing.scheduled != due:
                continue  # stale: the venue's deadline moved since
            listing.scheduled = None
            if listing.state is ListingState.HALTED and listing.venue.deadlines_trade:
                continue  # a halt stops trading: rescheduled at its resume
            # Everything of this venue due by now, in one call: a long quiet spell costs one
            # call, not one per missed step. The venue stamps each event with its due time.
            fired = listing.venue.on_deadline(now_ms, source_offset)
            ended_at = fired[-1].timestamp_ms if fired else due
            self._after(technology_id, listing, fired, ended_at, source_offset)
            events.extend(fired)
        return events

    def _flush_views(self, timestamp_ms: int, source_offset: int) -> None:
        for technology_id in self._touched:
            listing = self._listings[technology_id]
            listing.touched = False
            view = listing.venue.view(listing.state, timestamp_ms, source_offset)
            # Compared without its time and offset: only a change of what it shows counts.
            shown = _encode_shown(_replace(view, timestamp_ms=0, source_offset=0))
            if shown != listing.last_view:
                listing.last_view = shown
                self.views_out.append(view)
        self._touched.clear()

    def venue(self, technology_id: str) -> Venue | None:
        listing = self._listings.get(technology_id)
        return None if listing is None else listing.venue

    def listing_state(self, technology_id: str) -> ListingState | None:
        listing = self._listings.get(technology_id)
        return None if listing is None else listing.state

    def technologies(self) -> list[str]:
        return list(self._listings)

    def next_deadline(self) -> int | None:
        """The earliest log time at which something is due (stale entries aside)."""
        live = [d for d, _, t in self._deadlines if self._listings[t].scheduled == d]
        return min(live) if live else None

    def state_digest(self) -> str:
        """A hash of everything that decides future matching: the determinism tripwire.

        Two markets that digest alike answer every future command alike.
        """
        return hashlib.sha256(self.snapshot()).hexdigest()

    def snapshot(self) -> bytes:
        return encode_state(
            MarketState(
                SNAPSHOT_VERSION,
                [
                    ListingSnapshot(
                        technology_id,
                        listing.mechanism,
                        listing.seller_id,
                        listing.state.value,
                        listing.venue.to_snapshot(),
                        listing.last_view,
                    )
                    for technology_id, listing in self._listings.items()
                ],
                list(self._touched),
                self.register.to_snapshot(),
                self.register.mode.value,
            )
        )

    @classmethod
    def from_snapshot(cls, data: bytes) -> Market:
        market = cls()
        state = decode_state(data)
        for index, saved in enumerate(state.listings):
            venue = MECHANISMS[saved.mechanism].restore(saved.venue)
            listing = Listing(
                venue,
                saved.mechanism,
                saved.seller_id,
                ListingState(saved.state),
                index,
                saved.last_view,
            )
            market._listings[saved.technology_id] = listing
            deadline = venue.next_deadline()
            if deadline is not None:
                heappush(market._deadlines, (deadline, index, saved.technology_id))
                listing.scheduled = deadline
            listing.plain = _plain(listing, deadline)
        market._touched = dict.fromkeys(state.touched)
        for technology_id in state.touched:
            market._listings[technology_id].touched = True
        market.register = Register.restore(state.members, state.access_mode)
        return market

    def _list(
        self,
        command: ListTechnology,
        existing: Listing | None,
        timestamp_ms: int,
        source_offset: int,
    ) -> list[Event]:
        if existing is not None:
            return [
                rejection(
                    command,
                    existing.venue.next_seq(),
                    RejectReason.TECHNOLOGY_ALREADY_LISTED,
                    f"{command.technology_id} is already listed",
                    timestamp_ms,
                    source_offset,
                )
            ]
        kind = MECHANISMS.get(command.mechanism)
        if kind is None:
            return [
                rejection(
                    command,
                    0,
                    RejectReason.UNSUPPORTED_MECHANISM,
                    f"mechanism {quoted(command.mechanism)} is not supported; "
                    f"use one of {', '.join(sorted(MECHANISMS))}",
                    timestamp_ms,
                    source_offset,
                )
            ]
        opened = kind.open(command)
        if isinstance(opened, tuple):
            reason, detail = opened
            return [rejection(command, 0, reason, detail, timestamp_ms, source_offset)]
        if isinstance(opened, ClockedVenue):
            opened.start(timestamp_ms)  # a clock that runs from the listing's own log time
        listing = Listing(
            opened,
            command.mechanism,
            command.participant_id,
            ListingState.OPEN,
            len(self._listings),
        )
        self._listings[command.technology_id] = listing
        events: list[Event] = [
            TechnologyListed(
                technology_id=command.technology_id,
                seq=opened.next_seq(),
                timestamp_ms=timestamp_ms,
                source_offset=source_offset,
                participant_id=command.participant_id,
                name=command.name,
                mechanism=Mechanism(command.mechanism),
                tick_size=command.tick_size,
                lot_size=command.lot_size,
                reserve_price=command.reserve_price,
                starting_price=command.starting_price,
                min_increment=command.min_increment,
                ends_at_ms=command.ends_at_ms,
                reserve_shown=command.reserve_shown,
                soft_close_window_ms=command.soft_close_window_ms,
                soft_close_extension_ms=command.soft_close_extension_ms,
                buy_now_price=command.buy_now_price,
                first_uncross_at_ms=command.first_uncross_at_ms,
                call_interval_ms=command.call_interval_ms,
                price_step=command.price_step,
                step_interval_ms=command.step_interval_ms,
                offered_quantity=command.offered_quantity,
            )
        ]
        self._after(command.technology_id, listing, events, timestamp_ms, source_offset)
        return events

    def _manage(
        self, listing: Listing, command: ManageListing, timestamp_ms: int, source_offset: int
    ) -> list[Event]:
        venue, state, action = listing.venue, listing.state, command.action

        def refuse(reason: RejectReason, detail: str) -> list[Event]:
            return [
                rejection(command, venue.next_seq(), reason, detail, timestamp_ms, source_offset)
            ]

        operator = self.register.is_operator(command.submitted_by or command.participant_id)
        if not may_manage(command.participant_id, listing.seller_id, operator):
            return refuse(
                RejectReason.NOT_PERMITTED,
                f"only the seller {listing.seller_id} or an operator may {quoted(action)} "
                f"{command.technology_id}",
            )
        who = command.participant_id
        if action == "halt" and state is ListingState.OPEN:
            return [
                self._change_state(listing, ListingState.HALTED, who, timestamp_ms, source_offset)
            ]
        if action == "resume" and state is ListingState.HALTED:
            resumed: list[Event] = [
                self._change_state(listing, ListingState.OPEN, who, timestamp_ms, source_offset)
            ]
            listing.scheduled = None  # whatever waited for the resume is due again
            self._after(command.technology_id, listing, resumed, timestamp_ms, source_offset)
            resumed.extend(self._fire_deadlines(timestamp_ms, source_offset))
            return resumed
        if action in ("close", "withdraw") and state in (ListingState.OPEN, ListingState.HALTED):
            if action == "withdraw" and venue.has_orders():
                return refuse(
                    RejectReason.LISTING_HAS_ORDERS,
                    f"{command.technology_id} has had orders or bids: close it instead",
                )
            events = venue.close(timestamp_ms, source_offset)
            target = ListingState.CLOSED if action == "close" else ListingState.WITHDRAWN
            events.append(self._change_state(listing, target, who, timestamp_ms, source_offset))
            return events
        if action not in ("halt", "resume", "close", "withdraw"):
            return refuse(
                RejectReason.INVALID_LISTING_ACTION,
                f"action {quoted(action)} is not halt, resume, close or withdraw",
            )
        return refuse(
            RejectReason.INVALID_LISTING_ACTION,
            f"cannot {action} {command.technology_id} while it is {state.value}",
        )

    def _change_state(
        self,
        listing: Listing,
        state: ListingState,
        participant_id: str,
        timestamp_ms: int,
        source_offset: int,
    ) -> ListingStateChanged:
        previous, listing.state = listing.state, state
        return ListingStateChanged(
            technology_id=listing.venue.technology_id,
            seq=listing.venue.next_seq(),
            timestamp_ms=timestamp_ms,
            source_offset=source_offset,
            participant_id=participant_id,
            state=state,
            previous=previous,
        )


def _plain(listing: Listing, deadline: int | None) -> bool:
    return listing.state is _OPEN and not listing.venue.orders_move_deadlines and deadline is None


def _unknown_technology(
    command: TechnologyCommand,
    timestamp_ms: int,
    source_offset: int,
) -> CommandRejected:
    return rejection(
        command,
        0,
        RejectReason.UNKNOWN_TECHNOLOGY,
        f"technology {command.technology_id} is not listed",
        timestamp_ms,
        source_offset,
    )


def _not_open(
    listing: Listing,
    command: TechnologyCommand,
    timestamp_ms: int,
    source_offset: int,
) -> CommandRejected:
    state = listing.state
    return rejection(
        command,
        listing.venue.next_seq(),
        _TECHNOLOGY_HALTED if state is _HALTED else _TECHNOLOGY_CLOSED,
        f"{command.technology_id} is {_STATE_TEXT[state]}",
        timestamp_ms,
        source_offset,
    )
