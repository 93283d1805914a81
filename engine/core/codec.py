"""Bytes on the wire to structs and back: one decoder and one encoder per process.

A command record comes from anyone who can write to the topic, so decoding is the one place
where hostile bytes meet the engine. Whatever goes wrong here, however deep or large the
input, comes out as a :class:`DecodeError` with a stable reason code, and the same bytes
always get the same code and detail: recovery and replay must dead-letter exactly what the
live engine did.
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate
from typing import Final

import msgspec

from engine.errors import DecodeError
from engine.native_codec import duplicate_key as _native_duplicate_key
from engine.native_codec import fast_decode
from schemas.commands import Command, Tick
from schemas.common import DeadLetterReason
from schemas.events import Event, MarketView

_command_decoder: msgspec.json.Decoder[Command] = msgspec.json.Decoder(Command)
_event_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
_view_decoder: msgspec.json.Decoder[MarketView] = msgspec.json.Decoder(MarketView)
_encoder = msgspec.json.Encoder()
#: Bound once: called through the encoder, the method is looked up by name at every event.
_encode_into: Final = _encoder.encode_into
_string_decoder: msgspec.json.Decoder[str] = msgspec.json.Decoder(str)

# Final, here and below: compiled, each name read per record is a C static, not a lookup in
# the module's dict.
#: The ticker's record, byte for byte (any other spelling of a tick decodes the long way).
TICK_RECORD: Final = b'{"type":"tick"}'
_TICK: Final = Tick()
#: The Rust fast path (engine.native_codec), or None where it is not built.
_fast_decode: Final = fast_decode

#: Longest command accepted, in bytes; anything larger is dead-lettered unread.
MAX_COMMAND_BYTES: Final = 16 * 1024
#: Deepest nesting of arrays and objects reported as anything but ``too_deep``. A command is
#: one flat object (depth 1), so this only decides which code a broken record gets; it is far
#: below Python's recursion limit, which would otherwise decide it by the caller's stack depth.
MAX_NESTING = 32

#: A JSON string token, and whether a colon follows it (then it is an object key). Matched
#: left to right without overlap, so a quote inside a string never starts a token.
_STRING_TOKEN = re.compile(rb'"([^"\\]*(?:\\.[^"\\]*)*)"(\s*:)?', re.DOTALL)
#: A quote followed by JSON whitespace: a layout the second fast key count does not cover.
_QUOTE_THEN_SPACE = re.compile(rb'"[ \t\n\r]')
_plain_decoder = msgspec.json.Decoder()
#: The same, for the depth scan over records that failed to decode: an unclosed string runs to
#: the end, and possessive steps never backtrack, so no input makes the scan quadratic.
_STRING_OR_UNCLOSED = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_BRACKETS_ONLY = bytes(range(256)).translate(None, b"[]{}")
_DEPTH_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def decode_command(raw: bytes | None) -> Command:
    """Decode one command record, or raise DecodeError saying which rule it breaks."""
    if raw is None:
        raise DecodeError(DeadLetterReason.MISSING_VALUE, "record has no value (tombstone)")
    if raw == TICK_RECORD:
        return _TICK  # the ticker's many records: skipped cheaply
    if len(raw) > MAX_COMMAND_BYTES:
        raise DecodeError(
            DeadLetterReason.TOO_LARGE,
            f"record is {len(raw)} bytes, above the {MAX_COMMAND_BYTES} limit",
        )
    # The Rust fast path for common valid records, where built (engine.native_codec): it
    # answers None for anything it does not vouch for, and msgspec below decides those.
    if _fast_decode is not None:
        fast = _fast_decode(raw)
        if fast is not None:
            return fast
    try:
        command = _command_decoder.decode(raw)
    except Exception as e:  # any failure on foreign bytes is a dead letter, never a stop
        raise _refusal(raw, e) from e
    duplicate = _duplicate_key(raw)
    if duplicate is not None:
        raise DecodeError(
            DeadLetterReason.DUPLICATE_KEY,
            f'field "{duplicate}" appears more than once; parsers disagree on which one counts',
        )
    return command


def _refusal(raw: bytes, error: Exception) -> DecodeError:
    """Name why msgspec failed, in an order that does not depend on msgspec's own order
    where that could vary (recursion depth depends on the caller's stack)."""
    # Fewer brackets than the limit cannot nest beyond it: skip the scan.
    brackets = raw.count(b"[") + raw.count(b"{")
    depth = nesting_depth(raw) if brackets > MAX_NESTING else 0
    if depth > MAX_NESTING:
        return DecodeError(
            DeadLetterReason.TOO_DEEP,
            f"arrays or objects nest {depth} deep, above the limit of {MAX_NESTING}",
        )
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return DecodeError(
            DeadLetterReason.INVALID_UTF8, f"not valid UTF-8: {e.reason} at byte {e.start}"
        )
    if isinstance(error, msgspec.ValidationError):
        message = str(error)
        if message.endswith("`$.type`") or "field `type`" in message:
            return DecodeError(DeadLetterReason.UNKNOWN_COMMAND_TYPE, f"invalid command: {message}")
        return DecodeError(DeadLetterReason.SCHEMA_VIOLATION, f"invalid command: {message}")
    if isinstance(error, msgspec.DecodeError):
        return DecodeError(DeadLetterReason.MALFORMED_JSON, f"not valid JSON: {error}")
    return DecodeError(
        DeadLetterReason.UNDECODABLE, f"decoder failed: {type(error).__name__}: {error}"
    )


def nesting_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in ``raw``, ignoring brackets inside strings.

    Iterative and in C-speed steps, so a hostile record cannot make it recurse or crawl.
    """
    brackets = _STRING_OR_UNCLOSED.sub(b"", raw).translate(None, _BRACKETS_ONLY)
    steps = array("b")
    steps.frombytes(brackets.translate(_DEPTH_STEP))  # 0x01 opens, 0xff (-1) closes
    return max(accumulate(steps), default=0)


def _duplicate_key(raw: bytes) -> str | None:
    """The first object key that occurs twice in a record that decoded as a command, if any.

    msgspec (like most parsers) lets the last occurrence win silently, while a gateway that
    checked the first may have approved something else; so a repeat is refused. Keys are
    compared after unescaping: ``"participant\\u005fid"`` repeats ``participant_id``.

    Two cheap proofs come first. Every key is followed by exactly one colon outside strings,
    and strings may hold more, so a record has at least as many colons as keys, and at least
    as many keys as distinct keys: equal counts prove there is no repeat. Without escapes and
    without a space after a quote, every ``":`` ends a key or opens a string starting with a
    colon: the same proof for ids that hold colons. Anything else is tokenized.

    Where the Rust decoder is built, it answers in one pass (the records the fast path left
    here: escapes, non-ASCII text, registrations), and this Python stays the reference.
    """
    if _native_duplicate_key is not None:
        try:
            return _native_duplicate_key(raw)
        except ValueError:  # nothing msgspec decoded; Python's answer, whatever it is
            pass
    return duplicate_key_in_python(raw)


def duplicate_key_in_python(raw: bytes) -> str | None:
    """:func:`_duplicate_key` without the Rust path."""
    distinct = len(_plain_decoder.decode(raw))
    if raw.count(b":") == distinct:
        return None
    if b"\\" not in raw and _QUOTE_THEN_SPACE.search(raw) is None and raw.count(b'":') == distinct:
        return None
    seen: set[str] = set()
    for key, colon in _STRING_TOKEN.findall(raw):
        if not colon:
            continue
        name = _string_decoder.decode(b'"' + key + b'"') if b"\\" in key else key.decode()
        if name in seen:
            return name
        seen.add(name)
    return None


def encode(message: Event | Command) -> bytes:
    return _encoder.encode(message)


def encode_reusing(message: Event, buffer: bytearray) -> bytes:
    """Encode through a buffer the caller keeps for the next call: msgspec's own ``encode``
    starts every output small and grows it two or three times for an event (measured on the
    bench mix: 495 ns an event this way, 578 ns with ``encode``)."""
    _encode_into(message, buffer)
    # Concatenated rather than bytes(buffer): a call of the bytes type parses its arguments
    # first, more work than the copy itself.
    return b"" + buffer


def encode_view(view: MarketView) -> bytes:
    return _encoder.encode(view)


def decode_view(raw: bytes) -> MarketView:
    return _view_decoder.decode(raw)


def decode_event(raw: bytes) -> Event:
    return _event_decoder.decode(raw)
