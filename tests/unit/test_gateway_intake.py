"""From an HTTP body to Kafka records: the engine's contract, stamped and routed."""

from __future__ import annotations

import random

import msgspec
import pytest

from engine.core.batch import DeadLetter, LogRecord, PartitionProcessor
from engine.core.codec import MAX_COMMAND_BYTES, decode_command
from engine.core.partitioning import partition_for
from engine.errors import DecodeError
from engine.gateway.errors import BadCommandError, PayloadTooLargeError
from engine.gateway.intake import COMMAND_NOT_ACCEPTED, Submission, prepare, with_participant
from schemas.commands import CancelOrder, Command, PlaceOrder, RegisterParticipant, SetAccessMode
from tests.fuzz.generators import CommandFuzzer

PARTITIONS = 4


def _body(**fields: object) -> bytes:
    return msgspec.json.encode(fields)


def _bid(**extra: object) -> bytes:
    return _body(
        type="place_order",
        technology_id="HUST-AI-0007",
        client_order_id="b-1",
        side="bid",
        quantity=2,
        price=5000,
        **extra,
    )


def test_a_command_without_participant_id_is_the_authenticated_participants() -> None:
    """participant_id left out: the key's participant, and no submitted_by (acting for self)."""
    submission = prepare(_bid(), "buyer-05", PARTITIONS)
    assert isinstance(submission.command, PlaceOrder)
    assert submission.command.participant_id == "buyer-05"
    assert submission.command.submitted_by is None
    assert b"submitted_by" in submission.value, "the record is the whole re-encoded command"
    assert decode_command(submission.value) == submission.command


def test_writing_another_participants_id_is_stamped_with_who_sent_it() -> None:
    """submitted_by is the authenticated participant whatever the body said: the engine then
    decides whether it may act for participant_id."""
    for claimed in (None, "buyer-05", "exchange-ops"):
        extra = {} if claimed is None else {"submitted_by": claimed}
        submission = prepare(_bid(participant_id="buyer-05", **extra), "mallory", PARTITIONS)
        assert isinstance(submission.command, PlaceOrder)
        assert submission.command.participant_id == "buyer-05"
        assert submission.command.submitted_by == "mallory"


def test_a_submitted_by_for_oneself_is_dropped() -> None:
    """A client naming itself or anyone else as submitter while acting for itself gets none:
    the contract's meaning of 'sent by the participant itself', and the engine's fast path."""
    for claimed in ("buyer-05", "exchange-ops"):
        submission = prepare(_bid(submitted_by=claimed), "buyer-05", PARTITIONS)
        assert isinstance(submission.command, PlaceOrder)
        assert submission.command.submitted_by is None


def test_a_technology_command_goes_to_its_murmur2_partition_under_its_id() -> None:
    """key = technology_id, and the partition the engine checks: no dead letter possible."""
    for technology_id in ("HUST-AI-0007", "HCMUT-BATT-0001", "x", "Z:9"):
        body = _body(type="cancel_order", technology_id=technology_id, client_order_id="c")
        submission = prepare(body, "buyer-05", PARTITIONS)
        assert isinstance(submission.command, CancelOrder)
        assert submission.key == technology_id.encode()
        assert submission.partitions == (partition_for(technology_id, PARTITIONS),)


def test_membership_commands_go_to_every_partition_under_the_members_id() -> None:
    """Exchange-wide commands: one record per partition, keyed by the member (or, for the
    access mode, the sender)."""
    register = _body(type="register_participant", member_id="uni-a", roles=["seller"])
    submission = prepare(register, "exchange-ops", PARTITIONS)
    assert isinstance(submission.command, RegisterParticipant)
    assert submission.partitions == (0, 1, 2, 3)
    assert submission.key == b"uni-a"
    assert submission.command.participant_id == "exchange-ops"
    mode = prepare(_body(type="set_access_mode", mode="members_only"), "ops-2", 8)
    assert isinstance(mode.command, SetAccessMode)
    assert mode.partitions == tuple(range(8))
    assert mode.key == b"ops-2"


def test_the_records_are_what_the_engine_accepts_on_their_partition() -> None:
    """Each prepared record, put through the engine's own batch path on the partition it goes
    to, is applied as the same command: never a dead letter."""
    bodies = [
        _bid(),
        _bid(participant_id="buyer-06"),
        _body(type="register_participant", member_id="b-1", roles=["broker"], acts_for=["x"]),
        _body(type="list_technology", technology_id="T-1", name="Tech", tick_size=1, lot_size=1),
        _body(type="manage_listing", technology_id="T-1", action="halt"),
        _body(type="amend_order", technology_id="T-1", client_order_id="a", quantity=3),
    ]
    for body in bodies:
        submission = prepare(body, "buyer-05", PARTITIONS)
        for partition in submission.partitions:
            processor = PartitionProcessor(partition, PARTITIONS)
            outcome = processor.apply(
                LogRecord(7, 1_700_000_000_000, submission.key, submission.value)
            )
            assert not isinstance(outcome, DeadLetter), (body, outcome)
            assert outcome[0] == submission.command


