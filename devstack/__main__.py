"""``python -m devstack up|down|status``: the local Kafka + PostgreSQL, run from a checkout."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace

from devstack import down, kafka, security, status, up
from devstack.errors import DevStackError
from devstack.processes import ServiceStatus
from devstack.settings import DEFAULT_KAFKA_PORT, DEFAULT_POSTGRES_PORT, StackSettings
from engine.kafka_acls import ROLES
from engine.logs import configure_logging

#: ``status`` when a service is not running (the LSB "program is not running" code).
EXIT_NOT_RUNNING = 3

_EPILOG = """\
variables:
  TECHX_KAFKA_PORT       broker port (default 29092; the controller uses port + 1)
  TECHX_POSTGRES_PORT    PostgreSQL port (default 25432)
  TECHX_STATE_DIR        jars, data, logs and PID files (default: .techx in the checkout)
  TECHX_PG_BIN           folder of initdb and pg_ctl (default /usr/lib/postgresql/15/bin)
  TECHX_STACK_SECURE     1: a new broker is locked down, as up --secure
  TECHX_KAFKA_BOOTSTRAP  a broker of yours: it is checked, and no broker is started
  TECHX_DATABASE_URL     a PostgreSQL of yours: likewise

exit status: 0 done, 1 failed (one line says why and what to do), 2 bad usage,
3 status found a service not running."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="The local development stack: a single-node Kafka broker and a private\n"
        "PostgreSQL cluster, no Docker. A development tool: it runs from a TechX checkout.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="{up,down,status}")
    up_parser = actions.add_parser(
        "up",
        help="start what is not running and wait until both servers answer (idempotent)",
        description="Start Kafka and PostgreSQL unless they already run, then wait until both "
        "answer. Tools and ports are checked first, so nothing is left half-up.",
    )
    up_parser.add_argument(
        "--secure",
        action="store_true",
        help="lock a new broker down: SASL/SCRAM-SHA-512 users for each TechX role and ACLs "
        "(kept by later ups; an open state dir is never locked down in place)",
    )
    actions.add_parser(
        "down",
        help="stop what up started; servers of yours are left alone",
        description="Stop the broker and the cluster that up started, by the PIDs it "
        "recorded. External servers (TECHX_KAFKA_BOOTSTRAP, TECHX_DATABASE_URL) are untouched.",
    )
    status_parser = actions.add_parser(
        "status",
        help=f"show each service; exit {EXIT_NOT_RUNNING} when one is not running",
        description="Show each service without changing anything; exit status "
        f"{EXIT_NOT_RUNNING} when one of them is not running.",
    )
    status_parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per service on stdout (name, running, address, pid, detail)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(
        os.environ.get("TECHX_LOG_FORMAT", "auto"), os.environ.get("TECHX_LOG_LEVEL", "info")
    )
    try:
        settings = StackSettings.from_env()
        if getattr(args, "secure", False):
            settings = replace(settings, secure=True)
        if args.action == "up":
            up(settings)
        elif args.action == "down":
            down(settings)
        services = status(settings)
    except DevStackError as e:
        return _failed(args.action, str(e), e.output)
    except OSError as e:  # the state dir or a log folder cannot be written
        hint = "check that TECHX_STATE_DIR (default: .techx in the checkout) is writable"
        return _failed(args.action, f"{type(e).__name__}: {e}; {hint}", "")
    except KeyboardInterrupt:
        return 130
    if getattr(args, "json", False):
        for service in services:
            print(json.dumps(asdict(service), sort_keys=True))
    else:
        _print(services)
    if args.action != "down":
        _print_engine_hint(settings)
    if args.action == "status" and not all(service.running for service in services):
        return EXIT_NOT_RUNNING
    return 0


def _failed(action: str, message: str, output: str) -> int:
    print(f"devstack {action}: {' '.join(message.split())}", file=sys.stderr)
    if output.strip():
        print(output.rstrip(), file=sys.stderr)
    return 1


def _print(services: list[ServiceStatus]) -> None:
    for service in services:
        state = "running" if service.running else "stopped"
        print(f"{service.name:<12} {state:<8} {service.address}  {service.detail}")


def _print_engine_hint(settings: StackSettings) -> None:
    """The engine defaults to the default ports; on others, say how to point it there."""
    exports = []
    if settings.external_kafka is None and settings.kafka_port != DEFAULT_KAFKA_PORT:
        exports.append(f"TECHX_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}")
    if settings.external_database is None and settings.postgres_port != DEFAULT_POSTGRES_PORT:
        exports.append(f"TECHX_DATABASE_URL={settings.database_url}")
    if exports:
        print(
            f"techx defaults to ports {DEFAULT_KAFKA_PORT} and {DEFAULT_POSTGRES_PORT}: prefix "
            f"its commands (not devstack's) with {' '.join(exports)}",
            file=sys.stderr,
        )
    if settings.external_kafka is None and kafka.is_secure(settings):
        print(
            "the broker is locked down: run each TechX process as its principal (README, "
            '"Locked down"), with:',
            file=sys.stderr,
        )
        for principal in ROLES:
            print(f"  {principal:<11} {security.env_hint(settings, principal)}", file=sys.stderr)
        print(
            f"  over TLS:   TECHX_KAFKA_BOOTSTRAP=127.0.0.1:{settings.tls_port} "
            "TECHX_KAFKA_SECURITY_PROTOCOL=SASL_SSL "
            f"TECHX_KAFKA_CA_FILE={security.ca_file(settings)}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    raise SystemExit(main())
