"""``techx order …``: one command from the shell, as a front-end would publish it."""

from __future__ import annotations

import argparse

from engine.producers.client import TradingClient
from engine.settings import Settings
from schemas.commands import LISTING_PARAMETERS


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
                time_in_force=args.tif,
                expires_at_ms=args.expires_at_ms,
                post_only=args.post_only,
            )
        elif args.order_kind == "cancel":
            offset = await client.cancel(args.technology_id, args.participant, args.client_order_id)
        elif args.order_kind == "amend":
            offset = await client.amend(
                args.technology_id,
                args.participant,
                args.client_order_id,
                quantity=args.quantity,
                price=args.price,
            )
        elif args.order_kind in {"halt", "resume", "close", "withdraw"}:
            offset = await client.manage(args.technology_id, args.participant, args.order_kind)
        else:
            parameters: dict[str, int | bool | None] = {
                name: getattr(args, name) for name in LISTING_PARAMETERS
            }
            offset = await client.list_technology(
                args.technology_id,
                args.participant,
                args.name,
                args.tick,
                args.lot,
                args.reserve,
                mechanism=args.mechanism,
                reserve_shown=args.reserve_shown,
                **parameters,
            )
    print(f"published {args.order_kind} for {args.technology_id} at offset {offset}")
    return 0


async def send_membership(settings: Settings, args: argparse.Namespace) -> int:
    """`techx participant ...` / `techx access ...`: one record on every partition."""
    async with TradingClient(settings, client_id="techx-cli") as client:
        if args.command == "access":
            offsets = await client.set_access_mode(args.operator, args.mode)
            what = f"access {args.mode}"
        elif args.participant_action == "register":
            offsets = await client.register_participant(
                args.operator, args.member_id, args.role, args.acts_for
            )
            what = f"register {args.member_id} as {', '.join(args.role)}"
        elif args.participant_action == "suspend":
            offsets = await client.suspend_participant(args.operator, args.member_id)
            what = f"suspend {args.member_id}"
        else:
            offsets = await client.reinstate_participant(args.operator, args.member_id)
            what = f"reinstate {args.member_id}"
    print(f"published {what} to {len(offsets)} partitions at offsets {offsets}")
    return 0
