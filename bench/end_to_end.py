"""End-to-end throughput and latency through Kafka and PostgreSQL: ``python -m bench.end_to_end``.

The engine runs as its own process (``python -m engine run``), as in production; this process
plays the front-ends and the downstream reader, and the broker and PostgreSQL share the same
machine. Two phases on fresh topics and a fresh database:

1. backlog: N orders are published first, then the engine is started; orders settled per
   second is the engine's sustained rate with Kafka and PostgreSQL in the loop;
2. offered load: with the engine caught up, orders arrive at a fixed rate; each deal's
   latency is its record timestamp on the deals topic (broker append time, after the
   PostgreSQL commit) minus the command's append time carried in the deal's ``timestamp_ms``;
   and, as a subscriber feels it, the moment a ``read_committed`` consumer receives the deal
   minus that same append time (with exactly-once outputs a deal becomes visible when its
   transaction commits, after it is appended).

Both phases also print the engine process's CPU seconds per 100k commands (from
/proc/<pid>/stat: much less sensitive than wall time to other load on a shared machine) and
the mean time per batch in each pipeline stage (match, settle, publish), scraped from the
engine's own /metrics before and after the phase.

``--guarantee at_least_once`` runs the engine without transactions, for comparison.
``--io-only`` first runs bench/io_only.py's pipeline (Kafka -> PostgreSQL -> Kafka, no
matching) on the same backlog on its own fresh topics and database, then prints the engine's
backlog rate as a ratio to it (issue 11: at least 0.7x). ``--seconds 60`` is the sustained
form of phase 2.

Prints numbers; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.fresh import discarded_afterwards, fresh_settings, publish_backlog
from bench.io_only import VOLUMES, io_only_latencies, io_only_with_cpu
from bench.offered import latency_line, offered_slices, percentile, send_paced
from bench.targets import against
from devstack import kafka
from devstack.processes import process_cpu_s
from devstack.settings import StackSettings
from engine.consumers.log_reader import read_partition
from engine.core.codec import decode_event
from engine.producers.client import TradingClient
from engine.producers.simulation import OrderFlow, generated_listings
from engine.settings import OUTPUT_GUARANTEES, Settings
from engine.store.connection import connected
from schemas.events import Deal


async def _settled(settings: Settings) -> int:
    async with connected(settings.database_url) as connection:
        return int(
            await connection.fetchval(
                "SELECT coalesce(sum(next_offset), 0) FROM partition_state WHERE topic = $1",
                settings.topics.commands,
            )
        )


async def _wait_settled(
    settings: Settings, target: int, engine: subprocess.Popen[bytes], label: str
) -> tuple[float, float]:
    """Poll PostgreSQL until ``target`` commands are settled; (first progress, done) times."""
    first = None
    last_print = time.monotonic()
    while True:
        if engine.poll() is not None:
            raise SystemExit(f"engine exited with {engine.returncode} during {label}")
        settled = await _settled(settings)
        now = time.monotonic()
        if settled and first is None:
            first = now
        if settled >= target:
            return first or now, now
        if now - last_print >= 2:
            print(f"    {label}: {settled:,}/{target:,} settled", flush=True)
            last_print = now
        await asyncio.sleep(0.05)


_STAGE_LINE = re.compile(
    r'^techx_engine_stage_duration_seconds_(sum|count)\{stage="(\w+)"\} (\S+)$', re.MULTILINE
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _stage_totals(port: int) -> dict[tuple[str, str], float]:
    """Each stage's (sum, count) of batch durations so far, from the engine's /metrics."""

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())

    text = await asyncio.to_thread(scrape)
    return {(m[2], m[1]): float(m[3]) for m in _STAGE_LINE.finditer(text)}


class _Phase:
    """CPU seconds and stage times the engine spent between start() and report()."""

    def __init__(self, engine: subprocess.Popen[bytes], port: int) -> None:
        self._engine, self._port = engine, port
        self._cpu = 0.0
        self._stages: dict[tuple[str, str], float] = {}

    async def start(self) -> None:
        self._cpu = process_cpu_s(self._engine.pid)
        self._stages = await _stage_totals(self._port)

    async def report(self, commands: int, results: dict[str, float], key: str) -> None:
        cpu = process_cpu_s(self._engine.pid) - self._cpu
        stages = await _stage_totals(self._port)
        results[f"{key}_cpu_s_per_100k"] = cpu / commands * 100_000
        settles = stages.get(("settle", "count"), 0.0) - self._stages.get(("settle", "count"), 0.0)
        means = [f"{settles:.0f} settle transactions"]
        for stage in ("match", "settle", "publish"):
            n = stages.get((stage, "count"), 0.0) - self._stages.get((stage, "count"), 0.0)
            total = stages.get((stage, "sum"), 0.0) - self._stages.get((stage, "sum"), 0.0)
            if n:
                means.append(f"{stage} {total / n * 1000:.1f} ms")
        print(
            f"  {key + ' cpu':<12} engine {cpu:.2f} s = {cpu / commands * 100_000:.2f} s per 100k "
            f"commands; {', '.join(means)} (mean per batch)"
        )


def _start_engine(
    settings: Settings, log_level: str = "warning", metrics_port: int = 0
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TECHX_OUTPUT_GUARANTEE": settings.output_guarantee,
        "TECHX_TOPIC_PREFIX": settings.topics.prefix,
        "TECHX_DATABASE_URL": settings.database_url,
        "TECHX_GROUP_ID": settings.group_id,
        "TECHX_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TECHX_LOG_FORMAT": "json",
        "TECHX_LOG_LEVEL": log_level,
        "TECHX_PARTITIONS": str(settings.partitions),
        "TECHX_METRICS_PORT": str(metrics_port),
    }
    stderr = subprocess.PIPE if log_level == "info" else None
    return subprocess.Popen([sys.executable, "-m", "engine", "run"], env=env, stderr=stderr)


async def _wait_metrics(port: int, engine: subprocess.Popen[bytes]) -> None:
    """Until the engine's /metrics answers (it starts before the partitions are assigned)."""
    while True:
        if engine.poll() is not None:
            raise SystemExit(f"engine exited with {engine.returncode} while starting")
        try:
            await _stage_totals(port)
            return
        except OSError:
            await asyncio.sleep(0.05)


