"""The command lines explain themselves: a version, help on every option and command, and
help text without reStructuredText backticks (argparse shows it verbatim); the pure parts
of `techx order` and progress reporting."""

from __future__ import annotations

import argparse
import io
import json
import os
import pty
import select
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import asyncpg
import pytest

import devstack.__main__
from devstack.__main__ import _parser as devstack_parser
from devstack.__main__ import main as devstack_main
from engine.commands.cli import _parser as techx_parser
from engine.commands.cli import hint_for, main
from engine.commands.outcome import Outcome
from engine.errors import (
    BrokerUnavailableError,
    CommandLineError,
    ConfigError,
    SchemaMissingError,
)
from engine.gateway.errors import UnavailableError as GatewayUnavailableError
from engine.progress import Progress, eta_text, plain_line
from schemas.common import OrderType, RejectReason, Side
from schemas.events import CommandRejected, OrderAccepted


def _parsers(
    parser: argparse.ArgumentParser, path: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The parser and every subcommand's parser below it, with its command path."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


PARSERS = [*_parsers(techx_parser(), "techx"), *_parsers(devstack_parser(), "devstack")]


@pytest.mark.parametrize(("path", "parser"), PARSERS, ids=[path for path, _ in PARSERS])
def test_every_option_and_subcommand_has_help(path: str, parser: argparse.ArgumentParser) -> None:
    """An option without help is an option nobody can discover from the shell."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            named = {choice.dest for choice in action._choices_actions if choice.help}
            assert named == set(action.choices), f"{path}: a subcommand lacks help"
        elif not isinstance(action, argparse._HelpAction):
            assert action.help, f"{path}: {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize(("path", "parser"), PARSERS, ids=[path for path, _ in PARSERS])
def test_help_shows_no_backticks(path: str, parser: argparse.ArgumentParser) -> None:
    """argparse prints help, descriptions and epilogs verbatim: markup would show as is."""
    assert "`" not in parser.format_help(), path


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    """`techx --version` prints the installed distribution's version and exits 0."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"techx {version('techx-engine')}"


@pytest.mark.parametrize("timeout", ["0", "-1", "x", "7200"])
def test_an_order_timeout_out_of_range_is_a_usage_error(timeout: str) -> None:
    """--timeout must be a number of seconds above 0 and at most an hour."""
    with pytest.raises(SystemExit) as exited:
        main(
            ["order", "cancel", "T-1", "--participant", "a", "--client-order-id", "c",
             "--timeout", timeout]
        )  # fmt: skip
    assert exited.value.code == 2


def test_order_options_parse_with_their_defaults() -> None:
    """By default `techx order` waits 10 s and prints text."""
    args = techx_parser().parse_args(["order", "bid", "T-1", "2", "--participant", "a",
                                      "--client-order-id", "c"])  # fmt: skip
    assert (args.timeout, args.no_wait, args.json, args.price) == (10.0, False, False, None)


def test_errors_carry_a_hint_unless_their_message_says_it_all() -> None:
    """Unreachable servers and bad settings get a hint; a wrong partition needs none."""
    assert "TECHX_KAFKA_BOOTSTRAP" in (hint_for(BrokerUnavailableError("x")) or "")
    assert "unset it" in (hint_for(ConfigError("x")) or "")
    assert hint_for(CommandLineError("partition 9 does not exist")) is None
    # A database never set up is no malformed variable: the hint says to run setup.
    assert "techx setup" in (hint_for(SchemaMissingError("table api_keys is missing")) or "")
    assert "techx setup" in (hint_for(asyncpg.UndefinedTableError("no deals")) or "")
    assert "TECHX_KAFKA_BOOTSTRAP" in (
        hint_for(GatewayUnavailableError("unavailable", "cannot reach Kafka")) or ""
    )


def test_stack_status_exits_3_where_nothing_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`techx stack status --json` on a state dir with nothing started exits 3 and says so."""
    # Leave this process's logging alone (it would keep writing to this test's capture).
    monkeypatch.setattr(devstack.__main__, "configure_logging", lambda *_: None)
    monkeypatch.setenv("TECHX_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("TECHX_KAFKA_PORT", "39992")
    monkeypatch.setenv("TECHX_POSTGRES_PORT", "39995")
    for variable in ("TECHX_KAFKA_BOOTSTRAP", "TECHX_DATABASE_URL", "TECHX_STACK_SECURE"):
        monkeypatch.delenv(variable, raising=False)
    assert main(["stack", "status", "--json"]) == 3
    services = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(s["name"], s["running"]) for s in services] == [
        ("kafka", False),
        ("postgres", False),
    ]
    assert devstack_main(["status"]) == 3


def _rejected(offset: int) -> CommandRejected:
    return CommandRejected(
        technology_id="T-1",
        seq=3,
        timestamp_ms=1,
        source_offset=offset,
        command="place_order",
        participant_id="a",
        client_order_id="c",
        reason=RejectReason.PRICE_OFF_TICK,
        detail="price 5500 is not a multiple of the tick 1000",
    )


def test_an_outcome_is_refused_by_a_rejection_or_a_dead_letter() -> None:
    """The verdict decides the exit status: only an answer without either is accepted."""
    accepted = OrderAccepted(
        technology_id="T-1", seq=2, timestamp_ms=1, source_offset=7, order_id="T-1:o1",
        participant_id="a", client_order_id="c", side=Side.BID, order_type=OrderType.LIMIT,
        quantity=1, price=1000,
    )  # fmt: skip
    assert Outcome(0, 7, [accepted]).verdict == "accepted"
    assert Outcome(0, 7, [accepted]).reason is None
    rejected = Outcome(0, 8, [_rejected(8)])
    assert rejected.verdict == "rejected"
    assert rejected.reason == "price_off_tick: price 5500 is not a multiple of the tick 1000"
    dead = Outcome(0, 9, dead_letter_reason="schema_violation", dead_letter_detail="bad id")
    assert (dead.verdict, dead.reason) == ("dead_lettered", "schema_violation: bad id")
    assert json.loads(json.dumps(rejected.to_json()))["events"][0]["reason"] == "price_off_tick"


def test_progress_lines_give_counts_percent_and_eta() -> None:
    """Off a terminal, progress is a plain line every few seconds with an ETA."""
    assert eta_text(0, 100, 5.0) == "?"
    assert eta_text(25, 100, 10.0) == "30 s"
    assert plain_line("replay partition 0", 2500, 10000, "commands", 10.0) == (
        "replay partition 0: 2,500/10,000 commands (25%), 10 s elapsed, ETA 30 s"
    )
    now = [0.0]
    stream = io.StringIO()
    with Progress("replay", 100, "commands", stream=stream, clock=lambda: now[0]) as progress:
        progress.update(10)  # too soon for a line
        now[0] = 6.0
        progress.update(20)
        now[0] = 8.0
    lines = stream.getvalue().splitlines()
    assert lines == [
        "replay: 30/100 commands (30%), 6 s elapsed, ETA 14 s",
        "replay: 30/100 commands (30%), 8 s elapsed, ETA 19 s",
    ]


def test_progress_can_be_silenced() -> None:
    """--json callers and tests turn it off: nothing is written."""
    stream = io.StringIO()
    now = [0.0]
    with Progress("x", 10, "things", stream=stream, clock=lambda: now[0], enabled=False) as p:
        now[0] = 100.0
        p.update(10)
    assert stream.getvalue() == ""


def test_progress_draws_a_bar_on_a_terminal_that_reports_no_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pseudo-terminal of 0 x 0 (script, some CI runners) still gets a bar with the total:
    tqdm asks stderr's size itself and, told 0 rows, would draw nothing."""
    controller, terminal = pty.openpty()  # a new pty reports 0 columns and 0 rows
    try:
        with open(terminal, "w", encoding="utf-8", closefd=False) as stream:
            monkeypatch.setattr(sys, "stderr", stream)  # where progress goes by default
            with Progress("replay partition 0", 100, "commands") as progress:
                progress.update(100)
        drawn = _read_terminal(controller, until="100/100")
    finally:
        os.close(controller)
        os.close(terminal)
    assert "replay partition 0: 100%" in drawn
    assert "100/100" in drawn


def _read_terminal(controller: int, until: str, timeout_s: float = 10.0) -> str:
    """What was written to a pty so far: the kernel hands it to the controller side a bit
    later, in pieces, so read until ``until`` shows (or the time is up)."""
    drawn = ""
    deadline = time.monotonic() + timeout_s
    while until not in drawn and time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.1)
        if ready:
            drawn += os.read(controller, 65536).decode("utf-8", "replace")
    return drawn
