"""The operator's subcommands of ``techx``: ``dlq``, ``export``, ``book`` and ``lag``.

Kept apart from ``cli.py`` so that file only registers them and hands them their arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from engine.commands.outcome import add_wait_arguments
from engine.errors import CommandLineError, OperatorCommandError
from engine.settings import Settings

_COMMANDS = frozenset({"dlq", "export", "book", "lag"})


def _json_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON lines")


def add_operator_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``dlq``, ``export``, ``book`` and ``lag`` on the ``techx`` parser."""
    dlq = commands.add_parser(
        "dlq",
        help="dead letters: list, show, re-drive a corrected command",
        description="Commands the engine could not read, as PostgreSQL settled them. An id is "
        "partition:offset of the original record on the command topic.",
    )
    actions = dlq.add_subparsers(dest="dlq_action", required=True)
    listing = actions.add_parser("list", help="the newest dead letters first, one line each")
    listing.add_argument("--partition", type=int, help="only this command partition's")
    listing.add_argument("--reason", help="only this reason code (e.g. schema_violation)")
    listing.add_argument(
        "--since", help="only from this UTC date/time (2026-11-27T08:00) or age (30m, 6h, 2d)"
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    _json_flag(listing, "each dead letter, whole,")
    show = actions.add_parser("show", help="one dead letter in full (raw bytes when not UTF-8)")
    show.add_argument("id", help="partition:offset, as techx dlq list shows it")
    for parser in (listing, show):
        parser.add_argument(
            "--source",
            choices=["db", "topic"],
            default="db",
            help="db: PostgreSQL's whole records and their re-drives (default); topic: the "
            "dead-letter topic as subscribers read it (read_committed)",
        )
    _json_flag(show, "it")
    redrive = actions.add_parser(
        "redrive",
        help="publish a corrected command for a dead letter (checked with the engine's decoder)",
        description="Checks the corrected command with the engine's own decoder, records the "
        "re-drive in PostgreSQL, then publishes it to the command topic keyed by its technology "
        "(as a front-end would), and waits for the engine's verdict: exit 0 accepted, 3 refused "
        "again, 4 no answer within --timeout.",
    )
    redrive.add_argument("id", help="partition:offset of the dead letter")
    source = redrive.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, help="the corrected command, one JSON object")
    source.add_argument(
        "--edit-from-stdin", action="store_true", help="read the corrected command from stdin"
    )
    redrive.add_argument("--operator", help="who re-drives it (default: the login name)")
    redrive.add_argument(
        "--force", action="store_true", help="re-drive even if this dead letter was re-driven"
    )
    add_wait_arguments(redrive)
    _json_flag(redrive, "where it went")

    export = commands.add_parser(
        "export",
        help="settled deals of a UTC date range as CSV or Parquet",
        description="Settled deals traded in [--from, --to) (UTC, end exclusive; a deal's time "
        "is the broker's time of the command that made it). Prices and quantities stay "
        "integers. Parquet needs pyarrow: pip install 'techx-engine[export]'.",
    )
    what = export.add_subparsers(dest="export_what", required=True)
    deals = what.add_parser("deals", help="settled deals")
    deals.add_argument(
        "--from",
        dest="from_",
        required=True,
        metavar="DATE",
        help="first UTC date/time (2026-11-01), inclusive",
    )
    deals.add_argument(
        "--to", required=True, metavar="DATE", help="UTC date/time where it ends, exclusive"
    )
    deals.add_argument(
        "--format", choices=["csv", "parquet"], default="csv", help="file format (default csv)"
    )
    deals.add_argument("--out", type=Path, required=True, help="the file to write")
    _json_flag(deals, "the summary")

    book = commands.add_parser(
        "book", help="a technology's book or auction state, from the market-data topic"
    )
    book.add_argument("technology_id", help="the technology")
    book.add_argument("--follow", action="store_true", help="keep printing updates until Ctrl-C")
    book.add_argument("--depth", type=int, default=10, help="price levels per side (default 10)")
    _json_flag(book, "each view")

    lag = commands.add_parser(
        "lag",
        help="committed offset against log end per command partition, for the engines' group "
        "and its outputs group",
    )
    lag.add_argument(
        "--group",
        action="append",
        help="this consumer group instead (repeatable; default: TECHX_GROUP_ID and "
        "TECHX_GROUP_ID.outputs)",
    )
    _json_flag(lag, "one object per group and partition")


def dispatch_operator(args: argparse.Namespace, settings: Settings) -> int | None:
    """Run an operator command; None when ``args`` is another command's."""
    if args.command not in _COMMANDS:
        return None
    if args.command == "dlq":
        return asyncio.run(_dlq(args, settings))
    if args.command == "export":
        from engine.commands.export import export_deals, parse_utc  # noqa: PLC0415

        return asyncio.run(
            export_deals(
                settings,
                from_ms=parse_utc(args.from_, "--from"),
                to_ms=parse_utc(args.to, "--to"),
                out=args.out,
                file_format=args.format,
                as_json=args.json,
            )
        )
    if args.command == "book":
        from engine.commands.book import show_book  # noqa: PLC0415

        if args.depth < 1:
            raise CommandLineError("--depth must be at least 1")
        return asyncio.run(
            show_book(
                settings,
                args.technology_id,
                depth=args.depth,
                follow=args.follow,
                as_json=args.json,
            )
        )
    from engine.commands.lag import show_lag  # noqa: PLC0415

    return asyncio.run(show_lag(settings, args.group, as_json=args.json))


async def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from engine.commands import dlq  # noqa: PLC0415 - each command loads what it needs

    if args.dlq_action == "list":
        if args.limit < 1:
            raise CommandLineError("--limit must be at least 1")
        if args.partition is not None and not 0 <= args.partition < settings.partitions:
            # As `techx replay --partition 7`: a partition that does not exist is bad usage,
            # not "no dead letters match".
            raise CommandLineError(
                f"partition {args.partition} does not exist: TECHX_PARTITIONS is "
                f"{settings.partitions} (0-{settings.partitions - 1})"
            )
        return await dlq.dlq_list(
            settings,
            partition=args.partition,
            reason=args.reason,
            since_ms=dlq.parse_since(args.since) if args.since else None,
            limit=args.limit,
            source=args.source,
            as_json=args.json,
        )
    if args.dlq_action == "show":
        return await dlq.dlq_show(settings, args.id, source=args.source, as_json=args.json)
    if args.file is not None:
        try:
            corrected = args.file.read_bytes()
        except OSError as e:
            raise OperatorCommandError(f"cannot read {args.file}: {e.strerror}") from e
    else:
        corrected = sys.stdin.buffer.read()
    return await dlq.dlq_redrive(
        settings,
        args.id,
        corrected.strip(),
        operator=args.operator,
        force=args.force,
        as_json=args.json,
        wait_s=None if args.no_wait else args.timeout,
    )
