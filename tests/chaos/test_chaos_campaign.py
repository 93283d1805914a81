"""The short fault campaign, in ``make test``: engine processes on a private stack, under load.

The long form is ``python -m tests.chaos --seed 1 --kills 200`` (see tests/chaos/__main__.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack import StackSettings
from tests.chaos.campaign import CampaignConfig, FaultCounts, FaultKind, render, run_campaign

pytestmark = pytest.mark.integration


async def test_a_short_fault_campaign_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """Ten kills (two right between a PostgreSQL commit and the publish), a zombie, engines
    going 1 -> 3 -> 1 and a broker and a PostgreSQL restart, under a steady order flow:
    PostgreSQL, the topics read_committed and every snapshot equal a pure replay of the log."""
    shared = StackSettings.from_env()
    if shared.external_kafka is not None or shared.external_database is not None:
        pytest.skip("the campaign runs its own local Kafka and PostgreSQL (devstack's tools)")
    config = CampaignConfig(
        seed=1, counts=FaultCounts.for_kills(10), rate=400, run_dir=tmp_path / "chaos"
    )
    progress: list[str] = []
    result = await run_campaign(config, say=progress.append)
    table = "\n".join(progress) + "\n" + render(result)
    print(table)  # shown by pytest -s, and with the failure below

    kinds = [outcome.fault.kind for outcome in result.outcomes]
    fired = [o for o in result.outcomes if o.fault.kind is FaultKind.KILL_AFTER_COMMIT and o.killed]
    assert len(result.failover_s) >= 10, table
    assert len(fired) >= 2, table
    assert kinds.count(FaultKind.ZOMBIE) >= 1, table
    assert kinds.count(FaultKind.GROW_SHRINK) >= 1, table
    assert kinds.count(FaultKind.BROKER_RESTART) >= 1, table
    assert kinds.count(FaultKind.POSTGRES_RESTART) >= 1, table
    failed = [f"{c.name}: {c.detail}" for c in result.checks if c.passed is False]
    assert not failed, table
    assert result.passed, table
