"""Feeds generated records to ``decode_command`` and ``PartitionProcessor.process`` and checks
that every one is answered: a command outcome or a dead letter, never an exception.

What counts as a failure (each reported with the seed, the record's index, its partition and
offset, the first 200 bytes of its key and value, and the exception or broken rule):

* ``decode_command``: anything but ``DecodeError`` escaped from it;
* ``process``: anything escaped from ``PartitionProcessor.process``;
* ``answer``: a record got no answer, or two, in the batch's ``outcomes`` + ``dead_letters``;
* ``invariant``: an answer PostgreSQL or a consumer could not take (NUL or unencodable text,
  an integer outside bigint, a non-positive deal price or quantity, an event its own schema
  does not decode), a dead letter without a reason header, or a dead-letter reason that
  disagrees with what ``decode_command`` said about the same bytes;
* ``determinism``: the same records through a fresh processor gave different batches;
* ``slow``: decode_command took more than ``slow_ms`` on a record (timed twice, the faster
  counts): a producer must not be able to stall a partition with a few records.

A record that raises does not stop the run: the processor is rebuilt from its last checkpoint
(a market snapshot plus the records since) and the batch is finished record by record, so
one run lists every escaping record, not just the first.
"""

from __future__ import annotations

import contextlib
import heapq
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice

import msgspec

from engine.core.batch import (
    DLQ_REASON_HEADER,
    AfterApply,
    Decode,
    PartitionProcessor,
    SettlementBatch,
)
from engine.core.codec import decode_command, decode_event
from engine.core.market import Market
from engine.errors import DecodeError
from schemas.common import INT64_MAX, INT64_MIN, DeadLetterReason
from tests.fuzz.generators import FuzzRecord, category, stream

#: How much of a key or value a failure keeps.
SHOWN_BYTES = 200
#: Records per partition between two market snapshots (the restart points after a raise).
CHECKPOINT_RECORDS = 5_000


@dataclass(frozen=True, slots=True)
class Faults:
    """Raises a test plants, to check the harness reports them: ``decode`` stands in for
    decode_command at both stages, ``after_apply`` runs after each command the market
    applied. Passed in, not monkeypatched: the compiled core binds its calls statically."""

    decode: Decode = decode_command
    after_apply: AfterApply | None = None

    def processor(
        self, partition: int, partition_count: int, market: Market | None = None
    ) -> PartitionProcessor:
        planted = self.decode is not decode_command
        return PartitionProcessor(
            partition,
            partition_count,
            market,
            decode=self.decode if planted else None,
            after_apply=self.after_apply,
        )


_NO_FAULTS = Faults()
_CODES = frozenset(reason.value for reason in DeadLetterReason)


@dataclass(frozen=True, slots=True)
class Failure:
    """One record the engine did not answer as it must."""

    seed: int
    #: Position of the record in the whole run's generation order (all partitions).
    index: int
    partition: int
    offset: int
    #: decode_command, process, answer, invariant or determinism.
    stage: str
    #: The exception's type, or the name of the broken rule.
    exception: str
    message: str
    #: What the generator meant the record to be (``mut/nest/array/before_type``...).
    kind: str
    key: bytes | None
    value: bytes | None
    value_length: int | None

    def describe(self) -> str:
        length = "None" if self.value_length is None else f"{self.value_length} bytes"
        return (
            f"seed={self.seed} index={self.index} partition={self.partition} "
            f"offset={self.offset} stage={self.stage} {self.exception}: {self.message}\n"
            f"    kind={self.kind} key={self.key!r}\n"
            f"    value ({length})={self.value!r}"
        )


@dataclass(frozen=True, slots=True)
class SlowRecord:
    """A record ``decode_command`` took long over (a producer must not be able to stall us)."""

    seconds: float
    index: int
    partition: int
    offset: int
    kind: str
    value: bytes | None
    value_length: int | None


