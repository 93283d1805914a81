"""The campaign's own Kafka broker and PostgreSQL cluster, and what they say about progress.

A campaign stops and starts both servers, so it must never run on the shared development
stack (other tests and engineers use it): it gets a private one, on free ports, with its
state under the run's folder, started here and taken down at the end. The broker's jars are
hard-linked from the development stack's cache, so no Maven run is needed (a private stack
is up in 6-11 s on the 2-core machine: two short JVM runs format the storage, then the
broker starts while initdb runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

import devstack
from devstack import StackSettings
from devstack.kafka import KafkaPaths
from devstack.postgres import cluster_home, running_as_root
from engine.errors import StoreUnavailableError
from engine.settings import Settings
from engine.store.reports import partition_positions
from tests.chaos import ChaosStackError, ChaosTimeoutError

#: Where private stacks take their ports: below the ephemeral range, away from the
#: development stack's 29092/29093 and 25432.
_PORT_RANGE = (30000, 32000)
#: Ports tried before giving up on finding a free one (or a free pair for the broker).
_PORT_ATTEMPTS = 200
#: Poll interval of "has PostgreSQL settled up to here": the resolution of recovery times.
POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class PrivateStack:
    """One campaign's servers; every method blocks (call them through ``asyncio.to_thread``)."""

    settings: StackSettings

    @classmethod
    def under(
        cls, state_dir: Path, kafka_port: int | None = None, postgres_port: int | None = None
    ) -> PrivateStack:
        """A stack kept in ``state_dir``, on the given ports or on free ones."""
        kafka = kafka_port if kafka_port is not None else free_port(with_next=True)
        postgres = (
            postgres_port if postgres_port is not None else free_port(avoid=(kafka, kafka + 1))
        )
        # Built field by field, not from the environment: TECHX_KAFKA_BOOTSTRAP or
        # TECHX_DATABASE_URL there name the shared servers, which this stack must not touch.
        pg_bin = Path(os.environ.get("TECHX_PG_BIN") or StackSettings().pg_bin)
        return cls(
            StackSettings(
                state_dir=state_dir.resolve(),
                kafka_port=kafka,
                postgres_port=postgres,
                pg_bin=pg_bin,
            )
        )

    @property
    def kafka_bootstrap(self) -> str:
        return self.settings.kafka_bootstrap

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    def start(self) -> float:
        """Bring both servers up; returns how long it took, in seconds."""
        started = time.monotonic()
        seed_kafka_jars(self.settings.state_dir)
        devstack.up(self.settings)
        return time.monotonic() - started

    def stop_kafka(self) -> None:
        devstack.stop_kafka(self.settings)

    def start_kafka(self) -> None:
        devstack.start_kafka(self.settings)

    def stop_postgres(self) -> None:
        devstack.stop_postgres(self.settings)

    def start_postgres(self) -> None:
        devstack.start_postgres(self.settings)

    def destroy(self, keep_logs_in: Path) -> None:
        """Stop both servers and delete their data; their logs are kept in ``keep_logs_in``."""
        try:
            devstack.down(self.settings)
        finally:
            home = cluster_home(self.settings, as_root=running_as_root())
            with contextlib.suppress(OSError):
                shutil.copy2(home / "postgres.log", keep_logs_in / "postgres.log")
            shutil.rmtree(home, ignore_errors=True)
            kafka = KafkaPaths.of(self.settings)
            shutil.rmtree(kafka.data, ignore_errors=True)
            shutil.rmtree(kafka.libs, ignore_errors=True)


def seed_kafka_jars(state_dir: Path) -> None:
    """Give the private broker the development stack's jars (hard links: no copy, no Maven).

    Nothing happens when the private stack has them already or the development stack has
    none yet: devstack then fetches them with Maven as it always does.
    """
    target = KafkaPaths.of(StackSettings(state_dir=state_dir)).libs
    source = KafkaPaths.of(StackSettings.from_env()).libs
    if target.exists() or not (source / ".techx-complete").exists():
        return
    scratch = target.with_name("libs.seeding")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(source, scratch, copy_function=_link_or_copy)
    scratch.rename(target)


def _link_or_copy(source: str, target: str) -> str:
    try:
        os.link(source, target)
    except OSError:  # another file system: copy instead
        shutil.copy2(source, target)
    return target


