"""The local stack: a single-node Kafka broker and a private PostgreSQL cluster, no Docker.

Kafka runs from jars fetched once with Maven (``deploy/local/pom.xml``) in KRaft mode;
PostgreSQL 15 runs from the distribution's binaries on a data folder of its own. ``up`` is
idempotent, ``down`` stops only what ``up`` started (by the PIDs it recorded) and stale PID
files are recognised, so an interrupted session never leaves the next one confused.

The functions are synchronous because the CLI and pytest fixtures call them once; from
async code use ``await asyncio.to_thread(stack.up, settings)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import string
import subprocess
import time
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog
from aiokafka.admin import AIOKafkaAdminClient

from engine.errors import MissingToolError, StackError
from engine.settings import PROJECT_ROOT, Settings

log = structlog.get_logger()

DEPLOY_DIR = PROJECT_ROOT / "deploy" / "local"
DEFAULT_PG_BIN = Path("/usr/lib/postgresql/15/bin")
#: Role and database of the local cluster; the default ``TECHX_DATABASE_URL`` points at them.
ROLE = "techx"
DATABASE = "techx"

KAFKA_READY_TIMEOUT_S = 60.0
KAFKA_STOP_TIMEOUT_S = 30.0
POSTGRES_TIMEOUT_S = 60
MAVEN_TIMEOUT_S = 900.0
MIN_JAVA = 17
#: What the broker writes to server.log once it serves clients (KafkaRaftServer.startup).
KAFKA_STARTED_LINE = "Kafka Server started"
#: Unix sockets paths are limited to 107 bytes; keep a margin for ``.s.PGSQL.<port>``.
MAX_SOCKET_DIR_LEN = 90

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One line of ``techx status``: is the service there, where, and what to look at."""

    name: str
    running: bool
    address: str
    pid: int | None
    detail: str


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

    @classmethod
    def of(cls, settings: Settings) -> KafkaPaths:
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
        )


@dataclass(frozen=True, slots=True)
class PostgresPaths:
    """Where the private cluster lives; ``home`` is under /tmp when running as root."""

    home: Path
    data: Path
    log_file: Path
    socket_dir: Path
    pid_file: Path

    @classmethod
    def of(cls, settings: Settings, *, as_root: bool) -> PostgresPaths:
        home = postgres_home(settings, as_root=as_root)
        socket_dir = home if len(str(home)) <= MAX_SOCKET_DIR_LEN else Path("/tmp")
        return cls(
            home=home,
            data=home / "data",
            log_file=home / "postgres.log",
            socket_dir=socket_dir,
            pid_file=settings.state_dir.resolve() / "postgres" / "postgres.pid",
        )


# --------------------------------------------------------------------------- pure helpers


def render_server_properties(settings: Settings, template: str | None = None) -> str:
    """Fill the broker config template with this instance's ports and data folder."""
    if template is None:
        template = (DEPLOY_DIR / "server.properties.template").read_text(encoding="utf-8")
    return string.Template(template).substitute(
        kafka_port=settings.kafka_port,
        controller_port=controller_port(settings),
        log_dirs=str(KafkaPaths.of(settings).data),
    )


def controller_port(settings: Settings) -> int:
    """The KRaft controller listens right above the client port."""
    return settings.kafka_port + 1


def postgres_home(settings: Settings, *, as_root: bool) -> Path:
    """Folder for the cluster's data, log and socket.

    As root, initdb and pg_ctl run as the ``postgres`` user, which cannot enter a clone under
    /root; the folder then goes to /tmp, named after the state dir and port so that two
    checkouts (or two ports) never share a cluster.
    """
    if not as_root:
        return settings.state_dir.resolve() / "postgres"
    digest = hashlib.sha256(str(settings.state_dir.resolve()).encode()).hexdigest()[:10]
    return Path("/tmp") / f"techx-pg-{digest}-{settings.postgres_port}"


