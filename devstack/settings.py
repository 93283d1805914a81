"""Where the local stack lives and which servers it runs, read from ``TECHX_*`` variables.

The engine's own settings (``engine.settings.Settings``) know only addresses; the ports,
state folder and PostgreSQL binaries of the development stack are read here.
``TECHX_KAFKA_BOOTSTRAP`` and ``TECHX_DATABASE_URL`` mean the same to both: a server of the
user's, so the stack starts no broker, or no cluster, of its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from devstack.errors import StackConfigError
from engine.errors import ConfigError
from engine.kafka_security import KafkaSecurity
from engine.settings import Settings

#: The checkout devstack belongs to (devstack is not shipped: it only runs from a checkout).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Maven POM, broker config template and log4j2 config of the local broker.
DEPLOY_DIR = REPO_ROOT / "deploy" / "local"

DEFAULT_STATE_DIR = REPO_ROOT / ".techx"
DEFAULT_KAFKA_PORT = 29092
DEFAULT_POSTGRES_PORT = 25432
DEFAULT_PG_BIN = Path("/usr/lib/postgresql/15/bin")
#: Role and database of the local cluster; the engine's default database URL points at them.
ROLE = "techx"
DATABASE = "techx"
MAX_PORT = 65535


@dataclass(frozen=True, slots=True)
class StackSettings:
    """Everything ``up``, ``down`` and ``status`` need; build it with :meth:`from_env`."""

    #: Jars, broker data, logs, PID files and the lock (``TECHX_STATE_DIR``); absolute.
    state_dir: Path = DEFAULT_STATE_DIR
    #: The broker's client port (``TECHX_KAFKA_PORT``); its KRaft controller uses port + 1.
    kafka_port: int = DEFAULT_KAFKA_PORT
    postgres_port: int = DEFAULT_POSTGRES_PORT
    #: Folder holding initdb, pg_ctl, postgres and psql (``TECHX_PG_BIN``).
    pg_bin: Path = DEFAULT_PG_BIN
    #: ``TECHX_KAFKA_BOOTSTRAP``: the user's broker; the stack then starts none.
    external_kafka: str | None = None
    #: ``TECHX_DATABASE_URL``: the user's PostgreSQL; the stack then starts no cluster.
    external_database: str | None = None
    #: A locked-down broker (SASL/SCRAM, ACLs) when its storage is first formatted
    #: (``TECHX_STACK_SECURE=1`` or ``up --secure``); a formatted broker keeps its mode.
    secure: bool = False
    #: Topic prefix and engine group whose ACLs a locked-down stack grants at ``up``
    #: (``TECHX_TOPIC_PREFIX``, ``TECHX_GROUP_ID``, as the engine reads them).
    topic_prefix: str = "techx"
    group_id: str = "techx-engine"
    #: How to reach ``external_kafka``: the engine's own ``TECHX_KAFKA_*`` security settings.
    external_kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackSettings:
        """Read and check the variables; a malformed one is a StackConfigError naming it."""
        env = os.environ if env is None else env
        secure = _flag(env, "TECHX_STACK_SECURE")
        # A locked-down broker also listens for TLS on port + 2.
        above = 2 if secure else 1
        kafka_port = _port(env, "TECHX_KAFKA_PORT", DEFAULT_KAFKA_PORT, room_above=above)
        postgres_port = _port(env, "TECHX_POSTGRES_PORT", DEFAULT_POSTGRES_PORT)
        if kafka_port <= postgres_port <= kafka_port + above:
            raise StackConfigError(
                f"TECHX_POSTGRES_PORT={postgres_port} collides with Kafka, which uses "
                f"TECHX_KAFKA_PORT={kafka_port} to {kafka_port + above} (its controller"
                f"{', its TLS listener' if secure else ''})",
                hint=f"choose ports at least {above + 1} apart",
            )
        database = env.get("TECHX_DATABASE_URL") or None
        if database is not None and urlsplit(database).scheme not in ("postgresql", "postgres"):
            raise StackConfigError(
                f"TECHX_DATABASE_URL must be a postgresql:// URL, not {redact(database)!r}",
                hint="unset it to let the stack run its own PostgreSQL",
            )
        try:
            # Here an empty server variable means "none of yours" (above); the engine refuses
            # it, so it is left out of what the engine's own checks see.
            engine = Settings.from_env(
                {
                    name: value
                    for name, value in env.items()
                    if value.strip() or name not in _SERVER_VARIABLES
                }
            )
        except ConfigError as e:
            raise StackConfigError(str(e), hint="the engine reads it too: fix it there") from e
        return cls(
            state_dir=_folder(env, "TECHX_STATE_DIR", DEFAULT_STATE_DIR),
            kafka_port=kafka_port,
            postgres_port=postgres_port,
            pg_bin=_folder(env, "TECHX_PG_BIN", DEFAULT_PG_BIN),
            external_kafka=env.get("TECHX_KAFKA_BOOTSTRAP") or None,
            external_database=database,
            secure=secure,
            topic_prefix=engine.topics.prefix,
            group_id=engine.group_id,
            external_kafka_security=engine.kafka_security,
        )

    @property
    def controller_port(self) -> int:
        """The KRaft controller listens right above the client port."""
        return self.kafka_port + 1

    @property
    def tls_port(self) -> int:
        """A locked-down broker's TLS listener (SASL_SSL) listens right above its controller."""
        return self.kafka_port + 2

    @property
    def kafka_bootstrap(self) -> str:
        """Where clients find the broker: the user's, or the one the stack runs."""
        return self.external_kafka or f"127.0.0.1:{self.kafka_port}"

    @property
    def database_url(self) -> str:
        """Where clients find PostgreSQL: the user's, or the stack's own cluster."""
        return self.external_database or (
            f"postgresql://{ROLE}@127.0.0.1:{self.postgres_port}/{DATABASE}"
        )


_SERVER_VARIABLES = ("TECHX_KAFKA_BOOTSTRAP", "TECHX_DATABASE_URL")


def redact(dsn: str) -> str:
    """The DSN without its password, for logs, errors and status lines."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _port(env: Mapping[str, str], name: str, default: int, room_above: int = 0) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    hint = f"unset it to use {default}"
    try:
        value = int(raw)
    except ValueError as e:
        raise StackConfigError(f"{name} must be a whole number, not {raw!r}", hint=hint) from e
    highest = MAX_PORT - room_above
    if not 1 <= value <= highest:
        raise StackConfigError(
            f"{name} must be a TCP port from 1 to {highest}, not {value}", hint=hint
        )
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise StackConfigError(f"{name} must be 1 or 0 (true/false, yes/no), not {raw[:40]!r}")


def _folder(env: Mapping[str, str], name: str, default: Path) -> Path:
    raw = env.get(name)
    if raw is None:
        return default
    if not raw.strip():
        raise StackConfigError(f"{name} is set but empty", hint=f"unset it to use {default}")
    return Path(raw).expanduser().resolve()
