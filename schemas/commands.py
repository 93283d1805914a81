"""Commands front-ends publish to ``techx.commands.v1`` (JSON, key = technology_id).

A tagged union on ``type``: decoding picks the struct from the tag in one pass.
"""

from __future__ import annotations

from msgspec import Struct

from schemas.common import (
    DisplayText,
    Identifier,
    MechanismText,
    OrderTypeText,
    Price,
    Quantity,
    SideText,
)


class PlaceOrder(
    Struct, frozen=True, gc=False, tag="place_order", tag_field="type", forbid_unknown_fields=True
):
    """A bid (buy) or offer (sell) for one technology.

    ``client_order_id`` is the participant's own name for the order, unique among its live
    orders in that technology; cancels refer to it, so a front-end can cancel without
    waiting for the acceptance.
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
    tick_size: Price
    lot_size: Quantity
    mechanism: MechanismText = "continuous"
    reserve_price: Price | None = None


Command = PlaceOrder | CancelOrder | ListTechnology

COMMAND_TYPES: tuple[type[PlaceOrder], type[CancelOrder], type[ListTechnology]] = (
    PlaceOrder,
    CancelOrder,
    ListTechnology,
)
