"""One engine process of a chaos campaign: ``python -m tests.chaos.victim``.

It is ``techx run`` (``run_engine(Settings.from_env())``, configured by ``TECHX_*``
variables), plus one optional fault that only the process itself can place exactly: with
``TECHX_CHAOS_KILL_AFTER_SETTLES=N`` it SIGKILLs itself right after its N-th settlement
returns, when PostgreSQL has committed the batch and the broker has not seen a byte of its
events. The hook wraps ``SettlementStore.settle`` in this process only; the engine's code is
not changed.

Exit codes (what the campaign's supervisor reads): 0 after a stop request (SIGTERM), 1 when
the engine stopped itself on an error it cannot retry (fenced, the broker refused events;
the ``victim_failed`` log line names it), -9 when killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import structlog

from engine.commands.run import run_engine
from engine.errors import TechXError
from engine.logs import configure_logging
from engine.settings import Settings
from engine.store.settlement import Settlement, SettlementStore

#: Set by the campaign on a fresh engine that must die between commit and publish.
KILL_AFTER_SETTLES = "TECHX_CHAOS_KILL_AFTER_SETTLES"
#: The log line the hook writes just before the SIGKILL.
KILLED_AFTER_COMMIT = "chaos_killed_after_commit"
#: The log line written when the engine stopped itself on an error.
FAILED = "victim_failed"

EXIT_STOPPED_ITSELF = 1

log = structlog.get_logger()


def install_kill_after_settles(count: int) -> None:
    """Make this process SIGKILL itself once ``count`` settlements have committed."""
    original = SettlementStore.settle
    settled = 0

    async def settle_then_die(store: SettlementStore, items: list[Settlement]) -> None:
        nonlocal settled
        await original(store, items)
        settled += 1
        if settled >= count:
            log.warning(
                KILLED_AFTER_COMMIT,
                settles=settled,
                partitions=[item.batch.partition for item in items],
                next_offsets=[item.batch.next_offset for item in items],
            )
            os.kill(os.getpid(), signal.SIGKILL)

    # Patching a method is exactly the point here, and only in this process.
    SettlementStore.settle = settle_then_die  # type: ignore[method-assign,assignment]


def main() -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    armed = os.environ.get(KILL_AFTER_SETTLES)
    if armed:
        install_kill_after_settles(int(armed))
        log.info("chaos_armed", kill_after_settles=int(armed))
    try:
        asyncio.run(run_engine(settings))
    except TechXError as e:
        return _failed([e])
    except BaseExceptionGroup as group:  # the engine's stages fail as a TaskGroup
        errors = list(_leaves(group))
        if all(isinstance(error, TechXError) for error in errors):
            return _failed(errors)
        raise
    except KeyboardInterrupt:
        return 130
    return 0


def _failed(errors: list[BaseException]) -> int:
    for error in errors:
        log.error(FAILED, error_type=type(error).__name__, error=str(error))
    return EXIT_STOPPED_ITSELF


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error


def failure_of(log_file: Path) -> str | None:
    """The error type a victim named in its last ``victim_failed`` line, if any."""
    found: str | None = None
    try:
        lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if FAILED not in line:
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("event") == FAILED:
            found = str(entry.get("error_type"))
    return found


if __name__ == "__main__":
    sys.exit(main())
