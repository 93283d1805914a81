"""The call venue's price levels against the former all-orders computations
(tests/unit/call_oracle.py): the same clearing price, the same view, the same priority and
the same deals, on random books and random sessions, restored from a snapshot or not."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.mechanisms.call import CallKind, CallVenue, clearing_from_levels
from engine.core.mechanisms.call import clearing_price as level_clearing_price
from engine.core.mechanisms.call_state import CallState
from schemas.common import ListingState
from schemas.events import Deal
from tests.unit import call_oracle
from tests.unit.test_call import STEPS, Driver, session

#: Few distinct prices, so levels hold several orders and volumes tie often.
BOOK = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(min_value=90, max_value=110)),
        st.integers(min_value=1, max_value=40),
    ),
    max_size=40,
)
REFERENCE = st.one_of(st.none(), st.integers(min_value=80, max_value=120))


def _aggregated(orders: list[tuple[int | None, int]]) -> tuple[list[int], dict[int, int], int]:
    at: dict[int, int] = {}
    market = 0
    for price, quantity in orders:
        if price is None:
            market += quantity
        else:
            at[price] = at.get(price, 0) + quantity
    return sorted(at), at, market


@settings(max_examples=500, deadline=None)
@given(BOOK, BOOK, REFERENCE)
def test_the_level_clearing_price_is_the_all_orders_one(
    bids: list[tuple[int | None, int]],
    offers: list[tuple[int | None, int]],
    reference: int | None,
) -> None:
    """Price, volume and surplus from levels equal the former computation order by order."""
    expected = call_oracle.clearing_price(bids, offers, reference)
    assert level_clearing_price(bids, offers, reference) == expected
    bid_prices, bid_at, demand = _aggregated(bids)
    offer_prices, offer_at, supply = _aggregated(offers)
    from_levels = clearing_from_levels(
        bid_prices, bid_at, demand, offer_prices, offer_at, supply, reference
    )
    assert from_levels == expected


def _reference(state: CallState) -> int | None:
    if state.last_price is not None:
        return state.last_price
    if state.starting_price is not None:
        return state.starting_price
    return state.reserve_price


def _check_against_oracle(venue: CallVenue, offset: int) -> None:
    """The venue's priority, view and next uncross's deals, as the oracle computes them from
    the venue's live orders."""
    state = venue.to_state()
    bids, offers = call_oracle.sides(state.orders)
    assert [o.order_id for o in venue.live_orders()] == [o.order_id for o in (*bids, *offers)]
    view = venue.view(ListingState.OPEN, 0, offset)
    clearing = call_oracle.clearing_price(
        [(o.price, o.remaining) for o in bids],
        [(o.price, o.remaining) for o in offers],
        _reference(state),
    )
    if clearing is None:
        assert (view.indicative_price, view.indicative_volume, view.surplus) == (None, 0, None)
    else:
        assert (view.indicative_price, view.indicative_volume, view.surplus) == clearing
    assert view.bids == call_oracle.levels(bids)
    assert view.offers == call_oracle.levels(offers)
    due = venue.uncross_at_ms
    if due is None:
        return
    # The uncross due next, on a copy: gtd orders expiring by then are out of it.
    in_it = [o for o in state.orders if o.expires_at_ms is None or o.expires_at_ms > due]
    copy = CallKind.restore(venue.to_snapshot())
    deals = [
        (e.bid_order_id, e.offer_order_id, e.price, e.quantity)
        for e in copy.on_deadline(due, offset)
        if isinstance(e, Deal)
    ]
    assert deals == call_oracle.uncross_deals(in_it, _reference(state))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STEPS)
def test_levels_follow_every_arrival_fill_cancel_and_expiry(
    steps: list[tuple[object, ...]],
) -> None:
    """After every command of a random session, and in a venue restored from its snapshot,
    the levels give what the former sort of every live order gave."""
    driver = Driver()
    for command, timestamp_ms in session(steps):
        driver.apply(command, timestamp_ms)
        venue = driver.venue
        _check_against_oracle(venue, driver.offset)
        restored = CallKind.restore(venue.to_snapshot())
        assert isinstance(restored, CallVenue)
        assert restored.to_snapshot() == venue.to_snapshot()
        _check_against_oracle(restored, driver.offset)
