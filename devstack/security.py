"""The locked-down local broker: SCRAM users, their passwords, the config and the ACLs.

``python -m devstack up --secure`` (or ``TECHX_STACK_SECURE=1``) formats a fresh broker with
SCRAM-SHA-512 credentials for the broker's own principal (``admin``, a super user) and for
each TechX role (engine, gateway, operator, subscriber, backoffice), starts it with a
SASL_PLAINTEXT listener, the StandardAuthorizer and ``allow.everyone.if.no.acl.found=false``,
and grants each role what ``engine.kafka_acls`` says it needs. Passwords are generated
once into ``<state>/kafka/credentials/<principal>.password`` (mode 600, folder 700), which is
what ``TECHX_KAFKA_PASSWORD_FILE`` reads.

Whether a broker is locked down is decided when its storage is first formatted, and kept:
later ``up``s run it the same way. An open state dir is never switched to locked down in
place (its metadata has no SCRAM credentials): choose another ``TECHX_STATE_DIR``.
"""

from __future__ import annotations

import secrets
import shutil
import string
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from devstack.errors import MissingToolError, StackError
from devstack.processes import run, run_async, write_atomic
from devstack.settings import DEPLOY_DIR, StackSettings
from engine.errors import TechXError
from engine.kafka_acls import ROLES, acl_rules, apply_acls
from engine.kafka_security import KafkaSecurity
from engine.settings import Settings, Topics

log = structlog.get_logger()

#: The broker's own principal: inter-broker and controller connections, and ACL grants.
ADMIN = "admin"
PRINCIPALS = (ADMIN, *ROLES)
MECHANISM = "SCRAM-SHA-512"
PROTOCOL = "SASL_PLAINTEXT"
_CERTIFICATE_ALIAS = "techx-local"
#: Characters of generated passwords: URL-safe, so they need no quoting in JAAS or argv.
_PASSWORD_BYTES = 24


@dataclass(frozen=True, slots=True)
class SecureBroker:
    """What a locked-down broker's config is rendered from."""

    #: Every principal's password (the admin's included).
    passwords: dict[str, str]
    keystore: Path
    keystore_password: str


def prepare(settings: StackSettings, java: str) -> SecureBroker:
    """Passwords and the TLS listener's certificate, made the first time, read after."""
    passwords = ensure_credentials(settings)
    keystore, keystore_password = ensure_certificate(settings, java)
    return SecureBroker(passwords, keystore, keystore_password)


def tls_dir(settings: StackSettings) -> Path:
    return settings.state_dir.resolve() / "kafka" / "tls"


def ca_file(settings: StackSettings) -> Path:
    """The certificate clients of the TLS listener trust (``TECHX_KAFKA_CA_FILE``)."""
    return tls_dir(settings) / "ca.pem"


def ensure_certificate(settings: StackSettings, java: str) -> tuple[Path, str]:
    """A self-signed certificate for 127.0.0.1 and localhost, made once with the JRE's
    keytool (no other tool is sure to be there): the broker's PKCS12 keystore, and the
    certificate alone as ``ca.pem`` for clients. Returns the keystore and its password."""
    folder = tls_dir(settings)
    keystore = folder / "broker.p12"
    password_path = credentials_dir(settings) / "keystore.password"
    if not password_path.exists():
        write_atomic(password_path, secrets.token_urlsafe(_PASSWORD_BYTES) + "\n", mode=0o600)
    password = password_path.read_text(encoding="ascii").strip()
    if keystore.exists() and ca_file(settings).exists():
        return keystore, password
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    keystore.unlink(missing_ok=True)
    keytool = _keytool(java)
    store = ["-keystore", str(keystore), "-storetype", "PKCS12", "-storepass", password]
    run(
        [
            keytool,
            "-genkeypair",
            "-alias",
            _CERTIFICATE_ALIAS,
            "-keyalg",
            "RSA",
            "-keysize",
            "2048",
            "-validity",
            "3650",
            "-dname",
            "CN=localhost",
            "-ext",
            "SAN=IP:127.0.0.1,DNS:localhost",
            *store,
            "-keypass",
            password,
        ],
        what="make the TLS listener's certificate (keytool)",
        timeout=60,
    )
    keystore.chmod(0o600)
    scratch = ca_file(settings).with_name("ca.pem.partial")
    run(
        [
            keytool,
            "-exportcert",
            "-rfc",
            "-alias",
            _CERTIFICATE_ALIAS,
            *store,
            "-file",
            str(scratch),
        ],
        what="export the TLS listener's certificate (keytool)",
        timeout=60,
    )
    scratch.replace(ca_file(settings))
    log.info("kafka_certificate_made", keystore=str(keystore), ca_file=str(ca_file(settings)))
    return keystore, password


def _keytool(java: str) -> str:
    """The keytool beside the java that runs the broker."""
    beside = Path(java).parent / "keytool"
    if beside.exists():
        return str(beside)
    found = shutil.which("keytool")
    if found is None:
        raise MissingToolError(
            "keytool (part of the Java runtime) is not installed; it makes the TLS certificate",
            hint="apt-get install openjdk-17-jre-headless",
        )
    return found


