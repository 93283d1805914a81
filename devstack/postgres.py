"""The local PostgreSQL: a private cluster run from the distribution's binaries.

``initdb`` once, ``pg_ctl start``/``stop`` on the cluster's own data folder, and the
``techx`` role and database created if absent. PostgreSQL refuses to run as root, so as root
its tools run as the ``postgres`` user on a folder under /tmp that this user can enter.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

from devstack.errors import MissingToolError, StackError
from devstack.processes import (
    ServiceStatus,
    describe,
    forget_stale_pid,
    port_open,
    run,
    run_async,
    running_pid,
    since,
    stopped_detail,
    write_atomic,
)
from devstack.settings import DATABASE, ROLE, StackSettings, redact

log = structlog.get_logger()

TIMEOUT_S = 60
#: Unix sockets paths are limited to 107 bytes; keep a margin for ``.s.PGSQL.<port>``.
MAX_SOCKET_DIR_LEN = 90
BINARIES = ("initdb", "pg_ctl", "postgres", "psql")
INSTALL_POSTGRES = "apt-get install postgresql-15"
#: In the state dir: what tells it from an earlier state dir at the same path.
STACK_ID_FILE = "stack-id"


@dataclass(frozen=True, slots=True)
class PostgresPaths:
    """Where the private cluster lives; ``home`` is under /tmp when running as root."""

    home: Path
    data: Path
    log_file: Path
    socket_dir: Path
    pid_file: Path

    @classmethod
    def of(cls, settings: StackSettings, *, as_root: bool) -> PostgresPaths:
        home = cluster_home(settings, as_root=as_root)
        socket_dir = home if len(str(home)) <= MAX_SOCKET_DIR_LEN else Path("/tmp")
        return cls(
            home=home,
            data=home / "data",
            log_file=home / "postgres.log",
            socket_dir=socket_dir,
            pid_file=settings.state_dir.resolve() / "postgres" / "postgres.pid",
        )

    @property
    def markers(self) -> tuple[str, ...]:
        """What the postmaster's command line holds, and a reused PID's does not."""
        return ("postgres", str(self.data))

    @property
    def postmaster_pid(self) -> Path:
        """The postmaster's own PID file, the authority on whether the cluster runs."""
        return self.data / "postmaster.pid"


def cluster_home(settings: StackSettings, *, as_root: bool) -> Path:
    """Folder for the cluster's data, log and socket.

    As root, initdb and pg_ctl run as the ``postgres`` user, which cannot enter a clone under
    /root; the folder then goes to /tmp, named after the state dir, its stack id and the port,
    so that two checkouts (or two ports) never share a cluster, and neither does a state dir
    made again at the same path: a fresh clone where an old one was would otherwise find the
    old clone's settled offsets beside a new, empty broker.
    """
    if not as_root:
        return settings.state_dir.resolve() / "postgres"
    identity = str(settings.state_dir.resolve())
    stack_id = _read_stack_id(settings)
    if stack_id is not None:
        identity += f"\n{stack_id}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    return Path("/tmp") / f"techx-pg-{digest}-{settings.postgres_port}"


def claim_stack_id(settings: StackSettings) -> None:
    """Give a new state dir its own id before its cluster is made.

    A state dir that already ran PostgreSQL without one (made before stack ids) keeps none,
    so it keeps its cluster.
    """
    state_dir = settings.state_dir.resolve()
    if _read_stack_id(settings) is not None or (state_dir / "postgres").exists():
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(state_dir / STACK_ID_FILE, f"{secrets.token_hex(8)}\n")


def _read_stack_id(settings: StackSettings) -> str | None:
    path = settings.state_dir.resolve() / STACK_ID_FILE
    return path.read_text().strip() if path.exists() else None


def find_binaries(settings: StackSettings) -> Path:
    """The folder holding PostgreSQL's tools (``TECHX_PG_BIN``), once all of them are there."""
    missing = [name for name in BINARIES if not (settings.pg_bin / name).exists()]
    if missing:
        raise MissingToolError(
            f"PostgreSQL binaries {', '.join(missing)} not found in {settings.pg_bin}",
            hint=f"{INSTALL_POSTGRES}, or set TECHX_PG_BIN to the folder holding pg_ctl",
        )
    return settings.pg_bin


