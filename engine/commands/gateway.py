"""``techx gateway``: the HTTP/WebSocket gateway, wired to PostgreSQL and Kafka, until SIGTERM.

One process: a pool for API-key lookups and a connection listening for key changes, one
idempotent producer for commands, one consumer for the stream. It keeps nothing another copy
needs, so run as many as the load asks behind any load balancer (WebSockets need one that
passes the Upgrade through).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from aiohttp import web

from engine.gateway.app import Gateway, make_app
from engine.gateway.keys import Authenticator, HashedSecret, StoredKey
from engine.gateway.limits import RateLimits
from engine.gateway.stream import FanOut, LiveStream
from engine.gateway.submit import CommandSubmitter
from engine.settings import Settings
from engine.store.api_keys import ApiKeyStore

log = structlog.get_logger()

#: How long a stopping gateway lets requests in flight finish.
_SHUTDOWN_S = 5.0


@dataclass(frozen=True, slots=True)
class RunningGateway:
    url: str
    port: int
    gateway: Gateway
    #: Done when the stream's consumer stopped (a failure, or the gateway stopping).
    stream: asyncio.Task[None]


@contextlib.asynccontextmanager
async def serving_gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    """Serve until the block exits; then stop taking requests, close sockets, let go."""
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        store = await ApiKeyStore.connect(settings.database_url, settings.topics.commands)
        stack.push_async_callback(store.close)

        async def lookup(key_id: str) -> StoredKey | None:
            row = await store.fetch(key_id)
            if row is None:
                return None
            hashed = HashedSecret(row.hash_scheme, row.salt, row.secret_hash)
            return StoredKey(row.key_id, row.participant_id, hashed, row.revoked_at is not None)

        authenticator = Authenticator(lookup, settings.gateway.key_cache_ms / 1000)
        follower = asyncio.create_task(
            store.follow_changes(authenticator.forget, authenticator.forget_all, stop)
        )
        stack.push_async_callback(_finish, follower)
        stack.callback(stop.set)

        submitter = CommandSubmitter(settings)
        await submitter.start()
        stack.push_async_callback(submitter.stop)

        stream = LiveStream(settings, FanOut())
        await stream.start()
        stream_task = asyncio.create_task(stream.run(stop))
        stack.push_async_callback(_finish, stream_task)
        stack.callback(stop.set)

        gateway = Gateway(
            settings=settings,
            authenticator=authenticator,
            limits=RateLimits(settings.gateway.rate, settings.gateway.burst),
            submit=submitter.submit,
            stream=stream,
            stream_alive=lambda: not stream_task.done(),
        )
        runner = web.AppRunner(
            make_app(gateway), access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_S
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, settings.gateway.host, settings.gateway.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        log.info("gateway_started", url=url, partitions=settings.partitions)
        yield RunningGateway(url, port, gateway, stream_task)
    log.info("gateway_stopped")


async def run_gateway(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT (exit 0), or until the stream fails (exit 1, so a
    supervisor restarts a gateway whose sockets would no longer get anything)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serving_gateway(settings) as running:
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({stopping, running.stream}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if running.stream.done():
            running.stream.result()  # raises what stopped it
            return 1
    return 0


async def _finish(task: asyncio.Task[None]) -> None:
    """Wait for a background task that was told to stop; cancel it if it does not. Its
    failure, if any, was raised to ``run_gateway`` already or is logged here."""
    done, _ = await asyncio.wait({task}, timeout=_SHUTDOWN_S)
    if not done:
        task.cancel()
        await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        log.error("gateway_task_failed", task=task.get_name(), error=repr(task.exception()))
