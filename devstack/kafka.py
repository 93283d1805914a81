"""The local broker: a single-node KRaft Kafka run from jars that Maven fetches once.

The jars come from ``deploy/local/pom.xml`` into ``<state dir>/kafka/libs``, the storage is
formatted once, and the JVM is launched detached with its PID recorded. Starting is split in
two (:func:`launch`, then :func:`await_ready`) so that PostgreSQL starts while the JVM does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import string
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiokafka.admin import AIOKafkaAdminClient

from devstack import security
from devstack.errors import MissingToolError, StackError, StackTimeoutError
from devstack.processes import (
    ServiceStatus,
    describe,
    forget_stale_pid,
    log_contains,
    port_open,
    process_age_s,
    process_matches,
    run,
    run_async,
    run_streaming,
    running_pid,
    since,
    stopped_detail,
    tail,
    wait_gone,
    write_atomic,
)
from devstack.settings import DEPLOY_DIR, StackSettings
from engine.kafka_security import KafkaSecurity
from engine.progress import Progress

log = structlog.get_logger()

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
MAVEN_TIMEOUT_S = 900.0
MIN_JAVA = 17
#: The heap of Kafka's own start script (kafka-server-start.sh: 1 GB) and the 16 MB G1 regions
#: of Kafka's operations guide. With a 512 MB heap and G1's default 1 MB regions, every
#: produce request over 512 KB (the engine's batches under a backlog) is a humongous
#: allocation that starts a concurrent marking cycle: G1's marking threads took 6.8% of the
#: machine's CPU in a 1.5M-command backlog, 0.9% with these. The backlog's throughput did not
#: move, and neither did the latency beyond the day's noise; what moves the latency is how
#: warm the broker is (p99 at 5k orders/s of 200-5,000 ms in its first minutes: its JIT).
#: kafka-run-class.sh's other G1 options (20 ms pause target and others) made no difference.
BROKER_JVM_OPTIONS = (
    "-Xms1g",
    "-Xmx1g",
    "-XX:G1HeapRegionSize=16m",
)
#: What the broker writes to server.log once it serves clients (KafkaRaftServer.startup).
STARTED_LINE = "Kafka Server started"
INSTALL_JAVA = "apt-get install openjdk-17-jre-headless"


@dataclass(frozen=True, slots=True)
class KafkaPaths:
    """Where the broker's jars, data, config, logs and PID file live under the state dir."""

    root: Path
    libs: Path
    libs_marker: Path
    data: Path
    config: Path
    logs: Path
    server_log: Path
    console_log: Path
    pid_file: Path
    #: Present once the storage was formatted locked down (SCRAM users, ACLs): the mode
    #: belongs to the broker's data, so later starts keep it.
    secure_marker: Path

    @classmethod
    def of(cls, settings: StackSettings) -> KafkaPaths:
        root = settings.state_dir.resolve() / "kafka"
        logs = root / "logs"
        return cls(
            root=root,
            libs=root / "libs",
            libs_marker=root / "libs" / ".techx-complete",
            data=root / "data",
            config=root / "server.properties",
            logs=logs,
            server_log=logs / "server.log",
            console_log=logs / "kafka.out",
            pid_file=root / "kafka.pid",
            secure_marker=root / "secure",
        )

    @property
    def formatted(self) -> bool:
        return (self.data / "meta.properties").exists()

    @property
    def markers(self) -> tuple[str, ...]:
        """What the broker's command line holds, and a reused PID's does not."""
        return ("kafka.Kafka", str(self.config))


@dataclass(frozen=True, slots=True)
class PendingKafka:
    """A broker not yet known to serve; ``log_offset`` is None when an earlier ``up`` started it."""

    pid: int
    log_offset: int | None
    started: float


def render_server_properties(
    settings: StackSettings,
    template: str | None = None,
    broker: security.SecureBroker | None = None,
) -> str:
    """Fill the broker config template with this instance's ports and data folder; with a
    locked-down broker's secrets, locked down (SASL listeners, TLS, the authorizer)."""
    if template is None:
        template = (DEPLOY_DIR / "server.properties.template").read_text(encoding="utf-8")
    rendered = string.Template(template).substitute(
        kafka_port=settings.kafka_port,
        controller_port=settings.controller_port,
        log_dirs=str(KafkaPaths.of(settings).data),
    )
    if broker is None:
        return rendered
    return security.lock_down(rendered, security.secure_overrides(settings, broker))


