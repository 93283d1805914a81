"""Checks every mechanism applies to a price or a quantity before an order may trade.

Each check returns a reason code and a human detail, or ``None`` when the value is fine; the
venue turns a refusal into a ``CommandRejected`` event.
"""

from __future__ import annotations

from typing import Final, cast

from schemas.commands import (
    AmendOrder,
    CancelOrder,
    ListTechnology,
    ManageListing,
    PlaceOrder,
    TechnologyCommand,
)
from schemas.common import MAX_NOTIONAL, MAX_PRICE, MAX_QUANTITY, RejectReason
from schemas.events import CommandRejected

Refusal = tuple[RejectReason, str]

# Final: compiled, C statics rather than a lookup in the module's dict at every check.
_MAX_PRICE: Final = MAX_PRICE
_MAX_QUANTITY: Final = MAX_QUANTITY
_MAX_NOTIONAL: Final = MAX_NOTIONAL
_COMMAND_REJECTED: Final = CommandRejected
#: Each technology command's tag (``type`` on the wire), by class: one lookup a rejection
#: instead of two attribute reads.
_TAGS: Final = {
    kind: cast(str, kind.__struct_config__.tag)
    for kind in (PlaceOrder, CancelOrder, AmendOrder, ListTechnology, ManageListing)
}


def check_price(
    price: int, quantity: int, tick_size: int, reserve_price: int | None
) -> Refusal | None:
    """A limit price on the grid, above the reserve, and an order value (price times
    quantity) within MAX_NOTIONAL, so every deal's value, never above the resting order's,
    fits a signed 64-bit integer downstream, in any language."""
    if price <= 0:
        return RejectReason.PRICE_NOT_POSITIVE, f"price {price} must be above zero"
    if price > _MAX_PRICE:
        return RejectReason.PRICE_TOO_HIGH, f"price {price} is above the limit {_MAX_PRICE}"
    if price % tick_size:
        return RejectReason.PRICE_OFF_TICK, f"price {price} is not a multiple of tick {tick_size}"
    if reserve_price is not None and price < reserve_price:
        return RejectReason.PRICE_BELOW_RESERVE, f"price {price} is below reserve {reserve_price}"
    if price * quantity > _MAX_NOTIONAL:
        return (
            RejectReason.NOTIONAL_TOO_LARGE,
            f"price {price} times quantity {quantity} is above the limit {_MAX_NOTIONAL} đồng",
        )
    return None


def check_quantity(quantity: int, lot_size: int) -> Refusal | None:
    if quantity <= 0:
        return RejectReason.QUANTITY_NOT_POSITIVE, f"quantity {quantity} must be above zero"
    if quantity > _MAX_QUANTITY:
        return RejectReason.QUANTITY_TOO_LARGE, f"quantity {quantity} is above {_MAX_QUANTITY}"
    if quantity % lot_size:
        return (
            RejectReason.QUANTITY_OFF_LOT,
            f"quantity {quantity} is not a multiple of lot {lot_size}",
        )
    return None


def check_listing(tick_size: int, lot_size: int, reserve_price: int | None) -> Refusal | None:
    """A listing's grid must itself be valid before orders can be judged against it."""
    if not 0 < tick_size <= _MAX_PRICE:
        return RejectReason.INVALID_TICK_SIZE, f"tick size {tick_size} must be in 1..{_MAX_PRICE}"
    if not 0 < lot_size <= _MAX_QUANTITY:
        return RejectReason.INVALID_LOT_SIZE, f"lot size {lot_size} must be in 1..{_MAX_QUANTITY}"
    if reserve_price is not None and (
        not 0 < reserve_price <= _MAX_PRICE or reserve_price % tick_size
    ):
        return (
            RejectReason.INVALID_RESERVE_PRICE,
            f"reserve price {reserve_price} must be a positive multiple of tick {tick_size}",
        )
    return None


def may_manage(participant_id: str, seller_id: str, operator: bool) -> bool:
    """The seller (who listed it) or an operator may halt, resume, close or withdraw."""
    return participant_id == seller_id or operator


def quoted(text: str, limit: int = 40) -> str:
    """Free text from a command as it may appear in a rejection's detail: quoted, short,
    with controls escaped, so a 16 KiB side cannot make a 16 KiB event."""
    shown = text[:limit].encode("unicode_escape").decode("ascii")
    return f'"{shown}"' + ("..." if len(text) > limit else "")


def rejection(
    command: TechnologyCommand,
    seq: int,
    reason: RejectReason,
    detail: str,
    timestamp_ms: int,
    source_offset: int,
) -> CommandRejected:
    """The answer to a refused command, addressed to the participant that sent it."""
    kind = type(command)
    tag = _TAGS.get(kind)
    if tag is None:
        tag = cast(str, kind.__struct_config__.tag)
    return _COMMAND_REJECTED(
        command.technology_id,
        seq,
        timestamp_ms,
        source_offset,
        tag,  # command
        command.participant_id,
        getattr(command, "client_order_id", ""),
        reason,
        detail,
    )
