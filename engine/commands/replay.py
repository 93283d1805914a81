"""``techx replay``: recompute a partition's events from the command log, for audit.

The market is always rebuilt from offset 0 (an audit trusts the log, not a snapshot), so
events before ``--from-offset`` are computed silently. Nothing live is touched: events go
to a file, and ``--compare`` only reads PostgreSQL. The partition is checked against the
topic before anything is read, so a wrong number fails at once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from engine.commands.topics import end_offset
from engine.consumers.log_reader import read_partition
from engine.core.batch import DeadLetter, PartitionProcessor
from engine.core.codec import encode
from engine.progress import Progress
from engine.settings import Settings
from engine.store.reports import settled_deals, settled_offset
from schemas.events import Deal

log = structlog.get_logger()

_PROGRESS_INTERVAL_S = 2.0


@dataclass(slots=True)
class ReplayResult:
    partition: int
    commands: int = 0
    events: int = 0
    dead_letters: int = 0
    deals: list[Deal] = field(default_factory=list)


async def replay_partition(
    settings: Settings,
    partition: int,
    from_offset: int = 0,
    to_offset: int | None = None,
    out: Path | None = None,
    progress: Progress | None = None,
) -> ReplayResult:
    """Run the partition's commands through a fresh market; keep what lies in the range."""
    processor = PartitionProcessor(partition, settings.partitions)
    result = ReplayResult(partition)
    started = last_report = time.monotonic()
    sink = out.open("wb") if out is not None else None
    try:
        async for records in read_partition(
            settings, settings.topics.commands, partition, 0, to_offset
        ):
            for record in records:
                outcome = processor.apply(record)
                if record.offset < from_offset:
                    continue
                result.commands += 1
                if isinstance(outcome, DeadLetter):
                    result.dead_letters += 1
                    continue
                _, events = outcome
                result.events += len(events)
                result.deals.extend(e for e in events if isinstance(e, Deal))
                if sink is not None:
                    sink.writelines(encode(event) + b"\n" for event in events)
            if progress is not None:
                progress.update(len(records))
                continue
            now = time.monotonic()
            if now - last_report >= _PROGRESS_INTERVAL_S:
                log.info(
                    "replay_progress",
                    partition=partition,
                    offset=records[-1].offset,
                    to_offset=to_offset,
                    deals=len(result.deals),
                )
                last_report = now
    finally:
        if sink is not None:
            sink.close()
    log.info(
        "replay_done",
        partition=partition,
        commands=result.commands,
        events=result.events,
        deals=len(result.deals),
        dead_letters=result.dead_letters,
        seconds=round(time.monotonic() - started, 3),
    )
    return result


def comparable(deals: list[Deal]) -> list[tuple[object, ...]]:
    ordered = sorted(deals, key=lambda d: (d.technology_id, d.deal_number))
    return [
        (d.deal_id, d.price, d.quantity, d.buyer_id, d.seller_id, d.timestamp_ms) for d in ordered
    ]


async def run_replay(
    settings: Settings,
    partition: int,
    from_offset: int,
    to_offset: int | None,
    out: str | None,
    compare: bool,
    *,
    as_json: bool = False,
    show_progress: bool = True,
) -> int:
    """Exit 0 when replayed (and, with ``compare``, identical), 1 when different."""
    # First the partition, then PostgreSQL: both fail in a second, before a long read.
    end = await end_offset(settings, settings.topics.commands, partition)
    if compare and to_offset is None:
        # Compare only what is settled: an engine that is merely behind is not a mismatch.
        to_offset = await settled_offset(settings.database_url, settings.topics.commands, partition)
    to_offset = end if to_offset is None else min(to_offset, end)
    with Progress(
        f"replay partition {partition}", to_offset, "commands", enabled=show_progress
    ) as progress:
        result = await replay_partition(
            settings, partition, from_offset, to_offset, Path(out) if out else None, progress
        )
    summary: dict[str, object] = {
        "partition": partition,
        "from_offset": from_offset,
        "to_offset": to_offset,
        "commands": result.commands,
        "events": result.events,
        "deals": len(result.deals),
        "dead_letters": result.dead_letters,
    }
    if not as_json:
        print(
            f"partition {partition}: {result.commands} commands, {result.events} events, "
            f"{len(result.deals)} deals, {result.dead_letters} dead letters"
        )
    if not compare:
        if as_json:
            print(json.dumps(summary, sort_keys=True))
        return 0
    replayed = comparable(result.deals)
    stored = await settled_deals(
        settings.database_url, settings.topics.commands, partition, from_offset, to_offset
    )
    missing = set(replayed) - set(stored)
    extra = set(stored) - set(replayed)
    identical = replayed == stored
    if as_json:
        summary |= {
            "identical": identical,
            "stored_deals": len(stored),
            "only_in_replay": len(missing),
            "only_in_postgresql": len(extra),
        }
        print(json.dumps(summary, sort_keys=True))
    elif identical:
        print(f"identical: {len(stored)} deals in PostgreSQL match the replay")
    else:
        print(
            f"DIFFERENT: replay has {len(replayed)} deals, PostgreSQL {len(stored)}; "
            f"{len(missing)} only in the replay, {len(extra)} only in PostgreSQL"
        )
    return 0 if identical else 1
