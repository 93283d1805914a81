"""The HTTP side of observability: ``/metrics``, ``/healthz`` and ``/readyz`` with aiohttp.

An engine serves them on ``TECHX_METRICS_PORT`` (9464 by default, 0: no server); the gateway
serves ``/metrics`` on its own port beside its ``/healthz``. A port already taken (a second
engine on one host) is logged and the engine runs on without the server: matching matters
more than its metrics, and in a container the probes failing make the problem visible.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Protocol

import structlog
from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.observability.health import (
    EngineState,
    PartitionProgress,
    StuckDetector,
    readiness,
)
from engine.observability.metrics import GATEWAY_REQUEST_SECONDS, GATEWAY_REQUESTS

log = structlog.get_logger()

#: Prometheus's text format, version 0.0.4 (what every scraper accepts).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: How long a partition with work waiting may publish nothing before /healthz fails.
DEFAULT_STUCK_AFTER_S = 60.0


class EngineProbe(Protocol):
    """What the server asks an engine; the engine answers from memory, without I/O."""

    def state(self) -> EngineState: ...

    def progress(self) -> list[PartitionProgress]: ...


class PipelineCollector(Collector):
    """Per-partition offsets and lag, read from the engine at scrape time (nothing to keep
    up to date on the hot path)."""

    def __init__(self, probe: EngineProbe) -> None:
        self._probe = probe

    def collect(self) -> Iterator[GaugeMetricFamily]:
        offsets = GaugeMetricFamily(
            "techx_engine_partition_offset",
            "Next offset of a command partition per stage: highwater (log end), matched,"
            " settled (PostgreSQL's commit point), published (acknowledged by the broker).",
            labels=["partition", "stage"],
        )
        lag = GaugeMetricFamily(
            "techx_engine_partition_lag",
            "Commands on the log this engine has not matched yet (highwater - matched).",
            labels=["partition"],
        )
        for p in self._probe.progress():
            partition = str(p.partition)
            if p.highwater is not None:
                offsets.add_metric([partition, "highwater"], p.highwater)
            offsets.add_metric([partition, "matched"], p.matched)
            offsets.add_metric([partition, "settled"], p.settled)
            offsets.add_metric([partition, "published"], p.published)
            lag.add_metric([partition], p.lag)
        state = self._probe.state()
        partitions = GaugeMetricFamily(
            "techx_engine_partitions",
            "Command partitions assigned to this engine, by state (owned: in service).",
            labels=["state"],
        )
        partitions.add_metric(["owned"], len(state.owned))
        partitions.add_metric(["recovering"], len(state.recovering))
        ready = GaugeMetricFamily("techx_engine_ready", "1 when /readyz answers 200.")
        ready.add_metric([], 1.0 if readiness(state).ok else 0.0)
        yield from (offsets, lag, partitions, ready)


def exposition(registries: Sequence[CollectorRegistry]) -> bytes:
    return b"".join(generate_latest(registry) for registry in registries)


def metrics_handler(
    registries: Sequence[CollectorRegistry] = (REGISTRY,),
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler for ``GET /metrics`` over the given registries."""

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=exposition(registries), headers={"Content-Type": CONTENT_TYPE})

    return metrics


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` of one engine."""

    def __init__(
        self,
        probe: EngineProbe,
        registry: CollectorRegistry,
        stuck_after_s: float = DEFAULT_STUCK_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._registries = (REGISTRY, registry)
        self._stuck = StuckDetector(stuck_after_s)
        self._clock = clock
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        registry.register(PipelineCollector(probe))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def start(self, host: str, port: int) -> int | None:
        """Listen; the port bound (``port`` 0 in tests: any free one), or None if taken."""
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            log.warning("metrics_server_not_started", host=host, port=port, error=str(e))
            return None
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("metrics_server_started", host=host, port=self.port)
        return self.port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        self._stuck.check(self._probe.progress(), self._clock())  # scrapes refresh the clock
        body = exposition(self._registries)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _healthz(self, request: web.Request) -> web.Response:
        verdict = self._stuck.check(self._probe.progress(), self._clock())
        return web.json_response(verdict.body(), status=200 if verdict.ok else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        verdict = readiness(self._probe.state())
        return web.json_response(verdict.body(), status=200 if verdict.ok else 503)


@web.middleware
async def measured(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Count and time every request by its route's pattern (never its raw path: that would
    make a series per URL anyone cares to try). The outermost middleware, so refusals count."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        GATEWAY_REQUESTS.labels(route, str(status)).inc()
        GATEWAY_REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
