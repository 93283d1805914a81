"""The market's state as bytes: for recovery without replaying the whole log, and for the
state digest that proves two markets will answer every future command alike.

A snapshot holds exactly what decides future matching: each venue's grid, its counters and
its resting orders in priority order. Restoring places the orders back in that order into
empty books (bids first, then offers, which never cross: the book was not crossed), so time
priority and the cancel index come back as they were.
"""

from __future__ import annotations

import msgspec

from engine.errors import SnapshotError

#: 2: ended client order ids (rules of 2026-11: ids are not reused within a window).
#: 3: listings with their life (state, seller), any mechanism as its own bytes, deadlines and
#:    the market-data conflation state.
#: 4: the register of participants and the access mode.
SNAPSHOT_VERSION = 4


class RestingOrderState(msgspec.Struct, array_like=True, frozen=True, gc=False):
    order_id: str
    participant_id: str
    client_order_id: str
    price: int
    quantity: int
    remaining: int


class ContinuousState(msgspec.Struct, array_like=True, frozen=True):
    technology_id: str
    tick_size: int
    lot_size: int
    reserve_price: int | None
    seq: int
    order_count: int
    deal_count: int
    #: Best price first, oldest first within a price.
    bids: list[RestingOrderState]
    offers: list[RestingOrderState]
    #: (participant, client order id) of the most recent ended orders, oldest first.
    ended_client_orders: list[tuple[str, str]]
    last_price: int | None = None
    last_quantity: int | None = None
    #: Live good-till-date orders: (expires_at_ms, order_id), by expiry then arrival in the
    #: expiry queue (an amend that loses priority arrives anew); each is a resting order.
    expiries: list[tuple[int, str]] = []
    #: Order ids of the live post-only orders (an amend of one may not make it trade), in
    #: the order of bids then offers above.
    post_only: list[str] = []


class ListingSnapshot(msgspec.Struct, array_like=True, frozen=True):
    """One listing: the market's part (its life, its seller) and the venue's own bytes."""

    technology_id: str
    mechanism: str
    seller_id: str
    state: str
    #: The venue's snapshot (Venue.to_snapshot), opaque to the market.
    venue: bytes
    #: The last market view published for it (encoded), so a restored market conflates alike.
    last_view: bytes


class MemberSnapshot(msgspec.Struct, array_like=True, frozen=True):
    participant_id: str
    #: Sorted.
    roles: list[str]
    #: Sorted.
    acts_for: list[str]
    active: bool


class MarketState(msgspec.Struct, frozen=True):
    version: int
    #: In listing order, which is the order the market iterates them in.
    listings: list[ListingSnapshot]
    #: Technologies whose view may have changed since the last market-data flush, in order.
    touched: list[str] = []
    #: The register, in registration order, and the access mode.
    members: list[MemberSnapshot] = []
    access_mode: str = "open"


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(MarketState)


def encode_state(state: MarketState) -> bytes:
    return _encoder.encode(state)


def decode_state(data: bytes) -> MarketState:
    try:
        state = _decoder.decode(data)
    except msgspec.DecodeError as e:
        raise SnapshotError(f"snapshot does not decode: {e}") from e
    if state.version != SNAPSHOT_VERSION:
        raise SnapshotError(f"snapshot version {state.version} is not {SNAPSHOT_VERSION}")
    return state


def encode_venue(state: msgspec.Struct) -> bytes:
    """A venue's own state as bytes (each mechanism decodes its own type)."""
    return _encoder.encode(state)