def read_pid_file(path: Path) -> int | None:
    """The PID recorded in ``path``, or None when the file is missing or not a PID."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    first = text.splitlines()[0] if text else ""
    return int(first) if first.isdigit() and int(first) > 0 else None


def process_matches(pid: int, markers: Sequence[str], proc: Path = Path("/proc")) -> bool:
    """True when ``pid`` is alive and its command line holds every marker.

    A PID file outlives its process and the kernel reuses PIDs, so "a process with this PID
    exists" is not enough: the command line must still be the one we started. Zombies have
    an empty command line and count as gone.
    """
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False
    command = raw.replace(b"\0", b" ").decode(errors="replace")
    return bool(command.strip()) and all(marker in command for marker in markers)


def redact(dsn: str) -> str:
    """The DSN without its password, for logs and status lines."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# --------------------------------------------------------------------------- public API


def up(settings: Settings) -> None:
    """Start whatever of Kafka and PostgreSQL is not running yet, and wait until both serve.

    Every tool and port is checked before anything starts, so a missing program leaves
    nothing half-up. Kafka is launched first and awaited last: its JVM start overlaps
    PostgreSQL's.
    """
    started = time.monotonic()
    with _stack_lock(settings):
        java = None if settings.external_kafka else _find_java()
        pg_bin = None if settings.external_database else _postgres_preflight(settings)
        if settings.external_kafka:
            _check_external_kafka(settings)
        if settings.external_database:
            _check_external_database(settings)
        pending = None if java is None else _launch_kafka(settings, java)
        if pg_bin is not None:
            _start_postgres(settings, pg_bin)
        if pending is not None:
            _await_kafka(settings, pending)
    log.info("stack_up", duration_s=_since(started), state_dir=str(settings.state_dir))


def down(settings: Settings) -> None:
    """Stop the broker and the cluster that ``up`` started; external servers are left alone."""
    with _stack_lock(settings):
        if not settings.external_kafka:
            _stop_kafka(settings)
        if not settings.external_database:
            _stop_postgres(settings)


def status(settings: Settings) -> list[ServiceStatus]:
    """Report each service without changing anything (a stale PID file is only reported)."""
    kafka = _external_kafka_status(settings) if settings.external_kafka else _kafka_status(settings)
    postgres = (
        _external_database_status(settings)
        if settings.external_database
        else _postgres_status(settings)
    )
    return [kafka, postgres]


# --------------------------------------------------------------------------- Kafka


@dataclass(frozen=True, slots=True)
class _PendingKafka:
    """A broker not yet known to serve; ``log_offset`` is None when an earlier ``up`` started it."""

    pid: int
    log_offset: int | None
    started: float


def _kafka_markers(paths: KafkaPaths) -> tuple[str, ...]:
    return ("kafka.Kafka", str(paths.config))


def _running_kafka_pid(paths: KafkaPaths) -> int | None:
    pid = read_pid_file(paths.pid_file)
    if pid is not None and process_matches(pid, _kafka_markers(paths)):
        return pid
    return None


