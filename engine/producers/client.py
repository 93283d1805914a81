"""The front-end client: place bids and offers, cancel, list technologies.

Commands are keyed by ``technology_id`` and partitioned with Kafka's default murmur2 rule
(the Java client's default; librdkafka-based clients must set ``partitioner=murmur2_random``),
so every front-end sends a technology to the same partition. ``send_many`` is the batched
path for simulators, benchmarks and tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType

import msgspec
from aiokafka.errors import KafkaError

from engine.core.batch import KafkaMessage
from engine.core.codec import encode
from engine.core.partitioning import partition_for
from engine.kafka_security import kafka_error
from engine.producers.publisher import make_producer, send_in_batches
from engine.settings import Settings
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
    TechnologyCommand,
)


class TradingClient:
    def __init__(self, settings: Settings, client_id: str = "techx-frontend") -> None:
        self._settings = settings
        self._topic = settings.topics.commands
        self._security = settings.kafka_security
        self._producer = make_producer(settings, client_id)

    async def start(self) -> None:
        try:
            await self._producer.start()
        except KafkaError as e:
            await self._producer.stop()
            raise kafka_error(
                e, f"connecting to Kafka at {self._settings.kafka_bootstrap}", self._security
            ) from e

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> TradingClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def send(self, command: TechnologyCommand) -> int:
        """Publish one command and wait for the broker; returns its offset."""
        try:
            metadata = await self._producer.send_and_wait(
                self._topic, encode(command), key=command.technology_id.encode()
            )
        except KafkaError as e:
            raise kafka_error(e, f"publishing {command!r}", self._security) from e
        return int(metadata.offset)

    async def send_raw(self, technology_id: str, value: bytes) -> int:
        """Publish bytes as they are: for testing how the engine answers malformed input."""
        metadata = await self._producer.send_and_wait(
            self._topic, value, key=technology_id.encode()
        )
        return int(metadata.offset)

    async def send_many(self, commands: Iterable[TechnologyCommand]) -> int:
        """Publish many commands in per-partition batches, in order; returns how many."""
        partitions = sorted(await self._producer.partitions_for(self._topic))
        by_partition: dict[int, list[TechnologyCommand]] = {}
        for command in commands:
            partition = partition_for(command.technology_id, len(partitions))
            by_partition.setdefault(partition, []).append(command)
        futures: list[asyncio.Future[object]] = []
        try:
            for partition, batch_commands in by_partition.items():
                messages: list[KafkaMessage] = [
                    (command.technology_id.encode(), encode(command), [])
                    for command in batch_commands
                ]
                futures.extend(
                    await send_in_batches(self._producer, self._topic, partition, messages)
                )
            await asyncio.gather(*futures)
        except KafkaError as e:
            raise kafka_error(e, "publishing a batch of commands", self._security) from e
        return sum(len(c) for c in by_partition.values())

    async def broadcast(self, command: MembershipCommand) -> list[int]:
        """Publish an exchange-wide command to every partition (each market keeps its own
        register); returns the offset on each partition, in partition order."""
        partitions = sorted(await self._producer.partitions_for(self._topic))
        key = getattr(command, "member_id", command.participant_id).encode()
        value = encode(command)
        try:
            sent = [
                await self._producer.send(self._topic, value, key=key, partition=partition)
                for partition in partitions
            ]
            return [int((await future).offset) for future in sent]
        except KafkaError as e:
            raise kafka_error(e, f"publishing {command!r}", self._security) from e

    async def register_participant(
        self,
        operator_id: str,
        member_id: str,
        roles: list[str],
        acts_for: list[str] | None = None,
    ) -> list[int]:
        return await self.broadcast(
            RegisterParticipant(operator_id, member_id, roles, acts_for or [])
        )

    async def suspend_participant(self, operator_id: str, member_id: str) -> list[int]:
        return await self.broadcast(SuspendParticipant(operator_id, member_id))

    async def reinstate_participant(self, operator_id: str, member_id: str) -> list[int]:
        return await self.broadcast(ReinstateParticipant(operator_id, member_id))

    async def set_access_mode(self, operator_id: str, mode: str) -> list[int]:
        """open (anyone trades as the id it writes) or members_only."""
        return await self.broadcast(SetAccessMode(operator_id, mode))

    async def place(
        self,
        technology_id: str,
        participant_id: str,
        client_order_id: str,
        side: str,
        quantity: int,
        price: int | None = None,
        order_type: str = "limit",
        *,
        time_in_force: str = "gtc",
        expires_at_ms: int | None = None,
        post_only: bool = False,
    ) -> int:
        return await self.send(
            PlaceOrder(
                technology_id=technology_id,
                participant_id=participant_id,
                client_order_id=client_order_id,
                side=side,
                quantity=quantity,
                price=price,
                order_type=order_type,
                time_in_force=time_in_force,
                expires_at_ms=expires_at_ms,
                post_only=post_only,
            )
        )

    async def amend(
        self,
        technology_id: str,
        participant_id: str,
        client_order_id: str,
        *,
        quantity: int | None = None,
        price: int | None = None,
    ) -> int:
        return await self.send(
            AmendOrder(technology_id, participant_id, client_order_id, quantity, price)
        )

    async def manage(self, technology_id: str, participant_id: str, action: str) -> int:
        """halt, resume, close or withdraw a listing (its seller or an operator)."""
        return await self.send(ManageListing(technology_id, participant_id, action))

    async def cancel(self, technology_id: str, participant_id: str, client_order_id: str) -> int:
        return await self.send(
            CancelOrder(
                technology_id=technology_id,
                participant_id=participant_id,
                client_order_id=client_order_id,
            )
        )

    async def list_technology(
        self,
        technology_id: str,
        participant_id: str,
        name: str,
        tick_size: int,
        lot_size: int,
        reserve_price: int | None = None,
        *,
        mechanism: str = "continuous",
        **parameters: int | bool | None,
    ) -> int:
        """List a technology; ``parameters`` are the mechanism's (ends_at_ms, starting_price,
        min_increment, ...: see ListTechnology)."""
        return await self.send(
            msgspec.structs.replace(
                ListTechnology(
                    technology_id=technology_id,
                    participant_id=participant_id,
                    name=name,
                    tick_size=tick_size,
                    lot_size=lot_size,
                    reserve_price=reserve_price,
                    mechanism=mechanism,
                ),
                **parameters,
            )
        )
