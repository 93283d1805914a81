"""Bad command records: a specific DecodeError, a dead letter, and nothing else lost."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from engine.core.batch import (
    DLQ_DETAIL_HEADER,
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_REASON_HEADER,
    DLQ_TRUNCATED_HEADER,
    CommandRecord,
    KafkaMessage,
    LogRecord,
    PartitionProcessor,
)
from engine.core.codec import MAX_COMMAND_BYTES, decode_command, decode_event, encode
from engine.core.market import Market
from engine.core.partitioning import partition_for
from engine.errors import DecodeError
from schemas.commands import CancelOrder, ListTechnology, PlaceOrder
from schemas.common import DeadLetterReason
from schemas.events import Deal, Event, OrderAccepted, OrderDone, TechnologyListed

PARTITION = 3
TIMESTAMP = 1_700_000_000_000


def _json(**fields: Any) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode()


_DROP = object()  # a field value meaning "leave the field out"


def place(**overrides: Any) -> bytes:
    fields: dict[str, Any] = {
        "type": "place_order",
        "technology_id": "T1",
        "participant_id": "p1",
        "client_order_id": "c1",
        "side": "bid",
        "quantity": 10,
        "price": 100,
    }
    fields.update(overrides)
    return _json(**{k: v for k, v in fields.items() if v is not _DROP})


LISTING = _json(
    type="list_technology",
    technology_id="T1",
    participant_id="admin",
    name="Coating",
    tick_size=10,
    lot_size=5,
)


def _oversized() -> bytes:
    raw = place()
    return raw + b" " * (MAX_COMMAND_BYTES + 1 - len(raw))


#: (case id, reason code, record value, a fragment the detail must contain)
BAD_VALUES: list[tuple[str, DeadLetterReason, bytes | None, str]] = [
    (
        "not_json",
        DeadLetterReason.MALFORMED_JSON,
        b"place_order T1 bid 10@100",
        "not valid JSON: JSON is malformed",
    ),
    (
        "empty_value",
        DeadLetterReason.MALFORMED_JSON,
        b"",
        "not valid JSON: Input data was truncated",
    ),
    ("truncated_json", DeadLetterReason.MALFORMED_JSON, place()[:-5], "not valid JSON"),
    (
        "trailing_garbage",
        DeadLetterReason.MALFORMED_JSON,
        place() + b"}",
        "not valid JSON: JSON is malformed: trailing characters",
    ),
    (
        "json_array",
        DeadLetterReason.SCHEMA_VIOLATION,
        b'["place_order", "T1"]',
        "invalid command: Expected `object`, got `array`",
    ),
    (
        "json_string",
        DeadLetterReason.SCHEMA_VIOLATION,
        b'"place_order"',
        "invalid command: Expected `object`, got `str`",
    ),
    (
        "no_type",
        DeadLetterReason.UNKNOWN_COMMAND_TYPE,
        place(type=_DROP),
        "Object missing required field `type`",
    ),
    (
        "unknown_type",
        DeadLetterReason.UNKNOWN_COMMAND_TYPE,
        place(type="modify_order"),
        "Invalid value 'modify_order' - at `$.type`",
    ),
    (
        "missing_field",
        DeadLetterReason.SCHEMA_VIOLATION,
        place(side=_DROP),
        "Object missing required field `side`",
    ),
    (
        "price_float",
        DeadLetterReason.SCHEMA_VIOLATION,
        place(price=100.5),
        "Expected `int | null`, got `float` - at `$.price`",
    ),
    (
        "price_string",
        DeadLetterReason.SCHEMA_VIOLATION,
        place(price="100.5"),
        "Expected `int | null`, got `str` - at `$.price`",
    ),
    (
        "quantity_string",
        DeadLetterReason.SCHEMA_VIOLATION,
        place(quantity="10"),
        "Expected `int`, got `str` - at `$.quantity`",
    ),
    (
        "quantity_bool",
        DeadLetterReason.SCHEMA_VIOLATION,
        place(quantity=True),
        "Expected `int`, got `bool` - at `$.quantity`",
    ),
    (
        "side_number",
        DeadLetterReason.SCHEMA_VIOLATION,
        place(side=1),
        "Expected `str`, got `int` - at `$.side`",
    ),
    (
        "unknown_field",
        DeadLetterReason.SCHEMA_VIOLATION,
        place(colour="red"),
        "Object contains unknown field `colour`",
    ),
    (
        "empty_identifier",
        DeadLetterReason.SCHEMA_VIOLATION,
        place(client_order_id=""),
        "Expected `str` of length >= 1 - at `$.client_order_id`",
    ),
    (
        "identifier_too_long",
        DeadLetterReason.SCHEMA_VIOLATION,
        place(participant_id="p" * 65),
        "Expected `str` of length <= 64 - at `$.participant_id`",
    ),
    (
        "identifier_bad_character",
        DeadLetterReason.SCHEMA_VIOLATION,
        place(client_order_id="order 1"),
        "Expected `str` matching regex",
    ),
    (
        "identifier_non_ascii",
        DeadLetterReason.SCHEMA_VIOLATION,
        place(participant_id="người-mua"),
        "at `$.participant_id`",
    ),
    ("tombstone", DeadLetterReason.MISSING_VALUE, None, "record has no value (tombstone)"),
    (
        "oversized",
        DeadLetterReason.TOO_LARGE,
        _oversized(),
        f"record is {MAX_COMMAND_BYTES + 1} bytes, above the {MAX_COMMAND_BYTES} limit",
    ),
    (
        "nested_before_type",
        DeadLetterReason.TOO_DEEP,
        b'{"x":' + b"[" * 1000 + b"]" * 1000 + b',"type":"cancel_order"}',
        "nest 1001 deep, above the limit of 32",
    ),
    (
        "nested_in_unknown_field",
        DeadLetterReason.TOO_DEEP,
        place(x=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]),
        "nest 34 deep",
    ),
    (
        "shallow_nesting_is_a_schema_violation",
        DeadLetterReason.SCHEMA_VIOLATION,
        place(x=[[[]]]),
        "Object contains unknown field `x`",
    ),
    (
        "duplicate_key",
        DeadLetterReason.DUPLICATE_KEY,
        place()[:-1] + b', "participant_id": "p2"}',
        'field "participant_id" appears more than once',
    ),
    (
        "duplicate_key_escaped",
        DeadLetterReason.DUPLICATE_KEY,
        place()[:-1] + b', "participant\\u005fid": "p2"}',
        'field "participant_id" appears more than once',
    ),
    (
        "duplicate_key_spaced_before_colon",
        DeadLetterReason.DUPLICATE_KEY,
        place()[:-1] + b', "side"\t: "offer"}',
        'field "side" appears more than once',
    ),
    (
        "duplicate_key_among_values_that_start_with_a_colon",
        DeadLetterReason.DUPLICATE_KEY,
        place(side=":bid")[:-1] + b',"side":"offer"}',
        'field "side" appears more than once',
    ),
    (
        "invalid_utf8",
        DeadLetterReason.INVALID_UTF8,
        b'{"type":"place_order","side":"\xff"}',
        "not valid UTF-8: invalid start byte at byte 30",
    ),
    (
        "utf8_bom",
        DeadLetterReason.MALFORMED_JSON,
        b"\xef\xbb\xbf" + place(),
        "not valid JSON",
    ),
    (
        "quantity_beyond_int64",
        DeadLetterReason.SCHEMA_VIOLATION,
        place(quantity=2**63),
        "at `$.quantity`",
    ),
    (
        "price_of_5000_digits",
        DeadLetterReason.SCHEMA_VIOLATION,
        place()[:-1] + b', "price": 1' + b"0" * 5000 + b"}",
        "at `$.price`",
    ),
]


@pytest.mark.parametrize(
    ("code", "value", "fragment"),
    [case[1:] for case in BAD_VALUES],
    ids=[c[0] for c in BAD_VALUES],
)
def test_decode_command_refuses_with_a_specific_reason(
    code: DeadLetterReason, value: bytes | None, fragment: str
) -> None:
    """Each kind of bad input raises DecodeError with its stable code and a precise detail."""
    with pytest.raises(DecodeError) as caught:
        decode_command(value)
    assert caught.value.reason is code
    message = str(caught.value)
    assert fragment in message
    assert "b'" not in message, "details quote input as text, not as Python reprs"
    assert not caught.value.retriable


def test_decode_command_accepts_a_record_of_exactly_the_size_limit() -> None:
    """The size limit is inclusive: padding a valid command to the limit still decodes."""
    raw = place()
    padded = raw + b" " * (MAX_COMMAND_BYTES - len(raw))
    assert len(padded) == MAX_COMMAND_BYTES
    assert decode_command(padded) == decode_command(raw)
    with pytest.raises(DecodeError, match="above the"):
        decode_command(padded + b" ")


@pytest.mark.parametrize(
    "raw",
    [
        place(name=_DROP, side=":bid", order_type=":x"),  # values that look like key ends
        b'{ "type" : "cancel_order" , "technology_id" : "T1" , "participant_id" : "p1" ,'
        b' "client_order_id" : "c\\u0031" }',
        b'{"type":"cancel_order","technology_id":"T1","participant_id":"p1",'
        b'"client_order_id":"c1"}',
    ],
    ids=["colon_values", "spaced_and_escaped", "compact"],
)
def test_records_without_repeated_keys_are_not_mistaken_for_duplicates(raw: bytes) -> None:
    """Every layout of a command without repeated keys decodes, whichever path checks it."""
    command = decode_command(raw)
    assert isinstance(command, PlaceOrder | CancelOrder)
    assert command.technology_id == "T1"


def test_decode_command_fills_defaults_of_a_minimal_order() -> None:
    """The control case: a well-formed order decodes with limit as the default type."""
    command = decode_command(place(price=_DROP))
    assert command == PlaceOrder("T1", "p1", "c1", "bid", 10, "limit", None)


def test_business_values_are_left_to_the_market_not_the_decoder() -> None:
    """Out-of-range sides and prices decode: the market answers them with a reason code."""
    command = decode_command(place(side="buy", price=-5, quantity=0))
    assert isinstance(command, PlaceOrder)
    assert (command.side, command.price, command.quantity) == ("buy", -5, 0)


def records(
    *values: bytes | None, key: bytes | None = b"T1", first: int = 100
) -> list[CommandRecord]:
    return [LogRecord(first + i, TIMESTAMP + i, key, v) for i, v in enumerate(values)]


def decoded(messages: list[KafkaMessage]) -> list[Event]:
    """The events of output messages, in publication order."""
    return [decode_event(_value(message)) for message in messages]


def _value(message: KafkaMessage) -> bytes:
    value = message[1]
    assert value is not None
    return value


def _seq(value: bytes | None) -> int:
    assert value is not None
    return decode_event(value).seq


@pytest.mark.parametrize(
    ("code", "value", "fragment"),
    [case[1:] for case in BAD_VALUES],
    ids=[c[0] for c in BAD_VALUES],
)
def test_bad_record_becomes_a_dead_letter_and_the_batch_goes_on(
    code: DeadLetterReason, value: bytes | None, fragment: str
) -> None:
    """A bad record is dead-lettered with partition, offset and bytes; its neighbours trade."""
    processor = PartitionProcessor(PARTITION)
    offer = place(participant_id="p2", client_order_id="s1", side="offer", quantity=10)
    batch = processor.process(records(LISTING, offer, value, place()))

    assert (batch.partition, batch.first_offset, batch.next_offset) == (PARTITION, 100, 104)
    assert batch.commands == 4
    (dead,) = batch.dead_letters
    offset, reason, detail, key, raw, timestamp = msgspec.structs.astuple(dead)
    assert (offset, key, raw, timestamp) == (102, b"T1", value, TIMESTAMP + 2)
    assert reason is code
    assert isinstance(detail, str)
    assert fragment in detail

    ((dlq_key, dlq_value, headers),) = batch.dead_letters_out
    expected_headers = {
        DLQ_REASON_HEADER: code.value.encode(),
        DLQ_DETAIL_HEADER: detail.encode(),
        DLQ_PARTITION_HEADER: str(PARTITION).encode(),
        DLQ_OFFSET_HEADER: b"102",
    }
    if value is not None and len(value) > MAX_COMMAND_BYTES:
        # Cut so it fits the dead-letter topic; PostgreSQL keeps the whole record.
        expected_headers[DLQ_TRUNCATED_HEADER] = str(len(value)).encode()
        value = value[:MAX_COMMAND_BYTES]
    assert (dlq_key, dlq_value) == (b"T1", value)
    assert dict(headers) == expected_headers

    # The record after the bad one still crossed the resting offer: nothing was lost.
    events = decoded(batch.executions_out)
    assert [type(e) for e in events] == [
        TechnologyListed,
        OrderAccepted,
        OrderAccepted,
        OrderDone,
        OrderDone,
    ]
    (deal,) = decoded(batch.deals_out)
    assert isinstance(deal, Deal)
    assert (deal.buyer_id, deal.seller_id, deal.quantity, deal.price) == ("p1", "p2", 10, 100)
    # The dead letter took no sequence number: the stream stays contiguous.
    assert sorted([e.seq for e in events] + [deal.seq]) == [1, 2, 3, 4, 5, 6]
    # One outcome row per applied command, holding all its events (the deal too), in order.
    assert [outcome.offset for outcome in batch.outcomes] == [100, 101, 103]
    crossing = json.loads(batch.outcomes[2].events_json)
    assert [e["type"] for e in crossing] == ["order_accepted", "deal", "order_done", "order_done"]
    assert batch.deals[0].source_offset == 103


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        (b"T2", 'record key "T2" must equal technology_id "T1"'),
        (None, 'record key (none) must equal technology_id "T1"'),
        (b"t1", 'record key "t1" must equal technology_id "T1"'),
        (b"T1 ", 'record key "T1 " must equal technology_id "T1"'),
        (b"\xff", 'record key "\\xff" must equal technology_id "T1"'),
    ],
    ids=["other_technology", "no_key", "case_differs", "trailing_space", "not_utf8"],
)
def test_key_that_differs_from_technology_id_is_a_dead_letter(
    key: bytes | None, fragment: str
) -> None:
    """The key routes a technology to its partition, so a mismatching key is refused."""
    processor = PartitionProcessor(PARTITION)
    batch = processor.process(
        [
            LogRecord(7, TIMESTAMP, b"T1", LISTING),
            LogRecord(8, TIMESTAMP, key, place()),
            LogRecord(9, TIMESTAMP, b"T1", place(client_order_id="c2")),
        ]
    )

    (dead,) = batch.dead_letters
    offset, reason, detail, row_key, raw, _ = msgspec.structs.astuple(dead)
    assert (offset, row_key, raw) == (8, key, place())
    assert reason == DeadLetterReason.KEY_MISMATCH
    assert fragment in str(detail)
    assert "the key routes a technology to one partition" in str(detail)
    # The mismatching order never reached the market; the next one did.
    accepted = decoded(batch.executions_out)
    assert [type(e) for e in accepted] == [TechnologyListed, OrderAccepted]
    assert isinstance(accepted[1], OrderAccepted)
    assert accepted[1].client_order_id == "c2"


def test_dead_letter_takes_precedence_over_key_check_for_undecodable_values() -> None:
    """A record that is both undecodable and mis-keyed is reported for its value."""
    processor = PartitionProcessor(PARTITION)
    batch = processor.process([LogRecord(0, TIMESTAMP, b"OTHER", b"{")])
    ((_, reason, detail, _, _, _),) = [msgspec.structs.astuple(d) for d in batch.dead_letters]
    assert reason == DeadLetterReason.MALFORMED_JSON
    assert str(detail).startswith("not valid JSON")


def test_interleaved_bad_records_lose_nothing() -> None:
    """Events of a batch with bad records equal the events of its good records alone."""
    good = [
        LISTING,
        place(participant_id="s1", client_order_id="a", side="offer", quantity=15, price=120),
        place(participant_id="s2", client_order_id="b", side="offer", quantity=10, price=110),
        place(participant_id="b1", client_order_id="x", side="bid", quantity=20, price=120),
        place(participant_id="b2", client_order_id="y", side="bid", quantity=5, price=130),
        _json(type="cancel_order", technology_id="T1", participant_id="s1", client_order_id="a"),
        place(participant_id="b3", client_order_id="z", side="bid", quantity=5, price=7),
    ]
    bad = [value for _, _, value, _ in BAD_VALUES]
    mixed: list[bytes | None] = []
    for i, value in enumerate(good):
        mixed.append(bad[(2 * i) % len(bad)])
        mixed.append(value)
        mixed.append(bad[(2 * i + 1) % len(bad)])

    batch = PartitionProcessor(PARTITION).process(records(*mixed, first=0))

    market = Market()
    expected = [
        encode(event)
        for i, value in enumerate(good)
        for event in market.apply(decode_command(value), TIMESTAMP + 3 * i + 1, 3 * i + 1)
    ]
    produced = sorted(batch.executions_out + batch.deals_out, key=lambda m: _seq(m[1]))
    assert [value for _, value, _ in produced] == expected
    assert len(batch.deals_out) == 3
    assert len(batch.dead_letters) == 2 * len(good)
    assert [dead.offset for dead in batch.dead_letters] == [
        offset for offset in range(len(mixed)) if offset % 3 != 1
    ]
    assert [dead.value for dead in batch.dead_letters] == [
        value for offset, value in enumerate(mixed) if offset % 3 != 1
    ]
    assert batch.next_offset == len(mixed)


def test_a_batch_of_only_bad_records_still_advances() -> None:
    """Dead letters alone still move the partition's next offset past them."""
    batch = PartitionProcessor(PARTITION).process(records(b"x", None, b"[]", first=41))
    assert (batch.first_offset, batch.next_offset, batch.commands) == (41, 44, 3)
    assert len(batch.dead_letters) == 3
    assert batch.executions_out == []
    assert batch.deals_out == []


