"""What an engine process reports to Prometheus, and how a settled batch is counted.

Each engine owns its metrics in its own registry: tests and the demo run several engines in
one process, and a registry per engine keeps their series apart (no "Duplicated timeseries").
What the whole process shares (retries, seen by the engine and the transactional publisher
alike; the process and garbage-collector collectors) lives in prometheus_client's default
registry. The metrics server serves both.

Updates happen once per batch, never per command, except for the cheap scan that finds
rejections (a substring test per outcome): an exchange's hot path pays for every call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from engine.core.batch import SettlementBatch

#: Seconds: from a millisecond to a minute, the span a stage or a command's trip takes.
_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
_RECOVERY_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
#: How a rejection looks inside an outcome's JSON array of events.
_REJECTED = b'"type":"command_rejected"'

#: Retries by operation ("settle", "claim partition", "commit transaction", ...) and cause
#: (the error class): process-wide, counted by ``engine.retry.retrying`` wherever it runs.
RETRIES = Counter(
    "techx_retries",
    "Attempts that failed with a retriable error and were tried again.",
    ["operation", "cause"],
    registry=REGISTRY,
)


class _Rejection(msgspec.Struct):
    type: str
    reason: str = ""


_decode_events = msgspec.json.Decoder(list[_Rejection]).decode


class EngineMetrics:
    """One engine's counters and histograms, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.commands = Counter(
            "techx_engine_commands", "Command records settled (dead letters included).", registry=r
        )
        self.deals = Counter("techx_engine_deals", "Deals settled.", registry=r)
        self.rejections = Counter(
            "techx_engine_rejections",
            "Well-formed commands the market refused, by reason (RejectReason).",
            ["reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "techx_engine_dead_letters",
            "Records that never became a command, by reason (DeadLetterReason).",
            ["reason"],
            registry=r,
        )
        self.batch_commands = Histogram(
            "techx_engine_batch_commands",
            "Commands per partition batch (one PostgreSQL transaction holds a fetch's batches).",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        stages = Histogram(
            "techx_engine_stage_duration_seconds",
            "Time per batch in a pipeline stage: match (CPU), settle (PostgreSQL commit),"
            " publish (handed to the producer until the broker acknowledged).",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.match_seconds = stages.labels("match")
        self.settle_seconds = stages.labels("settle")
        self.publish_seconds = stages.labels("publish")
        self.command_to_deal = Histogram(
            "techx_engine_command_to_deal_seconds",
            "From a command record's Kafka timestamp to its deal's acknowledgement by the broker"
            " (wall clocks of producer and engine).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.recovery_seconds = Histogram(
            "techx_engine_recovery_duration_seconds",
            "Time to take a partition into service: claim, snapshot, replay, verify, republish.",
            buckets=_RECOVERY_BUCKETS,
            registry=r,
        )
        self.replayed_commands = Counter(
            "techx_engine_replayed_commands", "Commands replayed by recoveries.", registry=r
        )
        self.snapshot_bytes = Gauge(
            "techx_engine_snapshot_size_bytes",
            "Size of the newest market snapshot this engine settled, by partition.",
            ["partition"],
            registry=r,
        )

    def settled(self, batches: Sequence[SettlementBatch], seconds: float) -> None:
        """Count what one PostgreSQL transaction committed."""
        self.settle_seconds.observe(seconds)
        commands = deals = 0
        for batch in batches:
            commands += batch.commands
            deals += batch.deal_count
            self.batch_commands.observe(batch.commands)
            for dead in batch.dead_letters:
                self.dead_letters.labels(dead.reason.value).inc()
            for outcome in batch.outcomes:
                if _REJECTED in outcome.events_json:
                    for event in _decode_events(outcome.events_json):
                        if event.type == "command_rejected":
                            self.rejections.labels(event.reason).inc()
            if batch.snapshot is not None:
                self.snapshot_bytes.labels(str(batch.partition)).set(len(batch.snapshot))
        self.commands.inc(commands)
        self.deals.inc(deals)

    def published(self, batches: Sequence[SettlementBatch], seconds: float) -> None:
        """Time the broker's acknowledgement, and how old each deal's command is by then."""
        self.publish_seconds.observe(seconds)
        now_ms = time.time() * 1000.0
        observe = self.command_to_deal.observe
        for batch in batches:
            for deal in batch.deals:
                observe(max(now_ms - deal.timestamp_ms, 0.0) / 1000.0)

    def recovered(self, seconds: float, replayed: int) -> None:
        self.recovery_seconds.observe(seconds)
        self.replayed_commands.inc(replayed)


#: The gateway's requests: process-wide (one gateway per process in production; tests that
#: run several in one process add theirs up).
GATEWAY_REQUESTS = Counter(
    "techx_gateway_requests",
    "HTTP requests answered, by route (the route's pattern) and status code.",
    ["route", "status"],
    registry=REGISTRY,
)
GATEWAY_REQUEST_SECONDS = Histogram(
    "techx_gateway_request_duration_seconds",
    "Time to answer a request, by route (a WebSocket's lasts as long as the socket).",
    ["route"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
