"""The per-command records a batch hands to the store: msgspec Structs, kept out of the
compiled modules (mypyc erases the annotations of classes it compiles, and msgspec reads
them), so that :mod:`engine.core.batch`, which builds them, can be compiled."""

from __future__ import annotations

import msgspec

from schemas.common import DeadLetterReason


class CommandOutcome(msgspec.Struct, frozen=True, gc=False):
    """One applied command and every event it caused, as published (a JSON array).

    A msgspec Struct: built once per command on the hot path, and its C constructor costs a
    fifth of a NamedTuple's.
    """

    offset: int
    technology_id: str
    command_type: str
    participant_id: str
    client_order_id: str
    events_json: bytes


class DeadLetterRecord(msgspec.Struct, frozen=True, gc=False):
    """A record that never became a command, whole, with why."""

    offset: int
    reason: DeadLetterReason
    #: Safe to store as text: no NUL, valid UTF-8, at most 1,024 bytes (batch's limit).
    detail: str
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
