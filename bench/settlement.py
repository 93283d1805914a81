"""PostgreSQL settlement alone: ``python -m bench.settlement``.

Settles a seeded order flow's batches (four partitions, ~5k commands a settlement, as a
backlog makes them) through ``SettlementStore.settle`` on a fresh database, with nothing
else running in this process: how many commands a second PostgreSQL takes when it is the
only stage, and the p50 of one settlement. ``--one-transaction`` settles every partition in
one transaction (the path before large settlements went side by side), for comparison.
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.fresh import discarded_afterwards, fresh_settings
from engine.core.batch import LogRecord, PartitionProcessor, SettlementBatch
from engine.core.codec import encode
from engine.core.partitioning import partition_for
from engine.producers.simulation import OrderFlow, generated_listings
from engine.store import settlement
from engine.store.settlement import Settlement, SettlementStore

PARTITIONS = 4


def _batches(commands: int, per_settlement: int) -> list[list[SettlementBatch]]:
    """Each partition's batches, cut so that one settlement (a batch of every partition)
    carries about ``per_settlement`` commands."""
    flow = OrderFlow(1, generated_listings(16), invalid_ratio=0.01)
    stream = flow.listing_commands() + flow.next_commands(commands)
    shares: list[list[LogRecord]] = [[] for _ in range(PARTITIONS)]
    for command in stream:
        share = shares[partition_for(command.technology_id, PARTITIONS)]
        share.append(
            LogRecord(len(share), len(share), command.technology_id.encode(), encode(command))
        )
    size = per_settlement // PARTITIONS
    cut: list[list[SettlementBatch]] = []
    for partition, records in enumerate(shares):
        processor = PartitionProcessor(partition, PARTITIONS)
        cut.append([processor.process(records[i : i + size]) for i in range(0, len(records), size)])
    return cut


async def run(commands: int, per_settlement: int, one_transaction: bool) -> None:
    if one_transaction:
        settlement.SIDE_BY_SIDE_LEAST_ROWS = 10**12
    batches = _batches(commands, per_settlement)
    async with discarded_afterwards() as made:
        settings = await fresh_settings(f"settle{int(time.time())}")
        made.append(settings)
        store = await SettlementStore.connect(settings.database_url, settings.topics.commands)
        try:
            claims = [await store.claim(p) for p in range(PARTITIONS)]
            expected = [0] * PARTITIONS
            rounds = min(len(b) for b in batches)
            settled, took = 0, []
            started = time.monotonic()
            for i in range(rounds):
                items = []
                for p in range(PARTITIONS):
                    batch = batches[p][i]
                    items.append(Settlement(batch, claims[p], expected[p], expected[p]))
                    expected[p] = batch.next_offset
                    settled += batch.commands
                began = time.monotonic()
                await store.settle(items)
                took.append(time.monotonic() - began)
            elapsed = time.monotonic() - started
        finally:
            await store.close()
    how = "one transaction" if one_transaction else "one transaction per partition, side by side"
    print(
        f"settlement ({how}): {rounds} settlements of ~{settled // rounds:,} commands, "
        f"{settled / elapsed:,.0f} commands/s, p50 {statistics.median(took) * 1000:.0f} ms each"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200_000)
    parser.add_argument("--per-settlement", type=int, default=5_000)
    parser.add_argument("--one-transaction", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.commands, args.per_settlement, args.one_transaction))


if __name__ == "__main__":
    main()
