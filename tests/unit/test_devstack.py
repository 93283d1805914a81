"""The pure parts of the local stack: settings, config rendering, PID checks, folder choices."""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

import devstack.__main__
from devstack import kafka, postgres
from devstack.__main__ import EXIT_NOT_RUNNING
from devstack.errors import DevStackError, MissingToolError, StackConfigError
from devstack.processes import (
    process_age_s,
    process_cpu_s,
    process_matches,
    read_pid_file,
    run_streaming,
)
from devstack.settings import REPO_ROOT, StackSettings, redact
from engine.commands import cli
from engine.settings import Settings

#: Larger than the kernel's highest possible pid_max (2**22), so no process can have it.
IMPOSSIBLE_PID = 2**22 + 1


def _settings(tmp_path: Path) -> StackSettings:
    return StackSettings.from_env(
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
    config = _properties(kafka.render_server_properties(settings))

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
        kafka.render_server_properties(_settings(tmp_path), "broker.rack=$rack\n")


def test_a_pid_that_does_not_exist_is_not_ours() -> None:
    """A PID file pointing at a vanished process is recognised as stale."""
    assert not process_matches(IMPOSSIBLE_PID, ["kafka.Kafka"])


def test_a_reused_pid_running_another_program_is_not_ours() -> None:
    """A live PID whose command line lacks the markers (here: this Python) is stale too."""
    assert process_matches(os.getpid(), ["python"])
    assert not process_matches(os.getpid(), ["kafka.Kafka"])


def test_process_matches_reads_the_command_line_from_proc(tmp_path: Path) -> None:
    """Markers are looked up in the NUL-separated command line; a zombie's empty one is gone."""
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "cmdline").write_bytes(b"java\0-cp\0libs/*\0kafka.Kafka\0/s/p\0")
    (tmp_path / "43").mkdir()
    (tmp_path / "43" / "cmdline").write_bytes(b"")

    assert process_matches(42, ["kafka.Kafka", "/s/p"], proc=tmp_path)
    assert not process_matches(42, ["kafka.Kafka", "/other/p"], proc=tmp_path)
    assert not process_matches(43, [], proc=tmp_path)


def test_a_process_age_counts_from_its_start_in_proc_stat(tmp_path: Path) -> None:
    """Start time is field 22 of /proc/<pid>/stat, in clock ticks since boot, counted after
    the command name, which may itself hold spaces and parentheses."""
    ticks = os.sysconf("SC_CLK_TCK")
    (tmp_path / "42").mkdir()
    fields_4_to_21 = " ".join(["0"] * 18)
    (tmp_path / "42" / "stat").write_text(f"42 (java (x) y) S {fields_4_to_21} {100 * ticks} 7 8\n")
    (tmp_path / "uptime").write_text("130.50 250.00\n")

    assert process_age_s(42, proc=tmp_path) == pytest.approx(30.5)
    assert process_age_s(43, proc=tmp_path) is None


def test_a_process_cpu_time_is_user_plus_system_in_proc_stat(tmp_path: Path) -> None:
    """utime and stime are fields 14 and 15, in clock ticks, counted after the command name."""
    ticks = os.sysconf("SC_CLK_TCK")
    (tmp_path / "42").mkdir()
    fields_4_to_13 = " ".join(["9"] * 10)
    (tmp_path / "42" / "stat").write_text(
        f"42 (python (bench) x) R {fields_4_to_13} {3 * ticks} {2 * ticks} 9 9 9\n"
    )

    assert process_cpu_s(42, proc=tmp_path) == pytest.approx(5.0)


def test_this_process_is_as_old_as_it_has_run() -> None:
    """Read from the real /proc: this test process started before the test and not before
    the machine."""
    age = process_age_s(os.getpid())
    assert age is not None
    assert 0.0 < age < float(Path("/proc/uptime").read_text().split()[0]) + 1.0
    assert process_age_s(IMPOSSIBLE_PID) is None


def test_a_broker_that_is_not_running_or_not_ours_has_no_age(tmp_path: Path) -> None:
    """No warm-up decision is made from a broker the stack did not start."""
    settings = _settings(tmp_path)
    assert kafka.age_s(settings) is None
    assert kafka.age_s(replace(settings, external_kafka="broker.example:9092")) is None


@pytest.mark.parametrize("content", ["", "not a pid\n", "-5\n", "0\n"])
def test_a_garbled_pid_file_reads_as_no_pid(tmp_path: Path, content: str) -> None:
    """An empty or corrupt PID file never yields a PID to signal."""
    pid_file = tmp_path / "kafka.pid"
    pid_file.write_text(content)
    assert read_pid_file(pid_file) is None


