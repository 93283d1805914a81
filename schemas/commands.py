"""Commands front-ends publish to ``techx.commands.v1`` (JSON, key = technology_id).

A tagged union on ``type``: decoding picks the struct from the tag in one pass.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from schemas.common import (
    AccessModeText,
    DisplayText,
    DurationMs,
    Identifier,
    ListingActionText,
    LogTimeMs,
    LotSize,
    MechanismText,
    OrderTypeText,
    Price,
    Quantity,
    RoleText,
    SideText,
    TickSize,
    TimeInForceText,
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

    In an auction a place_order is a bid (side bid); in a Dutch auction a bid without a price
    accepts the current price. ``time_in_force``, ``expires_at_ms`` and ``post_only`` apply to
    the continuous book and the call auction (docs: schemas/MECHANISMS.md).
    """

    technology_id: Identifier
    participant_id: Identifier
    client_order_id: Identifier
    side: SideText
    quantity: Quantity
    order_type: OrderTypeText = "limit"
    price: Price | None = None
    time_in_force: TimeInForceText = "gtc"
    expires_at_ms: LogTimeMs | None = None
    post_only: bool = False
    #: Who sent the command, when not ``participant_id`` itself: a broker acting for its
    #: client, or an operator. The gateway stamps it with the authenticated participant.
    submitted_by: Identifier | None = None


class CancelOrder(
    Struct, frozen=True, gc=False, tag="cancel_order", tag_field="type", forbid_unknown_fields=True
):
    """Withdraw the rest of a live order; only the participant that placed it may."""

    technology_id: Identifier
    participant_id: Identifier
    client_order_id: Identifier
    #: Who sent the command, when not ``participant_id`` itself: a broker acting for its
    #: client, or an operator. The gateway stamps it with the authenticated participant.
    submitted_by: Identifier | None = None


class AmendOrder(
    Struct, frozen=True, gc=False, tag="amend_order", tag_field="type", forbid_unknown_fields=True
):
    """Change a live order's open quantity and/or price; only the participant that placed it may.

    The order is named by the participant's own client order id; an order that has ended
    (filled, cancelled, expired), a market order, or another participant's order is
    unknown_order. At least one of ``quantity`` and ``price`` must be given, and the amend must
    change something (amend_changes_nothing).

    ``quantity`` is the new *open* quantity: what is left to trade from now on, not a new
    total. The order's total becomes what it has already filled plus that (its later order_done
    reports that total), so an amend that arrives after a partial fill sets the open quantity
    to exactly the amount given, even if that is more than was left. A given quantity or price
    is checked like a new order's (positive, lot, tick, reserve, and price times the open
    quantity within the notional limit).

    A lower open quantity at the same price keeps the order's time priority. A price change or
    a higher open quantity loses it: the order goes to the back of its (new) price as a new
    arrival, keeping its order id, client order id and any gtd expiry, and if it now crosses
    it trades at once like a new order (self-trade prevention included); a post-only order that
    would trade is refused instead (post_only_would_trade) and left as it was. The answer is
    order_amended (open_quantity, price, priority_kept), then any deals and done events.
    """

    technology_id: Identifier
    participant_id: Identifier
    client_order_id: Identifier
    quantity: Quantity | None = None
    price: Price | None = None
    #: Who sent the command, when not ``participant_id`` itself: a broker acting for its
    #: client, or an operator. The gateway stamps it with the authenticated participant.
    submitted_by: Identifier | None = None


class ManageListing(
    Struct,
    frozen=True,
    gc=False,
    tag="manage_listing",
    tag_field="type",
    forbid_unknown_fields=True,
):
    """Halt, resume, close or withdraw a listing: the seller (its listing participant) or an
    operator may."""

    technology_id: Identifier
    participant_id: Identifier
    action: ListingActionText
    #: Who sent the command, when not ``participant_id`` itself: a broker acting for its
    #: client, or an operator. The gateway stamps it with the authenticated participant.
    submitted_by: Identifier | None = None


class Tick(Struct, frozen=True, gc=False, tag="tick", tag_field="type", forbid_unknown_fields=True):
    """The ticker's heartbeat: lets log time reach deadlines (auction ends, Dutch steps, GTD
    expiry, call uncrosses) when nobody trades. Any key; written to every partition."""


