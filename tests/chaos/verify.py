"""The campaign's verdict: what the servers hold, compared with a pure replay of the log.

Whatever the faults did, the command log is the truth: the pure core
(``PartitionProcessor``) turns it into exactly one set of deals, outcomes, dead letters,
market views and market snapshots. PostgreSQL must hold that set once, the output topics
must hold it once for a ``read_committed`` reader, in order and byte for byte, and every
snapshot the engines stored must be the replay's market at its offset.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from engine.core.batch import KafkaMessage, PartitionProcessor, SettlementBatch
from engine.core.codec import TICK_RECORD
from engine.settings import Settings
from engine.store.connection import connected
from engine.store.rows import (
    DEAD_LETTER_COLUMNS,
    DEAL_COLUMNS,
    OUTCOME_COLUMNS,
    Row,
    dead_letter_rows,
    deal_rows,
    outcome_rows,
)
from tests.chaos import ChaosTimeoutError

#: How long reading one topic may take before the harness gives up (it is a few seconds).
_READ_TIMEOUT_S = 180.0
#: A message as a reader compares it: key, value and headers.
Message: TypeAlias = tuple[bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]
Record: TypeAlias = ConsumerRecord[bytes, bytes]


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the verdict; ``passed`` None means informational (never fails a run)."""

    name: str
    passed: bool | None
    detail: str


@dataclass(frozen=True, slots=True)
class Comparison:
    """How a sequence read back differs from the sequence expected."""

    expected: int
    actual: int
    #: Expected items present more often than expected (the extra copies).
    duplicates: int = 0
    #: Expected items absent (or present fewer times than expected).
    missing: int = 0
    #: Items the replay never made.
    unexpected: int = 0
    #: Same items, same counts, another order.
    reordered: bool = False

    @property
    def exact(self) -> bool:
        return not (self.duplicates or self.missing or self.unexpected or self.reordered)

    def __add__(self, other: Comparison) -> Comparison:
        return Comparison(
            self.expected + other.expected,
            self.actual + other.actual,
            self.duplicates + other.duplicates,
            self.missing + other.missing,
            self.unexpected + other.unexpected,
            self.reordered or other.reordered,
        )


def compare(expected: Sequence[Hashable], actual: Sequence[Hashable]) -> Comparison:
    """Count duplicates, missing and unexpected items separately; notice a changed order."""
    if list(expected) == list(actual):
        return Comparison(len(expected), len(actual))
    want, got = Counter(expected), Counter(actual)
    duplicates = sum(max(0, got[item] - count) for item, count in want.items())
    missing = sum(max(0, count - got[item]) for item, count in want.items())
    unexpected = sum(count for item, count in got.items() if item not in want)
    reordered = not (duplicates or missing or unexpected)
    return Comparison(len(expected), len(actual), duplicates, missing, unexpected, reordered)


@dataclass(slots=True)
class PartitionReplay:
    """What the pure engine makes of one command partition's whole log."""

    partition: int
    #: Last record's offset + 1: where a caught-up engine's settled offset stands.
    end: int
    records: int
    ticks: int
    batch: SettlementBatch
    #: The market after all records below each requested offset.
    snapshots: dict[int, bytes] = field(default_factory=dict)
    final_market: bytes = b""


def replay_partition(
    partition: int, partitions: int, records: Sequence[Record], snapshot_at: Iterable[int]
) -> PartitionReplay:
    """Replay a partition's records once, taking the market's snapshot at each offset asked.

    The records are processed in segments cut at those offsets; that the outputs do not
    depend on where batches are cut is what lets the live engine's batches agree with it.
    """
    first = records[0].offset if records else 0
    batch = SettlementBatch(partition, first, first)
    processor = PartitionProcessor(partition, partitions)
    offsets = [record.offset for record in records]
    replay = PartitionReplay(
        partition,
        end=offsets[-1] + 1 if offsets else 0,
        records=len(records),
        ticks=sum(1 for record in records if record.value == TICK_RECORD),
        batch=batch,
    )
    done = 0
    for at in sorted(set(snapshot_at)):
        cut = bisect.bisect_left(offsets, at)
        if cut > done:
            processor.process_into(batch, records[done:cut])
            done = cut
        replay.snapshots[at] = processor.market.snapshot()
    if done < len(records):
        processor.process_into(batch, records[done:])
    replay.final_market = processor.market.snapshot()
    return replay


