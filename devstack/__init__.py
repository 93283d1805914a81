"""The local development stack: a single-node Kafka broker and a private PostgreSQL, no Docker.

A development tool that lives in the checkout and is not shipped in the wheel: it needs
``deploy/local`` (the Maven POM and the broker's config templates). ``up`` is idempotent,
``down`` stops only what ``up`` started (by the PIDs it recorded) and stale PID files are
recognised, so an interrupted session never leaves the next one confused. With
``TECHX_KAFKA_BOOTSTRAP`` or ``TECHX_DATABASE_URL`` set, that server is the user's: it is
checked, never started or stopped.

The functions are synchronous because the command line and pytest fixtures call them once;
from async code use ``await asyncio.to_thread(devstack.up, settings)``.
"""

from __future__ import annotations

import time

import structlog

from devstack import kafka, postgres, security
from devstack.errors import (
    DevStackError,
    MissingToolError,
    StackConfigError,
    StackError,
    StackTimeoutError,
)
from devstack.processes import ServiceStatus, since, state_lock
from devstack.settings import StackSettings
from engine.kafka_security import KafkaSecurity
from engine.settings import Topics

__all__ = [
    "DevStackError",
    "MissingToolError",
    "ServiceStatus",
    "StackConfigError",
    "StackError",
    "StackSettings",
    "StackTimeoutError",
    "client_security",
    "down",
    "grant_acls",
    "start_kafka",
    "start_postgres",
    "status",
    "stop_kafka",
    "stop_postgres",
    "up",
]

log = structlog.get_logger()


def up(settings: StackSettings) -> None:
    """Start whatever of Kafka and PostgreSQL is not running yet, and wait until both serve.

    Every tool and port is checked before anything starts, so a missing program leaves
    nothing half-up. Kafka is launched first and awaited last: its JVM start overlaps
    PostgreSQL's.
    """
    started = time.monotonic()
    with state_lock(settings.state_dir):
        java = None if settings.external_kafka is not None else kafka.find_java()
        pg_bin = None if settings.external_database is not None else postgres.preflight(settings)
        if settings.external_kafka is not None:
            kafka.check_external(settings.external_kafka, settings.external_kafka_security)
        if settings.external_database is not None:
            postgres.check_external(settings.external_database)
        pending = None if java is None else kafka.launch(settings, java)
        if pg_bin is not None:
            postgres.start(settings, pg_bin)
        if pending is not None:
            kafka.await_ready(settings, pending)
            if kafka.is_secure(settings):
                security.grant_acls(settings, Topics(settings.topic_prefix), settings.group_id)
    log.info("stack_up", duration_s=since(started), state_dir=str(settings.state_dir))


def client_security(settings: StackSettings, principal: str) -> KafkaSecurity:
    """How to connect to the locked-down local broker as one of its principals (``admin``,
    ``engine``, ``gateway``, ``operator``, ``subscriber``, ``backoffice``)."""
    if not kafka.is_secure(settings):
        raise StackError(
            f"the local broker in {settings.state_dir} is open: it has no principal {principal!r}",
            hint="start a locked-down stack with `python -m devstack up --secure` "
            "on a fresh TECHX_STATE_DIR",
        )
    return security.client_security(settings, principal)


def grant_acls(settings: StackSettings, topics: Topics, group_id: str) -> int:
    """Grant TechX's roles their ACLs on another topic prefix and engine group (tests)."""
    return security.grant_acls(settings, topics, group_id)


def down(settings: StackSettings) -> None:
    """Stop the broker and the cluster that ``up`` started; external servers are left alone."""
    with state_lock(settings.state_dir):
        if settings.external_kafka is None:
            kafka.stop(settings)
        if settings.external_database is None:
            postgres.stop(settings)


def status(settings: StackSettings) -> list[ServiceStatus]:
    """Report each service without changing anything (a stale PID file is only reported)."""
    return [kafka.status(settings), postgres.status(settings)]


def stop_postgres(settings: StackSettings) -> None:
    """Stop only the local PostgreSQL (tests of the engine riding out a database outage)."""
    _refuse_external_database(settings, "stop")
    with state_lock(settings.state_dir):
        postgres.stop(settings)


def start_postgres(settings: StackSettings) -> None:
    """Start only the local PostgreSQL again, and wait until it serves (idempotent)."""
    _refuse_external_database(settings, "start")
    with state_lock(settings.state_dir):
        postgres.start(settings, postgres.preflight(settings))


def stop_kafka(settings: StackSettings) -> None:
    """Stop only the local broker (tests of the engine riding out a broker outage)."""
    _refuse_external_kafka(settings, "stop")
    with state_lock(settings.state_dir):
        kafka.stop(settings)


def start_kafka(settings: StackSettings) -> None:
    """Start only the local broker again, and wait until it answers metadata (idempotent)."""
    _refuse_external_kafka(settings, "start")
    with state_lock(settings.state_dir):
        kafka.await_ready(settings, kafka.launch(settings, kafka.find_java()))


def _refuse_external_kafka(settings: StackSettings, action: str) -> None:
    if settings.external_kafka is not None:
        raise StackError(
            f"cannot {action} Kafka: TECHX_KAFKA_BOOTSTRAP points at a broker the stack "
            "does not run",
            hint="unset TECHX_KAFKA_BOOTSTRAP to use the local one",
        )


def _refuse_external_database(settings: StackSettings, action: str) -> None:
    if settings.external_database is not None:
        raise StackError(
            f"cannot {action} PostgreSQL: TECHX_DATABASE_URL points at a server the stack "
            "does not run",
            hint="unset TECHX_DATABASE_URL to use the local one",
        )
