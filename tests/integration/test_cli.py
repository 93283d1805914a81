"""`techx` from the shell tells the truth: `techx order` exits by the engine's answer, and
a wrong partition or an unreachable broker is one line and a quick exit, not a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from engine.commands.outcome import EXIT_NO_ANSWER, EXIT_REFUSED
from engine.settings import Settings
from engine.store.connection import connected
from tests.integration.harness import running_engine

pytestmark = pytest.mark.integration


def _environment(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "TECHX_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TECHX_DATABASE_URL": settings.database_url,
        "TECHX_TOPIC_PREFIX": settings.topics.prefix,
        "TECHX_PARTITIONS": str(settings.partitions),
        "TECHX_LOG_FORMAT": "json",
    }


async def techx(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run `python -m engine …` as a separate process; its exit status, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_order_exits_by_the_engines_answer(settings: Settings) -> None:
    """Accepted commands exit 0; a rejection or a dead letter exits 3 naming the reason."""
    env = _environment(settings)
    who = ["--participant", "uni-a"]
    async with running_engine(settings):
        code, out, err = await techx(
            env, "order", "list", "CLI-TECH-1", *who, "--name", "A patent", "--tick", "1000"
        )
        assert code == 0, err
        assert out.startswith("accepted list for CLI-TECH-1"), out
        assert "technology_listed" in out

        code, out, err = await techx(
            env, "order", "bid", "CLI-TECH-1", "2", "5000", *who, "--client-order-id", "b-1",
            "--json",
        )  # fmt: skip
        assert code == 0, err
        answer = json.loads(out)
        assert answer["verdict"] == "accepted"
        assert [event["type"] for event in answer["events"]] == ["order_accepted"]

        code, out, err = await techx(
            env, "order", "bid", "CLI-TECH-1", "2", "5500", *who, "--client-order-id", "b-2"
        )
        assert code == EXIT_REFUSED, (out, err)
        assert "rejected bid for CLI-TECH-1" in err
        assert "price_off_tick" in err

        code, out, err = await techx(
            env, "order", "bid", "NO-SUCH-TECH", "1", "1000", *who, "--client-order-id", "b-3",
            "--json",
        )  # fmt: skip
        assert code == EXIT_REFUSED, (out, err)
        assert json.loads(out)["verdict"] == "rejected"
        assert json.loads(out)["reason"].startswith("unknown_technology: ")

        # An id out of the contract's form passes the shell but not the engine's decoder.
        code, out, err = await techx(
            env, "order", "bid", "CLI-TECH-1", "1", "5000", *who, "--client-order-id", "b 4!"
        )
        assert code == EXIT_REFUSED, (out, err)
        assert "dead-lettered bid for CLI-TECH-1" in err
        assert "schema_violation" in err

        code, out, err = await techx(
            env, "order", "cancel", "CLI-TECH-1", *who, "--client-order-id", "b-1", "--no-wait"
        )
        assert code == 0, err
        assert "not waiting for the engine" in out

    # No engine: the command is published, but nobody answers within the timeout.
    code, out, err = await techx(
        env, "order", "bid", "CLI-TECH-1", "1", "5000", *who, "--client-order-id", "b-5",
        "--timeout", "1",
    )  # fmt: skip
    assert code == EXIT_NO_ANSWER, (out, err)
    assert "no engine answered within 1 s" in err


async def test_membership_commands_exit_by_every_partitions_answer(settings: Settings) -> None:
    """`techx participant` and `techx access` write to every partition and exit as `techx
    order` does: 0 when each partition accepted, 3 with the reason when they refused (a
    suspend of a participant never registered), 4 when no engine answers."""
    env = _environment(settings)
    every = list(range(settings.partitions))
    async with running_engine(settings):
        code, out, err = await techx(env, "participant", "register", "cli-b", "--role", "buyer")
        assert code == 0, (out, err)
        assert out.startswith(f"accepted register cli-b as buyer on {len(every)} partitions"), out

        code, out, err = await techx(env, "participant", "suspend", "nobody", "--json")
        assert code == EXIT_REFUSED, (out, err)
        answer = json.loads(out)
        assert answer["verdict"] == "rejected"
        assert [p["partition"] for p in answer["partitions"]] == every
        assert all(p["reason"].startswith("invalid_status_change") for p in answer["partitions"])
        assert f"rejected suspend nobody on partitions {every}" in err

        code, out, err = await techx(env, "access", "members_only")
        assert code == 0, (out, err)
        assert "access_mode_changed" in out

    code, out, err = await techx(env, "access", "open", "--timeout", "1")
    assert code == EXIT_NO_ANSWER, (out, err)
    assert f"no engine answered on partitions {every} within 1 s" in err
    code, out, err = await techx(env, "access", "open", "--no-wait")
    assert code == 0, err
    assert out.startswith(f"published access open to {len(every)} partitions"), out


async def test_replay_of_a_partition_the_topic_lacks_fails_at_once(settings: Settings) -> None:
    """`techx replay --partition 99` exits 2 in seconds with one line naming the count."""
    started = time.monotonic()
    code, out, err = await techx(_environment(settings), "replay", "--partition", "99")
    assert code == 2, (out, err)
    assert time.monotonic() - started < 10
    (line,) = err.strip().splitlines()
    failure = json.loads(line)
    assert failure["error_type"] == "CommandLineError"
    assert f"has {settings.partitions} partitions" in failure["error"]


async def test_replay_prints_a_json_summary(settings: Settings) -> None:
    """`techx replay --json` prints its counts as one JSON object, up to the log's end."""
    env = _environment(settings)
    code, out, err = await techx(env, "order", "list", "CLI-TECH-2", "--participant", "uni-a",
                                 "--name", "B", "--no-wait")  # fmt: skip
    assert code == 0, err
    partition = int(out.split("partition ")[1].split()[0])
    code, out, err = await techx(env, "replay", "--partition", str(partition), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["commands"], summary["events"], summary["to_offset"]) == (1, 1, 1)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "--partition", "0"],
        ["order", "bid", "T-1", "1", "100", "--participant", "a", "--client-order-id", "c"],
        ["setup"],
        ["lag"],
        ["book", "T-1"],
        ["dlq", "list", "--source", "topic"],
    ],
)
async def test_an_unreachable_broker_is_one_line_and_a_quick_exit(
    settings: Settings, argv: list[str]
) -> None:
    """With nothing listening at TECHX_KAFKA_BOOTSTRAP: exit 1, one line with a hint, no
    traceback, within a few seconds."""
    env = {**_environment(settings), "TECHX_KAFKA_BOOTSTRAP": f"127.0.0.1:{_closed_port()}"}
    started = time.monotonic()
    code, out, err = await techx(env, *argv)
    assert code == 1, (out, err)
    assert time.monotonic() - started < 10
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    failure = json.loads(line)
    assert failure["error_type"] == "BrokerUnavailableError"
    assert "TECHX_KAFKA_BOOTSTRAP" in failure["hint"]


