"""Retrying what may succeed later, in a few log lines per outage rather than one per try.

Shared by the engine's stages (PostgreSQL calls, recovery) and the transactional publisher
(a broker restart mid-transaction), so every outage reads the same in the logs: ``retrying``
once, ``still_retrying`` every 30 s, ``retry_succeeded`` at the end; and every retry counts
in ``techx_retries_total`` by operation and cause.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from engine.errors import TechXError
from engine.observability.metrics import RETRIES

log = structlog.get_logger()

T = TypeVar("T")

FIRST_DELAY_S = 0.1
MAX_DELAY_S = 5.0
#: While a retry goes on, how often it is said again.
REMINDER_S = 30.0


async def retrying(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    give_up: Callable[[], bool] = lambda: False,
    **context: object,
) -> T:
    """Run ``attempt`` until it succeeds, backing off; re-raise an error that is not
    ``retriable``, or any error once ``give_up()`` says so (a stop was asked for)."""
    delay = FIRST_DELAY_S
    failing_since: float | None = None
    last_said = 0.0
    attempts = 0
    while True:
        try:
            result = await attempt()
        except TechXError as e:
            if not e.retriable or give_up():
                raise
            now = time.monotonic()
            attempts += 1
            RETRIES.labels(what, type(e).__name__).inc()
            if failing_since is None:
                failing_since = last_said = now
                log.warning("retrying", what=what, error=str(e), delay_s=delay, **context)
            elif now - last_said >= REMINDER_S:
                last_said = now
                log.warning(
                    "still_retrying",
                    what=what,
                    error=str(e),
                    down_s=round(now - failing_since, 1),
                    attempts=attempts,
                    **context,
                )
        else:
            if failing_since is not None:
                log.info(
                    "retry_succeeded",
                    what=what,
                    down_s=round(time.monotonic() - failing_since, 1),
                    attempts=attempts,
                    **context,
                )
            return result
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY_S)
