"""Typed settings, read once from ``TECHX_*`` environment variables and validated at start."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from engine.errors import ConfigError
from engine.kafka_security import KafkaSecurity

#: The checkout's root when running from one (tests read files there); not a wheel's concern.

#: Where ``python -m devstack up`` (the local development stack) serves with its defaults.
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:29092"
DEFAULT_DATABASE_URL = "postgresql://techx@127.0.0.1:25432/techx"


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names, derived from one prefix so tests and tenants can run side by side."""

    prefix: str = "techx"

    @property
    def commands(self) -> str:
        return f"{self.prefix}.commands.v1"

    @property
    def deals(self) -> str:
        return f"{self.prefix}.deals.v1"

    @property
    def executions(self) -> str:
        return f"{self.prefix}.executions.v1"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}.commands.dlq.v1"

    @property
    def market_data(self) -> str:
        return f"{self.prefix}.marketdata.v1"

    def all(self) -> tuple[str, ...]:
        return (self.commands, self.deals, self.executions, self.dead_letters, self.market_data)


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """``techx gateway``: where it listens and how much one API key may send."""

    host: str = "127.0.0.1"
    #: 0 takes any free port (tests); the gateway logs the one it got.
    port: int = 8470
    #: Commands per second one API key may send, on average, to one gateway process.
    rate: int = 50
    #: How many commands one key may send at once above that rate (the bucket's size).
    burst: int = 100
    #: How long a verified key is trusted without asking PostgreSQL again. Revocation and
    #: rotation reach running gateways at once through PostgreSQL notifications; this bounds
    #: the delay when a notification is lost (a dropped listening connection). 0: ask always.
    key_cache_ms: int = 5_000
    #: Whether a WebSocket may give its key as ``?key=`` (browsers cannot set headers on a
    #: WebSocket). Off for deployments whose front-ends all send an Authorization header.
    query_key: bool = True
    #: Messages waiting for one slow WebSocket before the gateway closes it (it resumes).
    socket_queue: int = 10_000


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the engine and the CLI need to know about their world."""

    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    #: How this process authenticates to Kafka and encrypts the way (``TECHX_KAFKA_*``).
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    database_url: str = DEFAULT_DATABASE_URL
    topics: Topics = field(default_factory=Topics)
    partitions: int = 4
    replication_factor: int = 1
    #: Replicas that must have a record before the broker acknowledges it to an ``acks=all``
    #: producer (every TechX producer): ``techx setup`` sets it on every TechX topic. Default
    #: min(2, replication factor): a single-node dev broker keeps 1; production runs 3 and 2.
    min_insync_replicas: int = 1
    group_id: str = "techx-engine"
    #: Most command records taken into one batch (one PostgreSQL transaction).
    batch_max_records: int = 5000
    #: Commands between two snapshots of a partition's market (0: never snapshot).
    snapshot_every: int = 100_000
    #: How often `techx run` appends a tick to every command partition, so deadlines (auction
    #: ends, Dutch steps, GTD expiry, call uncrosses) fire when nobody trades; 0: no ticker.
    tick_interval_ms: int = 500
    #: How long the consumer group waits for an engine that stopped heart-beating before its
    #: partitions move (the failover time after a crash). Stock brokers refuse less than
    #: 6000 (group.min.session.timeout.ms); the local stack allows 1000.
    session_timeout_ms: int = 6_000
    #: ``exactly_once``: each batch's events go out in one Kafka transaction per command
    #: partition, so ``read_committed`` subscribers see every event once; ``at_least_once``:
    #: plain idempotent sends, lower latency, subscribers dedupe after an engine crash.
    output_guarantee: str = "exactly_once"
    #: Exactly once: how long a partition's Kafka transaction stays open. Events are sent
    #: into it as soon as they are settled and become visible to ``read_committed``
    #: subscribers when it commits. Each commit costs the broker fixed work (markers on every
    #: output topic, its transaction log), and events wait for the commit only to be seen,
    #: not to be appended. At most LONGEST_COMMIT_INTERVAL_MS.
    commit_interval_ms: int = 50
    #: Where ``techx run`` serves /metrics, /healthz and /readyz (0: no server). All
    #: interfaces by default, like Prometheus exporters: Prometheus and the kubelet call in.
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9464
    #: /healthz fails once a partition with work waiting has published nothing this long.
    stuck_after_s: int = 60
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"
    gateway: GatewaySettings = field(default_factory=GatewaySettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``TECHX_*`` variables; unknown values fail here, not later."""
        env = os.environ if env is None else env
        base = cls()
        return replace(
            base,
            kafka_bootstrap=_bootstrap(env, "TECHX_KAFKA_BOOTSTRAP", base.kafka_bootstrap),
            kafka_security=KafkaSecurity.from_env(env),
            database_url=_database_url(env, "TECHX_DATABASE_URL", base.database_url),
            topics=Topics(_name(env, "TECHX_TOPIC_PREFIX", base.topics.prefix)),
            partitions=_int(env, "TECHX_PARTITIONS", base.partitions, minimum=1),
            replication_factor=_int(env, "TECHX_REPLICATION_FACTOR", base.replication_factor, 1),
            min_insync_replicas=_min_insync(env, base.replication_factor),
            group_id=_name(env, "TECHX_GROUP_ID", base.group_id),
            batch_max_records=_int(env, "TECHX_BATCH_MAX_RECORDS", base.batch_max_records, 1),
            snapshot_every=_int(env, "TECHX_SNAPSHOT_EVERY", base.snapshot_every, 0),
            tick_interval_ms=_int(env, "TECHX_TICK_INTERVAL_MS", base.tick_interval_ms, 0),
            session_timeout_ms=_int(
                env, "TECHX_SESSION_TIMEOUT_MS", base.session_timeout_ms, minimum=1_000
            ),
            output_guarantee=_choice(
                env, "TECHX_OUTPUT_GUARANTEE", base.output_guarantee, OUTPUT_GUARANTEES
            ),
            commit_interval_ms=_int(
                env,
                "TECHX_COMMIT_INTERVAL_MS",
                base.commit_interval_ms,
                minimum=0,
                maximum=LONGEST_COMMIT_INTERVAL_MS,
            ),
            metrics_host=_host(env, "TECHX_METRICS_HOST", base.metrics_host),
            metrics_port=_int(env, "TECHX_METRICS_PORT", base.metrics_port, 0, maximum=65_535),
            stuck_after_s=_int(env, "TECHX_STUCK_AFTER_S", base.stuck_after_s, minimum=1),
            log_format=_choice(env, "TECHX_LOG_FORMAT", base.log_format, _LOG_FORMATS),
            log_level=_choice(env, "TECHX_LOG_LEVEL", base.log_level, _LOG_LEVELS),
            gateway=_gateway(env, base.gateway),
        )

    def kafka_options(self) -> dict[str, Any]:
        """Where the broker is and how to connect to it: the keyword arguments every Kafka
        client of TechX starts from (producers, consumers, admin clients alike)."""
        return {"bootstrap_servers": self.kafka_bootstrap, **self.kafka_security.client_options()}


