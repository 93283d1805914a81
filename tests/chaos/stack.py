"""The campaign's own Kafka broker and PostgreSQL cluster.

A campaign stops and starts both servers, so it must never run on the shared development
stack (other tests and engineers use it): it gets a private one, on free ports, with its
state under the run's folder, started here and taken down at the end. The broker's jars are
hard-linked from the development stack's cache, so no Maven run is needed (a private stack
is up in about 10 s on the 2-core machine: two short JVM runs format the storage, then the
broker starts while initdb runs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import devstack
from devstack import StackSettings
from devstack.kafka import KafkaPaths
from devstack.postgres import cluster_home, running_as_root
from tests.chaos import ChaosStackError

#: Ports tried before giving up on finding a free pair for the broker (port, port + 1).
_PORT_ATTEMPTS = 50


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
    """A TCP port nobody listens on (and, ``with_next``, the one above it too)."""
    for _ in range(_PORT_ATTEMPTS):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port in avoid or (with_next and (port + 1 in avoid or not _bindable(port + 1))):
            continue
        return port
    raise ChaosStackError(f"no free port found in {_PORT_ATTEMPTS} attempts")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