class ListTechnology(
    Struct,
    frozen=True,
    gc=False,
    tag="list_technology",
    tag_field="type",
    forbid_unknown_fields=True,
):
    """Open a technology for trading with its price grid, mechanism and its parameters.

    The participant that lists is the seller. Times are log times (the broker's clock, ms).
    - continuous: reserve_price (optional floor for every order).
    - call: first_uncross_at_ms and call_interval_ms (the uncross schedule), reserve_price.
    - english: starting_price, min_increment, ends_at_ms; optional reserve_price with
      reserve_shown, soft_close_window_ms with soft_close_extension_ms, buy_now_price.
    - sealed_first / sealed_second: ends_at_ms, optional reserve_price.
    - dutch: starting_price, price_step, step_interval_ms, reserve_price (the floor),
      offered_quantity (units for sale, default 1).
    """

    technology_id: Identifier
    participant_id: Identifier
    name: DisplayText
    tick_size: TickSize
    lot_size: LotSize
    mechanism: MechanismText = "continuous"
    reserve_price: Price | None = None
    starting_price: Price | None = None
    min_increment: Price | None = None
    ends_at_ms: LogTimeMs | None = None
    reserve_shown: bool = False
    soft_close_window_ms: DurationMs | None = None
    soft_close_extension_ms: DurationMs | None = None
    buy_now_price: Price | None = None
    first_uncross_at_ms: LogTimeMs | None = None
    call_interval_ms: DurationMs | None = None
    price_step: Price | None = None
    step_interval_ms: DurationMs | None = None
    offered_quantity: Quantity | None = None
    #: Who sent the command, when not ``participant_id`` itself: a broker acting for its
    #: client, or an operator. The gateway stamps it with the authenticated participant.
    submitted_by: Identifier | None = None


class _MembershipCommand(
    Struct, frozen=True, gc=False, tag_field="type", forbid_unknown_fields=True
):
    """Exchange-wide: written to every command partition (any key; ``techx participant``
    does it), because each partition's market keeps its own copy of the register. Only an
    operator may send one (the bootstrap operator ``exchange-ops``, or a registered one)."""

    participant_id: Identifier


class RegisterParticipant(_MembershipCommand, frozen=True, tag="register_participant"):
    """Admit ``member_id`` with its roles; registering again replaces roles and acts_for.

    A broker names in ``acts_for`` the participants it may act for (their ids, registered or
    not yet); no other role takes acts_for.
    """

    member_id: Identifier
    roles: Annotated[list[RoleText], Meta(min_length=1, max_length=4)]
    acts_for: Annotated[list[Identifier], Meta(max_length=256)] = []
    submitted_by: Identifier | None = None


class SuspendParticipant(_MembershipCommand, frozen=True, tag="suspend_participant"):
    """Stop ``member_id`` from acting: its commands are refused; its resting orders stay
    (an operator cancels them if wanted) and can still trade."""

    member_id: Identifier
    submitted_by: Identifier | None = None


class ReinstateParticipant(_MembershipCommand, frozen=True, tag="reinstate_participant"):
    """Let a suspended participant act again."""

    member_id: Identifier
    submitted_by: Identifier | None = None


class SetAccessMode(_MembershipCommand, frozen=True, tag="set_access_mode"):
    """open (the default of a new exchange: a sandbox) or members_only (production)."""

    mode: AccessModeText
    submitted_by: Identifier | None = None


MembershipCommand = RegisterParticipant | SuspendParticipant | ReinstateParticipant | SetAccessMode

Command = (
    PlaceOrder
    | CancelOrder
    | AmendOrder
    | ListTechnology
    | ManageListing
    | Tick
    | RegisterParticipant
    | SuspendParticipant
    | ReinstateParticipant
    | SetAccessMode
)

#: Commands that name a technology (all but the ticker's Tick).
TechnologyCommand = PlaceOrder | CancelOrder | AmendOrder | ListTechnology | ManageListing

COMMAND_TYPES = (
    PlaceOrder,
    CancelOrder,
    AmendOrder,
    ListTechnology,
    ManageListing,
    Tick,
    RegisterParticipant,
    SuspendParticipant,
    ReinstateParticipant,
    SetAccessMode,
)
MEMBERSHIP_COMMAND_TYPES = (
    RegisterParticipant,
    SuspendParticipant,
    ReinstateParticipant,
    SetAccessMode,
)

#: A listing's optional integer parameters (by mechanism: see ListTechnology), by name:
#: what the CLI and clients take as options.
LISTING_PARAMETERS = (
    "starting_price",
    "min_increment",
    "ends_at_ms",
    "soft_close_window_ms",
    "soft_close_extension_ms",
    "buy_now_price",
    "first_uncross_at_ms",
    "call_interval_ms",
    "price_step",
    "step_interval_ms",
    "offered_quantity",
)