async def _measure_recovery(settings: Settings) -> None:
    """Restart an engine on the whole log and time until every partition is live again."""
    started = time.monotonic()
    engine = _start_engine(settings, log_level="info")
    assert engine.stderr is not None
    recovered: list[dict[str, object]] = []
    try:
        while len(recovered) < settings.partitions:
            line = await asyncio.to_thread(engine.stderr.readline)
            if not line:
                raise SystemExit(f"engine exited with {engine.wait()} while recovering")
            if b'"partition_recovered"' in line:
                recovered.append(json.loads(line))
        elapsed = time.monotonic() - started
        replayed = sum(int(str(r["replayed"])) for r in recovered)
        print(
            f"  recovery     {replayed:>9,} commands replayed into {len(recovered)} markets in "
            f"{elapsed:6.2f} s = {replayed / elapsed:>9,.0f} commands/s (process start to every "
            f"partition live; snapshots every {settings.snapshot_every:,} commands a partition)"
        )
    finally:
        engine.send_signal(signal.SIGTERM)
        await asyncio.to_thread(engine.communicate)


async def _deal_latencies(settings: Settings, since: dict[int, int]) -> list[int]:
    latencies: list[int] = []
    for partition in range(settings.partitions):
        start = since.get(partition, 0)
        async for records in read_partition(settings, settings.topics.deals, partition, start):
            for record in records:
                deal = decode_event(record.value)
                assert isinstance(deal, Deal)
                latencies.append(record.timestamp - deal.timestamp_ms)
    return latencies


