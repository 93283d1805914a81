"""Turns one partition's command records into everything a batch settles and publishes.

Pure: records in, rows and messages out. The consumer runs it live; recovery and replay run
the same code over the same records, which is what makes their outputs identical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, cast

from engine.core.codec import MAX_COMMAND_BYTES, decode_command, encode_reusing, encode_view
from engine.core.market import Market
from engine.core.partitioning import partition_for
from engine.core.records import CommandOutcome, DeadLetterRecord
from engine.errors import DecodeError
from schemas.commands import (
    MEMBERSHIP_COMMAND_TYPES,
    CancelOrder,
    Command,
    MembershipCommand,
    PlaceOrder,
    TechnologyCommand,
    Tick,
)
from schemas.common import DeadLetterReason
from schemas.events import CommandRejected, Deal, Event

#: A stable code from :class:`schemas.common.DeadLetterReason`.
DLQ_REASON_HEADER = "techx.dlq.reason"
#: What exactly is wrong, for people (UTF-8, at most _MAX_DLQ_DETAIL_BYTES).
DLQ_DETAIL_HEADER = "techx.dlq.detail"
DLQ_PARTITION_HEADER = "techx.dlq.source.partition"
DLQ_OFFSET_HEADER = "techx.dlq.source.offset"
#: Present when the key was cut; holds the original length.
DLQ_KEY_TRUNCATED_HEADER = "techx.dlq.key.truncated.from"
#: Keys are technology ids (64 characters at most); a longer one is cut in the dead letter.
_MAX_DLQ_KEY_BYTES = 256
#: Details quote the input; a header holding a whole 16 KiB record helps nobody.
_MAX_DLQ_DETAIL_BYTES = 1024
#: Present when the value was cut to MAX_COMMAND_BYTES; holds the original length.
DLQ_TRUNCATED_HEADER = "techx.dlq.truncated.from"

# Final, the names the hot loop reads: compiled, each is a C static rather than a lookup in
# the module's dict at every record (imported classes included, hence the aliases).
_COMMAND_TAGS: Final[dict[type[Command], str]] = {
    command_type: str(command_type.__struct_config__.tag) for command_type in Command.__args__
}
_MEMBERSHIP: Final[frozenset[type[Command]]] = frozenset(MEMBERSHIP_COMMAND_TYPES)
#: Commands for no technology: any key, written to every partition, no routing checks.
_EXCHANGE_WIDE: Final[frozenset[type[Command]]] = _MEMBERSHIP | {Tick}
#: Outputs carry no headers; one shared empty list instead of one per message.
_NO_HEADERS: Final[list[tuple[str, bytes]]] = []
#: What a command that caused no event published.
_NO_EVENTS: Final = b"[]"
#: Most record keys remembered as correctly routed here; past it keys are checked each time,
#: so foreign ids (each one a key that hashes here) cannot grow the memory without bound.
_MOST_ROUTED_KEYS: Final = 65_536
_TICK: Final = Tick
_PLACE_ORDER: Final = PlaceOrder
#: Most records' tag, without the probe of _COMMAND_TAGS.
_PLACE_ORDER_TAG: Final = _COMMAND_TAGS[PlaceOrder]
_CANCEL_ORDER: Final = CancelOrder
_DEAL: Final = Deal
_COMMAND_REJECTED: Final = CommandRejected
_COMMAND_OUTCOME: Final = CommandOutcome

KafkaMessage = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


class CommandRecord(Protocol):
    """The parts of a Kafka record the engine reads (aiokafka's ConsumerRecord has them)."""

    @property
    def offset(self) -> int: ...

    @property
    def timestamp(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A command record held in memory: for tools, tests and benchmarks that have the log's
    records from somewhere other than a live consumer. It is a :class:`CommandRecord`."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why a record never became a command: a stable code and a human detail."""

    reason: DeadLetterReason
    detail: str


@dataclass(slots=True)
class SettlementBatch:
    """One partition's share of a consumer batch: settled in one transaction, then published.

    This is the one hand-over from the pure core to the store and the publisher: the store
    turns ``deals``, ``outcomes`` and ``dead_letters`` into its rows, the publisher sends the
    ``*_out`` messages.
    """

    partition: int
    first_offset: int
    next_offset: int
    deals: list[Deal] = field(default_factory=list)
    outcomes: list[CommandOutcome] = field(default_factory=list)
    dead_letters: list[DeadLetterRecord] = field(default_factory=list)
    #: Messages for the output topics: (key, value, headers).
    deals_out: list[KafkaMessage] = field(default_factory=list)
    executions_out: list[KafkaMessage] = field(default_factory=list)
    dead_letters_out: list[KafkaMessage] = field(default_factory=list)
    market_data_out: list[KafkaMessage] = field(default_factory=list)
    commands: int = 0
    #: The reason codes of the batch's rejections, in order: what the metrics count, known
    #: here without reading the encoded events back.
    rejections: list[str] = field(default_factory=list)
    #: The market right after this batch, when a snapshot is due; settled with the batch.
    snapshot: bytes | None = None

    @property
    def deal_count(self) -> int:
        return len(self.deals_out)


#: A stand-in for :func:`~engine.core.codec.decode_command` (see PartitionProcessor).
Decode = Callable[[bytes | None], Command]
#: Called with each applied command and its events before they are encoded.
AfterApply = Callable[[Command, list[Event]], None]


class PartitionProcessor:
    """The market of one partition plus the bookkeeping of where it stands in the log.

    ``decode`` and ``after_apply`` are for fault injection (the fuzz harness plants raises
    with them): the compiled core binds its calls statically, so it cannot be monkeypatched.
    """

    def __init__(
        self,
        partition: int,
        partition_count: int | None = None,
        market: Market | None = None,
        *,
        decode: Decode | None = None,
        after_apply: AfterApply | None = None,
    ) -> None:
        self.partition = partition
        #: When known, records of technologies that belong elsewhere are dead-lettered.
        self.partition_count = partition_count
        self.market = market if market is not None else Market()
        self._decode = decode
        self._after_apply = after_apply
        #: Where events are encoded, kept from one command to the next (see encode_reusing).
        self._encoding = bytearray()
        #: Record keys that passed the routing checks, with the technology id they equal:
        #: the same key and id pass again without decoding the key or hashing the id.
        self._routed: dict[bytes, str] = {}

    def apply(self, record: CommandRecord) -> tuple[Command, list[Event]] | DeadLetter:
        """The command in a record and the events it causes, or why it is a dead letter."""
        try:
            command = self._decoded(record.value)
        except DecodeError as e:
            return DeadLetter(e.reason, e.detail)
        refusal = self._misrouted(command, record.key)
        if refusal is not None:
            return refusal
        return command, self._applied(command, record.timestamp, record.offset)

    def _decoded(self, value: bytes | None) -> Command:
        decode = self._decode
        return decode_command(value) if decode is None else decode(value)

    def _applied(self, command: Command, timestamp_ms: int, offset: int) -> list[Event]:
        events = self.market.apply(command, timestamp_ms, offset)
        after_apply = self._after_apply
        if after_apply is not None:
            after_apply(command, events)
        return events

    def _misrouted(self, command: Command, key: bytes | None) -> DeadLetter | None:
        """Why a decoded command may not be applied here, if it may not."""
        if type(command) in _EXCHANGE_WIDE:  # the ticker's and operators': any key, every partition
            return None
        # A cast, not an isinstance assert: this runs for every record.
        technology_id = cast(TechnologyCommand, command).technology_id
        if key is None or key.decode("utf-8", "replace") != technology_id:
            return DeadLetter(
                DeadLetterReason.KEY_MISMATCH,
                f"record key {_quote(key)} must equal technology_id "
                f'"{technology_id}": the key routes a technology to one partition',
            )
        if self.partition_count is not None:
            home = partition_for(technology_id, self.partition_count)
            if home != self.partition:
                return DeadLetter(
                    DeadLetterReason.WRONG_PARTITION,
                    f'technology "{technology_id}" belongs to partition {home} '
                    f"(murmur2 of the key: Kafka's default partitioner), not {self.partition}",
                )
        return None

    def process(self, records: Sequence[CommandRecord]) -> SettlementBatch:
        """Apply the records in offset order; a bad record becomes a dead letter, never a stop."""
        batch = SettlementBatch(self.partition, records[0].offset, records[-1].offset + 1)
        self.process_into(batch, records)
        return batch

    def process_into(  # noqa: PLR0915 - one flat pass per record: the hot loop, no helper calls
        self, batch: SettlementBatch, records: Sequence[CommandRecord]
    ) -> None:
        """Add the outcomes of the next records (which follow the batch's) to ``batch``."""
        batch.next_offset = records[-1].offset + 1
        deals, outcomes = batch.deals, batch.outcomes
        deals_out, executions_out = batch.deals_out, batch.executions_out
        encoding = self._encoding
        market = self.market
        for record in records:
            try:
                command = self._decoded(record.value)
            except DecodeError as e:
                _dead_letter(batch, record, DeadLetter(e.reason, e.detail))
                continue
            command_type = type(command)
            key = record.key
            offset = record.offset  # read once: a record's attribute is a generic lookup
            if command_type is _TICK:
                events = self._applied(command, record.timestamp, offset)
                if not events:
                    continue  # a tick that found nothing due leaves no trace
                technology_id = participant_id = ""  # every event goes under its own key
                client_order_id = ""
            elif (
                # Orders and cancels, nearly every record: two compares, not a set probe.
                command_type is not _PLACE_ORDER
                and command_type is not _CANCEL_ORDER
                and command_type in _MEMBERSHIP
            ):
                events = self._applied(command, record.timestamp, offset)
                # Exchange-wide events (technology "") go under the record's key.
                technology_id = client_order_id = ""
                participant_id = cast(MembershipCommand, command).participant_id
            else:
                routed = cast(TechnologyCommand, command)
                technology_id, participant_id = routed.technology_id, routed.participant_id
                if key is None or self._routed.get(key) != technology_id:
                    refusal = self._misrouted(command, key)
                    if refusal is not None:
                        _dead_letter(batch, record, refusal)
                        continue
                    if key is not None and len(self._routed) < _MOST_ROUTED_KEYS:
                        self._routed[key] = technology_id
                events = self._applied(command, record.timestamp, offset)
                client_order_id = getattr(command, "client_order_id", "")
            if events:
                values = []
                own_events_only = market.own_events_only
                for event in events:
                    value = encode_reusing(event, encoding)
                    values.append(value)
                    # A deadline of another technology may fire before this command: its
                    # events go out under their own technology's key.
                    if own_events_only or event.technology_id == technology_id:
                        event_key = key
                    else:
                        event_key = _key(event)
                    if type(event) is _DEAL:
                        deals_out.append((event_key, value, _NO_HEADERS))
                        deals.append(event)
                    else:
                        executions_out.append((event_key, value, _NO_HEADERS))
                        if type(event) is _COMMAND_REJECTED:
                            batch.rejections.append(event.reason.value)
                joined = value if len(values) == 1 else b",".join(values)  # one: no join
                # Formatted, not concatenated: compiled, one CPyBytes_Build, one new object.
                events_json = b"[%b]" % joined
            else:
                events_json = _NO_EVENTS
            outcomes.append(
                _COMMAND_OUTCOME(
                    offset,
                    technology_id,
                    _PLACE_ORDER_TAG
                    if command_type is _PLACE_ORDER
                    else _COMMAND_TAGS[command_type],
                    participant_id,
                    client_order_id,
                    events_json,
                )
            )
        views = self.market.views_out
        if views:
            market_data_out = batch.market_data_out
            for view in views:
                market_data_out.append(
                    (view.technology_id.encode(), encode_view(view), _NO_HEADERS)
                )
            views.clear()
        batch.commands += len(records)


def _key(event: Event) -> bytes:
    return event.technology_id.encode()


def _dead_letter(batch: SettlementBatch, record: CommandRecord, dead: DeadLetter) -> None:
    # The detail may quote the bad input; PostgreSQL text cannot hold NUL, and a lone
    # surrogate from a JSON escape cannot be encoded as UTF-8.
    detail = dead.detail.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace")
    if len(detail) > _MAX_DLQ_DETAIL_BYTES:
        detail = detail[: _MAX_DLQ_DETAIL_BYTES - 3].decode("utf-8", "ignore").encode() + b"..."
    batch.dead_letters.append(
        DeadLetterRecord(
            record.offset, dead.reason, detail.decode(), record.key, record.value, record.timestamp
        )
    )
    headers = [
        (DLQ_REASON_HEADER, dead.reason.value.encode()),
        (DLQ_DETAIL_HEADER, detail),
        (DLQ_PARTITION_HEADER, str(batch.partition).encode()),
        (DLQ_OFFSET_HEADER, str(record.offset).encode()),
    ]
    key = record.key
    if key is not None and len(key) > _MAX_DLQ_KEY_BYTES:
        headers.append((DLQ_KEY_TRUNCATED_HEADER, str(len(key)).encode()))
        key = key[:_MAX_DLQ_KEY_BYTES]
    value = record.value
    if value is not None and len(value) > MAX_COMMAND_BYTES:
        # An oversized record may not fit the dead-letter topic once headers are added; the
        # full bytes stay in PostgreSQL's dead_letters row.
        headers.append((DLQ_TRUNCATED_HEADER, str(len(value)).encode()))
        value = value[:MAX_COMMAND_BYTES]
    batch.dead_letters_out.append((key, value, headers))


def _quote(key: bytes | None, limit: int = 80) -> str:
    """A key as it may appear in a detail: short, quoted, readable whatever the sender put."""
    if key is None:
        return "(none)"
    text = key[:limit].decode("utf-8", "backslashreplace")
    suffix = f"... ({len(key)} bytes)" if len(key) > limit else ""
    return f'"{text}"{suffix}'
