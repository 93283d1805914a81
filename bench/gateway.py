"""What the gateway costs over producing to Kafka directly: ``python -m bench.gateway``.

The engine (``python -m engine run``) and the gateway (``python -m engine gateway``) run as
their own processes, on fresh topics and a fresh database, beside this process, which plays
the front-ends. Broker, PostgreSQL, engine, gateway and load generator share the machine.

1. throughput: N clients each send orders one after another as fast as answers come, first
   through the gateway (HTTP POST, 202 once the broker acknowledged), then straight to Kafka
   (``send_and_wait`` with the same concurrency, the gateway's producer settings). Printed:
   commands/s and the time from request to acknowledgement.
2. outcome latency: orders at a fixed rate; the time from sending an order to its
   ``order_accepted`` arriving on the participant's WebSocket, next to the time from producing
   it directly to a ``read_committed`` consumer of the executions topic receiving it (what
   the engine alone costs a Kafka front-end).

Prints numbers; asserts nothing about speed. Cleans up its topics and database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.fresh import fresh, remove, stack_settings
from devstack.processes import process_cpu_s
from engine.commands.keys import create_api_key
from engine.core.codec import encode
from engine.producers.client import TradingClient
from engine.producers.publisher import make_producer
from engine.settings import Settings
from schemas.commands import ListTechnology, PlaceOrder

TECHNOLOGIES = [f"BENCH-GW-{n:02d}" for n in range(8)]
_JSON = {"Content-Type": "application/json"}


class _Accepted(msgspec.Struct):
    """The fields of an executions record the latency phase matches on."""

    type: str
    participant_id: str = ""
    client_order_id: str = ""


_accepted = msgspec.json.Decoder(_Accepted)


class Orders:
    """Seeded limit orders of one participant around a mid price, with fresh ids."""

    def __init__(self, participant_id: str, seed: int, phase: str) -> None:
        self.participant_id = participant_id
        self._rng = random.Random(seed)
        self._phase = phase
        self._count = 0

    def next(self) -> PlaceOrder:
        self._count += 1
        side = self._rng.choice(("bid", "offer"))
        offset = self._rng.randint(0, 20) * (-1 if side == "bid" else 1)
        return PlaceOrder(
            technology_id=self._rng.choice(TECHNOLOGIES),
            participant_id=self.participant_id,
            client_order_id=f"{self._phase}-{self._count}",
            side=side,
            quantity=self._rng.randint(1, 5),
            price=(1000 + offset) * 1000,
        )


def _ms(seconds: list[float]) -> str:
    if len(seconds) < 2:
        return "n/a"
    cuts = statistics.quantiles([s * 1000 for s in seconds], n=100, method="inclusive")
    return f"p50 {cuts[49]:6.2f} ms   p90 {cuts[89]:6.2f} ms   p99 {cuts[98]:6.2f} ms"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(settings: Settings, command: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TECHX_TOPIC_PREFIX": settings.topics.prefix,
        "TECHX_DATABASE_URL": settings.database_url,
        "TECHX_GROUP_ID": settings.group_id,
        "TECHX_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TECHX_PARTITIONS": str(settings.partitions),
        "TECHX_LOG_FORMAT": "json",
        "TECHX_LOG_LEVEL": "warning",
        "TECHX_GATEWAY_PORT": str(port),
        "TECHX_GATEWAY_RATE": "1000000",
        "TECHX_GATEWAY_BURST": "1000000",
    }
    return subprocess.Popen([sys.executable, "-m", "engine", command], env=env)


async def _until(condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not happen within {timeout_s:.0f} s")
        await asyncio.sleep(0.1)


async def _throughput_gateway(
    http: aiohttp.ClientSession, url: str, keys: list[str], per_client: int, seed: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def client(index: int) -> None:
        orders = Orders(f"bench-{index}", seed + index, f"gw{seed}")
        headers = {**_JSON, "Authorization": f"Bearer {keys[index]}"}
        for _ in range(per_client):
            body = encode(orders.next())
            started = time.perf_counter()
            async with http.post(f"{url}/v1/commands", data=body, headers=headers) as response:
                await response.read()
                if response.status != 202:
                    raise SystemExit(f"the gateway answered {response.status}")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(len(keys))))
    return time.perf_counter() - started, latencies


async def _throughput_kafka(
    settings: Settings, clients: int, per_client: int, seed: int
) -> tuple[float, list[float]]:
    producer = make_producer(settings, client_id="bench-direct")
    await producer.start()
    latencies: list[float] = []

    async def client(index: int) -> None:
        orders = Orders(f"bench-{index}", seed + 1000 + index, "direct")
        for _ in range(per_client):
            order = orders.next()
            started = time.perf_counter()
            await producer.send_and_wait(
                settings.topics.commands, encode(order), key=order.technology_id.encode()
            )
            latencies.append(time.perf_counter() - started)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        return time.perf_counter() - started, latencies
    finally:
        await producer.stop()


async def _outcomes_gateway(
    http: aiohttp.ClientSession, url: str, keys: list[str], rate: int, seconds: float, seed: int
) -> list[float]:
    """Send at ``rate`` spread over the clients; time each order to its acceptance event."""
    sent: dict[tuple[str, str], float] = {}
    seen: list[float] = []
    sockets = [
        await http.ws_connect(f"{url}/v1/stream", headers={"Authorization": f"Bearer {key}"})
        for key in keys
    ]

    async def listen(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            arrived = time.perf_counter()
            body = msgspec.json.decode(message.data)
            event = body.get("event")
            if body["type"] == "event" and event["type"] == "order_accepted":
                started = sent.pop((event["participant_id"], event["client_order_id"]), None)
                if started is not None:
                    seen.append(arrived - started)

    listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
    orders = [Orders(f"bench-{i}", seed + 2000 + i, "gw-outcome") for i in range(len(keys))]
    headers = [{**_JSON, "Authorization": f"Bearer {key}"} for key in keys]

    async def send(index: int) -> None:
        order = orders[index].next()
        sent[(order.participant_id, order.client_order_id)] = time.perf_counter()
        async with http.post(f"{url}/v1/commands", data=encode(order), headers=headers[index]):
            pass

    await _paced(rate, seconds, len(keys), send)
    await _until(_nothing_pending(sent), "the last acceptances", 30)
    for ws in sockets:
        await ws.close()
    await asyncio.gather(*listeners)
    return seen


async def _outcomes_kafka(settings: Settings, rate: int, seconds: float, seed: int) -> list[float]:
    """The same, producing directly and reading executions with read_committed."""
    producer = make_producer(settings, client_id="bench-direct")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        isolation_level="read_committed",
        fetch_max_wait_ms=5,
    )
    await producer.start()
    await consumer.start()
    sent: dict[tuple[str, str], float] = {}
    seen: list[float] = []
    stop = asyncio.Event()
    tps = [TopicPartition(settings.topics.executions, p) for p in range(settings.partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)

    async def listen() -> None:
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=50)).values():
                arrived = time.perf_counter()
                for record in records:
                    event = _accepted.decode(record.value)
                    if event.type == "order_accepted":
                        started = sent.pop((event.participant_id, event.client_order_id), None)
                        if started is not None:
                            seen.append(arrived - started)

    listener = asyncio.create_task(listen())
    orders = [Orders(f"bench-{i}", seed + 3000 + i, "direct-outcome") for i in range(8)]

    async def send(index: int) -> None:
        order = orders[index].next()
        sent[(order.participant_id, order.client_order_id)] = time.perf_counter()
        await producer.send_and_wait(
            settings.topics.commands, encode(order), key=order.technology_id.encode()
        )

    try:
        await _paced(rate, seconds, len(orders), send)
        await _until(_nothing_pending(sent), "the last acceptances", 30)
    finally:
        stop.set()
        await listener
        await producer.stop()
        await consumer.stop()
    return seen


def _nothing_pending(sent: dict[tuple[str, str], float]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not sent

    return check


async def _paced(
    rate: int, seconds: float, clients: int, send: Callable[[int], Coroutine[Any, Any, None]]
) -> None:
    """``rate`` sends a second for ``seconds``, round-robin over the clients, each in its
    own task (a slow answer does not hold the next send back)."""
    interval = 1 / rate
    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = started + n * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send(n % clients))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)


async def run(clients: int, per_client: int, rate: int, seconds: float, seed: int) -> None:
    base = await stack_settings()
    settings = await fresh(base, f"gw{int(time.time())}")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    keys = [(await create_api_key(settings, f"bench-{i}"))[1] for i in range(clients)]
    engine = _start(settings, "run", port)
    gateway = _start(settings, "gateway", port)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"gateway benchmark: {clients} clients, {settings.partitions} partitions, engine outputs "
        f"{settings.output_guarantee}; broker, PostgreSQL, engine, gateway and this process on "
        f"{os.cpu_count()} cores (load average {load})"
    )
    try:
        async with TradingClient(settings, client_id="bench-lister") as lister:
            for technology_id in TECHNOLOGIES:
                await lister.send(ListTechnology(technology_id, "bench-ops", "Bench", 1000, 1))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients * 2)) as http:

            async def gateway_up() -> bool:
                try:
                    async with http.get(f"{url}/healthz") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await _until(gateway_up, "the gateway start", 60)
            await _throughput_gateway(http, url, keys, 20, seed)  # warm up: keys, connections
            cpu = process_cpu_s(gateway.pid)
            elapsed, latencies = await _throughput_gateway(http, url, keys, per_client, seed + 7)
            total = clients * per_client
            cpu_ms = (process_cpu_s(gateway.pid) - cpu) / total * 1000
            print(
                f"  gateway  {total:>7,} orders in {elapsed:6.2f} s = {total / elapsed:>7,.0f} "
                f"commands/s   request -> 202 (broker ack): {_ms(latencies)}"
            )
            print(
                f"           the gateway process used {cpu_ms:.2f} ms of CPU per command "
                f"(HTTP, key check, decode, produce, and its stream reading the topics): "
                f"{1000 / cpu_ms:,.0f} commands/s per core at most"
            )
            elapsed, latencies = await _throughput_kafka(settings, clients, per_client, seed)
            print(
                f"  direct   {total:>7,} orders in {elapsed:6.2f} s = {total / elapsed:>7,.0f} "
                f"commands/s   send -> broker ack:        {_ms(latencies)}"
            )
            seen = await _outcomes_gateway(http, url, keys, rate, seconds, seed)
            print(
                f"  outcome  {len(seen):>7,} orders at {rate}/s, POST -> order_accepted on the "
                f"WebSocket:        {_ms(seen)}"
            )
        seen = await _outcomes_kafka(settings, rate, seconds, seed)
        print(
            f"  outcome  {len(seen):>7,} orders at {rate}/s, produce -> order_accepted to a "
            f"read_committed consumer: {_ms(seen)}"
        )
    finally:
        for process in (gateway, engine):
            process.send_signal(signal.SIGTERM)
        for process in (gateway, engine):
            await asyncio.to_thread(process.wait, 60)
        await remove(base, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--per-client", type=int, default=500, help="orders each client sends")
    parser.add_argument("--rate", type=int, default=200, help="orders/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency phase duration")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(run(args.clients, args.per_client, args.rate, args.seconds, args.seed))


if __name__ == "__main__":
    main()
