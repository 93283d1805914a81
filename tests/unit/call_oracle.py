"""The call auction's computations as they were before the venue kept price levels: from
every live order, sorted anew each time. The oracle of tests/unit/test_call_levels.py, which
checks that the level-based venue chooses, shows and fills exactly as these did."""

from __future__ import annotations

from collections.abc import Sequence

from engine.core.mechanisms.call import Clearing
from engine.core.mechanisms.call_state import CallOrderState
from schemas.common import Side
from schemas.events import PriceLevel


def clearing_price(
    bids: list[tuple[int | None, int]],
    offers: list[tuple[int | None, int]],
    reference: int | None,
) -> Clearing | None:
    """engine/core/mechanisms/call.py's ``clearing_price`` before levels, verbatim."""
    market_demand = market_supply = 0
    bid_at: dict[int, int] = {}
    offer_at: dict[int, int] = {}
    for price, quantity in bids:
        if price is None:
            market_demand += quantity
        else:
            bid_at[price] = bid_at.get(price, 0) + quantity
    for price, quantity in offers:
        if price is None:
            market_supply += quantity
        else:
            offer_at[price] = offer_at.get(price, 0) + quantity
    prices = sorted(bid_at.keys() | offer_at.keys())
    if not prices:
        return None
    supply: list[int] = []
    total = market_supply
    for price in prices:
        total += offer_at.get(price, 0)
        supply.append(total)
    demand = [0] * len(prices)
    total = market_demand
    for i in range(len(prices) - 1, -1, -1):
        total += bid_at.get(prices[i], 0)
        demand[i] = total
    volumes = [min(d, s) for d, s in zip(demand, supply, strict=True)]
    volume = max(volumes)
    if not volume:
        return None
    candidates = [i for i, v in enumerate(volumes) if v == volume]
    least = min(abs(demand[i] - supply[i]) for i in candidates)
    candidates = [i for i in candidates if abs(demand[i] - supply[i]) == least]
    if all(demand[i] > supply[i] for i in candidates):
        chosen = candidates[-1]  # buyers left over everywhere: the highest price
    elif all(demand[i] < supply[i] for i in candidates):
        chosen = candidates[0]  # sellers left over everywhere: the lowest price
    else:
        anchor = prices[candidates[0]] if reference is None else reference
        chosen = min(candidates, key=lambda i: (abs(prices[i] - anchor), prices[i]))
    return Clearing(prices[chosen], volume, demand[chosen] - supply[chosen])


def sides(live: Sequence[CallOrderState]) -> tuple[list[CallOrderState], list[CallOrderState]]:
    """Live bids and offers, each in priority order: market first, then best price, then
    arrival (the venue's former ``_sides``)."""
    bids = [o for o in live if o.side is Side.BID]
    offers = [o for o in live if o.side is not Side.BID]
    bids.sort(key=lambda o: (o.price is not None, -(o.price or 0), o.number))
    offers.sort(key=lambda o: (o.price is not None, o.price or 0, o.number))
    return bids, offers


def levels(orders: list[CallOrderState], count: int = 5) -> list[PriceLevel]:
    """The best limit price levels of one side (orders in priority order), best first."""
    shown: list[PriceLevel] = []
    for order in orders:
        price = order.price
        if price is None:
            continue
        if shown and shown[-1].price == price:
            last = shown[-1]
            shown[-1] = PriceLevel(price, last.quantity + order.remaining, last.orders + 1)
        elif len(shown) == count:
            break
        else:
            shown.append(PriceLevel(price, order.remaining, 1))
    return shown


def uncross_deals(
    live: Sequence[CallOrderState], reference: int | None
) -> list[tuple[str, str, int, int]]:
    """(bid order id, offer order id, price, quantity) of an uncross of ``live``, as the
    venue's ``_uncross`` matched before levels."""
    remaining = {o.order_id: o.remaining for o in live}
    bids, offers = sides(live)
    clearing = clearing_price(
        [(o.price, o.remaining) for o in bids], [(o.price, o.remaining) for o in offers], reference
    )
    deals: list[tuple[str, str, int, int]] = []
    if clearing is None:
        return deals
    price = clearing.price
    eligible_offers = [o for o in offers if o.price is None or o.price <= price]
    first = 0
    for bid in bids:
        if bid.price is not None and bid.price < price:
            break
        i = first
        while remaining[bid.order_id] and i < len(eligible_offers):
            offer = eligible_offers[i]
            if not remaining[offer.order_id]:
                if i == first:
                    first += 1
                i += 1
                continue
            if offer.participant_id == bid.participant_id:
                i += 1
                continue
            quantity = min(remaining[bid.order_id], remaining[offer.order_id])
            remaining[bid.order_id] -= quantity
            remaining[offer.order_id] -= quantity
            deals.append((bid.order_id, offer.order_id, price, quantity))
        if first >= len(eligible_offers):
            break
    return deals
