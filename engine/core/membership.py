"""Who may act, and as whom: the register of participants one partition's market keeps.

The register lives in the command log like everything else: operators write
``register_participant``, ``suspend_participant``, ``reinstate_participant`` and
``set_access_mode`` to every partition, and each partition's market applies its copy at its
own position, so live matching and any replay agree on who could do what at every offset.

Two checks, in this order:
- acting for another (``submitted_by`` set and not ``participant_id``), in any mode: only
  an operator, or an active broker that names the participant in ``acts_for``. A gateway
  stamps ``submitted_by`` with the participant it authenticated, so nobody can write
  another's id through it;
- members only: the acting and the owning participant must be registered and active, and
  the owner must hold the role the command needs (bid: buyer; offer and listing: seller).
  Cancels stay open to a suspended participant: they only reduce what it has at stake.

The bootstrap operator ``exchange-ops`` is always an operator, so a new exchange can register
its first participants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from engine.core.rules import quoted
from engine.core.snapshot import MemberSnapshot
from schemas.commands import (
    AmendOrder,
    CancelOrder,
    ListTechnology,
    ManageListing,
    MembershipCommand,
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
    ParticipantRegistered,
    ParticipantStatusChanged,
)

#: The operator every exchange starts with (it registers the others).
BOOTSTRAP_OPERATOR = "exchange-ops"

TradingCommand = PlaceOrder | CancelOrder | AmendOrder | ListTechnology | ManageListing

_ROLES: Final = {role.value: role for role in Role}
_OPEN: Final = AccessMode.OPEN
# Final: compiled, C statics rather than lookups in the module's dict on every check.
_OPERATOR: Final = Role.OPERATOR
_BROKER: Final = Role.BROKER
_CANCEL_ORDER: Final = CancelOrder

Refusal = tuple[RejectReason, str]


@dataclass(slots=True)
class Member:
    roles: frozenset[Role]
    acts_for: frozenset[str]
    active: bool = True


class Register:
    """The participants one partition knows, and whether only they may act."""

    __slots__ = ("members", "mode")

    def __init__(self) -> None:
        #: By participant id, in registration order (snapshots keep it).
        self.members: dict[str, Member] = {}
        self.mode = AccessMode.OPEN

    def to_snapshot(self) -> list[MemberSnapshot]:
        return [
            MemberSnapshot(participant_id, sorted(m.roles), sorted(m.acts_for), m.active)
            for participant_id, m in self.members.items()
        ]

    @classmethod
    def restore(cls, members: list[MemberSnapshot], mode: str) -> Register:
        register = cls()
        register.mode = AccessMode(mode)
        for saved in members:
            register.members[saved.participant_id] = Member(
                frozenset(Role(r) for r in saved.roles), frozenset(saved.acts_for), saved.active
            )
        return register

    def is_operator(self, participant_id: str) -> bool:
        if participant_id == BOOTSTRAP_OPERATOR:
            return True
        member = self.members.get(participant_id)
        return member is not None and member.active and _OPERATOR in member.roles

    def checks_needed(self, command: TradingCommand) -> bool:
        """False for the common case (open access, a participant acting for itself): the hot
        path skips every lookup."""
        return self.mode is not _OPEN or command.submitted_by is not None

    def refusal(self, command: TradingCommand, needs: Role | None) -> Refusal | None:
        """Why ``command`` may not be done, or None. ``needs``: the owner's role for it."""
        owner = command.participant_id
        actor = command.submitted_by or owner
        if actor != owner and not self._may_act_for(actor, owner):
            return (
                RejectReason.NOT_ACTING_FOR,
                f"{actor} may not act for {owner}: only an operator or a broker registered "
                f"to act for {owner}",
            )
        if self.mode is _OPEN:
            return None
        cancelling = type(command) is _CANCEL_ORDER
        if actor != owner:  # the actor's standing first, then the owner's
            refused = self._standing(actor, cancelling)
            if refused is not None:
                return refused
        refused = self._standing(owner, cancelling)
        if refused is not None:
            return refused
        if needs is not None and not self._holds(owner, needs):
            return (
                RejectReason.ROLE_NOT_PERMITTED,
                f"{owner} is not registered as {needs.value}",
            )
        return None

    def apply(
        self, command: MembershipCommand, timestamp_ms: int, source_offset: int
    ) -> list[Event]:
        """Apply an operator's membership command; its events carry no technology (seq 0)."""
        actor = command.submitted_by or command.participant_id
        if not self.is_operator(actor) or (
            actor != command.participant_id and not self.is_operator(command.participant_id)
        ):
            return [
                membership_rejection(
                    command,
                    RejectReason.OPERATOR_ONLY,
                    f"{actor} is not an operator",
                    timestamp_ms,
                    source_offset,
                )
            ]
        if type(command) is RegisterParticipant:
            return self._register(command, timestamp_ms, source_offset)
        if type(command) is SetAccessMode:
            return self._set_mode(command, timestamp_ms, source_offset)
        assert isinstance(command, SuspendParticipant | ReinstateParticipant)
        return self._change_status(command, timestamp_ms, source_offset)

    def _may_act_for(self, actor: str, owner: str) -> bool:
        if self.is_operator(actor):
            return True
        broker = self.members.get(actor)
        return (
            broker is not None
            and broker.active
            and _BROKER in broker.roles
            and owner in broker.acts_for
        )

    def _standing(self, participant_id: str, cancelling: bool) -> Refusal | None:
        if participant_id == BOOTSTRAP_OPERATOR:
            return None
        member = self.members.get(participant_id)
        if member is None:
            return (
                RejectReason.PARTICIPANT_NOT_REGISTERED,
                f"{participant_id} is not a registered participant of this exchange",
            )
        if not member.active and not cancelling:
            return RejectReason.PARTICIPANT_SUSPENDED, f"{participant_id} is suspended"
        return None

    def _holds(self, participant_id: str, role: Role) -> bool:
        member = self.members.get(participant_id)
        return member is not None and role in member.roles

    def _register(
        self, command: RegisterParticipant, timestamp_ms: int, source_offset: int
    ) -> list[Event]:
        unknown = [r for r in command.roles if r not in _ROLES]
        roles = frozenset(_ROLES[r] for r in command.roles if r in _ROLES)
        problem = None
        if unknown:
            problem = f"role {quoted(unknown[0])} is not seller, buyer, broker or operator"
        elif command.acts_for and Role.BROKER not in roles:
            problem = "only a broker acts for others: acts_for needs the broker role"
        elif Role.BROKER in roles and not command.acts_for:
            problem = "a broker must name in acts_for the participants it acts for"
        elif command.member_id == BOOTSTRAP_OPERATOR:
            problem = f"{BOOTSTRAP_OPERATOR} is the bootstrap operator and cannot be changed"
        if problem is not None:
            return [
                membership_rejection(
                    command,
                    RejectReason.INVALID_REGISTRATION,
                    problem,
                    timestamp_ms,
                    source_offset,
                )
            ]
        previous = self.members.get(command.member_id)
        self.members[command.member_id] = Member(
            roles, frozenset(command.acts_for), previous.active if previous else True
        )
        return [
            ParticipantRegistered(
                technology_id="",
                seq=0,
                timestamp_ms=timestamp_ms,
                source_offset=source_offset,
                participant_id=command.participant_id,
                member_id=command.member_id,
                roles=sorted(roles),
                acts_for=sorted(set(command.acts_for)),
            )
        ]

    def _change_status(
        self,
        command: SuspendParticipant | ReinstateParticipant,
        timestamp_ms: int,
        source_offset: int,
    ) -> list[Event]:
        member = self.members.get(command.member_id)
        suspend = type(command) is SuspendParticipant
        if member is None or member.active != suspend:
            state = "not registered" if member is None else ("suspended" if suspend else "active")
            return [
                membership_rejection(
                    command,
                    RejectReason.INVALID_STATUS_CHANGE,
                    f"{command.member_id} is {'already ' if member else ''}{state}",
                    timestamp_ms,
                    source_offset,
                )
            ]
        member.active = not suspend
        return [
            ParticipantStatusChanged(
                technology_id="",
                seq=0,
                timestamp_ms=timestamp_ms,
                source_offset=source_offset,
                participant_id=command.participant_id,
                member_id=command.member_id,
                status=ParticipantStatus.SUSPENDED if suspend else ParticipantStatus.ACTIVE,
            )
        ]

    def _set_mode(
        self, command: SetAccessMode, timestamp_ms: int, source_offset: int
    ) -> list[Event]:
        try:
            mode = AccessMode(command.mode)
        except ValueError:
            return [
                membership_rejection(
                    command,
                    RejectReason.INVALID_REGISTRATION,
                    f"access mode {quoted(command.mode)} is not open or members_only",
                    timestamp_ms,
                    source_offset,
                )
            ]
        previous, self.mode = self.mode, mode
        return [
            AccessModeChanged(
                technology_id="",
                seq=0,
                timestamp_ms=timestamp_ms,
                source_offset=source_offset,
                participant_id=command.participant_id,
                mode=mode,
                previous=previous,
            )
        ]


def membership_rejection(
    command: MembershipCommand,
    reason: RejectReason,
    detail: str,
    timestamp_ms: int,
    source_offset: int,
) -> CommandRejected:
    return CommandRejected(
        technology_id="",
        seq=0,
        timestamp_ms=timestamp_ms,
        source_offset=source_offset,
        command=type(command).__struct_config__.tag,  # type: ignore[arg-type]
        participant_id=command.participant_id,
        client_order_id="",
        reason=reason,
        detail=detail,
    )