def _gateway(env: Mapping[str, str], base: GatewaySettings) -> GatewaySettings:
    return GatewaySettings(
        host=_host(env, "TECHX_GATEWAY_HOST", base.host),
        port=_int(env, "TECHX_GATEWAY_PORT", base.port, minimum=0, maximum=65_535),
        rate=_int(env, "TECHX_GATEWAY_RATE", base.rate, minimum=1),
        burst=_int(env, "TECHX_GATEWAY_BURST", base.burst, minimum=1),
        key_cache_ms=_int(env, "TECHX_GATEWAY_KEY_CACHE_MS", base.key_cache_ms, minimum=0),
        query_key=_bool(env, "TECHX_GATEWAY_QUERY_KEY", base.query_key),
        socket_queue=_int(env, "TECHX_GATEWAY_SOCKET_QUEUE", base.socket_queue, minimum=1),
    )


OUTPUT_GUARANTEES = ("exactly_once", "at_least_once")
#: A partition's transaction stays open this long at most: half the broker's transaction
#: timeout (transactions.TRANSACTION_TIMEOUT_MS, 10 s), which also bounds each attempt. Open
#: longer, every transaction would time out, be aborted and be sent again.
LONGEST_COMMIT_INTERVAL_MS = 5_000
_LOG_FORMATS = ("auto", "json", "console")
_LOG_LEVELS = ("debug", "info", "warning", "error")
#: Kafka's legal characters for topic names; group ids and prefixes keep to them too.
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default).lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {_shown(value)}")
    return value


def _name(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, default)
    if not value or not set(value) <= _NAME_CHARACTERS or len(value) > 200:
        raise ConfigError(
            f"{name} must be 1-200 letters, digits, dots, underscores or hyphens, "
            f"not {_shown(value)}"
        )
    return value


#: One ``host:port`` of a broker; a bootstrap list is several, comma-separated.
_BROKER = re.compile(r"[A-Za-z0-9.\[\]:_-]+:[0-9]{1,5}\Z")


def _bootstrap(env: Mapping[str, str], name: str, default: str) -> str:
    """Brokers as ``host:port[,host:port...]``; set but empty is a mistake, not the default."""
    value = env.get(name, default).strip()
    if not value or not all(_BROKER.match(broker.strip()) for broker in value.split(",")):
        raise ConfigError(
            f"{name} must be host:port[,host:port...] (say {DEFAULT_KAFKA_BOOTSTRAP}), "
            f"not {_shown(value)}"
        )
    return value


def _database_url(env: Mapping[str, str], name: str, default: str) -> str:
    """A ``postgresql://`` URL; set but empty is a mistake, not the default."""
    value = env.get(name, default).strip()
    if not value.startswith(("postgresql://", "postgres://")) or " " in value:
        raise ConfigError(
            f"{name} must be a postgresql:// URL (say {DEFAULT_DATABASE_URL}), not {_shown(value)}"
        )
    return value


def _shown(value: str) -> str:
    """A setting's value in an error: quoted, short, and without a password."""
    if "@" in value and "://" in value:
        scheme, rest = value.split("://", 1)
        value = f"{scheme}://...@{rest.rsplit('@', 1)[1]}"
    return f'"{value[:80]}"'


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise ConfigError(f"{name} must be a whole number, not {_shown(raw)}") from e
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, not {value}")
    return value


def _min_insync(env: Mapping[str, str], default_replication: int) -> int:
    """min.insync.replicas: by default 2 where there are replicas for it, never more than the
    replication factor (an acks=all write could then never be acknowledged)."""
    replication = _int(env, "TECHX_REPLICATION_FACTOR", default_replication, 1)
    value = _int(env, "TECHX_MIN_INSYNC_REPLICAS", min(2, replication), minimum=1)
    if value > replication:
        raise ConfigError(
            f"TECHX_MIN_INSYNC_REPLICAS must be at most TECHX_REPLICATION_FACTOR ({replication}), "
            f"not {value}: no acks=all write could be acknowledged"
        )
    return value


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, not {_shown(raw)}")


#: A host name or an IPv4/IPv6 address to listen on; nothing a shell or URL would split.
_HOST = re.compile(r"[A-Za-z0-9.:\[\]_-]{1,253}\Z")


def _host(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, default)
    if not _HOST.match(value):
        raise ConfigError(f"{name} must be a host name or an IP address, not {_shown(value)}")
    return value
