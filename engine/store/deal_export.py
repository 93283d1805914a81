"""Settled deals of a time range, streamed from PostgreSQL in chunks (never all in memory).

The range is on ``traded_at_ms``: the broker's time of the command that made the deal, the
exchange's one clock. Start inclusive, end exclusive. There is no index on it (each index
costs every settlement), so an export reads the topic's deals once, in a server-side cursor
inside one read-only transaction (a consistent snapshot, whatever settles meanwhile).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from engine.store.connection import connected
from engine.store.rows import DEAL_COLUMNS as STORED_DEAL_COLUMNS

#: The columns exported, in order: the stored deal's, less the command topic (an export is of
#: one topic) and the per-technology event ``seq`` (a subscriber's resume mark, not a deal
#: field). Every one an integer or text, prices in đồng.
DEAL_COLUMNS = tuple(c for c in STORED_DEAL_COLUMNS if c not in {"topic", "seq"})
INTEGER_COLUMNS = frozenset(
    {"deal_number", "price", "quantity", "traded_at_ms", "source_partition", "source_offset"}
)

DealRow = tuple[str | int, ...]


async def stream_deals(
    database_url: str, topic: str, from_ms: int, to_ms: int, chunk: int = 10_000
) -> AsyncIterator[list[DealRow]]:
    """Yield the deals traded in [from_ms, to_ms) in chunks, by time, technology and number."""
    query = (
        f"SELECT {', '.join(DEAL_COLUMNS)} FROM deals"
        " WHERE topic = $1 AND traded_at_ms >= $2 AND traded_at_ms < $3"
        ' ORDER BY traded_at_ms, technology_id COLLATE "C", deal_number'
    )
    async with (
        connected(database_url) as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        cursor = await connection.cursor(query, topic, from_ms, to_ms)
        while True:
            rows = await cursor.fetch(chunk)
            if not rows:
                return
            yield [tuple(row) for row in rows]
