"""The pure parts of the local stack: config rendering, PID checks and folder choices."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from engine import stack
from engine.errors import MissingToolError
from engine.settings import Settings

#: Larger than the kernel's highest possible pid_max (2**22), so no process can have it.
IMPOSSIBLE_PID = 2**22 + 1


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "TECHX_STATE_DIR": str(tmp_path / "state"),
            "TECHX_KAFKA_PORT": "39092",
            "TECHX_POSTGRES_PORT": "35432",
        }
    )


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def test_server_properties_use_the_configured_ports_and_state_dir(tmp_path: Path) -> None:
    """The shipped template renders to a single-node KRaft config on the settings' ports."""
    settings = _settings(tmp_path)
    config = _properties(stack.render_server_properties(settings))

    assert config["process.roles"] == "broker,controller"
    assert config["node.id"] == "1"
    assert config["controller.quorum.bootstrap.servers"] == "127.0.0.1:39093"
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:39092,CONTROLLER://127.0.0.1:39093"
    assert config["log.dirs"] == str((tmp_path / "state").resolve() / "kafka" / "data")
    assert config["auto.create.topics.enable"] == "false"
    assert config["offsets.topic.replication.factor"] == "1"
    assert config["transaction.state.log.min.isr"] == "1"
    assert config["group.initial.rebalance.delay.ms"] == "0"
    assert "$" not in "".join(config.values())


def test_server_properties_refuse_an_unknown_placeholder(tmp_path: Path) -> None:
    """A template placeholder the code does not fill fails loudly instead of leaking through."""
    with pytest.raises(KeyError):
        stack.render_server_properties(_settings(tmp_path), "broker.rack=$rack\n")


def test_a_pid_that_does_not_exist_is_not_ours() -> None:
    """A PID file pointing at a vanished process is recognised as stale."""
    assert not stack.process_matches(IMPOSSIBLE_PID, ["kafka.Kafka"])


def test_a_reused_pid_running_another_program_is_not_ours() -> None:
    """A live PID whose command line lacks the markers (here: this Python) is stale too."""
    assert stack.process_matches(os.getpid(), ["python"])
    assert not stack.process_matches(os.getpid(), ["kafka.Kafka"])


def test_process_matches_reads_the_command_line_from_proc(tmp_path: Path) -> None:
    """Markers are looked up in the NUL-separated command line; a zombie's empty one is gone."""
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "cmdline").write_bytes(b"java\0-cp\0libs/*\0kafka.Kafka\0/s/p\0")
    (tmp_path / "43").mkdir()
    (tmp_path / "43" / "cmdline").write_bytes(b"")

    assert stack.process_matches(42, ["kafka.Kafka", "/s/p"], proc=tmp_path)
    assert not stack.process_matches(42, ["kafka.Kafka", "/other/p"], proc=tmp_path)
    assert not stack.process_matches(43, [], proc=tmp_path)


@pytest.mark.parametrize("content", ["", "not a pid\n", "-5\n", "0\n"])
def test_a_garbled_pid_file_reads_as_no_pid(tmp_path: Path, content: str) -> None:
    """An empty or corrupt PID file never yields a PID to signal."""
    pid_file = tmp_path / "kafka.pid"
    pid_file.write_text(content)
    assert stack.read_pid_file(pid_file) is None


def test_a_pid_file_reads_its_first_line(tmp_path: Path) -> None:
    """postmaster.pid has the PID on its first line, followed by other fields."""
    pid_file = tmp_path / "postmaster.pid"
    pid_file.write_text("1234\n/data\n1700000000\n35432\n")
    assert stack.read_pid_file(pid_file) == 1234
    assert stack.read_pid_file(tmp_path / "missing.pid") is None


def test_postgres_lives_under_the_state_dir_when_not_root(tmp_path: Path) -> None:
    """Without root the cluster sits with the rest of the state."""
    settings = _settings(tmp_path)
    home = stack.postgres_home(settings, as_root=False)
    assert home == (tmp_path / "state").resolve() / "postgres"


def test_postgres_lives_in_tmp_per_checkout_and_port_when_root(tmp_path: Path) -> None:
    """As root the cluster moves to /tmp (reachable by postgres), one per state dir and port."""
    settings = _settings(tmp_path)
    digest = hashlib.sha256(str((tmp_path / "state").resolve()).encode()).hexdigest()[:10]

    home = stack.postgres_home(settings, as_root=True)
    other_port = stack.postgres_home(
        Settings.from_env(
            {"TECHX_STATE_DIR": str(tmp_path / "state"), "TECHX_POSTGRES_PORT": "35433"}
        ),
        as_root=True,
    )

    assert home == Path(f"/tmp/techx-pg-{digest}-35432")
    assert other_port != home


def test_missing_postgres_binaries_say_what_to_install(tmp_path: Path) -> None:
    """An absent PostgreSQL install is a MissingToolError naming the package and TECHX_PG_BIN."""
    with pytest.raises(MissingToolError, match=r"apt-get install postgresql-15.*TECHX_PG_BIN"):
        stack._pg_bin({"TECHX_PG_BIN": str(tmp_path / "nowhere")})


def test_redact_hides_only_the_password() -> None:
    """Status lines may show an external DSN, never its password."""
    assert stack.redact("postgresql://u:secret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert stack.redact("postgresql://u@db/x") == "postgresql://u@db/x"
