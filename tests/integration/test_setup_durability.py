"""``techx setup`` on the real broker: the durability settings land on every topic, and an
existing topic's min.insync.replicas is set back without losing its other settings.

The shared broker has one node, so replication 1 and min.insync.replicas 1 are what can be
checked end to end; that more is refused where the replicas are missing is checked too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from engine.commands.setup import create_topics
from engine.errors import ConfigError
from engine.settings import Settings
from tests.polling import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(**settings.kafka_options())
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def _configs(admin: AIOKafkaAdminClient, names: tuple[str, ...]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    for response in await admin.describe_configs(resources):
        for _code, _message, _type, name, entries in response.resources:
            found[name] = {entry[0]: entry[1] for entry in entries}
    return found


async def test_setup_leaves_every_topic_with_its_replicas_and_min_insync(
    settings: Settings, admin: AIOKafkaAdminClient
) -> None:
    """The fixture ran `setup`: what describe_configs and describe_topics say now."""
    names = settings.topics.all()
    assert settings.min_insync_replicas == 1  # min(2, replication 1): the single dev broker
    configs = await _configs(admin, names)
    assert set(configs) == set(names)
    for name in names:
        assert configs[name]["min.insync.replicas"] == "1", name
    assert configs[settings.topics.commands]["retention.ms"] == "-1"
    for description in await admin.describe_topics(list(names)):
        assert [len(p["replicas"]) for p in description["partitions"]] == [1] * 4


async def test_setup_sets_min_insync_on_an_existing_topic_and_keeps_its_other_settings(
    settings: Settings, admin: AIOKafkaAdminClient
) -> None:
    commands = settings.topics.commands
    # Someone set it to 2 by hand (AlterConfigs replaces the topic's settings: give them all).
    before = await _configs(admin, (commands,))
    await admin.alter_configs(
        [
            ConfigResource(
                ConfigResourceType.TOPIC,
                commands,
                configs={
                    "retention.ms": "-1",
                    "message.timestamp.type": "LogAppendTime",
                    "min.insync.replicas": "2",
                    "segment.ms": "86400000",
                },
            )
        ]
    )

    def min_insync_is(value: str) -> Callable[[], Awaitable[bool]]:
        # The broker applies a config change when it replays the metadata log: a read just
        # after the change can still see the old value.
        async def holds() -> bool:
            configs = await _configs(admin, (commands,))
            return configs[commands]["min.insync.replicas"] == value

        return holds

    await eventually(min_insync_is("2"), timeout_s=10, what="min.insync.replicas set to 2")
    assert await create_topics(settings) == []  # nothing created, one setting fixed
    await eventually(min_insync_is("1"), timeout_s=10, what="min.insync.replicas back to 1")
    after = (await _configs(admin, (commands,)))[commands]
    assert after["retention.ms"] == "-1"
    assert after["message.timestamp.type"] == "LogAppendTime"
    assert after["segment.ms"] == "86400000", "an operator's own setting survives"
    assert before[commands]["min.insync.replicas"] == "1"


async def test_setup_refuses_min_insync_above_the_replicas_a_topic_has(
    settings: Settings, admin: AIOKafkaAdminClient
) -> None:
    wanting = replace(settings, replication_factor=3, min_insync_replicas=2)
    with pytest.raises(ConfigError, match="fewer than TECHX_MIN_INSYNC_REPLICAS=2"):
        await create_topics(wanting)
    # Nothing was changed on the way to refusing.
    configs = await _configs(admin, settings.topics.all())
    assert {c["min.insync.replicas"] for c in configs.values()} == {"1"}
