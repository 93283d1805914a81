"""The two ways a settlement reaches PostgreSQL write the same rows and fence the same way.

Small settlements go in one call to ``techx_settle_rows`` (migration 011), larger ones, and any
with dead letters or a snapshot, in a transaction with COPY (a large one, one transaction
per partition side by side); the engine cannot tell which ran, so neither may differ in
what it stores or refuses.
"""

from __future__ import annotations

import pytest

from engine.core.batch import LogRecord, PartitionProcessor, SettlementBatch
from engine.core.codec import encode
from engine.core.partitioning import partition_for
from engine.errors import FencedError
from engine.producers.simulation import OrderFlow, generated_listings
from engine.settings import Settings
from engine.store import settlement
from engine.store.rows import DEAL_COLUMNS, OUTCOME_COLUMNS
from engine.store.settlement import Settlement, SettlementStore
from tests.integration.harness import fetch_all

pytestmark = pytest.mark.integration

PATHS = ("one_call", "transaction")


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test below runs once down each path (the size limit picks the path)."""
    limit = 10**9 if request.param == "one_call" else -1
    monkeypatch.setattr(settlement, "ONE_CALL_MOST_ROWS", limit)
    monkeypatch.setattr(settlement, "SIDE_BY_SIDE_LEAST_ROWS", limit + 1)
    return str(request.param)


def _batches(settings: Settings, parts: int) -> list[SettlementBatch]:
    """Consecutive batches of partition 0's share of a seeded order flow, with deals."""
    flow = OrderFlow(99, generated_listings(4), invalid_ratio=0.0)
    commands = flow.listing_commands() + flow.next_commands(400)
    home = [c for c in commands if partition_for(c.technology_id, settings.partitions) == 0]
    records = [
        LogRecord(offset, 1000 + offset, c.technology_id.encode(), encode(c))
        for offset, c in enumerate(home)
    ]
    processor = PartitionProcessor(0, settings.partitions)
    size = len(records) // parts
    cuts = [records[i * size : (i + 1) * size if i < parts - 1 else None] for i in range(parts)]
    batches = [processor.process(cut) for cut in cuts]
    assert all(not b.dead_letters and b.snapshot is None for b in batches)
    assert sum(len(b.deals) for b in batches) > 0, "the flow should trade"
    return batches


def _chained(batches: list[SettlementBatch], claim: settlement.PartitionClaim) -> list[Settlement]:
    expected = 0
    items = []
    for batch in batches:
        items.append(Settlement(batch, claim, expected, 0))
        expected = batch.next_offset
    return items


async def _stored(settings: Settings, topic: str) -> tuple[list[object], list[object]]:
    deal_columns = ", ".join(DEAL_COLUMNS[1:])
    outcome_columns = ", ".join(OUTCOME_COLUMNS[1:-1])
    deals = await fetch_all(
        settings,
        f"SELECT {deal_columns} FROM deals WHERE topic = $1 ORDER BY source_offset, deal_number",
        topic,
    )
    outcomes = await fetch_all(
        settings,
        f"SELECT {outcome_columns}, events::text FROM command_outcomes WHERE topic = $1"
        " ORDER BY source_offset",
        topic,
    )
    return [tuple(r) for r in deals], [tuple(r) for r in outcomes]