async def _visible_latencies(
    settings: Settings, since: dict[int, int], stop: asyncio.Event
) -> list[int]:
    """Deals as a downstream system sees them: received by a read_committed consumer."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_options(),
        group_id=None,
        isolation_level="read_committed",
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    latencies: list[int] = []
    try:
        tps = [TopicPartition(settings.topics.deals, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, since.get(tp.partition, 0))
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=50)
            now_ms = time.time() * 1000
            for records in fetched.values():
                for record in records:
                    deal = decode_event(record.value)
                    assert isinstance(deal, Deal)
                    latencies.append(round(now_ms - deal.timestamp_ms))
    finally:
        await asyncio.sleep(0)
        await consumer.stop()
    return latencies


async def _deal_ends(settings: Settings) -> dict[int, int]:
    consumer = AIOKafkaConsumer(**settings.kafka_options(), group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topics.deals, p) for p in range(settings.partitions)]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await asyncio.sleep(0)
        await consumer.stop()


async def _checkpoint(settings: Settings) -> None:
    """Start a phase with no dirty pages left by the one before: otherwise the engine, run
    after the I/O-only pipeline, pays for flushing that pipeline's writes (with a 1.5M
    backlog, WAL-triggered checkpoints of 15-20 s ran through the engine's phase), and the
    offered-load phase for flushing the backlog's (`make bench`: p50 53 ms with it in).

    The broker's log segments are dirty pages too, which no CHECKPOINT flushes: the kernel
    wrote the previous phase's topics back during the next one. Synced first, a 1.5M backlog
    settles at 40.4-41.1k commands/s instead of 38.2-38.5k after the I/O-only phase, and
    that phase's offered-load p99 is 6-39 ms instead of 174-228 (three runs each)."""
    await asyncio.to_thread(os.sync)
    async with connected(settings.database_url) as connection:
        try:
            await connection.execute("CHECKPOINT")
        except asyncpg.InsufficientPrivilegeError:
            print("  (no CHECKPOINT between phases: the role may not run it)")


#: A local broker younger than this gets a warm-up run before latency is measured on it.
WARM_UP_BELOW_AGE_S = 600.0
#: The warm-up run's backlog and offered-load seconds.
WARM_UP_ORDERS = 20_000
WARM_UP_S = 10.0


def _record_latencies(
    results: dict[str, float], key: str, latencies: list[int], heading: str
) -> None:
    """Print a latency distribution under its heading; keep its p50 and p99 in ``results``."""
    results[f"{key}_p50_ms"] = percentile(latencies, 50)
    results[f"{key}_p99_ms"] = percentile(latencies, 99)
    print(heading)
    print(f"               {latency_line(latencies)}")


async def _warm_up(
    age_s: float, rate: int, technologies: int, seed: int, guarantee: str | None
) -> None:
    """A short run of both pipelines, offered load included, whose numbers are discarded.

    Right after ``devstack up`` the broker's JVM still compiles its request paths: five-second
    probes of the I/O-only pipeline at 5k/s, repeated from the broker's start, gave p99 2,660,
    53, 40, 44, 20, 23, 28, 24, 16 ms. This run takes out that first minute's tail of
    seconds, not all of a young stack's spread. In `make bench` on a broker started a minute
    before, the engine's p99 was 52-63 ms with no warm-up or after I/O-only probes alone
    (three runs), 20 and 58 ms after this run, and 17-18 ms in runs that followed another
    engine run; warm stacks give 13-25 ms. Latency worth comparing is measured on a stack
    that has run ten minutes, as the warm-up says."""
    print(
        f"  warm-up      the broker started {age_s:.0f} s ago: a run of both pipelines "
        f"({WARM_UP_ORDERS:,} backlog, {rate:,}/s for {WARM_UP_S:.0f} s), its numbers discarded"
    )
    with contextlib.redirect_stdout(io.StringIO()):
        warm = await run(
            WARM_UP_ORDERS,
            rate,
            WARM_UP_S,
            technologies,
            seed,
            guarantee,
            with_io_only=True,
            recovery=False,
            warm_up=False,
        )
    print(
        f"  warm-up      latency p99 there: engine {warm['latency_p99_ms']:.0f} ms, "
        f"I/O-only {warm['io_only_latency_p99_ms']:.0f} ms; a stack this young still spreads "
        "more than one that has run ten minutes"
    )


