"""How every TechX process proves who it is to Kafka, and encrypts the way there: one place.

Each Kafka client the project builds (the engine's consumer, producers and admin client, the
log reader, the ticker, the trading client, ``setup``, the demo, devstack's probe, the
benchmarks) takes its connection options from :meth:`KafkaSecurity.client_options`, through
``Settings.kafka_options()``. A locked-down broker therefore needs the ``TECHX_KAFKA_*``
variables once, and a mistake in them (a SASL user on a PLAINTEXT connection, a password
file that is not there, a CA bundle that is not PEM) stops the process at start with a
ConfigError naming the variable, not minutes later as a broker closing connections.

TLS is the standard library's: the system's trust store unless ``TECHX_KAFKA_CA_FILE``
names a bundle, host names always checked, a client certificate for mutual TLS when
``TECHX_KAFKA_CERT_FILE`` and ``TECHX_KAFKA_KEY_FILE`` are given (the key unencrypted,
protected by its file mode).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)

from engine.errors import BrokerUnavailableError, ConfigError, KafkaAccessDeniedError, TechXError

#: Kafka's names for the four ways of connecting (``security.protocol``).
PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
#: The SASL mechanisms TechX accepts: SCRAM (the password never crosses the wire) and PLAIN
#: (the password does, so only inside TLS: managed services such as Confluent Cloud).
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
DEFAULT_MECHANISM = "SCRAM-SHA-512"

_SASL_VARIABLES = (
    "TECHX_KAFKA_SASL_MECHANISM",
    "TECHX_KAFKA_USERNAME",
    "TECHX_KAFKA_PASSWORD",
    "TECHX_KAFKA_PASSWORD_FILE",
)
_TLS_VARIABLES = ("TECHX_KAFKA_CA_FILE", "TECHX_KAFKA_CERT_FILE", "TECHX_KAFKA_KEY_FILE")
#: What the broker answers a principal it will not let in, or not let do something.
_REFUSALS = (
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
#: Longest username accepted: Kafka has no limit, but a page of text is a pasting accident.
_MAX_USERNAME = 256


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """The security settings of a Kafka client; build it with :meth:`from_env` or
    :meth:`sasl`, which check it, never field by field."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: Built once at start from the files above, so a bad file fails there.
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaSecurity:
        """Read the ``TECHX_KAFKA_*`` security variables; anything inconsistent is refused.

        An empty variable counts as unset (compose files pass ``${VAR:-}``).
        """

        def get(name: str) -> str | None:
            value = env.get(name, "")
            return value if value.strip() else None

        raw_protocol = get("TECHX_KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT"
        protocol = raw_protocol.strip().upper()
        if protocol not in PROTOCOLS:
            raise ConfigError(
                f"TECHX_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, "
                f'not "{raw_protocol[:40]}"'
            )
        given = {name for name in (*_SASL_VARIABLES, *_TLS_VARIABLES) if get(name) is not None}
        _refuse_unused(protocol, given)
        if get("TECHX_KAFKA_PASSWORD") and get("TECHX_KAFKA_PASSWORD_FILE"):
            raise ConfigError(
                "TECHX_KAFKA_PASSWORD and TECHX_KAFKA_PASSWORD_FILE are both set: give one"
            )
        password_file = get("TECHX_KAFKA_PASSWORD_FILE")
        password = (
            _read_password(Path(password_file))
            if password_file is not None
            else get("TECHX_KAFKA_PASSWORD")
        )
        return _checked(
            protocol=protocol,
            mechanism=(get("TECHX_KAFKA_SASL_MECHANISM") or DEFAULT_MECHANISM).strip().upper()
            if protocol.startswith("SASL_")
            else None,
            username=get("TECHX_KAFKA_USERNAME"),
            password=password,
            ca_file=_path(get("TECHX_KAFKA_CA_FILE")),
            cert_file=_path(get("TECHX_KAFKA_CERT_FILE")),
            key_file=_path(get("TECHX_KAFKA_KEY_FILE")),
        )

    @classmethod
    def sasl(
        cls,
        username: str,
        password: str,
        *,
        mechanism: str = DEFAULT_MECHANISM,
        protocol: str = "SASL_PLAINTEXT",
        ca_file: Path | None = None,
    ) -> KafkaSecurity:
        """SASL settings for one principal, checked as :meth:`from_env` checks them (the
        local stack and the tests build them for the stack's principals this way)."""
        if protocol not in ("SASL_PLAINTEXT", "SASL_SSL"):
            raise ConfigError(
                f"a SASL principal connects with SASL_PLAINTEXT or SASL_SSL, not {protocol}"
            )
        return _checked(
            protocol=protocol,
            mechanism=mechanism,
            username=username,
            password=password,
            ca_file=ca_file,
            cert_file=None,
            key_file=None,
        )

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments every aiokafka client (producer, consumer, admin) takes."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = self.password
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context
        return options

    def describe(self) -> dict[str, str]:
        """What a log line may say about it: never the password."""
        shown = {"security_protocol": self.protocol}
        if self.uses_sasl:
            shown["sasl_mechanism"] = str(self.sasl_mechanism)
            shown["principal"] = f"User:{self.username}"
        if self.ca_file is not None:
            shown["ca_file"] = str(self.ca_file)
        if self.cert_file is not None:
            shown["client_certificate"] = str(self.cert_file)
        return shown


def is_refusal(error: BaseException) -> bool:
    """Whether the broker refused the principal (authentication or an ACL)."""
    return isinstance(error, _REFUSALS)


def kafka_error(error: KafkaError, doing: str, security: KafkaSecurity) -> TechXError:
    """A Kafka client's failure as the engine's error: a refusal of the principal (no ACL, a
    wrong password) is KafkaAccessDeniedError, which no retry mends; the rest may pass.

    aiokafka reports a failed SASL login at start only as "Unable to bootstrap" (the reason
    is in its log line just before), so with SASL that message says it may be the password.
    """
    principal = f"User:{security.username}" if security.uses_sasl else "ANONYMOUS"
    if isinstance(error, _REFUSALS):
        return KafkaAccessDeniedError(
            f"{doing}: Kafka refused {principal}: {error}; check its credentials "
            "(TECHX_KAFKA_USERNAME, TECHX_KAFKA_PASSWORD[_FILE]) and its ACLs (`techx acls`)"
        )
    if security.uses_sasl and "bootstrap" in str(error):
        return BrokerUnavailableError(
            f"{doing}: {error!r} (as {principal} with {security.sasl_mechanism}: a wrong "
            "password or mechanism looks like this too, see the SaslAuthenticationFailed line)"
        )
    return BrokerUnavailableError(f"{doing}: {error!r}")


def _refuse_unused(protocol: str, given: set[str]) -> None:
    """A variable the protocol would ignore is a mistake in the other variable: say so."""
    if not protocol.startswith("SASL_"):
        for name in _SASL_VARIABLES:
            if name in given:
                raise ConfigError(
                    f"{name} is set but TECHX_KAFKA_SECURITY_PROTOCOL={protocol} does not "
                    "authenticate with SASL: set TECHX_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT "
                    f"or SASL_SSL, or unset {name}"
                )
    if protocol not in ("SSL", "SASL_SSL"):
        for name in _TLS_VARIABLES:
            if name in given:
                raise ConfigError(
                    f"{name} is set but TECHX_KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                    f"TLS: set TECHX_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL, or unset {name}"
                )


def _checked(
    *,
    protocol: str,
    mechanism: str | None,
    username: str | None,
    password: str | None,
    ca_file: Path | None,
    cert_file: Path | None,
    key_file: Path | None,
) -> KafkaSecurity:
    if protocol.startswith("SASL_"):
        if mechanism not in MECHANISMS:
            raise ConfigError(
                f"TECHX_KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}, "
                f'not "{str(mechanism)[:40]}"'
            )
        if mechanism == "PLAIN" and protocol == "SASL_PLAINTEXT":
            raise ConfigError(
                "TECHX_KAFKA_SASL_MECHANISM=PLAIN sends the password in clear text, and "
                "TECHX_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not encrypt: use SASL_SSL, "
                "or SCRAM-SHA-512"
            )
        if username is None:
            raise ConfigError(
                f"TECHX_KAFKA_SECURITY_PROTOCOL={protocol} needs TECHX_KAFKA_USERNAME"
            )
        if (
            len(username) > _MAX_USERNAME
            or username != username.strip()
            or not username.isprintable()
        ):
            raise ConfigError(
                f"TECHX_KAFKA_USERNAME must be up to {_MAX_USERNAME} printable characters "
                "without surrounding spaces"
            )
        if not password:
            raise ConfigError(
                f"TECHX_KAFKA_SECURITY_PROTOCOL={protocol} needs TECHX_KAFKA_PASSWORD or "
                "TECHX_KAFKA_PASSWORD_FILE"
            )
    tls = protocol in ("SSL", "SASL_SSL")
    if not tls and (ca_file, cert_file, key_file) != (None, None, None):
        raise ConfigError(f"TLS files are given but {protocol} does not use TLS")
    if (cert_file is None) != (key_file is None):
        raise ConfigError(
            "TECHX_KAFKA_CERT_FILE and TECHX_KAFKA_KEY_FILE go together (mutual TLS): give both "
            "or neither"
        )
    context = _ssl_context(ca_file, cert_file, key_file) if tls else None
    return KafkaSecurity(
        protocol=protocol,
        sasl_mechanism=mechanism if protocol.startswith("SASL_") else None,
        username=username if protocol.startswith("SASL_") else None,
        password=password if protocol.startswith("SASL_") else None,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        ssl_context=context,
    )


def _ssl_context(
    ca_file: Path | None, cert_file: Path | None, key_file: Path | None
) -> ssl.SSLContext:
    """Verify the broker (its certificate and host name), optionally present our own."""
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=None if ca_file is None else str(ca_file)
        )
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(
            f"TECHX_KAFKA_CA_FILE={ca_file} cannot be loaded as a PEM CA bundle: {e}"
        ) from e
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None and key_file is not None:
        try:
            context.load_cert_chain(str(cert_file), str(key_file))
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(
                f"TECHX_KAFKA_CERT_FILE={cert_file} and TECHX_KAFKA_KEY_FILE={key_file} cannot "
                f"be loaded as a PEM certificate and its unencrypted key: {e}"
            ) from e
    return context


def _read_password(path: Path) -> str:
    """The file's text without its final newline (``echo secret > file`` adds one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"TECHX_KAFKA_PASSWORD_FILE={path} cannot be read: {e}") from e
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise ConfigError(f"TECHX_KAFKA_PASSWORD_FILE={path} is empty")
    return password


def _path(raw: str | None) -> Path | None:
    return None if raw is None else Path(raw).expanduser()
