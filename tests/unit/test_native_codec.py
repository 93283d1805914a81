"""The Rust command decoder (engine.native_codec) against the pure path it shortcuts.

The one invariant: whenever the fast path returns a Struct, msgspec's decode with no
duplicate key would have returned an equal one, encoding to the same bytes; anything else it
leaves to the pure path (``None``). Records are drawn valid, then mutated towards every edge
the scanner has to refuse or get exactly right.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.matching import _commands, _records
from bench.mix import exchange_mix
from engine import native_codec
from engine.core import codec
from engine.core.codec import TICK_RECORD, encode
from schemas.commands import COMMAND_TYPES, Command, PlaceOrder, RegisterParticipant
from tests.unit.fresh_interpreter import run_core

pytestmark = pytest.mark.skipif(
    native_codec.fast_decode is None,
    reason=f"no native decoder: {native_codec.STATUS}",
)

STRUCTS = {str(t.__struct_config__.tag): t for t in COMMAND_TYPES}
#: What the fast path covers: everything with fields but registrations (lists).
COVERED = {tag for tag in STRUCTS if tag not in ("tick", "register_participant")}


def fast(raw: bytes) -> Command | None:
    decode = native_codec.fast_decode
    assert decode is not None
    return decode(raw)


def pure(raw: bytes) -> Command | None:
    """What decode_command returns on its pure path, or None where it raises."""
    try:
        command = codec._command_decoder.decode(raw)
    except Exception:  # whatever decode_command turns into a dead letter
        return None
    return None if codec.duplicate_key_in_python(raw) is not None else command


def assert_invariant(raw: bytes) -> Command | None:
    got = fast(raw)
    if got is not None:
        expected = pure(raw)
        assert expected is not None, f"fast path accepted what the pure path refuses: {raw!r}"
        assert type(got) is type(expected), raw
        assert got == expected, raw
        assert encode(got) == encode(expected), raw
    return got


# --- drawing records --------------------------------------------------------------------------

IDENTIFIER_CHARS = "ABCXYZabcxyz0189._:-"
ODD_IDENTIFIERS = ["a", "Z9", "x" * 64, "x" * 65, "", ".a", "-a", "_a", ":a", "a b", "a\n", "aé"]
identifiers = st.text(IDENTIFIER_CHARS, max_size=66) | st.sampled_from(ODD_IDENTIFIERS)
#: Integers at and beyond every bound the schema has (int64, LogTimeMs >= 0).
EDGES = [0, 1, -1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**19, 10**20, -(10**19)]
integers = st.sampled_from(EDGES) | st.integers(-(2**64), 2**64) | st.integers(-5, 10**6)
printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
texts = st.sampled_from(["bid", "offer", "limit", "gtc", "ioc", "halt", "open"]) | printable


def _valid(t: mi.Type) -> st.SearchStrategy[Any]:
    """Values msgspec accepts for ``t`` (mostly), drawn from the schema itself."""
    if isinstance(t, mi.Metadata):
        return _valid(t.type)
    if isinstance(t, mi.StrType):
        if t.pattern is not None and t.max_length == 64:
            return st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")
        if t.pattern is not None:
            return printable.filter(lambda s: s.strip(" ")) | st.text(min_size=1, max_size=8)
        return texts
    if isinstance(t, mi.IntType):
        low = t.ge if t.ge is not None else -(2**63)
        high = t.le if t.le is not None else 2**63 - 1
        return st.integers(low, high) | st.sampled_from([low, high, 0])
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.UnionType):
        return st.one_of([_valid(member) for member in t.types])
    if isinstance(t, mi.ListType):
        return st.lists(_valid(t.item_type), min_size=t.min_length or 0, max_size=3)
    raise AssertionError(f"no strategy for {t}")


Entry = tuple[bytes, bytes]  # a key's JSON text and its value's


@st.composite
def valid_entries(draw: st.DrawFn) -> list[Entry]:
    """A valid command's key/value texts, optional fields sometimes left out, in order."""
    tag = draw(st.sampled_from(sorted(STRUCTS)))
    info = mi.type_info(STRUCTS[tag])
    assert isinstance(info, mi.StructType)
    entries = [(b'"type"', json.dumps(tag).encode())]
    for field in info.fields:
        if not field.required and draw(st.booleans()):
            continue
        value = draw(_valid(field.type))
        entries.append((json.dumps(field.name).encode(), msgspec.json.encode(value)))
    return entries


