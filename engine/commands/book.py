"""``techx book TECH``: a technology's latest market view from the market-data topic.

The engine publishes a :class:`MarketView` of a technology whenever what it shows changed
(book levels for continuous trading, the indicative price of a call auction, the high bid of
an English auction, the Dutch clock, the number of sealed bids). Each view is the whole
state, so the latest one is the answer: it is found by reading the technology's partition
backwards from its end, a window at a time, with ``read_committed`` (as subscribers read).
``--follow`` then prints every later view until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TextIO

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from engine.commands.dlq import iso_ms
from engine.core.codec import decode_view
from engine.core.partitioning import partition_for
from engine.kafka_security import kafka_error
from engine.settings import Settings
from schemas.events import MarketView, PriceLevel

#: Records read per step backwards while looking for the latest view.
_WINDOW = 2_000


def render_view(view: MarketView, depth: int) -> list[str]:
    """Lines for a terminal: the state, then what the mechanism shows. Pure."""
    lines = [
        f"{view.technology_id}  {view.mechanism.value}  {view.state.value}  "
        f"as of {iso_ms(view.timestamp_ms)} (command offset {view.source_offset})"
    ]
    if view.last_price is not None:
        lines.append(f"  last trade   {view.last_quantity} @ {view.last_price:,}")
    if view.indicative_price is not None:
        lines.append(
            f"  indicative   {view.indicative_volume} @ {view.indicative_price:,}"
            f" (surplus {view.surplus})"
        )
    if view.next_uncross_at_ms is not None:
        lines.append(f"  uncross at   {iso_ms(view.next_uncross_at_ms)}")
    if view.high_bid is not None or view.next_minimum_bid is not None:
        high = f"{view.high_bid:,}" if view.high_bid is not None else "none"
        # A closed auction takes no next bid: its view has no minimum, and "at least 0" lied.
        minimum = view.next_minimum_bid
        lines.append(
            f"  high bid     {high}" + (f"; next bid at least {minimum:,}" if minimum else "")
        )
    if view.reserve_met is not None:
        lines.append(f"  reserve met  {'yes' if view.reserve_met else 'no'}")
    if view.bid_count is not None:
        lines.append(f"  bids         {view.bid_count}")
    if view.current_price is not None:
        lines.append(f"  clock price  {view.current_price:,}")
    if view.next_step_at_ms is not None:
        lines.append(f"  next step at {iso_ms(view.next_step_at_ms)}")
    if view.remaining_quantity is not None:
        lines.append(f"  remaining    {view.remaining_quantity}")
    if view.ends_at_ms is not None:
        lines.append(f"  ends at      {iso_ms(view.ends_at_ms)}")
    if view.bids or view.offers:
        lines.extend(_levels(view.bids[:depth], view.offers[:depth]))
    return lines


def _levels(bids: list[PriceLevel], offers: list[PriceLevel]) -> list[str]:
    lines = [
        f"  {'ORDERS':>6} {'BID QTY':>10} {'BID':>14} | {'OFFER':<14} {'OFFER QTY':<10} ORDERS"
    ]
    for row in range(max(len(bids), len(offers))):
        left = (
            f"{bids[row].orders:>6} {bids[row].quantity:>10} {bids[row].price:>14,}"
            if row < len(bids)
            else " " * 32
        )
        right = (
            f"{offers[row].price:<14,} {offers[row].quantity:<10} {offers[row].orders}"
            if row < len(offers)
            else ""
        )
        lines.append(f"  {left} | {right}".rstrip())
    return lines


def view_json(view: MarketView, depth: int) -> str:
    trimmed = msgspec.structs.replace(view, bids=view.bids[:depth], offers=view.offers[:depth])
    return msgspec.json.encode(trimmed).decode()


async def latest_view(
    consumer: AIOKafkaConsumer, tp: TopicPartition, technology_id: str
) -> tuple[MarketView | None, int]:
    """The technology's newest view on the partition, and the end it was read up to."""
    key = technology_id.encode()
    first = (await consumer.beginning_offsets([tp]))[tp]
    end = (await consumer.end_offsets([tp]))[tp]
    high = end
    while high > first:
        low = max(first, high - _WINDOW)
        found: MarketView | None = None
        consumer.seek(tp, low)
        while await consumer.position(tp) < high:
            fetched = await consumer.getmany(tp, timeout_ms=1000)
            for record in fetched.get(tp, []):
                if low <= record.offset < high and record.key == key and record.value:
                    found = decode_view(record.value)
        if found is not None:
            return found, end
        high = low
    return None, end


async def show_book(
    settings: Settings,
    technology_id: str,
    *,
    depth: int = 10,
    follow: bool = False,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
) -> int:
    """Print the latest view (exit 1 when there is none and not following); with ``follow``,
    every later one until ``stop`` is set or Ctrl-C."""
    topic = settings.topics.market_data
    tp = TopicPartition(topic, partition_for(technology_id, settings.partitions))
    consumer = AIOKafkaConsumer(
        **settings.kafka_options(),
        client_id="techx-book",
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )

    def emit(view: MarketView) -> None:
        if as_json:
            out.write(view_json(view, depth) + "\n")
        else:
            out.write("\n".join(render_view(view, depth)) + "\n")
        out.flush()

    try:
        await consumer.start()
        consumer.assign([tp])
        view, end = await latest_view(consumer, tp, technology_id)
        if view is not None:
            emit(view)
        elif not as_json:
            out.write(f"no market view of {technology_id} on {topic} yet\n")
        if not follow:
            return 0 if view is not None else 1
        consumer.seek(tp, end)
        await _follow(consumer, tp, technology_id.encode(), emit, stop or asyncio.Event())
        return 0
    except KafkaError as e:
        raise kafka_error(e, f"reading {topic}", settings.kafka_security) from e
    finally:
        await asyncio.sleep(0)  # as log_reader: let aiokafka's tasks start before stopping
        await consumer.stop()


async def _follow(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    key: bytes,
    emit: Callable[[MarketView], None],
    stop: asyncio.Event,
) -> None:
    """Print each new view of the technology; short polls, so a stop is seen within 0.25 s."""
    while not stop.is_set():
        fetched = await consumer.getmany(tp, timeout_ms=250)
        for record in fetched.get(tp, []):
            if record.key == key and record.value:
                emit(decode_view(record.value))
