"""Who may act as whom: the register of participants, the access mode, brokers, operators."""

from __future__ import annotations

import msgspec
import pytest

from engine.core.batch import LogRecord, PartitionProcessor
from engine.core.market import Market
from engine.core.membership import BOOTSTRAP_OPERATOR
from schemas.commands import (
    CancelOrder,
    Command,
    ListTechnology,
    ManageListing,
    PlaceOrder,
    RegisterParticipant,
    ReinstateParticipant,
    SetAccessMode,
    SuspendParticipant,
)
from schemas.common import AccessMode, ParticipantStatus, RejectReason, Role
from schemas.events import (
    AccessModeChanged,
    CommandRejected,
    Event,
    OrderAccepted,
    OrderCancelled,
    ParticipantRegistered,
    ParticipantStatusChanged,
)

OPS = BOOTSTRAP_OPERATOR
TS = 1_700_000_000_000


class Session:
    """A market driven one command at a time, with log time and offsets that move on."""

    def __init__(self, market: Market | None = None) -> None:
        self.market = market or Market()
        self.offset = 0

    def do(self, command: Command) -> list[Event]:
        self.offset += 1
        return self.market.apply(command, TS + self.offset, self.offset)

    def refused(self, command: Command) -> RejectReason | None:
        rejections = [e for e in self.do(command) if isinstance(e, CommandRejected)]
        return rejections[0].reason if rejections else None


def bid(owner: str, cid: str, by: str | None = None, technology: str = "T1") -> PlaceOrder:
    return PlaceOrder(technology, owner, cid, "bid", 1, "limit", 100, submitted_by=by)


def offer(owner: str, cid: str, by: str | None = None) -> PlaceOrder:
    return PlaceOrder("T1", owner, cid, "offer", 1, "limit", 200, submitted_by=by)


@pytest.fixture
def exchange() -> Session:
    """Members only: a seller that listed T1, a buyer, a broker for the buyer, an operator."""
    session = Session()
    for command in (
        RegisterParticipant(OPS, "uni-a", ["seller"]),
        RegisterParticipant(OPS, "firm-b", ["buyer"]),
        RegisterParticipant(OPS, "bk-1", ["broker"], ["firm-b"]),
        RegisterParticipant(OPS, "ops-2", ["operator"]),
        SetAccessMode(OPS, "members_only"),
        ListTechnology("T1", "uni-a", "Battery patent", 1, 1),
    ):
        assert session.refused(command) is None, command
    return session


def test_an_open_exchange_lets_anyone_trade_as_the_id_it_writes() -> None:
    """The sandbox default: no register needed (every test before access control relies on
    it), yet acting for another through submitted_by is still refused."""
    session = Session()
    assert session.refused(ListTechnology("T1", "anyone", "x", 1, 1)) is None
    assert session.refused(bid("alice", "a1")) is None
    assert session.refused(bid("alice", "a2", by="mallory")) == RejectReason.NOT_ACTING_FOR


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (bid("stranger", "s1"), RejectReason.PARTICIPANT_NOT_REGISTERED),
        (bid("uni-a", "s2"), RejectReason.ROLE_NOT_PERMITTED),  # a seller does not bid
        (offer("firm-b", "s3"), RejectReason.ROLE_NOT_PERMITTED),  # a buyer does not offer
        (bid("ops-2", "s4"), RejectReason.ROLE_NOT_PERMITTED),  # an operator does not trade
        (bid("firm-b", "s5", by="uni-a"), RejectReason.NOT_ACTING_FOR),
        (bid("uni-a", "s6", by="bk-1"), RejectReason.NOT_ACTING_FOR),  # not its client
        (ListTechnology("T9", "firm-b", "x", 1, 1), RejectReason.ROLE_NOT_PERMITTED),
        (ManageListing("T1", "firm-b", "halt"), RejectReason.NOT_PERMITTED),
        (RegisterParticipant("firm-b", "evil", ["operator"]), RejectReason.OPERATOR_ONLY),
        (
            RegisterParticipant(OPS, "evil", ["operator"], submitted_by="firm-b"),
            RejectReason.OPERATOR_ONLY,
        ),
        (SuspendParticipant(OPS, "nobody"), RejectReason.INVALID_STATUS_CHANGE),
        (ReinstateParticipant(OPS, "firm-b"), RejectReason.INVALID_STATUS_CHANGE),
        (RegisterParticipant(OPS, "x", ["buyer"], ["firm-b"]), RejectReason.INVALID_REGISTRATION),
        (RegisterParticipant(OPS, "x", ["broker"]), RejectReason.INVALID_REGISTRATION),
        (RegisterParticipant(OPS, "x", ["king"]), RejectReason.INVALID_REGISTRATION),
        (RegisterParticipant(OPS, OPS, ["buyer"]), RejectReason.INVALID_REGISTRATION),
        (SetAccessMode(OPS, "closed"), RejectReason.INVALID_REGISTRATION),
    ],
)
def test_members_only_refusals(exchange: Session, command: Command, reason: RejectReason) -> None:
    assert exchange.refused(command) == reason


