"""TECHX_MIN_INSYNC_REPLICAS: its default follows the replication factor, and a value no
acks=all write could satisfy is refused at start."""

from __future__ import annotations

import pytest

from engine.commands.cli import main
from engine.commands.setup import topic_configs
from engine.errors import ConfigError
from engine.settings import Settings


@pytest.mark.parametrize(("replication", "expected"), [(None, 1), ("1", 1), ("2", 2), ("3", 2)])
def test_min_insync_defaults_to_two_or_the_replication_factor(
    replication: str | None, expected: int
) -> None:
    env = {} if replication is None else {"TECHX_REPLICATION_FACTOR": replication}
    assert Settings.from_env(env).min_insync_replicas == expected


def test_min_insync_may_be_set_up_to_the_replication_factor() -> None:
    env = {"TECHX_REPLICATION_FACTOR": "5", "TECHX_MIN_INSYNC_REPLICAS": "3"}
    assert Settings.from_env(env).min_insync_replicas == 3
    env = {"TECHX_REPLICATION_FACTOR": "3", "TECHX_MIN_INSYNC_REPLICAS": "1"}
    assert Settings.from_env(env).min_insync_replicas == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TECHX_MIN_INSYNC_REPLICAS": "2"}, "at most TECHX_REPLICATION_FACTOR \\(1\\)"),
        ({"TECHX_REPLICATION_FACTOR": "3", "TECHX_MIN_INSYNC_REPLICAS": "4"}, r"FACTOR \(3\)"),
        ({"TECHX_REPLICATION_FACTOR": "3", "TECHX_MIN_INSYNC_REPLICAS": "0"}, "at least 1"),
        ({"TECHX_MIN_INSYNC_REPLICAS": "two"}, "whole number"),
    ],
)
def test_impossible_min_insync_is_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=f"TECHX_MIN_INSYNC_REPLICAS must be .*{message}"):
        Settings.from_env(env)


def test_every_topic_is_created_with_min_insync() -> None:
    settings = Settings.from_env({"TECHX_REPLICATION_FACTOR": "3"})
    configs = topic_configs(settings)
    assert set(configs) == set(settings.topics.all())
    assert {c["min.insync.replicas"] for c in configs.values()} == {"2"}


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("techx ")