def test_identifier_with_trailing_newline_is_refused() -> None:
    """An identifier is letters, digits and . _ : - only; a trailing newline is not one."""
    with pytest.raises(DecodeError, match="technology_id"):
        decode_command(place(technology_id="T1\n"))


def test_nothing_settled_contains_a_nul_character() -> None:
    """Event bodies and dead-letter details are storable in PostgreSQL text and jsonb."""
    bad_name = ListTechnology("T1", "admin", "Coating\x00", 10, 5)
    batch = PartitionProcessor(PARTITION).process(
        records(
            encode(bad_name),  # dead letter: a control character in a name
            place(type="\x00"),  # dead letter quoting a NUL
            LISTING,
            place(side="b\x00d"),  # rejected: its detail quotes the side
            first=0,
        )
    )
    assert len(batch.dead_letters) == 2
    assert len(batch.outcomes) == 2, "the listing and the rejected order were applied"
    rejected = json.loads(batch.outcomes[1].events_json)
    assert rejected[0]["reason"] == "unknown_side", "the NUL reached the market's answer"
    bodies = [outcome.events_json.decode() for outcome in batch.outcomes]
    details = [dead.detail for dead in batch.dead_letters]
    assert not any("\\u0000" in body or "\x00" in body for body in bodies)
    assert not any("\x00" in detail for detail in details)


