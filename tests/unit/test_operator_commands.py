"""The pure parts of the operator commands: ids, dates, bytes for people, book rendering,
and a command line whose every option says what it does."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

import pytest
import structlog

from engine.commands import cli
from engine.commands.book import render_view, view_json
from engine.commands.cli import _parser, main
from engine.commands.dlq import check_corrected, parse_since, shown_bytes
from engine.commands.export import parse_utc
from engine.errors import CommandLineError, OperatorCommandError
from engine.store.dead_letters import parse_id
from schemas.common import ListingState, Mechanism
from schemas.events import MarketView, PriceLevel

_NOV_1 = 1_793_491_200_000  # 2026-11-01T00:00:00Z


def test_a_dead_letter_id_is_partition_colon_offset() -> None:
    """`2:1041` parses; anything else is refused with an example."""
    assert parse_id("2:1041") == (2, 1041)
    for bad in ("2", "2:", ":5", "a:b", "-1:3", "2:3:4"):
        with pytest.raises(CommandLineError, match="partition:offset"):
            parse_id(bad)


def test_dates_are_utc_and_ages_count_back_from_now() -> None:
    """A date is midnight UTC; a naive time is UTC; an offset is honoured; 6h is six hours."""
    assert parse_utc("2026-11-01", "--from") == _NOV_1
    assert parse_utc("2026-11-01T08:30", "--from") == _NOV_1 + 8.5 * 3_600_000
    assert parse_utc("2026-11-01T07:00+07:00", "--from") == _NOV_1
    now = datetime(2026, 11, 1, 6, tzinfo=UTC)
    assert parse_since("6h", now) == _NOV_1
    assert parse_since("2026-11-01", now) == _NOV_1
    with pytest.raises(CommandLineError, match="--to takes a UTC date"):
        parse_utc("1 Nov", "--to")
    with pytest.raises(CommandLineError, match="--since takes"):
        parse_since("yesterday", now)


def test_bytes_are_shown_as_text_or_as_base64_and_hex() -> None:
    """UTF-8 stays text; anything else is given in base64 and hex, never mangled."""
    assert shown_bytes("đồng".encode()) == {"text": "đồng", "bytes": 7}
    assert shown_bytes(b"\xff\x00") == {"base64": "/wA=", "hex": "ff00", "bytes": 2}
    assert shown_bytes(None) == {"text": None}


def test_a_correction_is_judged_by_the_engines_decoder() -> None:
    """A correction the engine would dead-letter again is refused with its reason code."""
    with pytest.raises(OperatorCommandError, match=r"\(duplicate_key\)"):
        check_corrected(
            b'{"type":"cancel_order","technology_id":"T","participant_id":"p",'
            b'"client_order_id":"c","client_order_id":"d"}'
        )
    with pytest.raises(OperatorCommandError, match="ticker"):
        check_corrected(b'{"type":"tick"}')
    command = check_corrected(
        b'{"type":"cancel_order","technology_id":"T","participant_id":"p","client_order_id":"c"}'
    )
    assert command.technology_id == "T"  # type: ignore[union-attr]


def _view(mechanism: Mechanism, **fields: object) -> MarketView:
    return MarketView("T-1", _NOV_1, 41, mechanism, ListingState.OPEN, **fields)  # type: ignore[arg-type]


def test_the_book_shows_levels_to_the_depth_asked() -> None:
    """Continuous: both sides, best first, cut at --depth, in text and in JSON."""
    view = _view(
        Mechanism.CONTINUOUS,
        bids=[PriceLevel(990, 7, 2), PriceLevel(980, 1, 1)],
        offers=[PriceLevel(1_010, 4, 1)],
        last_price=1_000,
        last_quantity=3,
    )
    lines = render_view(view, depth=1)
    assert lines[0].startswith("T-1  continuous  open  as of 2026-11-01T00:00:00.000+00:00")
    assert "  last trade   3 @ 1,000" in lines
    assert any("990" in line and "1,010" in line for line in lines)
    assert not any("980" in line for line in lines)
    shown = json.loads(view_json(view, 1))
    assert (shown["bids"], shown["offers"]) == ([[990, 7, 2]], [[1_010, 4, 1]])


def test_auction_views_show_what_their_mechanism_has() -> None:
    """Call: the indicative uncross; English: high bid and next minimum; Dutch: the clock."""
    call = render_view(
        _view(Mechanism.CALL, indicative_price=2_440_000, indicative_volume=12, surplus=3), 5
    )
    assert "  indicative   12 @ 2,440,000 (surplus 3)" in call
    english = render_view(
        _view(Mechanism.ENGLISH, high_bid=220, next_minimum_bid=230, reserve_met=False), 5
    )
    assert "  high bid     220; next bid at least 230" in english
    assert "  reserve met  no" in english
    closed = render_view(_view(Mechanism.ENGLISH, high_bid=340, next_minimum_bid=None), 5)
    assert "  high bid     340" in closed, "a closed auction shows its high bid, no next minimum"
    dutch = render_view(_view(Mechanism.DUTCH, current_price=480, remaining_quantity=1), 5)
    assert "  clock price  480" in dutch


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found.extend(_subparsers(child))
    return found


def test_every_operator_option_has_a_help_text() -> None:
    """Each option and argument of dlq, export, book and lag says what it is for."""
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("dlq", "export", "book", "lag"):
        for parser in _subparsers(commands.choices[name]):
            for action in parser._actions:
                if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                    assert action.help, f"{parser.prog} {action.dest}"


@pytest.mark.parametrize(
    "argv",
    [
        ["dlq", "redrive", "1:2"],  # neither --file nor --edit-from-stdin
        ["export", "deals", "--from", "2026-11-01", "--to", "2026-12-01"],  # no --out
        ["export", "deals", "--from", "x", "--to", "y", "--out", "f", "--format", "xlsx"],
        ["book"],
    ],
)
def test_a_malformed_operator_command_line_exits_2(argv: list[str]) -> None:
    """argparse refuses these before anything connects."""
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "deals", "--from", "1 Nov", "--to", "2026-12-01", "--out", "f"],
        ["export", "deals", "--from", "2026-12-01", "--to", "2026-11-01", "--out", "f"],
        ["dlq", "list", "--limit", "0"],
        ["dlq", "list", "--since", "yesterday"],
        ["book", "T-1", "--depth", "0"],
        ["dlq", "show", "two:three"],
    ],
)
def test_a_bad_operator_argument_is_bad_usage_before_connecting(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value argparse lets through but the command refuses is bad usage: exit 2, as for
    argparse's own refusals and `techx replay`'s missing partition."""
    # configure_logging caches loggers on first use; later tests capture logs of their own.
    monkeypatch.setattr(cli, "configure_logging", lambda *_: None)
    with structlog.testing.capture_logs() as logs:
        assert main(argv) == 2
    (failure,) = [entry for entry in logs if entry["event"] == "command_failed"]
    assert failure["error_type"] == "CommandLineError"


def test_an_operator_command_that_cannot_be_carried_out_exits_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Well-formed, but the file cannot be written: a failure (exit 1), not bad usage."""
    monkeypatch.setattr(cli, "configure_logging", lambda *_: None)
    argv = ["export", "deals", "--from", "2026-11-01", "--to", "2026-12-01", "--out", "/no/dir/f"]
    with structlog.testing.capture_logs() as logs:
        assert main(argv) == 1
    (failure,) = [entry for entry in logs if entry["event"] == "command_failed"]
    assert failure["error_type"] == "OperatorCommandError"


def test_a_dead_letter_partition_that_does_not_exist_is_bad_usage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`techx dlq list --partition 9` of 4 partitions exits 2 as `techx replay` does, before
    connecting, instead of reporting that no dead letters match."""
    monkeypatch.setattr(cli, "configure_logging", lambda *_: None)
    monkeypatch.setenv("TECHX_PARTITIONS", "4")
    with structlog.testing.capture_logs() as logs:
        assert main(["dlq", "list", "--partition", "9"]) == 2
    (failure,) = [entry for entry in logs if entry["event"] == "command_failed"]
    assert failure["error_type"] == "CommandLineError"
    assert "TECHX_PARTITIONS is 4 (0-3)" in failure["error"]
