"""Kafka security settings are checked once, at start; the ACL table grants each role its job
and nothing else; the locked-down local broker's config and secrets are what they claim."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from devstack import kafka, security
from devstack.errors import StackConfigError
from devstack.settings import StackSettings
from engine.errors import BrokerUnavailableError, ConfigError, KafkaAccessDeniedError
from engine.kafka_acls import (
    EVERYONE,
    ROLES,
    acl_rules,
    kafka_acls_commands,
    parse_principals,
)
from engine.kafka_security import KafkaSecurity, kafka_error
from engine.settings import Settings, Topics

ROOT = Path(__file__).resolve().parents[2]
SASL = {"TECHX_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TECHX_KAFKA_USERNAME": "engine"}


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"TECHX_KAFKA_SECURITY_PROTOCOL": "KERBEROS"}, "must be one of PLAINTEXT, SASL_PLAINTEXT"),
        ({"TECHX_KAFKA_USERNAME": "engine"}, "TECHX_KAFKA_USERNAME is set but .*=PLAINTEXT"),
        ({"TECHX_KAFKA_PASSWORD": "x"}, "TECHX_KAFKA_PASSWORD is set but"),
        (
            {"TECHX_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TECHX_KAFKA_CA_FILE": "/ca.pem"},
            "TECHX_KAFKA_CA_FILE is set but .*does not use TLS",
        ),
        ({"TECHX_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs TECHX_KAFKA_USERNAME"),
        (SASL, "needs TECHX_KAFKA_PASSWORD or TECHX_KAFKA_PASSWORD_FILE"),
        (
            {**SASL, "TECHX_KAFKA_PASSWORD": "a", "TECHX_KAFKA_PASSWORD_FILE": "/p"},
            "both set: give one",
        ),
        ({**SASL, "TECHX_KAFKA_PASSWORD": "a", "TECHX_KAFKA_SASL_MECHANISM": "GSSAPI"}, "one of"),
        (
            {**SASL, "TECHX_KAFKA_PASSWORD": "a", "TECHX_KAFKA_SASL_MECHANISM": "PLAIN"},
            "PLAIN sends the password in clear text",
        ),
        ({**SASL, "TECHX_KAFKA_PASSWORD_FILE": "/nonexistent/pw"}, "cannot be read"),
        (
            {"TECHX_KAFKA_SECURITY_PROTOCOL": "SSL", "TECHX_KAFKA_CERT_FILE": "/c.pem"},
            "go together",
        ),
        (
            {"TECHX_KAFKA_SECURITY_PROTOCOL": "SSL", "TECHX_KAFKA_CA_FILE": "/nonexistent.pem"},
            "cannot be loaded as a PEM CA bundle",
        ),
    ],
)
def test_an_inconsistent_kafka_security_setting_is_refused_naming_it(
    env: dict[str, str], fragment: str
) -> None:
    """Each mistake stops the start with a ConfigError that names the variable to fix."""
    with pytest.raises(ConfigError, match=fragment):
        Settings.from_env(env)


def test_sasl_settings_become_aiokafka_options_and_never_show_the_password(
    tmp_path: Path,
) -> None:
    """A password file's final newline is dropped; repr and describe() keep the password out."""
    secret = tmp_path / "engine.password"
    secret.write_text("s3cret-pw\n", encoding="utf-8")
    settings = Settings.from_env({**SASL, "TECHX_KAFKA_PASSWORD_FILE": str(secret)})
    assert settings.kafka_options() == {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "engine",
        "sasl_plain_password": "s3cret-pw",
    }
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.kafka_security.describe())
    assert settings.kafka_security.describe()["principal"] == "User:engine"


def test_plaintext_is_the_default_and_an_empty_variable_counts_as_unset() -> None:
    """Without variables (or with empty ones, as compose passes them) nothing changes."""
    settings = Settings.from_env({"TECHX_KAFKA_USERNAME": "", "TECHX_KAFKA_CA_FILE": " "})
    assert settings.kafka_options() == {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": "PLAINTEXT",
    }


