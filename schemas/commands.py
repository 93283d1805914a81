"""Commands front-ends publish to ``techx.commands.v1`` (JSON, key = technology_id).

A tagged union on ``type``: decoding picks the struct from the tag in one pass.
"""

from __future__ import annotations

from msgspec import Struct

from schemas.common import (
    DisplayText,
    Identifier,
    LotSize,
    MechanismText,
    OrderTypeText,
    Price,
    Quantity,
    SideText,
    TickSize,
)


class PlaceOrder(
    Struct, frozen=True, gc=False, tag="place_order", tag_field="type", forbid_unknown_fields=True
):
    """A bid (buy) or offer (sell) for one technology.

    ``client_order_id`` is the participant's own name for the order; cancels refer to it, so
    a front-end can cancel without waiting for the acceptance. It must differ from the ids of
    the participant's live orders and of the last 100,000 orders that ended in that
    technology, so a resent order is refused (duplicate_client_order_id), never traded twice.
    A limit order's value, price times quantity, is at most 10^18 đồng (notional_too_large):
    every deal's value then fits a signed 64-bit integer.
    """

    technology_id: Identifier
    participant_id: Identifier
    client_order_id: Identifier
    side: SideText
    quantity: Quantity
    order_type: OrderTypeText = "limit"
    price: Price | None = None


class CancelOrder(
    Struct, frozen=True, gc=False, tag="cancel_order", tag_field="type", forbid_unknown_fields=True
):
    """Withdraw the rest of a live order; only the participant that placed it may."""

    technology_id: Identifier
    participant_id: Identifier
    client_order_id: Identifier


class ListTechnology(
    Struct,
    frozen=True,
    gc=False,
    tag="list_technology",
    tag_field="type",
    forbid_unknown_fields=True,
):
    """Open a technology for trading with its price grid and optional reserve price."""

    technology_id: Identifier
    participant_id: Identifier
    name: DisplayText
    tick_size: TickSize
    lot_size: LotSize
    mechanism: MechanismText = "continuous"
    reserve_price: Price | None = None


Command = PlaceOrder | CancelOrder | ListTechnology

COMMAND_TYPES: tuple[type[PlaceOrder], type[CancelOrder], type[ListTechnology]] = (
    PlaceOrder,
    CancelOrder,
    ListTechnology,
)