def _escape(text: bytes) -> bytes:
    """The same string spelled with escapes: \\u0041 for A, \\/ for /."""
    return b"".join(
        b"\\/" if c == ord("/") else b"\\u%04x" % c if chr(c).isalnum() else bytes([c])
        for c in text
    )


def _json_value(value: Any) -> bytes:
    return msgspec.json.encode(value)


NUMBER_SPELLINGS = [
    b"1.0", b"1e3", b"1E3", b"-0", b"00", b"01", b"-01", b"+1", b"-", b"0.5", b"-0.0", b"1e-3",
    b"9223372036854775807", b"9223372036854775808", b"-9223372036854775808",
    b"-9223372036854775809", b"18446744073709551616", b"123456789012345678901234567890",
]  # fmt: skip
SCALARS = [b"true", b"false", b"null", b'""', b"{}", b"[]", b'{"a":1}', b'["a"]', b"[1,2]"]
WHITESPACE = [b"", b"", b"", b" ", b"\n", b"\t", b"\r\n ", b"\x0c", b"\xc2\xa0"]


@st.composite
def mutated(draw: st.DrawFn, entries: list[Entry]) -> list[Entry]:
    """``entries`` with one edit towards an edge of the grammar or the schema."""
    entries = list(entries)
    at = draw(st.integers(0, len(entries) - 1))
    key, value = entries[at]
    kind = draw(st.integers(0, 13))
    if kind == 0:  # escapes in a value or a key
        if draw(st.booleans()) and value.startswith(b'"'):
            entries[at] = (key, b'"' + _escape(value[1:-1]) + b'"')
        else:
            entries[at] = (b'"' + _escape(key[1:-1]) + b'"', value)
    elif kind == 1:  # another number spelling
        entries[at] = (key, draw(st.sampled_from(NUMBER_SPELLINGS)))
    elif kind == 2:  # any integer, in or out of range
        entries[at] = (key, str(draw(integers)).encode())
    elif kind == 3:  # a literal, an empty string or a nested value
        entries[at] = (key, draw(st.sampled_from(SCALARS)))
    elif kind == 4:  # an identifier at or beyond its limits
        entries[at] = (key, _json_value(draw(identifiers)))
    elif kind == 5:  # non-ASCII text, raw or escaped
        entries[at] = (key, _json_value(draw(st.text(min_size=0, max_size=4))))
    elif kind == 6:  # a key left out
        del entries[at]
    elif kind == 7:  # an unknown key
        entries.insert(at, (_json_value(draw(st.text(max_size=6))), b"1"))
    elif kind == 8:  # a key repeated, maybe escaped, maybe with another value
        repeat = _escape(key[1:-1]) if draw(st.booleans()) else key[1:-1]
        entries.insert(draw(st.integers(0, len(entries))), (b'"' + repeat + b'"', value))
    elif kind == 9:  # another tag
        tag = draw(st.sampled_from([*STRUCTS, "Place_order", "place_order ", "", "nope"]))
        entries = [(k, _json_value(tag) if k == b'"type"' else v) for k, v in entries]
    elif kind == 10:  # reordered
        entries = draw(st.permutations(entries))
    elif kind == 11:  # a control character or DEL inside a string
        if value.startswith(b'"') and len(value) > 2:
            odd = draw(st.sampled_from([b"\x01", b"\x7f", b"\t", b"\x00"]))
            entries[at] = (key, value[:2] + odd + value[2:])
    elif kind == 12:  # a string where a number is, or the other way round
        entries[at] = (key, b'"' + value.strip(b'"') + b'"' if not value.startswith(b'"') else b"5")
    else:  # a display name of every length around its limit
        name = draw(st.sampled_from(["", " ", "  a", "a" * 200, "a" * 201, " " * 200 + "a"]))
        entries[at] = (key, _json_value(name))
    return entries


