"""The published JSON Schema outside Python: portable patterns, price rule, README examples.

Go and Rust compile ``pattern`` with RE2-like engines (no lookaround), JavaScript with
ECMA-262; in all of them ``$`` matches only at the very end. Python's ``re`` differs (its
``$`` also matches before a final newline), and so does the ``jsonschema`` package's own
``pattern`` keyword, which uses it. These tests therefore validate with ``jsonschema``
whose ``pattern`` runs on RE2, as a validator in another language would, and compare the
verdicts with the engine's: msgspec decoding, then the market's checks of the ranges and
rules the schema publishes.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import msgspec
import pytest
import re2
from hypothesis import example, given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.protocols import Validator

from engine.core.codec import decode_command
from engine.core.market import Market
from engine.errors import DecodeError
from schemas import common
from schemas.commands import COMMAND_TYPES, ListTechnology
from schemas.common import (
    DISPLAY_TEXT_PATTERN,
    IDENTIFIER_PATTERN,
    MAX_PRICE,
    PUBLISHED,
    DisplayText,
    Identifier,
)
from schemas.events import CommandRejected
from schemas.generate import SCHEMA_DIR

README = Path(__file__).resolve().parents[2] / "README.md"
COMMAND_TAGS = {cls.__struct_config__.tag for cls in COMMAND_TYPES}

#: The verdict of a record the engine takes as it is.
ACCEPTED = "accepted"
#: The verdict of a record msgspec refuses: it is dead-lettered, never reaches the market.
DEAD_LETTER = "dead_letter"

#: The lookahead patterns this module replaced, kept to prove the new ones accept the same.
LEGACY_IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9._:\-]*(?!\n)$"
LEGACY_DISPLAY_TEXT = r"^(?=.*\S)[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]*(?!\n)$"


def _ecma_pattern(
    validator: Any, pattern: str, instance: object, schema: object
) -> Iterator[ValidationError]:
    r"""``pattern`` with ECMA-262's anchors, run on RE2: ``$`` does not match before a ``\n``."""
    if isinstance(instance, str) and re2.search(pattern, instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


#: Draft 2020-12 as a Go, Rust or JavaScript validator applies it.
PortableValidator: type[Validator] = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {"pattern": _ecma_pattern}
)


def _load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return document


COMMANDS_SCHEMA = _load("commands.schema.json")
EVENTS_SCHEMA = _load("events.schema.json")
COMMANDS_VALIDATOR = PortableValidator(COMMANDS_SCHEMA)


def _record(**fields: Any) -> dict[str, Any]:
    return fields


def _order(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "type": "place_order",
        "technology_id": "T1",
        "participant_id": "p1",
        "client_order_id": "c1",
        "side": "bid",
        "quantity": 2,
    }
    fields.update(overrides)
    return fields


def _listing(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "type": "list_technology",
        "technology_id": "T2",
        "participant_id": "ops",
        "name": "Solid-state battery electrolyte",
        "tick_size": 10,
        "lot_size": 1,
    }
    fields.update(overrides)
    return fields


#: T1 is listed on a grid of 1 and holds one resting offer (p9's rest-1), so every
#: well-formed order or cancel below is accepted unless a published rule refuses it.
_SETUP = [
    _listing(technology_id="T1", tick_size=1),
    _record(
        type="register_participant",
        participant_id="exchange-ops",
        member_id="p-sus",
        roles=["buyer"],
    ),
    _record(type="suspend_participant", participant_id="exchange-ops", member_id="p-sus"),
    _record(
        type="register_participant",
        participant_id="exchange-ops",
        member_id="p-act",
        roles=["buyer"],
    ),
    _order(participant_id="p9", client_order_id="rest-1", side="offer", quantity=1, price=5_000),
]