async def test_an_unreachable_database_is_one_line_and_a_quick_exit(settings: Settings) -> None:
    """`techx replay --compare` with nothing listening at TECHX_DATABASE_URL: exit 1, one
    line naming PostgreSQL with a hint, no traceback."""
    env = {
        **_environment(settings),
        "TECHX_DATABASE_URL": f"postgresql://techx@127.0.0.1:{_closed_port()}/techx",
    }
    started = time.monotonic()
    code, out, err = await techx(env, "replay", "--partition", "0", "--compare")
    assert code == 1, (out, err)
    assert time.monotonic() - started < 10
    (line,) = err.strip().splitlines()
    failure = json.loads(line)
    assert failure["error_type"] == "StoreUnavailableError"
    assert "TECHX_DATABASE_URL" in failure["hint"]


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "--partition", "0", "--compare"],
        ["export", "deals", "--from", "2026-11-01", "--to", "2026-12-01", "--out", "deals.csv"],
        ["dlq", "list"],
        ["keys", "list"],
    ],
)
async def test_a_database_without_techx_tables_is_one_line_with_a_hint(
    settings: Settings, argv: list[str], tmp_path: Path
) -> None:
    """Pointed at a database `techx setup` never migrated (a wrong TECHX_DATABASE_URL): exit
    1, one line saying to run `techx setup`, no asyncpg traceback."""
    base, _, _ = settings.database_url.rpartition("/")
    empty = f"{settings.group_id.replace('-', '_')}_empty"
    async with connected(settings.database_url) as connection:
        await connection.execute(f'CREATE DATABASE "{empty}"')
    try:
        env = {**_environment(settings), "TECHX_DATABASE_URL": f"{base}/{empty}"}
        code, out, err = await techx(
            env, *[str(tmp_path / a) if a == "deals.csv" else a for a in argv]
        )
    finally:
        async with connected(settings.database_url) as connection:
            await connection.execute(f'DROP DATABASE "{empty}" WITH (FORCE)')
    assert code == 1, (out, err)
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    failure = json.loads(line)
    assert "techx setup" in failure.get("hint", "") + failure["error"]
    assert "fix the variable" not in failure.get("hint", ""), "no variable is malformed"
