"""Health decisions, batch counting and the metrics server, without Kafka or PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Histogram

from engine.core.batch import LogRecord, PartitionProcessor, SettlementBatch
from engine.core.codec import encode
from engine.errors import ConfigError
from engine.observability.health import (
    EngineState,
    PartitionProgress,
    StuckDetector,
    readiness,
)
from engine.observability.metrics import BatchHistogram, EngineMetrics
from engine.observability.server import MetricsServer
from engine.settings import Settings
from schemas.commands import ListTechnology, PlaceOrder


class _Probe:
    """A hand-written engine stand-in whose state the test sets."""

    def __init__(self) -> None:
        self.engine_state = EngineState(owned=(), recovering=(), stopping=False)
        self.offsets: list[PartitionProgress] = []

    def state(self) -> EngineState:
        return self.engine_state

    def progress(self) -> list[PartitionProgress]:
        return self.offsets


def test_ready_only_when_owning_partitions_all_recovered() -> None:
    """Readiness needs a partition in service, none recovering, and no stop under way."""
    assert not readiness(EngineState((), (), False)).ok
    assert not readiness(EngineState((0,), (1,), False)).ok
    assert not readiness(EngineState((0, 1), (), True)).ok
    assert readiness(EngineState((0, 1), (), False)).ok


def test_idle_partition_is_never_stuck() -> None:
    """No lag and nothing unpublished: standing still for an hour is healthy."""
    detector = StuckDetector(stuck_after_s=60)
    idle = [PartitionProgress(0, matched=10, settled=10, published=10, highwater=10)]
    assert detector.check(idle, now=0).ok
    assert detector.check(idle, now=3600).ok


def test_partition_with_lag_and_no_progress_is_stuck_after_the_limit() -> None:
    """Lag with a published offset standing still fails once the limit passes, and recovers
    as soon as the offset moves."""
    detector = StuckDetector(stuck_after_s=60)
    behind = [PartitionProgress(3, matched=10, settled=10, published=10, highwater=50)]
    assert detector.check(behind, now=0).ok
    assert detector.check(behind, now=59).ok
    verdict = detector.check(behind, now=61)
    assert not verdict.ok
    assert "partition 3 stuck" in verdict.reasons[0]
    moved = [PartitionProgress(3, matched=20, settled=20, published=20, highwater=50)]
    assert detector.check(moved, now=62).ok


def test_matched_but_unpublished_counts_as_pending() -> None:
    """A broker that never acknowledges is a stuck pipeline even with no lag on the log."""
    detector = StuckDetector(stuck_after_s=5)
    waiting = [PartitionProgress(0, matched=30, settled=30, published=10, highwater=30)]
    detector.check(waiting, now=0)
    assert not detector.check(waiting, now=6).ok


def _record(offset: int, key: str, value: bytes) -> LogRecord:
    return LogRecord(offset, 1_000_000 + offset, key.encode(), value)


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_settled_batch_counts_commands_deals_rejections_and_dead_letters() -> None:
    """One settled batch moves each counter by what it holds, rejections by their reason."""
    processor = PartitionProcessor(0)
    listing = ListTechnology(
        technology_id="PAT-1", participant_id="ops", name="t", tick_size=1, lot_size=1,
        reserve_price=1,
    )  # fmt: skip
    offer = PlaceOrder(
        technology_id="PAT-1", participant_id="s", client_order_id="o1", side="offer",
        order_type="limit", price=10, quantity=1,
    )  # fmt: skip
    bid = PlaceOrder(
        technology_id="PAT-1", participant_id="b", client_order_id="b1", side="bid",
        order_type="limit", price=10, quantity=1,
    )  # fmt: skip
    unknown = PlaceOrder(
        technology_id="PAT-2", participant_id="b", client_order_id="b2", side="bid",
        order_type="limit", price=10, quantity=1,
    )  # fmt: skip
    batch: SettlementBatch = processor.process(
        [
            _record(0, "PAT-1", encode(listing)),
            _record(1, "PAT-1", encode(offer)),
            _record(2, "PAT-1", encode(bid)),
            _record(3, "PAT-2", encode(unknown)),
            _record(4, "PAT-1", b"{not json"),
        ]
    )
    batch.snapshot = b"x" * 123
    metrics = EngineMetrics()
    metrics.settled([batch], 0.004)
    metrics.published([batch], 0.02)
    r = metrics.registry
    assert _sample(r, "techx_engine_commands_total") == 5
    assert _sample(r, "techx_engine_deals_total") == 1
    assert _sample(r, "techx_engine_rejections_total", reason="unknown_technology") == 1
    assert _sample(r, "techx_engine_dead_letters_total", reason="malformed_json") == 1
    assert _sample(r, "techx_engine_batch_commands_sum") == 5
    assert _sample(r, "techx_engine_snapshot_size_bytes", partition="0") == 123
    assert _sample(r, "techx_engine_stage_duration_seconds_count", stage="settle") == 1
    assert _sample(r, "techx_engine_stage_duration_seconds_count", stage="publish") == 1
    assert _sample(r, "techx_engine_command_to_deal_seconds_count") == 1


def test_two_engines_in_one_process_keep_their_own_series() -> None:
    """A registry per engine: a second engine neither fails nor shares counts."""
    first, second = EngineMetrics(), EngineMetrics()
    first.commands.inc(3)
    assert _sample(second.registry, "techx_engine_commands_total") == 0


@pytest.fixture
async def served() -> AsyncIterator[tuple[_Probe, list[float], str]]:
    probe, clock = _Probe(), [0.0]
    server = MetricsServer(
        probe, EngineMetrics().registry, stuck_after_s=10, clock=lambda: clock[0]
    )
    port = await server.start("127.0.0.1", 0)
    assert port
    try:
        yield probe, clock, f"http://127.0.0.1:{port}"
    finally:
        await server.close()


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_server_answers_probes_from_the_engine_state(
    served: tuple[_Probe, list[float], str],
) -> None:
    """/readyz follows recovery, /healthz follows progress, /metrics shows per-partition lag."""
    probe, clock, base = served
    assert (await _get(f"{base}/readyz"))[0] == 503
    probe.engine_state = EngineState(owned=(0,), recovering=(1,), stopping=False)
    status, body = await _get(f"{base}/readyz")
    assert status == 503
    assert "recovering partitions [1]" in body
    probe.engine_state = EngineState(owned=(0, 1), recovering=(), stopping=False)
    assert (await _get(f"{base}/readyz"))[0] == 200

    probe.offsets = [PartitionProgress(0, matched=5, settled=5, published=5, highwater=9)]
    assert (await _get(f"{base}/healthz"))[0] == 200
    clock[0] = 11.0
    status, body = await _get(f"{base}/healthz")
    assert status == 503
    assert "stuck" in body

    status, text = await _get(f"{base}/metrics")
    assert status == 200
    assert 'techx_engine_partition_lag{partition="0"} 4.0' in text
    assert 'techx_engine_partition_offset{partition="0",stage="highwater"} 9.0' in text
    assert "techx_engine_ready 1.0" in text
    assert "process_cpu_seconds_total" in text  # the process-wide default registry too


async def test_port_taken_leaves_the_engine_running_without_a_server() -> None:
    """A second server on a taken port reports None instead of raising."""
    first = MetricsServer(_Probe(), EngineMetrics().registry)
    port = await first.start("127.0.0.1", 0)
    assert port
    second = MetricsServer(_Probe(), EngineMetrics().registry)
    try:
        assert await second.start("127.0.0.1", port) is None
    finally:
        await first.close()
        await second.close()


def test_batch_histogram_agrees_with_one_observation_at_a_time() -> None:
    """Ages counted per bucket from sorted timestamps match prometheus_client's own histogram,
    bucket boundaries and ages from the future included."""
    buckets = (0.001, 0.01, 0.1, 1.0)
    now_ms = 1_000_000
    stamps = sorted(
        [now_ms - a for a in (0, 1, 2, 10, 11, 99, 100, 101, 999, 1000, 5000)] + [now_ms + 7]
    )
    registry = CollectorRegistry()
    batched = BatchHistogram("batched_seconds", "ages", buckets, registry)
    reference = Histogram("reference_seconds", "ages", buckets=buckets, registry=registry)
    batched.observe_ages(now_ms, stamps)
    for stamp in stamps:
        reference.observe(max(now_ms - stamp, 0) / 1000.0)
    for le in ("0.001", "0.01", "0.1", "1.0", "+Inf"):
        assert _sample(registry, "batched_seconds_bucket", le=le) == _sample(
            registry, "reference_seconds_bucket", le=le
        ), le
    assert _sample(registry, "batched_seconds_count") == len(stamps)
    assert _sample(registry, "batched_seconds_sum") == pytest.approx(
        _sample(registry, "reference_seconds_sum"), abs=0.01
    )


def test_metrics_settings_come_from_the_environment() -> None:
    """TECHX_METRICS_PORT/HOST and TECHX_STUCK_AFTER_S are read, checked, and defaulted."""
    defaults = Settings.from_env({})
    assert (defaults.metrics_port, defaults.metrics_host, defaults.stuck_after_s) == (
        9464,
        "0.0.0.0",
        60,
    )
    chosen = Settings.from_env(
        {"TECHX_METRICS_PORT": "0", "TECHX_METRICS_HOST": "127.0.0.1", "TECHX_STUCK_AFTER_S": "5"}
    )
    assert (chosen.metrics_port, chosen.metrics_host, chosen.stuck_after_s) == (0, "127.0.0.1", 5)
    with pytest.raises(ConfigError):
        Settings.from_env({"TECHX_METRICS_PORT": "70000"})
    with pytest.raises(ConfigError):
        Settings.from_env({"TECHX_STUCK_AFTER_S": "0"})