#: (case id, record, the engine's verdict: ACCEPTED, DEAD_LETTER or a reject reason code)
SAMPLES: list[tuple[str, dict[str, Any], str]] = [
    (
        "amend a resting order's price",
        _record(
            type="amend_order",
            technology_id="T1",
            participant_id="p9",
            client_order_id="rest-1",
            price=5_100,
        ),
        ACCEPTED,
    ),
    (
        "halt a listing",
        _record(type="manage_listing", technology_id="T1", participant_id="ops", action="halt"),
        ACCEPTED,
    ),
    ("a tick", _record(type="tick"), ACCEPTED),
    (
        "register a participant",
        _record(
            type="register_participant",
            participant_id="exchange-ops",
            member_id="uni-a",
            roles=["seller", "buyer"],
        ),
        ACCEPTED,
    ),
    (
        "register a broker",
        _record(
            type="register_participant",
            participant_id="exchange-ops",
            member_id="bk-1",
            roles=["broker"],
            acts_for=["uni-a", "firm-b"],
        ),
        ACCEPTED,
    ),
    (
        "register with an unknown role",
        _record(
            type="register_participant",
            participant_id="exchange-ops",
            member_id="x",
            roles=["admin"],
        ),
        "invalid_registration",
    ),
    (
        "suspend a participant",
        _record(type="suspend_participant", participant_id="exchange-ops", member_id="p-act"),
        ACCEPTED,
    ),
    (
        "reinstate a participant",
        _record(type="reinstate_participant", participant_id="exchange-ops", member_id="p-sus"),
        ACCEPTED,
    ),
    (
        "members only",
        _record(type="set_access_mode", participant_id="exchange-ops", mode="members_only"),
        ACCEPTED,
    ),
    (
        "an english auction",
        _listing(
            mechanism="english",
            starting_price=1_000,
            min_increment=100,
            ends_at_ms=1_700_000_000_000,
        ),
        ACCEPTED,
    ),
    ("a gtd order", _order(price=1_000, time_in_force="gtd", expires_at_ms=10**13), ACCEPTED),
    ("limit order with price", _order(order_type="limit", price=1_000), ACCEPTED),
    ("limit by default, with price", _order(price=1_000), ACCEPTED),
    ("market order without price", _order(order_type="market"), ACCEPTED),
    ("market order with null price", _order(order_type="market", price=None), ACCEPTED),
    (
        "cancel",
        _record(
            type="cancel_order", technology_id="T1", participant_id="p9", client_order_id="rest-1"
        ),
        ACCEPTED,
    ),
    ("listing", _listing(), ACCEPTED),
    (
        "listing with reserve, unicode name",
        _listing(name="Thiết bị đo ✓", reserve_price=100),
        ACCEPTED,
    ),
    ("name with inner and outer spaces", _listing(name="\u3000 Máy  lọc\u00a0"), ACCEPTED),
    ("identifier of every allowed kind", _order(client_order_id="a.B_9:z-0", price=10), ACCEPTED),
    ("limit order without price", _order(order_type="limit"), "price_required"),
    ("default-type order without price", _order(), "price_required"),
    ("limit order with null price", _order(price=None), "price_required"),
    ("market order with price", _order(order_type="market", price=1_000), "price_not_allowed"),
    ("identifier with trailing newline", _order(technology_id="T1\n", price=10), DEAD_LETTER),
    ("identifier with space", _order(client_order_id="c 1", price=10), DEAD_LETTER),
    ("identifier starting with a dash", _order(participant_id="-p1", price=10), DEAD_LETTER),
    ("identifier with a non-ASCII letter", _order(participant_id="Tô", price=10), DEAD_LETTER),
    (
        "identifier with Arabic-Indic digits",
        _order(participant_id="p\u0661", price=10),
        DEAD_LETTER,
    ),
    ("empty identifier", _order(client_order_id="", price=10), DEAD_LETTER),
    ("identifier of 65 characters", _order(client_order_id="c" * 65, price=10), DEAD_LETTER),
    ("name of only spaces", _listing(name="   "), DEAD_LETTER),
    ("name of only unicode spaces", _listing(name="\u00a0\u2003\u3000\u2028"), DEAD_LETTER),
    ("name with a control character", _listing(name="Coat\x07ing"), DEAD_LETTER),
    ("name with a trailing newline", _listing(name="Coating\n"), DEAD_LETTER),
    ("name with a C1 control", _listing(name="Coat\x85ing"), DEAD_LETTER),
    ("name with a bidi override", _listing(name="abc\u202edef"), DEAD_LETTER),
    ("name with a bidi isolate", _listing(name="\u2066abc"), DEAD_LETTER),
    ("name of 201 characters", _listing(name="x" * 201), DEAD_LETTER),
    ("price as a string", _order(price="1000"), DEAD_LETTER),
    ("price beyond int64", _order(price=2**63), DEAD_LETTER),
    ("unknown field", _order(price=10, note="hi"), DEAD_LETTER),
    ("price above the maximum", _order(price=MAX_PRICE + 1), "price_too_high"),
    ("quantity zero", _order(price=10, quantity=0), "quantity_not_positive"),
    ("unknown side", _order(side="buy", price=10), "unknown_side"),
    ("unknown order type", _order(order_type="stop", price=10), "unknown_order_type"),
    ("tick size zero", _listing(tick_size=0), "invalid_tick_size"),
]


