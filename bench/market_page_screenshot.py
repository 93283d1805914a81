"""The README's picture of the live market page: ``python -m bench.market_page_screenshot``.

An engine and the gateway run in this process on fresh topics and a fresh database of the
local stack (brought up if it is not). Through the gateway's HTTP API, as any front-end, it
lists one technology of each mechanism and trades a little; then it opens the page in headless
Chromium (``tests.browser``), waits until every card and deal is drawn and saves the page as
a PNG (``docs/market-page.png`` by default). Cleans up its topics and database.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import msgspec

from bench.fresh import fresh, remove, stack_settings
from engine.commands.gateway import serving_gateway
from engine.commands.keys import create_api_key
from tests.browser import headless_chromium, missing
from tests.integration.harness import running_engine

#: Who lists and who trades: the page shows none of them.
SELLER, BUYERS = "uni-a", ("buyer-05", "inst-b", "co-c")
TIMES = "\N{MULTIPLICATION SIGN}"  # the page writes a trade as quantity, this, price
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "market-page.png"


def _scenario(now_ms: int) -> list[tuple[str, dict[str, object]]]:
    """(participant, command) in order: six listings, then the orders and bids."""
    listings: list[dict[str, object]] = [
        {"technology_id": "HCMUT-BATT-0001", "name": "Solid-state battery electrolyte"},
        {"technology_id": "HUST-AI-0007", "name": "Vietnamese speech recognition model"},
        {
            "technology_id": "VNU-CALL-0003",
            "name": "Rice drought-resistance gene licence",
            "mechanism": "call",
            "first_uncross_at_ms": now_ms + 300_000,
            "call_interval_ms": 300_000,
        },
        {
            "technology_id": "HUST-PAT-0042",
            "name": "Graphene membrane patent",
            "mechanism": "english",
            "starting_price": 250_000_000,
            "min_increment": 10_000_000,
            "ends_at_ms": now_ms + 754_000,
        },
        {
            "technology_id": "VAST-TENDER-0009",
            "name": "Satellite image compression know-how",
            "mechanism": "sealed_second",
            "ends_at_ms": now_ms + 1_815_000,
        },
        {
            "technology_id": "IOIT-KH-0012",
            "name": "Traffic camera analytics package",
            "mechanism": "dutch",
            "starting_price": 400_000_000,
            "price_step": 10_000_000,
            "step_interval_ms": 60_000,
            "reserve_price": 250_000_000,
            "offered_quantity": 3,
        },
    ]
    commands: list[tuple[str, dict[str, object]]] = [
        (SELLER, {"type": "list_technology", "tick_size": 100_000, "lot_size": 1, **listing})
        for listing in listings
    ]
    count = 0

    def order(participant: str, technology_id: str, side: str, quantity: int, price: int) -> None:
        nonlocal count
        count += 1
        body = {
            "type": "place_order",
            "technology_id": technology_id,
            "client_order_id": f"shot-{count}",
            "side": side,
            "quantity": quantity,
            "price": price,
        }
        commands.append((participant, body))

    for n, price in enumerate((55_200_000, 55_000_000, 54_800_000, 54_700_000)):
        order(SELLER, "HCMUT-BATT-0001", "offer", 2 + n, price)
    for n, price in enumerate((54_500_000, 54_300_000, 54_000_000)):
        order(BUYERS[n], "HCMUT-BATT-0001", "bid", 1 + n, price)
    order("buyer-05", "HCMUT-BATT-0001", "bid", 3, 54_800_000)  # crosses the best offer
    order("inst-b", "HCMUT-BATT-0001", "bid", 2, 55_000_000)
    for price in (118_000_000, 119_500_000, 121_000_000):
        order(SELLER, "HUST-AI-0007", "offer", 1, price)
    order("co-c", "HUST-AI-0007", "bid", 2, 116_000_000)
    order("inst-b", "HUST-AI-0007", "bid", 1, 118_000_000)
    order(SELLER, "VNU-CALL-0003", "offer", 3, 80_000_000)
    order(SELLER, "VNU-CALL-0003", "offer", 2, 82_000_000)
    order("buyer-05", "VNU-CALL-0003", "bid", 2, 83_000_000)
    order("co-c", "VNU-CALL-0003", "bid", 2, 81_000_000)
    for participant, price in (("inst-b", 250_000_000), ("co-c", 270_000_000)):
        order(participant, "HUST-PAT-0042", "bid", 1, price)
    order("buyer-05", "HUST-PAT-0042", "bid", 1, 300_000_000)
    for participant in BUYERS:
        order(participant, "VAST-TENDER-0009", "bid", 1, 200_000_000)
    order("inst-b", "IOIT-KH-0012", "bid", 1, 400_000_000)
    return commands


async def run(out: Path, keep: bool) -> None:
    reason = missing()
    if reason is not None:
        raise SystemExit(reason)
    base = await stack_settings()
    settings = await fresh(base, f"shot{int(time.time())}")
    settings = replace(
        settings,
        tick_interval_ms=200,
        gateway=replace(settings.gateway, port=0),
    )
    try:
        keys = {p: (await create_api_key(settings, p))[1] for p in (SELLER, *BUYERS)}
        async with (
            running_engine(settings),
            serving_gateway(settings) as gateway,
            aiohttp.ClientSession() as http,
        ):
            for participant, command in _scenario(int(time.time() * 1000)):
                headers = {
                    "Authorization": f"Bearer {keys[participant]}",
                    "Content-Type": "application/json",
                }
                body = msgspec.json.encode(command)
                async with http.post(
                    f"{gateway.url}/v1/commands", data=body, headers=headers
                ) as response:
                    if response.status != 202:
                        raise SystemExit(f"{command}: {response.status} {await response.text()}")
            async with headless_chromium(width=1280, height=900) as page:
                await page.open(f"{gateway.url}/")

                async def drawn() -> bool:
                    """Every deal is in the list, the Dutch sale on its card too."""
                    dutch = '[data-technology-id="IOIT-KH-0012"] [data-field=last]'
                    return (await page.text(dutch) or "").startswith(f"1 {TIMES}") and (
                        await page.text("#deals tbody tr:nth-child(4)") is not None
                    )

                deadline = time.monotonic() + 30
                while not await drawn():
                    if time.monotonic() > deadline:
                        raise SystemExit("the page did not show every deal within 30 s")
                    await asyncio.sleep(0.2)
                await asyncio.sleep(1.0)  # let the countdowns settle on the exchange's clock
                size = await page.screenshot(out)
        print(f"saved {out} ({size:,} bytes)")
    finally:
        if not keep:
            await remove(base, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the PNG goes")
    parser.add_argument(
        "--keep", action="store_true", help="keep the topics and database for a look"
    )
    args = parser.parse_args()
    asyncio.run(run(args.out, args.keep))


if __name__ == "__main__":
    main()
