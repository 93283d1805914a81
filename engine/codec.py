"""Bytes on the wire to structs and back: one decoder and one encoder per process."""

from __future__ import annotations

import msgspec

from engine.errors import DecodeError
from schemas.commands import Command
from schemas.events import Event

_command_decoder: msgspec.json.Decoder[Command] = msgspec.json.Decoder(Command)
_event_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()

#: Longest command accepted, in bytes; anything larger is dead-lettered unread.
MAX_COMMAND_BYTES = 16 * 1024


def decode_command(raw: bytes | None) -> Command:
    """Decode one command record; a refusal names what is wrong so the dead letter says it."""
    if raw is None:
        raise DecodeError("record has no value (tombstone)")
    if len(raw) > MAX_COMMAND_BYTES:
        raise DecodeError(f"record is {len(raw)} bytes, above the {MAX_COMMAND_BYTES} limit")
    try:
        return _command_decoder.decode(raw)
    except msgspec.ValidationError as e:
        raise DecodeError(f"invalid command: {e}") from e
    except msgspec.DecodeError as e:
        raise DecodeError(f"not valid JSON: {e}") from e
    except UnicodeDecodeError as e:
        raise DecodeError(f"not valid UTF-8: {e.reason} at byte {e.start}") from e


def encode(message: Event | Command) -> bytes:
    return _encoder.encode(message)


def decode_event(raw: bytes) -> Event:
    return _event_decoder.decode(raw)
