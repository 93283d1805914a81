"""The register through Kafka: operator commands reach every partition, are enforced, and
survive a restart (recovery replays them from the log or restores them from a snapshot)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.core.codec import decode_event
from engine.core.membership import BOOTSTRAP_OPERATOR
from engine.core.partitioning import partition_for
from engine.producers.client import TradingClient
from engine.settings import Settings
from schemas.common import RejectReason
from schemas.events import CommandRejected, Deal, Event, ParticipantRegistered
from tests.integration.harness import read_topic, running_engine, wait_until_settled

pytestmark = pytest.mark.integration

OPS = BOOTSTRAP_OPERATOR


async def _events(settings: Settings) -> list[Event]:
    executions = await read_topic(settings, settings.topics.executions)
    deals = await read_topic(settings, settings.topics.deals)
    return [
        decode_event(r.value)
        for records in (*executions.values(), *deals.values())
        for r in records
        if r.value is not None
    ]


def _rejections(events: list[Event], participant: str) -> list[RejectReason]:
    return [
        e.reason
        for e in events
        if isinstance(e, CommandRejected) and e.participant_id == participant
    ]


async def test_members_only_is_enforced_on_every_partition_and_after_a_restart(
    settings: Settings,
) -> None:
    settings = replace(settings, snapshot_every=5)  # the second run restores from snapshots
    technologies = ["ACC-1", "ACC-2", "ACC-3", "ACC-4", "ACC-5", "ACC-6"]
    partitions = {partition_for(t, settings.partitions) for t in technologies}
    assert len(partitions) > 1, "the test must span partitions"
    async with TradingClient(settings) as client:
        await client.register_participant(OPS, "uni-a", ["seller"])
        await client.register_participant(OPS, "firm-b", ["buyer"])
        await client.register_participant(OPS, "bk-1", ["broker"], ["firm-b"])
        await client.set_access_mode(OPS, "members_only")
        async with running_engine(settings):
            for technology in technologies:
                await client.list_technology(technology, "uni-a", "Patent", 1, 1)
                await client.place(technology, "uni-a", f"o-{technology}", "offer", 1, 100)
                await client.place(technology, "firm-b", f"b-{technology}", "bid", 1, 100)
                await client.place(technology, "mallory", f"m-{technology}", "bid", 1, 100)
            await wait_until_settled(settings)
        await client.suspend_participant(OPS, "firm-b")
        async with running_engine(settings):  # recovers the register, then applies more
            for technology in technologies:
                await client.place(technology, "uni-a", f"o2-{technology}", "offer", 1, 100)
                await client.place(technology, "firm-b", f"b2-{technology}", "bid", 1, 100)
                await client.place(technology, "firm-b", f"b3-{technology}", "bid", 1, 100)
            await wait_until_settled(settings)

    events = await _events(settings)
    registered = [e for e in events if isinstance(e, ParticipantRegistered)]
    assert len(registered) == 3 * settings.partitions, "each partition confirms each registration"
    deals = [e for e in events if isinstance(e, Deal)]
    assert sorted(d.technology_id for d in deals) == sorted(technologies), "one deal each"
    assert all(d.buyer_id == "firm-b" and d.seller_id == "uni-a" for d in deals)
    assert _rejections(events, "mallory") == [RejectReason.PARTICIPANT_NOT_REGISTERED] * len(
        technologies
    )
    suspended = _rejections(events, "firm-b")
    assert suspended == [RejectReason.PARTICIPANT_SUSPENDED] * (2 * len(technologies))
