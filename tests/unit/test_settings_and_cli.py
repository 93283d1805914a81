"""Settings refuse bad TECHX_* values at start; the CLI answers with exit codes, not tracebacks;
the partitioner agrees with the Java client."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import structlog

from engine.commands.cli import EXIT_PIPE_CLOSED, main
from engine.core.partitioning import murmur2, partition_for
from engine.errors import ConfigError
from engine.settings import Settings


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("TECHX_PARTITIONS", "four", 'must be a whole number, not "four"'),
        ("TECHX_PARTITIONS", "0", "must be at least 1"),
        ("TECHX_BATCH_MAX_RECORDS", "-5", "must be at least 1"),
        ("TECHX_LOG_FORMAT", "xml", "TECHX_LOG_FORMAT must be one of auto, json, console"),
        ("TECHX_LOG_LEVEL", "verbose", "TECHX_LOG_LEVEL must be one of debug, info"),
        ("TECHX_GROUP_ID", "", "TECHX_GROUP_ID must be 1-200 letters"),
        ("TECHX_TOPIC_PREFIX", "", "TECHX_TOPIC_PREFIX must be 1-200 letters"),
        ("TECHX_TOPIC_PREFIX", "a b", "TECHX_TOPIC_PREFIX must be 1-200 letters"),
        ("TECHX_DATABASE_URL", "not-a-url", "must be a postgresql:// URL"),
        ("TECHX_COMMIT_INTERVAL_MS", "-1", "must be at least 0"),
        # Open that long, a transaction would meet its 10 s timeout and be sent again.
        ("TECHX_COMMIT_INTERVAL_MS", "10000", "must be at most 5000"),
        # Set but empty is a mistake (a variable half-written in a unit file), not the default.
        ("TECHX_DATABASE_URL", "", 'must be a postgresql:// URL .*, not ""'),
        ("TECHX_KAFKA_BOOTSTRAP", "", 'must be host:port.*, not ""'),
        ("TECHX_KAFKA_BOOTSTRAP", "kafka", "must be host:port"),
        ("TECHX_KAFKA_BOOTSTRAP", "a:1;b:2", "must be host:port"),
        ("TECHX_LOG_LEVEL", "", "TECHX_LOG_LEVEL must be one of"),
        ("TECHX_REPLICATION_FACTOR", "0", "must be at least 1"),
        ("TECHX_SESSION_TIMEOUT_MS", "", "must be a whole number"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_variable(
    variable: str, value: str, fragment: str
) -> None:
    """Each malformed TECHX_* value stops the start with a ConfigError that names it."""
    with pytest.raises(ConfigError, match=fragment):
        Settings.from_env({variable: value})


def test_a_database_password_never_appears_in_a_settings_error() -> None:
    """The DSN is quoted without its credentials when it is refused."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"TECHX_DATABASE_URL": "mysql://u:secret@db/x"})
    assert "secret" not in str(caught.value)


def test_good_settings_are_read() -> None:
    """The control case: valid values arrive typed."""
    settings = Settings.from_env(
        {"TECHX_PARTITIONS": "8", "TECHX_LOG_LEVEL": "WARNING", "TECHX_TOPIC_PREFIX": "tenant-a"}
    )
    assert (settings.partitions, settings.log_level) == (8, "warning")
    assert Settings.from_env({"TECHX_COMMIT_INTERVAL_MS": "0"}).commit_interval_ms == 0
    assert settings.topics.commands == "tenant-a.commands.v1"
    brokers = Settings.from_env({"TECHX_KAFKA_BOOTSTRAP": "k1:9092, k2:9092,[::1]:9093"})
    assert brokers.kafka_bootstrap == "k1:9092, k2:9092,[::1]:9093"


def test_a_command_with_a_bad_setting_exits_1_with_one_clear_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`techx setup` under a broken environment logs command_failed and exits 1, no traceback."""
    monkeypatch.setenv("TECHX_PARTITIONS", "four")
    with structlog.testing.capture_logs() as logs:
        assert main(["setup"]) == 1
    (failure,) = [entry for entry in logs if entry["event"] == "command_failed"]
    assert failure["error_type"] == "ConfigError"
    assert "TECHX_PARTITIONS" in failure["error"]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["replay"],
        ["replay", "--partition", "x"],
        ["replay", "--partition", "0", "--from-offset", "-1"],
        ["replay", "--partition", "0", "--from-offset", "10", "--to-offset", "5"],
        ["order", "bid"],
    ],
)
def test_a_malformed_command_line_exits_2(argv: list[str]) -> None:
    """Usage errors are argparse's exit code 2, before anything connects anywhere."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


#: Kafka's own test vectors for Utils.murmur2 (clients' UtilsTest), as signed Java ints.
JAVA_MURMUR2 = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "java"), JAVA_MURMUR2)
def test_murmur2_matches_the_java_client(key: bytes, java: int) -> None:
    """The engine's murmur2 gives the Java client's values, so both route keys alike."""
    assert murmur2(key) == java & 0xFFFFFFFF


def test_partition_is_positive_murmur2_modulo_the_partition_count() -> None:
    """Kafka's default partitioner: (murmur2(key) & 0x7fffffff) % partitions."""
    for key, java in JAVA_MURMUR2:
        for partitions in (1, 3, 4, 12):
            assert partition_for(key.decode(), partitions) == (java & 0x7FFFFFFF) % partitions


def _techx_process(
    *args: str, env: dict[str, str], stdout: int | None = subprocess.PIPE
) -> subprocess.CompletedProcess[bytes]:
    """`python -m engine …` as its own process (logging configured as in production), with
    stderr a pipe: not a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        env={**{k: v for k, v in os.environ.items() if k != "TECHX_LOG_FORMAT"}, **env},
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=60,
        check=False,
    )


def test_a_bad_setting_off_a_terminal_is_one_json_line() -> None:
    """The error of a bad setting comes before the settings that pick the log format; it is
    still JSON off a terminal, like every other failure, so log shippers can parse it."""
    done = _techx_process("lag", env={"TECHX_LOG_LEVEL": "verbose"})
    assert done.returncode == 1
    (line,) = done.stderr.decode().splitlines()
    failure = json.loads(line)
    assert (failure["event"], failure["error_type"]) == ("command_failed", "ConfigError")
    assert "TECHX_LOG_LEVEL" in failure["error"]


def test_a_reader_that_stops_early_is_no_error() -> None:
    """`techx acls | head -1`: stdout's reader gone is exit 141 (as for SIGPIPE) and silence,
    not a BrokenPipeError line."""
    reader, writer = os.pipe()
    os.close(reader)  # the reader has gone before the first write
    try:
        done = _techx_process("acls", env={}, stdout=writer)
    finally:
        os.close(writer)
    assert done.returncode == EXIT_PIPE_CLOSED
    assert done.stderr == b""
