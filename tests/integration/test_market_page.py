"""The live market page, in a real headless Chromium, beside an engine and the gateway.

Orders go in through the gateway's HTTP API, as a front-end's would; the page sees them only
through the public market socket. Also the socket's public deals and the page's files.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace

import aiohttp
import msgspec
import pytest

from engine.commands.gateway import RunningGateway, serving_gateway
from engine.commands.keys import create_api_key
from engine.settings import Settings
from tests import browser
from tests.browser import Browser, headless_chromium
from tests.integration.harness import running_engine
from tests.integration.test_gateway import Message, _on_free_port, _post, _socket
from tests.polling import eventually

pytestmark = pytest.mark.integration

BOOK = "PAGE-BATT-0001"
AUCTION = "PAGE-PAT-0001"
#: How long the page may take to show something (views go out at ticks; CI is slow).
WAIT_S = 30.0
#: Ticks make views go out and the log time move: the page's countdowns follow them.
TICK_MS = 100
#: The page writes a trade as its quantity, this sign and its price.
TIMES = "\N{MULTIPLICATION SIGN}"
_PUBLIC_DEAL_FIELDS = {"type", "technology_id", "deal_id", "price", "quantity", "timestamp_ms"}


def _listing(technology_id: str, tick_size: int, **mechanism: object) -> dict[str, object]:
    return {
        "type": "list_technology",
        "technology_id": technology_id,
        "name": f"Listing {technology_id}",
        "tick_size": tick_size,
        "lot_size": 1,
        **mechanism,
    }


def _order(
    technology_id: str, client_order_id: str, side: str, quantity: int, price: int
) -> dict[str, object]:
    return {
        "type": "place_order",
        "technology_id": technology_id,
        "client_order_id": client_order_id,
        "side": side,
        "quantity": quantity,
        "price": price,
    }


async def _accepted(
    http: aiohttp.ClientSession, gateway: RunningGateway, key: str, body: dict[str, object]
) -> None:
    status, answer, _ = await _post(http, gateway, key, body)
    assert status == 202, answer


def _seconds(countdown: str) -> int:
    """'1 h 02 min 05 s', '2 min 05 s' or '42 s' as seconds."""
    found = re.fullmatch(r"(?:(\d+) h )?(?:(\d+) min )?(\d+) s", countdown.strip())
    assert found is not None, f"not a countdown: {countdown!r}"
    hours, minutes, seconds = (int(part or 0) for part in found.groups())
    return hours * 3600 + minutes * 60 + seconds


async def _shows(page: Browser, selector: str, expected: str) -> None:
    """Wait until the element's visible text is ``expected``; fail saying what it shows."""

    async def found() -> bool:
        return await page.text(selector) == expected

    try:
        await eventually(found, WAIT_S, f"{selector} shows {expected!r}", 0.1)
    except AssertionError as e:
        shown, errors = await page.text(selector), await page.console_errors()
        raise AssertionError(f"{e}; it shows {shown!r}; console: {errors}") from None


async def _says(page: Browser, selector: str, part: str) -> None:
    async def found() -> bool:
        return part in (await page.text(selector) or "")

    await eventually(found, WAIT_S, f"{selector} says {part!r}", 0.1)


async def _rows(page: Browser, selector: str, count: int) -> None:
    """Wait until exactly ``count`` elements match ``selector`` (rows of one table)."""

    async def counted() -> bool:
        last = await page.text(f"{selector}:nth-child({count})")
        return last is not None and await page.text(f"{selector}:nth-child({count + 1})") is None

    await eventually(counted, WAIT_S, f"{count} of {selector}", 0.1)