def is_secure(settings: StackSettings) -> bool:
    """Whether the local broker runs locked down: as its storage was formatted, or, before
    the first format, as the settings ask."""
    paths = KafkaPaths.of(settings)
    return paths.secure_marker.exists() if paths.formatted else settings.secure


def local_security(settings: StackSettings) -> KafkaSecurity:
    """How devstack itself connects to the local broker: as admin when it is locked down."""
    if is_secure(settings):
        return security.client_security(settings, security.ADMIN)
    return KafkaSecurity()


def _check_mode(settings: StackSettings, paths: KafkaPaths) -> None:
    """An open broker is never locked down in place: its metadata has no SCRAM users."""
    if settings.secure and paths.formatted and not paths.secure_marker.exists():
        raise StackError(
            f"the Kafka broker in {settings.state_dir} was formatted open (PLAINTEXT); it "
            "cannot be locked down in place",
            hint="use another TECHX_STATE_DIR (and ports) for a locked-down stack, or stop "
            f"this one and remove {paths.data} (its topics are lost)",
        )


def find_java() -> str:
    """``$JAVA_HOME/bin/java`` or ``java`` on PATH, at least Java 17 (Kafka 4's minimum)."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    java = str(candidate) if candidate and candidate.exists() else shutil.which("java")
    if java is None:
        raise MissingToolError(
            f"java is not installed; Kafka needs Java {MIN_JAVA} or newer", hint=INSTALL_JAVA
        )
    result = run([java, "-version"], what="ask java for its version", timeout=30)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match:
        major = int(match[1]) if match[1] != "1" else int(match[2] or 0)
        if major < MIN_JAVA:
            raise MissingToolError(
                f"{java} is Java {major}; Kafka 4 needs {MIN_JAVA} or newer", hint=INSTALL_JAVA
            )
    return java


def launch(settings: StackSettings, java: str) -> PendingKafka:
    """Fetch jars, format storage and start the broker detached, unless it already runs."""
    paths = KafkaPaths.of(settings)
    address = f"127.0.0.1:{settings.kafka_port}"
    _check_mode(settings, paths)
    pid = running_pid(paths.pid_file, paths.markers)
    if pid is not None:
        log.info("kafka_already_running", address=address, pid=pid)
        return PendingKafka(pid=pid, log_offset=None, started=time.monotonic())
    forget_stale_pid(paths.pid_file, "kafka")
    secure = is_secure(settings)
    ports = (settings.kafka_port, settings.controller_port)
    for port in (*ports, settings.tls_port) if secure else ports:
        if port_open(port):
            raise StackError(
                f"port {port} on 127.0.0.1 is taken by a process techx did not start",
                hint="stop it or choose another TECHX_KAFKA_PORT (the controller uses port + 1, "
                "a locked-down broker's TLS listener port + 2)",
            )
    _ensure_jars(paths)
    paths.logs.mkdir(parents=True, exist_ok=True)
    broker = security.prepare(settings, java) if secure else None
    # Mode 600: a locked-down config holds passwords.
    write_atomic(paths.config, render_server_properties(settings, None, broker), 0o600)
    _ensure_storage(paths, java, None if broker is None else broker.passwords)

    log_offset = paths.server_log.stat().st_size if paths.server_log.exists() else 0
    command = [
        *_java_command(java, paths),
        *BROKER_JVM_OPTIONS,
        "-XX:+ExitOnOutOfMemoryError",
        "kafka.Kafka",
        str(paths.config),
    ]
    # Launched through a shell that backgrounds the JVM and exits: the broker is then not a
    # child of this process, so no zombie and no "subprocess still running" warning.
    launcher = 'out=$1; shift; "$@" >>"$out" 2>&1 </dev/null & echo $!'
    result = run(
        ["sh", "-c", launcher, "techx-kafka", str(paths.console_log), *command],
        what="launch the Kafka broker",
        cwd=paths.root,
        timeout=30,
        new_session=True,
    )
    pid = int(result.stdout.strip())
    write_atomic(paths.pid_file, f"{pid}\n")
    log.info(
        "kafka_launched",
        address=address,
        pid=pid,
        log=str(paths.server_log),
        security="SASL_PLAINTEXT/SCRAM-SHA-512, ACLs" if secure else "PLAINTEXT, open",
    )
    return PendingKafka(pid=pid, log_offset=log_offset, started=time.monotonic())


def await_ready(settings: StackSettings, pending: PendingKafka) -> None:
    """Poll until the broker logged its start, accepts connections and answers metadata."""
    paths = KafkaPaths.of(settings)
    bootstrap = f"127.0.0.1:{settings.kafka_port}"
    deadline = pending.started + READY_TIMEOUT_S
    problem = "not started yet"
    client_security = local_security(settings)
    while True:
        if not process_matches(pending.pid, paths.markers):
            raise StackError(
                f"the Kafka broker (pid {pending.pid}) exited while starting",
                hint=f"read {paths.server_log} and {paths.console_log}",
                output=tail(paths.server_log) + tail(paths.console_log),
            )
        logged = pending.log_offset is None or log_contains(
            paths.server_log, pending.log_offset, STARTED_LINE
        )
        if logged and port_open(settings.kafka_port):
            answer = probe(bootstrap, timeout_s=5.0, security=client_security)
            if answer is None:
                break
            problem = answer
        if time.monotonic() > deadline:
            raise StackTimeoutError(
                f"the Kafka broker (pid {pending.pid}) did not answer on {bootstrap} within "
                f"{READY_TIMEOUT_S:.0f} s ({problem})",
                hint=f"read {paths.server_log}",
            )
        time.sleep(0.25)
    if pending.log_offset is None:
        return
    log.info(
        "kafka_started",
        address=bootstrap,
        pid=pending.pid,
        duration_s=since(pending.started),
        log=str(paths.server_log),
    )


def stop(settings: StackSettings) -> None:
    """SIGTERM (controlled shutdown), then SIGKILL if the broker hangs."""
    paths = KafkaPaths.of(settings)
    pid = running_pid(paths.pid_file, paths.markers)
    if pid is None:
        if not forget_stale_pid(paths.pid_file, "kafka"):
            log.info("kafka_not_running")
        return
    started = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_gone(pid, paths.markers, STOP_TIMEOUT_S):
        log.warning("kafka_killed", pid=pid, reason=f"no exit {STOP_TIMEOUT_S:.0f} s after SIGTERM")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(pid, paths.markers, 10.0)
    paths.pid_file.unlink(missing_ok=True)
    log.info("kafka_stopped", pid=pid, duration_s=since(started))


def age_s(settings: StackSettings) -> float | None:
    """How long the stack's own broker has run; None when it is not running or external.

    A broker in its first minute answers produce and fetch requests while its JIT compiles
    them: latency measured then is the JVM's warm-up (bench.end_to_end warms it first)."""
    if settings.external_kafka is not None:
        return None
    paths = KafkaPaths.of(settings)
    pid = running_pid(paths.pid_file, paths.markers)
    return None if pid is None else process_age_s(pid)


