"""Failover: ``python -m bench.failover [--rounds 5] [--session-ms 2000] [--stop kill|term]``.

Two engines run as separate processes in one consumer group. Each round stops the older
engine, starts a replacement, and measures how long until every partition is live again: a
probe order sent to each partition right after the stop is settled in PostgreSQL. ``kill``
(the default) is a crash, ``kill -9``: the group waits out the session timeout. ``term`` is
a rolling restart: SIGTERM, the engine drains and leaves the group at once. Prints each
round and the median and maximum. Numbers are for people: no assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import replace

from engine.commands.setup import setup
from engine.core.partitioning import partition_for
from engine.producers.client import TradingClient
from engine.settings import Settings, Topics
from engine.store.reports import partition_positions
from schemas.commands import PlaceOrder


def _engine(settings: Settings, session_ms: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TECHX_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TECHX_DATABASE_URL": settings.database_url,
        "TECHX_TOPIC_PREFIX": settings.topics.prefix,
        "TECHX_GROUP_ID": settings.group_id,
        "TECHX_SESSION_TIMEOUT_MS": str(session_ms),
        "TECHX_LOG_FORMAT": "json",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _technology_per_partition(partitions: int) -> list[str]:
    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        technology = f"FAIL-{i:04d}"
        found.setdefault(partition_for(technology, partitions), technology)
        i += 1
    return [found[p] for p in range(partitions)]


async def _settled(settings: Settings) -> dict[int, int]:
    positions = await partition_positions(settings.database_url, settings.topics.commands)
    return {p: position.next_offset for p, position in positions.items()}


async def _wait_all_settled(settings: Settings, ends: dict[int, int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        settled = await _settled(settings)
        if all(settled.get(p, 0) >= end for p, end in ends.items()):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"not every partition was live within {timeout_s} s")


_SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM}


async def main_async(rounds: int, session_ms: int, stop: str) -> None:
    base = Settings.from_env()
    tag = f"failover{int(time.time())}"
    settings = replace(
        base, topics=Topics(f"bench.{tag}"), group_id=f"bench-{tag}", tick_interval_ms=0
    )
    await setup(settings)
    technologies = _technology_per_partition(settings.partitions)
    engines = [_engine(settings, session_ms), _engine(settings, session_ms)]
    timings: list[float] = []
    try:
        async with TradingClient(settings) as client:
            for technology in technologies:
                await client.list_technology(technology, "ops", "Failover probe", 1, 1)
            offsets = {
                partition_for(t, settings.partitions): await client.send(_probe(t, 0))
                for t in technologies
            }
            await _wait_all_settled(settings, {p: o + 1 for p, o in offsets.items()}, 120)
            print(
                f"failover benchmark: {settings.partitions} partitions, 2 engines, "
                f"session timeout {session_ms} ms, {rounds} rounds of "
                f"{'kill -9' if stop == 'kill' else 'SIGTERM (rolling restart)'}"
            )
            for n in range(1, rounds + 1):
                victim = engines.pop(0)
                victim.send_signal(_SIGNALS[stop])
                killed_at = time.monotonic()
                engines.append(_engine(settings, session_ms))
                ends = {}
                for technology in technologies:
                    offset = await client.send(_probe(technology, n))
                    ends[partition_for(technology, settings.partitions)] = offset + 1
                await _wait_all_settled(settings, ends, 120)
                took = time.monotonic() - killed_at
                timings.append(took)
                await asyncio.to_thread(victim.wait)
                how = "kill -9" if stop == "kill" else "SIGTERM"
                print(f"  round {n}: every partition live again {took:5.2f} s after {how}")
                await asyncio.sleep(session_ms / 1000 + 2)  # let the group settle with both
    finally:
        for engine in engines:
            engine.send_signal(signal.SIGTERM)
        for engine in engines:
            try:
                engine.wait(30)
            except subprocess.TimeoutExpired:
                engine.kill()
    if timings:
        print(
            f"  median {statistics.median(timings):.2f} s   max {max(timings):.2f} s "
            f"(session timeout {session_ms} ms)"
        )


def _probe(technology: str, round_: int) -> PlaceOrder:
    """A bid that rests: its settlement proves the partition is live."""
    return PlaceOrder(
        technology, "prober", f"probe-{round_}-{time.time_ns()}", "bid", 1, "limit", 1
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--session-ms", type=int, default=2_000)
    parser.add_argument("--stop", choices=sorted(_SIGNALS), default="kill")
    args = parser.parse_args()
    asyncio.run(main_async(args.rounds, args.session_ms, args.stop))


if __name__ == "__main__":
    main()
