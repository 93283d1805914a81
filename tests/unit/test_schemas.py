"""The wire contract: committed JSON Schema files, codec round trips, documented ranges."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest

from engine.core.codec import decode_command, decode_event, encode
from schemas.commands import (
    AmendOrder,
    CancelOrder,
    Command,
    ListTechnology,
    ManageListing,
    PlaceOrder,
    RegisterParticipant,
    ReinstateParticipant,
    SetAccessMode,
    SuspendParticipant,
    Tick,
)
from schemas.common import (
    MAX_PRICE,
    MAX_QUANTITY,
    AccessMode,
    AuctionOutcome,
    CancelReason,
    ListingState,
    Mechanism,
    OrderType,
    ParticipantStatus,
    RejectReason,
    Role,
    Side,
)
from schemas.events import (
    AccessModeChanged,
    AuctionClosed,
    AuctionExtended,
    CommandRejected,
    Deal,
    Event,
    ListingStateChanged,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderDone,
    ParticipantRegistered,
    ParticipantStatusChanged,
    TechnologyListed,
)
from schemas.generate import SCHEMA_DIR, dump_json, main, render_schemas

PROJECT_ROOT = Path(__file__).resolve().parents[2]

COMMANDS: list[Command] = [
    PlaceOrder("T1", "p1", "c1", "bid", 10, "limit", 1_000),
    PlaceOrder("T1", "p1", "c2", "offer", 5, "market", None),
    PlaceOrder("T1", "p1", "c3", "offer", 5),  # defaults: limit, no price
    CancelOrder("T1", "p1", "c1"),
    ListTechnology("T1", "admin", "Solar panel coating", 10, 5, "continuous", 100),
    ListTechnology("T.2:x-y_z", "admin", "Thiết bị đo đồng hồ ✓", 1, 1),
    ListTechnology(
        "PAT-9", "uni-a", "Patent lot", 1_000, 1, "english", 50_000,
        starting_price=10_000, min_increment=1_000, ends_at_ms=1_700_000_600_000,
        soft_close_window_ms=60_000, soft_close_extension_ms=120_000, buy_now_price=900_000,
    ),
    PlaceOrder("T1", "p1", "c4", "bid", 10, "limit", 1_000, "gtd", 1_700_000_001_000, True),
    AmendOrder("T1", "p1", "c1", quantity=5),
    AmendOrder("T1", "p1", "c1", price=990),
    ManageListing("T1", "admin", "halt"),
    Tick(),
    RegisterParticipant("exchange-ops", "bk-1", ["broker"], ["uni-a"]),
    SuspendParticipant("exchange-ops", "uni-a"),
    ReinstateParticipant("ops-2", "uni-a", submitted_by="exchange-ops"),
    SetAccessMode("exchange-ops", "members_only"),
    PlaceOrder("T1", "uni-a", "c9", "bid", 1, "limit", 10, submitted_by="bk-1"),
]  # fmt: skip

EVENTS: list[Event] = [
    TechnologyListed(
        "T1", 1, 1_700_000_000_000, 42, "admin", "Máy lọc", Mechanism.CONTINUOUS, 10, 5, None
    ),
    TechnologyListed("T1", 1, 0, 42, "admin", "x", Mechanism.CONTINUOUS, 10, 5, 100),
    OrderAccepted("T1", 2, 1, 42, "T1:o1", "p1", "c1", Side.BID, OrderType.LIMIT, 10, 1_000),
    OrderAccepted("T1", 3, 1, 42, "T1:o2", "p2", "c1", Side.OFFER, OrderType.MARKET, 10, None),
    CommandRejected("T1", 4, 2, 42, "place_order", "p1", "c9", RejectReason.PRICE_OFF_TICK, "x"),
    CommandRejected(
        "NOPE", 0, 2, 42, "list_technology", "p1", "", RejectReason.UNKNOWN_TECHNOLOGY, ""
    ),
    Deal(
        "T1", 5, 3, 42, "T1:d1", 1, 1_000, 10, "p1", "p2", "T1:o1", "T1:o2", "c1", "c1", Side.OFFER
    ),
    OrderCancelled("T1", 6, 4, 42, "T1:o2", "p2", "c1", 10, 0, CancelReason.MARKET_ORDER_UNFILLED),
    OrderCancelled(
        "T1", 7, 4, 42, "T1:o3", "p3", "c7", 0, 5, CancelReason.CANCELLED_BY_PARTICIPANT
    ),
    OrderDone("T1", 8, 5, 42, "T1:o1", "p1", "c1", 10),
    OrderAmended("T1", 9, 6, 43, "T1:o1", "p1", "c1", 5, 1_000, True),
    ListingStateChanged("T1", 10, 7, 44, "admin", ListingState.HALTED, ListingState.OPEN),
    AuctionExtended("PAT-9", 5, 8, 45, 1_700_000_720_000, "PAT-9:o3"),
    AuctionClosed("PAT-9", 6, 9, 46, AuctionOutcome.SOLD, "b2", "PAT-9:o3", 60_000, 1, 3, ""),
    AuctionClosed("PAT-8", 2, 9, 47, AuctionOutcome.UNSOLD, None, None, None, 0, 0, "no bids"),
    ParticipantRegistered("", 0, 1, 7, "exchange-ops", "bk-1", [Role.BROKER], ["uni-a"]),
    ParticipantStatusChanged("", 0, 1, 8, "exchange-ops", "bk-1", ParticipantStatus.SUSPENDED),
    AccessModeChanged("", 0, 1, 9, "exchange-ops", AccessMode.MEMBERS_ONLY, AccessMode.OPEN),
]


def _schema(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(render_schemas()[name])
    return document


def test_committed_schema_files_match_the_structs() -> None:
    """schemas/json/*.schema.json are exactly what render_schemas() produces today."""
    rendered = render_schemas()
    stale = [
        name
        for name, text in rendered.items()
        if not (SCHEMA_DIR / name).is_file()
        or (SCHEMA_DIR / name).read_text(encoding="utf-8") != text
    ]
    assert not stale, (
        f"stale JSON Schema files {stale}: the wire structs changed; "
        "run `python -m schemas.generate` and commit schemas/json/"
    )
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.json")) == sorted(rendered)


def test_render_is_deterministic_and_names_each_family() -> None:
    """Rendering twice gives the same text; each document declares dialect, $id and title."""
    first, second = render_schemas(), render_schemas()
    assert first == second
    assert set(first) == {"commands.schema.json", "events.schema.json", "marketdata.schema.json"}
    for name, text in first.items():
        assert text.endswith("}\n")
        document = json.loads(text)
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        family = name.split(".")[0]
        assert family in document["$id"]
        assert family in document["title"].lower()
        # Sorted, two-space JSON: re-serialising the parsed document reproduces the text.
        assert dump_json(document) == text
        assert all(c == "\n" or c.isprintable() for c in text), "invisible characters escaped"


def test_schema_descriptions_are_dedented() -> None:
    """Multi-line docstrings land in the schema without their source indentation."""
    place_order = _schema("commands.schema.json")["$defs"]["PlaceOrder"]
    assert "\n``client_order_id``" in place_order["description"]
    assert "\\n    " not in render_schemas()["commands.schema.json"]


def test_check_mode_names_stale_files_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--check exits 1 naming missing or edited files and writes nothing; a write fixes it."""
    assert main(["--check", "--directory", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "commands.schema.json" in err
    assert "events.schema.json" in err
    assert "python -m schemas.generate" in err
    assert list(tmp_path.iterdir()) == []

    assert main(["--directory", str(tmp_path)]) == 0
    for name, text in render_schemas().items():
        assert (tmp_path / name).read_text(encoding="utf-8") == text
    assert main(["--check", "--directory", str(tmp_path)]) == 0

    edited = tmp_path / "events.schema.json"
    edited.write_text(edited.read_text(encoding="utf-8") + " ", encoding="utf-8")
    capsys.readouterr()
    assert main(["--check", "--directory", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "events.schema.json" in err
    assert "commands.schema.json" not in err
    assert edited.read_text(encoding="utf-8").endswith(" ")  # --check did not rewrite it


def test_generator_runs_as_a_module() -> None:
    """`python -m schemas.generate --check` passes on the committed files."""
    result = subprocess.run(
        [sys.executable, "-m", "schemas.generate", "--check"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_samples_cover_every_command_and_event_type() -> None:
    """The round-trip samples below include every member of both tagged unions."""
    assert {type(c) for c in COMMANDS} == set(get_args(Command))
    assert {type(e) for e in EVENTS} == set(get_args(Event))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_command_round_trips_through_the_codec(command: Command) -> None:
    """encode then decode_command gives back an equal command, tagged with its type."""
    raw = encode(command)
    assert json.loads(raw)["type"] == type(command).__struct_config__.tag
    decoded = decode_command(raw)
    assert type(decoded) is type(command)
    assert decoded == command
    assert encode(decoded) == raw


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_event_round_trips_through_the_codec(event: Event) -> None:
    """encode then decode_event gives back an equal event, tagged with its type."""
    raw = encode(event)
    assert json.loads(raw)["type"] == type(event).__struct_config__.tag
    decoded = decode_event(raw)
    assert type(decoded) is type(event)
    assert decoded == event
    assert encode(decoded) == raw


def test_schema_discriminators_list_every_tag() -> None:
    """Each schema maps every wire tag of its union to a definition."""
    for name, union in (("commands.schema.json", Command), ("events.schema.json", Event)):
        document = _schema(name)
        mapping = document["discriminator"]["mapping"]
        assert document["discriminator"]["propertyName"] == "type"
        expected = {cls.__struct_config__.tag: f"#/$defs/{cls.__name__}" for cls in get_args(union)}
        assert mapping == expected
        assert len(document["anyOf"]) == len(expected)


def test_command_schema_documents_side_enum_and_value_ranges() -> None:
    """Business values stay plain on the wire, but their ranges are published in the schema."""
    defs = _schema("commands.schema.json")["$defs"]
    place = defs["PlaceOrder"]["properties"]
    assert place["side"]["type"] == "string"
    assert place["side"]["enum"] == ["bid", "offer"]
    assert place["order_type"]["enum"] == ["limit", "market"]
    assert place["order_type"]["default"] == "limit"
    (price, null) = place["price"]["anyOf"]
    assert price["type"] == "integer"
    assert price["minimum"] == 1
    assert price["maximum"] == MAX_PRICE
    assert null == {"type": "null"}
    assert place["quantity"]["minimum"] == 1
    assert place["quantity"]["maximum"] == MAX_QUANTITY
    listing = defs["ListTechnology"]["properties"]
    assert listing["tick_size"]["minimum"] == 1
    assert listing["lot_size"]["minimum"] == 1
    assert listing["mechanism"]["enum"] == [m.value for m in Mechanism]


def test_command_schema_documents_identifiers_and_forbids_extra_fields() -> None:
    """Identity fields carry length and pattern; unknown fields are forbidden in every command."""
    defs = _schema("commands.schema.json")["$defs"]
    for cls in get_args(Command):
        definition = defs[cls.__name__]
        assert definition["additionalProperties"] is False
        assert "type" in definition["required"]
        if cls is Tick:
            continue  # the ticker's record names no technology
        # Membership commands are exchange-wide: they name a participant, not a technology.
        field = "technology_id" if "technology_id" in definition["properties"] else "member_id"
        if cls is SetAccessMode:
            field = "participant_id"
        identifier = definition["properties"][field]
        assert identifier["minLength"] == 1
        assert identifier["maxLength"] == 64
        assert identifier["pattern"].startswith("^[A-Za-z0-9]")
    assert defs["PlaceOrder"]["required"] == [
        "type",
        "technology_id",
        "participant_id",
        "client_order_id",
        "side",
        "quantity",
    ]


def test_event_schema_documents_reason_codes_and_enums() -> None:
    """Front-ends can switch on every reject and cancel code listed in the event schema."""
    defs = _schema("events.schema.json")["$defs"]
    assert set(defs["RejectReason"]["enum"]) == {r.value for r in RejectReason}
    assert set(defs["CancelReason"]["enum"]) == {r.value for r in CancelReason}
    assert set(defs["Side"]["enum"]) == {"bid", "offer"}
    assert defs["CommandRejected"]["properties"]["reason"] == {"$ref": "#/$defs/RejectReason"}
    assert defs["Deal"]["properties"]["seq"]["minimum"] == 0
    for cls in get_args(Event):
        assert {"type", "technology_id", "seq", "timestamp_ms"} <= set(
            defs[cls.__name__]["required"]
        )