async def test_both_paths_store_the_same_rows(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Byte for byte: every deal column, every outcome and its events JSON."""
    stored = {}
    for name, limit in (("one_call", 10**9), ("transaction", -1)):
        monkeypatch.setattr(settlement, "ONE_CALL_MOST_ROWS", limit)
        topic = f"{settings.topics.commands}.{name}"
        store = await SettlementStore.connect(settings.database_url, topic)
        try:
            claim = await store.claim(0)
            await store.settle(_chained(_batches(settings, 2), claim))
        finally:
            await store.close()
        stored[name] = await _stored(settings, topic)
    deals, outcomes = stored["one_call"]
    assert deals, "deals were stored"
    assert outcomes, "outcomes were stored"
    assert stored["one_call"] == stored["transaction"]


async def test_a_stale_owner_is_refused_and_nothing_is_written(
    settings: Settings, path: str
) -> None:
    store = await SettlementStore.connect(settings.database_url, settings.topics.commands)
    try:
        stale = await store.claim(0)
        await store.claim(0)  # the new owner
        with pytest.raises(FencedError):
            await store.settle(_chained(_batches(settings, 1), stale))
    finally:
        await store.close()
    assert (await fetch_all(settings, "SELECT count(*) FROM deals"))[0][0] == 0
    assert (await fetch_all(settings, "SELECT count(*) FROM command_outcomes"))[0][0] == 0
    state = await fetch_all(settings, "SELECT next_offset FROM partition_state")
    assert [row[0] for row in state] == [0]


async def test_a_fenced_partition_of_a_settlement_writes_nothing(
    settings: Settings, path: str
) -> None:
    """Two partitions in one settlement, the second fenced: the refusal names the second and
    nothing of it is written. A small settlement is one transaction, so the first's offset
    does not move either; a large one settles its partitions side by side, each in its own
    transaction, so the first (still this engine's) is settled, and a restart resumes after
    it: either way every partition's offset matches its rows."""
    store = await SettlementStore.connect(settings.database_url, settings.topics.commands)
    try:
        first_claim = await store.claim(0)
        stale = await store.claim(1)
        await store.claim(1)  # partition 1 has a new owner
        batch = _batches(settings, 1)[0]
        other = SettlementBatch(1, 0, 1)
        with pytest.raises(FencedError) as refused:
            await store.settle(
                [Settlement(batch, first_claim, 0, 0), Settlement(other, stale, 0, 0)]
            )
        assert refused.value.partition == 1
    finally:
        await store.close()
    together = path == "one_call"
    state = await fetch_all(settings, "SELECT partition, next_offset FROM partition_state")
    assert sorted(tuple(r) for r in state) == [(0, 0 if together else batch.next_offset), (1, 0)]
    outcomes = await fetch_all(settings, "SELECT count(*) FROM command_outcomes")
    assert outcomes[0][0] == (0 if together else len(batch.outcomes))


async def test_a_settlement_retried_after_its_commits_is_not_applied_twice(
    settings: Settings, path: str
) -> None:
    """A retry of a whole settlement whose partitions all committed (their answers lost) is
    recognised, whether it ran as one transaction or as one per partition."""
    store = await SettlementStore.connect(settings.database_url, settings.topics.commands)
    try:
        first_claim, second_claim = await store.claim(0), await store.claim(1)
        batch = _batches(settings, 1)[0]
        items = [
            Settlement(batch, first_claim, 0, 0),
            Settlement(SettlementBatch(1, 0, 7), second_claim, 0, 0),
        ]
        await store.settle(items)
        await store.settle(items)
    finally:
        await store.close()
    state = await fetch_all(settings, "SELECT partition, next_offset FROM partition_state")
    assert sorted(tuple(r) for r in state) == [(0, batch.next_offset), (1, 7)]
    outcomes = await fetch_all(settings, "SELECT count(*) FROM command_outcomes")
    assert outcomes[0][0] == len(batch.outcomes)


async def test_a_retry_after_a_lost_commit_answer_adds_nothing(
    settings: Settings, path: str
) -> None:
    """Several consecutive batches of one partition, settled, then settled again."""
    batches = _batches(settings, 3)
    store = await SettlementStore.connect(settings.database_url, settings.topics.commands)
    try:
        claim = await store.claim(0)
        items = _chained(batches, claim)
        await store.settle(items)
        await store.settle(items)  # the retry
    finally:
        await store.close()
    deals = await fetch_all(settings, "SELECT count(*) FROM deals")
    assert deals[0][0] == sum(len(b.deals) for b in batches)
    state = await fetch_all(settings, "SELECT next_offset FROM partition_state")
    assert [row[0] for row in state] == [batches[-1].next_offset]


async def test_a_snapshot_is_stored_compressed_with_lz4(settings: Settings) -> None:
    """Migration 010: a snapshot's compression runs inside its settlement's transaction, and
    pglz took four times lz4's time (the stack's PostgreSQL is built with lz4)."""
    batch = _batches(settings, 1)[0]
    batch.snapshot = bytes(range(256)) * 64  # 16 KiB that compress: above TOAST's 2 KB
    store = await SettlementStore.connect(settings.database_url, settings.topics.commands)
    try:
        await store.settle(_chained([batch], await store.claim(0)))
        loaded = await store.latest_snapshot(0, batch.next_offset)
    finally:
        await store.close()
    assert loaded == (batch.next_offset, batch.snapshot)
    stored = await fetch_all(
        settings, "SELECT pg_column_compression(state), pg_column_size(state) FROM market_snapshots"
    )
    assert [(method, size < len(batch.snapshot)) for method, size in stored] == [("lz4", True)]


async def test_a_connection_goes_back_to_the_pool_without_a_reset_round_trip(
    settings: Settings,
) -> None:
    """asyncpg's default reset (``... RESET ALL``) ran at every release, a round trip each
    settlement waited for; the store leaves no session state that would need it."""
    store = await SettlementStore.connect(settings.database_url, settings.topics.commands, 1)
    queries: list[str] = []
    try:
        async with store._pool.acquire() as connection:  # the pool's one connection
            connection.add_query_logger(lambda record: queries.append(record.query))
        claim = await store.claim(0)
        await store.settle(_chained(_batches(settings, 1), claim))
        assert await store.owns(claim)
    finally:
        await store.close()
    assert any("partition_state" in query for query in queries), queries
    assert not [query for query in queries if "RESET ALL" in query]
