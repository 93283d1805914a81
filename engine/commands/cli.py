"""``techx``: the operator's and the front-end developer's command line.

Exit statuses: 0 done; 1 failed (one line says why, with a hint; a bad TECHX_* setting
too); 2 bad usage (arguments, or a partition or topic that does not exist); 3 `techx order`
refused by the engine (rejected or dead-lettered, the reason printed) or `techx stack
status` finding a service not running; 4 `techx order` got no answer in time; 141 stdout's
reader stopped reading (`| head`), as for SIGPIPE.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version

import asyncpg
import structlog
from aiokafka.errors import KafkaError

from engine.commands.outcome import add_wait_arguments
from engine.errors import (
    BrokerUnavailableError,
    CommandLineError,
    ConfigError,
    KafkaAccessDeniedError,
    SchemaMissingError,
    StoreUnavailableError,
    TechXError,
)
from engine.gateway.errors import UnavailableError as GatewayUnavailableError
from engine.logs import configure_logging
from engine.settings import Settings
from schemas.commands import LISTING_PARAMETERS

log = structlog.get_logger()


def _add_order_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`techx order ...`: every command a front-end may publish, from the shell."""
    order = commands.add_parser(
        "order",
        help="publish one command as a front-end would, and wait for the engine's answer",
        description="Publish one command as a front-end would and wait for the engine's "
        "answer: exit 0 accepted, 3 rejected or dead-lettered (the reason is printed), "
        "4 no answer within --timeout, 1 Kafka unreachable.",
    )
    order_kinds = order.add_subparsers(dest="order_kind", required=True)
    technology = "the technology's id (the record's key: it picks the partition)"
    participant = "the participant acting (participant_id)"
    for kind, what in (("bid", "a bid"), ("offer", "an offer")):
        place = order_kinds.add_parser(kind, help=f"place {what}")
        place.add_argument("technology_id", help=technology)
        place.add_argument("quantity", type=int, help="licence units, a multiple of the lot")
        place.add_argument(
            "price", type=int, nargs="?", help="whole đồng per unit; omit for a market order"
        )
        place.add_argument("--participant", required=True, help=participant)
        place.add_argument(
            "--client-order-id", required=True, help="your id for the order, unique per participant"
        )
        place.add_argument(
            "--tif", default="gtc", choices=["gtc", "ioc", "fok", "gtd"], help="time in force"
        )
        place.add_argument("--expires-at-ms", type=int, help="gtd: expiry on the broker's clock")
        place.add_argument("--post-only", action="store_true", help="refused if it would trade")
        _add_wait_options(place)
    amend = order_kinds.add_parser("amend", help="change a live order's quantity or price")
    amend.add_argument("technology_id", help=technology)
    amend.add_argument("--participant", required=True, help=participant)
    amend.add_argument("--client-order-id", required=True, help="the live order's id")
    amend.add_argument("--quantity", type=int, help="the new quantity (unchanged when omitted)")
    amend.add_argument("--price", type=int, help="the new price (unchanged when omitted)")
    _add_wait_options(amend)
    for action in ("halt", "resume", "close", "withdraw"):
        manage = order_kinds.add_parser(action, help=f"{action} a listing (seller or operator)")
        manage.add_argument("technology_id", help=technology)
        manage.add_argument("--participant", required=True, help="the seller or an operator")
        _add_wait_options(manage)
    cancel = order_kinds.add_parser("cancel", help="cancel a live order")
    cancel.add_argument("technology_id", help=technology)
    cancel.add_argument("--participant", required=True, help=participant)
    cancel.add_argument("--client-order-id", required=True, help="the live order's id")
    _add_wait_options(cancel)
    listing = order_kinds.add_parser("list", help="list a technology for trading")
    listing.add_argument("technology_id", help="the new technology's id")
    listing.add_argument("--participant", required=True, help="the seller listing it")
    listing.add_argument("--name", required=True, help="what people see, 1-200 characters")
    listing.add_argument("--tick", type=int, default=1, help="price step in đồng (default 1)")
    listing.add_argument("--lot", type=int, default=1, help="quantity step in units (default 1)")
    listing.add_argument("--reserve", type=int, help="the lowest price the seller accepts")
    listing.add_argument(
        "--mechanism",
        default="continuous",
        choices=["continuous", "call", "english", "sealed_first", "sealed_second", "dutch"],
        help="how it trades (schemas/MECHANISMS.md; default continuous)",
    )
    for parameter in LISTING_PARAMETERS:
        listing.add_argument(
            f"--{parameter.replace('_', '-')}",
            type=int,
            dest=parameter,
            help=f"the mechanism's {parameter.replace('_', ' ')} (schemas/MECHANISMS.md)",
        )
    listing.add_argument("--reserve-shown", action="store_true", help="english: show the reserve")
    _add_wait_options(listing)


