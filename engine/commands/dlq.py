"""``techx dlq``: look at the dead letters and re-drive a corrected command.

Dead letters are read from PostgreSQL, which holds each whole record as settled (the
dead-letter topic cuts oversized values). A re-drive is checked with the engine's own
decoder before anything is published, is written to ``dead_letter_redrives`` before it is
published (so two operators cannot both re-drive one dead letter by accident), and goes to
the command topic under the key a front-end would use. The engine then treats it as any
other command: it may still refuse it (an unknown order, a halted listing), and says so on
the executions topic.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO, cast

import msgspec
import structlog

from engine.commands.outcome import (
    EXIT_NO_ANSWER,
    EXIT_REFUSED,
    Outcome,
    OutcomeWatcher,
    exit_status,
)
from engine.core.codec import decode_command
from engine.core.partitioning import partition_for
from engine.errors import CommandLineError, DecodeError, OperatorCommandError
from engine.producers.client import TradingClient
from engine.settings import Settings
from engine.store import dead_letters as store
from schemas.commands import MEMBERSHIP_COMMAND_TYPES, MembershipCommand, TechnologyCommand, Tick

log = structlog.get_logger()

_AGO = re.compile(r"(\d+)([smhd])\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime | None = None) -> int:
    """``--since``: an ISO date or time (UTC unless it says otherwise) or an age such as
    ``30m``, ``6h``, ``2d``; returns broker milliseconds."""
    now = now or datetime.now(UTC)
    ago = _AGO.match(text)
    if ago:
        moment = now - timedelta(**{_UNITS[ago[2]]: int(ago[1])})
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as e:
            raise CommandLineError(
                f"--since takes an ISO date or time (2026-11-27, 2026-11-27T08:00) or an age "
                f'(30m, 6h, 2d), not "{text[:40]}"'
            ) from e
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    """Broker milliseconds as ISO 8601 UTC, to the millisecond."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def shown_bytes(raw: bytes | None) -> dict[str, str | int | None]:
    """Bytes for people: the text when it is UTF-8, else base64 and hex."""
    if raw is None:
        return {"text": None}
    try:
        return {"text": raw.decode("utf-8"), "bytes": len(raw)}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode(), "hex": raw.hex(), "bytes": len(raw)}


def dead_letter_json(dead: store.StoredDeadLetter) -> dict[str, Any]:
    return {
        "id": dead.id,
        "partition": dead.partition,
        "offset": dead.offset,
        "reason": dead.reason,
        "detail": dead.detail,
        "timestamp_ms": dead.timestamp_ms,
        "time": iso_ms(dead.timestamp_ms),
        "key": shown_bytes(dead.key),
        "value": shown_bytes(dead.value),
        "redrives": [
            {
                "attempt": r.attempt,
                "by": r.redriven_by,
                "at": r.redriven_at.isoformat(timespec="milliseconds"),
                "partition": r.new_partition,
                "offset": r.new_offset,
            }
            for r in dead.redrives
        ],
    }


def _print_json(value: object, out: TextIO) -> None:
    out.write(msgspec.json.encode(value).decode() + "\n")


def _one_line(raw: bytes | None, limit: int) -> str:
    if raw is None:
        return "(none)"
    text = raw[: limit * 4].decode("utf-8", "backslashreplace").replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


SOURCES = ("db", "topic")


async def _from_topic(
    settings: Settings,
    partition: int | None,
    reason: str | None,
    since_ms: int | None,
    limit: int,
) -> list[store.StoredDeadLetter]:
    """As the database query does, over the dead-letter topic (which an operator without
    database access may read, and which is what subscribers were told)."""
    from engine.consumers.dead_letter_reader import read_dead_letters  # noqa: PLC0415

    found = [
        dead
        async for dead in read_dead_letters(settings, None if partition is None else [partition])
        if (reason is None or dead.reason == reason)
        and (since_ms is None or dead.timestamp_ms >= since_ms)
    ]
    found.sort(key=lambda dead: (-dead.timestamp_ms, dead.partition, -dead.offset))
    return found[:limit]


