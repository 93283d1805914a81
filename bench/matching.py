"""Pure matching throughput on one core: ``python -m bench.matching``.

Layers, each measured in the same run so their ratios mean something:
- book: ``OrderBook.place``/``cancel`` alone on issue 11's stream (70% limit, 22% cancel,
  8% market), on a thin book and on a book holding ~1M resting orders, each beside the
  plain-Python reference book (bench/reference_book.py) on the same commands;
- market: ``Market.apply`` on decoded commands (validation, ids, events);
- pipeline: ``PartitionProcessor.process`` on raw records (decode, match, encode, rows),
  which is the engine's whole CPU path per batch apart from Kafka and PostgreSQL I/O;
- exchange mix (bench/mix.py): market and pipeline on every mechanism and time in force
  with a members_only register;
- memory: bytes per resting order with 1M resting orders, by tracemalloc (what Python
  allocated and still holds, not RSS), for the bare book and through ``Market.apply``.
Prints the median of several runs next to issue 11's targets. No assertions.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

from bench.mix import exchange_mix
from bench.reference_book import ReferenceBook
from bench.targets import against
from engine.commands.run import tune_garbage_collector
from engine.core.batch import LogRecord, PartitionProcessor
from engine.core.codec import decode_command, encode
from engine.core.market import Market
from engine.orderbook import Order, OrderBook
from engine.producers.simulation import OrderFlow, generated_listings
from schemas.commands import Command, PlaceOrder, TechnologyCommand, Tick
from schemas.common import Side

LIMIT, MARKET, CANCEL = 0, 1, 2
#: (kind, order id, is bid, price, quantity); a cancel's order id is its target.
BookCommand = tuple[int, int, bool, int | None, int]


def issue_stream(
    seed: int, count: int, mid: int = 1000, half_spread: int = 5, first_id: int = 0
) -> list[BookCommand]:
    """Issue 11's reference stream at the book level: 70% limit, 22% cancel, 8% market.

    Limits are uniform within ``half_spread`` of ``mid`` (so they cross often); a cancel
    names one of the last 1,000 limit orders (it may have traded away: then a no-op).
    """
    rng = random.Random(seed)
    stream: list[BookCommand] = []
    limits: list[int] = []
    for order_id in range(first_id, first_id + count):
        roll = rng.random()
        is_bid = rng.random() < 0.5
        quantity = rng.randint(1, 10)
        if roll < 0.22 and limits:
            target = limits[rng.randrange(max(0, len(limits) - 1000), len(limits))]
            stream.append((CANCEL, target, False, None, 0))
        elif roll < 0.30:
            stream.append((MARKET, order_id, is_bid, None, quantity))
        else:
            price = mid + rng.randint(-half_spread, half_spread)
            stream.append((LIMIT, order_id, is_bid, price, quantity))
            limits.append(order_id)
    return stream


def deep_orders(count: int, mid: int = 1000, gap: int = 6, levels: int = 200) -> list[BookCommand]:
    """``count`` limits that rest without crossing: bids below ``mid - gap``, offers above
    ``mid + gap``, spread over ``levels`` prices a side (ids 0..count-1)."""
    return [
        (
            LIMIT,
            i,
            not i % 2,
            mid - gap - (i // 2) % levels if not i % 2 else mid + gap + (i // 2) % levels,
            1 + i % 10,
        )
        for i in range(count)
    ]


def _engine_orders(commands: list[BookCommand], size: int) -> list[Order | None]:
    """Engine orders indexed by id; ids are strings as in the engine, one shared owner."""
    orders: list[Order | None] = [None] * size
    for kind, order_id, is_bid, price, quantity in commands:
        if kind != CANCEL:
            name = str(order_id)
            side = Side.BID if is_bid else Side.OFFER
            orders[order_id] = Order(name, "p", name, side, price, quantity)
    return orders


def _time_engine_book(prefill: list[BookCommand], stream: list[BookCommand]) -> tuple[float, int]:
    """Orders/s of the engine book on ``stream`` after placing ``prefill`` (untimed)."""
    orders = _engine_orders(prefill + stream, len(prefill) + len(stream))
    book = OrderBook()
    place, cancel = book.place, book.cancel
    for _, order_id, *_rest in prefill:
        place(orders[order_id])  # type: ignore[arg-type]
    gc.disable()
    started = time.perf_counter()
    for kind, order_id, *_rest in stream:
        if kind == CANCEL:
            cancel(orders[order_id])  # type: ignore[arg-type]
        else:
            place(orders[order_id])  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    gc.enable()
    resting = len(book.resting_orders(Side.BID)) + len(book.resting_orders(Side.OFFER))
    return len(stream) / elapsed, resting


def _time_reference_book(prefill: list[BookCommand], stream: list[BookCommand]) -> float:
    book = ReferenceBook()
    place, cancel = book.place, book.cancel
    for _, order_id, is_bid, price, quantity in prefill:
        place(order_id, is_bid, price, quantity)
    gc.disable()
    started = time.perf_counter()
    for kind, order_id, is_bid, price, quantity in stream:
        if kind == CANCEL:
            cancel(order_id)
        else:
            place(order_id, is_bid, price, quantity)
    elapsed = time.perf_counter() - started
    gc.enable()
    return len(stream) / elapsed


@dataclass(frozen=True, slots=True)
class BookResult:
    engine: float
    reference: float
    resting_after: int

    @property
    def ratio(self) -> float:
        return self.engine / self.reference


def bench_books(seed: int, count: int, resting: int, repeats: int) -> BookResult:
    """Engine and reference book, alternating run by run so drift hits both alike."""
    prefill = deep_orders(resting)
    stream = issue_stream(seed, count, first_id=resting)
    engine: list[float] = []
    reference: list[float] = []
    left = 0
    for _ in range(repeats):
        rate, left = _time_engine_book(prefill, stream)
        engine.append(rate)
        reference.append(_time_reference_book(prefill, stream))
    return BookResult(statistics.median(engine), statistics.median(reference), left)


def book_memory(resting: int) -> float:
    """Bytes per resting order in the bare engine book (tracemalloc: the Order objects, their
    id strings, the levels and indexes; every order has its own id, one shared owner)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    book = OrderBook()
    for _, order_id, is_bid, price, quantity in deep_orders(resting):
        name = str(order_id)
        book.place(Order(name, "p", name, Side.BID if is_bid else Side.OFFER, price, quantity))
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del book
    return used / resting


