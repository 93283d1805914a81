"""The gateway on the real broker and server, with a running engine: keys, commands, sockets.

The gateway runs in this event loop on a free port (``serving_gateway``), beside an engine
(``running_engine``); clients are plain aiohttp HTTP and WebSocket clients, as a front-end's.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import aiohttp
import msgspec
import pytest

from engine.commands.gateway import RunningGateway, serving_gateway
from engine.commands.keys import create_api_key, revoke_api_key, rotate_api_key
from engine.core.codec import decode_command
from engine.core.membership import BOOTSTRAP_OPERATOR
from engine.settings import Settings
from schemas.commands import PlaceOrder
from tests.integration.harness import read_topic, running_engine
from tests.polling import eventually

pytestmark = pytest.mark.integration

TECH = "GW-BATT-0001"
#: How long a socket may take to bring an event (a transaction commits in ~10-15 ms; CI is slow).
WAIT_S = 30.0

#: A decoded JSON message: tests index into it freely.
Message = dict[str, Any]


def _on_free_port(settings: Settings, **gateway: Any) -> Settings:
    return replace(settings, gateway=replace(settings.gateway, port=0, **gateway))


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _post(
    http: aiohttp.ClientSession,
    gateway: RunningGateway,
    key: str | None,
    body: bytes | Mapping[str, object],
    content_type: str = "application/json",
) -> tuple[int, Message, aiohttp.ClientResponse]:
    data = body if isinstance(body, bytes) else msgspec.json.encode(body)
    headers = {"Content-Type": content_type, **(_auth(key) if key else {})}
    async with http.post(f"{gateway.url}/v1/commands", data=data, headers=headers) as response:
        answer = msgspec.json.decode(await response.read())
        return response.status, answer, response


class Socket:
    """A WebSocket client that keeps every message, for tests to wait on."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.messages: list[Message] = []

    async def receive(self) -> Message:
        message: Message = msgspec.json.decode(await self.socket.receive_str())
        self.messages.append(message)
        return message

    async def until(
        self, condition: Callable[[Message], bool], what: str, timeout_s: float = WAIT_S
    ) -> Message:
        """The first message (kept or new) for which ``condition`` holds."""
        for message in self.messages:
            if condition(message):
                return message
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self.receive()
                if condition(message):
                    return message
        raise AssertionError(what)  # pragma: no cover - the timeout raises first

    def events(self, kind: str | None = None) -> list[Message]:
        found = [m["event"] for m in self.messages if m["type"] == "event"]
        return [e for e in found if kind is None or e["type"] == kind]


def _event(kind: str, **fields: object) -> Callable[[Message], bool]:
    def matches(message: Message) -> bool:
        event = message.get("event")
        return (
            message["type"] == "event"
            and event is not None
            and event["type"] == kind
            and all(event.get(name) == value for name, value in fields.items())
        )

    return matches


@asynccontextmanager
async def _socket(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Socket]:
    async with http.ws_connect(url, headers=headers or {}) as raw:
        socket = Socket(raw)
        greeting = await socket.receive()
        assert greeting["type"] == "subscribed", greeting
        yield socket


def _order(client_order_id: str, side: str, price: int, **extra: object) -> dict[str, object]:
    return {
        "type": "place_order",
        "technology_id": TECH,
        "client_order_id": client_order_id,
        "side": side,
        "quantity": 2,
        "price": price,
        **extra,
    }


_LISTING = {"type": "list_technology", "technology_id": TECH, "name": "Battery", "tick_size": 100}
_LISTING |= {"lot_size": 1}


