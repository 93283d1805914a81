"""kcat as a front-end: the kcat blocks of schemas/README.md, run as written against an engine.

The guide's blocks are extracted from the Markdown (each follows a ``<!-- kcat-example: name
-->`` comment) and run with bash, pointed at the test's own topics through the same
``TECHX_KAFKA_BOOTSTRAP`` / ``TECHX_TOPIC_PREFIX`` variables a reader would set, so the
guide and this test cannot drift apart.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import zlib
from pathlib import Path
from typing import Any

import pytest

from engine.core.batch import DLQ_OFFSET_HEADER, DLQ_PARTITION_HEADER, DLQ_REASON_HEADER
from engine.core.codec import decode_event
from engine.core.partitioning import partition_for
from engine.settings import Settings
from engine.store.reports import partition_positions
from schemas.common import DeadLetterReason, RejectReason
from schemas.events import (
    CommandRejected,
    Deal,
    Event,
    OrderAccepted,
    OrderDone,
    TechnologyListed,
)
from tests.integration.harness import read_topic, running_engine
from tests.polling import eventually

pytestmark = pytest.mark.integration

GUIDE = Path(__file__).resolve().parents[2] / "schemas" / "README.md"
_BLOCK = re.compile(
    r"^<!-- kcat-example: (?P<name>[a-z-]+) -->\n```sh\n(?P<body>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
_HEREDOC = re.compile(r"<<'EOF'\n(?P<lines>.*?)^EOF$", re.MULTILINE | re.DOTALL)
_BLOCK_NAMES = {"env", "produce", "executions", "deals", "dead-letters"}
#: The one switch a librdkafka front-end must not forget.
MURMUR2 = "-X partitioner=murmur2_random "
#: The participant whose outcomes the guide's consume blocks filter for.
BUYER = "buyer-05"
KCAT_TIMEOUT_S = 60.0


def guide_blocks() -> dict[str, str]:
    """The guide's kcat blocks by name, as bash text."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = {match["name"]: match["body"] for match in _BLOCK.finditer(text)}
    assert set(blocks) == _BLOCK_NAMES, f"{GUIDE} should hold the kcat blocks {_BLOCK_NAMES}"
    return blocks


def produced_records(produce_block: str) -> list[tuple[str, bytes]]:
    """The (key, value) records a produce block feeds kcat, one ``key|value`` line each."""
    match = _HEREDOC.search(produce_block)
    assert match is not None, "the produce block feeds kcat a <<'EOF' heredoc"
    records = []
    for line in match["lines"].splitlines():
        key, delimiter, value = line.partition("|")
        assert delimiter, f"not a key|value line: {line!r}"
        records.append((key, value.encode()))
    return records


def misrouted_technology(partitions: int) -> str:
    """A technology id that librdkafka's default partitioner (CRC32) sends elsewhere than
    murmur2 does, with this many partitions."""
    candidates = ["HUST-AI-0007", *(f"HUST-AI-{n:04d}" for n in range(1000))]
    return next(
        technology
        for technology in candidates
        if zlib.crc32(technology.encode()) % partitions != partition_for(technology, partitions)
    )


async def run_kcat(settings: Settings, blocks: dict[str, str], name: str, body: str) -> str:
    """Run a guide block after the ``env`` block with bash; returns its standard output.

    Consume blocks end in grep, which exits 1 while nothing matches yet: only the producer's
    exit status is checked (``check`` in the caller), the output says the rest.
    """
    assert shutil.which("kcat"), "kcat is missing: deploy/local/bootstrap.sh installs it"
    env = {
        **os.environ,
        "TECHX_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TECHX_TOPIC_PREFIX": settings.topics.prefix,
    }
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        blocks["env"] + body,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), KCAT_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"kcat block {name!r} ran over {KCAT_TIMEOUT_S} s") from None
    if name == "produce":
        assert process.returncode == 0, f"kcat block {name!r} failed: {err.decode()}"
    return out.decode()


def consumed(output: str) -> list[tuple[int, dict[str, Any]]]:
    """The (partition, event) pairs a consume block prints with ``-f '%p %s\\n'``."""
    pairs = []
    for line in output.splitlines():
        partition, _, value = line.partition(" ")
        pairs.append((int(partition), json.loads(value)))
    return pairs


async def published_offsets(settings: Settings) -> dict[int, int]:
    """The engine's published mark per command partition, from PostgreSQL."""
    positions = await partition_positions(settings.database_url, settings.topics.commands)
    return {partition: position.published_offset for partition, position in positions.items()}


async def wait_published(settings: Settings, partition: int, offset: int) -> None:
    """Wait until the engine's published mark on ``partition`` reaches ``offset``."""

    async def published() -> bool:
        return (await published_offsets(settings)).get(partition, 0) >= offset

    await eventually(published, what=f"published mark of partition {partition} at {offset}")


async def events_on(settings: Settings, topic: str) -> dict[int, list[Event]]:
    return {
        partition: [decode_event(record.value) for record in records]
        for partition, records in (await read_topic(settings, topic)).items()
    }


def test_guide_quotes_true_partitions() -> None:
    """The partitions schemas/README.md quotes for 4 partitions are what murmur2 and CRC32 give."""
    assert partition_for("HCMUT-BATT-0001", 4) == zlib.crc32(b"HCMUT-BATT-0001") % 4 == 2
    assert (partition_for("HUST-AI-0007", 4), zlib.crc32(b"HUST-AI-0007") % 4) == (3, 0)
    assert misrouted_technology(4) == "HUST-AI-0007"