def status(settings: StackSettings) -> ServiceStatus:
    """The broker's state, read only (an external broker is asked for metadata)."""
    if settings.external_kafka is not None:
        problem = probe(settings.external_kafka, 5.0, settings.external_kafka_security)
        detail = "external, answers" if problem is None else f"external, no answer: {problem}"
        return ServiceStatus("kafka", problem is None, settings.external_kafka, None, detail)
    paths = KafkaPaths.of(settings)
    address = f"127.0.0.1:{settings.kafka_port}"
    pid = running_pid(paths.pid_file, paths.markers)
    if pid is None:
        return ServiceStatus("kafka", False, address, None, stopped_detail(paths.pid_file))
    mode = (
        f"locked down (SASL/SCRAM, ACLs; TLS on {settings.tls_port}); "
        if is_secure(settings)
        else ""
    )
    if not port_open(settings.kafka_port):
        detail = f"starting; {mode}log {paths.server_log}"
        return ServiceStatus("kafka", False, address, pid, detail)
    return ServiceStatus("kafka", True, address, pid, f"{mode}log {paths.server_log}")


def check_external(bootstrap: str, client_security: KafkaSecurity) -> None:
    """Refuse to go on when the user's broker (``TECHX_KAFKA_BOOTSTRAP``) does not answer."""
    problem = probe(bootstrap, 10.0, client_security)
    if problem is not None:
        raise StackError(
            f"the Kafka at TECHX_KAFKA_BOOTSTRAP={bootstrap} does not answer: {problem}",
            hint="start that broker, or unset TECHX_KAFKA_BOOTSTRAP to run the local one",
        )
    log.info("kafka_external_checked", address=bootstrap)


