"""``techx``: the operator's and the front-end developer's command line."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import structlog

from engine.errors import TechXError
from engine.logs import configure_logging
from engine.settings import Settings
from schemas.commands import LISTING_PARAMETERS

log = structlog.get_logger()


def _add_order_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`techx order ...`: every command a front-end may publish, from the shell."""
    order = commands.add_parser("order", help="publish one command as a front-end would")
    order_kinds = order.add_subparsers(dest="order_kind", required=True)
    for kind, what in (("bid", "a bid"), ("offer", "an offer")):
        place = order_kinds.add_parser(kind, help=f"place {what}")
        place.add_argument("technology_id")
        place.add_argument("quantity", type=int)
        place.add_argument("price", type=int, nargs="?", help="omit for a market order")
        place.add_argument("--participant", required=True)
        place.add_argument("--client-order-id", required=True)
        place.add_argument(
            "--tif", default="gtc", choices=["gtc", "ioc", "fok", "gtd"], help="time in force"
        )
        place.add_argument("--expires-at-ms", type=int, help="gtd: expiry on the broker's clock")
        place.add_argument("--post-only", action="store_true", help="refused if it would trade")
    amend = order_kinds.add_parser("amend", help="change a live order's quantity or price")
    amend.add_argument("technology_id")
    amend.add_argument("--participant", required=True)
    amend.add_argument("--client-order-id", required=True)
    amend.add_argument("--quantity", type=int)
    amend.add_argument("--price", type=int)
    for action in ("halt", "resume", "close", "withdraw"):
        manage = order_kinds.add_parser(action, help=f"{action} a listing (seller or operator)")
        manage.add_argument("technology_id")
        manage.add_argument("--participant", required=True)
    cancel = order_kinds.add_parser("cancel", help="cancel a live order")
    cancel.add_argument("technology_id")
    cancel.add_argument("--participant", required=True)
    cancel.add_argument("--client-order-id", required=True)
    listing = order_kinds.add_parser("list", help="list a technology for trading")
    listing.add_argument("technology_id")
    listing.add_argument("--participant", required=True)
    listing.add_argument("--name", required=True)
    listing.add_argument("--tick", type=int, default=1)
    listing.add_argument("--lot", type=int, default=1)
    listing.add_argument("--reserve", type=int)
    listing.add_argument(
        "--mechanism",
        default="continuous",
        choices=["continuous", "call", "english", "sealed_first", "sealed_second", "dutch"],
    )
    for parameter in LISTING_PARAMETERS:
        listing.add_argument(f"--{parameter.replace('_', '-')}", type=int, dest=parameter)
    listing.add_argument("--reserve-shown", action="store_true", help="english: show the reserve")


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
    for action, what in (("suspend", "stop it acting"), ("reinstate", "let it act again")):
        change = kinds.add_parser(action, help=f"{what}")
        change.add_argument("member_id", help="the participant's id")
    access = commands.add_parser("access", help="open (a sandbox) or members_only (operators)")
    access.add_argument("mode", choices=["open", "members_only"])
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
    create.add_argument("participant_id")
    rotate = actions.add_parser("rotate", help="a new secret for a key; the old one is void")
    rotate.add_argument("key_id")
    revoke = actions.add_parser("revoke", help="revoke a key for good")
    revoke.add_argument("key_id")
    listing = actions.add_parser("list", help="keys and their dates, never their secrets")
    listing.add_argument("--participant")


def _version() -> str:
    try:
        return importlib.metadata.version("techx-engine")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="techx", description=__doc__)
    # What an image or an installed wheel holds (its smoke test runs `techx --version`).
    parser.add_argument("--version", action="version", version=f"techx {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    stack_parser = commands.add_parser(
        "stack", help="local Kafka + PostgreSQL, no Docker (`python -m devstack` in a checkout)"
    )
    stack_parser.add_argument("action", choices=["up", "down", "status"])

    commands.add_parser("setup", help="create topics and tables (idempotent)")
    commands.add_parser("run", help="run one engine process (a consumer group member)")
    commands.add_parser(
        "ticker",
        help="append a tick to every command partition every TECHX_TICK_INTERVAL_MS "
        "(when engines run with TECHX_TICK_INTERVAL_MS=0)",
    )

    demo = commands.add_parser("demo", help="engine and a simulated front-end on running servers")
    demo.add_argument("--seconds", type=float, default=20.0)
    demo.add_argument("--rate", type=int, default=50, help="orders per second")
    demo.add_argument("--seed", type=int, default=2026)

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

    replay = commands.add_parser("replay", help="rebuild a partition's events from the log")
    replay.add_argument("--partition", type=int, required=True)
    replay.add_argument("--from-offset", type=int, default=0)
    replay.add_argument("--to-offset", type=int, help="exclusive; default: the log's end")
    replay.add_argument("--out", help="write events as JSON lines to this file")
    replay.add_argument(
        "--compare",
        action="store_true",
        help="compare the replayed deals with those settled in PostgreSQL",
    )

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "stack":
        return _stack(args.action)
    try:
        settings = Settings.from_env()
        configure_logging(settings.log_format, settings.log_level)
        return _dispatch(args, settings)
    except TechXError as e:
        return _failed(args.command, [e])
    except BaseExceptionGroup as group:
        # The engine's stages run in a TaskGroup, so its failures arrive grouped.
        errors = _leaves(group)
        if all(isinstance(error, TechXError) for error in errors):
            return _failed(args.command, errors)
        raise
    except KeyboardInterrupt:
        return 130


def _failed(command: str, errors: list[BaseException]) -> int:
    for error in errors:
        log.error(
            "command_failed", command=command, error=str(error), error_type=type(error).__name__
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
                settings, args.partition, args.from_offset, args.to_offset, args.out, args.compare
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


def _stack(action: str) -> int:
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
    return devstack_main([action])