@st.composite
def records(draw: st.DrawFn) -> tuple[bytes, int]:
    """A record's bytes and how many edits it had (0: a valid command, compact or spaced)."""
    entries = draw(valid_entries())
    edits = draw(st.integers(0, 3))
    for _ in range(edits):
        if entries:
            entries = draw(mutated(entries))
    space = st.sampled_from(WHITESPACE) if draw(st.booleans()) else st.just(b"")
    parts = [draw(space), b"{"]
    for n, (key, value) in enumerate(entries):
        parts += [b"," if n else b"", draw(space), key, draw(space), b":", draw(space), value]
    parts += [draw(space), b"}", draw(space)]
    raw = b"".join(parts)
    ending = draw(st.integers(0, 19))
    if ending == 0:  # truncated
        raw = raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    elif ending == 1:  # invalid UTF-8 somewhere
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + raw[cut:]
    elif ending == 2:  # something after the object
        raw += draw(st.sampled_from([b"x", b"{}", b",", b"\x00"]))
    return raw, edits + (ending < 3)


# --- the tests ---------------------------------------------------------------------------------


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_the_fast_path_returns_only_what_the_pure_path_returns(record: tuple[bytes, int]) -> None:
    """Differential: a Struct from Rust is the Struct msgspec decodes, byte for byte."""
    raw, edits = record
    got = assert_invariant(raw)
    # Valid (no edit, JSON's own whitespace), unescaped printable ASCII, a covered command: the
    # fast path must take it, or it could pass by refusing everything.
    plain = raw.isascii() and not any(c in raw for c in b"\\\x0c\x7f")
    if edits == 0 and plain and json.loads(raw)["type"] in COVERED:
        assert got is not None, raw


@pytest.mark.parametrize(
    ("field", "text", "accepted"),
    [
        ("quantity", b"9223372036854775807", True),
        ("quantity", b"-9223372036854775808", True),
        ("quantity", b"9223372036854775808", False),
        ("quantity", b"-9223372036854775809", False),
        ("quantity", b"-0", False),
        ("quantity", b"0", True),
        ("quantity", b"01", False),
        ("quantity", b"1.0", False),
        ("quantity", b"1e3", False),
        ("quantity", b"true", False),
        ("quantity", b"null", False),
        ("price", b"null", True),
        ("expires_at_ms", b"0", True),
        ("expires_at_ms", b"-1", False),
        ("expires_at_ms", b"9223372036854775807", True),
        ("post_only", b"true", True),
        ("post_only", b"0", False),
        ("post_only", b"null", False),
        ("side", b'"sell"', True),  # the market judges the side: msgspec takes any text
        ("side", b'""', True),
        ("side", b"null", False),
        ("order_type", b"null", False),
        ("client_order_id", b'"' + b"x" * 64 + b'"', True),
        ("client_order_id", b'"' + b"x" * 65 + b'"', False),
        ("client_order_id", b'""', False),
        ("client_order_id", b'"a.b_c:d-e"', True),
        ("client_order_id", b'"-a"', False),
        ("client_order_id", b'"a\\u0041"', False),  # valid, but an escape: the pure path's
        ("client_order_id", b'"a\\/b"', False),
        ("submitted_by", b'"broker-1"', True),
        ("submitted_by", b"null", True),
        ("submitted_by", b'"bad id"', False),
    ],
)
def test_edges_of_a_place_order(field: str, text: bytes, accepted: bool) -> None:
    """Each edge is taken exactly when the schema allows it, and then decodes like msgspec."""
    fields = {
        "type": b'"place_order"',
        "technology_id": b'"T1"',
        "participant_id": b'"p1"',
        "client_order_id": b'"c1"',
        "side": b'"bid"',
        "quantity": b"10",
        "price": b"100",
        field: text,
    }
    raw = b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in fields.items()) + b"}"
    assert (assert_invariant(raw) is not None) == accepted, raw
    assert (pure(raw) is not None) or not accepted


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":"cancel_order","technology_id":"T1","participant_id":"p","client_order_id":"c",'
        b'"client_order_id":"d"}',
        b'{"type":"cancel_order","technology_id":"T1","participant_id":"p","client_order_id":"c",'
        b'"client\\u005forder_id":"d"}',
        b'{"type":"cancel_order","type":"cancel_order","technology_id":"T1","participant_id":"p",'
        b'"client_order_id":"c"}',
        b'{"type":"cancel_order","technology_id":"T1","participant_id":"p","client_order_id":"c",'
        b'"extra":1}',
        b'{"type":"cancel_order","technology_id":"T1","participant_id":"p"}',
        b'{"type":"tick"}',
        b'{"type":"register_participant","participant_id":"o","member_id":"m","roles":["buyer"]}',
        b'{"technology_id":"T1","participant_id":"p","client_order_id":"c"}',
        b"[]",
        b"",
        b"{}",
        b'{"type":"cancel_order","technology_id":"T1","participant_id":"p","client_order_id":"c"',
    ],
)
def test_records_the_fast_path_leaves_to_the_pure_path(raw: bytes) -> None:
    """Repeats (plain or escaped), unknown or missing keys, lists, other shapes: None."""
    assert fast(raw) is None