def test_a_key_that_passed_once_does_not_pass_another_technology() -> None:
    """The processor remembers keys that passed the routing checks; the same key carrying
    another technology's command is still checked, and refused."""
    home = partition_for("T1", 8)
    processor = PartitionProcessor(home, partition_count=8)
    batch = processor.process(
        records(LISTING, place(), place(technology_id="T2", client_order_id="c2"), place())
    )
    assert [dead.reason for dead in batch.dead_letters] == [DeadLetterReason.KEY_MISMATCH]
    assert 'must equal technology_id "T2"' in batch.dead_letters[0].detail
    assert [outcome.offset for outcome in batch.outcomes] == [100, 101, 103]


def test_record_on_the_wrong_partition_is_dead_lettered() -> None:
    """A technology routed off its murmur2 partition cannot open a second book elsewhere."""
    home = partition_for("T1", 8)
    wrong = (home + 1) % 8
    stray = PartitionProcessor(wrong, partition_count=8).process(records(LISTING, place()))
    assert not stray.outcomes
    assert [dead.reason for dead in stray.dead_letters] == [DeadLetterReason.WRONG_PARTITION] * 2
    details = [dead.detail for dead in stray.dead_letters]
    assert all(f"belongs to partition {home}" in detail for detail in details)
    at_home = PartitionProcessor(home, partition_count=8).process(records(LISTING, place()))
    assert not at_home.dead_letters
    assert len(at_home.outcomes) == 2


def test_invalid_utf8_is_dead_lettered_not_a_crash() -> None:
    """Bytes that are not UTF-8 become a dead letter with a reason, like any bad JSON."""
    batch = PartitionProcessor(PARTITION).process(
        records(b'{"type":"place_order","side":"\xff"}', place())
    )
    assert len(batch.dead_letters) == 1
    assert batch.dead_letters[0].reason is DeadLetterReason.INVALID_UTF8
    assert "not valid UTF-8" in batch.dead_letters[0].detail
    assert len(batch.outcomes) == 1, "the record after it was still applied"


def test_a_huge_key_is_quoted_short_and_cut_in_the_dead_letter() -> None:
    """A key of 300 kB cannot make the dead letter too large for the broker."""
    batch = PartitionProcessor(PARTITION).process(records(place(), key=b"k" * 300_000))
    ((key, _value, headers),) = batch.dead_letters_out
    assert key is not None
    assert len(key) <= 256
    assert sum(len(v) for _, v in headers) < 1_000
    assert "(300000 bytes)" in batch.dead_letters[0].detail
