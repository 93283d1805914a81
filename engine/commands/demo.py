"""``techx demo``: the whole exchange on this machine, watched live.

Checks that Kafka and PostgreSQL answer (``make demo`` starts the local development stack
first, with ``python -m devstack up``), runs one engine in-process, lets a simulated
front-end trade a few technologies for a while, prints each deal as it is settled and
published, then reads a summary back from PostgreSQL. The simulator may use a seeded RNG
and the wall clock; the engine never does.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from engine.commands.auction_show import ShowIds, describe, run_show
from engine.commands.run import run_engine
from engine.commands.setup import setup
from engine.core.codec import decode_event, decode_view
from engine.errors import DemoError, TechXError
from engine.producers.client import TradingClient
from engine.producers.simulation import DEMO_LISTINGS, OrderFlow
from engine.settings import Settings
from engine.store.connection import connected
from engine.store.reports import turnover_since
from schemas.events import Deal, Event, MarketView

#: How long each server may take to answer the check before the demo gives up.
SERVER_CHECK_TIMEOUT_S = 10.0
_START_SERVERS = (
    "start them first: `make stack-up` (or `python -m devstack up`) in a TechX checkout, "
    "or point TECHX_KAFKA_BOOTSTRAP and TECHX_DATABASE_URL at servers that run"
)


async def _kafka_problem(settings: Settings, timeout_s: float) -> str | None:
    admin = AIOKafkaAdminClient(**settings.kafka_options(), client_id="techx-demo")
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            await admin.list_topics()
    except TimeoutError:
        return f"no answer within {timeout_s:.0f} s"
    except (KafkaError, OSError) as e:
        return str(e) or repr(e)
    finally:
        await admin.close()
    return None


async def _database_problem(dsn: str, timeout_s: float) -> str | None:
    try:
        async with asyncio.timeout(timeout_s), connected(dsn) as connection:
            await connection.fetchval("SELECT 1")
    except TimeoutError:
        return f"no answer within {timeout_s:.0f} s"
    except TechXError as e:
        return str(e)
    return None


async def check_servers(settings: Settings, timeout_s: float = SERVER_CHECK_TIMEOUT_S) -> None:
    """Fail at once, saying what to do, when Kafka or PostgreSQL does not answer."""
    problems = []
    kafka = await _kafka_problem(settings, timeout_s)
    if kafka is not None:
        problems.append(f"Kafka at {settings.kafka_bootstrap} ({kafka})")
    database = await _database_problem(settings.database_url, timeout_s)
    if database is not None:
        where = urlsplit(settings.database_url)
        problems.append(f"PostgreSQL at {where.hostname}:{where.port or 5432} ({database})")
    if problems:
        raise DemoError(f"no answer from {' and '.join(problems)}; {_START_SERVERS}")


def _vnd(amount: int) -> str:
    return f"{amount:,}".replace(",", ".") + " đ"


async def _print_deals(
    settings: Settings, started: asyncio.Event, stop: asyncio.Event, ids: ShowIds
) -> int:
    consumer = AIOKafkaConsumer(**settings.kafka_options(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    printed = 0
    try:
        topics = (settings.topics.deals, settings.topics.executions, settings.topics.market_data)
        tps = [TopicPartition(topic, p) for topic in topics for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        started.set()
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=200)
            for tp, records in fetched.items():
                for record in records:
                    if tp.topic != settings.topics.deals:
                        line = describe(_decode_any(record.value), _vnd, ids)
                        if line is not None:
                            print(line, flush=True)
                        continue
                    deal = decode_event(record.value)
                    if not isinstance(deal, Deal):
                        continue
                    printed += 1
                    print(
                        f"  DEAL {deal.deal_id:<22} {deal.quantity:>3} x {_vnd(deal.price):>17}"
                        f"  {deal.buyer_id} <- {deal.seller_id}",
                        flush=True,
                    )
    finally:
        await consumer.stop()
    return printed


def _decode_any(raw: bytes) -> Event | MarketView:
    return decode_view(raw) if raw.startswith(b'{"type":"market_view"') else decode_event(raw)


async def _summary(settings: Settings, since_ms: int) -> None:
    turnovers, dead = await turnover_since(
        settings.database_url, settings.topics.commands, since_ms
    )
    print("\nSettled in PostgreSQL during this demo:")
    print(f"  {'technology':<18}{'deals':>7}{'units':>8}{'turnover':>24}{'low':>17}{'high':>17}")
    for row in turnovers:
        print(
            f"  {row.technology_id:<18}{row.deals:>7}{row.units:>8}"
            f"{_vnd(row.turnover):>24}{_vnd(row.low):>17}{_vnd(row.high):>17}"
        )
    print(f"  dead letters: {dead}")


async def _ready(ready: asyncio.Event, task: asyncio.Task[object], timeout_s: float = 60) -> None:
    """Wait for a background task to say it is ready, or surface why it died first."""
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait(
        {waiter, task}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
    )
    if task in done:
        waiter.cancel()
        task.result()  # raises what killed it
        raise DemoError("a demo task ended before it was ready")
    if waiter not in done:
        waiter.cancel()
        raise DemoError(f"a demo task was not ready within {timeout_s:.0f} s")


async def run_demo(settings: Settings, seconds: float, rate: int, seed: int) -> int:
    await check_servers(settings)
    await setup(settings)
    stop_engine, stop_printer = asyncio.Event(), asyncio.Event()
    engine_ready, printer_ready = asyncio.Event(), asyncio.Event()
    ids = ShowIds.for_run(int(time.time() * 1000))
    engine_task = asyncio.create_task(run_engine(settings, engine_ready, stop_engine))
    printer = asyncio.create_task(_print_deals(settings, printer_ready, stop_printer, ids))
    await _ready(engine_ready, engine_task)
    await _ready(printer_ready, printer)
    since_ms = int(time.time() * 1000)
    flow = OrderFlow(seed, run_tag=f"demo{since_ms}")
    sent = 0
    print(
        f"TechX demo: {len(DEMO_LISTINGS)} continuous books at ~{rate} orders/s for "
        f"{seconds:.0f} s, and one auction of each kind: {', '.join(ids.all())}"
    )
    async with TradingClient(settings, client_id="techx-demo") as client:
        await client.send_many(flow.listing_commands())
        stop_show = asyncio.Event()
        show = asyncio.create_task(run_show(client, stop_show, ids, since_ms))
        deadline = time.monotonic() + seconds
        tick_s = 0.1
        while time.monotonic() < deadline:
            sent += await client.send_many(flow.next_commands(max(1, int(rate * tick_s))))
            await asyncio.sleep(tick_s)
        stop_show.set()
        await show
    await asyncio.sleep(2.0)  # let the last batch settle and print
    stop_engine.set()
    stop_printer.set()
    engine = await engine_task
    printed = await printer
    print(
        f"\n{sent} orders sent, {engine.commands_processed} commands matched, "
        f"{engine.deals_settled} deals settled, {printed} deals seen on {settings.topics.deals}"
    )
    await _summary(settings, since_ms)
    return 0