async def test_an_order_through_the_gateway_trades_and_its_events_reach_the_participants_socket(
    settings: Settings,
) -> None:
    """Seller and buyer trade through HTTP; each socket gets its own acceptance, the deal and
    the done, pointing at the partition and offset the 202 named."""
    _, seller_key = await create_api_key(settings, "seller-08")
    _, buyer_key = await create_api_key(settings, "buyer-05")
    async with (
        running_engine(settings),
        serving_gateway(_on_free_port(settings)) as gateway,
        aiohttp.ClientSession() as http,
        _socket(http, f"{gateway.url}/v1/stream", _auth(seller_key)) as seller,
        _socket(http, f"{gateway.url}/v1/stream?key={buyer_key}") as buyer,
    ):
        status, listed, _ = await _post(http, gateway, seller_key, _LISTING)
        assert status == 202, listed
        assert listed["participant_id"] == "seller-08", "left out: the key's participant"
        await seller.until(_event("technology_listed", technology_id=TECH), "listed")

        status, offered, _ = await _post(http, gateway, seller_key, _order("s-1", "offer", 5000))
        assert status == 202, offered
        status, bid, _ = await _post(http, gateway, buyer_key, _order("b-1", "bid", 5000))
        assert status == 202, bid
        (record,) = bid["records"]
        assert record["partition"] == offered["records"][0]["partition"]

        done = await buyer.until(_event("order_done", client_order_id="b-1"), "buyer done")
        deal = await buyer.until(_event("deal", buyer_id="buyer-05"), "buyer's deal")
        accepted = await buyer.until(_event("order_accepted", client_order_id="b-1"), "accepted")
        for message in (done, deal, accepted):
            assert message["partition"] == record["partition"]
            assert message["event"]["source_offset"] == record["offset"]
        assert deal["topic"] == "deals"
        assert done["topic"] == "executions"
        seller_deal = await seller.until(_event("deal", seller_id="seller-08"), "seller's deal")
        assert seller_deal["event"] == deal["event"]
        assert not [e for e in buyer.events() if "seller-08" in (e.get("participant_id"), None)], (
            "the buyer's socket carries none of the seller's own events"
        )

    # What went to Kafka is the engine's contract, stamped: no submitted_by for oneself.
    commands = await read_topic(settings, settings.topics.commands)
    sent = [decode_command(r.value) for rs in commands.values() for r in rs]
    bids = [c for c in sent if isinstance(c, PlaceOrder) and c.side == "bid"]
    assert [(c.participant_id, c.submitted_by) for c in bids] == [("buyer-05", None)]


async def test_acting_as_another_participant_is_refused_on_the_senders_socket(
    settings: Settings,
) -> None:
    """A key of mallory writing buyer-05's id is stamped submitted_by=mallory: the engine
    refuses it (not_acting_for) and the refusal reaches mallory's socket and buyer-05's."""
    _, mallory_key = await create_api_key(settings, "mallory")
    _, buyer_key = await create_api_key(settings, "buyer-05")
    async with (
        running_engine(settings),
        serving_gateway(_on_free_port(settings)) as gateway,
        aiohttp.ClientSession() as http,
        _socket(http, f"{gateway.url}/v1/stream", _auth(mallory_key)) as mallory,
        _socket(http, f"{gateway.url}/v1/stream", _auth(buyer_key)) as buyer,
    ):
        await _post(http, gateway, buyer_key, _LISTING)
        forged = _order("m-1", "bid", 5000, participant_id="buyer-05", submitted_by="buyer-05")
        status, answer, _ = await _post(http, gateway, mallory_key, forged)
        assert status == 202, answer
        assert (answer["participant_id"], answer["submitted_by"]) == ("buyer-05", "mallory")
        refused = _event("command_rejected", reason="not_acting_for", participant_id="buyer-05")
        seen_by_mallory = await mallory.until(refused, "mallory's refusal")
        assert "mallory may not act for buyer-05" in str(seen_by_mallory["event"])
        await buyer.until(refused, "the owner sees the attempt too")
        assert not mallory.events("order_accepted"), "nothing was placed in buyer-05's name"


