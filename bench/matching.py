"""Pure matching throughput on one core: ``python -m bench.matching``.

Three layers, each on the same seeded stream, so the cost of every layer shows:
- book: ``OrderBook.place``/``cancel`` alone (pre-built orders, a thin book);
- market: ``Market.apply`` on decoded commands (validation, ids, events);
- pipeline: ``PartitionProcessor.process`` on raw records (decode, match, encode, rows),
  which is the engine's whole CPU path per batch apart from Kafka and PostgreSQL I/O.
Prints the median of several runs. No assertions: numbers are for people.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable

from engine.commands.run import tune_garbage_collector
from engine.core.batch import LogRecord, PartitionProcessor
from engine.core.codec import encode
from engine.core.market import Market
from engine.orderbook import Order, OrderBook
from engine.producers.simulation import OrderFlow, generated_listings
from schemas.commands import CancelOrder, TechnologyCommand
from schemas.common import Side


def _book_stream(seed: int, count: int) -> list[tuple[str, Side, int, int, bool]]:
    """Thin book: 11 prices around 1000, a tenth of the flow cancels an earlier order."""
    rng = random.Random(seed)
    return [
        (
            f"o{i}",
            Side.BID if rng.random() < 0.5 else Side.OFFER,
            1000 + rng.randint(-5, 5),
            rng.randint(1, 10),
            rng.random() < 0.1,
        )
        for i in range(count)
    ]


def bench_book(seed: int, count: int) -> float:
    stream = _book_stream(seed, count)
    orders = [Order(oid, "p", oid, side, price, qty) for oid, side, price, qty, _ in stream]
    cancels = [c for *_, c in stream]
    book = OrderBook()
    place, cancel = book.place, book.cancel
    gc.disable()
    started = time.perf_counter()
    for i, order in enumerate(orders):
        if cancels[i] and i:
            cancel(orders[i - 1])
        place(order)
    elapsed = time.perf_counter() - started
    gc.enable()
    return count / elapsed


def _commands(seed: int, count: int) -> list[TechnologyCommand]:
    flow = OrderFlow(seed, generated_listings(8), invalid_ratio=0.01)
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


def bench_pipeline(seed: int, count: int) -> float:
    records = [
        LogRecord(i, i, c.technology_id.encode(), encode(c))
        for i, c in enumerate(_commands(seed, count))
    ]
    processor = PartitionProcessor(0)
    started = time.perf_counter()
    for start in range(0, len(records), 5000):
        processor.process(records[start : start + 5000])
    return len(records) / (time.perf_counter() - started)


def _runs(run: Callable[[int, int], float], seed: int, count: int, repeats: int) -> list[float]:
    """Same stream every run, so the spread is the machine's noise, not the data's."""
    return [run(seed, count) for _ in range(repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    cancels = sum(isinstance(c, CancelOrder) for c in _commands(args.seed, 10_000))
    print(
        f"matching benchmark: {args.orders:,} orders per run, {args.repeats} runs, one core "
        f"(8 technologies, ~{cancels / 100:.0f}% cancels; gc tuned as in the engine)"
    )
    tune_garbage_collector()
    for name, run in (
        ("book      OrderBook.place/cancel", bench_book),
        ("market    Market.apply (validate, events)", bench_market),
        ("pipeline  decode + match + encode + rows", bench_pipeline),
    ):
        rates = _runs(run, args.seed, args.orders, args.repeats)
        print(
            f"  {name:<44} best {max(rates):>10,.0f}   median {statistics.median(rates):>10,.0f}"
            " orders/s"
        )


if __name__ == "__main__":
    main()
