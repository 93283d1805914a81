"""Produces a prepared command and waits for the broker: the gateway's one Kafka producer.

The producer is idempotent with ``acks=all`` (``make_producer``, as every TechX producer), and
each record goes to the partition ``intake`` chose, so the gateway never relies on the
client library's partitioner. A 202 means the broker has the record: its (partition, offset)
is where the engine's answer will point (``source_offset``).
"""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaError

from engine.gateway.errors import UnavailableError
from engine.gateway.intake import Submission
from engine.producers.publisher import make_producer
from engine.settings import Settings

#: How long a request waits for the broker's acknowledgement before answering 503. The record
#: may still be written after that: a client resends the same body, which is safe (a resent
#: order is refused as a duplicate client_order_id, never traded twice).
ACK_TIMEOUT_S = 10.0


class CommandSubmitter:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._topic = settings.topics.commands
        self._producer = make_producer(settings, client_id="techx-gateway")

    async def start(self) -> None:
        try:
            await self._producer.start()
        except KafkaError as e:
            await self._producer.stop()
            raise UnavailableError(
                "broker_unavailable", f"cannot reach Kafka at {self._settings.kafka_bootstrap}"
            ) from e

    async def stop(self) -> None:
        await self._producer.stop()

    async def submit(self, submission: Submission) -> list[tuple[int, int]]:
        """Write the submission's records; (partition, offset) of each once acknowledged."""
        try:
            async with asyncio.timeout(ACK_TIMEOUT_S):
                sent = [
                    await self._producer.send(
                        self._topic, submission.value, key=submission.key, partition=partition
                    )
                    for partition in submission.partitions
                ]
                written = await asyncio.gather(*sent)
        except KafkaError as e:
            raise UnavailableError(
                "broker_unavailable",
                f"Kafka did not take the command ({type(e).__name__}); it was not written, or "
                "not all of it: send the same body again",
            ) from e
        except TimeoutError as e:
            raise UnavailableError(
                "broker_unavailable",
                f"Kafka did not acknowledge the command within {ACK_TIMEOUT_S:.0f} s; it may "
                "still be written: send the same body again (a resent order is refused as a "
                "duplicate, never traded twice)",
            ) from e
        return [(int(metadata.partition), int(metadata.offset)) for metadata in written]
