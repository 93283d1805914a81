"""PostgreSQL as the engine's commit point: a partition's deals, order history and offset
are written in one transaction, guarded by the partition's owner epoch.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from types import TracebackType

import asyncpg
import structlog

from engine.core.batch import SettlementBatch
from engine.errors import (
    DeterminismError,
    FencedError,
    StoreRefusedError,
    StoreUnavailableError,
    TechXError,
)
from engine.store.rows import (
    DEAD_LETTER_COLUMNS,
    DEAL_COLUMNS,
    OUTCOME_COLUMNS,
    dead_letter_rows,
    deal_rows,
    outcome_rows,
)

#: SQLSTATE classes and codes worth retrying: connection trouble (08), resources (53),
#: operator intervention such as a restart or failover (57P01-57P03), serialization and
#: deadlock (40001, 40P01), a standby that is not promoted yet (25006).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53")
_TRANSIENT_SQLSTATES = {"57P01", "57P02", "57P03", "40001", "40P01", "25006", "55P03", "57014"}
#: 55P03 (lock_not_available) and 57014 (query_canceled: a statement timeout) come from the
#: bounds below: another engine holds what we wait for, and retrying later is the answer.

#: Bounds on what the engine's sessions wait for and hold, so that a stale engine (frozen,
#: or partitioned away mid-transaction) cannot stall the partition's next owner: a claim
#: waits at most LOCK_TIMEOUT for the row lock and is retried; PostgreSQL ends a session left
#: idle inside a transaction after IDLE_IN_TRANSACTION_TIMEOUT, which releases its locks
#: (that engine's commit then fails and it stops); no statement runs past STATEMENT_TIMEOUT.
SESSION_BOUNDS = {
    "lock_timeout": "2s",
    "idle_in_transaction_session_timeout": "5s",
    "statement_timeout": "60s",
}


#: Most rows (deals and command outcomes) settled in one call to techx_settle_rows
#: (migrations 009 and 011): one round trip instead of seven. Engine CPU per settlement,
#: one call against COPY, alternated (arrays of rows, migration 011): 0.25-0.29 against
#: 0.56-0.60 ms at 34 rows, 0.57-0.65 against 0.68-0.83 at 135, 1.56-2.27 against 1.82-2.06
#: at 426, where COPY has caught up; wall times alike from 135 rows on. With 009's one array
#: per column, COPY caught up sooner and the limit was 128.
ONE_CALL_MOST_ROWS = 256
#: Rows above which a settlement of several partitions goes one transaction per partition.
SIDE_BY_SIDE_LEAST_ROWS = ONE_CALL_MOST_ROWS + 1
_SETTLE_IN_ONE_CALL = "SELECT techx_settle_rows($1, $2, $3, $4, $5, $6, $7, $8)"
#: What techx_settle_rows raises when an item's offset is not where the engine expects it.
_OFFSET_MOVED_SQLSTATE = "TXF01"

#: Older snapshots than the newest few are deleted as new ones are written.
_SNAPSHOTS_KEPT = 3

#: asyncpg's InternalClientError is a connection caught mid-operation when the server went
#: away (seen after a PostgreSQL restart): the pool drops that connection, so it is transient.
_CONNECTION_ERRORS = (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError)
_STORE_ERRORS = (*_CONNECTION_ERRORS, asyncpg.PostgresError)


class _OffsetMovedError(Exception):
    """Internal: the item at ``position`` found its partition's offset elsewhere; nothing
    was written (the transaction or the call was rolled back)."""

    def __init__(self, position: int) -> None:
        super().__init__(position)
        self.position = position


def _store_error(error: BaseException, doing: str) -> TechXError:
    if _is_transient(error):
        return StoreUnavailableError(f"{doing} failed, will retry: {error!r}")
    return StoreRefusedError(f"{doing}: PostgreSQL refused it: {error!r}")


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, _CONNECTION_ERRORS):
        return True
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(sqlstate, str) and (
        sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES or sqlstate in _TRANSIENT_SQLSTATES
    )


log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class PartitionClaim:
    """What an engine learns when it takes a partition over."""

    partition: int
    owner_epoch: int
    next_offset: int
    published_offset: int


@dataclass(frozen=True, slots=True)
class DealTotals:
    """Enough of a set of deals to notice that a replay disagrees with what was settled."""

    deals: int = 0
    quantity: int = 0
    notional: int = 0

    def add(self, batch: SettlementBatch) -> DealTotals:
        deals = batch.deals
        return DealTotals(
            self.deals + len(deals),
            self.quantity + sum(deal.quantity for deal in deals),
            self.notional + sum(deal.price * deal.quantity for deal in deals),
        )


@dataclass(frozen=True, slots=True)
class Settlement:
    """One partition's batch with the fencing facts its transaction checks."""

    batch: SettlementBatch
    claim: PartitionClaim
    #: The offset PostgreSQL must still hold for this partition, else we were fenced.
    expected_offset: int
    published_offset: int