def rust_duplicate_key(raw: bytes) -> str | None:
    duplicate_key = native_codec.duplicate_key
    assert duplicate_key is not None
    return duplicate_key(raw)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_the_rust_duplicate_key_is_the_python_one(record: tuple[bytes, int]) -> None:
    """Same key, or none, for every record msgspec decodes (the only ones it is asked about)."""
    raw, _ = record
    try:
        codec._command_decoder.decode(raw)
    except Exception:  # never asked: decode_command has dead-lettered it already
        return
    assert rust_duplicate_key(raw) == codec.duplicate_key_in_python(raw), raw


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"type":"tick","type":"tick"}', "type"),
        (b'{"type":"tick", "type" :"tick"}', "type"),
        (b'{"a\\u005fb":1,"a_b":2}', "a_b"),
        (b'{"\\ud83d\\ude00":1,"\\ud83d\\ude00":2}', "\U0001f600"),
        (b'{"x":"\\"a\\":","a":1}', None),  # a colon inside a string is not a key's
        (b'{"x":["a","b"],"y":{"x":1}}', "x"),  # at any depth, as the Python tokenizer
        (b'{"a\\n":1,"a\\u000a":2}', "a\n"),
        (b'{"\\/":1,"/":2}', "/"),
        (b'{"a":1,"b":2}', None),
    ],
)
def test_duplicate_keys_unescaped(raw: bytes, key: str | None) -> None:
    """Keys compare after unescaping, as Python's tokenizer does."""
    assert codec.duplicate_key_in_python(raw) == key
    assert rust_duplicate_key(raw) == key