def test_tls_settings_build_a_verifying_context() -> None:
    """SASL_SSL (PLAIN is fine inside TLS) checks the broker's certificate and host name."""
    bundle = ssl.get_default_verify_paths().cafile
    if bundle is None or not Path(bundle).exists():
        pytest.skip("this machine has no system CA bundle to load")
    security = KafkaSecurity.from_env(
        {
            "TECHX_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "TECHX_KAFKA_SASL_MECHANISM": "PLAIN",
            "TECHX_KAFKA_USERNAME": "gateway",
            "TECHX_KAFKA_PASSWORD": "pw",
            "TECHX_KAFKA_CA_FILE": bundle,
        }
    )
    context = security.client_options()["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_a_refused_principal_is_not_retried_and_a_broker_outage_is() -> None:
    """Authorization failures become KafkaAccessDeniedError (stop); connection trouble stays
    BrokerUnavailableError (retry), and with SASL it says a wrong password looks the same."""
    security = KafkaSecurity.sasl("subscriber", "pw")
    for refusal in (TopicAuthorizationFailedError(), TransactionalIdAuthorizationFailed()):
        error = kafka_error(refusal, "publishing", security)
        assert isinstance(error, KafkaAccessDeniedError)
        assert not error.retriable
        assert "User:subscriber" in str(error)
    outage = kafka_error(KafkaConnectionError("Unable to bootstrap from x"), "starting", security)
    assert isinstance(outage, BrokerUnavailableError)
    assert outage.retriable
    assert "wrong password" in str(outage)


# -- the ACL table -----------------------------------------------------------------------------


def _granted(role: str, resource: str, name: str) -> set[str]:
    topics = Topics("techx")
    return {
        rule.operation
        for rule in acl_rules(topics, "techx-engine")
        if rule.role == role and rule.resource_type == resource and rule.name == name
    }


def test_only_writers_write_commands_and_only_the_engine_writes_results() -> None:
    """Commands: gateway, operator, and the engine (its ticker); results: the engine alone."""
    topics = Topics("techx")
    writers = {
        topic: {
            r.role for r in acl_rules(topics, "g") if r.name == topic and r.operation == "Write"
        }
        for topic in topics.all()
    }
    assert writers[topics.commands] == {"engine", "gateway", "operator"}
    for topic in (topics.deals, topics.executions, topics.dead_letters, topics.market_data):
        assert writers[topic] == {"engine"}, topic


def test_front_ends_never_read_commands_and_subscribers_never_read_dead_letters() -> None:
    """The reading side of the table, role by role."""
    topics = Topics("techx")
    readers = {
        topic: {r.role for r in acl_rules(topics, "g") if r.name == topic and r.operation == "Read"}
        for topic in topics.all()
    }
    assert readers[topics.commands] == {"engine", "operator"}
    # The operator reads the answers to its own commands (`techx order` waits for them).
    assert readers[topics.dead_letters] == {"backoffice", "operator"}
    assert readers[topics.deals] == {"subscriber", "backoffice", "operator"}
    assert readers[topics.executions] == {"subscriber", "backoffice", "operator"}
    assert readers[topics.market_data] == {EVERYONE}


def test_the_engine_may_run_transactions_for_its_own_group_only() -> None:
    """Transactional ids and both groups are the engine's group's, not a wildcard."""
    rules = [r for r in acl_rules(Topics("techx"), "techx-engine") if r.role == "engine"]
    assert {(r.name, r.pattern) for r in rules if r.resource_type == "transactional-id"} == {
        ("techx-engine.techx.commands.v1.", "prefixed")
    }
    assert {r.name for r in rules if r.resource_type == "group"} == {
        "techx-engine",
        "techx-engine.outputs",
    }
    assert _granted("engine", "cluster", "kafka-cluster") == {"IdempotentWrite"}


def test_the_readme_recipe_is_what_techx_acls_prints() -> None:
    """README's kafka-acls block for a managed Kafka is generated by the same table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    marker = "<!-- techx-acls -->\n```sh\n"
    assert marker in readme, "README should hold the `techx acls` output"
    block = readme.split(marker, 1)[1].split("```", 1)[0]
    printed = [line for line in block.splitlines() if line.startswith("kafka-acls.sh")]
    assert printed == kafka_acls_commands(acl_rules(Topics("techx"), "techx-engine"))


def test_a_role_can_be_mapped_to_a_managed_services_account() -> None:
    """`--principal engine=User:sa-123` renames the role in every command; bad pairs fail."""
    principals = parse_principals(["engine=User:sa-123"])
    commands = kafka_acls_commands(acl_rules(Topics("techx"), "g"), principals)
    assert not any("User:engine" in command for command in commands)
    assert any("User:sa-123" in command for command in commands)
    for bad in ("engine", "nobody=User:x", "engine=sa-123"):
        with pytest.raises(ConfigError, match="ROLE=User:NAME"):
            parse_principals([bad])
    assert set(ROLES) == {"engine", "gateway", "operator", "subscriber", "backoffice"}


# -- the locked-down local broker --------------------------------------------------------------


def _secure(tmp_path: Path) -> StackSettings:
    return StackSettings.from_env(
        {
            "TECHX_STATE_DIR": str(tmp_path / "state"),
            "TECHX_KAFKA_PORT": "39092",
            "TECHX_POSTGRES_PORT": "35432",
            "TECHX_STACK_SECURE": "1",
        }
    )


def test_the_locked_down_config_replaces_the_open_listeners_and_turns_the_authorizer_on(
    tmp_path: Path,
) -> None:
    """Each overridden key appears once; nothing is allowed without an ACL; no placeholder
    is left; the controller listener is not anonymous."""
    settings = _secure(tmp_path)
    broker = security.SecureBroker(
        passwords={p: f"pw-{p}" for p in security.PRINCIPALS},
        keystore=tmp_path / "broker.p12",
        keystore_password="ks",
    )
    text = kafka.render_server_properties(settings, None, broker)
    keys = [line.split("=", 1)[0] for line in text.splitlines() if line and line[0] != "#"]
    assert len(keys) == len(set(keys))
    config = dict(line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    assert config["listeners"] == (
        "SASL_PLAINTEXT://127.0.0.1:39092,CONTROLLER://127.0.0.1:39093,SASL_SSL://127.0.0.1:39094"
    )
    assert "PLAINTEXT:PLAINTEXT" not in config["listener.security.protocol.map"]
    assert config["allow.everyone.if.no.acl.found"] == "false"
    assert config["super.users"] == "User:admin"
    assert config["authorizer.class.name"].endswith("StandardAuthorizer")
    assert config["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert 'user_gateway="pw-gateway"' in config["listener.name.sasl_ssl.plain.sasl.jaas.config"]
    assert "$" not in "".join(config.values())


def test_credentials_are_generated_once_and_only_their_owner_can_read_them(
    tmp_path: Path,
) -> None:
    """Passwords are files of mode 600 in a folder of mode 700, the same on a second call."""
    settings = _secure(tmp_path)
    first = security.ensure_credentials(settings)
    assert set(first) == set(security.PRINCIPALS)
    assert security.ensure_credentials(settings) == first
    folder = security.credentials_dir(settings)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for principal in security.PRINCIPALS:
        path = security.password_file(settings, principal)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert str(path) in security.env_hint(settings, principal)
    assert len(set(first.values())) == len(first), "every principal has its own password"


def test_stack_secure_is_a_flag_and_keeps_the_tls_port_free(tmp_path: Path) -> None:
    """TECHX_STACK_SECURE takes 1/0 words only, and a locked-down broker needs port + 2."""
    assert _secure(tmp_path).secure
    with pytest.raises(StackConfigError, match="TECHX_STACK_SECURE must be 1 or 0"):
        StackSettings.from_env({"TECHX_STACK_SECURE": "maybe"})
    with pytest.raises(StackConfigError, match="its TLS listener"):
        StackSettings.from_env(
            {
                "TECHX_STACK_SECURE": "yes",
                "TECHX_KAFKA_PORT": "39092",
                "TECHX_POSTGRES_PORT": "39094",
            }
        )


def test_an_open_broker_is_never_locked_down_in_place(tmp_path: Path) -> None:
    """A state dir formatted open refuses `up --secure` and says what to do instead."""
    settings = _secure(tmp_path)
    paths = kafka.KafkaPaths.of(settings)
    paths.data.mkdir(parents=True)
    (paths.data / "meta.properties").write_text("formatted open\n", encoding="utf-8")
    assert not kafka.is_secure(settings)
    with pytest.raises(Exception, match="cannot be locked down in place") as refused:
        kafka.launch(settings, "java")
    assert "TECHX_STATE_DIR" in str(refused.value)