def _engine_verdict(record: dict[str, Any]) -> str:
    """What the engine does with ``record``: ACCEPTED, DEAD_LETTER or the reject reason."""
    try:
        command = decode_command(json.dumps(record).encode())
    except DecodeError:
        return DEAD_LETTER
    market = Market()
    if not isinstance(command, ListTechnology):
        for offset, setup in enumerate(_SETUP):
            market.apply(decode_command(json.dumps(setup).encode()), 1, offset)
    events = market.apply(command, 2, len(_SETUP))
    reasons = [event.reason.value for event in events if isinstance(event, CommandRejected)]
    return reasons[0] if reasons else ACCEPTED


@pytest.mark.parametrize(
    ("record", "verdict"), [s[1:] for s in SAMPLES], ids=[s[0] for s in SAMPLES]
)
def test_schema_and_engine_agree_on_each_sample(record: dict[str, Any], verdict: str) -> None:
    """A sample passes the published schema exactly when the engine accepts it as it is."""
    assert _engine_verdict(record) == verdict
    assert COMMANDS_VALIDATOR.is_valid(record) is (verdict == ACCEPTED)


def test_samples_cover_every_command_type_and_both_price_rules() -> None:
    """The samples hold an accepted record of each command type and each side of the price rule."""
    accepted = [record for _, record, verdict in SAMPLES if verdict == ACCEPTED]
    assert {record["type"] for record in accepted} == COMMAND_TAGS
    verdicts = {verdict for *_, verdict in SAMPLES}
    assert {"price_required", "price_not_allowed", DEAD_LETTER} <= verdicts


def test_schema_files_are_valid_draft_2020_12() -> None:
    """Both committed schema files are themselves valid against the 2020-12 meta-schema."""
    for document in (COMMANDS_SCHEMA, EVENTS_SCHEMA):
        Draft202012Validator.check_schema(document)


def _readme_commands() -> list[dict[str, Any]]:
    """Every command object in README.md's ```json blocks (one or more values per block)."""
    blocks = re.findall(
        r"^```json[ \t]*\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S
    )
    decoder = json.JSONDecoder()
    commands: list[dict[str, Any]] = []
    for block in blocks:
        position = 0
        while (position := len(block) - len(block[position:].lstrip())) < len(block):
            value, position = decoder.raw_decode(block, position)
            if isinstance(value, dict) and value.get("type") in COMMAND_TAGS:
                commands.append(value)
    return commands


def test_readme_command_examples_pass_the_schema_and_the_decoder() -> None:
    """Each command shown in README.md's JSON examples is valid for the schema and for msgspec."""
    commands = _readme_commands()
    assert commands, "README.md shows no command in a ```json block"
    for command in commands:
        errors = [error.message for error in COMMANDS_VALIDATOR.iter_errors(command)]
        assert not errors, (command, errors)
        decode_command(json.dumps(command).encode())