@dataclass(slots=True, repr=False)
class FuzzReport:
    """What one run fed the engine and how the engine answered."""

    seed: int
    partitions: int
    batch_size: int
    records: int = 0
    #: decode_command's verdicts, called directly on every value.
    decoded: int = 0
    decode_errors: int = 0
    outcomes: int = 0
    dead_letters: int = 0
    #: Stable dead-letter codes (free-text reasons are mapped to the code they stand for).
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    deals: int = 0
    events: int = 0
    #: Records generated, by family and operator (``valid/place_limit``, ``mut/nest``...).
    kinds: Counter[str] = field(default_factory=Counter)
    #: The first ``max_failures`` failures; ``failure_count`` counts them all.
    failures: list[Failure] = field(default_factory=list)
    failure_count: int = 0
    #: Failures by stage and exception type.
    failure_groups: Counter[str] = field(default_factory=Counter)
    #: Records processed a second time, with a fresh processor, and compared.
    determinism_records: int = 0
    #: decode_command's slowest records, slowest first.
    slowest: list[SlowRecord] = field(default_factory=list)
    elapsed: float = 0.0

    def __repr__(self) -> str:  # short: pytest prints it when an assertion about it fails
        return (
            f"FuzzReport(seed={self.seed}, records={self.records}, outcomes={self.outcomes}, "
            f"dead_letters={self.dead_letters}, deals={self.deals}, "
            f"failure_count={self.failure_count})"
        )

    @property
    def records_per_second(self) -> float:
        return self.records / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failure_count == 0

    def table(self, failures_shown: int = 20) -> str:
        """The summary a person reads at the end of a run."""
        lines = [
            f"seed {self.seed}, {self.partitions} partitions, batches of {self.batch_size}",
            f"{'records':<34}{self.records:>12,}",
            f"{'  decoded by decode_command':<34}{self.decoded:>12,}",
            f"{'  refused by decode_command':<34}{self.decode_errors:>12,}",
            f"{'outcomes':<34}{self.outcomes:>12,}",
            f"{'dead letters':<34}{self.dead_letters:>12,}",
        ]
        lines += [
            f"{'  ' + reason:<34}{count:>12,}"
            for reason, count in sorted(self.dead_letter_reasons.items(), key=lambda rc: -rc[1])
        ]
        lines += [
            f"{'deals':<34}{self.deals:>12,}",
            f"{'events':<34}{self.events:>12,}",
            f"{'checked twice (determinism)':<34}{self.determinism_records:>12,}",
            f"{'failures':<34}{self.failure_count:>12,}",
        ]
        lines += [f"{'  ' + group:<34}{count:>12,}" for group, count in self.failure_groups.items()]
        lines += [
            f"{'elapsed':<34}{self.elapsed:>11.1f}s",
            f"{'rate':<34}{self.records_per_second:>8,.0f} rec/s",
        ]
        if self.slowest:
            slow = self.slowest[0]
            lines.append(
                f"{'slowest decode':<34}{slow.seconds * 1000:>10.2f}ms "
                f"(index {slow.index}, {slow.kind}, {slow.value_length} bytes)"
            )
        lines += [failure.describe() for failure in self.failures[:failures_shown]]
        if self.failure_count > failures_shown:
            lines.append(f"... and {self.failure_count - failures_shown} more failures")
        return "\n".join(lines)


def reason_code(reason: str) -> str:
    """The stable code of a dead-letter reason; free-text reasons (before the codes) mapped."""
    if reason in _CODES:
        return reason
    if reason.startswith("record has no value"):
        return DeadLetterReason.MISSING_VALUE.value
    if reason.startswith("record is ") and "limit" in reason:
        return DeadLetterReason.TOO_LARGE.value
    if reason.startswith("not valid UTF-8"):
        return DeadLetterReason.INVALID_UTF8.value
    if reason.startswith("not valid JSON"):
        return DeadLetterReason.MALFORMED_JSON.value
    if reason.startswith("invalid command"):
        if "`$.type`" in reason or "field `type`" in reason:
            return DeadLetterReason.UNKNOWN_COMMAND_TYPE.value
        return DeadLetterReason.SCHEMA_VIOLATION.value
    if reason.startswith("record key"):
        return DeadLetterReason.KEY_MISMATCH.value
    if "belongs to partition" in reason:
        return DeadLetterReason.WRONG_PARTITION.value
    return "other: " + reason[:40]


def dead_letter_reasons(batch: SettlementBatch) -> list[str]:
    """The reason of each dead letter, from its message's header (or, when the message has
    none, from the dead letter itself)."""
    reasons = []
    for i, dead_letter in enumerate(batch.dead_letters):
        reason = None
        if i < len(batch.dead_letters_out):
            for name, value in batch.dead_letters_out[i][2]:
                if name == DLQ_REASON_HEADER:
                    reason = value.decode("utf-8", "backslashreplace")
        reasons.append(reason if reason is not None else str(dead_letter.reason))
    return reasons


def _shown(data: bytes | None) -> bytes | None:
    return None if data is None else data[:SHOWN_BYTES]