def test_a_tick_is_not_a_front_end_command() -> None:
    """The exchange's clock is refused with its own code."""
    with pytest.raises(BadCommandError) as refused:
        prepare(b'{"type":"tick"}', "buyer-05", PARTITIONS)
    assert refused.value.code == COMMAND_NOT_ACCEPTED
    assert refused.value.status == 400


def test_a_body_over_16_kib_is_413_before_decoding() -> None:
    """Too large is 413 (too_large), whatever else is wrong with it."""
    with pytest.raises(PayloadTooLargeError) as refused:
        prepare(b"{" * (MAX_COMMAND_BYTES + 1), "buyer-05", PARTITIONS)
    assert (refused.value.status, refused.value.code) == (413, "too_large")


def _registration_of_size(size: int, **fields: object) -> bytes:
    """A compact register_participant of exactly ``size`` bytes: acts_for fills it."""
    for count in range(300):
        for last in range(1, 65):
            acts_for = ["b" * 64] * count + ["c" * last]
            body = _body(
                type="register_participant",
                member_id="br-1",
                roles=["broker"],
                acts_for=acts_for,
                **fields,
            )
            if len(body) == size:
                return body
    raise AssertionError(f"no registration of {size} bytes")


@pytest.mark.parametrize(
    "fields",
    [{}, {"participant_id": "uni-a"}],
    ids=["participant_id inserted", "submitted_by stamped"],
)
def test_a_command_that_stamping_would_push_over_16_kib_is_413(fields: dict[str, str]) -> None:
    """The record, not only the body, must fit the engine's limit: a body just under it that
    gains participant_id or submitted_by is refused with 413, not dead-lettered later."""
    body = _registration_of_size(MAX_COMMAND_BYTES - 10, **fields)
    with pytest.raises(PayloadTooLargeError):
        prepare(body, "exchange-ops", PARTITIONS)
    smaller = _registration_of_size(MAX_COMMAND_BYTES - 100, **fields)
    assert len(prepare(smaller, "exchange-ops", PARTITIONS).value) <= MAX_COMMAND_BYTES


def test_participant_id_is_inserted_as_the_first_field() -> None:
    """Leading whitespace is kept; the rest of the body is untouched byte for byte."""
    assert with_participant(b' \n{"type":"x"}', "p-1") == b' \n{"participant_id":"p-1","type":"x"}'


def test_a_duplicate_field_is_still_caught_after_inserting_participant_id() -> None:
    """Defaulting participant_id never hides a repeated field."""
    body = (
        b'{"type":"cancel_order","technology_id":"T1","client_order_id":"a","client_order_id":"b"}'
    )
    with pytest.raises(BadCommandError) as refused:
        prepare(body, "buyer-05", PARTITIONS)
    assert refused.value.code == "duplicate_key"


def _gateway_verdict(value: bytes) -> str | Submission:
    """The gateway's submission, or the code of its refusal."""
    try:
        return prepare(value, "gw-user", PARTITIONS)
    except (BadCommandError, PayloadTooLargeError) as e:
        return e.code


def _engine_verdict(value: bytes) -> str | Command:
    """The engine's decoding of the same body (participant_id defaulted as the gateway
    does), or its dead-letter code."""
    try:
        return decode_command(value)
    except DecodeError as e:
        if not e.detail.endswith("missing required field `participant_id`"):
            return e.reason.value
    try:
        return decode_command(with_participant(value, "gw-user"))
    except DecodeError as e:
        return e.reason.value


def test_hostile_bodies_get_the_engines_own_dead_letter_code() -> None:
    """Over thousands of fuzzed records: every body the gateway refuses as undecodable is one
    the engine's decoder refuses with the same code, and every body it takes decodes in the
    engine to the command it wrote."""
    fuzzer = CommandFuzzer(random.Random(20261127), partition=1, partition_count=PARTITIONS)
    refused = taken = 0
    for _ in range(6000):
        value = fuzzer.next().value
        if value is None:
            continue
        gateway, engine = _gateway_verdict(value), _engine_verdict(value)
        if isinstance(gateway, Submission):
            taken += 1
            assert decode_command(gateway.value) == gateway.command
            assert not isinstance(engine, str), value[:200]
        elif gateway != COMMAND_NOT_ACCEPTED:
            refused += 1
            assert engine == gateway, value[:200]
    assert refused > 1000
    assert taken > 1000
