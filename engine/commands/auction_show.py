"""The demo's auctions: one of each mechanism, scripted on the wall clock, watched live.

A simulated front-end may use the wall clock; the engine never does (its time is the broker's
timestamp of each record, and the ticker's records make deadlines fire when nobody trades).
The script lists an English auction that a late bid extends twice, a sealed second-price
tender, a Dutch clock and a call market, sends their bids at set moments, and the printer
tells what the exchange publishes about them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.producers.client import TradingClient
from schemas.common import AuctionOutcome
from schemas.events import AuctionClosed, AuctionExtended, Event, ListingStateChanged, MarketView


@dataclass(frozen=True)
class ShowIds:
    """The technologies of one show: fresh ids each run, since a listing is for good (an
    auction that ended cannot be listed again under its id)."""

    english: str
    sealed: str
    dutch: str
    call: str

    @classmethod
    def for_run(cls, start_ms: int) -> ShowIds:
        tag = f"{start_ms // 1000 % 1_000_000:06d}"
        return cls(f"HUST-PAT-{tag}", f"VAST-TENDER-{tag}", f"IOIT-KH-{tag}", f"UEH-CALL-{tag}")

    def all(self) -> tuple[str, str, str, str]:
        return (self.english, self.sealed, self.dutch, self.call)


_MILLION = 1_000_000


Action = Callable[[TradingClient], Awaitable[int]]


@dataclass(frozen=True)
class Step:
    """Something the script does at ``at_s`` seconds after it starts."""

    at_s: float
    action: Action


def _script(start_ms: int, ids: ShowIds) -> list[Step]:
    """The moments of the show; times of listings are log times aimed at the broker's clock."""

    def bid(technology: str, who: str, n: int, price: int | None) -> Callable[..., Awaitable[int]]:
        return lambda c: c.place(technology, who, f"{who}-{n}-{start_ms}", "bid", 1, price)

    def order(
        side: str, who: str, n: int, quantity: int, price: int
    ) -> Callable[..., Awaitable[int]]:
        return lambda c: c.place(ids.call, who, f"{who}-{n}-{start_ms}", side, quantity, price)

    return [
        Step(0.0, lambda c: c.list_technology(
            ids.english, "hust", "AI chip cooling patent (lot)", 10 * _MILLION, 1, 300 * _MILLION,
            mechanism="english", starting_price=200 * _MILLION, min_increment=10 * _MILLION,
            ends_at_ms=start_ms + 12_000, soft_close_window_ms=3_000,
            soft_close_extension_ms=3_000,
        )),
        Step(0.0, lambda c: c.list_technology(
            ids.sealed, "vast", "State-funded rice research results", _MILLION, 1, 150 * _MILLION,
            mechanism="sealed_second", ends_at_ms=start_ms + 10_000,
        )),
        Step(0.0, lambda c: c.list_technology(
            ids.dutch, "ioit", "Water treatment know-how package", 10 * _MILLION, 1, 300 * _MILLION,
            mechanism="dutch", starting_price=500 * _MILLION, price_step=20 * _MILLION,
            step_interval_ms=1_000,
        )),
        Step(0.0, lambda c: c.list_technology(
            ids.call, "ueh", "Credit model licences (call market)", 10_000, 1, mechanism="call",
            first_uncross_at_ms=start_ms + 5_000, call_interval_ms=5_000,
        )),
        Step(1.0, bid(ids.sealed, "inst-a", 1, 180 * _MILLION)),
        Step(2.0, bid(ids.english, "buyer-01", 1, 220 * _MILLION)),
        Step(2.5, order("bid", "fund-1", 1, 20, 2_450_000)),
        Step(3.0, order("offer", "bank-2", 1, 15, 2_400_000)),
        Step(3.0, bid(ids.sealed, "inst-b", 1, 240 * _MILLION)),
        Step(4.0, order("offer", "bank-3", 1, 10, 2_430_000)),
        Step(5.0, bid(ids.english, "buyer-02", 1, 260 * _MILLION)),
        Step(6.0, bid(ids.sealed, "inst-c", 1, 210 * _MILLION)),
        Step(7.0, bid(ids.dutch, "buyer-05", 1, None)),
        Step(7.5, order("bid", "fund-4", 1, 12, 2_440_000)),
        Step(8.0, bid(ids.english, "buyer-01", 2, 310 * _MILLION)),
        Step(10.0, bid(ids.english, "buyer-02", 2, 330 * _MILLION)),  # in the last 3 s: extends
        Step(12.5, bid(ids.english, "buyer-01", 3, 340 * _MILLION)),  # extends again
    ]  # fmt: skip


async def run_show(client: TradingClient, stop: asyncio.Event, ids: ShowIds, start_ms: int) -> None:
    """Send the script's commands at their moments (or stop early)."""
    started = time.monotonic()
    for step in _script(start_ms, ids):
        delay = step.at_s - (time.monotonic() - started)
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return
            except TimeoutError:
                pass
        await step.action(client)


def describe(event: Event | MarketView, vnd: Callable[[int], str], ids: ShowIds) -> str | None:
    """A line for the show about an auction's event or view, or None to stay quiet."""
    if event.technology_id not in ids.all():
        return None
    if isinstance(event, AuctionExtended):
        return f"  EXTENDED {event.technology_id}: a late bid moves the end (soft close)"
    if isinstance(event, AuctionClosed):
        if event.outcome is AuctionOutcome.SOLD and event.price is not None:
            who = f" to {event.winner_id}" if event.winner_id else ""
            return f"  SOLD     {event.technology_id}: {event.quantity} x {vnd(event.price)}{who}"
        return f"  UNSOLD   {event.technology_id}: {event.detail}"
    if isinstance(event, ListingStateChanged):
        return f"  {event.state.value.upper():<8} {event.technology_id}"
    if isinstance(event, MarketView):
        return _describe_view(event, vnd, ids)
    return None


def _describe_view(view: MarketView, vnd: Callable[[int], str], ids: ShowIds) -> str | None:
    if view.technology_id == ids.english and view.high_bid is not None and view.ends_at_ms:
        left = max(0.0, (view.ends_at_ms - time.time() * 1000) / 1000)
        nxt = vnd(view.next_minimum_bid) if view.next_minimum_bid is not None else "-"
        return (
            f"  ENGLISH  {view.technology_id}: high {vnd(view.high_bid)}, next >= {nxt}, "
            f"ends in {left:4.1f} s"
        )
    if view.technology_id == ids.sealed and view.bid_count is not None:
        return f"  SEALED   {view.technology_id}: {view.bid_count} sealed bid(s), prices hidden"
    if view.technology_id == ids.dutch and view.current_price is not None:
        return f"  DUTCH    {view.technology_id}: the clock shows {vnd(view.current_price)}"
    if view.technology_id == ids.call and view.indicative_price is not None:
        return (
            f"  CALL     {view.technology_id}: indicative {vnd(view.indicative_price)} "
            f"for {view.indicative_volume} units"
        )
    return None