def probe(bootstrap: str, timeout_s: float, security: KafkaSecurity) -> str | None:
    """None when a metadata request succeeds, else why not (a port that accepts is not enough).

    ``security`` is how to connect: the admin's SCRAM login on a locked-down local broker,
    the engine's ``TECHX_KAFKA_*`` settings on the user's broker.
    """
    return run_async(_answers(bootstrap, timeout_s, security))


async def _answers(bootstrap: str, timeout_s: float, security: KafkaSecurity) -> str | None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        **security.client_options(),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
    except Exception as e:
        return describe(e)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return None


def _java_command(java: str, paths: KafkaPaths) -> list[str]:
    return [
        java,
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={paths.logs}",
        f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}",
        "-cp",
        f"{paths.libs}/*",
    ]


def _ensure_jars(paths: KafkaPaths) -> None:
    """Fetch the broker's jars unless a completed fetch of the same POM is cached.

    Maven copies into a scratch folder that replaces ``libs`` only once it finished, and the
    marker (the POM's digest) is written last, so an interrupted fetch is simply redone.
    """
    pom = DEPLOY_DIR / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    with contextlib.suppress(OSError):
        if paths.libs_marker.read_text(encoding="ascii").strip() == digest:
            return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingToolError(
            "mvn is not installed; it fetches the Kafka jars once", hint="apt-get install maven"
        )
    started = time.monotonic()
    scratch = paths.root / "libs.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    # Maven's total is not known before it resolves the tree, so the count has no total:
    # files fetched and time so far (a bar on a terminal, a line every few seconds else).
    with Progress("fetching the Kafka jars (first time only)", None, "files") as progress:
        run_streaming(
            [
                mvn,
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={scratch}",
                "-DincludeScope=runtime",
            ],
            what="fetch the Kafka jars with Maven",
            hint="Maven needs Maven Central, or a mirror in ~/.m2/settings.xml",
            cwd=DEPLOY_DIR,
            timeout=MAVEN_TIMEOUT_S,
            on_line=lambda line: progress.update(1 if "Downloaded from" in line else 0),
        )
    jars = list(scratch.glob("*.jar"))
    if not any(jar.name.startswith("kafka_2.13-") for jar in jars):
        raise StackError(
            f"Maven finished but {scratch} holds no kafka_2.13 jar", hint=f"check {pom}"
        )
    size_mb = sum(jar.stat().st_size for jar in jars) / 1e6
    shutil.rmtree(paths.libs, ignore_errors=True)
    scratch.rename(paths.libs)
    write_atomic(paths.libs_marker, f"{digest}\n")
    log.info(
        "kafka_jars_fetched",
        jars=len(jars),
        size_mb=round(size_mb, 1),
        duration_s=since(started),
        into=str(paths.libs),
    )


def _ensure_storage(paths: KafkaPaths, java: str, passwords: dict[str, str] | None) -> None:
    """Format the KRaft log folder once: a fresh cluster id, this node as the only voter, and
    for a locked-down broker the SCRAM credentials of every principal (``passwords``)."""
    if paths.formatted:
        return
    started = time.monotonic()
    paths.secure_marker.unlink(missing_ok=True)
    tool = [*_java_command(java, paths), "kafka.tools.StorageTool"]
    cluster_id = run(
        [*tool, "random-uuid"], what="make a Kafka cluster id", timeout=120
    ).stdout.strip()
    scram = [] if passwords is None else security.scram_arguments(passwords)
    run(
        [*tool, "format", "--standalone", "-t", cluster_id, "-c", str(paths.config), *scram],
        what="format the Kafka storage",
        timeout=120,
    )
    if passwords is not None:
        write_atomic(paths.secure_marker, "SCRAM-SHA-512 users and ACLs: devstack/security.py\n")
    log.info(
        "kafka_storage_formatted",
        cluster_id=cluster_id,
        data=str(paths.data),
        duration_s=since(started),
        scram_users=sorted(passwords or ()),
    )
