"""A call venue as bytes (:class:`CallState`), apart from the venue so that
engine/core/mechanisms/call.py can be compiled (mypyc erases the annotations of the classes
it compiles, and msgspec decodes by them). The encoding is the call venue's snapshot format:
tagged ``call``, array-like, fields in this order."""

from __future__ import annotations

import msgspec

from schemas.common import Side


class CallOrderState(msgspec.Struct, array_like=True, frozen=True, gc=False):
    number: int
    order_id: str
    participant_id: str
    client_order_id: str
    side: Side
    price: int | None
    quantity: int
    remaining: int
    expires_at_ms: int | None


class CallState(msgspec.Struct, array_like=True, frozen=True, tag="call"):
    """A call venue as bytes: its listing, schedule, counters and live orders."""

    technology_id: str
    tick_size: int
    lot_size: int
    reserve_price: int | None
    starting_price: int | None
    first_uncross_at_ms: int
    call_interval_ms: int
    #: The pending uncross (None while the book is empty).
    uncross_at_ms: int | None
    seq: int
    order_count: int
    deal_count: int
    #: Live orders in arrival order (priority is price, then this order).
    orders: list[CallOrderState]
    #: (participant, client order id) of the most recent ended orders, oldest first.
    ended_client_orders: list[tuple[str, str]]
    last_price: int | None
    last_quantity: int | None