async def test_wrong_revoked_and_rotated_away_keys_get_401(settings: Settings) -> None:
    """No key, a malformed one, an unknown one, a wrong secret, a revoked key and the secret a
    rotation replaced are all 401; the rotated key's new secret works. Changes reach the
    running gateway without waiting for its cache (key_cache_ms is long here)."""
    _, key = await create_api_key(settings, "buyer-05")
    key_id = key.split("_")[1]
    async with (
        serving_gateway(_on_free_port(settings, key_cache_ms=600_000)) as gateway,
        aiohttp.ClientSession() as http,
    ):
        body = _order("b-1", "bid", 5000)
        assert (await _post(http, gateway, key, body))[0] == 202
        wrong_secret = key[: -len("secret")] + "secret"
        unknown = f"techx_{'0' * 16}_{key.split('_', 2)[2]}"
        for presented in (None, "not-a-key", unknown, wrong_secret):
            status, problem, response = await _post(http, gateway, presented, body)
            assert status == 401, (presented, problem)
            assert problem["code"] == "unauthorized"
            assert response.headers["Content-Type"] == "application/problem+json"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")

        _, rotated = await rotate_api_key(settings, key_id)
        assert rotated.split("_")[1] == key_id, "a rotation keeps the key id"

        async def old_secret_refused() -> bool:
            return (await _post(http, gateway, key, body))[0] == 401

        await eventually(old_secret_refused, 10, "the rotated-away secret refused")
        assert (await _post(http, gateway, rotated, _order("b-2", "bid", 5000)))[0] == 202

        await revoke_api_key(settings, key_id)

        async def revoked() -> bool:
            return (await _post(http, gateway, rotated, body))[0] == 401

        await eventually(revoked, 10, "the revoked key refused")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{gateway.url}/v1/stream?key={rotated}")
        assert refused.value.status == 401


async def test_the_keys_commands_create_list_and_revoke_from_the_shell(settings: Settings) -> None:
    """`python -m engine keys …` prints a new key once (last line), lists without secrets,
    and revokes; a bad participant id or an unknown key exits 1."""
    env = {
        **os.environ,
        "TECHX_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TECHX_DATABASE_URL": settings.database_url,
        "TECHX_TOPIC_PREFIX": settings.topics.prefix,
        "TECHX_LOG_FORMAT": "json",
    }

    async def techx(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode()

    code, out = await techx("keys", "create", "uni-a")
    assert code == 0, out
    key = out.strip().splitlines()[-1]
    key_id = key.split("_")[1]
    assert key.startswith(f"techx_{key_id}_")
    code, listed = await techx("keys", "list", "--participant", "uni-a")
    assert code == 0
    assert key_id in listed
    assert key.split("_", 2)[2] not in listed
    assert (await techx("keys", "revoke", key_id))[0] == 0
    assert (await techx("keys", "rotate", key_id))[0] == 1, "a revoked key cannot be rotated"
    assert (await techx("keys", "create", "not an id"))[0] == 1
    assert (await techx("keys", "revoke", "0" * 16))[0] == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"type":"place_order"', 400, "malformed_json"),
        (b'{"type":"sell_everything","technology_id":"T1"}', 400, "unknown_command_type"),
        (b'{"type":"cancel_order","technology_id":"T1"}', 400, "schema_violation"),
        (
            b'{"type":"cancel_order","technology_id":"T1","client_order_id":"a",'
            b'"client_order_id":"b"}',
            400,
            "duplicate_key",
        ),
        (b'{"type":"cancel_order","technology_id":"\xff"}', 400, "invalid_utf8"),
        (b"[" * 40 + b"]" * 40, 400, "too_deep"),
        (b'{"type":"tick"}', 400, "command_not_accepted"),
        (b'{"type":"cancel_order","technology_id":"T1","x":"' + b"a" * 17_000 + b'"}', 413, ""),
    ],
)
async def test_a_bad_body_gets_a_problem_with_the_engines_dead_letter_code(
    settings: Settings, body: bytes, status: int, code: str
) -> None:
    """Undecodable bodies get 400 with the code the engine would dead-letter them with; a
    body over 16 KiB is 413; nothing is written to Kafka."""
    _, key = await create_api_key(settings, "buyer-05")
    async with (
        serving_gateway(_on_free_port(settings)) as gateway,
        aiohttp.ClientSession() as http,
    ):
        answer_status, problem, response = await _post(http, gateway, key, body)
        assert answer_status == status, problem
        assert problem["status"] == status
        assert problem["code"] == (code or "too_large")
        assert problem["type"] == f"urn:techx:problem:{problem['code']}"
        assert problem["detail"]
        assert response.headers["Content-Type"] == "application/problem+json"
    commands = await read_topic(settings, settings.topics.commands)
    assert not any(commands.values())


