"""Who an output record is for: pure decisions the stream's fan-out applies.

An event is for every participant it names: ``participant_id`` (the owner of an order, the
one whose command was rejected, the operator of a membership change), ``buyer_id`` and
``seller_id`` of a deal, ``winner_id`` of an auction, ``member_id`` of a registration or
suspension. Events do not name who *sent* a command for another (a broker, an operator, or
someone trying to act as another participant, refused ``not_acting_for``), so the gateway
learns it from the command log itself: a command record whose ``submitted_by`` differs from
its ``participant_id`` is remembered by its (partition, offset), and every event caused by it
(the same partition number, ``source_offset`` = that offset) is for the sender too.

Learning it from the log, not from the requests this process took, keeps the gateway
stateless: a command sent through one copy is answered on a socket held by another.

A deal is also public in part: the market socket may relay what any trading screen shows of
it (technology, price, quantity, time), never who bought or sold nor their orders
(:func:`public_deal`).
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec

#: The bytes every command record with a sender other than its owner contains (the engine's
#: and the gateway's encoders write JSON without spaces; a hand-written record with spaces
#: is simply not recognised, and its outcomes reach its owner only).
_SUBMITTED_BY = b'"submitted_by":"'
#: Acted-for commands remembered per partition: only outcomes of these can be told to their
#: senders, so this is how far back a resuming broker gets them.
DEFAULT_WINDOW = 100_000


class Addressed(msgspec.Struct, frozen=True, gc=False):
    """The fields of any event that name participants (the rest of the event is skipped)."""

    source_offset: int = 0
    participant_id: str = ""
    buyer_id: str = ""
    seller_id: str = ""
    winner_id: str | None = None
    member_id: str = ""


class _Sender(msgspec.Struct, frozen=True, gc=False):
    participant_id: str = ""
    submitted_by: str | None = None


class PublicDeal(msgspec.Struct, frozen=True, gc=False, tag="deal", tag_field="type"):
    """What of a deal anyone may see: the fields a trade tape shows. Decoding a deal into it
    drops every other field, so buyer, seller and their order ids cannot leak by mistake
    (a field added to ``Deal`` later stays private until it is named here)."""

    technology_id: str
    deal_id: str
    price: int
    quantity: int
    timestamp_ms: int


_addressed = msgspec.json.Decoder(Addressed)
_sender = msgspec.json.Decoder(_Sender)
_public_deal = msgspec.json.Decoder(PublicDeal)
_public_deal_encoder = msgspec.json.Encoder()


def addressed(value: bytes) -> Addressed | None:
    """The participant fields of an event record; None for a record that is not an event
    object (nothing the engine publishes, so nobody's)."""
    try:
        return _addressed.decode(value)
    except msgspec.DecodeError:
        return None


def public_deal(value: bytes) -> bytes | None:
    """The public part of a deals record, as JSON; None for a record that is not a deal."""
    try:
        deal = _public_deal.decode(value)
    except msgspec.DecodeError:
        return None
    return _public_deal_encoder.encode(deal)


def sender(value: bytes) -> str | None:
    """Who sent a command record for another participant: its ``submitted_by`` when that is
    not its ``participant_id``; None otherwise (most records, decided without decoding)."""
    if _SUBMITTED_BY not in value:
        return None
    try:
        command = _sender.decode(value)
    except msgspec.DecodeError:
        return None  # the engine dead-letters it: it has no outcome to route
    if command.submitted_by and command.submitted_by != command.participant_id:
        return command.submitted_by
    return None


class ActedFor:
    """Which recent command offsets were sent by someone other than their owner, by whom."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self._window = window
        self._senders: dict[int, OrderedDict[int, str]] = {}

    def note(self, partition: int, offset: int, submitted_by: str) -> None:
        senders = self._senders.setdefault(partition, OrderedDict())
        senders[offset] = submitted_by
        if len(senders) > self._window:
            senders.popitem(last=False)

    def sender(self, partition: int, offset: int) -> str | None:
        senders = self._senders.get(partition)
        return None if senders is None else senders.get(offset)


def addressees(event: Addressed, sent_by: str | None) -> set[str]:
    """Everyone ``event`` is for; ``sent_by``: who sent its command for another, if known."""
    names = {
        event.participant_id,
        event.buyer_id,
        event.seller_id,
        event.member_id,
        event.winner_id or "",
    }
    if sent_by:
        names.add(sent_by)
    names.discard("")
    return names


class Holdback:
    """Keeps a partition's events until the command log has been read past their command.

    Commands are appended before the engine reads them, so the gateway nearly always reads a
    command before its events; but the two come from different topics, and under a backlog
    the commands partition may be fetched later. An event whose command is not read yet waits
    here (with every later event of the same output partition, which keeps their order),
    so its sender, if another, is known when it is delivered.
    """

    def __init__(self) -> None:
        #: Per command partition: the next command offset to be read.
        self._commands_read: dict[int, int] = {}
        #: Per (output topic, partition): events waiting, in offset order.
        self._held: dict[tuple[str, int], list[tuple[int, int, bytes]]] = {}

    def commands_read_to(
        self, partition: int, next_offset: int
    ) -> list[tuple[str, int, int, bytes]]:
        """Every command of ``partition`` below ``next_offset`` has been read (or will never
        be, when reading starts there): returns the events that may go now, as (topic,
        partition, offset, value), each output partition's in order."""
        self._commands_read[partition] = next_offset
        released: list[tuple[str, int, int, bytes]] = []
        for (topic, held_partition), held in self._held.items():
            if held_partition != partition or not held:
                continue
            ready = 0
            while ready < len(held) and held[ready][0] < next_offset:
                ready += 1
            released.extend((topic, partition, offset, value) for _, offset, value in held[:ready])
            del held[:ready]
        return released

    def release_all(self) -> list[tuple[str, int, int, bytes]]:
        """Everything held, now: for a command that cannot be waited for any longer."""
        released = [
            (topic, partition, offset, value)
            for (topic, partition), held in self._held.items()
            for _, offset, value in held
        ]
        self._held.clear()
        return released

    def admit(
        self, topic: str, partition: int, offset: int, source_offset: int, value: bytes
    ) -> bool:
        """True when the event may go now; False when it was kept to go later."""
        held = self._held.get((topic, partition))
        read = self._commands_read.get(partition)
        if held or (read is not None and source_offset >= read):
            self._held.setdefault((topic, partition), []).append((source_offset, offset, value))
            return False
        return True

    def holding(self, topic: str, partition: int) -> bool:
        """Whether events of this output partition wait: its position may not move past them."""
        return bool(self._held.get((topic, partition)))

    def held(self) -> int:
        return sum(len(events) for events in self._held.values())