class SettlementStore:
    """The engine's only door to PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool, commands_topic: str) -> None:
        self._pool = pool
        self._topic = commands_topic

    @classmethod
    async def connect(
        cls,
        dsn: str,
        commands_topic: str,
        max_size: int = 4,
        session_bounds: dict[str, str] | None = None,
    ) -> SettlementStore:
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=max_size,
                init=_accept_json_bytes,
                reset=_keep_session,
                server_settings=SESSION_BOUNDS if session_bounds is None else session_bounds,
            )
        except _STORE_ERRORS as e:
            raise _store_error(e, f"connecting to PostgreSQL at {_redact(dsn)}") from e
        return cls(pool, commands_topic)

    async def close(self) -> None:
        await self._pool.close()

    async def __aenter__(self) -> SettlementStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def claim(self, partition: int) -> PartitionClaim:
        """Take ownership of a partition: bump its epoch so any previous owner is fenced."""
        try:
            row = await self._pool.fetchrow(
                "INSERT INTO partition_state (topic, partition, owner_epoch) VALUES ($1, $2, 1)"
                " ON CONFLICT (topic, partition) DO UPDATE"
                " SET owner_epoch = partition_state.owner_epoch + 1, updated_at = now()"
                " RETURNING owner_epoch, next_offset, published_offset",
                self._topic,
                partition,
            )
        except _STORE_ERRORS as e:
            raise _store_error(e, f"claiming partition {partition}") from e
        assert row is not None
        return PartitionClaim(
            partition, row["owner_epoch"], row["next_offset"], row["published_offset"]
        )

    async def owns(self, claim: PartitionClaim) -> bool:
        """Whether ``claim`` is still the partition's newest: no other engine claimed since."""
        try:
            epoch = await self._pool.fetchval(
                "SELECT owner_epoch FROM partition_state WHERE topic = $1 AND partition = $2",
                self._topic,
                claim.partition,
            )
        except _STORE_ERRORS as e:
            raise _store_error(e, f"checking the owner of partition {claim.partition}") from e
        return bool(epoch == claim.owner_epoch)

    async def settle(self, items: list[Settlement]) -> None:
        """Write the batches of several partitions and move their offsets.

        A small settlement (steady order flow) is one transaction, one WAL flush. A large one
        (a backlog) is one transaction per partition, side by side on the pool's connections:
        PostgreSQL then parses, indexes and flushes them on both cores instead of one COPY
        after another (``bench.settlement``, ~5k commands over 4 partitions: p50 72-74 ms
        against 93-103 ms; inside the engine, where the settle stage also waits for the event
        loop, the gain was within the noise). Partitions are independent (each has its own
        offset and owner epoch), so one committed without another is a state recovery knows;
        a retry of the whole settlement finds the committed ones in already.

        Raises FencedError naming a partition another engine owns now (or whose offset moved
        under us): the engine stops rather than guess what else it missed.
        StoreUnavailableError means the same call may be retried as it is.
        """
        groups = _side_by_side(items)
        if len(groups) == 1:
            await self._settle_together(items)
            return
        outcomes = await asyncio.gather(
            *(self._settle_together(group) for group in groups), return_exceptions=True
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        for failure in failures:  # what cannot be retried first: it stops the engine
            if not isinstance(failure, TechXError) or not failure.retriable:
                raise failure
        if failures:
            raise failures[0]

    async def _settle_together(self, items: list[Settlement]) -> None:
        """The items in one transaction: all of them, or nothing."""
        batches = [item.batch for item in items]
        # Where each partition ends once all its items are in: one settlement may carry
        # several consecutive batches of a partition (matched while the last one committed).
        reaches = {item.batch.partition: item.batch.next_offset for item in items}
        try:
            if _fits_one_call(batches):
                await self._settle_in_one_call(items)
            else:
                await self._settle_in_a_transaction(items, reaches)
        except asyncpg.UniqueViolationError as e:
            ranges = ", ".join(
                f"{i.batch.partition}:{i.batch.first_offset}..{i.batch.next_offset - 1}"
                for i in items
            )
            raise DeterminismError(f"offsets {ranges} were settled already: {e}") from e
        except _OffsetMovedError as moved:
            await self._explain_moved(items, moved.position, reaches)
        except _STORE_ERRORS as e:
            partitions = sorted(batch.partition for batch in batches)
            raise _store_error(e, f"settling partitions {partitions}") from e

    async def _settle_in_one_call(self, items: list[Settlement]) -> None:
        """Migration 011's techx_settle_rows: the same writes in one round trip."""
        batches = [item.batch for item in items]
        try:
            await self._pool.execute(
                _SETTLE_IN_ONE_CALL,
                self._topic,
                [item.batch.partition for item in items],
                [item.batch.next_offset for item in items],
                [item.published_offset for item in items],
                [item.claim.owner_epoch for item in items],
                [item.expected_offset for item in items],
                list(deal_rows(self._topic, batches)),
                list(outcome_rows(self._topic, batches)),
            )
        except asyncpg.PostgresError as e:
            if e.sqlstate == _OFFSET_MOVED_SQLSTATE:
                raise _OffsetMovedError(int(getattr(e, "detail", None) or 0)) from e
            raise

    async def _settle_in_a_transaction(
        self, items: list[Settlement], reaches: dict[int, int]
    ) -> None:
        """Large settlements (COPY writes rows fastest), dead letters and snapshots."""
        topic, batches = self._topic, [item.batch for item in items]
        deals = list(deal_rows(topic, batches))
        outcomes = list(outcome_rows(topic, batches))
        dead = list(dead_letter_rows(topic, batches))
        async with self._pool.acquire() as connection, connection.transaction():
            for position, item in enumerate(items):
                status = await connection.execute(
                    "UPDATE partition_state SET next_offset = $1,"
                    " published_offset = GREATEST(published_offset, $2),"
                    " updated_at = now() WHERE topic = $3 AND partition = $4"
                    " AND owner_epoch = $5 AND next_offset = $6",
                    item.batch.next_offset,
                    item.published_offset,
                    self._topic,
                    item.batch.partition,
                    item.claim.owner_epoch,
                    item.expected_offset,
                )
                if status != "UPDATE 1":
                    raise _OffsetMovedError(position)
            if deals:
                await connection.copy_records_to_table("deals", records=deals, columns=DEAL_COLUMNS)
            if outcomes:
                await connection.copy_records_to_table(
                    "command_outcomes", records=outcomes, columns=OUTCOME_COLUMNS
                )
            if dead:
                await connection.copy_records_to_table(
                    "dead_letters", records=dead, columns=DEAD_LETTER_COLUMNS
                )
            for item in items:
                if item.batch.snapshot is not None:
                    await self._save_snapshot(connection, item.batch, item.published_offset)

    async def _explain_moved(
        self, items: list[Settlement], position: int, reaches: dict[int, int]
    ) -> None:
        """An item's offset was not where this engine expected it, and nothing was written:
        either a retry of a commit whose answer was lost (every item is in already), or
        another engine owns the partition now."""
        item = items[position]
        try:
            state = await self._pool.fetchrow(
                "SELECT owner_epoch, next_offset FROM partition_state"
                " WHERE topic = $1 AND partition = $2",
                self._topic,
                item.batch.partition,
            )
        except _STORE_ERRORS as e:
            raise _store_error(e, f"reading partition {item.batch.partition}'s offset") from e
        if (
            position == 0  # one transaction wrote all items, or none
            and state is not None
            and state["owner_epoch"] == item.claim.owner_epoch
            and state["next_offset"] == reaches[item.batch.partition]
        ):
            # A retry after a commit whose answer was lost: the rows are there already.
            log.warning(
                "settlement_already_committed", partitions=[i.batch.partition for i in items]
            )
            return
        raise FencedError(
            f"partition {item.batch.partition}: epoch {item.claim.owner_epoch} "
            f"at offset {item.expected_offset} is no longer the owner's position",
            partition=item.batch.partition,
        )

    async def _save_snapshot(
        self, connection: asyncpg.Connection, batch: SettlementBatch, published_offset: int
    ) -> None:
        """Keep the newest few snapshots of a partition, and always the newest one at or below
        the published mark: that is the one recovery loads."""
        assert batch.snapshot is not None
        await connection.execute(
            "INSERT INTO market_snapshots (topic, partition, next_offset, state, digest)"
            " VALUES ($1, $2, $3, $4, $5)",
            self._topic,
            batch.partition,
            batch.next_offset,
            batch.snapshot,
            hashlib.sha256(batch.snapshot).hexdigest(),
        )
        await connection.execute(
            "DELETE FROM market_snapshots WHERE topic = $1 AND partition = $2 AND next_offset <"
            " (SELECT min(next_offset) FROM (SELECT next_offset FROM market_snapshots"
            "  WHERE topic = $1 AND partition = $2 ORDER BY next_offset DESC LIMIT $3) AS kept)"
            " AND next_offset < (SELECT coalesce(max(next_offset), 0) FROM market_snapshots"
            "  WHERE topic = $1 AND partition = $2 AND next_offset <= $4)",
            self._topic,
            batch.partition,
            _SNAPSHOTS_KEPT,
            published_offset,
        )

    async def latest_snapshot(self, partition: int, at_most: int) -> tuple[int, bytes] | None:
        """The newest snapshot at or below an offset, as (next_offset, state), checked."""
        try:
            row = await self._pool.fetchrow(
                "SELECT next_offset, state, digest FROM market_snapshots"
                " WHERE topic = $1 AND partition = $2 AND next_offset <= $3"
                " ORDER BY next_offset DESC LIMIT 1",
                self._topic,
                partition,
                at_most,
            )
        except _STORE_ERRORS as e:
            raise _store_error(e, f"loading partition {partition}'s snapshot") from e
        if row is None:
            return None
        state = bytes(row["state"])
        if hashlib.sha256(state).hexdigest() != row["digest"]:
            raise DeterminismError(
                f"snapshot of partition {partition} at {row['next_offset']} fails its digest"
            )
        return int(row["next_offset"]), state

    async def mark_published(self, claim: PartitionClaim, published_offset: int) -> None:
        """Record that every event below ``published_offset`` is on the output topics.

        GREATEST because the settle stage may carry an older mark: the mark never goes back.
        """
        try:
            await self._pool.execute(
                "UPDATE partition_state SET published_offset = GREATEST(published_offset, $1)"
                " WHERE topic = $2 AND partition = $3 AND owner_epoch = $4",
                published_offset,
                self._topic,
                claim.partition,
                claim.owner_epoch,
            )
        except _STORE_ERRORS as e:
            raise _store_error(e, f"marking partition {claim.partition} published") from e

    async def settled_deal_totals(
        self, partition: int, from_offset: int, below_offset: int
    ) -> DealTotals:
        """Deals settled from one partition's commands in an offset range: recovery's check."""
        try:
            row = await self._pool.fetchrow(
                "SELECT count(*) AS deals, coalesce(sum(quantity), 0) AS quantity,"
                " coalesce(sum(price::numeric * quantity), 0) AS notional FROM deals"
                " WHERE topic = $1 AND source_partition = $2"
                " AND source_offset >= $3 AND source_offset < $4",
                self._topic,
                partition,
                from_offset,
                below_offset,
            )
        except _STORE_ERRORS as e:
            raise _store_error(e, f"totalling partition {partition}'s deals") from e
        assert row is not None
        return DealTotals(int(row["deals"]), int(row["quantity"]), int(row["notional"]))


def _side_by_side(items: list[Settlement]) -> list[list[Settlement]]:
    """A large settlement split by partition (each partition's items in order); a small one
    whole, as one round trip costs less than several."""
    rows = sum(len(i.batch.deals) + len(i.batch.outcomes) for i in items)
    if rows < SIDE_BY_SIDE_LEAST_ROWS:
        return [items]
    by_partition: dict[int, list[Settlement]] = {}
    for item in items:
        by_partition.setdefault(item.batch.partition, []).append(item)
    return list(by_partition.values())


def _fits_one_call(batches: list[SettlementBatch]) -> bool:
    """Small, and nothing but deals and outcomes: what steady order flow settles."""
    rows = 0
    for batch in batches:
        if batch.dead_letters or batch.snapshot is not None:
            return False
        rows += len(batch.deals) + len(batch.outcomes)
    return rows <= ONE_CALL_MOST_ROWS


async def _accept_json_bytes(connection: asyncpg.Connection) -> None:
    """Let json columns take the event's JSON bytes as they are, instead of a decoded str
    that asyncpg would encode straight back to the same bytes."""
    await connection.set_type_codec(
        "json", schema="pg_catalog", format="binary", encoder=_same_bytes, decoder=_same_bytes
    )


def _same_bytes(data: bytes) -> bytes:
    return data


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Return a connection to the pool as it is. asyncpg's default runs ``SELECT
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` at every release, a round trip
    each settlement waited for; this store never leaves session state behind (no session
    locks, cursors, LISTEN or SET: its settings are the connection's startup parameters), and
    asyncpg still rolls back a transaction left open before calling this."""


def _redact(dsn: str) -> str:
    """Keep passwords out of logs and error messages."""
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{host}"
