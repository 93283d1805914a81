"""Seeded order flow: the simulated front-end of the demo, the tests and the benchmarks.

Buyers and sellers quote around a slowly drifting fair price per technology, with some
market orders, cancels and deliberately bad orders. The same seed gives the same stream.
Randomness lives here, in the front-end's shoes, never in the engine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from schemas.commands import CancelOrder, ListTechnology, PlaceOrder, TechnologyCommand


@dataclass(frozen=True, slots=True)
class Listing:
    technology_id: str
    name: str
    tick_size: int
    lot_size: int
    fair_price: int


DEMO_LISTINGS = (
    Listing("HCMUT-BATT-0001", "Solid-state battery electrolyte patent", 100_000, 1, 52_000_000),
    Listing("VAST-RICE-0042", "Salt-tolerant rice cultivar licence", 50_000, 5, 8_500_000),
    Listing("HUST-AI-0007", "Vietnamese speech recognition know-how", 100_000, 1, 120_000_000),
    Listing("UEH-FIN-0003", "Credit scoring model transfer package", 10_000, 10, 2_300_000),
)


def generated_listings(count: int) -> tuple[Listing, ...]:
    """Many technologies for tests and benchmarks, on a simple price grid."""
    return tuple(
        Listing(f"TECH-{i:04d}", f"Technology {i}", 1_000, 1, 1_000_000 + 10_000 * i)
        for i in range(count)
    )


class OrderFlow:
    """A reproducible stream of front-end commands."""

    def __init__(
        self,
        seed: int,
        listings: tuple[Listing, ...] = DEMO_LISTINGS,
        run_tag: str = "sim",
        participants: int = 12,
        market_ratio: float = 0.08,
        cancel_ratio: float = 0.1,
        invalid_ratio: float = 0.0,
        trader_ratio: float = 0.05,
        spread_ticks: int = 6,
    ) -> None:
        self._rng = random.Random(seed)
        self._listings = listings
        self._run_tag = run_tag
        self._participants = participants
        self._market_ratio = market_ratio
        self._cancel_ratio = cancel_ratio
        self._invalid_ratio = invalid_ratio
        self._trader_ratio = trader_ratio
        self._spread = spread_ticks
        self._fair = {listing.technology_id: listing.fair_price for listing in listings}
        self._placed: list[PlaceOrder] = []
        self._count = 0

    def listing_commands(self) -> list[TechnologyCommand]:
        return [
            ListTechnology(
                technology_id=x.technology_id,
                participant_id="exchange-ops",
                name=x.name,
                tick_size=x.tick_size,
                lot_size=x.lot_size,
            )
            for x in self._listings
        ]

    def next_commands(self, count: int) -> list[TechnologyCommand]:
        return [self._next() for _ in range(count)]

    def _next(self) -> TechnologyCommand:
        rng = self._rng
        roll = rng.random()
        if roll < self._cancel_ratio and self._placed:
            target = self._placed[rng.randrange(len(self._placed))]
            return CancelOrder(
                technology_id=target.technology_id,
                participant_id=target.participant_id,
                client_order_id=target.client_order_id,
            )
        listing = self._listings[rng.randrange(len(self._listings))]
        tick = listing.tick_size
        fair = max(tick * 10, self._fair[listing.technology_id] + rng.randint(-2, 2) * tick)
        self._fair[listing.technology_id] = fair
        side = "bid" if rng.random() < 0.5 else "offer"
        self._count += 1
        participant = (
            f"{'buyer' if side == 'bid' else 'seller'}-{rng.randint(1, self._participants):02d}"
        )
        if rng.random() < self._trader_ratio:
            participant = f"trader-{rng.randint(1, 3)}"  # trades both sides: self-trades happen
        quantity = listing.lot_size * rng.randint(1, 5)
        client_order_id = f"{self._run_tag}-{self._count}"
        price: int | None
        order_type = "limit"
        if rng.random() < self._market_ratio:
            price, order_type = None, "market"
        else:
            spread = self._spread
            ticks = (
                rng.randint(-spread, spread // 2)
                if side == "bid"
                else rng.randint(-(spread // 2), spread)
            )
            price = max(tick, (fair // tick + ticks) * tick)
        if rng.random() < self._invalid_ratio:
            price, quantity = self._spoil(price, quantity, tick)
        order = PlaceOrder(
            technology_id=listing.technology_id,
            participant_id=participant,
            client_order_id=client_order_id,
            side=side,
            quantity=quantity,
            price=price,
            order_type=order_type,
        )
        self._placed.append(order)
        return order

    def _spoil(self, price: int | None, quantity: int, tick: int) -> tuple[int | None, int]:
        """Make an order the market must refuse, each way a front-end might get it wrong."""
        flaw = self._rng.randrange(4)
        if flaw == 0:
            return (price or tick) + max(1, tick // 2), quantity  # off the tick
        if flaw == 1:
            return price, 0  # no quantity
        if flaw == 2:
            return -(price or tick), quantity  # negative price
        return price, -quantity