@pytest.mark.parametrize(
    "command",
    [
        bid("firm-b", "ok1"),
        offer("uni-a", "ok2"),
        bid("firm-b", "ok3", by="bk-1"),  # the broker for its client
        bid("firm-b", "ok4", by="ops-2"),  # an operator for anyone
        ManageListing("T1", "ops-2", "halt"),  # a registered operator
        ManageListing("T1", "uni-a", "halt"),  # the seller
        RegisterParticipant("ops-2", "new-c", ["buyer"]),
    ],
)
def test_members_only_allows(exchange: Session, command: Command) -> None:
    assert exchange.refused(command) is None


def test_a_brokers_order_belongs_to_its_client(exchange: Session) -> None:
    """The broker places for firm-b; firm-b itself can cancel it; the broker can too."""
    accepted = exchange.do(bid("firm-b", "b1", by="bk-1"))
    assert isinstance(accepted[0], OrderAccepted)
    assert accepted[0].participant_id == "firm-b"
    cancelled = exchange.do(CancelOrder("T1", "firm-b", "b1"))
    assert isinstance(cancelled[0], OrderCancelled)
    exchange.do(bid("firm-b", "b2"))
    by_broker = exchange.do(CancelOrder("T1", "firm-b", "b2", submitted_by="bk-1"))
    assert isinstance(by_broker[0], OrderCancelled)


def test_a_suspended_participant_may_cancel_but_not_trade(exchange: Session) -> None:
    exchange.do(bid("firm-b", "r1"))
    changed = exchange.do(SuspendParticipant(OPS, "firm-b"))
    assert isinstance(changed[0], ParticipantStatusChanged)
    assert changed[0].status is ParticipantStatus.SUSPENDED
    assert exchange.refused(bid("firm-b", "r2")) == RejectReason.PARTICIPANT_SUSPENDED
    assert exchange.refused(bid("firm-b", "r3", by="bk-1")) == RejectReason.PARTICIPANT_SUSPENDED
    assert exchange.refused(CancelOrder("T1", "firm-b", "r1")) is None
    exchange.do(ReinstateParticipant(OPS, "firm-b"))
    assert exchange.refused(bid("firm-b", "r4")) is None


def test_a_suspended_broker_acts_for_nobody(exchange: Session) -> None:
    exchange.do(SuspendParticipant(OPS, "bk-1"))
    assert exchange.refused(bid("firm-b", "k1", by="bk-1")) == RejectReason.NOT_ACTING_FOR


def test_a_suspended_operator_is_no_operator(exchange: Session) -> None:
    exchange.do(SuspendParticipant(OPS, "ops-2"))
    refused = exchange.refused(RegisterParticipant("ops-2", "y", ["buyer"]))
    assert refused == RejectReason.OPERATOR_ONLY


def test_membership_events_say_what_changed() -> None:
    session = Session()
    registered = session.do(RegisterParticipant(OPS, "bk", ["broker", "buyer"], ["z", "a", "z"]))
    assert registered == [
        ParticipantRegistered("", 0, TS + 1, 1, OPS, "bk", [Role.BROKER, Role.BUYER], ["a", "z"])
    ]
    mode = session.do(SetAccessMode(OPS, "members_only"))
    assert mode == [
        AccessModeChanged("", 0, TS + 2, 2, OPS, AccessMode.MEMBERS_ONLY, AccessMode.OPEN)
    ]


def test_re_registering_replaces_roles_and_keeps_a_suspension(exchange: Session) -> None:
    exchange.do(SuspendParticipant(OPS, "firm-b"))
    exchange.do(RegisterParticipant(OPS, "firm-b", ["buyer", "seller"]))
    assert exchange.refused(offer("firm-b", "o1")) == RejectReason.PARTICIPANT_SUSPENDED
    exchange.do(ReinstateParticipant(OPS, "firm-b"))
    assert exchange.refused(offer("firm-b", "o2")) is None


def test_the_register_survives_a_snapshot(exchange: Session) -> None:
    """A restored market answers every membership question alike (and digests alike)."""
    exchange.do(SuspendParticipant(OPS, "bk-1"))
    restored = Session(Market.from_snapshot(exchange.market.snapshot()))
    restored.offset = exchange.offset
    assert restored.market.state_digest() == exchange.market.state_digest()
    for command in (
        bid("stranger", "q1"),
        bid("firm-b", "q2", by="bk-1"),
        bid("uni-a", "q3"),
        bid("firm-b", "q4"),
    ):
        assert restored.refused(command) == exchange.refused(command)


def test_membership_records_take_any_key_on_every_partition() -> None:
    """Written to every partition by the operator tool: no key or partition routing check,
    and the events go out under the record's key."""
    raw = msgspec.json.encode(RegisterParticipant(OPS, "uni-a", ["seller"]))
    for partition in range(4):
        processor = PartitionProcessor(partition, 4)
        batch = processor.process([LogRecord(0, TS, b"uni-a", raw)])
        assert not batch.dead_letters
        assert [key for key, _, _ in batch.executions_out] == [b"uni-a"]
        assert batch.outcomes[0].technology_id == ""
        assert batch.outcomes[0].command_type == "register_participant"
