"""``techx setup``: the topics and tables the engine needs, created idempotently."""

from __future__ import annotations

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from engine.errors import ConfigError, KafkaAccessDeniedError
from engine.kafka_security import kafka_error
from engine.settings import Settings
from engine.store.connection import connected
from engine.store.migrate import migrate

log = structlog.get_logger()

_KEEP_FOREVER = "-1"
_TOPIC_ALREADY_EXISTS = 36
#: TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED: the principal lacks CREATE.
_REFUSED = (29, 31)
_THIRTY_DAYS_MS = str(30 * 24 * 3600 * 1000)
_COMPACTED = {"cleanup.policy": "compact,delete"}


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Per-topic settings that matter for correctness, not only for tuning.

    Commands keep the broker's append time (the engine's only clock) and are never deleted:
    they are the memory image every market is rebuilt from. Outputs keep the broker's
    append time too, so an output record's timestamp minus its event's ``timestamp_ms`` is
    the command-to-publish latency on one clock. Deals are the settlement record downstream
    systems may replay from the start.
    """
    topics = settings.topics
    broker_time = {"message.timestamp.type": "LogAppendTime"}
    return {
        topics.commands: {**broker_time, "retention.ms": _KEEP_FOREVER},
        topics.deals: {**broker_time, "retention.ms": _KEEP_FOREVER},
        topics.executions: {**broker_time, "retention.ms": _THIRTY_DAYS_MS},
        topics.dead_letters: {**broker_time, "retention.ms": _THIRTY_DAYS_MS},
        # Public views, newest per technology is what a new screen needs: compacted.
        topics.market_data: {**broker_time, "retention.ms": _THIRTY_DAYS_MS, **_COMPACTED},
    }


async def create_topics(settings: Settings) -> list[str]:
    """Create the missing topics; returns the names created now."""
    admin = AIOKafkaAdminClient(**settings.kafka_options(), client_id="techx-setup")
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        wanted = topic_configs(settings)
        missing = [
            NewTopic(
                name=name,
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=configs,
            )
            for name, configs in wanted.items()
            if name not in existing
        ]
        if missing:
            response = await admin.create_topics(missing)
            for name, code, message in response.topic_errors:
                # 36: another process created it in between, which is what we wanted.
                if code in _REFUSED:
                    raise KafkaAccessDeniedError(
                        f"creating topic {name}: Kafka refused "
                        f"{settings.kafka_security.describe().get('principal', 'ANONYMOUS')} "
                        f"(error {code}: {message}); techx setup runs as the operator "
                        "principal, which needs CREATE on the TechX topics (`techx acls`)"
                    )
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise ConfigError(f"creating topic {name} failed (error {code}): {message}")
        present = [name for name in wanted if name in existing]
        if present:
            await _check_partition_counts(admin, settings, present)
            await _check_configs(admin, wanted, present)
    except KafkaError as e:
        raise kafka_error(
            e, f"creating topics on {settings.kafka_bootstrap}", settings.kafka_security
        ) from e
    finally:
        await admin.close()
    created = [topic.name for topic in missing]
    for name in created:
        log.info("topic_created", topic=name, partitions=settings.partitions)
    return created


async def _check_partition_counts(
    admin: AIOKafkaAdminClient, settings: Settings, names: list[str]
) -> None:
    """Outputs go to the input's partition number, so every topic needs the same count."""
    for description in await admin.describe_topics(names):
        count = len(description["partitions"])
        if count != settings.partitions:
            raise ConfigError(
                f"topic {description['topic']} has {count} partitions but TECHX_PARTITIONS is "
                f"{settings.partitions}; every TechX topic must have the same count"
            )


async def _check_configs(
    admin: AIOKafkaAdminClient, wanted: dict[str, dict[str, str]], names: list[str]
) -> None:
    """Existing topics must keep the settings correctness depends on (clock, retention)."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    for response in await admin.describe_configs(resources):
        for _code, _message, _type, name, entries in response.resources:
            actual = {entry[0]: entry[1] for entry in entries}
            for key, value in wanted[name].items():
                if actual.get(key) != value:
                    raise ConfigError(
                        f"topic {name} has {key}={actual.get(key)!r}, TechX needs {value!r}: "
                        f"kafka-configs.sh --alter --entity-type topics --entity-name {name} "
                        f"--add-config {key}={value}"
                    )


async def setup_database(settings: Settings) -> list[int]:
    async with connected(settings.database_url) as connection:
        return await migrate(connection)


async def setup(settings: Settings) -> None:
    created = await create_topics(settings)
    applied = await setup_database(settings)
    log.info("setup_done", topics_created=created, migrations_applied=applied)
