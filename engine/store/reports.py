"""Read-only questions operators ask PostgreSQL: what was settled, and how far.

The settlement store writes; these only read, on a short-lived connection, and every query
is scoped to one command topic (the topic is part of every key).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.store.connection import connected

#: Past any real offset: "to the end of the partition".
_END_OF_LOG = 2**62


@dataclass(frozen=True, slots=True)
class TechnologyTurnover:
    technology_id: str
    deals: int
    units: int
    #: Sum of price times quantity in đồng; a Python int, since it may exceed 64 bits.
    turnover: int
    low: int
    high: int


async def settled_deals(
    database_url: str, topic: str, partition: int, from_offset: int, to_offset: int | None
) -> list[tuple[object, ...]]:
    """Deals settled from one partition's offset range, as (deal_id, price, quantity, buyer,
    seller, traded_at_ms), ordered by technology and deal number."""
    async with connected(database_url) as connection:
        rows = await connection.fetch(
            "SELECT deal_id, price, quantity, buyer_id, seller_id, traded_at_ms FROM deals"
            " WHERE topic = $1 AND source_partition = $2"
            " AND source_offset >= $3 AND source_offset < $4"
            ' ORDER BY technology_id COLLATE "C", deal_number',
            topic,
            partition,
            from_offset,
            to_offset if to_offset is not None else _END_OF_LOG,
        )
    return [tuple(row) for row in rows]


async def settled_offset(database_url: str, topic: str, partition: int) -> int:
    """The first command offset of a partition not yet settled (0 if never claimed)."""
    async with connected(database_url) as connection:
        offset = await connection.fetchval(
            "SELECT next_offset FROM partition_state WHERE topic = $1 AND partition = $2",
            topic,
            partition,
        )
    return int(offset or 0)


@dataclass(frozen=True, slots=True)
class PartitionPosition:
    #: First command offset not settled yet: the commit point.
    next_offset: int
    #: Every event of commands below this offset is known to be on the output topics.
    published_offset: int


async def partition_positions(database_url: str, topic: str) -> dict[int, PartitionPosition]:
    """How far the engines have settled and published each claimed partition of a topic."""
    async with connected(database_url) as connection:
        rows = await connection.fetch(
            "SELECT partition, next_offset, published_offset FROM partition_state"
            " WHERE topic = $1 ORDER BY partition",
            topic,
        )
    return {
        row["partition"]: PartitionPosition(row["next_offset"], row["published_offset"])
        for row in rows
    }


async def turnover_since(
    database_url: str, topic: str, since_ms: int
) -> tuple[list[TechnologyTurnover], int]:
    """Per technology, what traded since a broker time; and how many dead letters came in."""
    async with connected(database_url) as connection:
        rows = await connection.fetch(
            "SELECT technology_id, count(*) AS deals, sum(quantity) AS units,"
            " sum(price::numeric * quantity) AS turnover, min(price) AS low, max(price) AS high"
            " FROM deals WHERE topic = $1 AND traded_at_ms >= $2"
            ' GROUP BY technology_id ORDER BY technology_id COLLATE "C"',
            topic,
            since_ms,
        )
        dead = await connection.fetchval(
            "SELECT count(*) FROM dead_letters WHERE topic = $1 AND timestamp_ms >= $2",
            topic,
            since_ms,
        )
    turnovers = [
        TechnologyTurnover(
            row["technology_id"],
            int(row["deals"]),
            int(row["units"]),
            int(row["turnover"]),
            int(row["low"]),
            int(row["high"]),
        )
        for row in rows
    ]
    return turnovers, int(dead)