def preflight(settings: StackSettings) -> Path:
    """Check binaries, the ``postgres`` user (as root) and the port before anything starts."""
    bin_dir = find_binaries(settings)
    _cluster_owner()
    _as_cluster_owner([])
    paths = _paths(settings)
    if _running_pid(paths) is None and port_open(settings.postgres_port):
        raise StackError(
            f"port {settings.postgres_port} on 127.0.0.1 is taken by a process techx did not start",
            hint="stop it or choose another TECHX_POSTGRES_PORT",
        )
    return bin_dir


def start(settings: StackSettings, bin_dir: Path) -> None:
    """initdb on first use, pg_ctl start, then make sure the techx role and database exist."""
    claim_stack_id(settings)
    paths = _paths(settings)
    address = f"127.0.0.1:{settings.postgres_port}"
    pid = _running_pid(paths)
    if pid is not None:
        write_atomic(paths.pid_file, f"{pid}\n")
        log.info("postgres_already_running", address=address, pid=pid, data=str(paths.data))
        _ensure_role_and_database(settings, bin_dir)
        return
    forget_stale_pid(paths.pid_file, "postgres")
    _prepare_home(paths)
    if not (paths.data / "PG_VERSION").exists():
        _initdb(paths, bin_dir)
    started = time.monotonic()
    # pg_ctl hands these to a shell, hence the quoting.
    options = (
        f"-p {settings.postgres_port} -k {shlex.quote(str(paths.socket_dir))} "
        "-c listen_addresses=127.0.0.1"
    )
    run(
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
                str(TIMEOUT_S),
                "-o",
                options,
            ]
        ),
        what="start PostgreSQL",
        hint=f"read {paths.log_file}",
        cwd=paths.home,
        timeout=TIMEOUT_S + 10,
        new_session=True,
    )
    pid = _running_pid(paths)
    if pid is None:
        raise StackError(
            "pg_ctl reported a start but no postmaster runs", hint=f"read {paths.log_file}"
        )
    write_atomic(paths.pid_file, f"{pid}\n")
    _ensure_role_and_database(settings, bin_dir)
    log.info(
        "postgres_started",
        address=address,
        pid=pid,
        dsn=settings.database_url,
        duration_s=since(started),
        log=str(paths.log_file),
    )


def stop(settings: StackSettings) -> None:
    """``pg_ctl stop -m fast`` on the cluster's own data folder (nothing else is touched)."""
    paths = _paths(settings)
    pid = _running_pid(paths)
    if pid is None:
        if not forget_stale_pid(paths.pid_file, "postgres"):
            log.info("postgres_not_running")
        return
    started = time.monotonic()
    run(
        _as_cluster_owner(
            [
                str(find_binaries(settings) / "pg_ctl"),
                "stop",
                "-D",
                str(paths.data),
                "-m",
                "fast",
                "-w",
                "-t",
                str(TIMEOUT_S),
            ]
        ),
        what="stop PostgreSQL",
        hint=f"read {paths.log_file}",
        cwd=paths.home,
        timeout=TIMEOUT_S + 10,
    )
    paths.pid_file.unlink(missing_ok=True)
    log.info("postgres_stopped", pid=pid, duration_s=since(started))


def status(settings: StackSettings) -> ServiceStatus:
    """The cluster's state, read only (an external server is asked ``SELECT 1``)."""
    if settings.external_database is not None:
        problem = probe(settings.external_database, timeout_s=5.0)
        detail = "external, answers" if problem is None else f"external, no answer: {problem}"
        address = redact(settings.external_database)
        return ServiceStatus("postgres", problem is None, address, None, detail)
    paths = _paths(settings)
    address = f"127.0.0.1:{settings.postgres_port}"
    pid = _running_pid(paths)
    if pid is None:
        detail = f"{stopped_detail(paths.pid_file)}; data {paths.data}"
        return ServiceStatus("postgres", False, address, None, detail)
    running = port_open(settings.postgres_port)
    detail = f"{'' if running else 'starting; '}data {paths.data}; log {paths.log_file}"
    return ServiceStatus("postgres", running, address, pid, detail)


