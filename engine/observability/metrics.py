"""What an engine process reports to Prometheus, and how a settled batch is counted.

Each engine owns its metrics in its own registry: tests and the demo run several engines in
one process, and a registry per engine keeps their series apart (no "Duplicated timeseries").
What the whole process shares (retries, seen by the engine and the transactional publisher
alike; the process and garbage-collector collectors) lives in prometheus_client's default
registry. The metrics server serves both.

Updates happen once per batch, never through a prometheus_client call per command or per
deal (about a microsecond each, with its lock): rejections are found by a prefix test per
execution message (only a rejection's own bytes are searched for its reason), and the
command-to-deal histogram takes a batch's sorted deal timestamps at once. The cost is
measured in the README (Metrics and health).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterator, Sequence
from operator import attrgetter

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from engine.core.batch import SettlementBatch

#: Seconds: from a millisecond to a minute, the span a stage or a command's trip takes.
_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
_RECOVERY_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
#: How a rejection event starts (msgspec writes the tag first), and its reason: the first
#: ``"reason":"`` in it, as a quote inside a string value is escaped.
_TIMESTAMP = attrgetter("timestamp_ms")

#: Retries by operation ("settle", "claim partition", "commit transaction", ...) and cause
#: (the error class): process-wide, counted by ``engine.retry.retrying`` wherever it runs.
RETRIES = Counter(
    "techx_retries",
    "Attempts that failed with a retriable error and were tried again.",
    ["operation", "cause"],
    registry=REGISTRY,
)


class BatchHistogram(Collector):
    """A Prometheus histogram of ages that takes a whole batch in one call: a bisect per
    bucket over sorted timestamps instead of prometheus_client's locked update per value.
    Single-threaded, like the engine's event loop that both observes and serves scrapes."""

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = list(buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last one: above every bound
        self._sum = 0.0
        registry.register(self)

    def observe_ages(self, now_ms: int, sorted_ms: Sequence[int]) -> None:
        """Observe ``now - t`` in seconds for each ``t`` (sorted, in milliseconds): a bisect
        per bucket, not per value."""
        if not sorted_ms:
            return
        counts, n, taken = self._counts, len(sorted_ms), 0
        for i, bound in enumerate(self._bounds):
            # Ages at most ``bound`` are the timestamps at least now - bound.
            older = bisect_left(sorted_ms, now_ms - bound * 1000.0)
            within = n - older - taken
            counts[i] += within
            taken += within
        counts[-1] += n - taken
        self._sum += max(now_ms * n - sum(sorted_ms), 0) / 1000.0

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative, buckets = 0, []
        for bound, count in zip([*self._bounds, float("inf")], self._counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
        yield HistogramMetricFamily(
            self._name, self._documentation, buckets=buckets, sum_value=self._sum
        )


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
        self.command_to_deal = BatchHistogram(
            "techx_engine_command_to_deal_seconds",
            "From a command record's Kafka timestamp to its deal's acknowledgement by the broker"
            " (wall clocks of producer and engine).",
            _LATENCY_BUCKETS,
            r,
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
            "Size of the newest market snapshot settled or recovered from, by partition.",
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
            if batch.dead_letters:
                for reason, n in Tally(d.reason.value for d in batch.dead_letters).items():
                    self.dead_letters.labels(reason).inc(n)
            if batch.rejections:
                for reason, n in Tally(batch.rejections).items():
                    self.rejections.labels(reason).inc(n)
            if batch.snapshot is not None:
                self.snapshot_bytes.labels(str(batch.partition)).set(len(batch.snapshot))
        self.commands.inc(commands)
        self.deals.inc(deals)

    def published(self, batches: Sequence[SettlementBatch], seconds: float) -> None:
        """Time the broker's acknowledgement, and how old each deal's command is by then."""
        self.publish_seconds.observe(seconds)
        now_ms = time.time_ns() // 1_000_000
        stamps = sorted(map(_TIMESTAMP, (deal for batch in batches for deal in batch.deals)))
        self.command_to_deal.observe_ages(now_ms, stamps)

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