def credentials_dir(settings: StackSettings) -> Path:
    return settings.state_dir.resolve() / "kafka" / "credentials"


def password_file(settings: StackSettings, principal: str) -> Path:
    """Where a principal's password is kept: what ``TECHX_KAFKA_PASSWORD_FILE`` names."""
    return credentials_dir(settings) / f"{principal}.password"


def ensure_credentials(settings: StackSettings) -> dict[str, str]:
    """Every principal's password, generated the first time (mode 600 in a 700 folder)."""
    folder = credentials_dir(settings)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    passwords = {}
    for principal in PRINCIPALS:
        path = password_file(settings, principal)
        if not path.exists():
            write_atomic(path, secrets.token_urlsafe(_PASSWORD_BYTES) + "\n", mode=0o600)
            log.info("kafka_credentials_generated", principal=principal, file=str(path))
        passwords[principal] = read_password(settings, principal)
    return passwords


def read_password(settings: StackSettings, principal: str) -> str:
    """A principal's password, or a StackError saying the state dir lost it."""
    path = password_file(settings, principal)
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError as e:
        raise StackError(
            f"the password of Kafka principal {principal!r} is missing ({path}): the broker's "
            "SCRAM credentials were made from it when its storage was formatted",
            hint=f"stop the stack and remove {settings.state_dir.resolve() / 'kafka' / 'data'} "
            "to format a new locked-down broker (its topics are lost)",
        ) from e


def client_security(settings: StackSettings, principal: str, *, tls: bool = False) -> KafkaSecurity:
    """How a client connects to the locked-down local broker as ``principal``: SCRAM on the
    client port, or with ``tls`` SCRAM inside TLS on the TLS port (``settings.tls_port``)."""
    password = read_password(settings, principal)
    if tls:
        return KafkaSecurity.sasl(
            principal, password, mechanism=MECHANISM, protocol="SASL_SSL", ca_file=ca_file(settings)
        )
    return KafkaSecurity.sasl(principal, password, mechanism=MECHANISM)


def env_hint(settings: StackSettings, principal: str) -> str:
    """The variables that make a TechX process run as ``principal`` on the local broker."""
    return (
        f"TECHX_KAFKA_SECURITY_PROTOCOL={PROTOCOL} TECHX_KAFKA_SASL_MECHANISM={MECHANISM} "
        f"TECHX_KAFKA_USERNAME={principal} "
        f"TECHX_KAFKA_PASSWORD_FILE={password_file(settings, principal)}"
    )


def scram_arguments(passwords: dict[str, str]) -> list[str]:
    """``kafka-storage format`` arguments that put every principal's SCRAM credential into
    the new metadata log (KIP-900): the broker can then authenticate from its first start."""
    arguments = []
    for principal, password in passwords.items():
        arguments += ["--add-scram", f"{MECHANISM}=[name={principal},password={password}]"]
    return arguments


def secure_overrides(settings: StackSettings, broker: SecureBroker) -> str:
    """The locked-down keys (listeners, SASL, TLS, authorizer), rendered for this instance."""
    template = (DEPLOY_DIR / "server-secure.properties.template").read_text(encoding="utf-8")
    plain_users = " ".join(
        f'user_{principal}="{password}"' for principal, password in broker.passwords.items()
    )
    return string.Template(template).substitute(
        kafka_port=settings.kafka_port,
        controller_port=settings.controller_port,
        tls_port=settings.tls_port,
        admin_password=broker.passwords[ADMIN],
        plain_users=plain_users,
        keystore=str(broker.keystore),
        keystore_password=broker.keystore_password,
    )


def lock_down(base: str, overrides: str) -> str:
    """``base`` with every key that ``overrides`` sets replaced by the override.

    Dropping the base's line rather than repeating the key keeps the rendered file honest:
    java.util.Properties would take the last one, a reader might take the first.
    """
    overridden = {_key(line) for line in overrides.splitlines()} - {None}
    kept = [line for line in base.splitlines() if _key(line) not in overridden]
    return "\n".join(kept).rstrip() + "\n\n" + overrides


def grant_acls(settings: StackSettings, topics: Topics, group_id: str) -> int:
    """Create the ACLs of every TechX role for a topic prefix and an engine group, as admin.

    Idempotent (an existing ACL is left as it is), so each ``up`` grants them again, and a
    test with its own topic prefix and group grants its own.
    """
    admin = replace(
        Settings(),
        kafka_bootstrap=settings.kafka_bootstrap,
        kafka_security=client_security(settings, ADMIN),
    )
    try:
        return run_async(apply_acls(admin, acl_rules(topics, group_id)))
    except TechXError as e:
        raise StackError(f"cannot grant the TechX ACLs: {e}", hint="read the broker's log") from e


def _key(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#") or "=" not in stripped:
        return None
    return stripped.split("=", 1)[0].strip()
