"""From an HTTP body to the Kafka records the engine will accept: pure, no I/O.

The body is decoded by the engine's own decoder (``engine.core.codec.decode_command``), so
the gateway accepts exactly what the engine would, and refuses with the dead-letter code the
engine would have given the same bytes. Then:

- ``participant_id`` may be left out: it is the authenticated participant's;
- ``submitted_by`` is stamped with the authenticated participant whatever the client wrote,
  and left empty when that is ``participant_id`` itself (the contract's meaning of an empty
  ``submitted_by``, and the engine's fast path for orders). So nobody can act as another
  participant through the gateway: the engine refuses it (``not_acting_for``) unless the
  authenticated participant is that participant's broker or an operator;
- the record is the re-encoded command (compact, canonical), keyed and partitioned as the
  engine checks: ``key = technology_id`` on its murmur2 partition; an exchange-wide
  membership command goes to every partition under the member's (or sender's) id.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from engine.core.codec import MAX_COMMAND_BYTES, decode_command, encode
from engine.core.partitioning import partition_for
from engine.errors import DecodeError
from engine.gateway.errors import BadCommandError, PayloadTooLargeError
from schemas.commands import (
    MEMBERSHIP_COMMAND_TYPES,
    Command,
    MembershipCommand,
    SetAccessMode,
    Tick,
)
from schemas.common import DeadLetterReason

#: Code of a well-formed command front-ends may not send through the gateway.
COMMAND_NOT_ACCEPTED = "command_not_accepted"
_MISSING_PARTICIPANT = "missing required field `participant_id`"
_JSON_WHITESPACE = b" \t\n\r"


@dataclass(frozen=True, slots=True)
class Submission:
    """One command, ready to produce: the same value under the same key to each partition."""

    command: Command
    key: bytes
    value: bytes
    partitions: tuple[int, ...]


def prepare(body: bytes, participant_id: str, partitions: int) -> Submission:
    """The records for ``body`` sent by ``participant_id``, or a GatewayError saying why not."""
    if len(body) > MAX_COMMAND_BYTES:
        raise PayloadTooLargeError(
            f"the body is {len(body)} bytes; a command is at most {MAX_COMMAND_BYTES} bytes"
        )
    command = _decode(body, participant_id)
    if type(command) is Tick:
        raise BadCommandError(
            COMMAND_NOT_ACCEPTED, "tick is the exchange's clock: front-ends do not send it"
        )
    assert not isinstance(command, Tick)
    submitted_by = None if command.participant_id == participant_id else participant_id
    if command.submitted_by != submitted_by:
        command = msgspec.structs.replace(command, submitted_by=submitted_by)
    value = encode(command)
    if len(value) > MAX_COMMAND_BYTES:
        raise PayloadTooLargeError(
            f"the command is {len(value)} bytes once stamped with submitted_by; a command is "
            f"at most {MAX_COMMAND_BYTES} bytes"
        )
    if isinstance(command, MEMBERSHIP_COMMAND_TYPES):
        return Submission(command, _membership_key(command), value, tuple(range(partitions)))
    technology_id = command.technology_id
    return Submission(
        command, technology_id.encode(), value, (partition_for(technology_id, partitions),)
    )


def _decode(body: bytes, participant_id: str) -> Command:
    try:
        return decode_command(body)
    except DecodeError as e:
        if not _lacks_participant(e):
            raise _refused(e) from e
    try:
        return decode_command(with_participant(body, participant_id))
    except DecodeError as e:
        raise _refused(e) from e


def _lacks_participant(error: DecodeError) -> bool:
    return error.reason is DeadLetterReason.SCHEMA_VIOLATION and error.detail.endswith(
        _MISSING_PARTICIPANT
    )


def with_participant(body: bytes, participant_id: str) -> bytes:
    """``body`` (a JSON object with at least its ``type``, which the decoder needed to say a
    field is missing) with ``participant_id`` added as its first field."""
    start = len(body) - len(body.lstrip(_JSON_WHITESPACE)) + 1
    field = b'"participant_id":' + msgspec.json.encode(participant_id) + b","
    return body[:start] + field + body[start:]


def _refused(error: DecodeError) -> BadCommandError | PayloadTooLargeError:
    if error.reason is DeadLetterReason.TOO_LARGE:
        return PayloadTooLargeError(error.detail)
    return BadCommandError(error.reason.value, error.detail)


def _membership_key(command: MembershipCommand) -> bytes:
    """Any key is allowed on membership records; the member's id says what they are about."""
    if type(command) is SetAccessMode:
        return command.participant_id.encode()
    assert not isinstance(command, SetAccessMode)
    return command.member_id.encode()