def check_external(dsn: str) -> None:
    """Refuse to go on when the user's server (``TECHX_DATABASE_URL``) does not answer."""
    problem = probe(dsn, timeout_s=10.0)
    if problem is not None:
        raise StackError(
            f"the PostgreSQL at TECHX_DATABASE_URL={redact(dsn)} does not answer: {problem}",
            hint="start that server, or unset TECHX_DATABASE_URL to run the local one",
        )
    log.info("postgres_external_checked", dsn=redact(dsn))


def probe(dsn: str, timeout_s: float) -> str | None:
    """None when the server runs ``SELECT 1`` for us, else why not."""
    return run_async(_answers(dsn, timeout_s))


async def _answers(dsn: str, timeout_s: float) -> str | None:
    try:
        connection = await asyncpg.connect(dsn, timeout=timeout_s)
    except Exception as e:
        return describe(e)
    try:
        await connection.fetchval("SELECT 1", timeout=timeout_s)
    except Exception as e:
        return describe(e)
    finally:
        await connection.close()
    return None


def running_as_root() -> bool:
    return os.geteuid() == 0


def _paths(settings: StackSettings) -> PostgresPaths:
    return PostgresPaths.of(settings, as_root=running_as_root())


def _running_pid(paths: PostgresPaths) -> int | None:
    """The postmaster's PID from its own ``postmaster.pid``, if that process is alive."""
    return running_pid(paths.postmaster_pid, paths.markers)


def _as_cluster_owner(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root, so root runs its tools as the ``postgres`` user."""
    if not running_as_root():
        return command
    runuser = shutil.which("runuser")
    if runuser is None:
        raise MissingToolError("runuser is not installed", hint="apt-get install util-linux")
    return [runuser, "-u", "postgres", "--", *command]


def _cluster_owner() -> pwd.struct_passwd | None:
    """The ``postgres`` system user when running as root, else None (we own the cluster)."""
    if not running_as_root():
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError as e:
        raise MissingToolError(
            "there is no 'postgres' system user to run PostgreSQL as root",
            hint=f"{INSTALL_POSTGRES} creates it",
        ) from e


def _prepare_home(paths: PostgresPaths) -> None:
    """Create the cluster's folder; as root, hand it to ``postgres`` (and refuse a squatter)."""
    paths.pid_file.parent.mkdir(parents=True, exist_ok=True)
    owner = _cluster_owner()
    if owner is None:
        paths.home.mkdir(parents=True, exist_ok=True)
        return
    paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = paths.home.stat().st_uid
    if found not in (0, owner.pw_uid):
        raise StackError(
            f"{paths.home} belongs to uid {found}, not postgres", hint=f"remove {paths.home}"
        )
    for folder, _dirs, files in os.walk(paths.home):
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        for name in files:
            os.chown(Path(folder) / name, owner.pw_uid, owner.pw_gid)


def _initdb(paths: PostgresPaths, bin_dir: Path) -> None:
    started = time.monotonic()
    shutil.rmtree(paths.data, ignore_errors=True)  # a half-finished initdb
    run(
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
        timeout=TIMEOUT_S * 2,
    )
    log.info("postgres_initialised", data=str(paths.data), duration_s=since(started))


_ROLE_AND_DATABASE_SQL = f"""
SELECT 'CREATE ROLE {ROLE} LOGIN CREATEDB SUPERUSER'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') \\gexec
SELECT 'CREATE DATABASE {DATABASE} OWNER {ROLE}'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE}') \\gexec
"""


def _ensure_role_and_database(settings: StackSettings, bin_dir: Path) -> None:
    """Create the ``techx`` role (superuser: tests create databases) and database if absent."""
    run(
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
        timeout=TIMEOUT_S,
        stdin=_ROLE_AND_DATABASE_SQL,
    )