def free_port(with_next: bool = False, avoid: tuple[int, ...] = ()) -> int:
    """A TCP port nobody listens on (and, ``with_next``, the one above it too).

    Taken below Linux's ephemeral range (32768 and up): a server restarted mid-campaign
    binds its port again, and an outgoing connection must not have taken it as its source
    port meanwhile. The scan starts at a place that depends on the process id, so two
    campaigns started together rarely try the same ports first.
    """
    first = _PORT_RANGE[0] + 4 * (os.getpid() % 500)
    span = _PORT_RANGE[1] - _PORT_RANGE[0]
    for step in range(_PORT_ATTEMPTS):
        port = _PORT_RANGE[0] + (first - _PORT_RANGE[0] + 4 * step) % span
        wanted = (port, port + 1) if with_next else (port,)
        if any(p in avoid for p in wanted) or not all(_bindable(p) for p in wanted):
            continue
        return port
    raise ChaosStackError(
        f"no free port in {_PORT_RANGE[0]}..{_PORT_RANGE[1]} after {_PORT_ATTEMPTS} tries"
    )


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.asynccontextmanager
async def deadline(timeout_s: float, what: str) -> AsyncIterator[None]:
    """Bound a wait; running out is a ChaosTimeoutError that says what did not happen."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except TimeoutError as e:
        raise ChaosTimeoutError(f"{what} did not happen within {timeout_s:.0f} s") from e


class Probe:
    """Asks the servers how far the command log reaches and how far PostgreSQL settled it;
    both questions are retried through outages (until their deadline)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions = [
            TopicPartition(settings.topics.commands, p) for p in range(settings.partitions)
        ]

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def log_ends(self, timeout_s: float = 60.0) -> dict[int, int]:
        async with deadline(timeout_s, "reading the command log's end offsets"):
            while True:
                try:
                    consumer = await self._started_consumer()
                    async with asyncio.timeout(5.0):
                        ends = await consumer.end_offsets(self._partitions)
                    return {tp.partition: offset for tp, offset in ends.items()}
                except (KafkaError, TimeoutError):
                    await asyncio.sleep(0.25)

    async def targets(self) -> dict[int, int]:
        """What "recovered" means from now on: every partition settled up to the log's end as
        of now, and at least one record past what it has settled now. The second half makes
        a fault that lands in a quiet instant (all settled, or nothing owned mid-rebalance)
        still wait until every partition moves again, instead of counting as 0 s."""
        ends = await self.log_ends()
        settled = await self.settled() or {}
        return {p: max(end, settled.get(p, 0) + 1) for p, end in ends.items()}

    async def settled(self) -> dict[int, int] | None:
        """Each partition's settled offset, or None while PostgreSQL does not answer."""
        try:
            async with asyncio.timeout(5.0):
                positions = await partition_positions(
                    self._settings.database_url, self._settings.topics.commands
                )
        except (
            StoreUnavailableError,
            OSError,  # TimeoutError included
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
        ):
            return None
        return {p: position.next_offset for p, position in positions.items()}

    async def wait_caught_up(self, ends: Mapping[int, int], timeout_s: float, what: str) -> float:
        """Wait until PostgreSQL settled every partition up to ``ends``; returns when."""
        async with deadline(timeout_s, f"settling up to {dict(ends)} ({what})"):
            while True:
                settled = await self.settled()
                if settled is not None and all(settled.get(p, 0) >= e for p, e in ends.items()):
                    return time.monotonic()
                await asyncio.sleep(POLL_S)

    async def wait_group(self, members: int, timeout_s: float) -> None:
        """Wait until the engines' group is stable with exactly ``members`` members."""
        async with deadline(timeout_s, f"the group settling with {members} members"):
            while True:
                if await self._group_state() == ("Stable", members):
                    return
                await asyncio.sleep(0.2)

    async def _group_state(self) -> tuple[str, int] | None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._settings.kafka_bootstrap, request_timeout_ms=5000
        )
        try:
            await admin.start()
            responses = await admin.describe_consumer_groups([self._settings.group_id])
        except KafkaError:
            return None
        finally:
            await admin.close()
        group = responses[0].groups[0]
        return str(group[2]), len(group[5])

    async def _started_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._settings.kafka_bootstrap,
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=5000,
            )
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer
        return self._consumer