def as_messages(messages: Iterable[KafkaMessage]) -> list[Message]:
    return [(key, value, tuple(headers)) for key, value, headers in messages]


def expected_outputs(replay: PartitionReplay, settings: Settings) -> dict[str, list[Message]]:
    """The replay's messages per output topic, as a reader should see them."""
    topics, batch = settings.topics, replay.batch
    return {
        topics.deals: as_messages(batch.deals_out),
        topics.executions: as_messages(batch.executions_out),
        topics.dead_letters: as_messages(batch.dead_letters_out),
        topics.market_data: as_messages(batch.market_data_out),
    }


# -- reading the servers ---------------------------------------------------------------------


async def read_topics(
    settings: Settings, topics: Sequence[str], isolation: str
) -> dict[tuple[str, int], list[Record]]:
    """Every record of the topics' partitions, up to their ends as of now, per partition."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    partitions = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
    found: dict[tuple[str, int], list[Record]] = {(tp.topic, tp.partition): [] for tp in partitions}
    try:
        await consumer.start()
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        async with asyncio.timeout(_READ_TIMEOUT_S):
            while pending := [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                fetched = await consumer.getmany(*pending, timeout_ms=1000, max_records=20_000)
                for tp, records in fetched.items():
                    found[(tp.topic, tp.partition)].extend(
                        r for r in records if r.offset < ends[tp]
                    )
    except TimeoutError as e:
        raise ChaosTimeoutError(
            f"reading {', '.join(topics)} ({isolation}) took over {_READ_TIMEOUT_S:.0f} s"
        ) from e
    finally:
        await asyncio.sleep(0)  # as log_reader: let the consumer's tasks start before stopping
        await consumer.stop()
    return found


async def wait_transactions_closed(settings: Settings, timeout_s: float) -> str | None:
    """Wait until no transaction is open on the output topics (their last stable offsets
    reach their ends), so a read_committed reader can see everything; None when they do,
    else which partitions still hold an open transaction."""
    topics = [t for t in settings.topics.all() if t != settings.topics.commands]
    partitions = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
    committed = _offsets_reader(settings, "read_committed")
    uncommitted = _offsets_reader(settings, "read_uncommitted")
    try:
        await committed.start()
        await uncommitted.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            stable = await committed.end_offsets(partitions)
            high = await uncommitted.end_offsets(partitions)
            open_ = [f"{tp.topic}[{tp.partition}]" for tp in partitions if stable[tp] < high[tp]]
            if not open_ or loop.time() > deadline:
                return ", ".join(open_) or None
            await asyncio.sleep(0.25)
    finally:
        await committed.stop()
        await uncommitted.stop()


def _offsets_reader(settings: Settings, isolation: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **settings.kafka_options(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level=isolation,
    )


@dataclass(frozen=True, slots=True)
class StoredState:
    """What PostgreSQL holds for the campaign's command topic."""

    next_offsets: dict[int, int]
    published_offsets: dict[int, int]
    deals: list[Row]
    outcomes: list[Row]
    dead_letters: list[Row]
    #: (partition, next_offset) -> the snapshot's bytes.
    snapshots: dict[tuple[int, int], bytes]