def test_a_pid_file_reads_its_first_line(tmp_path: Path) -> None:
    """postmaster.pid has the PID on its first line, followed by other fields."""
    pid_file = tmp_path / "postmaster.pid"
    pid_file.write_text("1234\n/data\n1700000000\n35432\n")
    assert read_pid_file(pid_file) == 1234
    assert read_pid_file(tmp_path / "missing.pid") is None


def test_postgres_lives_under_the_state_dir_when_not_root(tmp_path: Path) -> None:
    """Without root the cluster sits with the rest of the state."""
    settings = _settings(tmp_path)
    home = postgres.cluster_home(settings, as_root=False)
    assert home == (tmp_path / "state").resolve() / "postgres"


def test_postgres_lives_in_tmp_per_checkout_and_port_when_root(tmp_path: Path) -> None:
    """As root the cluster moves to /tmp (reachable by postgres), one per state dir and port."""
    settings = _settings(tmp_path)
    digest = hashlib.sha256(str((tmp_path / "state").resolve()).encode()).hexdigest()[:10]

    home = postgres.cluster_home(settings, as_root=True)
    other_port = postgres.cluster_home(
        StackSettings.from_env(
            {"TECHX_STATE_DIR": str(tmp_path / "state"), "TECHX_POSTGRES_PORT": "35433"}
        ),
        as_root=True,
    )

    assert home == Path(f"/tmp/techx-pg-{digest}-35432")
    assert other_port != home


def test_a_state_dir_made_again_at_the_same_path_gets_a_cluster_of_its_own(
    tmp_path: Path,
) -> None:
    """A fresh clone where a deleted one was must not find the old clone's database (its
    settled offsets) beside its new, empty broker: recovery would wait for a log that is gone."""
    settings = _settings(tmp_path)
    postgres.claim_stack_id(settings)
    first = postgres.cluster_home(settings, as_root=True)
    postgres.claim_stack_id(settings)
    assert postgres.cluster_home(settings, as_root=True) == first, "the id is kept"

    shutil.rmtree(tmp_path / "state")
    postgres.claim_stack_id(settings)
    assert postgres.cluster_home(settings, as_root=True) != first


def test_a_state_dir_from_before_stack_ids_keeps_its_cluster(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    before = postgres.cluster_home(settings, as_root=True)
    (tmp_path / "state" / "postgres").mkdir(parents=True)  # it ran PostgreSQL already
    postgres.claim_stack_id(settings)
    assert postgres.cluster_home(settings, as_root=True) == before


def test_missing_postgres_binaries_say_what_to_install(tmp_path: Path) -> None:
    """An absent PostgreSQL install is a MissingToolError naming the package and TECHX_PG_BIN."""
    with pytest.raises(MissingToolError, match=r"apt-get install postgresql-15.*TECHX_PG_BIN"):
        postgres.find_binaries(StackSettings.from_env({"TECHX_PG_BIN": str(tmp_path / "nowhere")}))


def test_redact_hides_only_the_password() -> None:
    """Status lines may show an external DSN, never its password."""
    assert redact("postgresql://u:secret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact("postgresql://u@db/x") == "postgresql://u@db/x"


def test_stack_settings_default_to_the_checkout_and_the_engine_defaults() -> None:
    """Without variables the stack lives in <checkout>/.techx and serves where the engine looks."""
    stack = StackSettings.from_env({})
    engine = Settings.from_env({})

    assert stack.state_dir == REPO_ROOT / ".techx"
    assert (REPO_ROOT / "devstack" / "__init__.py").exists()
    assert (stack.kafka_port, stack.controller_port, stack.postgres_port) == (29092, 29093, 25432)
    assert stack.kafka_bootstrap == engine.kafka_bootstrap
    assert stack.database_url == engine.database_url
    assert stack.external_kafka is None
    assert stack.external_database is None


def test_stack_settings_read_the_techx_variables(tmp_path: Path) -> None:
    """Ports, state dir and binaries move; a relative state dir is made absolute."""
    stack = StackSettings.from_env(
        {
            "TECHX_KAFKA_PORT": "39092",
            "TECHX_POSTGRES_PORT": "35432",
            "TECHX_STATE_DIR": "relative/state",
            "TECHX_PG_BIN": str(tmp_path / "bin"),
        }
    )

    assert stack.kafka_bootstrap == "127.0.0.1:39092"
    assert stack.database_url == "postgresql://techx@127.0.0.1:35432/techx"
    assert stack.state_dir == (Path.cwd() / "relative" / "state").resolve()
    assert stack.pg_bin == tmp_path / "bin"


def test_external_servers_are_used_as_given_and_empty_means_unset() -> None:
    """TECHX_KAFKA_BOOTSTRAP / TECHX_DATABASE_URL name the user's servers; "" is no server."""
    stack = StackSettings.from_env(
        {
            "TECHX_KAFKA_BOOTSTRAP": "kafka.example:9092",
            "TECHX_DATABASE_URL": "postgresql://u:secret@db.example/x",
        }
    )
    assert stack.kafka_bootstrap == stack.external_kafka == "kafka.example:9092"
    assert stack.database_url == stack.external_database == "postgresql://u:secret@db.example/x"

    empty = StackSettings.from_env({"TECHX_KAFKA_BOOTSTRAP": "", "TECHX_DATABASE_URL": ""})
    assert empty.external_kafka is None
    assert empty.external_database is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TECHX_KAFKA_PORT": "kafka"}, r"TECHX_KAFKA_PORT must be a whole number, not 'kafka'"),
        ({"TECHX_POSTGRES_PORT": "5432.5"}, r"TECHX_POSTGRES_PORT must be a whole number"),
        ({"TECHX_POSTGRES_PORT": "0"}, r"TECHX_POSTGRES_PORT must be a TCP port from 1 to 65535"),
        ({"TECHX_POSTGRES_PORT": "70000"}, r"TCP port from 1 to 65535, not 70000"),
        # The controller needs the port above the broker's.
        ({"TECHX_KAFKA_PORT": "65535"}, r"TECHX_KAFKA_PORT must be a TCP port from 1 to 65534"),
        (
            {"TECHX_KAFKA_PORT": "30000", "TECHX_POSTGRES_PORT": "30001"},
            r"TECHX_POSTGRES_PORT=30001 collides with Kafka",
        ),
        ({"TECHX_STATE_DIR": " "}, r"TECHX_STATE_DIR is set but empty"),
        ({"TECHX_PG_BIN": ""}, r"TECHX_PG_BIN is set but empty"),
        ({"TECHX_DATABASE_URL": "mysql://u:pw@db/x"}, r"postgresql:// URL, not 'mysql://u:\*\*\*@"),
    ],
)
def test_malformed_stack_variables_are_typed_errors_naming_them(
    env: dict[str, str], message: str
) -> None:
    """A bad variable fails when settings are read, as a StackConfigError with a hint."""
    with pytest.raises(StackConfigError, match=message) as failure:
        StackSettings.from_env(env)
    assert failure.value.hint
    assert not failure.value.retriable
    assert isinstance(failure.value, DevStackError)