def _length(data: bytes | None) -> int | None:
    return None if data is None else len(data)


def _message(error: BaseException) -> str:
    text = str(error)
    return text if len(text) <= 300 else text[:300] + "..."


class _Runner:
    """One partition's processor that survives records that raise.

    Keeps a checkpoint (a market snapshot, every CHECKPOINT_RECORDS records) and the records
    applied since, so a processor a raise left half-way can be rebuilt exactly.
    """

    def __init__(self, partition: int, partition_count: int, faults: Faults) -> None:
        self.partition = partition
        self.partition_count = partition_count
        self.faults = faults
        self.processor = faults.processor(partition, partition_count)
        self._checkpoint: bytes | None = None
        self._since: list[list[FuzzRecord]] = []
        self._since_count = 0

    def feed(
        self, records: list[FuzzRecord], doomed: set[int]
    ) -> tuple[list[SettlementBatch], list[tuple[FuzzRecord, Exception]]]:
        """Process ``records``; returns the batches made and the records that raised.

        ``doomed`` holds the offsets decode_command already raised for: they go through
        ``process`` alone, so the rest of the batch still runs as one batch.
        """
        batches: list[SettlementBatch] = []
        raised: list[tuple[FuzzRecord, Exception]] = []
        segment: list[FuzzRecord] = []
        for record in records:
            if record.offset in doomed:
                self._segment(segment, batches, raised)
                segment = []
                self._alone(record, batches, raised, untouched=True)
            else:
                segment.append(record)
        self._segment(segment, batches, raised)
        return batches, raised

    def _segment(
        self,
        records: list[FuzzRecord],
        batches: list[SettlementBatch],
        raised: list[tuple[FuzzRecord, Exception]],
    ) -> None:
        if not records:
            return
        try:
            batches.append(self.processor.process(list(records)))
        except Exception:
            # Somewhere in the segment a record raised, after the market took the ones before
            # it: back to the state before the segment, then one record at a time.
            self._restore()
            for record in records:
                self._alone(record, batches, raised, untouched=False)
            return
        self._applied(records)

    def _alone(
        self,
        record: FuzzRecord,
        batches: list[SettlementBatch],
        raised: list[tuple[FuzzRecord, Exception]],
        untouched: bool,
    ) -> None:
        """One record as its own batch; ``untouched``: if it raises, it raised while decoding,
        before the market saw it, so no rebuild is needed."""
        try:
            batches.append(self.processor.process([record]))
        except Exception as e:
            raised.append((record, e))
            if not untouched:
                self._restore()
            return
        self._applied([record])

    def _applied(self, records: list[FuzzRecord]) -> None:
        self._since.append(records)
        self._since_count += len(records)
        if self._since_count >= CHECKPOINT_RECORDS:
            self._checkpoint = self.processor.market.snapshot()
            self._since = []
            self._since_count = 0

    def _restore(self) -> None:
        market = Market.from_snapshot(self._checkpoint) if self._checkpoint is not None else None
        self.processor = self.faults.processor(self.partition, self.partition_count, market)
        for records in self._since:
            self.processor.process(list(records))  # each ran before without raising


@dataclass(slots=True)
class _Lane:
    """One partition's stream, runner and determinism sample."""

    partition: int
    quota: int
    sample_quota: int
    records: Iterator[tuple[FuzzRecord, str]]
    runner: _Runner
    #: (records, doomed offsets) of each sampled feed, and the batches the feeds made.
    sample_feeds: list[tuple[list[FuzzRecord], set[int]]] = field(default_factory=list)
    sample_batches: list[SettlementBatch] = field(default_factory=list)
    sample_digest: str = ""
    done: int = 0


@dataclass(slots=True)
class _Feed:
    """What the checks of one feed need to know about its records."""

    partition: int
    records: list[FuzzRecord]
    #: offset -> (index in the run, kind)
    about: dict[int, tuple[int, str]] = field(default_factory=dict)
    #: offset -> decode_command's reason code ("" before the codes) for DecodeErrors.
    refused: dict[int, str] = field(default_factory=dict)
    #: Offsets decode_command raised something else for.
    doomed: set[int] = field(default_factory=set)
    #: Offsets process raised for.
    raised: set[int] = field(default_factory=set)


