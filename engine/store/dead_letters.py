"""Dead letters as the engine settled them, and the operators' re-drives of them.

PostgreSQL's ``dead_letters`` rows are the whole record (the dead-letter topic cuts values
above the command size limit), keyed like every settlement row by command topic, partition
and offset: ``partition:offset`` is a dead letter's id for operators.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from engine.errors import CommandLineError, OperatorCommandError
from engine.store.connection import connected


@asynccontextmanager
async def _connected(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection; a database that lacks this release's tables says what to run."""
    async with connected(database_url) as connection:
        try:
            yield connection
        except asyncpg.UndefinedTableError as e:
            raise OperatorCommandError(
                f"{e}: this database predates the command; run `techx setup` (it migrates)"
            ) from e


@dataclass(frozen=True, slots=True)
class Redrive:
    attempt: int
    redriven_by: str
    redriven_at: datetime
    #: Where the corrected command landed; None while (or if never) published.
    new_partition: int | None
    new_offset: int | None


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    partition: int
    offset: int
    reason: str
    detail: str
    key: bytes | None
    value: bytes | None
    #: The broker's time of the original record.
    timestamp_ms: int
    redrives: tuple[Redrive, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"


def parse_id(text: str) -> tuple[int, int]:
    """``partition:offset`` (e.g. ``2:1041``) to its two numbers."""
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise CommandLineError(
            f'a dead letter\'s id is "partition:offset", e.g. 2:1041, not "{text[:40]}"'
        )
    return int(partition), int(offset)


async def list_dead_letters(
    database_url: str,
    topic: str,
    *,
    partition: int | None = None,
    reason: str | None = None,
    since_ms: int | None = None,
    limit: int = 50,
) -> list[StoredDeadLetter]:
    """The newest dead letters first (by broker time), filtered, with their re-drives."""
    async with _connected(database_url) as connection:
        rows = await connection.fetch(
            "SELECT source_partition, source_offset, reason, detail, record_key, record_value,"
            " timestamp_ms FROM dead_letters WHERE topic = $1"
            " AND ($2::integer IS NULL OR source_partition = $2)"
            " AND ($3::text IS NULL OR reason = $3)"
            " AND ($4::bigint IS NULL OR timestamp_ms >= $4)"
            " ORDER BY timestamp_ms DESC, source_partition, source_offset DESC LIMIT $5",
            topic,
            partition,
            reason,
            since_ms,
            limit,
        )
        redrives = await _redrives(connection, topic, [(r[0], r[1]) for r in rows])
    return [_dead_letter(row, redrives.get((row[0], row[1]), ())) for row in rows]


async def get_dead_letter(
    database_url: str, topic: str, partition: int, offset: int
) -> StoredDeadLetter:
    async with _connected(database_url) as connection:
        row = await connection.fetchrow(
            "SELECT source_partition, source_offset, reason, detail, record_key, record_value,"
            " timestamp_ms FROM dead_letters"
            " WHERE topic = $1 AND source_partition = $2 AND source_offset = $3",
            topic,
            partition,
            offset,
        )
        if row is None:
            raise OperatorCommandError(
                f"no dead letter {partition}:{offset} on {topic} (`techx dlq list` shows them)"
            )
        redrives = await _redrives(connection, topic, [(partition, offset)])
    return _dead_letter(row, redrives.get((partition, offset), ()))


async def claim_redrive(
    database_url: str,
    topic: str,
    partition: int,
    offset: int,
    operator: str,
    command: bytes,
    *,
    force: bool,
) -> int:
    """Write the re-drive's row before publishing; returns its attempt number.

    Without ``force`` only the first attempt may be claimed: the primary key makes two
    operators racing on one dead letter end with one re-drive, not two.
    """
    async with _connected(database_url) as connection, connection.transaction():
        # Serialises forced attempts on one dead letter (max + 1 would otherwise collide).
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2 || ':' || $3, 0))",
            topic,
            str(partition),
            str(offset),
        )
        attempt = 1
        if force:
            attempt = 1 + await connection.fetchval(
                "SELECT coalesce(max(attempt), 0) FROM dead_letter_redrives"
                " WHERE topic = $1 AND source_partition = $2 AND source_offset = $3",
                topic,
                partition,
                offset,
            )
        claimed = await connection.fetchval(
            "INSERT INTO dead_letter_redrives"
            " (topic, source_partition, source_offset, attempt, redriven_by, command)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING attempt",
            topic,
            partition,
            offset,
            attempt,
            operator,
            command,
        )
    if claimed is None:
        raise OperatorCommandError(
            f"dead letter {partition}:{offset} was re-driven already (`techx dlq show "
            f"{partition}:{offset}` says by whom); --force re-drives it again"
        )
    return int(claimed)


async def complete_redrive(
    database_url: str,
    topic: str,
    partition: int,
    offset: int,
    attempt: int,
    new_partition: int,
    new_offset: int,
) -> None:
    async with _connected(database_url) as connection:
        await connection.execute(
            "UPDATE dead_letter_redrives SET new_partition = $5, new_offset = $6"
            " WHERE topic = $1 AND source_partition = $2 AND source_offset = $3"
            " AND attempt = $4",
            topic,
            partition,
            offset,
            attempt,
            new_partition,
            new_offset,
        )


async def release_redrive(
    database_url: str, topic: str, partition: int, offset: int, attempt: int
) -> None:
    """Forget a claimed re-drive whose command never reached the broker."""
    async with _connected(database_url) as connection:
        await connection.execute(
            "DELETE FROM dead_letter_redrives WHERE topic = $1 AND source_partition = $2"
            " AND source_offset = $3 AND attempt = $4 AND new_offset IS NULL",
            topic,
            partition,
            offset,
            attempt,
        )


async def _redrives(
    connection: asyncpg.Connection, topic: str, ids: list[tuple[int, int]]
) -> dict[tuple[int, int], tuple[Redrive, ...]]:
    if not ids:
        return {}
    rows = await connection.fetch(
        "SELECT source_partition, source_offset, attempt, redriven_by, redriven_at,"
        " new_partition, new_offset FROM dead_letter_redrives"
        " WHERE topic = $1 AND (source_partition, source_offset) IN"
        " (SELECT * FROM unnest($2::integer[], $3::bigint[]))"
        " ORDER BY attempt",
        topic,
        [partition for partition, _ in ids],
        [offset for _, offset in ids],
    )
    found: dict[tuple[int, int], list[Redrive]] = {}
    for row in rows:
        found.setdefault((row[0], row[1]), []).append(Redrive(*list(row)[2:]))
    return {key: tuple(value) for key, value in found.items()}


def _dead_letter(row: asyncpg.Record, redrives: tuple[Redrive, ...]) -> StoredDeadLetter:
    return StoredDeadLetter(
        row["source_partition"],
        row["source_offset"],
        row["reason"],
        row["detail"],
        None if row["record_key"] is None else bytes(row["record_key"]),
        None if row["record_value"] is None else bytes(row["record_value"]),
        row["timestamp_ms"],
        redrives,
    )
