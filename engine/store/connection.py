"""One short-lived PostgreSQL connection, for operator tools, the demo and tests.

The engine itself uses the pool in ``SettlementStore``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from engine.errors import StoreUnavailableError


@asynccontextmanager
async def connected(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    try:
        connection = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as e:
        raise StoreUnavailableError(f"cannot reach PostgreSQL: {e}") from e
    try:
        yield connection
    finally:
        await connection.close()