class _Run:
    def __init__(
        self,
        seed: int,
        records: int,
        partitions: int,
        batch_size: int,
        progress: bool,
        determinism_records: int,
        max_failures: int,
        slowest: int,
        slow_ms: float,
        faults: Faults,
    ) -> None:
        self.report = FuzzReport(seed, partitions, batch_size)
        self.faults = faults
        self.slow_seconds = slow_ms / 1000
        self.seed = seed
        self.total = records
        self.partitions = partitions
        self.batch_size = batch_size
        self.progress = progress
        self.max_failures = max_failures
        self.slowest = slowest
        self._slow: list[tuple[float, int, SlowRecord]] = []
        self._index = 0
        self.lanes = [
            _Lane(
                partition,
                records // partitions + (1 if partition < records % partitions else 0),
                determinism_records // partitions,
                stream(seed, partition, partitions),
                _Runner(partition, partitions, faults),
            )
            for partition in range(partitions)
        ]

    def fail(self, feed: _Feed, offset: int, stage: str, what: str, message: str) -> None:
        report = self.report
        report.failure_count += 1
        report.failure_groups[f"{stage}: {what}"] += 1
        if len(report.failures) >= self.max_failures:
            return
        index, kind = feed.about.get(offset, (-1, "?"))
        record = next((r for r in feed.records if r.offset == offset), None)
        key = value = None
        if record is not None:
            key, value = record.key, record.value
        report.failures.append(
            Failure(
                self.seed,
                index,
                feed.partition,
                offset,
                stage,
                what,
                message,
                kind,
                _shown(key),
                _shown(value),
                _length(value),
            )
        )

    def go(self) -> FuzzReport:
        report = self.report
        started = time.perf_counter()
        step = max(1, self.total // 20)
        next_progress = step
        while any(lane.done < lane.quota for lane in self.lanes):
            for lane in self.lanes:
                take = min(self.batch_size, lane.quota - lane.done)
                if take <= 0:
                    continue
                feed = self._decode(lane, list(islice(lane.records, take)))
                batches, raised = lane.runner.feed(feed.records, feed.doomed)
                for record, error in raised:
                    feed.raised.add(record.offset)
                    self.fail(feed, record.offset, "process", type(error).__name__, _message(error))
                self._check(feed, batches)
                if lane.done < lane.sample_quota:
                    lane.sample_feeds.append((feed.records, feed.doomed))
                    lane.sample_batches.extend(batches)
                    if lane.done + take >= min(lane.sample_quota, lane.quota):
                        lane.sample_digest = lane.runner.processor.market.state_digest()
                lane.done += take
                report.records += take
                if self.progress and report.records >= next_progress:
                    _print_progress(report, self.total, time.perf_counter() - started)
                    next_progress += step
        for lane in self.lanes:
            self._check_determinism(lane)
        report.slowest = [slow for _, _, slow in sorted(self._slow, reverse=True)]
        report.elapsed = time.perf_counter() - started
        return report

    def _decode(self, lane: _Lane, chunk: list[tuple[FuzzRecord, str]]) -> _Feed:
        """decode_command on each value directly: DecodeError or a command, nothing else."""
        report = self.report
        feed = _Feed(lane.partition, [record for record, _ in chunk])
        for record, kind in chunk:
            feed.about[record.offset] = (self._index, kind)
            report.kinds[category(kind)] += 1
            began = time.perf_counter()
            try:
                self.faults.decode(record.value)
                report.decoded += 1
            except DecodeError as e:
                report.decode_errors += 1
                code = getattr(e, "reason", None)
                feed.refused[record.offset] = "" if code is None else str(code)
            except Exception as e:
                feed.doomed.add(record.offset)
                self.fail(feed, record.offset, "decode_command", type(e).__name__, _message(e))
            took = time.perf_counter() - began
            if took > self.slow_seconds:
                took = min(took, _decode_time(record.value))  # not a GC pause or a busy CPU
                if took > self.slow_seconds:
                    self.fail(
                        feed,
                        record.offset,
                        "slow",
                        "slow_decode",
                        f"decode_command took {took * 1000:,.0f} ms",
                    )
            self._timed(took, lane, record, kind)
            self._index += 1
        return feed

    def _timed(self, seconds: float, lane: _Lane, record: FuzzRecord, kind: str) -> None:
        slow = self._slow
        if len(slow) >= self.slowest and seconds <= slow[0][0]:
            return
        entry = (
            seconds,
            self._index,
            SlowRecord(
                seconds,
                self._index,
                lane.partition,
                record.offset,
                kind,
                _shown(record.value),
                _length(record.value),
            ),
        )
        if len(slow) < self.slowest:
            heapq.heappush(slow, entry)
        else:
            heapq.heapreplace(slow, entry)

    def _check(self, feed: _Feed, batches: list[SettlementBatch]) -> None:
        """Count the answers; check each record got exactly one, and one the store can take."""
        report = self.report
        answered: Counter[int] = Counter()
        for batch in batches:
            report.outcomes += len(batch.outcomes)
            report.dead_letters += len(batch.dead_letters)
            report.deals += len(batch.deals_out)
            report.events += len(batch.deals_out) + len(batch.executions_out)
            for outcome in batch.outcomes:
                answered[outcome.offset] += 1
                if outcome.offset in feed.refused:
                    self.fail(
                        feed,
                        outcome.offset,
                        "invariant",
                        "refused_but_answered",
                        "decode_command raised DecodeError, process made an outcome",
                    )
                self._check_columns(
                    feed, msgspec.structs.astuple(outcome), outcome.offset, "outcome"
                )
            if len(batch.dead_letters_out) != len(batch.dead_letters):
                offset = batch.dead_letters[0].offset if batch.dead_letters else -1
                self.fail(
                    feed,
                    offset,
                    "invariant",
                    "dead_letter_count",
                    f"{len(batch.dead_letters)} dead letters but "
                    f"{len(batch.dead_letters_out)} dead-letter messages",
                )
            for dead_letter, reason in zip(
                batch.dead_letters, dead_letter_reasons(batch), strict=False
            ):
                answered[dead_letter.offset] += 1
                self._check_dead_letter(feed, dead_letter.offset, reason)
                self._check_columns(
                    feed, msgspec.structs.astuple(dead_letter), dead_letter.offset, "dead letter"
                )
            for message in batch.dead_letters_out:
                if not any(name == DLQ_REASON_HEADER for name, _ in message[2]):
                    self.fail(feed, -1, "invariant", "no_reason_header", "a dead letter lacks it")
            for deal in batch.deals:
                offset = deal.source_offset
                self._check_columns(feed, msgspec.structs.astuple(deal), offset, "deal")
                if deal.price <= 0 or deal.quantity <= 0:
                    self.fail(
                        feed,
                        offset,
                        "invariant",
                        "deal_not_positive",
                        f"deal price {deal.price}, quantity {deal.quantity}",
                    )
            for _, value, _ in (*batch.deals_out, *batch.executions_out):
                try:
                    decode_event(value if value is not None else b"")
                except Exception as e:
                    self.fail(
                        feed,
                        -1,
                        "invariant",
                        "event_does_not_decode",
                        f"{type(e).__name__}: {_message(e)} in {value!r:.200}",
                    )
        for record in feed.records:
            count = answered.pop(record.offset, 0)
            if count != 1 and record.offset not in feed.raised:
                what = "unanswered" if count == 0 else "answered_twice"
                self.fail(feed, record.offset, "answer", what, f"{count} rows for the record")
        for offset in answered:
            self.fail(feed, offset, "answer", "unknown_offset", "a row for no record's offset")

    def _check_dead_letter(self, feed: _Feed, offset: int, reason: str) -> None:
        code = reason_code(reason)
        self.report.dead_letter_reasons[code] += 1
        said = feed.refused.get(offset)
        if said and reason in _CODES and reason != said:
            self.fail(
                feed,
                offset,
                "invariant",
                "reason_differs",
                f"dead letter says {reason!r}, decode_command said {said!r}",
            )
        if said is None and offset not in feed.doomed and code not in _ROUTING_CODES:
            self.fail(
                feed,
                offset,
                "invariant",
                "decoded_but_dead_lettered",
                f"decode_command took the record; the dead letter says {reason:.200}",
            )

    def _check_columns(self, feed: _Feed, row: tuple[object, ...], offset: int, what: str) -> None:
        """PostgreSQL text holds no NUL and only encodable characters; bigint holds int64."""
        for column in row:
            if isinstance(column, str):
                if "\x00" in column:
                    self.fail(feed, offset, "invariant", "nul_in_text", f"{what}: {column!r:.200}")
                try:
                    column.encode("utf-8")
                except UnicodeEncodeError:
                    self.fail(
                        feed, offset, "invariant", "text_not_utf8", f"{what}: {column!r:.200}"
                    )
            elif isinstance(column, int) and not INT64_MIN <= column <= INT64_MAX:
                self.fail(feed, offset, "invariant", "int_outside_bigint", f"{what}: {column}")

    def _check_determinism(self, lane: _Lane) -> None:
        """The lane's first records again, through a fresh processor: the same batches."""
        if not lane.sample_feeds:
            return
        runner = _Runner(lane.partition, self.partitions, self.faults)
        again: list[SettlementBatch] = []
        for records, doomed in lane.sample_feeds:
            again.extend(runner.feed(records, doomed)[0])
        self.report.determinism_records += sum(len(records) for records, _ in lane.sample_feeds)
        every = [record for records, _ in lane.sample_feeds for record in records]
        feed = _Feed(lane.partition, every)
        difference = _first_difference(lane.sample_batches, again)
        if difference is not None:
            offset, message = difference
            self.fail(feed, offset, "determinism", "different_batches", message)
        elif runner.processor.market.state_digest() != lane.sample_digest:
            self.fail(
                feed,
                every[-1].offset,
                "determinism",
                "different_market",
                "same batches, but the markets after them digest differently",
            )


_ROUTING_CODES = (DeadLetterReason.KEY_MISMATCH.value, DeadLetterReason.WRONG_PARTITION.value)
_COMPARED = (
    "first_offset",
    "next_offset",
    "commands",
    "outcomes",
    "dead_letters",
    "deals",
    "deals_out",
    "executions_out",
    "dead_letters_out",
    "snapshot",
)


def _first_difference(
    first: list[SettlementBatch], second: list[SettlementBatch]
) -> tuple[int, str] | None:
    """Where two runs' batches first differ: (an offset near it, what differs)."""
    if len(first) != len(second):
        offset = first[0].first_offset if first else -1
        return offset, f"{len(first)} batches the first time, {len(second)} the second"
    for a, b in zip(first, second, strict=True):
        if a == b:
            continue
        for name in _COMPARED:
            left, right = getattr(a, name), getattr(b, name)
            if left == right:
                continue
            if isinstance(left, list) and isinstance(right, list):
                for i, (x, y) in enumerate(zip(left, right, strict=False)):
                    if x != y:
                        return a.first_offset, f"{name}[{i}]: {x!r:.300} then {y!r:.300}"
                return a.first_offset, f"{name}: {len(left)} items, then {len(right)}"
            return a.first_offset, f"{name}: {left!r:.300} then {right!r:.300}"
    return None


def _decode_time(value: bytes | None) -> float:
    began = time.perf_counter()
    with contextlib.suppress(Exception):
        decode_command(value)
    return time.perf_counter() - began


def _print_progress(report: FuzzReport, total: int, elapsed: float) -> None:
    rate = report.records / elapsed if elapsed > 0 else 0.0
    eta = (total - report.records) / rate if rate > 0 else 0.0
    print(
        f"{report.records:>12,}/{total:,} ({100 * report.records / total:3.0f}%)  "
        f"{rate:>8,.0f} rec/s  ETA {eta:6.0f}s  deals {report.deals:,}  "
        f"dead letters {report.dead_letters:,}  failures {report.failure_count:,}",
        flush=True,
    )


def run(
    seed: int,
    records: int,
    partitions: int = 4,
    batch_size: int = 500,
    progress: bool = False,
    *,
    determinism_records: int = 20_000,
    max_failures: int = 200,
    slowest: int = 5,
    slow_ms: float = 50.0,
    faults: Faults = _NO_FAULTS,
) -> FuzzReport:
    """Generate ``records`` records over ``partitions`` partitions from ``seed``; feed each to
    decode_command and, in batches of ``batch_size``, to that partition's PartitionProcessor.

    The first ``determinism_records`` (spread over the partitions) are processed again with
    fresh processors and must give identical batches. A decode slower than ``slow_ms`` (twice)
    is a failure too.
    """
    if records < 1 or partitions < 1 or batch_size < 1:
        raise ValueError("records, partitions and batch_size must be positive")
    return _Run(
        seed,
        records,
        partitions,
        batch_size,
        progress,
        determinism_records,
        max_failures,
        slowest,
        slow_ms,
        faults,
    ).go()


def regenerate(seed: int, partition: int, partitions: int, offset: int) -> tuple[FuzzRecord, str]:
    """The record a run with ``seed`` and ``partitions`` gave ``partition`` at ``offset``
    (every failure names them), with its kind: to look at it whole, or replay it."""
    for record, kind in stream(seed, partition, partitions):
        if record.offset >= offset:
            if record.offset != offset:
                raise LookupError(f"partition {partition} has no record at offset {offset}")
            return record, kind
    raise AssertionError("unreachable: the stream is endless")  # pragma: no cover