def _launch_kafka(settings: Settings, java: str) -> _PendingKafka:
    """Fetch jars, format storage and start the broker detached, unless it already runs."""
    paths = KafkaPaths.of(settings)
    address = f"127.0.0.1:{settings.kafka_port}"
    pid = _running_kafka_pid(paths)
    if pid is not None:
        log.info("kafka_already_running", address=address, pid=pid)
        return _PendingKafka(pid=pid, log_offset=None, started=time.monotonic())
    _forget_stale_pid(paths.pid_file, "kafka")
    for port in (settings.kafka_port, controller_port(settings)):
        if _port_open(port):
            raise StackError(
                f"port {port} on 127.0.0.1 is taken by a process techx did not start; "
                "stop it or choose another TECHX_KAFKA_PORT (the controller uses port + 1)"
            )
    _ensure_kafka_jars(paths)
    paths.logs.mkdir(parents=True, exist_ok=True)
    _write_atomic(paths.config, render_server_properties(settings))
    _ensure_kafka_storage(paths, java)

    log_offset = paths.server_log.stat().st_size if paths.server_log.exists() else 0
    command = [
        *_java_command(java, paths),
        "-Xmx512m",
        "-XX:+ExitOnOutOfMemoryError",
        "kafka.Kafka",
        str(paths.config),
    ]
    # Launched through a shell that backgrounds the JVM and exits: the broker is then not a
    # child of this process, so no zombie and no "subprocess still running" warning.
    launcher = 'out=$1; shift; "$@" >>"$out" 2>&1 </dev/null & echo $!'
    result = _run(
        ["sh", "-c", launcher, "techx-kafka", str(paths.console_log), *command],
        what="launch the Kafka broker",
        cwd=paths.root,
        timeout=30,
        new_session=True,
    )
    pid = int(result.stdout.strip())
    _write_atomic(paths.pid_file, f"{pid}\n")
    log.info("kafka_launched", address=address, pid=pid, log=str(paths.server_log))
    return _PendingKafka(pid=pid, log_offset=log_offset, started=time.monotonic())


def _await_kafka(settings: Settings, pending: _PendingKafka) -> None:
    """Poll until the broker logged its start, accepts connections and answers metadata."""
    paths = KafkaPaths.of(settings)
    bootstrap = f"127.0.0.1:{settings.kafka_port}"
    deadline = pending.started + KAFKA_READY_TIMEOUT_S
    problem = "not started yet"
    while True:
        if not process_matches(pending.pid, _kafka_markers(paths)):
            raise StackError(
                f"the Kafka broker (pid {pending.pid}) exited while starting; read "
                f"{paths.server_log} and {paths.console_log}\n"
                + _tail(paths.server_log)
                + _tail(paths.console_log)
            )
        logged = pending.log_offset is None or _log_contains(
            paths.server_log, pending.log_offset, KAFKA_STARTED_LINE
        )
        if logged and _port_open(settings.kafka_port):
            answer = _probe_kafka(bootstrap, timeout_s=5.0)
            if answer is None:
                break
            problem = answer
        if time.monotonic() > deadline:
            raise StackError(
                f"the Kafka broker (pid {pending.pid}) did not answer on {bootstrap} within "
                f"{KAFKA_READY_TIMEOUT_S:.0f} s ({problem}); read {paths.server_log}"
            )
        time.sleep(0.25)
    if pending.log_offset is None:
        return
    log.info(
        "kafka_started",
        address=bootstrap,
        pid=pending.pid,
        duration_s=_since(pending.started),
        log=str(paths.server_log),
    )


def _stop_kafka(settings: Settings) -> None:
    """SIGTERM (controlled shutdown), then SIGKILL if the broker hangs."""
    paths = KafkaPaths.of(settings)
    pid = _running_kafka_pid(paths)
    if pid is None:
        if not _forget_stale_pid(paths.pid_file, "kafka"):
            log.info("kafka_not_running")
        return
    started = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, _kafka_markers(paths), KAFKA_STOP_TIMEOUT_S):
        log.warning(
            "kafka_killed", pid=pid, reason=f"no exit {KAFKA_STOP_TIMEOUT_S:.0f} s after SIGTERM"
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, _kafka_markers(paths), 10.0)
    paths.pid_file.unlink(missing_ok=True)
    log.info("kafka_stopped", pid=pid, duration_s=_since(started))


def _kafka_status(settings: Settings) -> ServiceStatus:
    paths = KafkaPaths.of(settings)
    address = f"127.0.0.1:{settings.kafka_port}"
    pid = _running_kafka_pid(paths)
    if pid is None:
        recorded = read_pid_file(paths.pid_file)
        detail = "not running" if recorded is None else f"not running (stale PID file: {recorded})"
        return ServiceStatus("kafka", False, address, None, detail)
    if not _port_open(settings.kafka_port):
        return ServiceStatus("kafka", False, address, pid, f"starting; log {paths.server_log}")
    return ServiceStatus("kafka", True, address, pid, f"log {paths.server_log}")