def _resting_commands(resting: int, technologies: int = 8) -> list[bytes]:
    """Encoded listings then ``resting`` place_orders that never cross, as the log holds them."""
    flow = OrderFlow(1, generated_listings(technologies))
    listings = flow.listing_commands()
    commands: list[bytes] = [encode(c) for c in listings]
    for i in range(resting):
        listing = listings[i % technologies]
        bid = not (i // technologies) % 2
        ticks = 1 + (i // (2 * technologies)) % 500
        price = 1_000_000 + (-ticks if bid else ticks) * 1_000
        command = PlaceOrder(
            technology_id=listing.technology_id,
            participant_id=f"member-{i % 50:02d}",
            client_order_id=f"c{i}",
            side="bid" if bid else "offer",
            quantity=1 + i % 5,
            price=price,
        )
        commands.append(encode(command))
    return commands


def market_memory(resting: int) -> float:
    """Bytes per resting order held by ``Market`` after ``resting`` place_orders (tracemalloc;
    commands decoded inside the window, so strings the market keeps are counted)."""
    records = _resting_commands(resting)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    market = Market()
    views = market.views_out
    for offset, value in enumerate(records):
        market.apply(decode_command(value), 0, offset)
        if not offset % 5000:
            views.clear()
    views.clear()
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del market
    return used / resting


def _commands(seed: int, count: int) -> list[TechnologyCommand]:
    """Issue 11's mix through the engine's own front-end: 22% cancels, 8% market orders
    (OrderFlow's market ratio applies to the non-cancels), 1% invalid orders."""
    flow = OrderFlow(
        seed,
        generated_listings(8),
        invalid_ratio=0.01,
        cancel_ratio=0.22,
        market_ratio=0.08 / 0.78,
    )
    return flow.listing_commands() + flow.next_commands(count)


def bench_market(seed: int, count: int) -> float:
    commands = _commands(seed, count)
    market = Market()
    apply = market.apply
    gc.disable()
    started = time.perf_counter()
    views = market.views_out
    for offset, command in enumerate(commands):
        apply(command, 0, offset)
        if not offset % 5000:
            views.clear()  # the engine takes the views away with every batch
    elapsed = time.perf_counter() - started
    gc.enable()
    return len(commands) / elapsed


def _records(commands: list[tuple[Command, int]]) -> list[LogRecord]:
    return [
        LogRecord(
            offset,
            at,
            b"tick"
            if isinstance(c, Tick) or not hasattr(c, "technology_id")
            else c.technology_id.encode(),
            encode(c),
        )
        for offset, (c, at) in enumerate(commands)
    ]


def _process(records: list[LogRecord]) -> float:
    # As the engine runs it: with the partition count, so every record's routing is checked
    # (one partition: every technology is at home).
    processor = PartitionProcessor(0, 1)
    started = time.perf_counter()
    for start in range(0, len(records), 5000):
        processor.process(records[start : start + 5000])
    return len(records) / (time.perf_counter() - started)


def bench_pipeline(seed: int, count: int) -> float:
    return _process(_records([(c, i) for i, c in enumerate(_commands(seed, count))]))


def bench_mix_market(seed: int, count: int) -> float:
    commands = exchange_mix(seed, count)
    market = Market()
    apply = market.apply
    views = market.views_out
    gc.disable()
    started = time.perf_counter()
    for offset, (command, at) in enumerate(commands):
        apply(command, at, offset)
        if not offset % 5000:
            views.clear()
    elapsed = time.perf_counter() - started
    gc.enable()
    return len(commands) / elapsed


def bench_mix_pipeline(seed: int, count: int) -> float:
    return _process(_records(exchange_mix(seed, count)))


def _runs(run: Callable[[int, int], float], seed: int, count: int, repeats: int) -> list[float]:
    """Same stream every run, so the spread is the machine's noise, not the data's."""
    return [run(seed, count) for _ in range(repeats)]


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much each measurement does: quick for ``make bench``, full for the issue's forms."""

    stream: int
    deep_stream: int
    resting: int
    repeats: int
    layer_orders: int
    memory_resting: int

    @classmethod
    def quick(cls) -> Sizes:
        return cls(stream=300_000, deep_stream=200_000, resting=1_000_000, repeats=3,
                   layer_orders=100_000,
                   memory_resting=1_000_000)  # fmt: skip

    @classmethod
    def full(cls) -> Sizes:
        return cls(stream=1_000_000, deep_stream=1_000_000, resting=1_000_000, repeats=5,
                   layer_orders=1_000_000,
                   memory_resting=1_000_000)  # fmt: skip


def measure(sizes: Sizes, seed: int, say: Callable[[str], None] = print) -> dict[str, float]:
    """Every pure metric, each printed against its target as soon as it is known."""
    results: dict[str, float] = {}

    def record(name: str, label: str, value: float) -> None:
        results[name] = value
        say(f"  {label:<46} {against(name, value)}")

    tune_garbage_collector()
    thin = bench_books(seed, sizes.stream, 0, sizes.repeats)
    record("book_thin", "book      OrderBook, thin book", thin.engine)
    record("book_thin_reference", "          reference book, thin book", thin.reference)
    record("book_thin_vs_reference", "          engine / reference, thin", thin.ratio)
    deep = bench_books(seed, sizes.deep_stream, sizes.resting, max(1, sizes.repeats - 2))
    label = f"book      OrderBook, {sizes.resting:,} resting"
    record("book_deep", label, deep.engine)
    record("book_deep_reference", "          reference book, same", deep.reference)
    record("book_deep_vs_reference", "          engine / reference, deep", deep.ratio)
    for name, label, run in (
        ("market", "market    Market.apply (issue mix)", bench_market),
        ("pipeline", "pipeline  decode+match+encode+rows (issue)", bench_pipeline),
        ("mix_market", "market    Market.apply (exchange mix)", bench_mix_market),
        ("mix_pipeline", "pipeline  exchange mix", bench_mix_pipeline),
    ):
        rates = _runs(run, seed, sizes.layer_orders, sizes.repeats)
        record(name, label, statistics.median(rates))
    record(
        "book_bytes_per_order",
        "memory    bare book (tracemalloc)",
        book_memory(sizes.memory_resting),
    )
    record(
        "market_bytes_per_order",
        "memory    Market.apply (tracemalloc)",
        market_memory(sizes.memory_resting),
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="1M-command layers, 5 repeats")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sizes = Sizes.full() if args.full else Sizes.quick()
    print(
        f"matching benchmark, one core, gc tuned as in the engine: issue stream "
        f"{sizes.stream:,} commands (70% limit / 22% cancel / 8% market), layers "
        f"{sizes.layer_orders:,} commands, median of {sizes.repeats} runs"
    )
    measure(sizes, args.seed)


if __name__ == "__main__":
    main()