def _add_wait_options(parser: argparse.ArgumentParser) -> None:
    """How `techx order` waits for the engine's answer, and how it prints it."""
    add_wait_arguments(parser)
    parser.add_argument(
        "--json", action="store_true", help="print the outcome as one JSON object on stdout"
    )


def _offset(raw: str) -> int:
    """A Kafka offset on the command line: a whole number, 0 or more."""
    try:
        offset = int(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not an offset: {raw!r}") from e
    if offset < 0:
        raise argparse.ArgumentTypeError(f"an offset is 0 or more, not {offset}")
    return offset


def _add_membership_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """`techx participant ...` and `techx access ...`: the operator's register, written to
    every command partition."""
    participant = commands.add_parser(
        "participant", help="register, suspend or reinstate a participant (operators)"
    )
    kinds = participant.add_subparsers(dest="participant_action", required=True)
    register = kinds.add_parser("register", help="admit a participant with its roles")
    register.add_argument("member_id", help="the participant's id")
    register.add_argument(
        "--role",
        action="append",
        required=True,
        choices=["seller", "buyer", "broker", "operator"],
        help="repeat for several roles",
    )
    register.add_argument(
        "--acts-for", action="append", default=[], help="broker: a participant it acts for"
    )
    _add_wait_options(register)
    for action, what in (("suspend", "stop it acting"), ("reinstate", "let it act again")):
        change = kinds.add_parser(action, help=f"{what}")
        change.add_argument("member_id", help="the participant's id")
        _add_wait_options(change)
    access = commands.add_parser("access", help="open (a sandbox) or members_only (operators)")
    access.add_argument(
        "mode",
        choices=["open", "members_only"],
        help="open: anyone acts (a sandbox); members_only: registered, active participants",
    )
    _add_wait_options(access)
    for parser in (participant, access):
        parser.add_argument(
            "--operator",
            default="exchange-ops",
            help="the operator sending the command (default: the bootstrap operator)",
        )


def _add_gateway_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`techx gateway` and `techx keys ...`: the HTTP/WebSocket way in, and its API keys."""
    gateway = commands.add_parser(
        "gateway", help="serve HTTP and WebSocket for front-ends (TECHX_GATEWAY_* settings)"
    )
    gateway.add_argument("--host", help="listen here instead of TECHX_GATEWAY_HOST")
    gateway.add_argument("--port", type=int, help="listen here instead of TECHX_GATEWAY_PORT")
    keys = commands.add_parser("keys", help="API keys of the gateway (secrets shown once)")
    actions = keys.add_subparsers(dest="keys_action", required=True)
    create = actions.add_parser("create", help="a new key for a participant; prints it once")
    create.add_argument("participant_id", help="the participant the key acts as")
    rotate = actions.add_parser("rotate", help="a new secret for a key; the old one is void")
    rotate.add_argument("key_id", help="the key's id (techx keys list)")
    revoke = actions.add_parser("revoke", help="revoke a key for good")
    revoke.add_argument("key_id", help="the key's id (techx keys list)")
    listing = actions.add_parser("list", help="keys and their dates, never their secrets")
    listing.add_argument("--participant", help="only this participant's keys")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="techx",
        description="TechX, the matching engine of a technology exchange: the operator's and "
        "the front-end developer's command line. Settings come from TECHX_* variables "
        "(README, Settings).",
        epilog="exit status: 0 done, 1 failed (one line says why; a bad setting too), 2 bad "
        "usage (or a partition or topic that does not exist), 3 order refused by the engine "
        "or a stack service not running, 4 order not answered in time, 141 stdout's reader "
        "stopped reading (| head)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    stack_parser = commands.add_parser(
        "stack",
        help="local Kafka + PostgreSQL, no Docker (python -m devstack, in a checkout)",
        description="The local development stack; the same as python -m devstack, which only "
        "a checkout has. status exits 3 when a service is not running.",
    )
    stack_parser.add_argument(
        "action",
        choices=["up", "down", "status"],
        help="up: start what is not running; down: stop it; status: show each service",
    )
    stack_parser.add_argument(
        "--json", action="store_true", help="status: one JSON object per service on stdout"
    )

    commands.add_parser("setup", help="create topics and tables (idempotent)")
    commands.add_parser("run", help="run one engine process (a consumer group member)")
    commands.add_parser(
        "ticker",
        help="append a tick to every command partition every TECHX_TICK_INTERVAL_MS "
        "(when engines run with TECHX_TICK_INTERVAL_MS=0)",
    )

    demo = commands.add_parser("demo", help="engine and a simulated front-end on running servers")
    demo.add_argument("--seconds", type=float, default=20.0, help="how long (default 20)")
    demo.add_argument("--rate", type=int, default=50, help="orders per second (default 50)")
    demo.add_argument(
        "--seed", type=int, default=2026, help="the simulated flow's seed (default 2026)"
    )

    _add_order_commands(commands)
    _add_membership_commands(commands)
    _add_gateway_commands(commands)
    from engine.commands.operator_cli import add_operator_commands  # noqa: PLC0415

    add_operator_commands(commands)

    acls = commands.add_parser(
        "acls",
        help="the Kafka ACLs of TechX's principals: print them as kafka-acls commands, or apply",
        description="Print the ACLs that TechX's principals (engine, gateway, operator, "
        "subscriber, backoffice) need on TECHX_TOPIC_PREFIX's topics and TECHX_GROUP_ID's "
        "engines, as kafka-acls.sh commands for a managed Kafka; with --apply, create them "
        "on TECHX_KAFKA_BOOTSTRAP as the TECHX_KAFKA_USERNAME given (an administrator).",
    )
    acls.add_argument(
        "--principal",
        action="append",
        default=[],
        metavar="ROLE=User:NAME",
        help="the principal a role runs as, when not User:ROLE (repeatable)",
    )
    acls.add_argument("--apply", action="store_true", help="create them on the broker")

    replay = commands.add_parser(
        "replay",
        help="rebuild a partition's events from the log",
        description="Recompute a partition's events from its command log (always from "
        "offset 0: an audit trusts the log, not a snapshot). Nothing live is touched. Shows "
        "progress with a total and an ETA on stderr.",
    )
    replay.add_argument(
        "--partition", type=int, required=True, help="the command partition to replay"
    )
    replay.add_argument(
        "--from-offset",
        type=_offset,
        default=0,
        help="count and write events from this offset on (earlier ones are computed silently)",
    )
    replay.add_argument("--to-offset", type=_offset, help="exclusive; default: the log's end")
    replay.add_argument("--out", help="write events as JSON lines to this file")
    replay.add_argument(
        "--json", action="store_true", help="print the summary as one JSON object on stdout"
    )
    replay.add_argument(
        "--compare",
        action="store_true",
        help="compare the replayed deals with those settled in PostgreSQL",
    )

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (
        args.command == "replay"
        and args.to_offset is not None
        and args.to_offset < args.from_offset
    ):
        # An empty range replayed "successfully" would tell an auditor nothing was there.
        parser.error(f"--to-offset {args.to_offset} is before --from-offset {args.from_offset}")
    if args.command == "stack":
        return _stack(args.action, as_json=args.json)
    try:
        try:
            settings = Settings.from_env()
        except ConfigError:
            _configure_fallback_logging()
            raise
        configure_logging(settings.log_format, settings.log_level)
        if (
            _is_one_shot(args)
            and settings.log_level != "debug"
            and not settings.kafka_security.uses_sasl
        ):
            # aiokafka logs each failed connection attempt; the command's own error says it
            # once, with a hint. Long-running processes keep the library's lines, and so does
            # SASL: a wrong password shows only in aiokafka's SaslAuthenticationFailed line.
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        return _dispatch(args, settings)
    except CommandLineError as e:
        _failed(args.command, [e])
        return 2
    except BrokenPipeError:
        # `techx lag --json | head`: the reader has what it wanted. No error line, and stdout
        # pointed away so that the interpreter's last flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE_CLOSED
    except (TechXError, KafkaError, OSError, asyncpg.PostgresError) as e:
        return _failed(args.command, [e])
    except BaseExceptionGroup as group:
        # The engine's stages run in a TaskGroup, so its failures arrive grouped.
        errors = _leaves(group)
        if all(isinstance(error, TechXError) for error in errors):
            return _failed(args.command, errors)
        raise
    except KeyboardInterrupt:
        return 130


#: Commands that do one thing and exit, for whom a library's retry lines are noise.
_ONE_SHOT_COMMANDS = frozenset(
    {"setup", "order", "participant", "access", "keys", "replay", "acls", "dlq", "export", "lag"}
)

#: Exit status when stdout's reader went away (`| head`): the shell's own code for SIGPIPE.
EXIT_PIPE_CLOSED = 141


def _is_one_shot(args: argparse.Namespace) -> bool:
    """`techx book` is one-shot unless it follows the market: then it runs as long as an
    engine, and aiokafka's lines are the only sign of a broker gone away meanwhile."""
    if args.command == "book":
        return not args.follow
    return args.command in _ONE_SHOT_COMMANDS


def _configure_fallback_logging() -> None:
    """Logging for the error of a bad setting, which comes before the settings that choose the
    format: JSON off a terminal like every other failure (TECHX_LOG_FORMAT when that one is
    valid). A process that configured logging already (a test capturing it) keeps its own."""
    if structlog.is_configured():
        return
    requested = os.environ.get("TECHX_LOG_FORMAT", "auto").strip().lower()
    configure_logging(requested if requested in ("auto", "json", "console") else "auto", "info")


def _version() -> str:
    """The installed distribution's version; a bare checkout (never installed) says so."""
    try:
        return version("techx-engine")
    except PackageNotFoundError:
        return "(not installed: run from a checkout without pip install)"


def hint_for(error: BaseException) -> str | None:
    """What the operator can do about an error, in a few words; None when its message
    already says it (or nothing general helps)."""
    if isinstance(error, KafkaAccessDeniedError | CommandLineError):
        return None
    if isinstance(error, BrokerUnavailableError | KafkaError):
        return (
            "is Kafka running at TECHX_KAFKA_BOOTSTRAP? (python -m devstack status, in a checkout)"
        )
    if isinstance(error, StoreUnavailableError):
        return (
            "is PostgreSQL running at TECHX_DATABASE_URL? "
            "(python -m devstack status, in a checkout)"
        )
    if isinstance(
        error, SchemaMissingError | asyncpg.UndefinedTableError | asyncpg.UndefinedColumnError
    ):
        return (
            "this database has no TechX tables, or older ones: run `techx setup` (it migrates), "
            "or check TECHX_DATABASE_URL"
        )
    if isinstance(error, ConfigError):
        return "fix the variable, or unset it for its default (README, Settings)"
    if isinstance(error, GatewayUnavailableError):
        return (
            "are Kafka and PostgreSQL running at TECHX_KAFKA_BOOTSTRAP and TECHX_DATABASE_URL? "
            "(python -m devstack status, in a checkout)"
        )
    if isinstance(error, asyncpg.InsufficientPrivilegeError):
        return "the PostgreSQL role of TECHX_DATABASE_URL may not do this (deploy/README.md)"
    return None


def _failed(command: str, errors: list[BaseException]) -> int:
    """One line per error (a log line: JSON, or a console line on a terminal), no traceback."""
    for error in errors:
        hint = hint_for(error)
        log.error(
            "command_failed",
            command=command,
            error=" ".join(str(error).split()) or repr(error),
            error_type=type(error).__name__,
            **({"hint": hint} if hint else {}),
        )
    return 1


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for error in group.exceptions:
        leaves.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    return leaves


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from engine.commands.operator_cli import dispatch_operator  # noqa: PLC0415 - same module

    operated = dispatch_operator(args, settings)
    if operated is not None:
        return operated
    if args.command == "setup":
        from engine.commands.setup import setup  # noqa: PLC0415 - each command loads what it needs

        asyncio.run(setup(settings))
        return 0
    if args.command == "run":
        from engine.commands.run import run_engine  # noqa: PLC0415 - same reason

        asyncio.run(run_engine(settings))
        return 0
    if args.command == "ticker":
        from engine.producers.ticker import run_ticker  # noqa: PLC0415

        return asyncio.run(_tick_until_signalled(settings, run_ticker))
    if args.command == "demo":
        from engine.commands.demo import run_demo  # noqa: PLC0415

        return asyncio.run(run_demo(settings, args.seconds, args.rate, args.seed))
    if args.command == "order":
        from engine.commands.order import send_order  # noqa: PLC0415

        return asyncio.run(send_order(settings, args))
    if args.command in {"participant", "access"}:
        from engine.commands.order import send_membership  # noqa: PLC0415

        return asyncio.run(send_membership(settings, args))
    if args.command == "gateway":
        from engine.commands.gateway import run_gateway  # noqa: PLC0415

        return asyncio.run(run_gateway(_gateway_settings(settings, args.host, args.port)))
    if args.command == "keys":
        from engine.commands.keys import keys_command  # noqa: PLC0415

        argument = getattr(args, "participant_id", None) or getattr(args, "key_id", None)
        if args.keys_action == "list":
            argument = args.participant
        return asyncio.run(keys_command(settings, args.keys_action, argument))
    if args.command == "acls":
        from engine import kafka_acls as acls  # noqa: PLC0415

        principals = acls.parse_principals(args.principal)
        if args.apply:
            rules = acls.acl_rules(settings.topics, settings.group_id)
            asyncio.run(acls.apply_acls(settings, rules, principals))
        else:
            acls.print_acls(settings, principals)
        return 0
    if args.command == "replay":
        from engine.commands.replay import run_replay  # noqa: PLC0415

        return asyncio.run(
            run_replay(
                settings,
                args.partition,
                args.from_offset,
                args.to_offset,
                args.out,
                args.compare,
                as_json=args.json,
            )
        )
    raise AssertionError(args.command)


def _gateway_settings(settings: Settings, host: str | None, port: int | None) -> Settings:
    """The command line's --host and --port over TECHX_GATEWAY_HOST and _PORT, checked alike."""
    overrides = dict(os.environ)
    if host is not None:
        overrides["TECHX_GATEWAY_HOST"] = host
    if port is not None:
        overrides["TECHX_GATEWAY_PORT"] = str(port)
    return replace(settings, gateway=Settings.from_env(overrides).gateway)


async def _tick_until_signalled(
    settings: Settings, ticker: Callable[[Settings, asyncio.Event], Awaitable[None]]
) -> int:
    """Run the ticker until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    interval = settings.tick_interval_ms or 500
    await ticker(replace(settings, tick_interval_ms=interval), stop)
    return 0


def _stack(action: str, *, as_json: bool = False) -> int:
    """``techx stack`` is ``python -m devstack``, which only a checkout has (not the wheel)."""
    try:
        from devstack.__main__ import main as devstack_main  # noqa: PLC0415 - dev checkout only
    except ModuleNotFoundError as e:
        if e.name not in ("devstack", "devstack.__main__"):
            raise  # a checkout's devstack that is broken: show it
        print(
            "the local stack is a development tool: run `python -m devstack` from a TechX checkout",
            file=sys.stderr,
        )
        return 2
    return devstack_main([action, "--json"] if as_json and action == "status" else [action])