async def test_not_json_is_415_and_unknown_routes_are_problems_too(settings: Settings) -> None:
    """A body sent as text/plain is 415; an unknown path is a problem+json 404."""
    _, key = await create_api_key(settings, "buyer-05")
    async with (
        serving_gateway(_on_free_port(settings)) as gateway,
        aiohttp.ClientSession() as http,
    ):
        status, problem, _ = await _post(
            http, gateway, key, _order("b-1", "bid", 5000), content_type="text/plain"
        )
        assert (status, problem["code"]) == (415, "unsupported_media_type")
        async with http.get(f"{gateway.url}/v1/nothing") as response:
            assert response.status == 404
            assert response.headers["Content-Type"] == "application/problem+json"
        async with http.get(f"{gateway.url}/healthz") as response:
            assert response.status == 200
            assert (await response.json())["stream"] == "live"


async def test_a_key_over_its_rate_gets_429_with_retry_after(settings: Settings) -> None:
    """With 1 request a second and a burst of 3, every request counts, good or bad: after
    three, the fourth at once is 429 with Retry-After, before anything is written; another
    key is not held back by it. (Bad bodies use the burst: they answer without Kafka, so no
    token comes back while the test waits for a broker.)"""
    _, key = await create_api_key(settings, "buyer-05")
    _, other_key = await create_api_key(settings, "buyer-06")
    async with (
        serving_gateway(_on_free_port(settings, rate=1, burst=3)) as gateway,
        aiohttp.ClientSession() as http,
    ):
        statuses = [(await _post(http, gateway, key, b"{"))[0] for _ in range(3)]
        assert statuses == [400, 400, 400]
        status, problem, response = await _post(http, gateway, key, _order("b-9", "bid", 5000))
        assert (status, problem["code"]) == (429, "rate_limited")
        assert int(response.headers["Retry-After"]) >= 1
        assert (await _post(http, gateway, other_key, _order("c-1", "bid", 5000)))[0] == 202
    commands = await read_topic(settings, settings.topics.commands)
    assert [r.key for rs in commands.values() for r in rs] == [TECH.encode()], "only c-1"


async def test_membership_commands_from_an_operator_key_reach_every_partition(
    settings: Settings,
) -> None:
    """An operator's register_participant is written to all partitions (one 202 record each)
    and answered on every one; the same from a non-operator is refused operator_only."""
    _, operator_key = await create_api_key(settings, BOOTSTRAP_OPERATOR)
    _, member_key = await create_api_key(settings, "broker-1")
    registration = {
        "type": "register_participant",
        "member_id": "broker-1",
        "roles": ["broker"],
        "acts_for": ["buyer-05"],
    }
    async with (
        running_engine(settings),
        serving_gateway(_on_free_port(settings)) as gateway,
        aiohttp.ClientSession() as http,
        _socket(http, f"{gateway.url}/v1/stream", _auth(operator_key)) as operator,
        _socket(http, f"{gateway.url}/v1/stream", _auth(member_key)) as member,
    ):
        status, answer, _ = await _post(http, gateway, operator_key, registration)
        assert status == 202, answer
        assert sorted(r["partition"] for r in answer["records"]) == list(range(settings.partitions))

        def registered_everywhere(socket: Socket) -> Callable[[], bool]:
            def check() -> bool:
                return {
                    m["partition"]
                    for m in socket.messages
                    if _event("participant_registered", member_id="broker-1")(m)
                } == set(range(settings.partitions))

            return check

        for socket in (operator, member):
            await _drain_until(socket, registered_everywhere(socket))

        status, answer, _ = await _post(http, gateway, member_key, registration)
        assert status == 202
        await member.until(
            _event("command_rejected", reason="operator_only", command="register_participant"),
            "a broker may not register",
        )

        # Acting for its client, the broker sees the outcome of what it sent.
        await _post(http, gateway, operator_key, {**_LISTING, "participant_id": "seller-08"})
        order = _order("k-1", "bid", 5000, participant_id="buyer-05")
        assert (await _post(http, gateway, member_key, order))[0] == 202
        accepted = await member.until(
            _event("order_accepted", participant_id="buyer-05", client_order_id="k-1"),
            "the broker's order for buyer-05 accepted, on the broker's socket",
        )
        assert accepted["topic"] == "executions"


