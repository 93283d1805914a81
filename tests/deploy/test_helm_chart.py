"""The Helm chart (deploy/helm/techx) lints and renders, and what it renders is what the
engine needs: probes on the endpoints the engine serves, one disruption at a time, secrets
referenced and never inlined, and the optional parts only when asked for.

helm is built by deploy/local/bootstrap.sh into .tools/bin (TECHX_SKIP_HELM=1 skips these).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "techx"
#: Kubernetes version to render for (the chart asks for 1.25 or newer: policy/v1).
_KUBE = "1.30.0"

Manifest = dict[str, Any]

pytestmark = pytest.mark.skipif(
    os.environ.get("TECHX_SKIP_HELM") == "1", reason="TECHX_SKIP_HELM=1"
)

_SASL_TLS = (
    "kafka.security.protocol=SASL_SSL",
    "kafka.security.saslMechanism=SCRAM-SHA-256",
    "kafka.security.sasl.existingSecret=kafka-engine",
    "kafka.security.tls.caSecret=kafka-ca",
    "kafka.security.tls.clientCertSecret=kafka-client",
    "setup.kafkaSaslSecret=kafka-operator",
    "database.existingSecret=pg",
)


@pytest.fixture(scope="module")
def helm() -> str:
    found = ROOT / ".tools" / "bin" / "helm"
    if found.is_file():
        return str(found)
    on_path = shutil.which("helm")
    if on_path is None:
        pytest.fail("no helm: `make bootstrap` builds it into .tools/bin (or TECHX_SKIP_HELM=1)")
    return on_path


def _helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)


def _render(helm: str, *sets: str) -> list[Manifest]:
    options = [part for setting in sets for part in ("--set", setting)]
    done = _helm(helm, "template", "prod", str(CHART), "--kube-version", _KUBE, *options)
    assert done.returncode == 0, done.stderr
    return [m for m in yaml.safe_load_all(done.stdout) if m]


def _one(manifests: list[Manifest], kind: str, component: str) -> Manifest:
    (found,) = [
        m
        for m in manifests
        if m["kind"] == kind
        and m["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    return found


def _pod(manifest: Manifest) -> Manifest:
    pod: Manifest = manifest["spec"]["template"]["spec"]
    return pod


def _env(container: Manifest) -> dict[str, Manifest]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def _walk(node: object) -> Iterator[object]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@pytest.mark.parametrize("sets", [(), _SASL_TLS], ids=["defaults", "sasl-tls"])
def test_the_chart_lints(helm: str, sets: tuple[str, ...]) -> None:
    options = [part for setting in sets for part in ("--set", setting)]
    done = _helm(helm, "lint", "--strict", str(CHART), "--kube-version", _KUBE, *options)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_engine_is_probed_where_it_serves_and_drains_within_its_grace(helm: str) -> None:
    manifests = _render(helm, "engine.sessionTimeoutMs=45000", "engine.metricsPort=9500")
    engine = _one(manifests, "Deployment", "engine")
    pod = _pod(engine)
    (container,) = pod["containers"]
    assert container["args"] == ["run"]
    (port,) = container["ports"]
    assert (port["name"], port["containerPort"]) == ("metrics", 9500)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    # The grace outlasts the session timeout: a stopping engine is never killed first.
    assert pod["terminationGracePeriodSeconds"] == 45 + 30
    (config_map,) = [m for m in manifests if m["kind"] == "ConfigMap"]
    assert config_map["data"]["TECHX_METRICS_PORT"] == "9500"
    assert config_map["data"]["TECHX_SESSION_TIMEOUT_MS"] == "45000"
    assert container["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]
    assert engine["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_one_engine_may_be_disrupted_at_a_time(helm: str) -> None:
    manifests = _render(helm)
    engine = _one(manifests, "Deployment", "engine")
    budget = _one(manifests, "PodDisruptionBudget", "engine")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == engine["spec"]["selector"]["matchLabels"]
    assert engine["spec"]["selector"]["matchLabels"].items() <= (
        engine["spec"]["template"]["metadata"]["labels"].items()
    )
    without = _render(helm, "engine.podDisruptionBudget.enabled=false")
    assert not [m for m in without if m["kind"] == "PodDisruptionBudget" and "engine" in str(m)]


def test_replication_settings_reach_setup(helm: str) -> None:
    manifests = _render(helm, "kafka.replicationFactor=3", "kafka.minInsyncReplicas=2")
    (job,) = [m for m in manifests if m["kind"] == "Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = _pod(job)["containers"]
    assert container["args"] == ["setup"]
    env = _env(container)
    assert env["TECHX_REPLICATION_FACTOR"]["value"] == "3"
    assert env["TECHX_MIN_INSYNC_REPLICAS"]["value"] == "2"
    refused = _helm(
        helm, "template", "x", str(CHART), "--kube-version", _KUBE,
        "--set", "kafka.replicationFactor=1", "--set", "kafka.minInsyncReplicas=2",
    )  # fmt: skip
    assert refused.returncode != 0
    assert "minInsyncReplicas" in refused.stderr


def test_sasl_and_tls_come_from_secrets_never_from_values(helm: str) -> None:
    manifests = _render(helm, *_SASL_TLS)
    # No Secret is rendered, and no password-looking value is anywhere in the output.
    assert not [m for m in manifests if m["kind"] == "Secret"]
    for workload, principal in (
        (_one(manifests, "Deployment", "engine"), "kafka-engine"),
        (_one(manifests, "Deployment", "gateway"), "kafka-engine"),
        (next(m for m in manifests if m["kind"] == "Job"), "kafka-operator"),
    ):
        pod = _pod(workload)
        (container,) = pod["containers"]
        env = _env(container)
        assert env["TECHX_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "pg",
            "key": "url",
        }
        assert env["TECHX_KAFKA_USERNAME"]["valueFrom"]["secretKeyRef"]["name"] == principal
        assert "TECHX_KAFKA_PASSWORD" not in env
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["kafka-sasl"]["secret"]["secretName"] == principal
        assert volumes["kafka-ca"]["secret"]["secretName"] == "kafka-ca"
        assert volumes["kafka-client"]["secret"]["secretName"] == "kafka-client"
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/etc/techx/kafka-sasl", "/etc/techx/kafka-ca", "/etc/techx/kafka-client"} <= mounts
        for entry in env.values():
            assert "value" in entry or "secretKeyRef" in entry["valueFrom"]
    (config_map,) = [m for m in manifests if m["kind"] == "ConfigMap"]
    data = config_map["data"]
    assert data["TECHX_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["TECHX_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-256"
    assert data["TECHX_KAFKA_PASSWORD_FILE"] == "/etc/techx/kafka-sasl/password"
    assert data["TECHX_KAFKA_CA_FILE"] == "/etc/techx/kafka-ca/ca.crt"
    assert data["TECHX_KAFKA_CERT_FILE"] == "/etc/techx/kafka-client/tls.crt"
    assert not [key for key in data if "PASSWORD" in key and key != "TECHX_KAFKA_PASSWORD_FILE"]


def test_sasl_without_its_secret_is_refused(helm: str) -> None:
    done = _helm(
        helm, "template", "x", str(CHART), "--kube-version", _KUBE,
        "--set", "kafka.security.protocol=SASL_SSL",
    )  # fmt: skip
    assert done.returncode != 0
    assert "existingSecret" in done.stderr


def test_the_gateway_listens_on_all_interfaces_behind_its_service(helm: str) -> None:
    manifests = _render(helm, "gateway.port=8555")
    gateway = _one(manifests, "Deployment", "gateway")
    (container,) = _pod(gateway)["containers"]
    assert container["args"] == ["gateway"]
    env = _env(container)
    assert env["TECHX_GATEWAY_HOST"]["value"] == "0.0.0.0"
    assert env["TECHX_GATEWAY_PORT"]["value"] == "8555"
    assert container["ports"][0]["containerPort"] == 8555
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = _one(manifests, "Service", "gateway")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == gateway["spec"]["selector"]["matchLabels"]
    off = _render(helm, "gateway.enabled=false")
    assert not [m for m in off if m["metadata"]["labels"].get("app.kubernetes.io/component")
                == "gateway"]  # fmt: skip


def test_the_service_monitor_is_there_only_when_enabled(helm: str) -> None:
    assert not [m for m in _render(helm) if m["kind"] == "ServiceMonitor"]
    manifests = _render(helm, "serviceMonitor.enabled=true", "serviceMonitor.labels.release=kps")
    (monitor,) = [m for m in manifests if m["kind"] == "ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    ports = {(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]}
    assert ports == {("metrics", "/metrics"), ("http", "/metrics")}
    engine_service = _one(manifests, "Service", "engine")
    assert engine_service["spec"]["clusterIP"] == "None"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        engine_service["metadata"]["labels"].items()
    )


def test_no_value_of_the_default_render_is_a_credential(helm: str) -> None:
    rendered = list(_walk(_render(helm)))
    assert not [v for v in rendered if isinstance(v, str) and "postgresql://" in v]
