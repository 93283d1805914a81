"""deploy/compose.yaml, read as Compose reads it (no container runtime here): the settings
it gives every TechX container are ones the engine accepts as they stand, every Kafka
security variable can be passed through, and the engine and the gateway are health-checked
where they answer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine import kafka_security
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
_DEFAULTED = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text(encoding="utf-8"))
    found: dict[str, Any] = compose["services"]
    return found


def _resolved(environment: dict[str, object], shell: dict[str, str]) -> dict[str, str]:
    """${VAR:-default} as Compose substitutes it, from ``shell``."""
    return {
        name: _DEFAULTED.sub(lambda m: shell.get(m.group(1)) or (m.group(2) or ""), str(value))
        for name, value in environment.items()
    }


@pytest.mark.parametrize("service", ["setup", "engine", "gateway"])
def test_the_defaults_are_settings_the_engine_accepts(
    services: dict[str, Any], service: str
) -> None:
    settings = Settings.from_env(_resolved(services[service]["environment"], {}))
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.kafka_security.protocol == "PLAINTEXT"
    assert (settings.replication_factor, settings.min_insync_replicas) == (1, 1)


def test_a_secured_cluster_is_reached_by_setting_variables_only(
    services: dict[str, Any], tmp_path: Path
) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    shell = {
        "TECHX_KAFKA_BOOTSTRAP": "broker-1.example:9096",
        "TECHX_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "TECHX_KAFKA_USERNAME": "engine",
        "TECHX_KAFKA_PASSWORD_FILE": str(password),
        "TECHX_REPLICATION_FACTOR": "3",
        "TECHX_MIN_INSYNC_REPLICAS": "2",
    }
    settings = Settings.from_env(_resolved(services["gateway"]["environment"], shell))
    assert settings.kafka_bootstrap == "broker-1.example:9096"
    assert settings.kafka_security.username == "engine"
    assert settings.kafka_security.password == "s3cret"
    assert settings.min_insync_replicas == 2
    security_variables = {
        "TECHX_KAFKA_SECURITY_PROTOCOL",
        *kafka_security._SASL_VARIABLES,
        *kafka_security._TLS_VARIABLES,
    }
    for service in ("setup", "engine", "gateway"):
        assert security_variables <= set(services[service]["environment"]), service


def test_the_gateway_listens_beyond_its_container(services: dict[str, Any]) -> None:
    gateway = services["gateway"]
    assert gateway["command"] == ["gateway"]
    env = _resolved(gateway["environment"], {})
    assert env["TECHX_GATEWAY_HOST"] == "0.0.0.0"
    assert gateway["ports"] == ["127.0.0.1:${TECHX_GATEWAY_HOST_PORT:-8470}:8470"]
    assert gateway["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    assert "http://127.0.0.1:8470/healthz" in gateway["healthcheck"]["test"][-1]


def test_the_engine_is_health_checked_on_its_metrics_port(services: dict[str, Any]) -> None:
    test = services["engine"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:9464/healthz" in test[3]