async def read_store(settings: Settings) -> StoredState:
    topic = settings.topics.commands
    async with connected(settings.database_url) as connection:
        positions = await connection.fetch(
            "SELECT partition, next_offset, published_offset FROM partition_state WHERE topic = $1",
            topic,
        )
        deals = await connection.fetch(
            f"SELECT {', '.join(DEAL_COLUMNS)} FROM deals WHERE topic = $1", topic
        )
        columns = ", ".join(c if c != "events" else "events::text" for c in OUTCOME_COLUMNS)
        outcomes = await connection.fetch(
            f"SELECT {columns} FROM command_outcomes WHERE topic = $1", topic
        )
        dead = await connection.fetch(
            f"SELECT {', '.join(DEAD_LETTER_COLUMNS)} FROM dead_letters WHERE topic = $1", topic
        )
        snapshots = await connection.fetch(
            "SELECT partition, next_offset, state FROM market_snapshots WHERE topic = $1", topic
        )
    return StoredState(
        next_offsets={row["partition"]: row["next_offset"] for row in positions},
        published_offsets={row["partition"]: row["published_offset"] for row in positions},
        deals=[tuple(row) for row in deals],
        # json comes back as text; the replay has the bytes that were stored.
        outcomes=[(*tuple(row)[:-1], str(row[-1]).encode()) for row in outcomes],
        dead_letters=[tuple(row) for row in dead],
        snapshots={
            (row["partition"], row["next_offset"]): bytes(row["state"]) for row in snapshots
        },
    )


# -- the verdict -----------------------------------------------------------------------------


@dataclass(slots=True)
class Verification:
    """Every check, plus the numbers the campaign's table shows."""

    checks: list[Check] = field(default_factory=list)
    log_records: int = 0
    ticks: int = 0
    deals: int = 0
    committed: Comparison = field(default_factory=lambda: Comparison(0, 0))
    uncommitted: Comparison = field(default_factory=lambda: Comparison(0, 0))
    snapshots_stored: int = 0
    snapshots_equal: int = 0

    @property
    def passed(self) -> bool:
        return all(check.passed is not False for check in self.checks)


async def verify(settings: Settings, transaction_wait_s: float = 90.0) -> Verification:
    """Read the log, replay it purely, and check PostgreSQL, the topics and the snapshots."""
    commands = await read_topics(settings, [settings.topics.commands], "read_committed")
    stored = await read_store(settings)
    replays = [
        replay_partition(
            partition,
            settings.partitions,
            commands[(settings.topics.commands, partition)],
            [at for (p, at) in stored.snapshots if p == partition],
        )
        for partition in range(settings.partitions)
    ]
    result = Verification(
        log_records=sum(r.records for r in replays),
        ticks=sum(r.ticks for r in replays),
        deals=sum(len(r.batch.deals) for r in replays),
    )
    result.checks.append(_check_settled(replays, stored))
    result.checks.extend(_check_store(settings, replays, stored))
    still_open = await wait_transactions_closed(settings, transaction_wait_s)
    output_topics = [t for t in settings.topics.all() if t != settings.topics.commands]
    for isolation in ("read_committed", "read_uncommitted"):
        read = await read_topics(settings, output_topics, isolation)
        check, total = _check_topics(settings, replays, read, isolation, still_open)
        result.checks.append(check)
        if isolation == "read_committed":
            result.committed = total
        else:
            result.uncommitted = total
    snapshots, books = _check_snapshots(replays, stored)
    result.checks.extend([snapshots, books])
    result.snapshots_stored = len(stored.snapshots)
    result.snapshots_equal = sum(
        1 for (p, at), state in stored.snapshots.items() if replays[p].snapshots.get(at) == state
    )
    return result


def _check_settled(replays: list[PartitionReplay], stored: StoredState) -> Check:
    behind = [
        f"p{r.partition}: settled {stored.next_offsets.get(r.partition, 0)} of {r.end}"
        for r in replays
        if stored.next_offsets.get(r.partition, 0) != r.end
    ]
    unpublished = sum(
        1
        for r in replays
        if stored.published_offsets.get(r.partition, 0) != stored.next_offsets.get(r.partition, 0)
    )
    detail = "; ".join(behind) if behind else "every partition's next_offset = its log end"
    if unpublished:
        detail += f" ({unpublished} partitions' published mark behind: informational)"
    return Check("settled to the log end", not behind, detail)


