"""The ticker: appends a tick record to every command partition at a fixed interval.

The engine reads no clock; its time is the broker's timestamp of the records it applies. A
tick is a record that only carries time, so auction ends, Dutch steps, GTD expiries and call
uncrosses fire when nobody trades, at log positions a replay meets again. Several tickers
(one per engine process) are harmless: a tick that finds nothing due costs a comparison.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiokafka.errors import KafkaError

from engine.core.codec import TICK_RECORD
from engine.kafka_security import is_refusal, kafka_error
from engine.producers.publisher import make_producer
from engine.settings import Settings

log = structlog.get_logger()

#: Any key works (the engine skips the key check for ticks); one that says what it is.
_TICK_KEY = b"tick"


async def run_ticker(settings: Settings, stop: asyncio.Event) -> None:
    """Tick every ``settings.tick_interval_ms`` until ``stop`` is set. A broker outage is
    logged once when it starts and once when it ends: ticks resume by themselves."""
    interval_s = settings.tick_interval_ms / 1000
    producer = make_producer(settings, client_id="techx-ticker")
    try:
        await producer.start()
    except KafkaError as e:
        await producer.stop()
        error = kafka_error(e, "starting the ticker", settings.kafka_security)
        # `techx run` carries on without it (matching needs no ticks), so say it loudly.
        log.error("ticker_failed", error=str(error), error_type=type(error).__name__)
        raise error from e
    failing_since: float | None = None
    loop = asyncio.get_running_loop()
    log.info(
        "ticker_started", interval_ms=settings.tick_interval_ms, partitions=settings.partitions
    )
    try:
        while not stop.is_set():
            try:
                sent = [
                    await producer.send(
                        settings.topics.commands, TICK_RECORD, key=_TICK_KEY, partition=partition
                    )
                    for partition in range(settings.partitions)
                ]
                await asyncio.gather(*sent)
                if failing_since is not None:
                    log.info("ticker_recovered", down_s=round(loop.time() - failing_since, 1))
                    failing_since = None
            except KafkaError as e:
                if failing_since is None:
                    failing_since = loop.time()
                    # A refused write (an ACL taken away) is tried again too: granted back,
                    # ticks resume.
                    log.warning("ticker_failing", error=repr(e), refused=is_refusal(e))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
    finally:
        await producer.stop()
        log.info("ticker_stopped")