@pytest.mark.skipif(browser.missing() is not None, reason=browser.missing() or "")
async def test_the_page_shows_books_auctions_and_deals_as_they_happen(settings: Settings) -> None:
    """Listings, a trade placed through the gateway, and an English bid appear on the page:
    the book's levels and last trade, the deal in the list, the high bid and a countdown that
    goes down; no participant is named anywhere on it."""
    settings = replace(settings, tick_interval_ms=TICK_MS)
    _, seller_key = await create_api_key(settings, "uni-a")
    _, buyer_key = await create_api_key(settings, "buyer-05")
    _, bidder_key = await create_api_key(settings, "inst-b")
    ends_at_ms = int(time.time() * 1000) + 120_000
    async with (
        running_engine(settings),
        serving_gateway(_on_free_port(settings)) as gateway,
        aiohttp.ClientSession() as http,
        headless_chromium() as page,
    ):
        await _accepted(http, gateway, seller_key, _listing(BOOK, 100_000))
        english = {
            "mechanism": "english",
            "starting_price": 100_000_000,
            "min_increment": 5_000_000,
            "ends_at_ms": ends_at_ms,
        }
        await _accepted(http, gateway, seller_key, _listing(AUCTION, 1_000_000, **english))
        await page.open(f"{gateway.url}/")

        book = f'[data-technology-id="{BOOK}"]'
        auction = f'[data-technology-id="{AUCTION}"]'
        await _shows(page, "#connection", "Live")
        await _shows(page, f"{book} [data-field=mechanism]", "Continuous book")
        await _shows(page, f"{book} [data-field=state]", "Open")
        await _shows(page, f"{auction} [data-field=mechanism]", "English auction")
        await _shows(page, f"{auction} [data-field=next-minimum]", "100.000.000 đ")

        await _accepted(http, gateway, seller_key, _order(BOOK, "s-1", "offer", 3, 52_500_000))
        await _accepted(http, gateway, buyer_key, _order(BOOK, "b-1", "bid", 2, 52_500_000))
        await _accepted(http, gateway, buyer_key, _order(BOOK, "b-2", "bid", 1, 52_400_000))
        await _accepted(http, gateway, bidder_key, _order(AUCTION, "e-1", "bid", 1, 110_000_000))

        await _shows(page, f"{book} [data-field=last]", f"2 {TIMES} 52.500.000 đ")
        levels = f"{book} [data-field=levels] tr"
        await _shows(page, levels, "1\t52.400.000 đ\t52.500.000 đ\t1")
        await _shows(page, "#deals tbody tr td:nth-child(2)", BOOK)
        deal = await page.text("#deals tbody tr")
        assert deal is not None
        assert deal.split("\t")[1:] == [BOOK, "2", "52.500.000 đ"], deal
        await _shows(page, f"{auction} [data-field=high-bid]", "110.000.000 đ")
        await _shows(page, f"{auction} [data-field=next-minimum]", "115.000.000 đ")
        await _shows(page, f"{auction} [data-field=bid-count]", "1")

        countdown = f"{auction} [data-field=countdown]"
        first = _seconds(await page.text(countdown) or "")
        assert 60 < first <= 120, f"{first} s left of an auction ending 120 s after the test began"

        async def counted_down() -> bool:
            return _seconds(await page.text(countdown) or "") < first

        await eventually(counted_down, 5, "the countdown goes down", 0.1)

        everything = await page.text("body") or ""
        for participant in ("uni-a", "buyer-05", "inst-b"):
            assert participant not in everything, f"{participant} is named on the public page"
        assert await page.console_errors() == []


@pytest.mark.skipif(browser.missing() is not None, reason=browser.missing() or "")
async def test_the_page_reconnects_when_its_gateway_comes_back(
    settings: Settings,
) -> None:
    """A gateway that stops closes the page's socket; the page says so, retries until a
    gateway on the same address answers, and goes on drawing, each deal once."""
    settings = replace(settings, tick_interval_ms=TICK_MS)
    _, seller_key = await create_api_key(settings, "uni-a")
    _, buyer_key = await create_api_key(settings, "buyer-05")
    deals = "#deals tbody tr"
    async with (
        running_engine(settings),
        aiohttp.ClientSession() as http,
        headless_chromium() as page,
    ):
        async with serving_gateway(_on_free_port(settings)) as gateway:
            await _accepted(http, gateway, seller_key, _listing(BOOK, 100_000))
            await _accepted(http, gateway, seller_key, _order(BOOK, "s-1", "offer", 2, 5_000_000))
            await _accepted(http, gateway, buyer_key, _order(BOOK, "b-1", "bid", 1, 5_000_000))
            await page.open(f"{gateway.url}/market")
            await _shows(page, "#connection", "Live")
            await _rows(page, deals, 1)
            port = gateway.port
        await _says(page, "#connection", "retrying")
        again = replace(settings, gateway=replace(settings.gateway, port=port))
        async with serving_gateway(again) as gateway:
            await _shows(page, "#connection", "Live")
            await _accepted(http, gateway, buyer_key, _order(BOOK, "b-2", "bid", 1, 5_000_000))
            await _rows(page, deals, 2)
            await _accepted(http, gateway, seller_key, _order(BOOK, "s-2", "offer", 1, 6_000_000))
            book_levels = f'[data-technology-id="{BOOK}"] [data-field=levels] tr'
            await _shows(page, book_levels, "\t\t6.000.000 đ\t1")
            assert await page.text(f"{deals}:nth-child(3)") is None, "each deal drawn once"
        refused = await page.console_errors()
        assert all("WebSocket connection" in error for error in refused), refused


