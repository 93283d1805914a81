"""A load offered at a steady rate, and the latency figures read under it.

``bench.end_to_end`` offers it to the engine and ``bench.io_only`` to the I/O-only pipeline:
one pacing and one way of reading percentiles, so the two latencies they print side by side
were measured alike.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from engine.producers.client import TradingClient
from engine.producers.simulation import OrderFlow
from schemas.commands import TechnologyCommand

#: The load goes out in slices of this many seconds.
SLICE_S = 0.01


def offered_slices(flow: OrderFlow, rate: int, seconds: float) -> list[list[TechnologyCommand]]:
    """The commands of ``seconds`` at ``rate`` a second, one list per slice. Made up front,
    so the count is known before the first is sent (a pipeline that stops at a count needs
    it)."""
    per_slice = max(1, int(rate * SLICE_S))
    return [flow.next_commands(per_slice) for _ in range(int(seconds / SLICE_S))]


async def send_paced(client: TradingClient, slices: list[list[TechnologyCommand]]) -> int:
    """Send one slice every SLICE_S; a slice sent late does not push the later ones back."""
    sent = 0
    next_at = time.monotonic()
    for commands in slices:
        sent += await client.send_many(commands)
        next_at += SLICE_S
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return sent


def percentile(values: list[int], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def latency_line(latencies: list[int]) -> str:
    return (
        f"p50 {percentile(latencies, 50):.0f} ms   p90 {percentile(latencies, 90):.0f} ms   "
        f"p99 {percentile(latencies, 99):.0f} ms   max {max(latencies)} ms"
    )
