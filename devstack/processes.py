"""Supervising processes we did not keep as children: PID files, markers, tools, waiting.

A PID file outlives its process and the kernel reuses PIDs, so a recorded PID counts as ours
only while its command line still holds the markers we launched it with. Tools run to
completion through :func:`run`, whose failures become StackErrors quoting their output.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from devstack.errors import MissingToolError, StackError, StackTimeoutError

log = structlog.get_logger()

_T = TypeVar("_T")
#: The last characters of a failed tool's output that an error quotes.
OUTPUT_QUOTED = 2000


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One line of ``status``: is the service there, where, and what to look at."""

    name: str
    running: bool
    address: str
    pid: int | None
    detail: str


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

    "A process with this PID exists" is not enough: the command line must still be the one
    we started. Zombies have an empty command line and count as gone.
    """
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False
    command = raw.replace(b"\0", b" ").decode(errors="replace")
    return bool(command.strip()) and all(marker in command for marker in markers)


def _stat_fields(pid: int, proc: Path) -> list[str]:
    """``/proc/<pid>/stat`` from field 3 on: the command name (field 2) may hold spaces and
    parentheses, so the fields are counted after its last ")"."""
    return (proc / str(pid) / "stat").read_text().rpartition(")")[2].split()


def process_cpu_s(pid: int, proc: Path = Path("/proc")) -> float:
    """User plus system CPU seconds ``pid`` has used so far (fields 14 and 15): what a
    command costs a process, whatever else competes for the machine."""
    fields = _stat_fields(pid, proc)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_age_s(pid: int, proc: Path = Path("/proc")) -> float | None:
    """Seconds since ``pid`` started, from its start time (field 22, clock ticks since boot)
    and ``/proc/uptime``; None when either cannot be read."""
    try:
        started_ticks = int(_stat_fields(pid, proc)[19])
        uptime_s = float((proc / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime_s - started_ticks / os.sysconf("SC_CLK_TCK"))


def running_pid(pid_file: Path, markers: Sequence[str]) -> int | None:
    """The PID recorded in ``pid_file`` if that process is alive and still ours."""
    pid = read_pid_file(pid_file)
    if pid is not None and process_matches(pid, markers):
        return pid
    return None


def forget_stale_pid(pid_file: Path, service: str) -> bool:
    """Remove a PID file whose process is gone; True if there was one."""
    pid = read_pid_file(pid_file)
    if pid is None and not pid_file.exists():
        return False
    pid_file.unlink(missing_ok=True)
    log.info(f"{service}_stale_pid_file_removed", pid=pid, reason="process gone or not ours")
    return True


def stopped_detail(pid_file: Path) -> str:
    """How ``status`` describes a service that does not run, stale PID file included."""
    recorded = read_pid_file(pid_file)
    return "not running" if recorded is None else f"not running (stale PID file: {recorded})"


def wait_gone(pid: int, markers: Sequence[str], timeout_s: float) -> bool:
    """Poll until the process is gone; False if it still runs after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while process_matches(pid, markers):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@contextlib.contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """Serialise ``up``/``down`` on one state dir (two terminals, parallel test sessions)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "stack.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run(
    command: list[str],
    *,
    what: str,
    timeout: float,
    cwd: Path | None = None,
    stdin: str | None = None,
    new_session: bool = False,
    hint: str = "",
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
        raise MissingToolError(f"cannot {what}: {e}", hint=hint) from e
    except subprocess.TimeoutExpired as e:
        raise StackTimeoutError(
            f"cannot {what}: no answer within {timeout:.0f} s", hint=hint
        ) from e
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-OUTPUT_QUOTED:]
        raise StackError(f"cannot {what} (exit {result.returncode})", hint=hint, output=output)
    return result


def run_streaming(
    command: list[str],
    *,
    what: str,
    timeout: float,
    on_line: Callable[[str], None],
    cwd: Path | None = None,
    hint: str = "",
) -> None:
    """Run a tool to completion, handing each line of its output to ``on_line`` as it comes
    (a progress display); a failure becomes a StackError that quotes its last lines."""
    try:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=cwd,
        )
    except FileNotFoundError as e:
        raise MissingToolError(f"cannot {what}: {e}", hint=hint) from e
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        process.kill()

    killer = threading.Timer(timeout, expire)
    killer.start()
    tail: deque[str] = deque(maxlen=40)
    try:
        for line in process.stdout or ():
            tail.append(line)
            on_line(line)
        returncode = process.wait()
    finally:
        killer.cancel()
        if process.poll() is None:  # on_line raised (KeyboardInterrupt): leave no orphan
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()  # else the pipe is closed by the collector, with a warning
    if expired.is_set():
        raise StackTimeoutError(f"cannot {what}: no answer within {timeout:.0f} s", hint=hint)
    if returncode != 0:
        output = "".join(tail).strip()[-OUTPUT_QUOTED:]
        raise StackError(f"cannot {what} (exit {returncode})", hint=hint, output=output)


def run_async(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a probe on a private event loop, so callers inside a running loop work too."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="devstack") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def describe(error: BaseException) -> str:
    """``Class: message`` once (aiokafka's messages already start with their class name)."""
    text = str(error)
    name = type(error).__name__
    return text if text.startswith(name) else f"{name}: {text}"


def log_contains(path: Path, offset: int, needle: str) -> bool:
    """Whether ``needle`` was logged after ``offset`` (from the start if the log rolled over)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(offset if size >= offset else 0)
            return needle.encode() in handle.read()
    except OSError:
        return False


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log, headed by its path; empty when there is no such log."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return f"--- last lines of {path}:\n" + "\n".join(text.splitlines()[-lines:]) + "\n"


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write through a scratch file, so a reader never sees half a PID file or config.

    The scratch file has ``mode`` before anything is written to it, so a file holding a
    password (a locked-down broker's config: 0o600) is never readable by others, not even
    for a moment.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.unlink(missing_ok=True)
    descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(descriptor, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    scratch.replace(path)


def since(started: float) -> float:
    """Seconds since a ``time.monotonic()`` reading, rounded for logs."""
    return round(time.monotonic() - started, 2)
