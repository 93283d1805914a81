"""The market of one command partition: routes each command to its technology's venue.

A venue is a mechanism's state for one technology. Only the continuous book is live; the
auction mechanisms of the design (call, English, sealed, Dutch) plug in as siblings by
implementing :class:`Venue` and being named in ``_VENUE_FACTORIES``.

Pure and deterministic: the caller passes the broker timestamp, venues are kept in listing
order, and ids come from counters, so one command log always yields the same events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol

from engine.core.mechanisms.continuous import ContinuousVenue
from engine.core.rules import check_listing, quoted, rejection
from engine.core.snapshot import (
    SNAPSHOT_VERSION,
    ContinuousState,
    MarketState,
    VenueState,
    decode_state,
    encode_state,
)
from schemas.commands import CancelOrder, Command, ListTechnology, PlaceOrder
from schemas.common import Mechanism, RejectReason
from schemas.events import CommandRejected, Event, TechnologyListed


class Venue(Protocol):
    """What the market needs from a mechanism for one technology."""

    technology_id: str
    mechanism: str

    def next_seq(self) -> int: ...

    def place(self, command: PlaceOrder, timestamp_ms: int, source_offset: int) -> list[Event]: ...

    def cancel(
        self, command: CancelOrder, timestamp_ms: int, source_offset: int
    ) -> list[Event]: ...

    def to_state(self) -> VenueState: ...


VenueFactory = Callable[[ListTechnology], Venue]

_VENUE_FACTORIES: dict[str, VenueFactory] = {
    Mechanism.CONTINUOUS.value: lambda listing: ContinuousVenue(
        listing.technology_id, listing.tick_size, listing.lot_size, listing.reserve_price
    ),
}


_VENUE_RESTORERS: dict[type[VenueState], Callable[[VenueState], Venue]] = {
    ContinuousState: ContinuousVenue.from_state,
}


class Market:
    """All technologies whose commands arrive on one partition."""

    __slots__ = ("_venues",)

    def __init__(self) -> None:
        self._venues: dict[str, Venue] = {}

    def apply(self, command: Command, timestamp_ms: int, source_offset: int) -> list[Event]:
        """Apply one command; returns the events it caused, in the order they happened.

        ``timestamp_ms`` and ``source_offset`` are the command record's broker time and
        offset: the market's only clock, and the position every event is stamped with.
        """
        venue = self._venues.get(command.technology_id)
        if type(command) is PlaceOrder:
            if venue is None:
                return [_unknown_technology(command, timestamp_ms, source_offset)]
            return venue.place(command, timestamp_ms, source_offset)
        if type(command) is CancelOrder:
            if venue is None:
                return [_unknown_technology(command, timestamp_ms, source_offset)]
            return venue.cancel(command, timestamp_ms, source_offset)
        assert type(command) is ListTechnology
        return self._list(command, venue, timestamp_ms, source_offset)

    def venue(self, technology_id: str) -> Venue | None:
        return self._venues.get(technology_id)

    def technologies(self) -> list[str]:
        return list(self._venues)

    def state_digest(self) -> str:
        """A hash of everything that decides future matching: the determinism tripwire.

        Two markets that digest alike answer every future command alike.
        """
        return hashlib.sha256(self.snapshot()).hexdigest()

    def snapshot(self) -> bytes:
        return encode_state(
            MarketState(SNAPSHOT_VERSION, [venue.to_state() for venue in self._venues.values()])
        )

    @classmethod
    def from_snapshot(cls, data: bytes) -> Market:
        market = cls()
        for state in decode_state(data).venues:
            market._venues[state.technology_id] = _VENUE_RESTORERS[type(state)](state)
        return market

    def _list(
        self,
        command: ListTechnology,
        existing: Venue | None,
        timestamp_ms: int,
        source_offset: int,
    ) -> list[Event]:
        seq = 0
        if existing is not None:
            seq = existing.next_seq()
            return [
                rejection(
                    command,
                    seq,
                    RejectReason.TECHNOLOGY_ALREADY_LISTED,
                    f"{command.technology_id} is already listed",
                    timestamp_ms,
                    source_offset,
                )
            ]
        factory = _VENUE_FACTORIES.get(command.mechanism)
        if factory is None:
            return [
                rejection(
                    command,
                    seq,
                    RejectReason.UNSUPPORTED_MECHANISM,
                    f"mechanism {quoted(command.mechanism)} is not supported; "
                    f"use one of {', '.join(sorted(_VENUE_FACTORIES))}",
                    timestamp_ms,
                    source_offset,
                )
            ]
        refusal = check_listing(command.tick_size, command.lot_size, command.reserve_price)
        if refusal is not None:
            return [rejection(command, seq, refusal[0], refusal[1], timestamp_ms, source_offset)]
        venue = factory(command)
        self._venues[command.technology_id] = venue
        return [
            TechnologyListed(
                technology_id=command.technology_id,
                seq=venue.next_seq(),
                timestamp_ms=timestamp_ms,
                source_offset=source_offset,
                participant_id=command.participant_id,
                name=command.name,
                mechanism=Mechanism(command.mechanism),
                tick_size=command.tick_size,
                lot_size=command.lot_size,
                reserve_price=command.reserve_price,
            )
        ]


def _unknown_technology(
    command: PlaceOrder | CancelOrder, timestamp_ms: int, source_offset: int
) -> CommandRejected:
    return rejection(
        command,
        0,
        RejectReason.UNKNOWN_TECHNOLOGY,
        f"technology {command.technology_id} is not listed",
        timestamp_ms,
        source_offset,
    )