def _check_external_kafka(settings: Settings) -> None:
    problem = _probe_kafka(settings.kafka_bootstrap, timeout_s=10.0)
    if problem is not None:
        raise StackError(
            f"the Kafka at TECHX_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} does not answer: "
            f"{problem}"
        )
    log.info("kafka_external_checked", address=settings.kafka_bootstrap)


def _external_kafka_status(settings: Settings) -> ServiceStatus:
    problem = _probe_kafka(settings.kafka_bootstrap, timeout_s=5.0)
    detail = "external, answers" if problem is None else f"external, no answer: {problem}"
    return ServiceStatus("kafka", problem is None, settings.kafka_bootstrap, None, detail)


def _find_java() -> str:
    """``$JAVA_HOME/bin/java`` or ``java`` on PATH, at least Java 17 (Kafka 4's minimum)."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    java = str(candidate) if candidate and candidate.exists() else shutil.which("java")
    if java is None:
        raise MissingToolError(
            "java is not installed; Kafka needs Java 17 or newer: "
            "apt-get install openjdk-17-jre-headless"
        )
    result = _run([java, "-version"], what="ask java for its version", timeout=30)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match:
        major = int(match[1]) if match[1] != "1" else int(match[2] or 0)
        if major < MIN_JAVA:
            raise MissingToolError(
                f"{java} is Java {major}; Kafka 4 needs {MIN_JAVA} or newer: "
                "apt-get install openjdk-17-jre-headless"
            )
    return java


def _java_command(java: str, paths: KafkaPaths) -> list[str]:
    return [
        java,
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={paths.logs}",
        f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}",
        "-cp",
        f"{paths.libs}/*",
    ]


def _pom_digest() -> str:
    return hashlib.sha256((DEPLOY_DIR / "pom.xml").read_bytes()).hexdigest()


def _ensure_kafka_jars(paths: KafkaPaths) -> None:
    """Fetch the broker's jars unless a completed fetch of the same POM is cached.

    Maven copies into a scratch folder that replaces ``libs`` only once it finished, and the
    marker (the POM's digest) is written last, so an interrupted fetch is simply redone.
    """
    digest = _pom_digest()
    with contextlib.suppress(OSError):
        if paths.libs_marker.read_text(encoding="ascii").strip() == digest:
            return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingToolError(
            "mvn is not installed; it fetches the Kafka jars once: apt-get install maven"
        )
    started = time.monotonic()
    scratch = paths.root / "libs.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    _run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(DEPLOY_DIR / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={scratch}",
            "-DincludeScope=runtime",
        ],
        what="fetch the Kafka jars with Maven (needs Maven Central or a mirror)",
        cwd=DEPLOY_DIR,
        timeout=MAVEN_TIMEOUT_S,
    )
    jars = list(scratch.glob("*.jar"))
    if not any(jar.name.startswith("kafka_2.13-") for jar in jars):
        raise StackError(f"Maven finished but {scratch} holds no kafka_2.13 jar")
    size_mb = sum(jar.stat().st_size for jar in jars) / 1e6
    shutil.rmtree(paths.libs, ignore_errors=True)
    scratch.rename(paths.libs)
    _write_atomic(paths.libs_marker, f"{digest}\n")
    log.info(
        "kafka_jars_fetched",
        jars=len(jars),
        size_mb=round(size_mb, 1),
        duration_s=_since(started),
        into=str(paths.libs),
    )


def _ensure_kafka_storage(paths: KafkaPaths, java: str) -> None:
    """Format the KRaft log folder once: a fresh cluster id, this node as the only voter."""
    if (paths.data / "meta.properties").exists():
        return
    started = time.monotonic()
    tool = [*_java_command(java, paths), "kafka.tools.StorageTool"]
    cluster_id = _run(
        [*tool, "random-uuid"], what="make a Kafka cluster id", timeout=120
    ).stdout.strip()
    _run(
        [*tool, "format", "--standalone", "-t", cluster_id, "-c", str(paths.config)],
        what="format the Kafka storage",
        timeout=120,
    )
    log.info(
        "kafka_storage_formatted",
        cluster_id=cluster_id,
        data=str(paths.data),
        duration_s=_since(started),
    )


async def _kafka_answers(bootstrap: str, timeout_s: float) -> str | None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
    except Exception as e:
        return _describe(e)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return None


def _probe_kafka(bootstrap: str, timeout_s: float) -> str | None:
    """None when a metadata request succeeds, else why not (a port that accepts is not enough)."""
    return _run_async(_kafka_answers(bootstrap, timeout_s))


# --------------------------------------------------------------------------- PostgreSQL


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _postgres_markers(paths: PostgresPaths) -> tuple[str, ...]:
    return ("postgres", str(paths.data))


def _running_postgres_pid(paths: PostgresPaths) -> int | None:
    """The postmaster's PID from its own ``postmaster.pid``, if that process is alive."""
    pid = read_pid_file(paths.data / "postmaster.pid")
    if pid is not None and process_matches(pid, _postgres_markers(paths)):
        return pid
    return None


def _pg_bin(env: Mapping[str, str] | None = None) -> Path:
    """PostgreSQL's binaries: ``TECHX_PG_BIN`` or Debian's PostgreSQL 15 location."""
    env = os.environ if env is None else env
    bin_dir = Path(env.get("TECHX_PG_BIN", str(DEFAULT_PG_BIN)))
    missing = [
        name for name in ("initdb", "pg_ctl", "postgres", "psql") if not (bin_dir / name).exists()
    ]
    if missing:
        raise MissingToolError(
            f"PostgreSQL binaries {', '.join(missing)} not found in {bin_dir}: "
            "apt-get install postgresql-15, or set TECHX_PG_BIN to the folder holding pg_ctl"
        )
    return bin_dir


def _as_cluster_owner(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root, so root runs its tools as the ``postgres`` user."""
    if not _running_as_root():
        return command
    runuser = shutil.which("runuser")
    if runuser is None:
        raise MissingToolError("runuser is not installed: apt-get install util-linux")
    return [runuser, "-u", "postgres", "--", *command]


def _cluster_owner() -> pwd.struct_passwd | None:
    """The ``postgres`` system user when running as root, else None (we own the cluster)."""
    if not _running_as_root():
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError as e:
        raise MissingToolError(
            "there is no 'postgres' system user to run PostgreSQL as root: "
            "apt-get install postgresql-15 creates it"
        ) from e


def _prepare_postgres_home(paths: PostgresPaths) -> None:
    """Create the cluster's folder; as root, hand it to ``postgres`` (and refuse a squatter)."""
    paths.pid_file.parent.mkdir(parents=True, exist_ok=True)
    owner = _cluster_owner()
    if owner is None:
        paths.home.mkdir(parents=True, exist_ok=True)
        return
    paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = paths.home.stat().st_uid
    if found not in (0, owner.pw_uid):
        raise StackError(f"{paths.home} belongs to uid {found}, not postgres; remove it")
    for folder, _dirs, files in os.walk(paths.home):
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        for name in files:
            os.chown(Path(folder) / name, owner.pw_uid, owner.pw_gid)


def _postgres_preflight(settings: Settings) -> Path:
    """Check binaries, the ``postgres`` user (as root) and the port before anything starts."""
    bin_dir = _pg_bin()
    _cluster_owner()
    _as_cluster_owner([])
    paths = PostgresPaths.of(settings, as_root=_running_as_root())
    if _running_postgres_pid(paths) is None and _port_open(settings.postgres_port):
        raise StackError(
            f"port {settings.postgres_port} on 127.0.0.1 is taken by a process techx did not "
            "start; stop it or choose another TECHX_POSTGRES_PORT"
        )
    return bin_dir


def _start_postgres(settings: Settings, bin_dir: Path) -> None:
    """initdb on first use, pg_ctl start, then make sure the techx role and database exist."""
    paths = PostgresPaths.of(settings, as_root=_running_as_root())
    address = f"127.0.0.1:{settings.postgres_port}"
    pid = _running_postgres_pid(paths)
    if pid is not None:
        _write_atomic(paths.pid_file, f"{pid}\n")
        log.info("postgres_already_running", address=address, pid=pid, data=str(paths.data))
        _ensure_role_and_database(settings, bin_dir)
        return
    _forget_stale_pid(paths.pid_file, "postgres")
    _prepare_postgres_home(paths)
    if not (paths.data / "PG_VERSION").exists():
        started = time.monotonic()
        shutil.rmtree(paths.data, ignore_errors=True)  # a half-finished initdb
        _run(
            _as_cluster_owner(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(paths.data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            ),
            what="create the PostgreSQL cluster (initdb)",
            cwd=paths.home,
            timeout=POSTGRES_TIMEOUT_S * 2,
        )
        log.info("postgres_initialised", data=str(paths.data), duration_s=_since(started))
    started = time.monotonic()
    # pg_ctl hands these to a shell, hence the quoting.
    options = (
        f"-p {settings.postgres_port} -k {shlex.quote(str(paths.socket_dir))} "
        "-c listen_addresses=127.0.0.1"
    )
    _run(
        _as_cluster_owner(
            [
                str(bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(paths.data),
                "-l",
                str(paths.log_file),
                "-w",
                "-t",
                str(POSTGRES_TIMEOUT_S),
                "-o",
                options,
            ]
        ),
        what=f"start PostgreSQL (read {paths.log_file})",
        cwd=paths.home,
        timeout=POSTGRES_TIMEOUT_S + 10,
        new_session=True,
    )
    pid = _running_postgres_pid(paths)
    if pid is None:
        raise StackError(f"pg_ctl reported a start but no postmaster runs; read {paths.log_file}")
    _write_atomic(paths.pid_file, f"{pid}\n")
    _ensure_role_and_database(settings, bin_dir)
    log.info(
        "postgres_started",
        address=address,
        pid=pid,
        dsn=settings.database_url,
        duration_s=_since(started),
        log=str(paths.log_file),
    )


_ROLE_AND_DATABASE_SQL = f"""
SELECT 'CREATE ROLE {ROLE} LOGIN CREATEDB SUPERUSER'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') \\gexec
SELECT 'CREATE DATABASE {DATABASE} OWNER {ROLE}'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE}') \\gexec
"""


def _ensure_role_and_database(settings: Settings, bin_dir: Path) -> None:
    """Create the ``techx`` role (superuser: tests create databases) and database if absent."""
    _run(
        [
            str(bin_dir / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(settings.postgres_port),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ],
        what="create the techx role and database",
        timeout=POSTGRES_TIMEOUT_S,
        stdin=_ROLE_AND_DATABASE_SQL,
    )


def _stop_postgres(settings: Settings) -> None:
    """``pg_ctl stop -m fast`` on the cluster's own data folder (nothing else is touched)."""
    paths = PostgresPaths.of(settings, as_root=_running_as_root())
    pid = _running_postgres_pid(paths)
    if pid is None:
        if not _forget_stale_pid(paths.pid_file, "postgres"):
            log.info("postgres_not_running")
        return
    started = time.monotonic()
    _run(
        _as_cluster_owner(
            [
                str(_pg_bin() / "pg_ctl"),
                "stop",
                "-D",
                str(paths.data),
                "-m",
                "fast",
                "-w",
                "-t",
                str(POSTGRES_TIMEOUT_S),
            ]
        ),
        what=f"stop PostgreSQL (read {paths.log_file})",
        cwd=paths.home,
        timeout=POSTGRES_TIMEOUT_S + 10,
    )
    paths.pid_file.unlink(missing_ok=True)
    log.info("postgres_stopped", pid=pid, duration_s=_since(started))


def _postgres_status(settings: Settings) -> ServiceStatus:
    paths = PostgresPaths.of(settings, as_root=_running_as_root())
    address = f"127.0.0.1:{settings.postgres_port}"
    pid = _running_postgres_pid(paths)
    if pid is None:
        recorded = read_pid_file(paths.pid_file)
        detail = "not running" if recorded is None else f"not running (stale PID file: {recorded})"
        return ServiceStatus("postgres", False, address, None, f"{detail}; data {paths.data}")
    running = _port_open(settings.postgres_port)
    detail = f"{'' if running else 'starting; '}data {paths.data}; log {paths.log_file}"
    return ServiceStatus("postgres", running, address, pid, detail)


async def _database_answers(dsn: str, timeout_s: float) -> str | None:
    try:
        connection = await asyncpg.connect(dsn, timeout=timeout_s)
    except Exception as e:
        return _describe(e)
    try:
        await connection.fetchval("SELECT 1", timeout=timeout_s)
    except Exception as e:
        return _describe(e)
    finally:
        await connection.close()
    return None


def _check_external_database(settings: Settings) -> None:
    problem = _run_async(_database_answers(settings.database_url, 10.0))
    if problem is not None:
        raise StackError(
            f"the PostgreSQL at TECHX_DATABASE_URL={redact(settings.database_url)} does not "
            f"answer: {problem}"
        )
    log.info("postgres_external_checked", dsn=redact(settings.database_url))


def _external_database_status(settings: Settings) -> ServiceStatus:
    problem = _run_async(_database_answers(settings.database_url, 5.0))
    detail = "external, answers" if problem is None else f"external, no answer: {problem}"
    return ServiceStatus("postgres", problem is None, redact(settings.database_url), None, detail)


# --------------------------------------------------------------------------- plumbing


@contextlib.contextmanager
def _stack_lock(settings: Settings) -> Iterator[None]:
    """Serialise ``up``/``down`` on one state dir (two terminals, parallel test sessions)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with (settings.state_dir / "stack.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(
    command: list[str],
    *,
    what: str,
    timeout: float,
    cwd: Path | None = None,
    stdin: str | None = None,
    new_session: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a tool to completion; a failure becomes a StackError that quotes its output."""
    try:
        result = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=timeout,
            check=False,
            start_new_session=new_session,
        )
    except FileNotFoundError as e:
        raise MissingToolError(f"cannot {what}: {e}") from e
    except subprocess.TimeoutExpired as e:
        raise StackError(f"cannot {what}: no answer within {timeout:.0f} s") from e
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-2000:]
        raise StackError(f"cannot {what} (exit {result.returncode}):\n{output}")
    return result


def _run_async(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a probe on a private event loop, so callers inside a running loop work too."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="techx-stack") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _describe(error: BaseException) -> str:
    """``Class: message`` once (aiokafka's messages already start with their class name)."""
    text = str(error)
    name = type(error).__name__
    return text if text.startswith(name) else f"{name}: {text}"


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _log_contains(path: Path, offset: int, needle: str) -> bool:
    """Whether ``needle`` was logged after ``offset`` (from the start if the log rolled over)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(offset if size >= offset else 0)
            return needle.encode() in handle.read()
    except OSError:
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return f"--- last lines of {path}:\n" + "\n".join(text.splitlines()[-lines:]) + "\n"


def _wait_gone(pid: int, markers: Sequence[str], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while process_matches(pid, markers):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _forget_stale_pid(pid_file: Path, service: str) -> bool:
    """Remove a PID file whose process is gone; True if there was one."""
    pid = read_pid_file(pid_file)
    if pid is None and not pid_file.exists():
        return False
    pid_file.unlink(missing_ok=True)
    log.info(f"{service}_stale_pid_file_removed", pid=pid, reason="process gone or not ours")
    return True


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(text, encoding="utf-8")
    scratch.replace(path)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 2)
