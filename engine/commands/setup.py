"""``techx setup``: the topics and tables the engine needs, created idempotently.

Topics get ``TECHX_REPLICATION_FACTOR`` replicas and ``min.insync.replicas`` of
``TECHX_MIN_INSYNC_REPLICAS``: with every producer on ``acks=all``, a command the broker
acknowledged is on that many replicas, and the command log is kept forever (the books are
rebuilt from it). On topics that exist already, setup sets ``min.insync.replicas`` when it
differs (the one durability setting it can change in place); a topic with fewer replicas
than asked is reported, since adding replicas is a partition reassignment.
"""

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
_MIN_INSYNC = "min.insync.replicas"
#: DescribeConfigs' ``config_source`` of a value set on the topic itself (v1 and later; Kafka
#: 4 brokers answer nothing older).
_DYNAMIC_TOPIC_CONFIG = 1


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Per-topic settings that matter for correctness, not only for tuning.

    Commands keep the broker's append time (the engine's only clock) and are never deleted:
    they are the memory image every market is rebuilt from. Outputs keep the broker's
    append time too, so an output record's timestamp minus its event's ``timestamp_ms`` is
    the command-to-publish latency on one clock. Deals are the settlement record downstream
    systems may replay from the start.
    """
    topics = settings.topics
    broker_time = {
        "message.timestamp.type": "LogAppendTime",
        _MIN_INSYNC: str(settings.min_insync_replicas),
    }
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
            await _check_partitions(admin, settings, present)
            await _check_configs(admin, settings, wanted, present)
    except KafkaError as e:
        raise kafka_error(
            e, f"creating topics on {settings.kafka_bootstrap}", settings.kafka_security
        ) from e
    finally:
        await admin.close()
    created = [topic.name for topic in missing]
    for name in created:
        log.info(
            "topic_created",
            topic=name,
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            min_insync_replicas=settings.min_insync_replicas,
        )
    return created


async def _check_partitions(
    admin: AIOKafkaAdminClient, settings: Settings, names: list[str]
) -> None:
    """Outputs go to the input's partition number, so every topic needs the same count; and
    no partition may have fewer replicas than min.insync.replicas (no write would pass)."""
    for description in await admin.describe_topics(names):
        name, partitions = description["topic"], description["partitions"]
        count = len(partitions)
        if count != settings.partitions:
            raise ConfigError(
                f"topic {name} has {count} partitions but TECHX_PARTITIONS is "
                f"{settings.partitions}; every TechX topic must have the same count"
            )
        replicas = min(len(partition["replicas"]) for partition in partitions)
        if replicas < settings.min_insync_replicas:
            raise ConfigError(
                f"topic {name} has partitions with {replicas} replicas, fewer than "
                f"TECHX_MIN_INSYNC_REPLICAS={settings.min_insync_replicas}: every acks=all "
                "write would fail; add replicas (kafka-reassign-partitions.sh) or lower it"
            )
        if replicas < settings.replication_factor:
            log.warning(
                "topic_under_replicated",
                topic=name,
                replicas=replicas,
                replication_factor=settings.replication_factor,
                fix="kafka-reassign-partitions.sh with a plan naming more replicas",
            )


async def _check_configs(
    admin: AIOKafkaAdminClient,
    settings: Settings,
    wanted: dict[str, dict[str, str]],
    names: list[str],
) -> None:
    """Existing topics must keep the settings correctness depends on (clock, retention);
    min.insync.replicas, a durability setting, is set to TECHX_MIN_INSYNC_REPLICAS."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    for response in await admin.describe_configs(resources):
        for _code, _message, _type, name, entries in response.resources:
            actual = {entry[0]: entry[1] for entry in entries}
            for key, value in wanted[name].items():
                if key != _MIN_INSYNC and actual.get(key) != value:
                    raise ConfigError(
                        f"topic {name} has {key}={actual.get(key)!r}, TechX needs {value!r}: "
                        f"kafka-configs.sh --alter --entity-type topics --entity-name {name} "
                        f"--add-config {key}={value}"
                    )
            wanted_isr = wanted[name][_MIN_INSYNC]
            if actual.get(_MIN_INSYNC) != wanted_isr:
                own = {e[0]: e[1] for e in entries if e[3] == _DYNAMIC_TOPIC_CONFIG}
                await _alter_topic_config(admin, settings, name, own, _MIN_INSYNC, wanted_isr)
                log.info(
                    "topic_config_altered",
                    topic=name,
                    key=_MIN_INSYNC,
                    was=actual.get(_MIN_INSYNC),
                    now=wanted_isr,
                )


async def _alter_topic_config(
    admin: AIOKafkaAdminClient,
    settings: Settings,
    name: str,
    own: dict[str, str | None],
    key: str,
    value: str,
) -> None:
    """Set one topic setting. aiokafka has only AlterConfigs, which replaces every setting
    made on the topic, so the request carries the others unchanged; a secret one (the broker
    shows no value) would be lost, so that case is left to the operator."""
    hidden = [k for k, v in own.items() if v is None and k != key]
    if hidden:
        raise ConfigError(
            f"topic {name} needs {key}={value} but has settings the broker does not show "
            f"({', '.join(hidden)}): kafka-configs.sh --alter --entity-type topics "
            f"--entity-name {name} --add-config {key}={value}"
        )
    configs = {k: v for k, v in own.items() if v is not None} | {key: value}
    for response in await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)]
    ):
        for code, message, _type, _name in response.resources:
            if code in _REFUSED:
                raise KafkaAccessDeniedError(
                    f"setting {key} on topic {name}: Kafka refused "
                    f"{settings.kafka_security.describe().get('principal', 'ANONYMOUS')} "
                    f"(error {code}: {message}); techx setup needs AlterConfigs on the TechX "
                    "topics (`techx acls`)"
                )
            if code != 0:
                raise ConfigError(f"setting {key} on topic {name} failed (error {code}): {message}")


async def setup_database(settings: Settings) -> list[int]:
    async with connected(settings.database_url) as connection:
        return await migrate(connection)


async def setup(settings: Settings) -> None:
    created = await create_topics(settings)
    applied = await setup_database(settings)
    log.info("setup_done", topics_created=created, migrations_applied=applied)