async def run(  # noqa: PLR0915 - the benchmark reads top to bottom, phase by phase
    orders: int,
    rate: int,
    seconds: float,
    technologies: int,
    seed: int,
    guarantee: str | None,
    with_io_only: bool = False,
    recovery: bool = True,
    keep: bool = False,
    io_volume: str = "commands",
    io_batched: bool = False,
    warm_up: bool = True,
) -> dict[str, float]:
    """Both phases (and the I/O-only pipeline first when asked); returns the numbers. The
    run's topics and database are dropped afterwards unless ``keep``. Latency is measured
    after a warm-up run when the local broker is young (see _warm_up); the user's own broker,
    whose age is not known here, is measured as it is."""
    if seconds > 0 and warm_up:
        age = kafka.age_s(StackSettings.from_env())
        if age is not None and age < WARM_UP_BELOW_AGE_S:
            await _warm_up(age, rate, technologies, seed, guarantee)
    async with discarded_afterwards(keep) as made:
        results: dict[str, float] = {}
        tag = str(int(time.time()))
        if with_io_only:
            io_settings = await fresh_settings(f"{tag}_io", guarantee)
            made.append(io_settings)
            await publish_backlog(io_settings, orders, seed, technologies)
            await _checkpoint(io_settings)
            # Nothing else runs in this process meanwhile: its CPU time is the pipeline's.
            results["e2e_io_only"], io_cpu = await io_only_with_cpu(
                io_settings, orders + technologies, io_volume, io_batched
            )
            results["io_only_cpu_s_per_100k"] = io_cpu / (orders + technologies) * 100_000
            print(
                f"  io-only      {orders + technologies:>9,} commands at "
                f"{results['e2e_io_only']:>9,.0f} commands/s (Kafka in -> PostgreSQL -> Kafka out, "
                f"no matching, {io_volume} volume{', batched' if io_batched else ''}, "
                f"outputs {io_settings.output_guarantee})"
            )
            print(
                f"  io-only cpu  {io_cpu:.2f} s = "
                f"{results['io_only_cpu_s_per_100k']:.2f} s per 100k "
                "commands (its one process, as the engine's below)"
            )
            if seconds > 0:
                io_load = await fresh_settings(f"{tag}_io_load", guarantee)
                made.append(io_load)
                await _checkpoint(io_load)
                io_latencies = await io_only_latencies(io_load, rate, seconds, seed, technologies)
                _record_latencies(
                    results,
                    "io_only_latency",
                    io_latencies,
                    f"  io-only      {len(io_latencies):>9,} commands offered at {rate:,}/s for "
                    f"{seconds:.0f} s, command-in to result-published (the issue's pipeline):",
                )
        settings = await fresh_settings(tag, guarantee)
        made.append(settings)
        flow = OrderFlow(seed, generated_listings(technologies), invalid_ratio=0.01)
        backlog = flow.listing_commands() + flow.next_commands(orders)
        print(
            f"end-to-end benchmark: {technologies} technologies, {settings.partitions} partitions, "
            f"engine batch <= {settings.batch_max_records} records, outputs "
            f"{settings.output_guarantee}"
        )

        async with TradingClient(settings, client_id="bench-frontend") as client:
            started = time.monotonic()
            await client.send_many(backlog)
            published_s = time.monotonic() - started
            print(
                f"  publish      {len(backlog):>9,} commands in {published_s:6.2f} s = "
                f"{len(backlog) / published_s:>9,.0f} commands/s (front-end send_many)"
            )

            await _checkpoint(settings)
            port = _free_port()
            engine = _start_engine(settings, metrics_port=port)
            try:
                await _wait_metrics(port, engine)
                phase = _Phase(engine, port)
                await phase.start()
                first, done = await _wait_settled(settings, len(backlog), engine, "backlog")
                # A backlog settled within one poll of the first would divide by zero.
                done = max(done, first + 0.001)
                print(
                    f"  backlog      {len(backlog):>9,} commands settled in {done - first:6.2f} s "
                    f"= {len(backlog) / (done - first):>9,.0f} commands/s "
                    f"(Kafka in -> PostgreSQL -> Kafka out)"
                )
                results["e2e_engine"] = len(backlog) / (done - first)
                await phase.report(len(backlog), results, "backlog")
                if "e2e_io_only" in results:
                    results["e2e_vs_io_only"] = results["e2e_engine"] / results["e2e_io_only"]
                    print(f"  engine/io    {against('e2e_vs_io_only', results['e2e_vs_io_only'])}")
                if "io_only_cpu_s_per_100k" in results:
                    # What the ratio would be if each process had a core to itself: both
                    # are CPU-bound in one Python process; far steadier than wall time on a
                    # busy machine.
                    cpu_ratio = (
                        results["io_only_cpu_s_per_100k"] / results["backlog_cpu_s_per_100k"]
                    )
                    results["e2e_vs_io_only_cpu"] = cpu_ratio
                    print(f"  engine/io    by CPU {against('e2e_vs_io_only_cpu', cpu_ratio)}")

                await _checkpoint(settings)
                since = await _deal_ends(settings)
                seen_stop = asyncio.Event()
                seen = asyncio.create_task(_visible_latencies(settings, since, seen_stop))
                total = len(backlog)
                await phase.start()
                started = time.monotonic()
                offered = await send_paced(client, offered_slices(flow, rate, seconds))
                total += offered
                sent_s = time.monotonic() - started
                _, settled_at = await _wait_settled(settings, total, engine, "offered load")
                results["sustained_rate"] = offered / max(sent_s, settled_at - started)
                await phase.report(offered, results, "offered")
                await asyncio.sleep(1.0)  # the last transactions commit; the reader catches up
                seen_stop.set()
                visible = await seen
                latencies = await _deal_latencies(settings, since)
                if latencies:
                    _record_latencies(
                        results,
                        "latency",
                        latencies,
                        f"  latency      {offered:>9,} commands offered at {rate:,}/s for "
                        f"{seconds:.0f} s, {len(latencies):,} deals, command-in to deal-published:",
                    )
                    if "io_only_latency_p99_ms" in results:
                        print(
                            "               engine/io-only p50 "
                            f"{results['latency_p50_ms'] / results['io_only_latency_p50_ms']:.2f}x"
                            ", p99 "
                            f"{results['latency_p99_ms'] / results['io_only_latency_p99_ms']:.2f}x"
                        )
                if visible:
                    print(
                        f"               command-in to deal received by a read_committed "
                        f"subscriber ({len(visible):,} deals):"
                    )
                    print(f"               {latency_line(visible)}")
            finally:
                stopping = time.monotonic()
                engine.send_signal(signal.SIGTERM)
                code = engine.wait(timeout=60)
                print(
                    f"  shutdown     engine exited {code} {time.monotonic() - stopping:.2f} s "
                    f"after SIGTERM"
                )
        if recovery:
            await _measure_recovery(settings)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000, help="backlog size")
    parser.add_argument("--rate", type=int, default=5_000, help="offered orders per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="offered load duration")
    parser.add_argument("--technologies", type=int, default=16)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--guarantee",
        choices=OUTPUT_GUARANTEES,
        help="the engine's TECHX_OUTPUT_GUARANTEE (default: as the environment says)",
    )
    parser.add_argument(
        "--io-only", action="store_true", help="run bench.io_only first; print engine/io ratio"
    )
    parser.add_argument(
        "--io-volume",
        choices=VOLUMES,
        default="commands",
        help="what the I/O-only pipeline writes: the issue's one row and record per command"
        " (default), or the engine's volume of rows and records (see bench.io_only)",
    )
    parser.add_argument(
        "--io-batched",
        action="store_true",
        help="the I/O-only pipeline produces in record batches, as the engine does, instead"
        " of one send per record",
    )
    parser.add_argument(
        "--no-recovery", action="store_true", help="skip timing a restart on the whole log"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's topics and database afterwards"
    )
    args = parser.parse_args()
    asyncio.run(
        run(
            args.orders,
            args.rate,
            args.seconds,
            args.technologies,
            args.seed,
            args.guarantee,
            args.io_only,
            recovery=not args.no_recovery,
            keep=args.keep,
            io_volume=args.io_volume,
            io_batched=args.io_batched,
        )
    )


if __name__ == "__main__":
    main()
