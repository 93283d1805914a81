"""The engine's control logic (assignment, recovery order, offsets) with hand-written stubs.

The stubs stand in for the store and the consumer only where these tests look at what the
engine decides; everything that talks to Kafka or PostgreSQL is tested on the real servers
in tests/integration.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import msgspec
import pytest
from aiokafka import TopicPartition

import engine.consumers.matching_engine as engine_module
from engine.consumers.matching_engine import MatchingEngine, PartitionWorker
from engine.core.batch import PartitionProcessor
from engine.core.partitioning import partition_for
from engine.settings import Settings
from engine.store.settlement import DealTotals, PartitionClaim


class StubStore:
    """Hands out claims like PostgreSQL's owner_epoch bump, a little slowly."""

    def __init__(self) -> None:
        self.epochs: dict[int, int] = {}

    async def claim(self, partition: int) -> PartitionClaim:
        self.epochs[partition] = self.epochs.get(partition, 0) + 1
        await asyncio.sleep(0.01)
        return PartitionClaim(partition, self.epochs[partition], 0, 0)

    async def latest_snapshot(self, partition: int, at_most: int) -> None:
        return None

    async def settled_deal_totals(self, *args: int) -> DealTotals:
        return DealTotals()

    async def mark_published(self, *args: object) -> None:
        return None


class StubConsumer:
    def __init__(self) -> None:
        self.resumed: list[int] = []
        self.seeks: list[tuple[int, int]] = []

    def pause(self, *tps: TopicPartition) -> None:
        return None

    def resume(self, tp: TopicPartition) -> None:
        self.resumed.append(tp.partition)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp.partition, offset))


async def _empty_log(*args: object, **kwargs: object) -> AsyncGenerator[list[object], None]:
    return
    yield


@dataclass(frozen=True)
class Record:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


async def test_a_partition_reassigned_during_recovery_is_recovered_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Revoke-and-reassign mid-recovery: each partition goes live once, with the newest claim."""
    monkeypatch.setattr(engine_module, "read_partition", _empty_log)
    store, consumer = StubStore(), StubConsumer()
    engine = MatchingEngine(Settings(), store, None)  # type: ignore[arg-type]
    tps = [TopicPartition("t", 0), TopicPartition("t", 1)]
    engine.assign(tps, consumer)  # type: ignore[arg-type]
    recovery = asyncio.create_task(engine._recovery_stage(consumer))  # type: ignore[arg-type]
    await asyncio.sleep(0.005)  # partition 0 is being recovered for the first assignment
    await engine.release([0, 1])  # an eager rebalance revokes everything...
    engine.assign(tps, consumer)  # type: ignore[arg-type]  # ...and gives it all back
    await asyncio.sleep(0.2)
    recovery.cancel()
    assert sorted(consumer.resumed) == [0, 1]
    claims = {p: w.claim.owner_epoch for p, w in engine._workers.items()}
    assert claims == store.epochs, "every live worker holds the partition's newest epoch"


async def test_a_gap_in_offsets_is_not_mistaken_for_a_stale_fetch() -> None:
    """Transaction markers leave gaps: records after one are matched, not dropped forever."""
    technology = next(f"T-{i}" for i in range(100) if partition_for(f"T-{i}", 4) == 0)
    listing = msgspec.json.encode(
        {
            "type": "list_technology",
            "technology_id": technology,
            "participant_id": "ops",
            "name": "x",
            "tick_size": 1,
            "lot_size": 1,
        }
    )

    def record(offset: int) -> Record:
        return Record(offset, 1, technology.encode(), listing)

    engine = MatchingEngine(Settings(), None, None)  # type: ignore[arg-type]
    worker = PartitionWorker(PartitionProcessor(0, 4), PartitionClaim(0, 1, 0, 0), 0, 0, 0, 0)
    engine._workers[0] = worker
    tp, consumer = TopicPartition("t", 0), StubConsumer()
    await engine._match({tp: [record(0), record(1)]}, consumer)  # type: ignore[dict-item, arg-type]
    assert worker.matched_offset == 2
    batches = await engine._match({tp: [record(3)]}, consumer)  # type: ignore[dict-item, arg-type]
    assert worker.matched_offset == 4
    assert len(batches) == 1
    assert consumer.seeks == []
    again = await engine._match({tp: [record(2), record(3)]}, consumer)  # type: ignore[dict-item, arg-type]
    assert again == [], "records already matched are never applied twice"
