"""Events the engine publishes: deals to ``techx.deals.v1``, the rest to ``techx.executions.v1``.

Every event carries ``(technology_id, seq)``: ``seq`` counts each technology's events from 1
without gaps across both topics, so a consumer can drop duplicates and notice a gap. Events
about a technology that was never listed carry ``seq`` 0: there is no stream to place them in;
they are told apart by ``source_offset``, the offset of the command that caused the event on
its command partition (the event's own partition number). ``(technology_id, seq)`` for
``seq`` > 0, and ``(partition, source_offset)`` for ``seq`` 0, identify an event uniquely.
"""

from __future__ import annotations

from msgspec import Struct

from schemas.common import (
    CancelReason,
    Identifier,
    Mechanism,
    OrderType,
    RejectReason,
    Sequence,
    Side,
    SourceOffset,
    TimestampMs,
)


class _Event(Struct, frozen=True, gc=False, tag_field="type", forbid_unknown_fields=True):
    technology_id: str
    seq: Sequence
    timestamp_ms: TimestampMs
    source_offset: SourceOffset


class TechnologyListed(_Event, frozen=True, tag="technology_listed"):
    participant_id: Identifier
    name: str
    mechanism: Mechanism
    tick_size: int
    lot_size: int
    reserve_price: int | None


class OrderAccepted(_Event, frozen=True, tag="order_accepted"):
    order_id: str
    participant_id: Identifier
    client_order_id: Identifier
    side: Side
    order_type: OrderType
    quantity: int
    price: int | None


class CommandRejected(_Event, frozen=True, tag="command_rejected"):
    """A well-formed command the market refused; ``reason`` is a stable code."""

    command: str
    participant_id: Identifier
    client_order_id: str
    reason: RejectReason
    detail: str


class Deal(_Event, frozen=True, tag="deal"):
    """A settled match: it is in PostgreSQL before it is published.

    ``deal_number`` counts the technology's deals from 1 without gaps; ``deal_id`` is
    derived from it, never random. The price is the resting order's price.
    """

    deal_id: str
    deal_number: int
    price: int
    quantity: int
    buyer_id: str
    seller_id: str
    bid_order_id: str
    offer_order_id: str
    bid_client_order_id: str
    offer_client_order_id: str
    aggressor_side: Side


class OrderCancelled(_Event, frozen=True, tag="order_cancelled"):
    order_id: str
    participant_id: Identifier
    client_order_id: Identifier
    filled_quantity: int
    cancelled_quantity: int
    reason: CancelReason


class OrderDone(_Event, frozen=True, tag="order_done"):
    """The order filled completely; nothing of it rests any more."""

    order_id: str
    participant_id: Identifier
    client_order_id: Identifier
    filled_quantity: int


Event = TechnologyListed | OrderAccepted | CommandRejected | Deal | OrderCancelled | OrderDone
