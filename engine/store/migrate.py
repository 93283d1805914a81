"""Numbered SQL migrations, applied once each, in order, under an advisory lock.

Several engines may start at once; the lock makes the first one migrate and the others wait.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from importlib import resources

import asyncpg
import structlog

log = structlog.get_logger()

_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x7EC8  # any constant shared by every engine of this database


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    folder = resources.files("engine.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


async def migrate(connection: asyncpg.Connection) -> list[int]:
    """Apply the migrations this database lacks; returns the versions applied now."""
    applied_now: list[int] = []
    await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            row["version"]
            for row in await connection.fetch("SELECT version FROM schema_migrations")
        }
        for migration in load_migrations():
            if migration.version in done:
                continue
            async with connection.transaction():
                # A migration says what it could not do with a NOTICE (006: a user who may
                # not create roles): an operator reads it in the log, not in psql.
                listener = partial(_log_notice, migration)
                connection.add_log_listener(listener)
                try:
                    await connection.execute(migration.sql)
                finally:
                    connection.remove_log_listener(listener)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied_now.append(migration.version)
            log.info("migration_applied", version=migration.version, name=migration.name)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


def _log_notice(
    migration: Migration, _connection: object, message: asyncpg.PostgresLogMessage
) -> None:
    log.warning(
        "migration_notice",
        version=migration.version,
        name=migration.name,
        severity=message.severity,
        notice=message.message,
    )