@pytest.mark.parametrize("raw", [b'{"\\ud800":1}', b'{"\\x":1}', b'{"a\\u12":1}', b'{"a'])
def test_keys_no_decoded_record_has_are_left_to_python(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not a decoded command record"):
        rust_duplicate_key(raw)


def test_non_bytes_are_left_to_the_pure_path() -> None:
    raw = b'{"type":"cancel_order","technology_id":"T1","participant_id":"p","client_order_id":"c"}'
    assert fast(raw) is not None
    assert fast(bytearray(raw)) is None  # type: ignore[arg-type]
    assert fast(memoryview(raw)) is None  # type: ignore[arg-type]


def test_whitespace_in_every_legal_place_is_accepted() -> None:
    raw = b' \n{ "type" :\t"amend_order" ,\r"technology_id": "T1","participant_id":"p" ,'
    raw += b'"client_order_id" : "c" , "quantity" : 5 }\n'
    assert assert_invariant(raw) is not None


def test_every_benchmark_record_takes_the_fast_path() -> None:
    """The speed-up is real: the benchmark's streams decode in Rust, but ticks (a byte compare)
    and registrations (lists, left to msgspec)."""
    streams = [
        _records([(c, i) for i, c in enumerate(_commands(7, 5000))]),
        _records(exchange_mix(7, 20_000)),
    ]
    refused = [
        r.value
        for r in itertools.chain.from_iterable(streams)
        if r.value is not None and r.value != TICK_RECORD and assert_invariant(r.value) is None
    ]
    assert all(isinstance(codec.decode_command(raw), RegisterParticipant) for raw in refused)
    assert len(refused) < 50, len(refused)


def test_decode_command_takes_the_fast_path() -> None:
    """decode_command answers from Rust: common texts are shared objects there (msgspec makes
    a new string each time), so two decodes of a side are the same object."""
    raw = b'{"type":"place_order","technology_id":"T1","participant_id":"p","client_order_id":"c",'
    raw += b'"side":"bid","quantity":1}'
    first, second = codec.decode_command(raw), codec.decode_command(raw)
    assert isinstance(first, PlaceOrder)
    assert isinstance(second, PlaceOrder)
    assert first == pure(raw)
    assert first.side is second.side


def test_the_tag_after_other_keys_is_left_to_the_pure_path() -> None:
    """The scanner takes the tag only first (where msgspec writes it); elsewhere the record
    still decodes, through msgspec."""
    raw = b'{"technology_id":"T1","participant_id":"p","client_order_id":"c","type":"cancel_order"}'
    assert fast(raw) is None
    assert codec.decode_command(raw) == pure(raw) is not None


def test_recurring_ids_are_shared_and_a_full_cache_stays_exact() -> None:
    """Ids that recur come from the cache (one object for every record that names them); far
    more distinct ids than it holds (4096 slots) evict, and every answer stays msgspec's."""
    template = (
        b'{"type":"place_order","technology_id":"TECH-%d","participant_id":"p-%d",'
        b'"client_order_id":"c-%d","side":"bid","quantity":%d,"price":100}'
    )
    raws = [template % (n % 9000, n % 7, n, n + 1) for n in range(20_000)]
    decoded = [fast(raw) for raw in raws]
    assert decoded == [pure(raw) for raw in raws]
    first, again = fast(raws[0]), fast(raws[0])
    assert isinstance(first, PlaceOrder)
    assert isinstance(again, PlaceOrder)
    assert first.technology_id is again.technology_id
    assert first.participant_id is again.participant_id


def test_the_fields_match_the_structs() -> None:
    """The scanner's field tables are the Structs' (checked again at every import)."""
    from engine import _native_codec  # noqa: PLC0415 - present: see pytestmark

    for tag, fields in _native_codec.fields():
        assert tuple(fields) == STRUCTS[tag].__struct_fields__


def test_a_stale_or_missing_manifest_is_not_current(tmp_path: Path) -> None:
    """Changed sources (the crate, or the schemas it mirrors) mean: run pure Python."""
    assert native_codec.build_is_current()
    manifest = tmp_path / "manifest.json"
    assert not native_codec.build_is_current(manifest)
    manifest.write_text(json.dumps({"sources": "0" * 64}))
    assert not native_codec.build_is_current(manifest)
    manifest.write_text(json.dumps({"sources": native_codec.sources_hash()}))
    assert native_codec.build_is_current(manifest)


def test_pure_python_turns_the_fast_path_off() -> None:
    """TECHX_PURE_PYTHON=1 is the reference: no Rust either."""
    code = "from engine import native_codec as n; print(n.fast_decode is None, n.STATUS)"
    done = run_core(code, pure=True)
    assert done.stdout.split()[:2] == ["True", "python"], done.stderr
