"""Kafka to WebSocket: one consumer per gateway process, fanned out to every socket.

The consumer belongs to no group: it is assigned every partition of the command, executions,
deals and market data topics, reads ``read_committed`` (so a socket sees each event once, as
any exactly-once subscriber does), starts at the end, and hands each record to the sockets it
is for (``engine.gateway.routing``). A socket that resumes gets the records between its
positions and the live stream's from a short-lived reader of its own first, then joins the
live stream exactly where that reader stopped: nothing missed, nothing twice.

The public market socket may also take the deals stream: each deal reduced to what a trade
tape shows (``routing.public_deal``), never who traded.

Each socket has a bounded queue. A socket that falls that far behind is closed (code 4001)
rather than let one slow browser hold memory for all: the client reconnects with its
positions and catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable, Mapping

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from engine.errors import BrokerUnavailableError, ConfigError
from engine.gateway.errors import BadCommandError
from engine.gateway.routing import (
    ActedFor,
    Holdback,
    addressed,
    addressees,
    public_deal,
    sender,
)
from engine.settings import Settings

log = structlog.get_logger()

#: The streams' names on the socket (the Kafka topics behind them carry the prefix).
EXECUTIONS, DEALS, MARKET_DATA = "executions", "deals", "market_data"
OWN_TOPICS = (EXECUTIONS, DEALS)
STREAM_TOPICS = (EXECUTIONS, DEALS, MARKET_DATA)
#: Close codes a client acts on: reconnect and resume from its positions.
CLOSE_TOO_SLOW = 4001
CLOSE_STREAM_FAILED = 4002
#: How often the live positions are sent to every socket, so an idle client's positions
#: still move and a resume never rereads much.
POSITIONS_EVERY_S = 1.0
#: Events held for their command (routing.Holdback) beyond which they go out anyway.
_MOST_HELD = 50_000
#: Resuming readers at once: each is a Kafka consumer of its own.
_CATCH_UPS_AT_ONCE = 4
_UNKNOWN_TOPIC = 3

Position = tuple[str, int]


class _View(msgspec.Struct, frozen=True, gc=False):
    technology_id: str


_view = msgspec.json.Decoder(_View)


def frame(kind: str, topic: str, partition: int, offset: int, value: bytes) -> bytes:
    """One message to a socket: the record's value as it is on Kafka (a public deal: its
    public part), in an envelope saying where it is (what a client resumes from). ``kind``
    is ``event``, ``view`` or ``trade``; the value goes under ``view``, ``trade`` or
    ``event``."""
    return b"".join(
        (
            b'{"type":"',
            kind.encode(),
            b'","topic":"',
            topic.encode(),
            b'","partition":',
            str(partition).encode(),
            b',"offset":',
            str(offset).encode(),
            b',"',
            kind.encode() if kind in ("view", "trade") else b"event",
            b'":',
            value,
            b"}",
        )
    )


def positions_message(kind: str, positions: Mapping[Position, int], **extra: object) -> bytes:
    nested: dict[str, dict[str, int]] = {}
    for (topic, partition), offset in sorted(positions.items()):
        nested.setdefault(topic, {})[str(partition)] = offset
    return msgspec.json.encode({"type": kind, **extra, "positions": nested})


def parse_resume(text: str, topics: Iterable[str], partitions: int) -> dict[Position, int]:
    """``executions:0:17,deals:2:5``: where to resume each stream partition (the next offset
    to deliver). Partitions not named start at the live end."""
    allowed = set(topics)
    resume: dict[Position, int] = {}
    for part in filter(None, text.split(",")):
        topic, _, rest = part.partition(":")
        partition_text, _, offset_text = rest.partition(":")
        if not (partition_text.isdecimal() and offset_text.isdecimal()) or topic not in allowed:
            raise BadCommandError(
                "bad_resume",
                f"resume position {part[:80]!r} is not <stream>:<partition>:<offset> with a "
                f"stream among {', '.join(sorted(allowed))}",
            )
        partition, offset = int(partition_text), int(offset_text)
        if partition >= partitions:
            raise BadCommandError(
                "bad_resume", f"partition {partition} does not exist ({partitions} partitions)"
            )
        resume[(topic, partition)] = offset
    return resume


class Subscription:
    """One socket's share of the stream: what it is for, and its bounded queue of frames."""

    def __init__(self, participant_id: str | None, topics: Iterable[str], limit: int) -> None:
        self.participant_id = participant_id
        self.topics = frozenset(topics)
        self.overflowed = False
        self._limit = limit
        self._frames: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self._drained = asyncio.Event()
        #: Live frames that arrived while the socket was catching up; None once live.
        self._early: list[bytes] | None = None
        #: Per stream partition, offsets below which live records are not for this socket: it
        #: resumed from a gateway copy that had read further than this one.
        self.skip_below: dict[Position, int] = {}

    def offer(self, message: bytes) -> None:
        """A live frame: queued, or the subscription overflows (the socket will be closed)."""
        if self.overflowed:
            return
        if self._early is not None:
            self._early.append(message)
            if len(self._early) > self._limit:
                self._overflow()
            return
        if len(self._frames) >= self._limit:
            self._overflow()
            return
        self._frames.append(message)
        self._ready.set()

    def greet(self, message: bytes) -> None:
        """The first frame, ahead of anything live or caught up."""
        self._frames.appendleft(message)
        self._ready.set()

    def hold_live(self) -> None:
        """Keep live frames aside until ``go_live``: the catch-up's come first."""
        self._early = []

    async def push(self, message: bytes) -> None:
        """A catch-up frame: waits while the queue is full (the reader goes at the socket's
        pace instead of overflowing it)."""
        while len(self._frames) >= self._limit and not self.overflowed:
            self._drained.clear()
            await self._drained.wait()
        self._frames.append(message)
        self._ready.set()

    def go_live(self) -> None:
        early, self._early = self._early or [], None
        for message in early:
            self.offer(message)

    async def take(self) -> list[bytes]:
        """The frames waiting, at least one; [] once overflowed (close the socket)."""
        while not self._frames and not self.overflowed:
            self._ready.clear()
            await self._ready.wait()
        if self.overflowed:
            return []
        taken = list(self._frames)
        self._frames.clear()
        self._drained.set()
        return taken

    def _overflow(self) -> None:
        self.overflowed = True
        self._frames.clear()
        self._early = None
        self._ready.set()
        self._drained.set()