async def test_the_public_socket_relays_deals_without_who_traded(settings: Settings) -> None:
    """/v1/market?deals=true carries each deal as a trade with its public fields only, live
    and from=beginning; its greeting carries the log time the page counts down from."""
    settings = replace(settings, tick_interval_ms=TICK_MS)
    _, seller_key = await create_api_key(settings, "uni-a")
    _, buyer_key = await create_api_key(settings, "buyer-05")
    async with (
        running_engine(settings),
        serving_gateway(_on_free_port(settings)) as gateway,
        aiohttp.ClientSession() as http,
    ):
        await _accepted(http, gateway, seller_key, _listing(BOOK, 100_000))
        async with _socket(http, f"{gateway.url}/v1/market?deals=true") as live:
            await _accepted(http, gateway, seller_key, _order(BOOK, "s-1", "offer", 2, 5_000_000))
            await _accepted(http, gateway, buyer_key, _order(BOOK, "b-1", "bid", 2, 5_000_000))
            trade = await live.until(lambda m: m["type"] == "trade", "a trade")
        assert set(trade["trade"]) == _PUBLIC_DEAL_FIELDS
        assert trade["trade"]["technology_id"] == BOOK
        assert (trade["trade"]["price"], trade["trade"]["quantity"]) == (5_000_000, 2)
        assert trade["topic"] == "deals"

        url = f"{gateway.url}/v1/market?deals=true&from=beginning"
        async with _socket(http, url) as fresh:
            replayed = await fresh.until(lambda m: m["type"] == "trade", "the recent trade")
            await fresh.until(
                lambda m: m["type"] == "view" and m["view"]["last_price"] == 5_000_000,
                "the book's newest view",
            )
        assert replayed["trade"] == trade["trade"]
        greeting: Message = fresh.messages[0]
        assert greeting["streams"] == ["market_data", "deals"]
        assert abs(greeting["log_time_ms"] - time.time() * 1000) < 60_000, greeting
        text = msgspec.json.encode(live.messages + fresh.messages)
        assert b"buyer-05" not in text
        assert b"uni-a" not in text


async def test_the_page_and_its_files_are_served(settings: Settings) -> None:
    """/ and /market are the page, under a policy that lets it load only its own files and
    talk only to its gateway; its script and style are served; no directory is listed."""
    async with (
        serving_gateway(_on_free_port(settings)) as gateway,
        aiohttp.ClientSession() as http,
    ):
        for path in ("/", "/market"):
            async with http.get(f"{gateway.url}{path}") as response:
                assert response.status == 200
                assert response.content_type == "text/html"
                assert "TechX live market" in await response.text()
                policy = response.headers["Content-Security-Policy"]
                assert "default-src 'none'" in policy
                assert "connect-src 'self'" in policy
        for name, kind in (("market.js", "javascript"), ("market.css", "text/css")):
            async with http.get(f"{gateway.url}/static/{name}") as response:
                assert response.status == 200, name
                assert kind in response.content_type
        for path in ("/static/", "/static/../app.py"):
            async with http.get(f"{gateway.url}{path}") as response:
                assert response.status in (403, 404), path