async def _drain_until(socket: Socket, condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await socket.receive()


async def test_a_socket_resumes_from_its_positions_without_loss_or_repeat(
    settings: Settings,
) -> None:
    """Events that happened while a participant was away come first on reconnect with its
    positions, each once, then the live ones."""
    _, key = await create_api_key(settings, "buyer-05")
    async with (
        running_engine(settings),
        serving_gateway(_on_free_port(settings)) as gateway,
        aiohttp.ClientSession() as http,
    ):
        await _post(http, gateway, key, _LISTING)
        async with _socket(http, f"{gateway.url}/v1/stream", _auth(key)) as first:
            await _post(http, gateway, key, _order("b-1", "bid", 5000))
            await first.until(_event("order_accepted", client_order_id="b-1"), "b-1")
            positions = _positions(first)
        for n in range(2, 5):  # while away
            await _post(http, gateway, key, _order(f"b-{n}", "bid", 5000 + n * 100))
        resume = ",".join(
            f"{topic}:{partition}:{offset}" for (topic, partition), offset in positions.items()
        )
        async with _socket(http, f"{gateway.url}/v1/stream?resume={resume}", _auth(key)) as second:
            await _post(http, gateway, key, _order("b-5", "bid", 6000))
            await second.until(_event("order_accepted", client_order_id="b-5"), "live b-5")
            accepted = [e["client_order_id"] for e in second.events("order_accepted")]
            assert accepted == ["b-2", "b-3", "b-4", "b-5"]


def _positions(socket: Socket) -> dict[tuple[str, int], int]:
    """Where a client resumes: the greeting's and later positions, moved past every event."""
    positions: dict[tuple[str, int], int] = {}
    for message in socket.messages:
        if message["type"] in ("subscribed", "positions"):
            for topic, offsets in message["positions"].items():
                for partition, offset in offsets.items():
                    positions[(topic, int(partition))] = offset
        elif message["type"] == "event":
            positions[(message["topic"], message["partition"])] = message["offset"] + 1
    return positions


async def test_the_public_market_socket_streams_views_without_a_key(settings: Settings) -> None:
    """/v1/market needs no key and carries market views; from=beginning gives those already
    published."""
    settings = replace(settings, tick_interval_ms=100)  # views go out at ticks
    _, key = await create_api_key(settings, "seller-08")
    async with (
        running_engine(settings),
        serving_gateway(_on_free_port(settings)) as gateway,
        aiohttp.ClientSession() as http,
    ):
        async with _socket(http, f"{gateway.url}/v1/market") as market:
            await _post(http, gateway, key, _LISTING)
            await _post(http, gateway, key, _order("s-1", "offer", 5000))
            view = await market.until(
                lambda m: (
                    m["type"] == "view"
                    and isinstance(m["view"], dict)
                    and m["view"]["technology_id"] == TECH
                    and bool(m["view"]["offers"])
                ),
                "a view with the offer",
            )
            assert view["topic"] == "market_data"
        async with _socket(http, f"{gateway.url}/v1/market?from=beginning") as replayed:
            await replayed.until(
                lambda m: m["type"] == "view" and m["view"]["technology_id"] == TECH,
                "the views published before the socket opened",
            )
