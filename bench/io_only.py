"""The I/O-only pipeline: the engine's shape on the same stack, without matching.

Issue 11 measures the engine end to end against what Kafka and PostgreSQL alone allow on the
same machine: consume the command backlog in fetches of up to 5,000 records, write one row
per command in one PostgreSQL transaction per fetch (COPY, as the engine settles, plus the
partition positions moved in the same transaction), then produce one result record per
command (in one Kafka transaction per fetch when outputs are exactly once, as the engine's
default). Producing fetch N overlaps writing fetch N+1, like the engine's settle and publish
stages. No decoding, no matching: the ceiling the engine's own work is compared with.

``--volume engine`` makes it write and produce what the engine does for the same commands,
in volume (measured on the benchmark's order flow): per command an outcome row of ~670 bytes
of JSON (the events) instead of the command's ~240, 0.64 deal rows, and 2.4 records out
(1.77 executions, 0.64 deals) instead of one. The issue's I/O-only pipeline moves about a
third of the engine's bytes; this one tells how near the engine comes to its own I/O.
``--batched`` produces in record batches (``send_batch``), as the engine does, instead of one
``send`` per record: without it the pipeline spends more CPU producing than the engine.

``--rate``/``--seconds`` (and ``bench.end_to_end --io-only``) also time it under an offered
load, as the engine's latency is timed: each command's append time to its result's append
time (broker LogAppendTime on both topics). The pipeline appends a result only after its
PostgreSQL commit, in a Kafka transaction when outputs are exactly once; one result per
command on the command's partition number, in order, so the i-th result of a partition
answers its i-th command. The pipeline and the load's sender share this process.

``python -m bench.io_only --orders 100000`` runs it alone on fresh topics and a database.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.fresh import discarded_afterwards, fresh_settings, publish_backlog
from bench.offered import latency_line, offered_slices, send_paced
from engine.consumers.log_reader import read_partition
from engine.core.batch import KafkaMessage
from engine.producers.client import TradingClient
from engine.producers.publisher import send_in_batches
from engine.producers.simulation import OrderFlow, generated_listings
from engine.settings import Settings
from engine.store.rows import DEAL_COLUMNS, OUTCOME_COLUMNS

_TABLE = """
CREATE TABLE IF NOT EXISTS io_only_outcomes (LIKE command_outcomes INCLUDING ALL);
CREATE TABLE IF NOT EXISTS io_only_state (partition integer PRIMARY KEY, next_offset bigint);
CREATE TABLE IF NOT EXISTS io_only_deals (LIKE deals INCLUDING ALL);
"""

#: ``--volume``: the issue's pipeline (one row and one record per command, the command's
#: bytes), or the engine's volume of rows and records for the same commands.
VOLUMES = ("commands", "engine")
#: Padding that brings an outcome's JSON from two commands (~480 bytes) to ~670.
_EVENTS_PADDING = b',"' + b"x" * 180 + b'"]'


def _engine_volume(
    topic: str, settings: Settings, partition: int, offset: int, key: bytes | None, value: bytes
) -> tuple[tuple[object, ...], list[tuple[object, ...]], list[tuple[str, bytes | None, bytes]]]:
    """The outcome row, deal rows and records the engine writes for a command, in volume:
    deals for 16 commands in 25, a second execution for 77 in 100 (deterministic by offset)."""
    events = b"[" + value + b"," + value + _EVENTS_PADDING
    outcome = (topic, partition, offset, key.decode() if key else "", "io", "", "", events)
    records = [(settings.topics.executions, key, value)]
    deals: list[tuple[object, ...]] = []
    if offset % 25 < 16:
        deals.append(
            (topic, f"p{partition}:d{offset}", f"p{partition}", offset, offset, 1_000_000, 1,
             "buyer", "seller", f"b{offset}", f"o{offset}", "bid", 0, partition, offset)
        )  # fmt: skip
        records.append((settings.topics.deals, key, value))
    if offset % 100 < 77:
        records.append((settings.topics.executions, key, value))
    return outcome, deals, records


def _same_bytes(data: bytes) -> bytes:
    return data


async def _connect(url: str) -> asyncpg.Connection:
    connection = await asyncpg.connect(url)
    await connection.set_type_codec(
        "json", schema="pg_catalog", format="binary", encoder=_same_bytes, decoder=_same_bytes
    )
    return connection


async def io_only(
    settings: Settings, total: int, volume: str = "commands", batched: bool = False
) -> float:
    """Run the I/O-only pipeline over the ``total`` records of ``settings``' commands topic
    (already published); returns commands/s from the first fetch to the last produce."""
    rate, _ = await io_only_with_cpu(settings, total, volume, batched)
    return rate


async def io_only_with_cpu(  # noqa: PLR0915 - one loop, in order
    settings: Settings, total: int, volume: str = "commands", batched: bool = False
) -> tuple[float, float]:
    """:func:`io_only`, and the CPU seconds this process spent from starting the Kafka clients
    to the last produce (as the engine's are counted from its start)."""
    connection = await _connect(settings.database_url)
    await connection.execute(_TABLE)
    await connection.executemany(
        "INSERT INTO io_only_state VALUES ($1, 0) ON CONFLICT DO NOTHING",
        [(p,) for p in range(settings.partitions)],
    )
    consumer = AIOKafkaConsumer(
        **settings.kafka_options(), group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024,
    )  # fmt: skip
    exactly_once = settings.output_guarantee == "exactly_once"
    options = (
        {"transactional_id": f"{settings.group_id}-io-only"}
        if exactly_once
        else {"enable_idempotence": True, "acks": "all"}
    )
    producer = AIOKafkaProducer(
        **settings.kafka_options(), linger_ms=0, max_batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024, **options,
    )  # fmt: skip
    cpu_started = time.process_time()
    await consumer.start()
    await producer.start()
    out, topic = settings.topics.executions, settings.topics.commands
    publishing: asyncio.Task[None] | None = None

    async def send(records: list[tuple[str, int, bytes | None, bytes | None]]) -> None:
        if batched:
            by_destination: dict[tuple[str, int], list[KafkaMessage]] = {}
            for t, p, k, v in records:
                by_destination.setdefault((t, p), []).append((k, v, []))
            sent = [
                future
                for (t, p), messages in by_destination.items()
                for future in await send_in_batches(producer, t, p, messages)
            ]
        else:
            sent = [await producer.send(t, v, key=k, partition=p) for t, p, k, v in records]
        await asyncio.gather(*sent)

    async def publish(records: list[tuple[str, int, bytes | None, bytes | None]]) -> None:
        if exactly_once:
            async with producer.transaction():
                await send(records)
        else:
            await send(records)

    try:
        partitions = [
            TopicPartition(settings.topics.commands, p) for p in range(settings.partitions)
        ]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        done = 0
        started: float | None = None
        while done < total:
            fetched = await consumer.getmany(timeout_ms=100, max_records=settings.batch_max_records)
            if not fetched:
                continue
            if started is None:
                started = time.monotonic()
            rows: list[tuple[object, ...]] = []
            deal_rows: list[tuple[object, ...]] = []
            outputs: list[tuple[str, int, bytes | None, bytes | None]] = []
            positions = []
            for tp, records in fetched.items():
                for r in records:
                    if volume == "engine":
                        outcome, deals, produced = _engine_volume(
                            topic, settings, tp.partition, r.offset, r.key, r.value or b"null"
                        )
                        rows.append(outcome)
                        deal_rows.extend(deals)
                        outputs.extend((t, tp.partition, k, v) for t, k, v in produced)
                        continue
                    key = r.key.decode() if r.key else ""
                    rows.append(
                        (topic, tp.partition, r.offset, key, "io", "", "", r.value or b"null")
                    )
                    outputs.append((out, tp.partition, r.key, r.value))
                positions.append((records[-1].offset + 1, tp.partition))
            async with connection.transaction():
                await connection.executemany(
                    "UPDATE io_only_state SET next_offset = $1 WHERE partition = $2", positions
                )
                if deal_rows:
                    await connection.copy_records_to_table(
                        "io_only_deals", records=deal_rows, columns=DEAL_COLUMNS
                    )
                await connection.copy_records_to_table(
                    "io_only_outcomes", records=rows, columns=OUTCOME_COLUMNS
                )
            if publishing is not None:
                await publishing
            publishing = asyncio.create_task(publish(outputs))
            done += len(rows)
        if publishing is not None:
            await publishing
        cpu = time.process_time() - cpu_started
        return done / (time.monotonic() - (started or time.monotonic())), cpu
    finally:
        await consumer.stop()
        await producer.stop()
        await connection.close()


async def io_only_latencies(
    settings: Settings, rate: int, seconds: float, seed: int, technologies: int
) -> list[int]:
    """The issue's pipeline (one result per command) following a load offered at ``rate``
    commands/s for ``seconds`` on fresh topics: each command's append to its result's append,
    in ms. Compared with the engine's command append to deal append."""
    flow = OrderFlow(seed, generated_listings(technologies), invalid_ratio=0.01)
    slices = offered_slices(flow, rate, seconds)
    pipeline = asyncio.create_task(io_only_with_cpu(settings, sum(map(len, slices))))
    async with TradingClient(settings, client_id="bench-io-only-load") as client:
        await send_paced(client, slices)
    await pipeline
    latencies: list[int] = []
    for partition in range(settings.partitions):
        appended = [
            record.timestamp
            async for records in read_partition(settings, settings.topics.commands, partition, 0)
            for record in records
        ]
        answered = [
            record.timestamp
            async for records in read_partition(settings, settings.topics.executions, partition, 0)
            for record in records
        ]
        if len(answered) != len(appended):
            raise SystemExit(
                f"partition {partition}: {len(appended)} commands but {len(answered)} results"
            )
        latencies.extend(
            result - command for command, result in zip(appended, answered, strict=True)
        )
    return latencies


async def run_alone(
    orders: int,
    seed: int,
    technologies: int,
    volume: str,
    batched: bool,
    rate: int,
    seconds: float,
) -> None:
    """Fresh topics and database, publish the backlog, then time the I/O-only pipeline; then,
    on fresh topics again, its latency under an offered load."""
    async with discarded_afterwards() as made:
        tag = int(time.time())
        settings = await fresh_settings(f"io{tag}")
        made.append(settings)
        await publish_backlog(settings, orders, seed, technologies)
        throughput = await io_only(settings, orders + technologies, volume, batched)
        print(
            f"  io-only      {orders + technologies:>9,} commands at {throughput:>9,.0f} commands/s"
        )
        if seconds > 0:
            offered = await fresh_settings(f"io{tag}_load")
            made.append(offered)
            latencies = await io_only_latencies(offered, rate, seconds, seed, technologies)
            print(
                f"  io-only      {len(latencies):,} commands offered at {rate:,}/s for "
                f"{seconds:.0f} s, command append to result append:"
            )
            print(f"               {latency_line(latencies)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--technologies", type=int, default=16)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--volume", choices=VOLUMES, default="commands")
    parser.add_argument(
        "--batched", action="store_true", help="produce in record batches, as the engine does"
    )
    parser.add_argument("--rate", type=int, default=5_000, help="offered commands/s for latency")
    parser.add_argument(
        "--seconds", type=float, default=0.0, help="offered load duration (0: no latency run)"
    )
    args = parser.parse_args()
    asyncio.run(
        run_alone(
            args.orders,
            args.seed,
            args.technologies,
            args.volume,
            args.batched,
            args.rate,
            args.seconds,
        )
    )


if __name__ == "__main__":
    main()