def _patterns(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for value in node.values():
            yield from _patterns(value)
    elif isinstance(node, list):
        for item in node:
            yield from _patterns(item)


def _python_patterns() -> dict[str, str]:
    """Published pattern -> the pattern msgspec checks, for every annotated type in common."""
    found: dict[str, str] = {}
    for value in vars(common).values():
        if get_origin(value) is not Annotated:
            continue
        for meta in get_args(value)[1:]:
            if isinstance(meta, msgspec.Meta) and meta.pattern is not None:
                extra = meta.extra_json_schema or {}
                found[extra[PUBLISHED]["pattern"]] = meta.pattern
    return found


#: Strings on which engines are known to differ: newlines at the ends, Unicode spaces and
#: digits, controls, bidirectional characters, combining and astral characters.
PATTERN_CORPUS = [
    "", "T1", "T1\n", "\nT1", "T1\r", "T1\r\n", "T 1", " T1", "T1 ", "-T1", "T-1", "a.b_c:d-e",
    "Tô1", "T\u00a01", "T\u20281", "\u0661\u0662\u0663", "T1\x00", "Solar coating", "   ",
    "\t", "a\tb",
    "\u00a0", "\u1680", "\u2000", "\u200a", "\u200b", "\u2028", "\u2029", "\u202f", "\u205f",
    "\u3000", "\u3000x", "x\u3000", "\ufeff", "\x85", "\x7f", "x\x9f", "x\xa0", "abc\u202edef",
    "\u202a", "\u202e", "\u2066x\u2069", "x\u2069", "\u2065", "\u206a", "Coat\x07ing",
    "Coating\n", "Coating\n\n", "e\u0301", "😀", "\U0010ffff", "Thiết bị đo ✓", "x" * 300,
]  # fmt: skip

#: Shorthand classes whose meaning differs between ECMA-262, RE2 and Python.
_ENGINE_DEPENDENT = re.compile(r"\\[sSdDwWbBuUzZ]")


def test_every_published_pattern_compiles_with_re2_and_agrees_with_python() -> None:
    """Each schema pattern is RE2-compilable and, under RE2, accepts exactly what msgspec does."""
    python_patterns = _python_patterns()
    published = {p for doc in (COMMANDS_SCHEMA, EVENTS_SCHEMA) for p in _patterns(doc)}
    assert published == set(python_patterns), "a pattern in schemas/json has no portable twin"
    for pattern in published:
        assert not _ENGINE_DEPENDENT.search(pattern), pattern
        portable = re2.compile(pattern)  # raises on lookaround, \Z, \uXXXX
        python = re.compile(python_patterns[pattern])
        verdicts: set[bool] = set()
        for text in PATTERN_CORPUS:
            verdict = portable.search(text) is not None
            assert verdict is (python.search(text) is not None), (pattern, text)
            verdicts.add(verdict)
        assert verdicts == {True, False}, f"the corpus does not exercise {pattern!r}"


def _msgspec_accepts(kind: object, text: str) -> bool:
    try:
        msgspec.json.decode(msgspec.json.encode(text), type=kind)
    except msgspec.ValidationError:
        return False
    return True


_IDENTIFIER_ALPHABET = string.ascii_letters + string.digits + "._:-" + "\n\r\t \u00a0é\u0661/\x00"
_TEXT_ALPHABET = "ab ✓\n\t\x00\x7f\x85\u00a0\u1680\u2007\u200b\u2028\u202a\u202e\u202f\u2066\u3000"


@given(st.text() | st.text(alphabet=_IDENTIFIER_ALPHABET, max_size=70))
@example("T1\n")
@example("T1")
def test_portable_identifier_pattern_under_re2_is_msgspec_acceptance(text: str) -> None:
    """For any string, RE2 on the published Identifier agrees with msgspec and the old pattern."""
    portable = 1 <= len(text) <= 64 and re2.search(IDENTIFIER_PATTERN, text) is not None
    assert _msgspec_accepts(Identifier, text) is portable
    assert (re.search(LEGACY_IDENTIFIER, text) is not None) is (
        re2.search(IDENTIFIER_PATTERN, text) is not None
    )


@given(st.text() | st.text(alphabet=_TEXT_ALPHABET, max_size=20))
@example("Coating\n")
@example("\u3000")
def test_portable_display_text_pattern_under_re2_is_msgspec_acceptance(text: str) -> None:
    """For any string, RE2 on the published DisplayText agrees with msgspec and the old pattern."""
    portable = 1 <= len(text) <= 200 and re2.search(DISPLAY_TEXT_PATTERN, text) is not None
    assert _msgspec_accepts(DisplayText, text) is portable
    legacy = re.search(LEGACY_DISPLAY_TEXT, text) is not None
    assert legacy is (re2.search(DISPLAY_TEXT_PATTERN, text) is not None)
