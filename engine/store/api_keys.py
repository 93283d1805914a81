"""The gateway's API keys in PostgreSQL (``api_keys``, migration 005).

Rows hold a salted hash, never a secret. Every change notifies channel ``techx_api_keys``
with the key id, in the same transaction: running gateways drop what they cached of that key
the moment the change commits, so a revoked or rotated key stops working everywhere at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog

from engine.errors import SchemaMissingError, StoreUnavailableError

log = structlog.get_logger()

#: PostgreSQL LISTEN/NOTIFY channel of key changes; the payload is the key id.
KEY_CHANGES_CHANNEL = "techx_api_keys"


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    key_id: str
    participant_id: str
    hash_scheme: str
    salt: bytes
    secret_hash: bytes
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None


_COLUMNS = (
    "key_id, participant_id, hash_scheme, salt, secret_hash, created_at, rotated_at, revoked_at"
)


def _row(record: asyncpg.Record) -> ApiKeyRow:
    return ApiKeyRow(*record)


async def insert_key(
    connection: asyncpg.Connection,
    topic: str,
    key_id: str,
    participant_id: str,
    hash_scheme: str,
    salt: bytes,
    secret_hash: bytes,
) -> ApiKeyRow:
    async with connection.transaction():
        record = await connection.fetchrow(
            "INSERT INTO api_keys (key_id, topic, participant_id, hash_scheme, salt, secret_hash)"
            f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
            key_id,
            topic,
            participant_id,
            hash_scheme,
            salt,
            secret_hash,
        )
        await _notify(connection, key_id)
    return _row(record)


async def replace_secret(
    connection: asyncpg.Connection,
    topic: str,
    key_id: str,
    hash_scheme: str,
    salt: bytes,
    secret_hash: bytes,
) -> ApiKeyRow | None:
    """Give a live key a new secret (the old one stops working); None if the key is unknown
    or revoked."""
    async with connection.transaction():
        record = await connection.fetchrow(
            "UPDATE api_keys SET hash_scheme = $3, salt = $4, secret_hash = $5, rotated_at = now()"
            " WHERE topic = $1 AND key_id = $2 AND revoked_at IS NULL"
            f" RETURNING {_COLUMNS}",
            topic,
            key_id,
            hash_scheme,
            salt,
            secret_hash,
        )
        if record is not None:
            await _notify(connection, key_id)
    return None if record is None else _row(record)


async def revoke_key(connection: asyncpg.Connection, topic: str, key_id: str) -> ApiKeyRow | None:
    """Revoke a key for good; None if it is unknown. Revoking twice keeps the first time."""
    async with connection.transaction():
        record = await connection.fetchrow(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
            f" WHERE topic = $1 AND key_id = $2 RETURNING {_COLUMNS}",
            topic,
            key_id,
        )
        if record is not None:
            await _notify(connection, key_id)
    return None if record is None else _row(record)


async def list_keys(
    connection: asyncpg.Connection, topic: str, participant_id: str | None = None
) -> list[ApiKeyRow]:
    records = await connection.fetch(
        f"SELECT {_COLUMNS} FROM api_keys WHERE topic = $1"
        " AND ($2::text IS NULL OR participant_id = $2) ORDER BY participant_id, created_at",
        topic,
        participant_id,
    )
    return [_row(record) for record in records]


async def _notify(connection: asyncpg.Connection, key_id: str) -> None:
    await connection.execute("SELECT pg_notify($1, $2)", KEY_CHANGES_CHANNEL, key_id)


_CONNECTION_ERRORS = (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError)
_STORE_ERRORS = (*_CONNECTION_ERRORS, asyncpg.PostgresError)


class ApiKeyStore:
    """The gateway's read side: a small pool for key lookups, and a listener for changes."""

    def __init__(self, pool: asyncpg.Pool, dsn: str, topic: str) -> None:
        self._pool = pool
        self._dsn = dsn
        self._topic = topic

    @classmethod
    async def connect(cls, dsn: str, topic: str, max_size: int = 4) -> ApiKeyStore:
        """Connect and check the table is there, so a gateway on a database that never ran
        ``techx setup`` stops at start instead of answering 503 to everyone."""
        try:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size)
        except _STORE_ERRORS as e:
            raise StoreUnavailableError(f"cannot reach PostgreSQL: {e!r}") from e
        store = cls(pool, dsn, topic)
        try:
            await pool.fetchval("SELECT count(*) FROM api_keys WHERE false")
        except asyncpg.UndefinedTableError as e:
            await pool.close()
            raise SchemaMissingError("table api_keys is missing: run `techx setup` first") from e
        except _STORE_ERRORS as e:
            await pool.close()
            raise StoreUnavailableError(f"cannot read api_keys: {e!r}") from e
        return store

    async def close(self) -> None:
        await self._pool.close()

    async def fetch(self, key_id: str) -> ApiKeyRow | None:
        """A key's row; StoreUnavailableError when PostgreSQL does not answer (the caller
        says 503: whether the key is good is unknown, not false)."""
        try:
            record = await self._pool.fetchrow(
                f"SELECT {_COLUMNS} FROM api_keys WHERE topic = $1 AND key_id = $2",
                self._topic,
                key_id,
            )
        except _STORE_ERRORS as e:
            raise StoreUnavailableError(f"looking up API key {key_id} failed: {e!r}") from e
        return None if record is None else _row(record)

    async def follow_changes(
        self,
        changed: Callable[[str], None],
        missed: Callable[[], None],
        stop: asyncio.Event,
        retry_s: float = 1.0,
    ) -> None:
        """Call ``changed(key_id)`` for every key change until ``stop``; ``missed()`` whenever
        notifications may have been lost (on each (re)connection), so caches start afresh.
        An outage is logged when it starts and when it ends; the caller's cache lifetime
        bounds what it can miss meanwhile."""
        loop = asyncio.get_running_loop()
        down_since: float | None = None
        while not stop.is_set():
            try:
                connection = await asyncpg.connect(self._dsn)
            except _STORE_ERRORS as e:
                if down_since is None:
                    down_since = loop.time()
                    log.warning("api_key_changes_unavailable", error=repr(e))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), retry_s)
                continue
            if down_since is not None:
                log.info("api_key_changes_followed", down_s=round(loop.time() - down_since, 1))
                down_since = None
            try:
                await _listen(connection, changed, missed, stop)
            except _STORE_ERRORS as e:
                log.warning("api_key_changes_interrupted", error=repr(e))
            finally:
                with contextlib.suppress(*_STORE_ERRORS):
                    await connection.close(timeout=2)
            if not stop.is_set():
                down_since = loop.time()
                log.warning("api_key_changes_unavailable", error="listening connection lost")


async def _listen(
    connection: asyncpg.Connection,
    changed: Callable[[str], None],
    missed: Callable[[], None],
    stop: asyncio.Event,
) -> None:
    """Listen on one connection until it is lost or ``stop`` is set."""
    lost = asyncio.Event()
    connection.add_termination_listener(lambda _: lost.set())
    await connection.add_listener(
        KEY_CHANGES_CHANNEL, lambda _c, _pid, _channel, key_id: changed(str(key_id))
    )
    missed()  # anything changed before this connection listened
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
