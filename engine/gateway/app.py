"""The gateway's HTTP and WebSocket application (aiohttp).

aiohttp because one well-kept, typed library gives the server, WebSockets (with ping and
back-pressure) and the client the tests and the benchmark need, on the asyncio loop the
engine's Kafka and PostgreSQL clients already use; an ASGI framework would add a server
(uvicorn) and a WebSocket client on top, for nothing the gateway uses.

Routes:
- ``POST /v1/commands``: one command (JSON), authenticated; 202 once the broker has it;
- ``GET /v1/stream``: WebSocket of the participant's own events (and market data on asking);
- ``GET /v1/market``: public WebSocket of market data (and, on asking, public deals), no key;
- ``GET /healthz``: whether this process serves and its stream reads;
- ``GET /`` and ``/market``: the live market page (``static/``), a client of ``/v1/market``.

Handlers only raise :class:`GatewayError`; ``_problems`` answers RFC 7807 in one place.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from engine.core.codec import MAX_COMMAND_BYTES
from engine.errors import BrokerUnavailableError, StoreUnavailableError
from engine.gateway.errors import (
    PROBLEM_CONTENT_TYPE,
    PROBLEM_TYPE_PREFIX,
    BadCommandError,
    GatewayError,
    PayloadTooLargeError,
    Problem,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from engine.gateway.intake import Submission, prepare
from engine.gateway.keys import Authenticator, Identity
from engine.gateway.limits import RateLimits
from engine.gateway.stream import (
    CLOSE_STREAM_FAILED,
    CLOSE_TOO_SLOW,
    DEALS,
    MARKET_DATA,
    OWN_TOPICS,
    LiveStream,
    Position,
    Subscription,
    parse_resume,
    positions_message,
)
from engine.observability.server import measured, metrics_handler
from engine.settings import Settings

log = structlog.get_logger()

#: WebSocket pings every this many seconds: a dead client is noticed and its socket freed.
_HEARTBEAT_S = 20.0
_JSON = "application/json"
#: The market page's files: plain HTML, JavaScript and CSS, shipped in the wheel, no build.
STATIC = Path(__file__).with_name("static")
#: The page loads its own script and style and talks to its own gateway, nothing else.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
#: A socket opened ``from=beginning`` with deals gets those of the last this many offsets of
#: each deals partition: the topic is kept forever, and a page wants the latest, not all.
RECENT_DEAL_OFFSETS = 50


class Accepted(msgspec.Struct, frozen=True):
    """The 202 answer: where each record went (the engine's events carry the offset as
    ``source_offset`` on the same partition number) and who the command was stamped as."""

    type: str
    participant_id: str
    submitted_by: str | None
    records: list[dict[str, int]]
    technology_id: str | None = None


@dataclass(slots=True)
class Gateway:
    """What the routes need; the composition root (``engine.commands.gateway``) builds it."""

    settings: Settings
    authenticator: Authenticator
    limits: RateLimits
    submit: Callable[[Submission], Awaitable[list[tuple[int, int]]]]
    stream: LiveStream
    stream_alive: Callable[[], bool] = lambda: True
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    #: Each socket's writer and catch-up, held until they end.
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def make_app(gateway: Gateway) -> web.Application:
    # The body limit is the command limit: aiohttp refuses more (413) before reading it all.
    app = web.Application(client_max_size=MAX_COMMAND_BYTES, middlewares=[measured, _problems])
    routes = _Routes(gateway)
    app.router.add_post("/v1/commands", routes.post_command)
    app.router.add_get("/v1/stream", routes.own_stream)
    app.router.add_get("/v1/market", routes.market_stream)
    app.router.add_get("/healthz", routes.health)
    app.router.add_get("/metrics", metrics_handler())
    app.router.add_get("/", routes.page)
    app.router.add_get("/market", routes.page)
    app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
    app.on_shutdown.append(routes.close_sockets)
    return app


class _Routes:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._settings = gateway.settings

    async def post_command(self, request: web.Request) -> web.Response:
        identity = await self._identity(request, allow_query=False)
        self._take_token(identity)
        if request.content_type != _JSON:
            raise UnsupportedMediaTypeError(
                f"send the command as {_JSON}, not {request.content_type or 'no content type'}"
            )
        if request.content_length is not None and request.content_length > MAX_COMMAND_BYTES:
            raise PayloadTooLargeError(
                f"the body is {request.content_length} bytes; a command is at most "
                f"{MAX_COMMAND_BYTES} bytes"
            )
        body = await request.read()
        submission = prepare(body, identity.participant_id, self._settings.partitions)
        records = await self._gateway.submit(submission)
        command = submission.command
        log.debug(
            "command_submitted",
            participant_id=identity.participant_id,
            key_id=identity.key_id,
            records=records,
        )
        accepted = Accepted(
            type=str(type(command).__struct_config__.tag),
            participant_id=getattr(command, "participant_id", identity.participant_id),
            submitted_by=getattr(command, "submitted_by", None),
            records=[{"partition": p, "offset": o} for p, o in records],
            technology_id=getattr(command, "technology_id", None),
        )
        return web.Response(status=202, body=msgspec.json.encode(accepted), content_type=_JSON)

    async def own_stream(self, request: web.Request) -> web.StreamResponse:
        identity = await self._identity(request, allow_query=self._settings.gateway.query_key)
        self._take_token(identity)
        topics: tuple[str, ...] = OWN_TOPICS
        if _flag(request.query.get("market", "")):
            topics = (*OWN_TOPICS, MARKET_DATA)
        resume = parse_resume(request.query.get("resume", ""), topics, self._settings.partitions)
        return await self._serve(request, identity.participant_id, topics, resume, True)

    async def market_stream(self, request: web.Request) -> web.StreamResponse:
        """Public: market views are what any trading screen shows; no key, no participant.
        ``deals=true`` adds the deals stream, each deal reduced to its public part."""
        topics: tuple[str, ...] = (MARKET_DATA,)
        if _flag(request.query.get("deals", "")):
            topics = (MARKET_DATA, DEALS)
        partitions = range(self._settings.partitions)
        start = request.query.get("from", "")
        if start == "beginning":
            # The compacted topic from its start: the newest view of every technology.
            resume = {(MARKET_DATA, p): 0 for p in partitions}
            if DEALS in topics:
                live = self._gateway.stream.fanout.positions
                for p in partitions:
                    resume[(DEALS, p)] = max(0, live.get((DEALS, p), 0) - RECENT_DEAL_OFFSETS)
        elif start:
            raise BadCommandError("bad_resume", 'from is "beginning" or left out')
        else:
            resume = parse_resume(
                request.query.get("resume", ""), topics, self._settings.partitions
            )
        return await self._serve(request, None, topics, resume, not start)

    async def page(self, request: web.Request) -> web.FileResponse:
        """The live market page: static, public data only (it reads ``/v1/market``)."""
        return web.FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    async def health(self, request: web.Request) -> web.Response:
        alive = self._gateway.stream_alive()
        body = {
            "status": "ok" if alive else "failing",
            "stream": "live" if alive else "stopped",
            "sockets": len(self._gateway.sockets),
        }
        return web.Response(
            status=200 if alive else 503, body=msgspec.json.encode(body), content_type=_JSON
        )

    async def close_sockets(self, app: web.Application) -> None:
        for socket in list(self._gateway.sockets):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"gateway stopping")

    async def _serve(
        self,
        request: web.Request,
        participant_id: str | None,
        topics: tuple[str, ...],
        resume: dict[Position, int],
        report_gaps: bool,
    ) -> web.StreamResponse:
        """Subscribe, catch up if resuming, then stream until either side closes."""
        socket = web.WebSocketResponse(heartbeat=_HEARTBEAT_S, max_msg_size=4096)
        await socket.prepare(request)
        stream = self._gateway.stream
        subscription = Subscription(participant_id, topics, self._settings.gateway.socket_queue)
        if resume:
            subscription.hold_live()
        live = stream.fanout.subscribe(subscription)
        starts = dict(live)
        ranges: dict[Position, tuple[int, int]] = {}
        for position, asked in resume.items():
            at = live.get(position, 0)
            starts[position] = asked
            if asked < at:
                ranges[position] = (asked, at)
            elif asked > at:
                subscription.skip_below[position] = asked
        subscription.greet(
            positions_message(
                "subscribed",
                starts,
                participant_id=participant_id,
                streams=list(topics),
                **stream.fanout.clock(),
            )
        )
        self._gateway.sockets.add(socket)
        log.info(
            "socket_opened", participant_id=participant_id, streams=topics, resume=bool(resume)
        )
        # Both tasks are kept in the gateway's set until done: a handler cancelled while it
        # waits for them must not leave them to the garbage collector half-cancelled.
        tasks = [self._spawn(_write(socket, subscription))]
        if ranges:
            tasks.append(self._spawn(self._catch_up(socket, subscription, ranges, report_gaps)))
        else:
            subscription.go_live()
        try:
            async for message in socket:
                if message.type is WSMsgType.ERROR:
                    break  # the client's messages carry nothing: only closing matters
        finally:
            stream.fanout.unsubscribe(subscription)
            self._gateway.sockets.discard(socket)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            for task in tasks:
                if not task.cancelled() and task.exception() is not None:
                    log.error("socket_task_failed", error=repr(task.exception()))
            log.info("socket_closed", participant_id=participant_id, code=socket.close_code)
        return socket

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._gateway.tasks.add(task)
        task.add_done_callback(self._gateway.tasks.discard)
        return task

    async def _catch_up(
        self,
        socket: web.WebSocketResponse,
        subscription: Subscription,
        ranges: dict[Position, tuple[int, int]],
        report_gaps: bool,
    ) -> None:
        """Send what a resuming socket missed, then let the live frames through."""
        try:
            await self._gateway.stream.catch_up(subscription, ranges, report_gaps)
        except BrokerUnavailableError as e:
            log.warning("socket_catch_up_failed", error=str(e))
            await socket.close(code=CLOSE_STREAM_FAILED, message=b"catch-up failed")
            return
        subscription.go_live()

    async def _identity(self, request: web.Request, allow_query: bool) -> Identity:
        header = request.headers.get("Authorization")
        presented: str | None = None
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer":
                raise UnauthorizedError("use Authorization: Bearer techx_<key id>_<secret>")
            presented = token.strip()
        elif allow_query:
            presented = request.query.get("key")
        return await self._gateway.authenticator.authenticate(presented)

    def _take_token(self, identity: Identity) -> None:
        wait_s = self._gateway.limits.take(identity.key_id)
        if wait_s > 0:
            raise RateLimitedError(
                f"API key {identity.key_id} sent more than {self._settings.gateway.rate} "
                f"requests a second (burst {self._settings.gateway.burst})",
                wait_s,
            )


async def _write(socket: web.WebSocketResponse, subscription: Subscription) -> None:
    while True:
        frames = await subscription.take()
        if not frames:  # overflowed: the client was too slow for its queue
            log.warning("socket_too_slow", participant_id=subscription.participant_id)
            await socket.close(code=CLOSE_TOO_SLOW, message=b"too slow: reconnect and resume")
            return
        try:
            for message in frames:
                await socket.send_frame(message, WSMsgType.TEXT)
        except ConnectionResetError:
            return  # the client went away; the handler sees the socket close and cleans up


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on")


@web.middleware
async def _problems(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every refusal as application/problem+json, logged with its code (never the key)."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except GatewayError as e:
        return _refused(request, e)
    except (BrokerUnavailableError, StoreUnavailableError) as e:
        log.warning("request_unavailable", path=request.path, error=str(e))
        code = (
            "broker_unavailable" if isinstance(e, BrokerUnavailableError) else "store_unavailable"
        )
        return _refused(request, UnavailableError(code, "the gateway cannot reach its servers"))
    except web.HTTPRequestEntityTooLarge:
        return _refused(
            request, PayloadTooLargeError(f"a command is at most {MAX_COMMAND_BYTES} bytes")
        )
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = e.reason.lower().replace(" ", "_")
        detail = f"{request.method} {request.path}: {e.reason.lower()}"
        return _problem_response(
            Problem(PROBLEM_TYPE_PREFIX + code, e.reason, e.status, detail, code),
            {"Allow": e.headers["Allow"]} if "Allow" in e.headers else {},
        )
    log.debug(
        "request_served",
        method=request.method,
        path=request.path,
        status=response.status,
        ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return response


def _refused(request: web.Request, error: GatewayError) -> web.Response:
    log.info(
        "request_refused",
        method=request.method,
        path=request.path,
        status=error.status,
        code=error.code,
    )
    headers = {}
    retry_after = error.retry_after_s()
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if isinstance(error, UnauthorizedError):
        headers["WWW-Authenticate"] = 'Bearer realm="techx"'
    return _problem_response(error.problem(), headers)


def _problem_response(problem: Problem, headers: dict[str, str]) -> web.Response:
    return web.Response(
        status=problem.status,
        body=msgspec.json.encode(problem),
        headers={"Content-Type": PROBLEM_CONTENT_TYPE, **headers},
    )
