"""When an engine is alive and when it is ready: pure decisions over what it reports.

Ready (``/readyz``): the process owns at least one partition, none of its assigned
partitions is still recovering, and it is not stopping. A load balancer or a rolling update
waits for that before counting the engine in.

Alive (``/healthz``): the pipeline is not stuck. A partition is stuck when it has work
waiting (commands on the log beyond what is published, or matched but not yet published)
and its published offset has not moved for ``stuck_after_s`` seconds. An idle engine is
healthy however long it idles; a long recovery is a readiness matter, not a liveness one (a
restart would only start the replay again). Time is passed in, so tests need no sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """How far each stage of one owned partition has got (next offsets)."""

    partition: int
    matched: int
    settled: int
    published: int
    #: The log's end as the consumer last saw it; None before the first fetch.
    highwater: int | None = None

    @property
    def lag(self) -> int:
        """Commands on the log the engine has not matched yet."""
        return max(self.highwater - self.matched, 0) if self.highwater is not None else 0

    @property
    def pending(self) -> bool:
        """Whether there is work this partition should be making progress on."""
        return self.lag > 0 or self.matched > self.published


@dataclass(frozen=True, slots=True)
class EngineState:
    """What readiness needs: assignment and recovery."""

    owned: tuple[int, ...]
    recovering: tuple[int, ...]
    stopping: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reasons: tuple[str, ...] = ()

    def body(self) -> dict[str, object]:
        return {"status": "ok" if self.ok else "failing", "reasons": list(self.reasons)}


def readiness(state: EngineState) -> Verdict:
    reasons: list[str] = []
    if state.stopping:
        reasons.append("stopping")
    if not state.owned:
        reasons.append("owns no partition")
    if state.recovering:
        reasons.append(f"recovering partitions {list(state.recovering)}")
    return Verdict(not reasons, tuple(reasons))


@dataclass(slots=True)
class StuckDetector:
    """Remembers since when each partition's published offset stands still."""

    stuck_after_s: float
    #: partition -> (published offset last seen, when it was first seen at that value)
    _since: dict[int, tuple[int, float]] = field(default_factory=dict)

    def check(self, progress: list[PartitionProgress], now: float) -> Verdict:
        reasons: list[str] = []
        seen: dict[int, tuple[int, float]] = {}
        for p in progress:
            last = self._since.get(p.partition)
            since = last[1] if last is not None and last[0] == p.published else now
            seen[p.partition] = (p.published, since)
            if p.pending and now - since >= self.stuck_after_s:
                reasons.append(
                    f"partition {p.partition} stuck: published offset {p.published} for"
                    f" {now - since:.0f} s with lag {p.lag} and"
                    f" {p.matched - p.published} matched but unpublished"
                )
        self._since = seen  # partitions handed back are forgotten
        return Verdict(not reasons, tuple(reasons))
