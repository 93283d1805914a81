"""Field types shared by commands and events.

Identity fields (technology, participant, client order id) are constrained here, at the
boundary: a record whose identity is broken cannot be answered, so it is dead-lettered.
Business values (side, price, quantity, tick, lot) stay plain on the wire and are judged by
the market, so a front-end gets a rejection event with a specific reason instead of silence.
Their intended ranges are still published in the JSON Schema through ``extra_json_schema``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from msgspec import Meta

#: Largest price the exchange accepts, in whole đồng (10^15 ≈ a quadrillion đồng).
MAX_PRICE = 10**15
#: Largest quantity of one order, in licence units.
MAX_QUANTITY = 10**9
#: Largest value (price * quantity) of one limit order, in đồng: 10^18 < 2^63 - 1, so every
#: deal's value (never above the resting order's) fits a signed 64-bit integer in any language.
MAX_NOTIONAL = 10**18
#: Integers on the wire are signed 64-bit; anything outside is a schema violation, not a number
#: for the market to judge.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

#: ``extra_json_schema`` key for keywords that replace msgspec's own in the published schema.
#: msgspec renders a Meta's constraints (``pattern``, ``ge``, ``le``) over its
#: ``extra_json_schema``; where the Python validation must differ from what other languages
#: read (a ``\Z`` anchor, int64 bounds under a narrower business range), the portable keywords
#: go under this key and ``python -m schemas.generate`` puts them in place of msgspec's.
PUBLISHED = "x-techx-published"


def _python_anchored(portable: str) -> str:
    r"""A portable ``pattern`` as msgspec runs it, with Python's ``re``: ``$`` becomes ``\Z``.

    Without the multiline flag, ``$`` matches only at the very end in ECMA-262, RE2 (Go) and
    Rust; Python's also matches before a final newline, which would let ``"T1\n"`` through.
    """
    if not portable.endswith("$"):
        raise ValueError(f"a portable pattern ends with the anchor $: {portable!r}")
    return portable[:-1] + r"\Z"


#: Portable patterns (published in the JSON Schema) use no lookaround, no ``\s`` or ``\d``
#: (their meaning differs between engines) and no ``\uXXXX`` (RE2 and Go reject it): code
#: points above U+00FF are written as the characters themselves.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"

Identifier = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        pattern=_python_anchored(IDENTIFIER_PATTERN),
        description=(
            "1 to 64 characters: ASCII letters (A-Z, a-z), digits (0-9) and . _ : -, "
            "starting with a letter or digit."
        ),
        extra_json_schema={PUBLISHED: {"pattern": IDENTIFIER_PATTERN}},
    ),
]

#: What a display text may not contain: C0 controls, DEL and C1 controls, and the
#: bidirectional embeddings and overrides (U+202A-U+202E) and isolates (U+2066-U+2069).
_TEXT_FORBIDDEN = r"\x00-\x1f\x7f-\x9f" + "\u202a-\u202e\u2066-\u2069"
#: The spaces that are not "something visible": Unicode White_Space outside the controls
#: above, which is what Python's ``\S`` excluded. Listed, since ``\s`` differs by engine.
_TEXT_SPACES = r" \xa0" + "\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: Spaces, one visible character, then anything allowed: the two first classes are disjoint,
#: so even a backtracking engine matches in linear time.
DISPLAY_TEXT_PATTERN = f"^[{_TEXT_SPACES}]*[^{_TEXT_FORBIDDEN}{_TEXT_SPACES}][^{_TEXT_FORBIDDEN}]*$"

#: Free text shown to people (a technology's name): printable, no control characters, since
#: PostgreSQL cannot store NUL and downstream screens should not receive escape sequences.
DisplayText = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        pattern=_python_anchored(DISPLAY_TEXT_PATTERN),
        description=(
            "1 to 200 characters, at least one of them not a space (Unicode White_Space); "
            "no control characters (U+0000-U+001F, U+007F-U+009F) and no bidirectional "
            "embeddings, overrides or isolates (U+202A-U+202E, U+2066-U+2069)."
        ),
        extra_json_schema={PUBLISHED: {"pattern": DISPLAY_TEXT_PATTERN}},
    ),
]

# Business integers: msgspec refuses what no signed 64-bit integer holds (a schema violation),
# the market judges the rest; the schema publishes the business range.
Price = Annotated[
    int,
    Meta(
        ge=INT64_MIN,
        le=INT64_MAX,
        description="Whole Vietnamese đồng, a positive multiple of the technology's tick.",
        extra_json_schema={PUBLISHED: {"minimum": 1, "maximum": MAX_PRICE}},
    ),
]
Quantity = Annotated[
    int,
    Meta(
        ge=INT64_MIN,
        le=INT64_MAX,
        description="Licence units, a positive multiple of the technology's lot.",
        extra_json_schema={PUBLISHED: {"minimum": 1, "maximum": MAX_QUANTITY}},
    ),
]
TickSize = Annotated[
    int,
    Meta(
        ge=INT64_MIN,
        le=INT64_MAX,
        description=(
            "The technology's price step, in whole Vietnamese đồng: every price and the "
            "reserve price must be a multiple of it."
        ),
        extra_json_schema={PUBLISHED: {"minimum": 1, "maximum": MAX_PRICE}},
    ),
]
LotSize = Annotated[
    int,
    Meta(
        ge=INT64_MIN,
        le=INT64_MAX,
        description=(
            "The technology's quantity step, in licence units: every quantity must be a "
            "multiple of it."
        ),
        extra_json_schema={PUBLISHED: {"minimum": 1, "maximum": MAX_QUANTITY}},
    ),
]
SideText = Annotated[
    str,
    Meta(description="bid (buy) or offer (sell).", extra_json_schema={"enum": ["bid", "offer"]}),
]
OrderTypeText = Annotated[
    str,
    Meta(
        description="limit rests what it cannot fill; market never rests.",
        extra_json_schema={"enum": ["limit", "market"]},
    ),
]
MechanismText = Annotated[
    str,
    Meta(
        description=(
            "How the technology trades: continuous (a price-time book), call (periodic "
            "uniform-price auctions), english (open ascending), sealed_first / sealed_second "
            "(confidential bids, first or second price), dutch (descending clock)."
        ),
        extra_json_schema={
            "enum": ["continuous", "call", "english", "sealed_first", "sealed_second", "dutch"]
        },
    ),
]
TimeInForceText = Annotated[
    str,
    Meta(
        description=(
            "gtc rests until cancelled; ioc fills what it can now and cancels the rest; fok "
            "fills completely now or not at all; gtd rests until expires_at_ms (log time)."
        ),
        extra_json_schema={"enum": ["gtc", "ioc", "fok", "gtd"]},
    ),
]
RoleText = Annotated[
    str,
    Meta(
        description=(
            "seller lists technologies and offers; buyer bids; broker acts for the "
            "participants named in acts_for; operator runs the exchange (registers, suspends, "
            "halts, cancels for others) and does not trade."
        ),
        extra_json_schema={"enum": ["seller", "buyer", "broker", "operator"]},
    ),
]
AccessModeText = Annotated[
    str,
    Meta(
        description=(
            "open: anyone may trade as any id it writes (a sandbox); members_only: only "
            "registered, active participants act, each within its roles."
        ),
        extra_json_schema={"enum": ["open", "members_only"]},
    ),
]
ListingActionText = Annotated[
    str,
    Meta(
        description=(
            "halt stops trading until resume; close ends trading now (an auction is decided "
            "at once); withdraw takes the listing back before its first order or bid."
        ),
        extra_json_schema={"enum": ["halt", "resume", "close", "withdraw"]},
    ),
]
#: A time on the broker's clock (LogAppendTime of the command records), ms since the epoch.
LogTimeMs = Annotated[
    int,
    Meta(
        ge=0,
        le=INT64_MAX,
        description="Milliseconds since the epoch on the broker's clock (log time).",
    ),
]
#: A duration on the broker's clock, in milliseconds.
DurationMs = Annotated[
    int, Meta(ge=INT64_MIN, le=INT64_MAX, description="A duration in milliseconds.")
]
#: Broker timestamp (LogAppendTime) of the command that caused the event, in ms since epoch.
TimestampMs = Annotated[int, Meta(ge=0)]
#: Position of an event in its technology's event stream: contiguous from 1, for dedupe and gaps.
Sequence = Annotated[int, Meta(ge=0)]
#: Offset of the command that caused an event, on the command partition whose number the
#: event's own partition has: with that partition, the unique key of a ``seq`` 0 event.
SourceOffset = Annotated[
    int,
    Meta(
        ge=0,
        description="Offset of the causing command on its command partition (same number as "
        "this event's partition).",
    ),
]


class Side(StrEnum):
    BID = "bid"
    OFFER = "offer"


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class Mechanism(StrEnum):
    CONTINUOUS = "continuous"
    CALL = "call"
    ENGLISH = "english"
    SEALED_FIRST = "sealed_first"
    SEALED_SECOND = "sealed_second"
    DUTCH = "dutch"


class TimeInForce(StrEnum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    GTD = "gtd"


class ListingState(StrEnum):
    """Where a listing is in its life: open -> halted <-> open -> closed, or withdrawn."""

    OPEN = "open"
    HALTED = "halted"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"


class AuctionOutcome(StrEnum):
    SOLD = "sold"
    UNSOLD = "unsold"


class Role(StrEnum):
    SELLER = "seller"
    BUYER = "buyer"
    BROKER = "broker"
    OPERATOR = "operator"


class AccessMode(StrEnum):
    OPEN = "open"
    MEMBERS_ONLY = "members_only"


class ParticipantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class RejectReason(StrEnum):
    """Why the market refused a well-formed command; stable codes front-ends can switch on."""

    UNKNOWN_TECHNOLOGY = "unknown_technology"
    TECHNOLOGY_ALREADY_LISTED = "technology_already_listed"
    UNSUPPORTED_MECHANISM = "unsupported_mechanism"
    INVALID_TICK_SIZE = "invalid_tick_size"
    INVALID_LOT_SIZE = "invalid_lot_size"
    INVALID_RESERVE_PRICE = "invalid_reserve_price"
    UNKNOWN_SIDE = "unknown_side"
    UNKNOWN_ORDER_TYPE = "unknown_order_type"
    PRICE_REQUIRED = "price_required"
    PRICE_NOT_ALLOWED = "price_not_allowed"
    PRICE_NOT_POSITIVE = "price_not_positive"
    PRICE_TOO_HIGH = "price_too_high"
    PRICE_OFF_TICK = "price_off_tick"
    PRICE_BELOW_RESERVE = "price_below_reserve"
    QUANTITY_NOT_POSITIVE = "quantity_not_positive"
    QUANTITY_TOO_LARGE = "quantity_too_large"
    QUANTITY_OFF_LOT = "quantity_off_lot"
    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    UNKNOWN_ORDER = "unknown_order"
    #: price * quantity above MAX_NOTIONAL: keeps every deal's value inside a signed 64-bit int.
    NOTIONAL_TOO_LARGE = "notional_too_large"
    #: A listing parameter is missing, out of range or does not fit the mechanism.
    INVALID_LISTING = "invalid_listing"
    #: The technology is halted: no order, amend or bid until it is resumed.
    TECHNOLOGY_HALTED = "technology_halted"
    #: The technology is closed or withdrawn: it takes no more orders or bids.
    TECHNOLOGY_CLOSED = "technology_closed"
    #: Only the seller (the listing's participant) or an operator may manage a listing.
    NOT_PERMITTED = "not_permitted"
    #: The listing action does not apply in its current state (resume an open listing...).
    INVALID_LISTING_ACTION = "invalid_listing_action"
    #: The listing had orders or bids already: it can be closed, not withdrawn.
    LISTING_HAS_ORDERS = "listing_has_orders"
    UNKNOWN_TIME_IN_FORCE = "unknown_time_in_force"
    #: A gtd order needs expires_at_ms in the future; other orders take none.
    INVALID_EXPIRY = "invalid_expiry"
    #: A post-only order would have traded on arrival.
    POST_ONLY_WOULD_TRADE = "post_only_would_trade"
    #: The mechanism does not take this command or option (amend in an auction...).
    NOT_SUPPORTED_BY_MECHANISM = "not_supported_by_mechanism"
    #: An auction bid does not beat the current high bid by the minimum increment.
    BID_TOO_LOW = "bid_too_low"
    #: The seller (or the seller's participant) may not bid in its own auction.
    SELLER_MAY_NOT_BID = "seller_may_not_bid"
    #: Auction bids cannot be withdrawn (english), or the order is not amendable.
    CANCEL_NOT_ALLOWED = "cancel_not_allowed"
    #: The auction has not started, or has ended.
    AUCTION_NOT_RUNNING = "auction_not_running"
    #: An amend that changes nothing.
    AMEND_CHANGES_NOTHING = "amend_changes_nothing"
    #: Members only: the acting or owning participant is not registered.
    PARTICIPANT_NOT_REGISTERED = "participant_not_registered"
    #: Members only: the acting or owning participant is suspended.
    PARTICIPANT_SUSPENDED = "participant_suspended"
    #: Members only: the participant's roles do not include what the command needs (a bid
    #: needs buyer, an offer or a listing needs seller).
    ROLE_NOT_PERMITTED = "role_not_permitted"
    #: ``submitted_by`` acts for ``participant_id`` without being its broker or an operator.
    NOT_ACTING_FOR = "not_acting_for"
    #: Only an operator may register, suspend or reinstate participants or set access.
    OPERATOR_ONLY = "operator_only"
    #: A role that does not exist, a broker without acts_for, or acts_for without broker.
    INVALID_REGISTRATION = "invalid_registration"
    #: Suspending a participant that is not registered, or reinstating an active one.
    INVALID_STATUS_CHANGE = "invalid_status_change"


class DeadLetterReason(StrEnum):
    """Why a record never became a command: the ``techx.dlq.reason`` header, a stable code.

    The human detail travels beside it in ``techx.dlq.detail``. Listed in the order the
    engine checks them: the first that applies is the one given.
    """

    #: The record has no value (a tombstone).
    MISSING_VALUE = "missing_value"
    #: The value is longer than MAX_COMMAND_BYTES (16 KiB).
    TOO_LARGE = "too_large"
    #: Arrays or objects nested deeper than MAX_NESTING.
    TOO_DEEP = "too_deep"
    #: The bytes are not UTF-8.
    INVALID_UTF8 = "invalid_utf8"
    #: Not one JSON value (truncated, trailing bytes, bad tokens).
    MALFORMED_JSON = "malformed_json"
    #: ``type`` is missing or names no command.
    UNKNOWN_COMMAND_TYPE = "unknown_command_type"
    #: JSON of a known command, but a field is missing, unknown, of the wrong type or form.
    SCHEMA_VIOLATION = "schema_violation"
    #: An object names the same field twice (JSON parsers disagree on which one wins).
    DUPLICATE_KEY = "duplicate_key"
    #: The record's key is not the command's technology_id.
    KEY_MISMATCH = "key_mismatch"
    #: The technology belongs to another partition (murmur2 of the key).
    WRONG_PARTITION = "wrong_partition"
    #: The decoder failed in a way none of the above names (defence in depth; report it).
    UNDECODABLE = "undecodable"


class CancelReason(StrEnum):
    """Why an accepted order left the book without filling completely."""

    CANCELLED_BY_PARTICIPANT = "cancelled_by_participant"
    MARKET_ORDER_UNFILLED = "market_order_unfilled"
    #: The participant's own incoming order would have traded with it (no wash trades).
    SELF_TRADE_PREVENTED = "self_trade_prevented"
    #: An immediate-or-cancel order's rest, cancelled on arrival.
    IMMEDIATE_OR_CANCEL = "immediate_or_cancel"
    #: A fill-or-kill order that could not fill completely on arrival: nothing traded.
    FILL_OR_KILL = "fill_or_kill"
    #: A good-till-date order reached its expiry time (log time).
    EXPIRED = "expired"
    #: The listing closed or was withdrawn while the order rested, or the auction ended
    #: without it winning.
    TECHNOLOGY_CLOSED = "technology_closed"
    #: A sealed bid replaced by the same participant's newer bid.
    REPLACED = "replaced"