def _check_store(
    settings: Settings, replays: list[PartitionReplay], stored: StoredState
) -> list[Check]:
    topic = settings.topics.commands
    batches = [r.batch for r in replays]
    deals = compare(sorted(deal_rows(topic, batches)), sorted(stored.deals))
    doubled_ids = sum(n - 1 for n in Counter(row[1] for row in stored.deals).values() if n > 1)
    outcomes = compare(sorted(outcome_rows(topic, batches)), sorted(stored.outcomes))
    dead = compare(
        sorted(dead_letter_rows(topic, batches), key=repr), sorted(stored.dead_letters, key=repr)
    )
    return [
        Check(
            "postgres: deals",
            deals.exact and not doubled_ids,
            f"{deals.expected:,} expected, {deals.actual:,} stored: {deals.missing} missing, "
            f"{deals.duplicates + doubled_ids} doubled, {deals.unexpected} not in the replay "
            "(all columns compared)",
        ),
        Check(
            "postgres: command outcomes",
            outcomes.exact,
            f"{outcomes.expected:,} expected, {outcomes.actual:,} stored: {outcomes.missing} "
            f"missing, {outcomes.duplicates} doubled, {outcomes.unexpected} differing",
        ),
        Check(
            "postgres: dead letters",
            dead.exact,
            f"{dead.expected:,} expected, {dead.actual:,} stored: {dead.missing} missing, "
            f"{dead.duplicates} doubled, {dead.unexpected} differing",
        ),
    ]


def _check_topics(
    settings: Settings,
    replays: list[PartitionReplay],
    read: dict[tuple[str, int], list[Record]],
    isolation: str,
    still_open: str | None,
) -> tuple[Check, Comparison]:
    per_topic: dict[str, Comparison] = {}
    for replay in replays:
        for topic, expected in expected_outputs(replay, settings).items():
            actual: list[Message] = [
                (r.key, r.value, tuple(r.headers)) for r in read[(topic, replay.partition)]
            ]
            found = compare(expected, actual)
            per_topic[topic] = per_topic.get(topic, Comparison(0, 0)) + found
    total = sum(per_topic.values(), Comparison(0, 0))
    parts = [
        f"{topic.rsplit('.', 2)[-2]} {c.actual:,}/{c.expected:,}"
        + (f" (+{c.duplicates} dup, -{c.missing}, {c.unexpected} odd)" if not c.exact else "")
        + (" reordered" if c.reordered else "")
        for topic, c in per_topic.items()
    ]
    detail = "; ".join(parts)
    if still_open:
        detail += f"; transactions still open on {still_open}"
    passed = total.exact if isolation == "read_committed" else None
    return Check(f"topics, {isolation}", passed, detail), total


def _check_snapshots(replays: list[PartitionReplay], stored: StoredState) -> tuple[Check, Check]:
    differing = [
        f"p{p}@{at}"
        for (p, at), state in sorted(stored.snapshots.items())
        if replays[p].snapshots.get(at) != state
    ]
    snapshots = Check(
        "snapshots = replay at their offset",
        not differing and bool(stored.snapshots),
        f"{len(stored.snapshots) - len(differing)} of {len(stored.snapshots)} equal"
        + (f"; differing: {', '.join(differing[:10])}" if differing else "")
        + ("" if stored.snapshots else "; no snapshot was stored"),
    )
    books: list[str] = []
    for replay in replays:
        final = stored.snapshots.get((replay.partition, replay.end))
        if final is None:
            books.append(f"p{replay.partition}: no snapshot at the log end {replay.end}")
        elif final != replay.final_market:
            books.append(f"p{replay.partition}: differs from the replay's final market")
    final_books = Check(
        "final books (recovered engine)",
        not books,
        "; ".join(books) or "a freshly recovered engine's market = the replay's, every partition",
    )
    return snapshots, final_books
