"""The pure parts of the fault campaign (tests/chaos): schedule, exit causes, comparisons,
the segmented replay."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from engine.core.batch import LogRecord, PartitionProcessor
from engine.core.codec import encode
from engine.producers.simulation import OrderFlow, generated_listings
from tests.chaos.campaign import ARMED_DEATH, FaultCounts, FaultKind, exit_cause, plan
from tests.chaos.verify import compare, replay_partition
from tests.chaos.victim import committed_unpublished, failure_of


def test_the_same_seed_gives_the_same_schedule() -> None:
    """A campaign is reproducible from its seed; another seed gives another schedule."""
    counts = FaultCounts.for_kills(10)
    assert plan(1, counts, 2000) == plan(1, counts, 2000)
    assert plan(1, counts, 2000) != plan(2, counts, 2000)


def test_the_short_form_has_every_kind_the_issue_asks_for() -> None:
    """Ten kills, two of them after a commit, and at least one fault of every other kind."""
    kinds = [fault.kind for fault in plan(7, FaultCounts.for_kills(10), 2000)]
    assert kinds.count(FaultKind.KILL) + kinds.count(FaultKind.KILL_AFTER_COMMIT) == 10
    assert kinds.count(FaultKind.KILL_AFTER_COMMIT) == 2
    assert all(kinds.count(kind) >= 1 for kind in FaultKind)
    long_form = FaultCounts.for_kills(200)
    assert long_form.kills + long_form.kills_after_commit == 200


def test_zombies_stay_frozen_past_the_session_timeout_and_only_armed_kills_settle() -> None:
    """A zombie is frozen longer than the session timeout; only kill_after_commit carries N."""
    faults = plan(3, FaultCounts.for_kills(50), 2000)
    assert all(f.hold_s > 2.0 for f in faults if f.kind is FaultKind.ZOMBIE)
    assert all((f.settles > 0) == (f.kind is FaultKind.KILL_AFTER_COMMIT) for f in faults)


def test_exit_causes_read_the_status_against_what_the_harness_did() -> None:
    """-9 is the harness's kill or the armed hook's; 1 with a named error is a stop."""
    kill = -signal.SIGKILL
    assert exit_cause(kill, signal.SIGKILL, False, None).startswith("killed by the harness")
    assert exit_cause(kill, None, True, None) == ARMED_DEATH
    assert exit_cause(0, signal.SIGTERM, False, None) == "stopped on SIGTERM (graceful)"
    assert exit_cause(1, None, False, "FencedError") == "stopped itself: FencedError"
    assert exit_cause(1, None, False, None).startswith("crashed")


def test_a_victims_failure_and_armed_death_are_read_from_its_json_log(tmp_path: Path) -> None:
    """The last victim_failed line names the error type, the armed death line what was
    committed; other lines (and tracebacks) are skipped."""
    log = tmp_path / "engine.log"
    lines = [
        "Traceback (most recent call last): victim_failed",
        json.dumps({"event": "victim_failed", "error_type": "PublishFailedError"}),
        json.dumps(
            {"event": "chaos_killed_after_commit", "partitions": [1, 3], "next_offsets": [7, 9]}
        ),
    ]
    log.write_text("\n".join(lines) + "\n")
    assert failure_of(log) == "PublishFailedError"
    assert committed_unpublished(log) == {1: 7, 3: 9}
    assert failure_of(tmp_path / "missing.log") is None


def test_comparisons_count_duplicates_missing_and_strangers_apart() -> None:
    """Each kind of difference is counted on its own; a pure reordering is noticed."""
    assert compare("abc", "abc").exact
    doubled = compare("abc", "abbc")
    assert (doubled.duplicates, doubled.missing, doubled.unexpected) == (1, 0, 0)
    lost = compare("abc", "ac")
    assert (lost.duplicates, lost.missing, lost.unexpected) == (0, 1, 0)
    assert compare("abc", "abcx").unexpected == 1
    assert compare("abc", "acb").reordered


def test_a_replay_cut_at_snapshot_offsets_equals_one_without_cuts() -> None:
    """Cutting the replay where snapshots were taken changes no output, and each snapshot
    is the market of the records below its offset."""
    flow = OrderFlow(5, generated_listings(1), invalid_ratio=0.05)
    commands = flow.listing_commands() + flow.next_commands(400)
    records = [
        LogRecord(offset, 1_000 + offset, c.technology_id.encode(), encode(c))
        for offset, c in enumerate(commands)
    ]
    cut = replay_partition(0, 1, records, [50, 200, 401])
    whole = PartitionProcessor(0, 1).process(records)
    assert cut.batch.deals_out == whole.deals_out
    assert cut.batch.executions_out == whole.executions_out
    assert cut.batch.market_data_out == whole.market_data_out
    prefix = PartitionProcessor(0, 1)
    prefix.process(records[:200])
    assert cut.snapshots[200] == prefix.market.snapshot()
    assert cut.snapshots[401] == cut.final_market
    assert cut.end == 401