class FanOut:
    """Hands each record to the subscriptions it is for; pure bookkeeping, no Kafka."""

    def __init__(self, acted_for: ActedFor | None = None) -> None:
        self._by_participant: dict[str, set[Subscription]] = {}
        self._market: set[Subscription] = set()
        #: Public sockets that asked for the deals stream: they get each deal's public part.
        self._public_deals: set[Subscription] = set()
        self.acted_for = acted_for if acted_for is not None else ActedFor()
        self.holdback = Holdback()
        #: Next offset the live stream delivers, per (stream, partition).
        self.positions: dict[Position, int] = {}
        self._positions_sent: dict[Position, int] = {}
        #: The broker's time (LogAppendTime, ms) of the newest record read, ticks included:
        #: the exchange's clock as this gateway last saw it, for screens that count down to
        #: a deadline (views only carry the time of their own command). None until a record.
        self.log_time_ms: int | None = None

    @property
    def subscriptions(self) -> int:
        return len(self._market) + sum(len(s) for s in self._by_participant.values())

    def subscribe(self, subscription: Subscription) -> dict[Position, int]:
        """Deliver to ``subscription`` from now on; returns where the live stream is, which
        is where it starts for it (or where a resume's catch-up must stop)."""
        if subscription.participant_id is not None:
            self._by_participant.setdefault(subscription.participant_id, set()).add(subscription)
        if MARKET_DATA in subscription.topics:
            self._market.add(subscription)
        if subscription.participant_id is None and DEALS in subscription.topics:
            self._public_deals.add(subscription)
        return {
            position: offset
            for position, offset in self.positions.items()
            if position[0] in subscription.topics
        }

    def unsubscribe(self, subscription: Subscription) -> None:
        self._market.discard(subscription)
        self._public_deals.discard(subscription)
        if subscription.participant_id is not None:
            subscribers = self._by_participant.get(subscription.participant_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._by_participant[subscription.participant_id]

    def command(self, partition: int, offset: int, value: bytes | None) -> None:
        if value is not None:
            submitted_by = sender(value)
            if submitted_by is not None:
                self.acted_for.note(partition, offset, submitted_by)

    def commands_read_to(self, partition: int, next_offset: int) -> None:
        for topic, held_partition, offset, value in self.holdback.commands_read_to(
            partition, next_offset
        ):
            self._deliver_event(topic, held_partition, offset, value)

    def output(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        """An executions or deals record of the live stream."""
        if value is None:
            return
        event = addressed(value)
        if event is None:  # not an event: nobody's; passed over unless others wait before it
            if not self.holdback.holding(topic, partition):
                self.positions[(topic, partition)] = offset + 1
            return
        if self.holdback.admit(topic, partition, offset, event.source_offset, value):
            self._deliver_event(topic, partition, offset, value)
        elif self.holdback.held() > _MOST_HELD:
            log.warning("stream_holdback_released", held=self.holdback.held())
            for released in self.holdback.release_all():
                self._deliver_event(*released)

    def view(self, partition: int, offset: int, value: bytes | None) -> None:
        """A market data record of the live stream: for every market subscriber."""
        self.positions[(MARKET_DATA, partition)] = offset + 1
        if value is None or not self._market or not _is_view(value):
            return
        message = frame("view", MARKET_DATA, partition, offset, value)
        for subscription in self._market:
            if not subscription.skip_below or _new_to(subscription, MARKET_DATA, partition, offset):
                subscription.offer(message)

    def saw_time(self, log_time_ms: int) -> None:
        """A record stamped ``log_time_ms`` by the broker was read."""
        if self.log_time_ms is None or log_time_ms > self.log_time_ms:
            self.log_time_ms = log_time_ms

    def clock(self) -> dict[str, int]:
        """The extra field of a greeting or positions message: the log time, once known."""
        return {} if self.log_time_ms is None else {"log_time_ms": self.log_time_ms}

    def wants(
        self,
        subscription: Subscription,
        topic: str,
        partition: int,
        offset: int,
        value: bytes | None,
    ) -> bytes | None:
        """The frame ``subscription`` gets for a record it is catching up on, or None."""
        if value is None:
            return None
        if topic == MARKET_DATA:
            return frame("view", topic, partition, offset, value) if _is_view(value) else None
        if subscription.participant_id is None:  # a public socket: deals, their public part
            public = public_deal(value) if topic == DEALS else None
            return None if public is None else frame("trade", topic, partition, offset, public)
        event = addressed(value)
        if event is None or subscription.participant_id not in addressees(
            event, self.acted_for.sender(partition, event.source_offset)
        ):
            return None
        return frame("event", topic, partition, offset, value)

    def announce_positions(self) -> None:
        """Tell every socket where the live stream is, when it moved since last time."""
        if self.positions == self._positions_sent:
            return
        self._positions_sent = dict(self.positions)
        clock = self.clock()
        for subscription in self._all():
            subscription.offer(
                positions_message(
                    "positions",
                    {p: o for p, o in self.positions.items() if p[0] in subscription.topics},
                    **clock,
                )
            )

    def _deliver_event(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self.positions[(topic, partition)] = offset + 1
        if topic == DEALS and self._public_deals:
            self._deliver_trade(partition, offset, value)
        if not self._by_participant:
            return
        event = addressed(value)
        assert event is not None  # admitted events were decoded once already
        message = None
        for name in addressees(event, self.acted_for.sender(partition, event.source_offset)):
            for subscription in self._by_participant.get(name, ()):
                if topic in subscription.topics and (
                    not subscription.skip_below or _new_to(subscription, topic, partition, offset)
                ):
                    message = message or frame("event", topic, partition, offset, value)
                    subscription.offer(message)

    def _deliver_trade(self, partition: int, offset: int, value: bytes) -> None:
        public = public_deal(value)
        if public is None:
            return
        message = frame("trade", DEALS, partition, offset, public)
        for subscription in self._public_deals:
            if not subscription.skip_below or _new_to(subscription, DEALS, partition, offset):
                subscription.offer(message)

    def _all(self) -> set[Subscription]:
        everyone = self._market | self._public_deals
        for subscribers in self._by_participant.values():
            everyone |= subscribers
        return everyone


def _new_to(subscription: Subscription, topic: str, partition: int, offset: int) -> bool:
    return offset >= subscription.skip_below.get((topic, partition), 0)


def _is_view(value: bytes) -> bool:
    try:
        _view.decode(value)
    except msgspec.DecodeError:
        return False
    return True


class LiveStream:
    """The gateway's one consumer of the output topics (and of the command log, to know who
    sent what for whom), feeding a :class:`FanOut`."""

    def __init__(self, settings: Settings, fanout: FanOut) -> None:
        self._settings = settings
        self.fanout = fanout
        topics = settings.topics
        #: Kafka topic -> stream name; the command topic is read for routing only.
        self._names = {
            topics.executions: EXECUTIONS,
            topics.deals: DEALS,
            topics.market_data: MARKET_DATA,
        }
        self._commands = topics.commands
        self._consumer = _consumer(settings, "techx-gateway-stream")
        self._catch_ups = asyncio.Semaphore(_CATCH_UPS_AT_ONCE)

    async def start(self) -> None:
        """Assign every partition, starting at the end; refuse topics `techx setup` did not
        make (a missing topic, or another partition count than the engines')."""
        try:
            await _check_topics(self._settings, [self._commands, *self._names])
            await self._consumer.start()
            wanted = [self._commands, *self._names]
            assigned = [
                TopicPartition(topic, partition)
                for topic in wanted
                for partition in range(self._settings.partitions)
            ]
            self._consumer.assign(assigned)
            await self._consumer.seek_to_end(*assigned)
            for tp in assigned:
                offset = await self._consumer.position(tp)
                if tp.topic == self._commands:
                    self.fanout.commands_read_to(tp.partition, offset)
                else:
                    self.fanout.positions[(self._names[tp.topic], tp.partition)] = offset
        except KafkaError as e:
            await self._consumer.stop()
            raise BrokerUnavailableError(
                f"cannot read the output topics from {self._settings.kafka_bootstrap}: {e!r}"
            ) from e
        except BaseException:
            await self._consumer.stop()
            raise
        log.info("stream_started", positions=len(self.fanout.positions))

    async def run(self, stop: asyncio.Event) -> None:
        """Read and fan out until ``stop``. aiokafka retries a broker that went away by
        itself; its errors are logged once per outage, and reading goes on."""
        loop = asyncio.get_running_loop()
        next_announcement = loop.time() + POSITIONS_EVERY_S
        failing_since: float | None = None
        try:
            while not stop.is_set():
                try:
                    fetched = await self._consumer.getmany(timeout_ms=100, max_records=10_000)
                except KafkaError as e:
                    if failing_since is None:
                        failing_since = loop.time()
                        log.warning("stream_failing", error=repr(e))
                    await asyncio.sleep(0.5)
                    continue
                if failing_since is not None:
                    log.info("stream_recovered", down_s=round(loop.time() - failing_since, 1))
                    failing_since = None
                self._dispatch(fetched)
                if loop.time() >= next_announcement:
                    self.fanout.announce_positions()
                    next_announcement = loop.time() + POSITIONS_EVERY_S
        finally:
            await self._consumer.stop()

    def _dispatch(
        self, fetched: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        fanout = self.fanout
        for records in fetched.values():
            if records:  # LogAppendTime: a partition's last record is its newest
                fanout.saw_time(records[-1].timestamp)
        # Commands first: an event fetched with its command is then routed at once.
        for tp, records in fetched.items():
            if tp.topic == self._commands and records:
                for record in records:
                    fanout.command(tp.partition, record.offset, record.value)
                fanout.commands_read_to(tp.partition, records[-1].offset + 1)
        for tp, records in fetched.items():
            name = self._names.get(tp.topic)
            if name == MARKET_DATA:
                for record in records:
                    fanout.view(tp.partition, record.offset, record.value)
            elif name is not None:
                for record in records:
                    fanout.output(name, tp.partition, record.offset, record.value)

    async def catch_up(
        self,
        subscription: Subscription,
        ranges: Mapping[Position, tuple[int, int]],
        report_gaps: bool = True,
    ) -> None:
        """Send ``subscription`` what it is for in each [start, end) range, in order per
        partition, from a reader of its own. A start older than what the topic still keeps
        (retention) starts at its first kept offset, after a ``gap`` message saying so."""
        wanted = {
            TopicPartition(self._topic_of(topic), partition): (start, end)
            for (topic, partition), (start, end) in ranges.items()
            if start < end
        }
        if not wanted:
            return
        async with self._catch_ups:
            consumer = _consumer(self._settings, "techx-gateway-resume")
            try:
                await consumer.start()
                consumer.assign(list(wanted))
                firsts = await consumer.beginning_offsets(list(wanted))
                remaining: dict[TopicPartition, int] = {}
                for tp, (asked, end) in wanted.items():
                    start = max(asked, firsts[tp])
                    if start > asked and report_gaps:
                        await subscription.push(
                            msgspec.json.encode(
                                {
                                    "type": "gap",
                                    "topic": self._names[tp.topic],
                                    "partition": tp.partition,
                                    "from": asked,
                                    "to": start,
                                }
                            )
                        )
                    if start < end:
                        consumer.seek(tp, start)
                        remaining[tp] = end
                    else:
                        consumer.pause(tp)
                while remaining:
                    fetched = await consumer.getmany(*remaining, timeout_ms=500)
                    for tp, records in fetched.items():
                        stop_at = remaining.get(tp)
                        if stop_at is None:
                            continue
                        name = self._names[tp.topic]
                        for record in records:
                            if record.offset >= stop_at:
                                break
                            message = self.fanout.wants(
                                subscription, name, tp.partition, record.offset, record.value
                            )
                            if message is not None:
                                await subscription.push(message)
                    for tp in list(remaining):
                        if await consumer.position(tp) >= remaining[tp]:
                            del remaining[tp]
                            consumer.pause(tp)
            except KafkaError as e:
                raise BrokerUnavailableError(f"reading past records failed: {e!r}") from e
            finally:
                await asyncio.sleep(0)  # as log_reader: let aiokafka's tasks start first
                await consumer.stop()

    def _topic_of(self, name: str) -> str:
        for topic, stream_name in self._names.items():
            if stream_name == name:
                return topic
        raise KeyError(name)


async def _check_topics(settings: Settings, topics: list[str]) -> None:
    """The topics exist with the engines' partition count (asked of the admin API, since a
    producer's or consumer's metadata request may create a missing topic on brokers that
    allow it, with the wrong count)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, client_id="techx-gateway-check"
    )
    try:
        await admin.start()
        for description in await admin.describe_topics(topics):
            name, count = description["topic"], len(description["partitions"])
            if description["error_code"] == _UNKNOWN_TOPIC:
                raise ConfigError(f"topic {name} does not exist: run `techx setup` first")
            if count != settings.partitions:
                raise ConfigError(
                    f"topic {name} has {count} partitions but TECHX_PARTITIONS is "
                    f"{settings.partitions}"
                )
    finally:
        await admin.close()


def _consumer(settings: Settings, client_id: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="latest",
        isolation_level="read_committed",
    )


async def cancel_quietly(task: asyncio.Task[object]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
