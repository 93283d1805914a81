"""Waits for what the engine made of one command, so `techx order` can say it.

The engine answers every command on the command's own partition number: its events on the
executions and deals topics, or a dead letter, each carrying the command's offset
(``source_offset``; the dead letter's ``techx.dlq.source.offset`` header). The watcher
takes the output topics' ends before the command is sent, so nothing it causes can be
missed, and reads ``read_committed``: the engine publishes in transactions, and an aborted
one (an engine that crashed) is not an answer.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from types import TracebackType

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from engine.core.batch import DLQ_DETAIL_HEADER, DLQ_OFFSET_HEADER, DLQ_REASON_HEADER
from engine.core.codec import decode_event
from engine.kafka_security import kafka_error
from engine.settings import Settings
from schemas.events import CommandRejected, Event

#: After the first answer, how long to wait for the rest of its transaction to be fetched.
_SETTLE_S = 0.3

#: Exit statuses of a command that waits, beyond 0 (accepted) and 1 (failed: Kafka down, …).
EXIT_REFUSED = 3
EXIT_NO_ANSWER = 4


def add_wait_arguments(parser: argparse.ArgumentParser) -> None:
    """--timeout and --no-wait, alike on every command that waits for the engine's answer."""
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the engine's answer (default 10)",
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="only publish; do not wait for the answer"
    )


def positive_seconds(raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}") from e
    if not 0 < seconds <= 3600:  # an hour: beyond that, use --no-wait
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600, not {raw}")
    return seconds


def exit_status(outcomes: list[Outcome | None]) -> int:
    """0 when every answer is an acceptance, 3 when any is a refusal, else 4 (none came)."""
    if any(o is not None and o.verdict != "accepted" for o in outcomes):
        return EXIT_REFUSED
    return EXIT_NO_ANSWER if any(o is None for o in outcomes) else 0


@dataclass(slots=True)
class Outcome:
    """The engine's answer to one command: its events, or why it was dead-lettered."""

    partition: int
    offset: int
    events: list[Event] = field(default_factory=list)
    dead_letter_reason: str | None = None
    dead_letter_detail: str | None = None

    @property
    def rejection(self) -> CommandRejected | None:
        return next((e for e in self.events if isinstance(e, CommandRejected)), None)

    @property
    def verdict(self) -> str:
        """``accepted``, ``rejected`` or ``dead_lettered``."""
        if self.dead_letter_reason is not None:
            return "dead_lettered"
        return "rejected" if self.rejection is not None else "accepted"

    @property
    def reason(self) -> str | None:
        """The stable code of a refusal and its detail, for people; None when accepted."""
        rejection = self.rejection
        if rejection is not None:
            return f"{rejection.reason}: {rejection.detail}"
        if self.dead_letter_reason is not None:
            return f"{self.dead_letter_reason}: {self.dead_letter_detail}"
        return None

    def to_json(self) -> dict[str, object]:
        return {
            "verdict": self.verdict,
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "events": [msgspec.to_builtins(event) for event in self.events],
        }


class OutcomeWatcher:
    """Reads the output topics of one partition, or several (an exchange-wide command is on
    every partition), from where they ended at start."""

    def __init__(self, settings: Settings, partition: int, *more: int) -> None:
        self._settings = settings
        topics = settings.topics
        self._watched = (partition, *more)
        self._partitions = [
            TopicPartition(topic, watched)
            for watched in self._watched
            for topic in (topics.executions, topics.deals, topics.dead_letters)
        ]
        self._consumer = AIOKafkaConsumer(
            **settings.kafka_options(),
            client_id="techx-cli",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )

    async def __aenter__(self) -> OutcomeWatcher:
        try:
            await self._consumer.start()
            self._consumer.assign(self._partitions)
            ends = await self._consumer.end_offsets(self._partitions)
        except KafkaError as e:
            await self._stop()
            raise kafka_error(
                e,
                f"reading the outputs at {self._settings.kafka_bootstrap}",
                self._settings.kafka_security,
            ) from e
        for tp, end in ends.items():
            self._consumer.seek(tp, end)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        await asyncio.sleep(0)  # aiokafka awaits a task it just cancelled: let it start
        await self._consumer.stop()

    async def wait(self, offset: int, timeout_s: float) -> Outcome | None:
        """The engine's answer to the command at ``offset`` of the first partition watched,
        or None after ``timeout_s``."""
        partition = self._watched[0]
        return (await self.wait_all({partition: offset}, timeout_s))[partition]

    async def wait_all(
        self, offsets: dict[int, int], timeout_s: float
    ) -> dict[int, Outcome | None]:
        """The engine's answer to the command at each partition's offset (None where none came
        within ``timeout_s``): the whole wait is one timeout, however many partitions."""
        outcomes = {partition: Outcome(partition, offset) for partition, offset in offsets.items()}
        deadline = time.monotonic() + timeout_s
        answered_at: dict[int, float] = {}
        while True:
            now = time.monotonic()
            until = deadline
            if len(answered_at) == len(outcomes):
                until = min(deadline, max(answered_at.values()) + _SETTLE_S)
            if now >= until:
                break
            try:
                fetched = await self._consumer.getmany(timeout_ms=int(min(until - now, 0.5) * 1000))
            except KafkaError as e:
                raise kafka_error(
                    e, "reading the engine's answer", self._settings.kafka_security
                ) from e
            for tp, records in fetched.items():
                outcome = outcomes.get(tp.partition)
                if outcome is None:
                    continue
                for record in records:
                    if self._note(outcome, tp, record) and tp.partition not in answered_at:
                        answered_at[tp.partition] = time.monotonic()
        answers: dict[int, Outcome | None] = {}
        for partition, outcome in outcomes.items():
            outcome.events.sort(key=lambda event: event.seq)
            answers[partition] = outcome if partition in answered_at else None
        return answers

    def _note(
        self, outcome: Outcome, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]
    ) -> bool:
        """Add the record to the outcome when the command caused it."""
        if tp.topic == self._settings.topics.dead_letters:
            headers = {key: value.decode("utf-8", "replace") for key, value in record.headers}
            if headers.get(DLQ_OFFSET_HEADER) != str(outcome.offset):
                return False
            outcome.dead_letter_reason = headers.get(DLQ_REASON_HEADER, "unknown")
            outcome.dead_letter_detail = headers.get(DLQ_DETAIL_HEADER, "")
            return True
        if record.value is None:
            return False
        event = decode_event(record.value)
        if event.source_offset != outcome.offset:
            return False
        outcome.events.append(event)
        return True
