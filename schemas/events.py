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
    AccessMode,
    AuctionOutcome,
    CancelReason,
    Identifier,
    ListingState,
    Mechanism,
    OrderType,
    ParticipantStatus,
    RejectReason,
    Role,
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
    """A listing opened, with its mechanism's parameters as listed (see list_technology).

    On the back-office executions topic: a hidden reserve is only ever shown here."""

    participant_id: Identifier
    name: str
    mechanism: Mechanism
    tick_size: int
    lot_size: int
    reserve_price: int | None
    starting_price: int | None = None
    min_increment: int | None = None
    ends_at_ms: int | None = None
    reserve_shown: bool = False
    soft_close_window_ms: int | None = None
    soft_close_extension_ms: int | None = None
    buy_now_price: int | None = None
    first_uncross_at_ms: int | None = None
    call_interval_ms: int | None = None
    price_step: int | None = None
    step_interval_ms: int | None = None
    offered_quantity: int | None = None


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


class OrderAmended(_Event, frozen=True, tag="order_amended"):
    """A live order's open quantity or price changed; ``priority_kept`` says whether it kept
    its place in the queue (only a quantity reduction does)."""

    order_id: str
    participant_id: Identifier
    client_order_id: Identifier
    open_quantity: int
    price: int | None
    priority_kept: bool


class ListingStateChanged(_Event, frozen=True, tag="listing_state_changed"):
    """A listing moved to ``state`` (halted, open, closed, withdrawn); ``participant_id`` is
    who asked, or empty when the mechanism itself ended (an auction's close)."""

    participant_id: str
    state: ListingState
    previous: ListingState


class AuctionExtended(_Event, frozen=True, tag="auction_extended"):
    """Soft close: a bid in the closing window moved the end."""

    ends_at_ms: int
    order_id: str


class AuctionClosed(_Event, frozen=True, tag="auction_closed"):
    """An auction (english, sealed, dutch) or a call uncross was decided.

    For english/sealed/dutch: ``outcome`` sold with the winning ``order_id``, ``winner_id``,
    ``price`` and ``quantity`` (the deals follow on the deals topic), or unsold with
    ``detail`` saying why (no bids, reserve not met). For a call uncross: sold at the
    clearing ``price`` for ``quantity`` units, or unsold when nothing crossed.
    """

    outcome: AuctionOutcome
    winner_id: str | None
    order_id: str | None
    price: int | None
    quantity: int
    bids: int
    detail: str


class ParticipantRegistered(_Event, frozen=True, tag="participant_registered"):
    """A participant was admitted (or its roles replaced). Exchange-wide: each command
    partition answers for itself, so a registration yields one of these per partition, with
    ``technology_id`` empty and ``seq`` 0 (unique by partition and source_offset)."""

    participant_id: Identifier
    member_id: Identifier
    roles: list[Role]
    acts_for: list[str]


class ParticipantStatusChanged(_Event, frozen=True, tag="participant_status_changed"):
    """Suspended or reinstated; exchange-wide, one per partition, like a registration."""

    participant_id: Identifier
    member_id: Identifier
    status: ParticipantStatus


class AccessModeChanged(_Event, frozen=True, tag="access_mode_changed"):
    """open or members_only from this command on; exchange-wide, one per partition."""

    participant_id: Identifier
    mode: AccessMode
    previous: AccessMode


Event = (
    TechnologyListed
    | OrderAccepted
    | CommandRejected
    | Deal
    | OrderCancelled
    | OrderDone
    | OrderAmended
    | ListingStateChanged
    | AuctionExtended
    | AuctionClosed
    | ParticipantRegistered
    | ParticipantStatusChanged
    | AccessModeChanged
)


class PriceLevel(Struct, frozen=True, gc=False, array_like=True):
    """One price of a book side: [price, quantity, orders]."""

    price: int
    quantity: int
    orders: int


class MarketView(
    Struct, frozen=True, gc=False, tag="market_view", tag_field="type", forbid_unknown_fields=True
):
    """What a public trading screen shows of one technology (``techx.marketdata.v1``).

    Published when it changed, at most once per technology per 1,024 command offsets and at each
    ticker record: conflated, yet the same log always gives the same views. A view never
    reveals a sealed bid, a hidden reserve or who bid. Fields that do not apply to the
    mechanism are null.
    """

    technology_id: str
    timestamp_ms: TimestampMs
    source_offset: SourceOffset
    mechanism: Mechanism
    state: ListingState
    #: continuous and call: the best levels of each side, best first (call: while collecting).
    bids: list[PriceLevel] = []
    offers: list[PriceLevel] = []
    last_price: int | None = None
    last_quantity: int | None = None
    #: call: what an uncross now would do.
    indicative_price: int | None = None
    indicative_volume: int | None = None
    surplus: int | None = None
    next_uncross_at_ms: int | None = None
    #: english: the high bid, the least a new bid must offer, the end.
    high_bid: int | None = None
    next_minimum_bid: int | None = None
    ends_at_ms: int | None = None
    reserve_met: bool | None = None
    #: english, sealed: how many bids (sealed: live bids, never their prices).
    bid_count: int | None = None
    #: dutch: the clock.
    current_price: int | None = None
    next_step_at_ms: int | None = None
    remaining_quantity: int | None = None