@pytest.fixture
def devstack_main(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], int]:
    """``python -m devstack`` in-process, leaving this process's logging configuration alone."""
    monkeypatch.setattr(devstack.__main__, "configure_logging", lambda *_: None)
    return devstack.__main__.main


def test_the_command_line_reports_an_error_as_one_line_with_a_hint(
    devstack_main: Callable[[list[str]], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`python -m devstack` prints what failed and what to do, exits 1, shows no traceback."""
    monkeypatch.setenv("TECHX_KAFKA_PORT", "not-a-port")

    assert devstack_main(["status"]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "devstack status: TECHX_KAFKA_PORT must be a whole number, not 'not-a-port'; "
        "unset it to use 29092\n"
    )


def test_status_exits_non_zero_when_a_service_is_down(
    devstack_main: Callable[[list[str]], int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A stack that was never started (an empty state dir, unused ports) is reported stopped."""
    monkeypatch.delenv("TECHX_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("TECHX_DATABASE_URL", raising=False)
    monkeypatch.setenv("TECHX_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TECHX_KAFKA_PORT", "1")  # privileged ports nothing listens on here
    monkeypatch.setenv("TECHX_POSTGRES_PORT", "3")

    assert devstack_main(["status"]) == EXIT_NOT_RUNNING

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["kafka", "stopped"], ["postgres", "stopped"]]


def test_techx_stack_without_devstack_says_where_to_run_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An installed wheel has no devstack: `techx stack` says so in one line and exits 2."""
    monkeypatch.setitem(sys.modules, "devstack", None)  # what a wheel without devstack sees
    monkeypatch.delitem(sys.modules, "devstack.__main__")

    assert cli.main(["stack", "status"]) == 2

    assert capsys.readouterr().err == (
        "the local stack is a development tool: run `python -m devstack` from a TechX checkout\n"
    )


def test_a_streamed_tool_leaves_no_pipe_open() -> None:
    """The jar fetch streams Maven's lines; its pipe is closed after, or every private stack
    (the locked-down and chaos tests) ends in a ResourceWarning, an error under pytest."""
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_streaming(
            [sys.executable, "-c", "print('one'); print('two')"],
            what="print two lines",
            timeout=30,
            on_line=lines.append,
        )
        gc.collect()
    assert lines == ["one\n", "two\n"]
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
