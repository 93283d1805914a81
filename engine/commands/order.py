"""``techx order …``: one command from the shell, as a front-end would publish it."""

from __future__ import annotations

import argparse

from engine.producers.client import TradingClient
from engine.settings import Settings


async def send_order(settings: Settings, args: argparse.Namespace) -> int:
    async with TradingClient(settings, client_id="techx-cli") as client:
        if args.order_kind in {"bid", "offer"}:
            offset = await client.place(
                args.technology_id,
                args.participant,
                args.client_order_id,
                args.order_kind,
                args.quantity,
                args.price,
                "limit" if args.price is not None else "market",
            )
        elif args.order_kind == "cancel":
            offset = await client.cancel(args.technology_id, args.participant, args.client_order_id)
        else:
            offset = await client.list_technology(
                args.technology_id, args.participant, args.name, args.tick, args.lot, args.reserve
            )
    print(f"published {args.order_kind} for {args.technology_id} at offset {offset}")
    return 0
