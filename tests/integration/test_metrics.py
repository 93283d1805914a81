"""An engine on the real stack serves /metrics, /healthz and /readyz that follow its work."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.commands.gateway import serving_gateway
from engine.commands.run import run_engine
from engine.producers.client import TradingClient
from engine.settings import Settings
from tests.integration.harness import wait_until_settled
from tests.polling import eventually

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = await _get(url)
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_move_with_commands_and_readiness_follows_recovery(
    settings: Settings,
) -> None:
    """Counters and histograms move as commands settle; /readyz is 200 only once recovered."""
    port = _free_port()
    settings = replace(settings, metrics_host="127.0.0.1", metrics_port=port)
    base = f"http://127.0.0.1:{port}"
    ready, stop = asyncio.Event(), asyncio.Event()
    engine = asyncio.create_task(run_engine(settings, ready, stop))
    readiness_seen: list[int] = []

    async def server_up() -> bool:
        try:
            readiness_seen.append((await _get(f"{base}/readyz"))[0])
        except aiohttp.ClientConnectionError:
            return False
        return True

    await eventually(server_up, 30, "the metrics server answering")
    await asyncio.wait_for(ready.wait(), 60)
    assert readiness_seen[0] == 503  # answered before its partitions were recovered
    await eventually(
        lambda: _ready(base), 30, "/readyz 200 after recovery"
    )  # ready is set once every assigned partition is in service
    assert (await _get(f"{base}/healthz"))[0] == 200

    async with TradingClient(settings) as client:
        await client.list_technology("PAT-M", "ops", "Metrics test", 1, 1)
        await client.place("PAT-M", "seller", "s1", "offer", 3, 1_000)
        await client.place("PAT-M", "buyer", "b1", "bid", 2, 1_100)
        await client.place("PAT-NONE", "buyer", "b2", "bid", 2, 1_100)
        await client.send_raw("PAT-M", b'{"type": "place_order"')
    await wait_until_settled(settings)

    async def counted() -> bool:
        # Settled (counted) comes before published (the broker's acknowledgement): the last
        # batch may be counted while its publish is still in flight.
        samples = await _scrape(f"{base}/metrics")
        return (
            samples.get(("techx_engine_commands_total", ()), 0) >= 5
            and samples.get(("techx_engine_command_to_deal_seconds_count", ()), 0) >= 1
            and _published(samples) >= 5
        )

    await eventually(counted, 30, "commands and published deals counted")
    samples = await _scrape(f"{base}/metrics")
    assert samples[("techx_engine_commands_total", ())] == 5
    assert samples[("techx_engine_deals_total", ())] == 1
    assert samples[("techx_engine_rejections_total", (("reason", "unknown_technology"),))] == 1
    assert samples[("techx_engine_dead_letters_total", (("reason", "malformed_json"),))] == 1
    for stage in ("match", "settle", "publish"):
        key = ("techx_engine_stage_duration_seconds_count", (("stage", stage),))
        assert samples[key] >= 1, stage
    assert samples[("techx_engine_recovery_duration_seconds_count", ())] == settings.partitions
    assert samples[("techx_engine_partitions", (("state", "owned"),))] == settings.partitions
    assert samples[("techx_engine_ready", ())] == 1
    lags = [v for (name, _), v in samples.items() if name == "techx_engine_partition_lag"]
    assert len(lags) == settings.partitions
    assert sum(lags) == 0
    assert _published(samples) == 5

    stop.set()
    await eventually(
        lambda: _not_ready(base), 30, "/readyz 503 once stopping (or the server closed)"
    )
    await asyncio.wait_for(engine, 30)
    with pytest.raises(aiohttp.ClientConnectionError):
        await _get(f"{base}/readyz")


def _published(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    """Commands published, summed over the partitions' published offsets."""
    return sum(
        v
        for (name, labels), v in samples.items()
        if name == "techx_engine_partition_offset" and ("stage", "published") in labels
    )


async def _ready(base: str) -> bool:
    return (await _get(f"{base}/readyz"))[0] == 200


async def _not_ready(base: str) -> bool:
    try:
        return (await _get(f"{base}/readyz"))[0] == 503
    except aiohttp.ClientConnectionError:
        return True


async def test_gateway_serves_its_request_metrics(settings: Settings) -> None:
    """The gateway's /metrics counts requests by route pattern and status, refusals too."""
    settings = replace(settings, gateway=replace(settings.gateway, port=0))
    async with serving_gateway(settings) as gateway:
        status, _ = await _get(f"{gateway.url}/v1/stream")  # no key: 401
        assert status == 401
        samples = await _scrape(f"{gateway.url}/metrics")
    key = ("techx_gateway_requests_total", (("route", "/v1/stream"), ("status", "401")))
    assert samples[key] >= 1
    assert ("techx_gateway_request_duration_seconds_count", (("route", "/v1/stream"),)) in samples
