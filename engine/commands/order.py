"""``techx order …``: one command from the shell, as a front-end would publish it, and
what the engine made of it.

By default it waits for the engine's answer and exits by it: 0 accepted, 3 rejected or
dead-lettered (the reason is printed), 4 no answer within ``--timeout`` (no engine running,
or one far behind). ``--no-wait`` only publishes.
"""

from __future__ import annotations

import argparse
import json
import sys

from engine.commands.outcome import EXIT_NO_ANSWER, EXIT_REFUSED, Outcome, OutcomeWatcher
from engine.commands.topics import partition_count
from engine.core.partitioning import partition_for
from engine.producers.client import TradingClient
from engine.settings import Settings
from schemas.commands import LISTING_PARAMETERS


async def send_order(settings: Settings, args: argparse.Namespace) -> int:
    # Asking the topic first fails fast on a broker that is down or a topic never set up.
    partitions = await partition_count(settings, settings.topics.commands)
    partition = partition_for(args.technology_id, partitions)
    if args.no_wait:
        offset = await _publish(settings, args)
        return _report_published(args, partition, offset)
    async with OutcomeWatcher(settings, partition) as watcher:
        offset = await _publish(settings, args)
        outcome = await watcher.wait(offset, args.timeout)
    return _report(args, partition, offset, outcome)


async def _publish(settings: Settings, args: argparse.Namespace) -> int:
    async with TradingClient(settings, client_id="techx-cli") as client:
        if args.order_kind in {"bid", "offer"}:
            return await client.place(
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
        if args.order_kind == "cancel":
            return await client.cancel(args.technology_id, args.participant, args.client_order_id)
        if args.order_kind == "amend":
            return await client.amend(
                args.technology_id,
                args.participant,
                args.client_order_id,
                quantity=args.quantity,
                price=args.price,
            )
        if args.order_kind in {"halt", "resume", "close", "withdraw"}:
            return await client.manage(args.technology_id, args.participant, args.order_kind)
        parameters: dict[str, int | bool | None] = {
            name: getattr(args, name) for name in LISTING_PARAMETERS
        }
        return await client.list_technology(
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


def _report_published(args: argparse.Namespace, partition: int, offset: int) -> int:
    if args.json:
        _print_json({"verdict": "published", "partition": partition, "offset": offset})
    else:
        print(
            f"published {args.order_kind} for {args.technology_id} "
            f"at partition {partition} offset {offset} (not waiting for the engine)"
        )
    return 0


def _report(args: argparse.Namespace, partition: int, offset: int, outcome: Outcome | None) -> int:
    what = f"{args.order_kind} for {args.technology_id} (partition {partition} offset {offset})"
    if outcome is None:
        if args.json:
            _print_json(
                {"verdict": "no_answer", "partition": partition, "offset": offset, "reason": None}
            )
        print(
            f"techx order: published {what}, but no engine answered within {args.timeout:g} s; "
            "hint: is `techx run` running on these topics? The command stays in the log and is "
            "matched when an engine catches up",
            file=sys.stderr,
        )
        return EXIT_NO_ANSWER
    if args.json:
        _print_json(outcome.to_json())
    if outcome.verdict == "accepted":
        if not args.json:
            events = ", ".join(type_of(event) for event in outcome.events)
            print(f"accepted {what}: {events}")
        return 0
    print(
        f"techx order: {outcome.verdict.replace('_', '-')} {what}: {outcome.reason}",
        file=sys.stderr,
    )
    return EXIT_REFUSED


def type_of(event: object) -> str:
    """The event's wire tag (``order_accepted``, ``deal``, …)."""
    config = getattr(type(event), "__struct_config__", None)
    return str(config.tag) if config is not None else type(event).__name__


def _print_json(document: dict[str, object]) -> None:
    print(json.dumps(document, sort_keys=True))


async def send_membership(settings: Settings, args: argparse.Namespace) -> int:
    """`techx participant ...` / `techx access ...`: one record on every partition, each
    market keeping its own register, so each partition answers for itself (a suspend is
    refused where the participant is not registered). Exits as `techx order` does: 0 when
    every partition accepted, 3 when one refused, 4 when one did not answer in time."""
    partitions = await partition_count(settings, settings.topics.commands)
    if args.no_wait:
        what, offsets = await _publish_membership(settings, args)
        if args.json:
            _print_json({"verdict": "published", "command": what, "offsets": offsets})
        else:
            print(f"published {what} to {len(offsets)} partitions at offsets {offsets}")
        return 0
    async with OutcomeWatcher(settings, *range(partitions)) as watcher:
        what, offsets = await _publish_membership(settings, args)
        outcomes = await watcher.wait_all(dict(enumerate(offsets)), args.timeout)
    return _report_membership(args, what, offsets, outcomes)


async def _publish_membership(
    settings: Settings, args: argparse.Namespace
) -> tuple[str, list[int]]:
    """What was sent, for people, and its offset on each partition (in partition order)."""
    async with TradingClient(settings, client_id="techx-cli") as client:
        if args.command == "access":
            offsets = await client.set_access_mode(args.operator, args.mode)
            return f"access {args.mode}", offsets
        if args.participant_action == "register":
            offsets = await client.register_participant(
                args.operator, args.member_id, args.role, args.acts_for
            )
            return f"register {args.member_id} as {', '.join(args.role)}", offsets
        if args.participant_action == "suspend":
            offsets = await client.suspend_participant(args.operator, args.member_id)
            return f"suspend {args.member_id}", offsets
        offsets = await client.reinstate_participant(args.operator, args.member_id)
        return f"reinstate {args.member_id}", offsets


def _report_membership(
    args: argparse.Namespace,
    what: str,
    offsets: list[int],
    outcomes: dict[int, Outcome | None],
) -> int:
    verdicts = {p: "no_answer" if o is None else o.verdict for p, o in outcomes.items()}
    refused = {p: o for p, o in outcomes.items() if o is not None and o.verdict != "accepted"}
    silent = sorted(p for p, o in outcomes.items() if o is None)
    overall = (
        next(iter(refused.values())).verdict if refused else "no_answer" if silent else ("accepted")
    )
    if args.json:
        _print_json(
            {
                "verdict": overall,
                "command": what,
                "partitions": [
                    {"partition": p, "offset": offsets[p], "verdict": verdicts[p], "reason": None}
                    if o is None
                    else o.to_json()
                    for p, o in sorted(outcomes.items())
                ],
            }
        )
    by_reason: dict[tuple[str, str | None], list[int]] = {}
    for partition, outcome in sorted(refused.items()):
        by_reason.setdefault((outcome.verdict, outcome.reason), []).append(partition)
    for (verdict, reason), partitions in by_reason.items():
        print(
            f"techx {args.command}: {verdict.replace('_', '-')} {what} on partitions "
            f"{partitions}: {reason}",
            file=sys.stderr,
        )
    if silent:
        print(
            f"techx {args.command}: published {what}, but no engine answered on partitions "
            f"{silent} within {args.timeout:g} s; hint: is `techx run` running on these topics? "
            "The command stays in the log and is applied when an engine catches up",
            file=sys.stderr,
        )
    if refused:
        return EXIT_REFUSED
    if silent:
        return EXIT_NO_ANSWER
    if not args.json:
        answered = [o for o in outcomes.values() if o is not None]
        events = sorted({type_of(event) for o in answered for event in o.events})
        print(f"accepted {what} on {len(answered)} partitions: {', '.join(events)}")
    return 0
