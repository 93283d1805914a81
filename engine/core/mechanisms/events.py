"""The events of an order's and a deal's life, as every auction mechanism makes them.

Each takes the venue (for its technology, its event sequence and its deal counter) and the
facts, so call, english, sealed and dutch number and shape their events alike. The
continuous book builds the same events inline: it is the hot path.
"""

from __future__ import annotations

from typing import Protocol

from schemas.common import CancelReason, Side
from schemas.events import Deal, OrderCancelled, OrderDone


class NumberedVenue(Protocol):
    technology_id: str
    #: Deals made so far: the next deal is number ``deal_count + 1``.
    deal_count: int

    def next_seq(self) -> int: ...


def deal(
    venue: NumberedVenue,
    *,
    buyer_id: str,
    bid_order_id: str,
    bid_client_order_id: str,
    seller_id: str,
    price: int,
    quantity: int,
    timestamp_ms: int,
    source_offset: int,
    offer_order_id: str = "",
    offer_client_order_id: str = "",
) -> Deal:
    """The venue's next deal. In an auction the bid side is the aggressor, and a seller who
    placed no order leaves the offer's ids empty."""
    venue.deal_count += 1
    technology_id = venue.technology_id
    return Deal(
        technology_id=technology_id,
        seq=venue.next_seq(),
        timestamp_ms=timestamp_ms,
        source_offset=source_offset,
        deal_id=f"{technology_id}:d{venue.deal_count}",
        deal_number=venue.deal_count,
        price=price,
        quantity=quantity,
        buyer_id=buyer_id,
        seller_id=seller_id,
        bid_order_id=bid_order_id,
        offer_order_id=offer_order_id,
        bid_client_order_id=bid_client_order_id,
        offer_client_order_id=offer_client_order_id,
        aggressor_side=Side.BID,
    )


def done(
    venue: NumberedVenue,
    order_id: str,
    participant_id: str,
    client_order_id: str,
    filled_quantity: int,
    timestamp_ms: int,
    source_offset: int,
) -> OrderDone:
    return OrderDone(
        technology_id=venue.technology_id,
        seq=venue.next_seq(),
        timestamp_ms=timestamp_ms,
        source_offset=source_offset,
        order_id=order_id,
        participant_id=participant_id,
        client_order_id=client_order_id,
        filled_quantity=filled_quantity,
    )


def cancelled(
    venue: NumberedVenue,
    order_id: str,
    participant_id: str,
    client_order_id: str,
    filled_quantity: int,
    cancelled_quantity: int,
    reason: CancelReason,
    timestamp_ms: int,
    source_offset: int,
) -> OrderCancelled:
    return OrderCancelled(
        technology_id=venue.technology_id,
        seq=venue.next_seq(),
        timestamp_ms=timestamp_ms,
        source_offset=source_offset,
        order_id=order_id,
        participant_id=participant_id,
        client_order_id=client_order_id,
        filled_quantity=filled_quantity,
        cancelled_quantity=cancelled_quantity,
        reason=reason,
    )