async def test_kcat_order_trades_and_its_resend_is_refused(settings: Settings) -> None:
    """The guide's kcat order trades, and the same bytes sent again are refused, never traded."""
    blocks = guide_blocks()
    records = produced_records(blocks["produce"])
    technology = records[0][0]
    home = partition_for(technology, settings.partitions)
    assert BUYER in blocks["executions"]
    assert BUYER in blocks["deals"]

    async with running_engine(settings):
        await run_kcat(settings, blocks, "produce", blocks["produce"])

        async def buyer_filled() -> bool:
            output = await run_kcat(settings, blocks, "executions", blocks["executions"])
            return [e["type"] for _, e in consumed(output)] == ["order_accepted", "order_done"]

        await eventually(buyer_filled, what=f"{BUYER}'s order_accepted and order_done")
        deals = consumed(await run_kcat(settings, blocks, "deals", blocks["deals"]))
        assert [(p, d["type"], d["buyer_id"], d["quantity"]) for p, d in deals] == [
            (home, "deal", BUYER, 2)
        ]

        # The same bytes again, as a front-end unsure whether its first send got through.
        await run_kcat(settings, blocks, "produce", blocks["produce"])

        async def resend_refused() -> bool:
            output = await run_kcat(settings, blocks, "executions", blocks["executions"])
            return len(consumed(output)) == 3

        await eventually(resend_refused, what=f"{BUYER}'s resend answered")
        await wait_published(settings, home, 2 * len(records))
        mine = consumed(await run_kcat(settings, blocks, "executions", blocks["executions"]))
        assert mine[2][1]["type"] == "command_rejected"
        assert mine[2][1]["reason"] == RejectReason.DUPLICATE_CLIENT_ORDER_ID
        assert len(consumed(await run_kcat(settings, blocks, "deals", blocks["deals"]))) == 1

    # Everything the engine published, read back: one deal, and every resend refused.
    deal_events = await events_on(settings, settings.topics.deals)
    execution_events = await events_on(settings, settings.topics.executions)
    assert all(not events for p, events in deal_events.items() if p != home)
    assert all(not events for p, events in execution_events.items() if p != home)
    assert [type(e) for e in deal_events[home]] == [Deal]
    executions = execution_events[home]
    assert [(type(e), e.source_offset) for e in executions[:5]] == [
        (TechnologyListed, 0),
        (OrderAccepted, 1),
        (OrderAccepted, 2),
        (OrderDone, 2),
        (OrderDone, 2),
    ]
    refusals = executions[5:]
    assert all(isinstance(e, CommandRejected) for e in refusals)
    assert [(e.source_offset, e.reason) for e in refusals if isinstance(e, CommandRejected)] == [
        (3, RejectReason.TECHNOLOGY_ALREADY_LISTED),
        (4, RejectReason.DUPLICATE_CLIENT_ORDER_ID),
        (5, RejectReason.DUPLICATE_CLIENT_ORDER_ID),
    ]
    # seq orders the technology's events across both topics, from 1 without a gap.
    every = sorted(deal_events[home] + executions, key=lambda e: e.seq)
    assert [e.seq for e in every] == list(range(1, len(every) + 1))
    assert {e.technology_id for e in every} == {technology}


async def test_kcat_without_murmur2_is_dead_lettered_wrong_partition(settings: Settings) -> None:
    """The guide's records produced without murmur2_random land on the CRC32 partition and
    become wrong_partition dead letters, with no event on executions or deals."""
    blocks = guide_blocks()
    produce = blocks["produce"]
    assert produce.count(MURMUR2) == 1
    guide_technology = produced_records(produce)[0][0]
    technology = misrouted_technology(settings.partitions)
    misrouted = produce.replace(MURMUR2, "").replace(guide_technology, technology)
    records = produced_records(misrouted)
    assert {key for key, _ in records} == {technology}
    landed = zlib.crc32(technology.encode()) % settings.partitions

    async with running_engine(settings):
        await run_kcat(settings, blocks, "produce", misrouted)

        async def dead_lettered() -> bool:
            output = await run_kcat(settings, blocks, "dead-letters", blocks["dead-letters"])
            return output.count(f"{DLQ_REASON_HEADER}=wrong_partition") == len(records)

        await eventually(dead_lettered, what="wrong_partition dead letters on the DLQ topic")
        await wait_published(settings, landed, len(records))

    dead = await read_topic(settings, settings.topics.dead_letters)
    assert all(not rs for p, rs in dead.items() if p != landed)
    assert [(r.key, r.value) for r in dead[landed]] == [
        (key.encode(), value) for key, value in records
    ]
    for offset, record in enumerate(dead[landed]):
        headers = dict(record.headers)
        assert headers[DLQ_REASON_HEADER] == DeadLetterReason.WRONG_PARTITION.encode()
        assert headers[DLQ_PARTITION_HEADER] == str(landed).encode()
        assert headers[DLQ_OFFSET_HEADER] == str(offset).encode()
    for topic in (settings.topics.executions, settings.topics.deals):
        assert all(not rs for rs in (await read_topic(settings, topic)).values()), topic