async def dlq_list(
    settings: Settings,
    *,
    partition: int | None = None,
    reason: str | None = None,
    since_ms: int | None = None,
    limit: int = 50,
    source: str = "db",
    as_json: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Newest first; one line each (``--json``: one JSON object each, whole). ``source``:
    PostgreSQL (``db``: whole records, with their re-drives) or the dead-letter topic."""
    if source == "topic":
        found = await _from_topic(settings, partition, reason, since_ms, limit)
    else:
        found = await store.list_dead_letters(
            settings.database_url,
            settings.topics.commands,
            partition=partition,
            reason=reason,
            since_ms=since_ms,
            limit=limit,
        )
    if as_json:
        for dead in found:
            _print_json(dead_letter_json(dead), out)
        return 0
    if not found:
        out.write("no dead letters match\n")
        return 0
    out.write(f"{'ID':<14} {'TIME (UTC)':<24} {'REASON':<22} {'REDRIVEN':<9} VALUE\n")
    for dead in found:
        redriven = f"yes ({len(dead.redrives)})" if dead.redrives else "no"
        out.write(
            f"{dead.id:<14} {iso_ms(dead.timestamp_ms)[:23]:<24} {dead.reason:<22} "
            f"{redriven:<9} {_one_line(dead.value, 60)}\n"
        )
    out.write(f"{len(found)} dead letter(s); `techx dlq show ID` for one in full\n")
    return 0


async def dlq_show(
    settings: Settings,
    dead_letter_id: str,
    *,
    source: str = "db",
    as_json: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    partition, offset = store.parse_id(dead_letter_id)
    if source == "topic":
        dead = await _one_from_topic(settings, partition, offset)
    else:
        dead = await store.get_dead_letter(
            settings.database_url, settings.topics.commands, partition, offset
        )
    shown = dead_letter_json(dead)
    if as_json:
        _print_json(shown, out)
        return 0
    out.write(f"dead letter {dead.id} of {settings.topics.commands}\n")
    out.write(f"  time     {shown['time']} (broker)\n")
    out.write(f"  reason   {dead.reason}\n")
    out.write(f"  detail   {dead.detail}\n")
    for name in ("key", "value"):
        part = cast(dict[str, Any], shown[name])
        if "base64" in part:
            out.write(f"  {name:<8} not UTF-8, {part['bytes']} bytes\n")
            out.write(f"    base64 {part['base64']}\n    hex    {part['hex']}\n")
        else:
            out.write(f"  {name:<8} {part['text'] if part['text'] is not None else '(none)'}\n")
    if not dead.redrives:
        out.write("  redriven no (`techx dlq redrive ID --file corrected.json`)\n")
    for redrive in dead.redrives:
        where = (
            f"to {redrive.new_partition}:{redrive.new_offset}"
            if redrive.new_offset is not None
            else "(not confirmed: publishing failed or was interrupted)"
        )
        out.write(
            f"  redriven #{redrive.attempt} by {redrive.redriven_by} at "
            f"{redrive.redriven_at.isoformat(timespec='seconds')} {where}\n"
        )
    return 0


async def _one_from_topic(
    settings: Settings, partition: int, offset: int
) -> store.StoredDeadLetter:
    from engine.consumers.dead_letter_reader import read_dead_letters  # noqa: PLC0415

    if partition >= settings.partitions:
        raise CommandLineError(f"there is no command partition {partition}")
    async for dead in read_dead_letters(settings, [partition]):
        if dead.offset == offset:
            return dead
    raise OperatorCommandError(
        f"no dead letter {partition}:{offset} on {settings.topics.dead_letters}"
    )


def check_corrected(corrected: bytes) -> TechnologyCommand | MembershipCommand:
    """The corrected command as the engine will decode it, or why it would be dead-lettered
    again (the same decoder, so the same verdict)."""
    try:
        command = decode_command(corrected)
    except DecodeError as e:
        raise OperatorCommandError(
            f"the corrected command would be dead-lettered again ({e.reason.value}): {e.detail}"
        ) from e
    if isinstance(command, Tick):
        raise OperatorCommandError("a tick is the ticker's business, not a re-drive's")
    if type(command) in MEMBERSHIP_COMMAND_TYPES:
        return cast(MembershipCommand, command)
    return cast(TechnologyCommand, command)


async def dlq_redrive(
    settings: Settings,
    dead_letter_id: str,
    corrected: bytes,
    *,
    operator: str | None = None,
    force: bool = False,
    as_json: bool = False,
    wait_s: float | None = 10.0,
    out: TextIO = sys.stdout,
) -> int:
    """Publish a corrected command for a dead letter; refused when it would not decode, or
    when the dead letter was re-driven already (unless ``force``). With ``wait_s``, waits for
    the engine's verdict and exits as `techx order` does (0 accepted, 3 refused, 4 none)."""
    partition, offset = store.parse_id(dead_letter_id)
    topic = settings.topics.commands
    await store.get_dead_letter(settings.database_url, topic, partition, offset)  # exists?
    command = check_corrected(corrected)
    exchange_wide = type(command) in MEMBERSHIP_COMMAND_TYPES
    new_partition = (
        partition
        if exchange_wide
        else partition_for(cast(TechnologyCommand, command).technology_id, settings.partitions)
    )
    watched = list(range(settings.partitions)) if exchange_wide else [new_partition]
    who = operator or getpass.getuser()
    attempt = await store.claim_redrive(
        settings.database_url, topic, partition, offset, who, corrected, force=force
    )
    async with contextlib.AsyncExitStack() as stack:
        # Watching starts before the send, so the verdict cannot slip past.
        watcher = (
            None
            if wait_s is None
            else await stack.enter_async_context(OutcomeWatcher(settings, *watched))
        )
        try:
            async with TradingClient(settings, client_id="techx-dlq-redrive") as client:
                if exchange_wide:
                    # Exchange-wide: sent to every partition, as `techx participant` does.
                    sent = await client.broadcast(cast(MembershipCommand, command))
                    offsets = dict(enumerate(sent))
                else:
                    offsets = {new_partition: await client.send(cast(TechnologyCommand, command))}
        except BaseException:
            await store.release_redrive(settings.database_url, topic, partition, offset, attempt)
            raise
        new_offset = offsets[new_partition]
        await store.complete_redrive(
            settings.database_url, topic, partition, offset, attempt, new_partition, new_offset
        )
        log.info(
            "dead_letter_redriven",
            dead_letter=dead_letter_id,
            attempt=attempt,
            operator=who,
            new_partition=new_partition,
            new_offset=new_offset,
        )
        outcomes = (
            None if watcher is None or wait_s is None else await watcher.wait_all(offsets, wait_s)
        )
    return _report_redrive(
        f"{partition}:{offset}", attempt, who, new_partition, new_offset, outcomes, as_json, out
    )


def _report_redrive(
    dead_letter_id: str,
    attempt: int,
    who: str,
    new_partition: int,
    new_offset: int,
    outcomes: dict[int, Outcome | None] | None,
    as_json: bool,
    out: TextIO,
) -> int:
    answers = [] if outcomes is None else list(outcomes.values())
    status = 0 if outcomes is None else exit_status(answers)
    verdict = "published" if outcomes is None else _verdict(answers)
    refusals = sorted({o.reason or "" for o in answers if o is not None and o.reason})
    result = {
        "id": dead_letter_id,
        "attempt": attempt,
        "by": who,
        "partition": new_partition,
        "offset": new_offset,
        "verdict": verdict,
        "reasons": refusals,
    }
    if as_json:
        _print_json(result, out)
        return status
    said = {
        "published": "the engine's verdict goes to the executions topic",
        "accepted": "the engine accepted it",
        "no_answer": "but no engine answered in time (is `techx run` running on these topics?)",
    }.get(verdict, f"the engine refused it again: {'; '.join(refusals)}")
    out.write(
        f"re-drove dead letter {dead_letter_id} (attempt {attempt}) as command "
        f"{new_partition}:{new_offset}; {said}\n"
    )
    return status


def _verdict(answers: list[Outcome | None]) -> str:
    """One word for the answers of every partition a re-drive went to."""
    status = exit_status(answers)
    if status == EXIT_REFUSED:
        refused = [o for o in answers if o is not None and o.verdict != "accepted"]
        return refused[0].verdict
    return "no_answer" if status == EXIT_NO_ANSWER else "accepted"
